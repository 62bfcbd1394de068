-- One chain of signing keys per algorithm in use (access tokens on the spec's algorithm, OpenID
-- Connect ID tokens on RS256): at most one key signs and at most one waits to sign in each
-- algorithm's chain, whatever several replicas attempt at once
-- (migrations/postgres/0006_key_chains.sql holds the same for PostgreSQL).
DROP INDEX signing_keys_one_active;
DROP INDEX signing_keys_one_pending;
CREATE UNIQUE INDEX signing_keys_one_active_per_alg ON signing_keys (alg, state) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_pending_per_alg ON signing_keys (alg, state) WHERE state = 'pending';
