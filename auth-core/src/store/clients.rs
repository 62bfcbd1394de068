//! Clients: the secrets of the spec's OAuth clients.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::UnixSeconds;
use crate::Result;

/// A registered OAuth client's secret (the client's grants and scopes come from the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The client id, as in the spec.
    pub id: String,
    /// PHC string of the secret's hash; `None` for public clients.
    pub secret_hash: Option<String>,
    /// When the client was registered.
    pub created_at: UnixSeconds,
}

/// Storage of registered clients.
#[async_trait]
pub trait ClientStore: Send + Sync + std::fmt::Debug {
    /// Inserts a client; [`crate::Error::Conflict`] if it exists.
    async fn create_client(&self, client: &ClientRecord) -> Result<()>;
    /// A client by id.
    async fn client(&self, id: &str) -> Result<Option<ClientRecord>>;
    /// All registered clients.
    async fn list_clients(&self) -> Result<Vec<ClientRecord>>;
}
