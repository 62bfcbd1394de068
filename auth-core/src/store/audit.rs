//! The audit trail.

use async_trait::async_trait;

use crate::audit::AuditEvent;
use crate::Result;

/// Storage of audit events (append only).
#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// Appends an audit event.
    async fn append_audit(&self, event: &AuditEvent) -> Result<()>;
    /// The latest `limit` audit events, newest first.
    async fn audit_tail(&self, limit: u32) -> Result<Vec<AuditEvent>>;
}
