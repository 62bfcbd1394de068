//! `auth-load`: a bounded, loopback-only load benchmark of `auth-server`.
//!
//! It starts the release `auth-server` as a child process on a free loopback port (SQLite in a
//! temporary data directory, or a PostgreSQL schema of its own), registers the booking spec's
//! confidential client and a few users through the operator commands, then runs each scenario
//! for a bounded time and request count over a fixed number of keep-alive connections, and prints
//! a markdown table. Per-IP and per-account limits are raised so that they do not cap the figures.
//!
//! Bounds: every scenario stops at `--duration-secs` or `--max-requests`, whichever comes first;
//! nothing is sent to an address that is not loopback; the schema and the data directory are
//! removed at the end.

// A benchmark's report is its output.
#![allow(clippy::print_stdout)]

mod client;
mod server;
mod soak;
mod stats;
mod system;

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};

use crate::client::{CONFIDENTIAL_CLIENT, Call, Connection, Window};
use crate::server::{Ceiling, Database, ServerSetup};
use crate::stats::Summary;
use crate::system::{CpuUse, CpuWindow};

/// mimalloc, as in `auth-server`: the load generator and the ceiling route run on the same
/// allocator as the server they are compared with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "auth-load", about = "Bounded, loopback-only load benchmark of auth-server")]
struct Cli {
    /// The auth-server binary; by default the one next to this binary.
    #[arg(long)]
    server: Option<PathBuf>,
    /// The spec the server runs.
    #[arg(long, default_value = "fixtures/specs/booking.toml")]
    spec: PathBuf,
    /// Databases to run on, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sqlite,postgres")]
    databases: Vec<DatabaseKind>,
    /// PostgreSQL to create the run's schema in (loopback only).
    #[arg(long, env = "AUTH_LOAD_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Loopback address for the servers.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Unmeasured seconds before each scenario (connections and pools warm up).
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
    /// Most requests measured per scenario (per worker group).
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    /// Keep-alive connections (one worker each) per scenario.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Of the connections in the mixed scenario, how many flood the password grant (the others
    /// fetch the JWKS).
    #[arg(long, default_value_t = 16)]
    flood_connections: usize,
    /// Users created for the password grant (logins cycle through them).
    #[arg(long, default_value_t = 8)]
    users: usize,
    /// argon2 hashes timed for the password-grant target.
    #[arg(long, default_value_t = 15)]
    hash_samples: usize,
    /// `--per-ip-rps` given to the server: high, so the per-IP limit does not cap the run.
    #[arg(long, default_value_t = 1_000_000)]
    per_ip_rps: u32,
    /// `--login-attempts` given to the server: high, so the per-account limit does not cap the run.
    #[arg(long, default_value_t = 1_000_000)]
    login_attempts: u32,
    /// Scenarios to run (all by default).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Instead of the scenarios: a mixed load held this many seconds (e.g. 600), sampling memory,
    /// open file descriptors and p99 latency every `--sample-secs`.
    #[arg(long, default_value_t = 0)]
    soak_secs: u64,
    /// The sampling window of the soak run.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DatabaseKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Bare axum route in this process.
    Ceiling,
    /// `GET /.well-known/jwks.json`.
    Jwks,
    /// `POST /oauth/introspect` of an access token.
    Introspect,
    /// `refresh_token` grant, one chain per worker.
    Refresh,
    /// `password` grant over several users.
    Password,
    /// JWKS while the password grant is flooded.
    Mixed,
}

/// One line of the table.
struct Row {
    database: &'static str,
    scenario: String,
    summary: Summary,
    target: Option<Target>,
    load: f64,
    cpu: CpuUse,
    /// Requests of every group that ran in the window (the CPU was shared by all of them).
    requests_in_window: u64,
}

/// A target and whether the figure meets it.
struct Target {
    text: String,
    met: bool,
}

/// The machine during a window.
#[derive(Debug, Clone, Copy)]
struct Measured {
    load: f64,
    cpu: CpuUse,
    requests: u64,
}

