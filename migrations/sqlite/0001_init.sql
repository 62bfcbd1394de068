-- Initial schema (SQLite). migrations/postgres/0001_init.sql holds the same schema for PostgreSQL;
-- change both together.
--
-- Timestamps are Unix seconds (BIGINT), except audit_events.at, which is Unix milliseconds.
-- Booleans are declared BOOLEAN (stored as 0/1 by SQLite) and read back as CAST(... AS INTEGER),
-- because sqlx's Any driver cannot decode a column declared BOOLEAN on SQLite.

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    username      TEXT    NOT NULL,             -- normalized by the caller (NFKC, lowercase)
    password_hash TEXT    NOT NULL,             -- PHC string
    claims        TEXT    NOT NULL DEFAULT '{}', -- JSON object of the spec's custom claims
    disabled      BOOLEAN NOT NULL DEFAULT FALSE CHECK (disabled IN (0, 1)),
    created_at    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX users_username_key ON users (username);
CREATE INDEX users_created_at_idx ON users (created_at, id);

CREATE TABLE clients (
    id          TEXT   NOT NULL PRIMARY KEY,
    secret_hash TEXT,                            -- PHC string; NULL for public clients
    created_at  BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid            TEXT   NOT NULL PRIMARY KEY,  -- RFC 7638 thumbprint
    alg            TEXT   NOT NULL,
    state          TEXT   NOT NULL CHECK (state IN ('pending', 'active', 'retiring', 'retired')),
    created_at     BIGINT NOT NULL,
    activates_at   BIGINT NOT NULL,
    deactivated_at BIGINT,
    retired_at     BIGINT,
    public_jwk     TEXT   NOT NULL,
    private_sealed BLOB,                         -- sealed with the master key; erased on retirement
    master_key_id  TEXT   NOT NULL,
    CHECK (state <> 'retired' OR private_sealed IS NULL)
);
-- At most one key signs and at most one waits to sign, whatever several replicas attempt at once.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_pending ON signing_keys (state) WHERE state = 'pending';

CREATE TABLE refresh_families (
    id                  TEXT   NOT NULL PRIMARY KEY, -- the session id (sid)
    user_id             TEXT   REFERENCES users (id) ON DELETE CASCADE,
    client_id           TEXT   NOT NULL,
    scope               TEXT   NOT NULL,
    created_at          BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    revoked_at          BIGINT,
    revoked_reason      TEXT,
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX refresh_families_user_idx ON refresh_families (user_id, created_at);

CREATE TABLE refresh_tokens (
    hash             BLOB   NOT NULL PRIMARY KEY,  -- SHA-256 of the token; the token is never stored
    family_id        TEXT   NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    created_at       BIGINT NOT NULL,
    idle_expires_at  BIGINT NOT NULL,
    used_at          BIGINT,
    successor_hash   BLOB,
    successor_sealed BLOB,                         -- the successor, sealed with this token's value
    CHECK ((used_at IS NULL) = (successor_hash IS NULL)),
    CHECK ((used_at IS NULL) = (successor_sealed IS NULL))
);
-- Serves the cascade from refresh_families.
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

CREATE TABLE audit_events (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at         BIGINT  NOT NULL,                 -- Unix milliseconds
    kind       TEXT    NOT NULL,
    user_id    TEXT,
    client_id  TEXT,
    session_id TEXT,
    detail     TEXT    NOT NULL DEFAULT 'null'   -- JSON; never a secret
);
