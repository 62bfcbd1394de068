-- Access tokens without a session (client credentials) revoked before their expiry
-- (migrations/sqlite/0004_revoked_access_tokens.sql holds the same for SQLite). A row is kept
-- until the token expires, then purged.
CREATE TABLE revoked_access_tokens (
    jti        TEXT   NOT NULL PRIMARY KEY,
    client_id  TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_access_tokens_expires_at_idx ON revoked_access_tokens (expires_at);

-- Announced on the channel of revoked sessions (0002_session_revocation_notify.sql) as
-- 'jti:<jti>', so that every replica caching liveness forgets the token at once.
CREATE FUNCTION auth_notify_access_token_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_session_revoked', 'jti:' || NEW.jti);
    RETURN NULL;
END;
$$;

CREATE TRIGGER revoked_access_tokens_announced
    AFTER INSERT ON revoked_access_tokens
    FOR EACH ROW EXECUTE FUNCTION auth_notify_access_token_revoked();
