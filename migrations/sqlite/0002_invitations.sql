-- Invitations (migrations/postgres/0003_invitations.sql holds the same table for PostgreSQL):
-- single-use, expiring grants of custom claims. Only the SHA-256 of a token is stored.
CREATE TABLE invitations (
    hash       TEXT   NOT NULL PRIMARY KEY,  -- SHA-256 of the token, lowercase hex
    claims     TEXT   NOT NULL,              -- JSON object of the claims it sets
    username   TEXT,                         -- normalized; NULL: anyone may redeem it
    created_by TEXT   NOT NULL,              -- 'operator' or 'client:<id>'
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX invitations_expires_at_idx ON invitations (expires_at);
