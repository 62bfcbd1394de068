//! The servers under load: `auth-server` as a child process (on a free loopback port, with a
//! temporary data directory and either SQLite in it or a PostgreSQL schema of its own), set up
//! through its operator commands; and the in-process bare axum route that gives the ceiling.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::Connection as _;
use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, Command};

use crate::client::{self, loopback};

/// The database a run uses.
#[derive(Debug, Clone)]
pub enum Database {
    /// A SQLite file in the data directory (the server's default).
    Sqlite,
    /// A schema of its own on a loopback PostgreSQL, created and dropped by the run.
    Postgres {
        /// The server's URL (with `search_path` set to the schema).
        url: String,
        /// The URL of the database the schema lives in.
        admin_url: String,
        /// The schema.
        schema: String,
    },
}

impl Database {
    /// `sqlite` or `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres { .. } => "PostgreSQL",
        }
    }

    /// Creates a fresh schema `schema` on the PostgreSQL at `base_url`, which must be on loopback.
    pub async fn postgres(base_url: &str, schema: &str) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(base_url).context("the PostgreSQL URL")?;
        let host = parsed.host_str().unwrap_or("");
        let is_loopback = host == "localhost"
            || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !is_loopback {
            bail!("refusing PostgreSQL at {host:?}: the load benchmark only uses loopback services");
        }
        if !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            bail!("schema name {schema:?}: lowercase letters, digits and _ only");
        }
        let mut admin = sqlx::PgConnection::connect(base_url).await.context("connecting to PostgreSQL")?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut admin).await?;
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await?;
        admin.close().await?;
        // sqlx reads `options` as a form-encoded query value: `-c search_path=<schema>`.
        let separator = if parsed.query().is_some() { '&' } else { '?' };
        let url = format!("{base_url}{separator}options=-c%20search_path%3D{schema}");
        Ok(Self::Postgres { url, admin_url: base_url.to_owned(), schema: schema.to_owned() })
    }

    /// Drops the run's schema.
    pub async fn drop_schema(&self) -> anyhow::Result<()> {
        if let Self::Postgres { admin_url, schema, .. } = self {
            let mut admin = sqlx::PgConnection::connect(admin_url).await?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut admin).await?;
            admin.close().await?;
        }
        Ok(())
    }
}

/// How to run `auth-server`.
#[derive(Debug, Clone)]
pub struct ServerSetup {
    /// The binary.
    pub binary: PathBuf,
    /// The spec file.
    pub spec: PathBuf,
    /// The data directory (master key; the SQLite file too on SQLite).
    pub data_dir: PathBuf,
    /// The database.
    pub database: Database,
    /// The address to listen on (loopback).
    pub listen: SocketAddr,
    /// `--per-ip-rps`.
    pub per_ip_rps: u32,
    /// `--login-attempts`.
    pub login_attempts: u32,
}

impl ServerSetup {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        // Only what is set here: no AUTH_* variable of the calling shell leaks in.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AUTH_") {
                command.env_remove(name);
            }
        }
        command
            .arg("--spec")
            .arg(&self.spec)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--per-ip-rps")
            .arg(self.per_ip_rps.to_string())
            .arg("--login-attempts")
            .arg(self.login_attempts.to_string());
        if let Database::Postgres { url, .. } = &self.database {
            command.arg("--database-url").arg(url);
        }
        command
    }

    /// Starts the server; returns once `GET /.well-known/jwks.json` answers 200, with the time
    /// from spawning the process to that first answer.
    pub async fn start(&self) -> anyhow::Result<(RunningServer, Duration)> {
        loopback(self.listen)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("server.log"))
            .context("opening the server log")?;
        let spawned = Instant::now();
        let child = self
            .command()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let mut server = RunningServer { child };
        let answered = tokio::select! {
            answered = client::wait_for_200(self.listen, "/.well-known/jwks.json", Duration::from_secs(60)) => answered?,
            status = server.child.wait() => bail!(
                "auth-server exited during start ({}); see {}",
                status?,
                self.data_dir.join("server.log").display()
            ),
        };
        Ok((server, answered - spawned))
    }

    /// `auth-server users add <username> --claim tenant_id=...`, the password on stdin.
    pub async fn add_user(&self, username: &str, password: &str, tenant: &str) -> anyhow::Result<()> {
        let mut child = self
            .command()
            .args(["users", "add", username, "--claim"])
            .arg(format!("tenant_id={tenant}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().context("the child's stdin")?;
        stdin.write_all(password.as_bytes()).await?;
        drop(stdin);
        let output = child.wait_with_output().await?;
        if !output.status.success() {
            bail!("users add {username}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }

    /// `auth-server clients add <id>`; returns the secret it prints (the last line).
    pub async fn add_client(&self, id: &str) -> anyhow::Result<String> {
        let output = self.command().args(["clients", "add", id]).stdin(Stdio::null()).output().await?;
        if !output.status.success() {
            bail!("clients add {id}: {}", String::from_utf8_lossy(&output.stderr));
        }
        let stdout = String::from_utf8(output.stdout)?;
        let secret = stdout.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("");
        if secret.is_empty() || secret.contains(' ') {
            bail!("clients add {id} printed no secret: {stdout}");
        }
        Ok(secret.to_owned())
    }
}

/// A started `auth-server` process, killed when dropped.
pub struct RunningServer {
    child: Child,
}

impl RunningServer {
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The process's resident set size (`VmRSS` of `/proc/<pid>/status`), in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("the server has exited")?;
        rss_kib(pid)
    }

    /// Stops the process.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line in /proc/<pid>/status")
}

/// A free port on the loopback interface (bound, then released for the server to take).
pub fn free_loopback_port(ip: IpAddr) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(loopback(SocketAddr::new(ip, 0))?)?;
    Ok(listener.local_addr()?)
}

/// The bare axum route (`GET /` answering a constant) on its own runtime of `threads` workers, as
/// a separate server process would have: the ceiling of this machine for one HTTP round trip.
pub struct Ceiling {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ceiling {
    /// Starts the route on `ip` (loopback) and a free port.
    pub fn start(ip: IpAddr, threads: usize) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(loopback(SocketAddr::new(ip, 0))?)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(Self { addr, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// Stops the route and its runtime.
    pub fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The release `auth-server` next to this binary (both come from one `cargo build --release`).
pub fn sibling_server_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let candidate = dir.join("auth-server");
    if candidate.is_file() {
        Ok(candidate)
    } else {
        bail!("no auth-server next to {}: build it (cargo build --release -p auth-server) or pass --server", exe.display())
    }
}
