//! Prometheus metrics: requests by route and status with latency histograms, tokens issued by
//! grant, refresh reuse detected, rate-limit rejections, key rotations, rate-limit backend fallbacks, back-channel logouts.

use prometheus::{Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// The service's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `http_requests_total{route,method,status}`.
    pub requests: IntCounterVec,
    /// `http_request_duration_seconds{route,method}`.
    pub latency: HistogramVec,
    /// `auth_tokens_issued_total{grant}`.
    pub tokens_issued: IntCounterVec,
    /// `auth_refresh_reuse_detected_total`.
    pub refresh_reuse: IntCounter,
    /// `auth_rate_limit_rejections_total{limit}`.
    pub rate_limited: IntCounterVec,
    /// `auth_key_rotations_total{step}`.
    pub key_rotations: IntCounterVec,
    /// `auth_ratelimit_backend_degraded` (1 while Redis is down and limits are local).
    pub limiter_degraded: IntGauge,
    /// `auth_ratelimit_backend_fallbacks_total`, mirrored from the limiter.
    pub limiter_fallbacks: IntGauge,
    /// `auth_session_cache_in_use` (1 while session liveness is answered from memory).
    pub session_cache_in_use: IntGauge,
    /// `auth_session_cache_entries`, the sessions remembered.
    pub session_cache_entries: IntGauge,
    /// `http_connections_open`.
    pub connections_open: IntGauge,
    /// `http_connections_dropped_total{reason}`: connections the server closed on a client
    /// (`header_read_timeout`, `idle_timeout`, `over_capacity`).
    pub connections_dropped: IntCounterVec,
    /// `auth_backchannel_logouts_total{outcome}`: back-channel logout deliveries (`delivered`,
    /// `retried`, `failed` after every retry, `dropped` when too many wait).
    pub backchannel_logouts: IntCounterVec,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["route", "method"],
        )?;
        let tokens_issued =
            IntCounterVec::new(Opts::new("auth_tokens_issued_total", "Access tokens issued by grant"), &["grant"])?;
        let refresh_reuse =
            IntCounter::new("auth_refresh_reuse_detected_total", "Refresh tokens reused after the grace (family revoked)")?;
        let rate_limited = IntCounterVec::new(
            Opts::new("auth_rate_limit_rejections_total", "Requests refused by a rate limit"),
            &["limit"],
        )?;
        let key_rotations =
            IntCounterVec::new(Opts::new("auth_key_rotations_total", "Signing-key lifecycle steps applied"), &["step"])?;
        let limiter_degraded =
            IntGauge::new("auth_ratelimit_backend_degraded", "1 while the shared rate-limit backend is unreachable")?;
        let limiter_fallbacks =
            IntGauge::new("auth_ratelimit_backend_fallbacks_total", "Rate-limit decisions taken locally because the backend failed")?;
        let session_cache_in_use = IntGauge::new(
            "auth_session_cache_in_use",
            "1 while session liveness is answered from memory (0: configured off, or the feed of revoked sessions is down)",
        )?;
        let session_cache_entries = IntGauge::new("auth_session_cache_entries", "Sessions whose liveness is remembered")?;
        let connections_open = IntGauge::new("http_connections_open", "Connections being served")?;
        let connections_dropped = IntCounterVec::new(
            Opts::new("http_connections_dropped_total", "Connections closed by the server on a slow, idle or surplus client"),
            &["reason"],
        )?;
        let backchannel_logouts = IntCounterVec::new(
            Opts::new("auth_backchannel_logouts_total", "Back-channel logout deliveries to relying parties by outcome"),
            &["outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(tokens_issued.clone()))?;
        registry.register(Box::new(refresh_reuse.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(key_rotations.clone()))?;
        registry.register(Box::new(limiter_degraded.clone()))?;
        registry.register(Box::new(limiter_fallbacks.clone()))?;
        registry.register(Box::new(session_cache_in_use.clone()))?;
        registry.register(Box::new(session_cache_entries.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_dropped.clone()))?;
        registry.register(Box::new(backchannel_logouts.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            tokens_issued,
            refresh_reuse,
            rate_limited,
            key_rotations,
            limiter_degraded,
            limiter_fallbacks,
            session_cache_in_use,
            session_cache_entries,
            connections_open,
            connections_dropped,
            backchannel_logouts,
        })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics; an empty page is the fallback.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Records one answered request by its matched route (the route template, not the raw path,
    /// which would let clients create unbounded label values; `unmatched` for 404s).
    pub fn record(&self, route: &str, method: &str, status: &str, elapsed: std::time::Duration) {
        self.requests.with_label_values(&[route, method, status]).inc();
        self.latency.with_label_values(&[route, method]).observe(elapsed.as_secs_f64());
    }
}
