//! The soak run: a mixed load held for a bounded time, sampled every window. Each window runs the
//! same mix on fresh keep-alive connections (JWKS reads, introspection, refresh chains started by
//! a fresh login, password logins), and after it the server's resident memory and open file
//! descriptors are read from `/proc`. Memory and descriptors must stay flat: a leak shows as a
//! steady climb across windows, a descriptor leak as a count that never comes back down.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::client::{self, CONFIDENTIAL_CLIENT, Call, Connection, Window};
use crate::server::rss_kib;
use crate::stats::Summary;

/// Workers of each kind in one window.
const JWKS_WORKERS: usize = 6;
const INTROSPECT_WORKERS: usize = 3;
const REFRESH_WORKERS: usize = 4;
const PASSWORD_WORKERS: usize = 2;

/// One window's figures.
struct Sample {
    at: Duration,
    requests: u64,
    errors: u64,
    p99_jwks: Duration,
    p99_introspect: Duration,
    p99_refresh: Duration,
    p99_password: Duration,
    rss_kib: u64,
    fds: usize,
}

/// Open file descriptors of a process (entries of `/proc/<pid>/fd`).
fn open_fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd")).context("reading /proc/<pid>/fd")?.count())
}

/// Runs the soak for `total` in windows of `window`; returns a markdown report.
pub async fn run(
    addr: SocketAddr,
    pid: u32,
    users: &Arc<Vec<(String, String)>>,
    secret: &str,
    total: Duration,
    window: Duration,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let before = (rss_kib(pid)?, open_fds(pid)?);
    eprintln!("soak: {total:?} in windows of {window:?}; before: RSS {} KiB, {} fds", before.0, before.1);
    while started.elapsed() + window <= total + Duration::from_millis(500) {
        let groups = mix(addr, users, secret).await?;
        let summaries = run_window(addr, groups, window).await?;
        let sample = Sample {
            at: started.elapsed(),
            requests: summaries.iter().map(|s| s.ok + s.errors).sum(),
            errors: summaries.iter().map(|s| s.errors).sum(),
            p99_jwks: summaries[0].p99,
            p99_introspect: summaries[1].p99,
            p99_refresh: summaries[2].p99,
            p99_password: summaries[3].p99,
            rss_kib: rss_kib(pid)?,
            fds: open_fds(pid)?,
        };
        eprintln!(
            "soak: {:>4.0} s: {} requests, {} errors, RSS {} KiB, {} fds, p99 jwks {:?} refresh {:?} password {:?}",
            sample.at.as_secs_f64(),
            sample.requests,
            sample.errors,
            sample.rss_kib,
            sample.fds,
            sample.p99_jwks,
            sample.p99_refresh,
            sample.p99_password
        );
        if let Some(first_error) = summaries.iter().find_map(|s| s.first_error.clone()) {
            eprintln!("soak:        first error: {first_error}");
        }
        samples.push(sample);
    }
    Ok(report(before, &samples))
}

/// The calls of one window: each group's workers.
async fn mix(addr: SocketAddr, users: &Arc<Vec<(String, String)>>, secret: &str) -> anyhow::Result<Vec<Vec<Call>>> {
    let (user, password) = &users[0];
    let body = client::login(addr, user, password).await?;
    let token = client::access_token_of(&body).context("no access token in the login answer")?;
    let mut refresh = Vec::with_capacity(REFRESH_WORKERS);
    for worker in 0..REFRESH_WORKERS {
        let (user, password) = &users[worker % users.len()];
        let body = client::login(addr, user, password).await?;
        refresh.push(Call::Refresh { token: client::refresh_token_of(&body).context("no refresh token")? });
    }
    Ok(vec![
        vec![Call::Get("/.well-known/jwks.json"); JWKS_WORKERS],
        vec![Call::introspect(CONFIDENTIAL_CLIENT, secret, &token); INTROSPECT_WORKERS],
        refresh,
        (0..PASSWORD_WORKERS).map(|w| Call::Password { users: users.clone(), next: w }).collect(),
    ])
}

async fn run_window(addr: SocketAddr, groups: Vec<Vec<Call>>, length: Duration) -> anyhow::Result<Vec<Summary>> {
    let start = Instant::now();
    let window = Window { start, stop: start + length, budget: Arc::new(AtomicU64::new(u64::MAX)) };
    let mut handles = Vec::new();
    for calls in groups {
        let mut workers = Vec::with_capacity(calls.len());
        for call in calls {
            let connection = Connection::open(addr).await?;
            workers.push(tokio::spawn(client::run_worker(connection, call, window.clone())));
        }
        handles.push(workers);
    }
    let mut summaries = Vec::new();
    for workers in handles {
        let mut tallies = Vec::with_capacity(workers.len());
        for worker in workers {
            tallies.push(worker.await?);
        }
        summaries.push(Summary::merge(tallies));
    }
    Ok(summaries)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn report(before: (u64, usize), samples: &[Sample]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Before the load: RSS {} KiB, {} open file descriptors. Mix per window: {JWKS_WORKERS} JWKS, \
         {INTROSPECT_WORKERS} introspection, {REFRESH_WORKERS} refresh chains (fresh logins), {PASSWORD_WORKERS} \
         password-grant connections.\n",
        before.0, before.1
    );
    out.push_str("| t (s) | requests | errors | p99 JWKS (ms) | p99 introspect (ms) | p99 refresh (ms) | p99 password (ms) | RSS (MiB) | fds |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in samples {
        let _ = writeln!(
            out,
            "| {:.0} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            s.at.as_secs_f64(),
            s.requests,
            s.errors,
            ms(s.p99_jwks),
            ms(s.p99_introspect),
            ms(s.p99_refresh),
            ms(s.p99_password),
            s.rss_kib as f64 / 1024.0,
            s.fds
        );
    }
    // Flatness: the second half against the first (after the first minute of warm-up, when the
    // allocator and the database cache reach their working size).
    let settled: Vec<&Sample> = samples.iter().filter(|s| s.at >= Duration::from_secs(60)).collect();
    if settled.len() >= 4 {
        let half = settled.len() / 2;
        let max_rss = |xs: &[&Sample]| xs.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let (first, second) = (max_rss(&settled[..half]), max_rss(&settled[half..]));
        let fds: Vec<usize> = settled.iter().map(|s| s.fds).collect();
        let growth = (second as f64 - first as f64) / first.max(1) as f64 * 100.0;
        let _ = writeln!(
            out,
            "\nAfter the first minute: peak RSS {:.1} MiB in the first half, {:.1} MiB in the second ({growth:+.1}%); \
             open descriptors between {} and {}; {} errors in {} requests.",
            first as f64 / 1024.0,
            second as f64 / 1024.0,
            fds.iter().min().unwrap_or(&0),
            fds.iter().max().unwrap_or(&0),
            samples.iter().map(|s| s.errors).sum::<u64>(),
            samples.iter().map(|s| s.requests).sum::<u64>()
        );
    }
    out
}
