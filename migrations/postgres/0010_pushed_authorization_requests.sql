-- Pushed authorization requests (RFC 9126; migrations/sqlite/0009_pushed_authorization_requests.sql holds the
-- same for the other database): the validated parameters a client pushed, until the browser brings
-- their request_uri to the authorization endpoint (once) or it expires.
CREATE TABLE pushed_authorization_requests (
    hash       TEXT   NOT NULL PRIMARY KEY,  -- SHA-256 of the request_uri, lowercase hex
    client_id  TEXT   NOT NULL,
    request    TEXT   NOT NULL,              -- the parameters, JSON
    expires_at BIGINT NOT NULL
);
CREATE INDEX pushed_authorization_requests_expiry ON pushed_authorization_requests (expires_at);
