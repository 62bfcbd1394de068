-- Access tokens without a session (client credentials) revoked before their expiry
-- (migrations/postgres/0005_revoked_access_tokens.sql holds the same for PostgreSQL, with the
-- announcement). A row is kept until the token expires, then purged.
CREATE TABLE revoked_access_tokens (
    jti        TEXT   NOT NULL PRIMARY KEY,
    client_id  TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_access_tokens_expires_at_idx ON revoked_access_tokens (expires_at);
