//! Passwords (placeholder until the module lands).