/// What a database run measured besides the table rows.
struct Process {
    database: &'static str,
    start: Duration,
    rss_idle_kib: u64,
    rss_after_kib: u64,
    restart: Duration,
    rss_restart_kib: u64,
}

struct Bench {
    cli: Cli,
    cores: usize,
    hash_median: HashTime,
    passwords: auth_core::spec::PasswordPolicy,
    rows: Vec<Row>,
    processes: Vec<Process>,
    /// The soak run's report per database.
    soak_reports: Vec<(&'static str, String)>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("auth-load: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auth-load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    client::loopback(SocketAddr::new(cli.ip, 0))?;
    if cli.connections == 0 || cli.flood_connections == 0 || cli.flood_connections >= cli.connections {
        bail!("--connections must exceed --flood-connections, and both must be positive");
    }
    if cli.users == 0 {
        bail!("--users must be positive");
    }
    let spec = auth_core::spec::Spec::load(&cli.spec).with_context(|| format!("loading {}", cli.spec.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    eprintln!("timing {} argon2id hashes at the spec's parameters", cli.hash_samples);
    let hash_median = hash_time(&spec.passwords, cli.hash_samples, cores)?;
    eprintln!("argon2id median: {hash_median:?}");
    let mut bench =
        Bench {
        cli,
        cores,
        hash_median,
        passwords: spec.passwords.clone(),
        rows: Vec::new(),
        processes: Vec::new(),
        soak_reports: Vec::new(),
    };
    for kind in bench.cli.databases.clone() {
        let database = match kind {
            DatabaseKind::Sqlite => Database::Sqlite,
            DatabaseKind::Postgres => {
                Database::postgres(&bench.cli.postgres_url, &format!("load_{}", std::process::id())).await?
            }
        };
        let result = bench.run_database(&database).await;
        if let Err(e) = database.drop_schema().await {
            eprintln!("could not drop the schema: {e:#}");
        }
        result?;
    }
    let report = if bench.soak_reports.is_empty() {
        bench.report()
    } else {
        bench.soak_reports.iter().map(|(database, report)| format!("### Soak on {database}\n\n{report}")).collect()
    };
    println!("{report}");
    if let Some(out) = &bench.cli.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// One argon2id hash at the spec's parameters (the work of one password check), timed on a
/// thread of its own, in two ways: with its 19 MiB (`memory_kib`) allocated for each hash, as
/// `argon2` does by default (the first touch of every page is part of the cost), and with the
/// memory allocated once and reused (argon2's computation alone). Then the first way again with
/// `cores` threads hashing at once, as a server under a login flood runs them: argon2 is bound by
/// memory, and hashes running side by side slow each other down. Medians of each thread's CPU time
/// (wall time on a shared machine also counts waiting for a core).
fn hash_time(policy: &auth_core::spec::PasswordPolicy, samples: usize, cores: usize) -> anyhow::Result<HashTime> {
    let params = argon2::Params::new(policy.memory_kib, policy.iterations, policy.parallelism, Some(32))
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let blocks = params.block_count();
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let samples = samples.max(1);
    let joined = |thread: std::thread::ScopedJoinHandle<'_, anyhow::Result<(Timings, Timings)>>| {
        thread.join().map_err(|_| anyhow::anyhow!("a hashing thread panicked"))?
    };
    let (fresh, reused) =
        std::thread::scope(|scope| joined(scope.spawn(|| time_hashes(&argon2, blocks, samples, true))))?;
    let start = std::sync::Barrier::new(cores.max(1));
    let side_by_side = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores.max(1))
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    time_hashes(&argon2, blocks, samples, false)
                })
            })
            .collect();
        let mut all = Timings::default();
        for thread in threads {
            let (fresh, _) = joined(thread)?;
            all.wall.extend(fresh.wall);
            all.cpu.extend(fresh.cpu);
        }
        anyhow::Ok(all)
    })?;
    Ok(HashTime { fresh: fresh.medians(), reused: reused.medians(), parallel: side_by_side.medians() })
}

