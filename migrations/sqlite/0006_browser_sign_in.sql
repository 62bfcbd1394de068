-- Signing in through the browser (migrations/postgres/0007_browser_sign_in.sql holds the same for the
-- other database): authorization codes and browser sessions. Only SHA-256 hashes of the code and
-- of the session cookie are stored.
CREATE TABLE authorization_codes (
    hash               TEXT   NOT NULL PRIMARY KEY,  -- SHA-256 of the code, lowercase hex
    client_id          TEXT   NOT NULL,
    user_id            TEXT   NOT NULL,
    redirect_uri       TEXT   NOT NULL,
    code_challenge     TEXT   NOT NULL,              -- PKCE S256 challenge
    scope              TEXT   NOT NULL,
    nonce              TEXT,
    browser_session_id TEXT,
    auth_time          BIGINT NOT NULL,
    amr                TEXT   NOT NULL,              -- JSON array of strings
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    used_at            BIGINT,                       -- first exchange
    reused_at          BIGINT,                       -- a later exchange: its session is revoked
    family_id          TEXT                          -- the refresh family its exchange started
);
CREATE INDEX authorization_codes_expires_at_idx ON authorization_codes (expires_at);

CREATE TABLE browser_sessions (
    hash         TEXT   NOT NULL PRIMARY KEY,        -- SHA-256 of the cookie value, lowercase hex
    id           TEXT   NOT NULL UNIQUE,             -- public id: sid of ID and logout tokens
    user_id      TEXT   NOT NULL,
    auth_time    BIGINT NOT NULL,
    amr          TEXT   NOT NULL,                    -- JSON array of strings
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,                    -- absolute end
    ended_at     BIGINT
);
CREATE INDEX browser_sessions_user_idx ON browser_sessions (user_id);
CREATE INDEX browser_sessions_expires_at_idx ON browser_sessions (expires_at);

-- The sessions (refresh families) that code exchanges started from a browser session, ended with
-- it at sign-out.
CREATE TABLE browser_session_families (
    browser_session_id TEXT NOT NULL,
    family_id          TEXT NOT NULL,
    PRIMARY KEY (browser_session_id, family_id)
);
