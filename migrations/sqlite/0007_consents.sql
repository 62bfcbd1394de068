-- Consent to third-party clients (migrations/postgres/0008_consents.sql holds the same for the other database): one row per
-- scope a user granted a client. Only scopes of validated authorization requests are written, so a
-- (user, client) pair holds at most the client's scopes and openid.
CREATE TABLE consents (
    user_id    TEXT   NOT NULL,
    client_id  TEXT   NOT NULL,
    scope      TEXT   NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id, scope)
);
