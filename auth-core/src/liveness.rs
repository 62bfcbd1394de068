//! Family liveness: whether the family (`sid`) of an access token is still live, as
//! introspection and bearer endpoints must check on every request (RFC 7662 `active` is false
//! once the family is revoked).
//!
//! Reading the store every time costs a database round trip per request. [`FamilyLiveness`]
//! keeps what it read, under these rules:
//! - A revoked (or unknown) family stays refused: revocation is final.
//! - A live family is trusted for at most `ttl` after it was read; then it is read again.
//! - A revocation made by this process forgets the family at once (after the revoking write has
//!   committed), and an answer read before that revocation is never kept after it: every
//!   revocation advances an epoch, and an answer read in an older epoch is dropped.
//! - Revocations made by other processes arrive through the store's [`RevocationFeed`](crate::store::RevocationFeed)
//!   (PostgreSQL: a trigger and `LISTEN`), when the store has one. While a store that has a feed
//!   is not connected to it, nothing is cached at all: every check reads the store. When the feed
//!   comes back, everything cached before is dropped, since revocations may have been missed.
//! - A store without a feed (SQLite, used by one server process) relies on the first rule for
//!   revocations made outside this process, such as `auth-server users disable` run beside a
//!   server: those are seen within `ttl`.
//!
//! Access tokens without a session (client credentials) are revocable one by one: their liveness
//! is kept the same way, under `jti:<jti>`, and announced on the same feed.
//!
//! With a `ttl` of zero nothing is cached: every check reads the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::Result;
use crate::clock::{Clock, UnixMillis};
use crate::store::FamilyStore;

/// The prefix of a revoked access token's key, in the cache and in the feed's announcements
/// (family ids never hold a colon); the PostgreSQL trigger of
/// `migrations/postgres/0005_revoked_access_tokens.sql` announces it with the same prefix.
pub const TOKEN_KEY_PREFIX: &str = "jti:";
/// How many families are remembered (about 100 bytes each).
const CAPACITY: usize = 100_000;
/// The first wait before reopening a lost revocation feed; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait before reopening a lost revocation feed.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// What was read of one family (cloned on every hit, hence the shared user id).
#[derive(Debug, Clone)]
struct Entry {
    live: bool,
    user_id: Option<Arc<str>>,
    read_at: UnixMillis,
}

/// A cache of family liveness in front of a [`FamilyStore`]; see the module documentation.
#[derive(Debug)]
pub struct FamilyLiveness {
    store: Arc<dyn FamilyStore>,
    clock: Arc<dyn Clock>,
    ttl_ms: i64,
    entries: quick_cache::sync::Cache<String, Entry>,
    /// Advanced by every revocation this process learns of.
    epoch: AtomicU64,
    /// Whether cached answers may be used: set once [`FamilyLiveness::follow`] has found the
    /// store's feed connected, or found that the store has none.
    trusted: AtomicBool,
}

impl FamilyLiveness {
    /// Liveness of the families in `store`, a live one trusted for `ttl` after it was read.
    /// Nothing cached is used until [`FamilyLiveness::follow`] runs.
    pub fn new(store: Arc<dyn FamilyStore>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        // Nothing is ever kept without a TTL: no room is set aside then.
        let capacity = if ttl_ms > 0 { CAPACITY } else { 1 };
        Self {
            store,
            clock,
            ttl_ms,
            entries: quick_cache::sync::Cache::new(capacity),
            epoch: AtomicU64::new(0),
            trusted: AtomicBool::new(false),
        }
    }

    /// Liveness read from the store on every check.
    pub fn uncached(store: Arc<dyn FamilyStore>, clock: Arc<dyn Clock>) -> Self {
        Self::new(store, clock, Duration::ZERO)
    }

    /// Whether family `sid` exists and is not revoked.
    pub async fn is_live(&self, sid: &str) -> Result<bool> {
        if let Some(live) = self.cached(sid) {
            return Ok(live);
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let family = self.store.family(sid).await?;
        let live = family.as_ref().is_some_and(|f| f.revoked_at.is_none());
        if self.in_use() {
            let user_id = family.and_then(|f| f.user_id).map(Arc::from);
            self.keep(sid, Entry { live, user_id, read_at: self.clock.now_ms() }, epoch);
        }
        Ok(live)
    }

    /// Whether the access token `jti` (one without a session) has not been revoked. Cached like
    /// a family, under `jti:<jti>` (the key its revocation is announced with); a revoked token
    /// stays refused.
    pub async fn token_is_live(&self, jti: &str) -> Result<bool> {
        let key = format!("{TOKEN_KEY_PREFIX}{jti}");
        if let Some(live) = self.cached(&key) {
            return Ok(live);
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let live = !self.store.access_token_revoked(jti).await?;
        if self.in_use() {
            self.keep(&key, Entry { live, user_id: None, read_at: self.clock.now_ms() }, epoch);
        }
        Ok(live)
    }

    /// The access token `jti` was revoked: forget what was read of it.
    pub fn forget_token(&self, jti: &str) {
        self.forget(&format!("{TOKEN_KEY_PREFIX}{jti}"));
    }

    /// Whether answers are taken from memory now: caching is on and the store's feed of revoked
    /// families (if it has one) is connected.
    pub fn in_use(&self) -> bool {
        self.ttl_ms > 0 && self.trusted.load(Ordering::SeqCst)
    }

    fn cached(&self, sid: &str) -> Option<bool> {
        if !self.in_use() {
            return None;
        }
        let entry = self.entries.get(sid)?;
        if !entry.live {
            return Some(false);
        }
        let age = self.clock.now_ms().saturating_sub(entry.read_at);
        (0..self.ttl_ms).contains(&age).then_some(true)
    }

    /// Keeps an answer read in `epoch`, unless a revocation came since: checked before the insert
    /// and again after it, so a revocation that lands in between removes it either way.
    fn keep(&self, sid: &str, entry: Entry, epoch: u64) {
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        self.entries.insert(sid.to_owned(), entry);
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.entries.remove(sid);
        }
    }

    /// Session `sid` was revoked: forget what was read of it.
    pub fn forget(&self, sid: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(sid);
    }

    /// Every family of `user_id` was revoked.
    pub fn forget_user(&self, user_id: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.retain(|_, entry| entry.user_id.as_deref() != Some(user_id));
    }

    /// Forget everything (revocations may have been missed).
    pub fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }

    /// How many families are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no family is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Follows the store's announcements of revoked families, for as long as the process runs
    /// (spawn it): opens the feed, forgets each family it announces, and reopens it with a
    /// growing delay when it is lost, caching nothing meanwhile. Returns at once when nothing is
    /// cached (`ttl` zero) or the store has no feed.
    pub async fn follow(self: Arc<Self>) {
        if self.ttl_ms == 0 {
            return;
        }
        let mut retry = FIRST_RETRY;
        loop {
            match self.store.revocation_feed().await {
                Ok(None) => {
                    self.trusted.store(true, Ordering::SeqCst);
                    return;
                }
                Ok(Some(mut feed)) => {
                    self.forget_all();
                    self.trusted.store(true, Ordering::SeqCst);
                    tracing::info!("following revoked families; family liveness is cached");
                    retry = FIRST_RETRY;
                    let lost = loop {
                        match feed.next().await {
                            Ok(sid) => self.forget(&sid),
                            Err(e) => break e,
                        }
                    };
                    self.trusted.store(false, Ordering::SeqCst);
                    self.forget_all();
                    tracing::warn!(error = %lost, "lost the feed of revoked families; reading families from the database until it is back");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot open the feed of revoked families yet");
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(MAX_RETRY);
        }
    }
}