/// `samples` hashes with fresh memory and, with `also_reused`, `samples` with reused memory,
/// alternating (the second set stays empty otherwise).
fn time_hashes(
    argon2: &argon2::Argon2<'_>,
    blocks: usize,
    samples: usize,
    also_reused: bool,
) -> anyhow::Result<(Timings, Timings)> {
    let mut fresh = Timings::default();
    let mut reused = Timings::default();
    let mut memory = if also_reused { vec![argon2::Block::default(); blocks] } else { Vec::new() };
    let mut out = [0u8; 32];
    for i in 0..samples {
        let password = format!("a benchmark password {i}");
        let salt = [u8::try_from(i % 256).unwrap_or(0); 16];
        fresh.time(|| argon2.hash_password_into(password.as_bytes(), &salt, &mut out))?;
        if also_reused {
            reused.time(|| argon2.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut memory))?;
        }
    }
    Ok((fresh, reused))
}

#[derive(Default)]
struct Timings {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Timings {
    fn time(&mut self, hash: impl FnOnce() -> argon2::Result<()>) -> anyhow::Result<()> {
        let cpu_before = system::thread_cpu();
        let started = Instant::now();
        hash().map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        self.wall.push(started.elapsed());
        if let (Some(before), Some(after)) = (cpu_before, system::thread_cpu()) {
            self.cpu.push(after.saturating_sub(before));
        }
        Ok(())
    }

    /// Median CPU time (wall time where the thread's CPU time is not available) and median wall
    /// time.
    fn medians(self) -> (Duration, Duration) {
        let wall = stats::median(self.wall.clone());
        let cpu = if self.cpu.len() == self.wall.len() { stats::median(self.cpu) } else { wall };
        (cpu, wall)
    }
}

/// Medians of one argon2id hash, `(cpu, wall)`.
#[derive(Debug, Clone, Copy)]
struct HashTime {
    /// Alone, `argon2` allocating its memory per hash.
    fresh: (Duration, Duration),
    /// Alone, the memory reused.
    reused: (Duration, Duration),
    /// As `fresh`, with every core hashing at once.
    parallel: (Duration, Duration),
}

impl HashTime {
    /// What the password-grant target divides the cores by: the CPU time of a hash computed the
    /// standard way (`argon2` allocating its memory) while every core computes one, i.e. what the
    /// machine can do at most when all cores hash. A hash alone is faster: the target would
    /// assume that cores share memory bandwidth for free.
    fn for_target(&self) -> Duration {
        self.parallel.0
    }
}

fn password_of(user: usize) -> String {
    format!("load benchmark password {user}")
}

impl Bench {
    fn wants(&self, scenario: Scenario) -> bool {
        self.cli.scenarios.is_empty() || self.cli.scenarios.contains(&scenario)
    }

