-- Announces each revoked session on the channel auth_session_revoked, the session id as payload,
-- so that every replica caching session liveness (SessionLiveness in auth-core) forgets it at once,
-- whichever process revoked it (a replica, `auth-server users disable`, an operator's SQL).
-- PostgreSQL delivers a notification when the revoking transaction commits, never for one that
-- rolls back. PostgreSQL only: a SQLite database has one server process, which forgets the
-- sessions it revokes itself.
CREATE FUNCTION auth_notify_session_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_session_revoked', NEW.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER refresh_families_revoked
    AFTER UPDATE OF revoked_at ON refresh_families
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION auth_notify_session_revoked();
