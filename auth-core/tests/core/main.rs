//! auth-core's integration tests: one binary, one module per area.

mod hostile;
mod vectors;
