-- The browser session a refresh family was started from is looked up by the family (the account
-- API marks the browser session of the calling token as current; migrations/postgres/0009_browser_session_of_family.sql
-- holds the same for the other database).
CREATE INDEX browser_session_families_family ON browser_session_families (family_id);
