//! Back-channel logout delivery (OpenID Connect Back-Channel Logout 1.0 section 2.5): each logout
//! token that auth-core makes when a browser session ends is POSTed to the client's
//! `backchannel_logout_uri` as `logout_token=<jwt>`, off the request path: the sign-out answers at
//! once, whatever the relying party does.
//!
//! A delivery waits for one of [`MAX_IN_FLIGHT`] slots, has [`TIMEOUT`] to be answered 200 or
//! 204, follows no redirect and never reads the answer's body; a failure is tried again after
//! [`BACKOFF`], then twice that, [`ATTEMPTS`] tries in all. At most [`MAX_QUEUED`] deliveries wait
//! at once; one beyond is dropped and counted. Each outcome is counted in
//! `auth_backchannel_logouts_total{outcome}` and audited; failures are logged with the client id,
//! never the token.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use auth_core::audit::{AuditEvent, AuditKind};
use auth_core::authority::{BackchannelLogout, LogoutDelivery};
use auth_core::clock::Clock;
use auth_core::store::Store;
use tokio::sync::{Notify, Semaphore};

use crate::metrics::Metrics;

/// How long a relying party has to answer one delivery.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Tries of one delivery, the first included.
pub const ATTEMPTS: u32 = 3;
/// The wait before the first retry; it doubles before each next one.
pub const BACKOFF: Duration = Duration::from_secs(1);
/// Deliveries sent at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// Deliveries waiting or in flight at once; more are dropped.
pub const MAX_QUEUED: usize = 10_000;

/// Sends logout tokens to relying parties from spawned tasks.
#[derive(Debug, Clone)]
pub struct LogoutSender {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    slots: Semaphore,
    queued: AtomicUsize,
    idle: Notify,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl LogoutSender {
    /// A sender that counts into `metrics` and audits into `store`.
    pub fn new(metrics: Arc<Metrics>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("auth-server/", env!("CARGO_PKG_VERSION"), " back-channel logout"))
            .build()?;
        let inner = Inner { http, slots: Semaphore::new(MAX_IN_FLIGHT), queued: AtomicUsize::new(0), idle: Notify::new(), metrics, store, clock };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Waits until no delivery is waiting or in flight, for at most `limit` (commands that end
    /// sessions wait so that their deliveries are not cut off when the process exits).
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.inner.idle.notified();
                if self.inner.queued.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl LogoutDelivery for LogoutSender {
    fn deliver(&self, logout: BackchannelLogout) {
        let inner = &self.inner;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(client_id = %logout.client_id, "back-channel logout not sent: no runtime");
            return;
        };
        if inner.queued.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED {
            inner.finish();
            inner.metrics.backchannel_logouts.with_label_values(&["dropped"]).inc();
            tracing::warn!(client_id = %logout.client_id, "back-channel logout dropped: {MAX_QUEUED} deliveries are waiting");
            return;
        }
        let inner = inner.clone();
        runtime.spawn(async move {
            inner.send(&logout).await;
            inner.finish();
        });
    }
}

impl Inner {
    fn finish(&self) {
        if self.queued.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    async fn send(&self, logout: &BackchannelLogout) {
        let mut backoff = BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match self.post(logout).await {
                Ok(()) => {
                    self.metrics.backchannel_logouts.with_label_values(&["delivered"]).inc();
                    self.audit(logout, AuditKind::BackchannelLogoutSent, attempt, None).await;
                    return;
                }
                Err(why) if attempt < ATTEMPTS => {
                    self.metrics.backchannel_logouts.with_label_values(&["retried"]).inc();
                    tracing::info!(client_id = %logout.client_id, attempt, error = %why, "back-channel logout failed; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(why) => {
                    self.metrics.backchannel_logouts.with_label_values(&["failed"]).inc();
                    tracing::warn!(client_id = %logout.client_id, attempts = attempt, error = %why, "back-channel logout could not be delivered");
                    self.audit(logout, AuditKind::BackchannelLogoutFailed, attempt, Some(why)).await;
                }
            }
        }
    }

    /// One POST (section 2.5); 200 and 204 are success, the body is never read.
    async fn post(&self, logout: &BackchannelLogout) -> Result<(), String> {
        let _slot = self.slots.acquire().await.map_err(|_| "closed".to_owned())?;
        let body = form_urlencoded::Serializer::new(String::new()).append_pair("logout_token", &logout.token).finish();
        let response = self
            .http
            .post(&logout.uri)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            // Without the URL: reqwest's errors name it, which is the client's and may be long.
            .map_err(|e| if e.is_timeout() { "timed out".to_owned() } else { e.without_url().to_string() })?;
        match response.status().as_u16() {
            200 | 204 => Ok(()),
            status => Err(format!("answered {status}")),
        }
    }

    async fn audit(&self, logout: &BackchannelLogout, kind: AuditKind, attempts: u32, error: Option<String>) {
        let event = AuditEvent::new(self.clock.now_ms(), kind)
            .user(&logout.user_id)
            .client(&logout.client_id)
            .detail(serde_json::json!({ "browser_session": logout.browser_session, "attempts": attempts, "error": error }));
        if let Err(e) = self.store.append_audit(&event).await {
            tracing::warn!(client_id = %logout.client_id, error = %e, "could not audit a back-channel logout");
        }
    }
}
