//! Storage, one trait per area: [`UserStore`], [`ClientStore`], [`KeyStore`], [`FamilyStore`],
//! [`AuditStore`], [`InvitationStore`], [`CodeStore`], [`BrowserSessionStore`] and [`ConsentStore`], composed by [`Store`]. Each area has its sqlx implementation for SQLite
//! (the embedded default) and PostgreSQL (several replicas) in `sql/`; migrations live in
//! `migrations/{sqlite,postgres}`, and both dialects hold the same schema.
//!
//! A component that needs one area takes that area's trait (`Arc<dyn KeyStore>`); an
//! `Arc<dyn Store>` coerces to any of them. A new area (credentials, say) adds a trait here, its implementation in `sql/`, and one bound to [`Store`].
//!
//! Invariants the implementations enforce in the database itself, so that several replicas cannot
//! break them: at most one `active` and at most one `pending` signing key; a refresh token has at
//! most one successor (rotation is a conditional update that only one caller can win); an
//! invitation is redeemed once and an authorization code exchanged once (the same kind of update); a user's claims change only from the
//! value the changer read.

use async_trait::async_trait;

use crate::Result;

mod audit;
mod browser;
mod clients;
mod consents;
mod families;
mod invitations;
mod keys;
mod sql;
mod users;

pub use audit::AuditStore;
pub use browser::{AuthorizationCodeRecord, BrowserSessionRecord, BrowserSessionStore, CodeStore, CodeTaken, PushedRequestRecord};
pub use clients::{ClientRecord, ClientStore};
pub use consents::{ConsentRecord, ConsentStore};
pub use families::{RefreshFamily, FamilyStore, RefreshTokenRecord, RefreshTokenView, RevocationFeed};
pub use invitations::{InvitationRecord, InvitationStore};
pub use keys::{KeyChange, KeyRecord, KeyState, KeyStore};
pub use sql::{Dialect, SqlStore};
pub use users::{UserRecord, UserStore};

/// The whole store: every area, plus what concerns the database as a whole.
#[async_trait]
pub trait Store:
    UserStore + ClientStore + KeyStore + FamilyStore + AuditStore + InvitationStore + CodeStore + BrowserSessionStore + ConsentStore
{
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
}
