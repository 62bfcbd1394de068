//! The sqlx implementation of [`super::Store`] (SQLite and PostgreSQL).

/// A [`super::Store`] on SQLite or PostgreSQL.
#[derive(Debug)]
pub struct SqlStore {}