    async fn run_database(&mut self, database: &Database) -> anyhow::Result<()> {
        let name = database.name();
        let data_dir = std::env::temp_dir().join(format!("auth-load-{}-{}", std::process::id(), name.to_lowercase()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir)?;
        let binary = match &self.cli.server {
            Some(path) => path.clone(),
            None => server::sibling_server_binary()?,
        };
        let setup = ServerSetup {
            binary,
            spec: self.cli.spec.clone(),
            data_dir: data_dir.clone(),
            database: database.clone(),
            listen: server::free_loopback_port(self.cli.ip)?,
            per_ip_rps: self.cli.per_ip_rps,
            login_attempts: self.cli.login_attempts,
        };
        let result = self.run_server(&setup).await;
        if result.is_ok() {
            let _ = std::fs::remove_dir_all(&data_dir);
        } else {
            eprintln!("kept {} (server.log)", data_dir.display());
        }
        result
    }

    async fn run_server(&mut self, setup: &ServerSetup) -> anyhow::Result<()> {
        let name = setup.database.name();
        eprintln!("{name}: starting {} on {}", setup.binary.display(), setup.listen);
        let (server, start) = setup.start().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_idle_kib = server.rss_kib()?;
        eprintln!("{name}: first JWKS answer {start:?} after spawn; idle RSS {rss_idle_kib} KiB");

        let secret = setup.add_client(CONFIDENTIAL_CLIENT).await?;
        let users: Vec<(String, String)> =
            (0..self.cli.users).map(|i| (format!("load-user-{i}"), password_of(i))).collect();
        for (username, password) in &users {
            setup.add_user(username, password, "hotel-7").await?;
        }
        let users = Arc::new(users);
        let addr = setup.listen;
        let pid = server.pid();

        if self.cli.soak_secs > 0 {
            let pid = pid.context("the server has exited")?;
            let total = Duration::from_secs(self.cli.soak_secs);
            let window = Duration::from_secs(self.cli.sample_secs.max(1));
            let report = soak::run(addr, pid, &users, &secret, total, window).await?;
            self.soak_reports.push((name, report));
            server.stop().await?;
            return Ok(());
        }

        let mut ceiling_rate = None;
        if self.wants(Scenario::Ceiling) {
            let ceiling = Ceiling::start(self.cli.ip, self.cores)?;
            let calls = vec![Call::Get("/"); self.cli.connections];
            let mut summaries = self.measure(None, vec![(ceiling.addr, calls)]).await?;
            ceiling.stop();
            let (summary, measured) = summaries.remove(0);
            ceiling_rate = Some(summary.rate());
            self.push(name, "bare axum route (ceiling)", summary, None, measured);
        }
        if self.wants(Scenario::Jwks) {
            let calls = vec![Call::Get("/.well-known/jwks.json"); self.cli.connections];
            let (summary, measured) = self.measure(pid, vec![(addr, calls)]).await?.remove(0);
            let target = ceiling_rate.map(|c| share_target(&summary, c, 0.8));
            self.push(name, "GET /.well-known/jwks.json", summary, target, measured);
        }
        if self.wants(Scenario::Introspect) {
            let (user, password) = &users[0];
            let body = client::login(addr, user, password).await?;
            let token = client::access_token_of(&body).context("no access token in the login answer")?;
            let calls = vec![Call::introspect(CONFIDENTIAL_CLIENT, &secret, &token); self.cli.connections];
            let (summary, measured) = self.measure(pid, vec![(addr, calls)]).await?.remove(0);
            let target = ceiling_rate.map(|c| share_target(&summary, c, 0.5));
            self.push(name, "POST /oauth/introspect (access token)", summary, target, measured);
        }
        if self.wants(Scenario::Refresh) {
            let mut calls = Vec::with_capacity(self.cli.connections);
            for worker in 0..self.cli.connections {
                let (user, password) = &users[worker % users.len()];
                let body = client::login(addr, user, password).await?;
                let token = client::refresh_token_of(&body).context("no refresh token in the login answer")?;
                calls.push(Call::Refresh { token });
            }
            let (summary, measured) = self.measure(pid, vec![(addr, calls)]).await?.remove(0);
            let target = matches!(setup.database, Database::Postgres { .. }).then(|| Target {
                text: ">= 3000 req/s".into(),
                met: summary.rate() >= 3000.0 && summary.errors == 0,
            });
            self.push(name, "refresh_token grant (own chain per worker)", summary, target, measured);
        }
        let password_target = 0.85 * self.cores as f64 / self.hash_median.for_target().as_secs_f64();
        if self.wants(Scenario::Password) {
            let calls = password_calls(&users, self.cli.connections);
            let (summary, measured) = self.measure(pid, vec![(addr, calls)]).await?.remove(0);
            let target = Target {
                text: format!(">= {password_target:.1} req/s"),
                met: summary.rate() >= password_target && summary.errors == 0,
            };
            self.push(name, "password grant", summary, Some(target), measured);
        }
        if self.wants(Scenario::Mixed) {
            let flood = password_calls(&users, self.cli.flood_connections);
            let jwks = vec![Call::Get("/.well-known/jwks.json"); self.cli.connections - self.cli.flood_connections];
            let mut summaries = self.measure(pid, vec![(addr, jwks), (addr, flood)]).await?;
            let (flood, measured) = summaries.remove(1);
            let (jwks, _) = summaries.remove(0);
            let target = Target {
                text: "p99 <= 10 ms".into(),
                met: jwks.p99 <= Duration::from_millis(10) && jwks.errors == 0,
            };
            self.push(name, "JWKS during the password flood", jwks, Some(target), measured);
            self.push(name, "password flood beside the JWKS (no target)", flood, None, measured);
        }

        let rss_after_kib = server.rss_kib()?;
        server.stop().await?;
        eprintln!("{name}: RSS after the runs {rss_after_kib} KiB; restarting");
        let (server, restart) = setup.start().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_restart_kib = server.rss_kib()?;
        server.stop().await?;
        self.processes.push(Process { database: name, start, rss_idle_kib, rss_after_kib, restart, rss_restart_kib });
        Ok(())
    }

    /// Runs groups of workers over one window; each group has its own connections and budget.
    /// Returns, per group, its summary, the 1-minute load average at the end, and the cores that
    /// processes other than this one and the server kept busy during the window.
    async fn measure(
        &self,
        server_pid: Option<u32>,
        groups: Vec<(SocketAddr, Vec<Call>)>,
    ) -> anyhow::Result<Vec<(Summary, Measured)>> {
        let mut opened = Vec::new();
        for (addr, calls) in groups {
            let mut connections = Vec::with_capacity(calls.len());
            for call in calls {
                connections.push((Connection::open(addr).await?, call));
            }
            opened.push(connections);
        }
        let start = Instant::now() + Duration::from_secs(self.cli.warmup_secs);
        let stop = start + Duration::from_secs(self.cli.duration_secs);
        let mut handles = Vec::new();
        for connections in opened {
            let window = Window { start, stop, budget: Arc::new(AtomicU64::new(self.cli.max_requests)) };
            let workers: Vec<_> = connections
                .into_iter()
                .map(|(connection, call)| tokio::spawn(client::run_worker(connection, call, window.clone())))
                .collect();
            handles.push(workers);
        }
        tokio::time::sleep_until(start.into()).await;
        let cpu = CpuWindow::open(server_pid);
        let mut tallies = Vec::new();
        for workers in handles {
            let mut group = Vec::with_capacity(workers.len());
            for worker in workers {
                group.push(worker.await?);
            }
            tallies.push(group);
        }
        let cpu = cpu.map(|cpu| cpu.close()).unwrap_or_default();
        let load = system::load_average();
        let summaries: Vec<Summary> = tallies.into_iter().map(Summary::merge).collect();
        let requests = summaries.iter().map(|s| s.ok + s.errors).sum();
        let measured = Measured { load, cpu, requests };
        Ok(summaries.into_iter().map(|s| (s, measured)).collect())
    }

    fn push(
        &mut self,
        database: &'static str,
        scenario: &str,
        summary: Summary,
        target: Option<Target>,
        measured: Measured,
    ) {
        eprintln!(
            "{database}: {scenario}: {:.0} req/s, p50 {:?}, p99 {:?}, errors {} {}",
            summary.rate(),
            summary.p50,
            summary.p99,
            summary.errors,
            summary.first_error.as_deref().unwrap_or("")
        );
        let Measured { load, cpu, requests } = measured;
        self.rows.push(Row { database, scenario: scenario.to_owned(), summary, target, load, cpu, requests_in_window: requests });
    }

    fn report(&self) -> String {
        let mut out = String::new();
        let cli = &self.cli;
        let _ = writeln!(
            out,
            "{} cores; {} keep-alive connections per scenario ({} password + {} JWKS in the mixed one); \
             {} s measured after {} s of warm-up, at most {} requests per group; one argon2id hash \
             (m={} KiB, t={}, p={}), median of {} on one thread: {:.1} ms of CPU ({:.1} ms wall) with its memory \
             reused, {:.1} ms of CPU ({:.1} ms wall) with its memory allocated per hash; {:.1} ms of CPU ({:.1} ms \
             wall) with its memory allocated per hash and {} threads hashing at once (the password target's \
             hash time).\n",
            self.cores,
            cli.connections,
            cli.flood_connections,
            cli.connections - cli.flood_connections,
            cli.duration_secs,
            cli.warmup_secs,
            cli.max_requests,
            self.passwords.memory_kib,
            self.passwords.iterations,
            self.passwords.parallelism,
            cli.hash_samples,
            self.hash_median.reused.0.as_secs_f64() * 1e3,
            self.hash_median.reused.1.as_secs_f64() * 1e3,
            self.hash_median.fresh.0.as_secs_f64() * 1e3,
            self.hash_median.fresh.1.as_secs_f64() * 1e3,
            self.hash_median.parallel.0.as_secs_f64() * 1e3,
            self.hash_median.parallel.1.as_secs_f64() * 1e3,
            self.cores,
        );
        let _ = writeln!(
            out,
            "| Database | Scenario | req/s | p50 | p99 | errors | target | met | server CPU/req | auth-load CPU/req | postgres CPU/req | other procs | load 1m |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            let s = &row.summary;
            let errors = if s.errors == 0 {
                "0".to_owned()
            } else {
                let by: Vec<String> = s.errors_by_status.iter().map(|(k, v)| format!("{v}×{k}")).collect();
                by.join(" ")
            };
            let (target, met) = match &row.target {
                Some(t) => (t.text.as_str(), if t.met { "yes" } else { "**no**" }),
                None => ("", ""),
            };
            let per_request = |seconds: f64| {
                if row.requests_in_window == 0 || seconds == 0.0 {
                    "-".to_owned()
                } else {
                    format!("{:.0} µs", seconds / row.requests_in_window as f64 * 1e6)
                }
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {} of {} | {} | {} | {} | {} | {} | {:.2} cores | {:.2} |",
                row.database,
                row.scenario,
                s.rate(),
                ms(s.p50),
                ms(s.p99),
                errors,
                s.ok + s.errors,
                target,
                met,
                per_request(row.cpu.server),
                per_request(row.cpu.load_generator),
                per_request(row.cpu.postgres),
                row.cpu.others_cores(),
                row.load,
            );
        }
        let _ = writeln!(out, "\n| Database | spawn → first JWKS 200 | idle RSS | RSS after the runs | restart → first JWKS 200 | RSS after restart |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for p in &self.processes {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} MiB | {:.1} MiB | {} | {:.1} MiB |",
                p.database,
                ms(p.start),
                p.rss_idle_kib as f64 / 1024.0,
                p.rss_after_kib as f64 / 1024.0,
                ms(p.restart),
                p.rss_restart_kib as f64 / 1024.0,
            );
        }
        out
    }
}

fn password_calls(users: &Arc<Vec<(String, String)>>, workers: usize) -> Vec<Call> {
    // Each worker starts at a different user, so the logins spread over all of them.
    (0..workers).map(|w| Call::Password { users: users.clone(), next: w }).collect()
}

fn share_target(summary: &Summary, ceiling: f64, share: f64) -> Target {
    let ratio = if ceiling > 0.0 { summary.rate() / ceiling } else { 0.0 };
    Target {
        text: format!(">= {:.0}% of ceiling (is {:.0}%)", share * 100.0, ratio * 100.0),
        met: ratio >= share && summary.errors == 0,
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 { format!("{ms:.0} ms") } else { format!("{ms:.2} ms") }
}
