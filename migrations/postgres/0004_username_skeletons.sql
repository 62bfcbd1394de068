-- The UTS #39 skeleton of each username (migrations/sqlite/0003_username_skeletons.sql holds the
-- same for SQLite): unique, so that a name that looks like an existing one is refused like the
-- same name. Filled for existing users at start (auth-core's SqlStore::migrate); NULL is left for
-- an existing user whose name looks like an older one's.
ALTER TABLE users ADD COLUMN username_skeleton TEXT;
CREATE UNIQUE INDEX users_username_skeleton_key ON users (username_skeleton);
