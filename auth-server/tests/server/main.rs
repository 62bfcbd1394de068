//! auth-server over real HTTP.
