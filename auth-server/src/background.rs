//! The tasks that run beside the HTTP server: key rotation (and pick-up of other replicas'
//! rotations), the summaries of repeated refusals in the audit log, the rate-limit backend's
//! health in metrics, and the feed of revoked sessions.

use std::sync::Arc;

use auth_core::keys::RotationStep;

use crate::state::AppState;

/// Rotates keys every `key_refresh`; mirrors the rate-limit backend's health into metrics; follows
/// the sessions other processes revoke. Errors are logged and retried, never fatal: the ring keeps
/// its last good snapshot.
pub fn spawn_background(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    // Owned by the task below, so aborting that task ends this one too.
    let follow = AbortOnDrop(tokio::spawn(state.authority.family_liveness().clone().follow()));
    tokio::spawn(async move {
        let _follow = follow;
        let mut tick = tokio::time::interval(state.config.key_refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match state.authority.rotate_keys().await {
                Ok(steps) => {
                    for step in steps {
                        let name = match step {
                            RotationStep::GenerateActive { .. } | RotationStep::GeneratePending { .. } => "generate",
                            RotationStep::Activate { .. } => "activate",
                            RotationStep::Deactivate { .. } => "deactivate",
                            RotationStep::Retire { .. } | RotationStep::Withdraw { .. } => "retire",
                        };
                        state.metrics.key_rotations.with_label_values(&[name]).inc();
                    }
                }
                Err(e) => tracing::warn!(error = %e, code = e.code().as_str(), "key rotation failed; keeping the current keys"),
            }
            if let Err(e) = state.authority.purge_revoked_access_tokens().await {
                tracing::warn!(error = %e, code = e.code().as_str(), "could not purge expired revocations of access tokens");
            }
            if let Err(e) = state.authority.purge_codes().await {
                tracing::warn!(error = %e, code = e.code().as_str(), "could not purge expired authorization codes");
            }
            if let Err(e) = state.authority.purge_browser_sessions().await {
                tracing::warn!(error = %e, code = e.code().as_str(), "could not purge ended browser sessions");
            }
            if let Err(e) = state.authority.purge_pushed_requests().await {
                tracing::warn!(error = %e, code = e.code().as_str(), "could not purge expired pushed authorization requests");
            }
            if let Err(e) = state.authority.flush_refusals(false).await {
                tracing::warn!(error = %e, code = e.code().as_str(), "could not write the summaries of repeated refusals");
            }
            if let Some(fallback) = &state.fallback {
                state.metrics.limiter_degraded.set(i64::from(fallback.is_degraded()));
                state.metrics.limiter_fallbacks.set(i64::try_from(fallback.fallbacks()).unwrap_or(i64::MAX));
            }
        }
    })
}

/// Aborts a task when dropped (with the task that holds it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
