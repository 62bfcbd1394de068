//! `auth-server`: serve (the default) and the operator commands. With no arguments it serves on
//! 127.0.0.1:8080 from `./auth-data/` (SQLite database, sealed keys, a generated master key file),
//! creating what is missing.

// A command-line tool: printing its results is its job.
#![allow(clippy::print_stdout)]

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use auth_core::authority::Admin;
use auth_core::clock::SystemClock;
use auth_core::keys::MasterKey;
use auth_core::random::OsEntropy;
use auth_core::spec::SigningAlgorithm;
use auth_server::config::{SERVE_ONLY_FLAGS, ServerArgs, ServerConfig};
use auth_server::served_spec;
use auth_server::state::{self, AppState};
use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: request handling allocates many small, short-lived
/// objects (headers, form values, claims, JSON), which glibc's allocator serves more slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "auth-server", version, about = "The auth HTTP service and its operator commands")]
struct Cli {
    #[command(flatten)]
    common: ServerArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Invite users: an invitation sets claims (a tenant, a role) on the account that redeems it.
    #[command(subcommand)]
    Invitations(InvitationsCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check the spec and the database.
    Check,
}

#[derive(Subcommand, Debug)]
enum UsersCommand {
    /// Add a user; the password is read from standard input.
    Add {
        /// The username.
        username: String,
        /// A custom claim, `name=value` (JSON values are parsed, anything else is a string).
        #[arg(long = "claim")]
        claims: Vec<String>,
    },
    /// Set (or with `--unset`, remove) custom claims of a user; tokens carry them from the
    /// user's next refresh.
    SetClaim {
        /// The username.
        username: String,
        /// A claim to set, `name=value` (JSON values are parsed, anything else is a string).
        #[arg(required_unless_present = "unset")]
        claims: Vec<String>,
        /// A claim to remove.
        #[arg(long)]
        unset: Vec<String>,
    },
    /// List users.
    List {
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Disable a user and end all of its sessions.
    Disable {
        /// The username.
        username: String,
    },
}

#[derive(Subcommand, Debug)]
enum ClientsCommand {
    /// Register a client of the spec; a confidential client's secret is printed once.
    Add {
        /// The client id (as in the spec).
        id: String,
    },
    /// List registered clients.
    List,
}

#[derive(Subcommand, Debug)]
enum InvitationsCommand {
    /// Create an invitation and print its token (shown once, stored hashed).
    Create {
        /// A claim the invitation sets, `name=value` (JSON values are parsed, anything else is a
        /// string).
        #[arg(long = "claim", required = true)]
        claims: Vec<String>,
        /// Reserve the invitation for this username.
        #[arg(long)]
        username: Option<String>,
        /// How long it can be redeemed (`7d`, `12h`; at most 30 days).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        expires_in: std::time::Duration,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// List signing keys and their states.
    List,
    /// Run the rotation policy now; with `--now`, a new key signs at once.
    Rotate {
        /// Emergency rotation: in every chain in use (one per signing algorithm), a new key signs at
        /// once and the active one stops signing (it stays published for its tokens). Verifiers
        /// whose cached key set lacks the new key refuse its tokens until they fetch the key set
        /// again.
        #[arg(long)]
        now: bool,
        /// With `--now`: rotate only the chain of this algorithm (EdDSA, ES256 or RS256).
        #[arg(long, requires = "now", value_parser = parse_algorithm)]
        alg: Option<SigningAlgorithm>,
    },
    /// Unpublish a key at once and erase its private half (a compromised key): every token it
    /// signed fails once each replica reloads its keys (`--key-refresh-secs`). A revoked signing
    /// key is replaced by a new one of its algorithm, active at once.
    Revoke {
        /// The key's `kid` (see `keys list`).
        kid: String,
    },
    /// Seal every signing key again under a new master key (rotation of the master key). The new
    /// key is read from `--new-master-key` (`AUTH_NEW_MASTER_KEY`), else from
    /// `--new-master-key-file`, else from standard input (base64 or 64 hex digits); the current
    /// one is configured as for `serve`.
    Rewrap {
        /// The new master key.
        #[arg(long, env = "AUTH_NEW_MASTER_KEY", hide_env_values = true)]
        new_master_key: Option<String>,
        /// A file holding the new master key.
        #[arg(long, env = "AUTH_NEW_MASTER_KEY_FILE")]
        new_master_key_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// The latest audit events, newest first.
    Tail {
        /// How many.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: u32,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = parse_cli();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auth-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command line, with the flags only `serve` reads left out of the other commands' help.
/// A signing algorithm named as in the spec's `tokens.algorithm`.
fn parse_algorithm(text: &str) -> Result<SigningAlgorithm, String> {
    SigningAlgorithm::parse(text).ok_or_else(|| format!("{text:?} is not a signing algorithm (EdDSA, ES256 or RS256)"))
}

fn parse_cli() -> Cli {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let root = Cli::command();
    let serve_only: Vec<clap::Arg> =
        root.get_arguments().filter(|arg| SERVE_ONLY_FLAGS.contains(&arg.get_id().as_str())).cloned().collect();
    let matches = hide_in_subcommands(root, &serve_only).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Gives every subcommand but `serve` hidden copies of `hidden` (clap does not propagate a global
/// flag to a subcommand that has its own), recursively.
fn hide_in_subcommands(mut command: clap::Command, hidden: &[clap::Arg]) -> clap::Command {
    let names: Vec<String> =
        command.get_subcommands().map(|sub| sub.get_name().to_owned()).filter(|name| name != "serve").collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| {
            let sub = hidden.iter().fold(sub, |sub, arg| sub.arg(arg.clone().hide(true)));
            hide_in_subcommands(sub, hidden)
        });
    }
    command
}

/// The service on the system clock and the OS CSPRNG. Its keys are loaded, not rotated: commands
/// that only read leave the database as it is.
async fn open(config: ServerConfig) -> anyhow::Result<Arc<AppState>> {
    let state = state::build_state(config, Arc::new(SystemClock), Arc::new(OsEntropy::new())).await?;
    Ok(state)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = cli.common.config();
    let command = cli.command.unwrap_or(Command::Serve);
    // Operator commands act on the spec the data directory is served with.
    if !matches!(command, Command::Serve | Command::Migrate)
        && let Some(note) = served_spec::resolve(&mut config, cli.common.allow_other_spec)?
    {
        eprintln!("{note}");
    }
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            state::open_store(&config).await?;
            println!("migrations applied to {}", redact(&config.database_url()));
            Ok(())
        }
        Command::Check => {
            let spec = config.load_spec()?;
            println!("spec ok: issuer {}, hash {}", spec.issuer, spec.hash());
            let state = open(config).await?;
            state.authority.ping().await?;
            if state.authority.list_keys().await?.is_empty() {
                println!("database ok; no signing key yet (serve or `keys rotate` creates the first)");
            } else {
                let snapshot = state.authority.load_keys().await?;
                println!("database ok; active key {} ({})", snapshot.active.kid, snapshot.active.key.algorithm());
            }
            let lacking = state.authority.users_lacking_required_claims().await?;
            if lacking > 0 {
                println!(
                    "warning: {lacking} user(s) lack a claim the spec requires; their tokens will be refused until \
                     `auth-server users set-claim` (or a claim `default`) fills it"
                );
            }
            Ok(())
        }
        Command::Users(command) => users(open(config).await?, command).await,
        Command::Clients(command) => clients(open(config).await?, command).await,
        Command::Invitations(InvitationsCommand::Create { claims, username, expires_in }) => {
            let state = open(config).await?;
            let claims = claim_arguments(&claims)?;
            let invitation =
                state.authority.create_invitation(claims, username.as_deref(), expires_in, Admin::Operator).await?;
            println!("{}", invitation.token);
            eprintln!("expires at {} (Unix seconds); redeem once, at sign-up (`invitation`) or with POST /v1/invitations/accept", invitation.expires_at);
            Ok(())
        }
        Command::Keys(command) => keys(open(config).await?, command).await,
        Command::Audit(AuditCommand::Tail { limit }) => {
            let state = open(config).await?;
            for event in state.authority.audit_tail(limit).await? {
                println!("{}", serde_json::to_string(&event)?);
            }
            Ok(())
        }
    }
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let listen = config.listen;
    let served = config.clone();
    let state = open(config).await?;
    state.rotate_keys().await?;
    if let Err(e) = served_spec::record(&served, &state.spec) {
        tracing::warn!(error = %format!("{e:#}"), "could not record the served spec in the data directory; operator commands will not find it");
    }
    // A claim made required after users signed up locks those users out of every verifier. The
    // count reads every user, so it runs beside serving rather than before it.
    let counting = state.clone();
    tokio::spawn(async move {
        match counting.authority.users_lacking_required_claims().await {
            Ok(0) => {}
            Ok(lacking) => tracing::warn!(
                lacking,
                "{lacking} user(s) lack a claim the spec requires and have no default for it: their tokens will \
                 be refused until `auth-server users set-claim` (or a claim `default`) fills it"
            ),
            Err(e) => tracing::warn!(error = %e, "could not count users lacking a required claim"),
        }
    });
    // RFC 9700 section 2.4: the password grant MUST NOT be used; it stays for migrations.
    for (id, client) in &state.spec.clients {
        if client.allows("password") {
            tracing::warn!(
                client = %id,
                "client {id} may use the password grant, which RFC 9700 (OAuth 2.0 Security BCP) section 2.4 forbids \
                 and OAuth 2.1 drops: the user's password passes through the client; move it to a flow through the \
                 browser when there is one"
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        listen = %local,
        issuer = %state.spec.issuer,
        spec_hash = %state.spec.hash(),
        database = %redact(&state.config.database_url()),
        "auth-server listening"
    );
    tracing::info!(
        "add a user: `echo 'a long password' | auth-server users add alice`; register a confidential client: `auth-server clients add <id>`; keys: http://{local}/.well-known/jwks.json"
    );
    auth_server::http::serve(state, listener).await
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

async fn users(state: Arc<AppState>, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add { username, claims } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password).context("reading the password from stdin")?;
            let password = password.strip_suffix('\n').unwrap_or(&password);
            let password = password.strip_suffix('\r').unwrap_or(password);
            let user = state.authority.add_user(&username, password, claim_arguments(&claims)?).await?;
            println!("created user {} ({})", user.username, user.id);
        }
        UsersCommand::SetClaim { username, claims, unset } => {
            let user = state.authority.user_by_username(&username).await?.with_context(|| format!("no user {username}"))?;
            let mut changes = claim_arguments(&claims)?;
            changes.extend(unset.into_iter().map(|name| (name, serde_json::Value::Null)));
            let user = state.authority.set_user_claims(&user.id, &changes, Admin::Operator).await?;
            println!("{}\t{}", user.username, serde_json::Value::Object(user.claims));
        }
        UsersCommand::List { limit } => {
            for user in state.authority.list_users(limit, 0).await? {
                let status = if user.disabled { "disabled" } else { "active" };
                println!("{}\t{}\t{}\t{}", user.id, user.username, status, serde_json::Value::Object(user.claims));
            }
        }
        UsersCommand::Disable { username } => {
            let user = state.authority.user_by_username(&username).await?.with_context(|| format!("no user {username}"))?;
            let ended = state.authority.disable_user(&user.id).await?;
            // Back-channel logouts to the user's relying parties go out before the command exits.
            state.logouts.wait_idle(std::time::Duration::from_secs(30)).await;
            println!("disabled {}; ended {ended} session(s)", user.username);
        }
    }
    Ok(())
}

/// `name=value` arguments as claims: JSON values are parsed, anything else is a string.
fn claim_arguments(arguments: &[String]) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut map = serde_json::Map::new();
    for claim in arguments {
        let (name, value) = claim.split_once('=').context("a claim is written name=value")?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        map.insert(name.to_owned(), value);
    }
    Ok(map)
}

async fn clients(state: Arc<AppState>, command: ClientsCommand) -> anyhow::Result<()> {
    match command {
        ClientsCommand::Add { id } => match state.authority.register_client(&id).await? {
            Some(secret) => println!("registered {id}; its secret (shown once, stored hashed):\n{secret}"),
            None => println!("registered public client {id} (no secret)"),
        },
        ClientsCommand::List => {
            for client in state.authority.list_clients().await? {
                let kind = if client.secret_hash.is_some() { "confidential" } else { "public" };
                println!("{}\t{kind}\t{}", client.id, client.created_at);
            }
        }
    }
    Ok(())
}

async fn keys(state: Arc<AppState>, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::List => {}
        KeysCommand::Rotate { now: false, .. } => {
            let steps = state.authority.rotate_keys().await?;
            println!("applied: {steps:?}");
        }
        KeysCommand::Rotate { now: true, alg } => {
            for (alg, kid) in state.authority.rotate_keys_now(alg).await? {
                println!("key {kid} signs {alg} from now; the previous {alg} key stays published for its tokens");
            }
        }
        KeysCommand::Revoke { kid } => match state.authority.revoke_key(&kid).await? {
            Some(successor) => println!("revoked {kid}; key {successor} signs from now"),
            None => println!("revoked {kid}"),
        },
        KeysCommand::Rewrap { new_master_key, new_master_key_file } => {
            let new = new_master_key_from(new_master_key.as_deref(), new_master_key_file.as_deref())?;
            let report = state.authority.rewrap_keys(&new).await?;
            println!(
                "rewrapped {} key(s) under master key {} ({} already under it, {} retired)",
                report.rewrapped.len(),
                new.id(),
                report.unchanged.len(),
                report.retired.len()
            );
        }
    }
    for key in state.authority.list_keys().await? {
        println!(
            "{}\t{}\t{}\tactivates {}\tdeactivated {}\tsealed {}",
            key.kid,
            key.alg,
            key.state.as_str(),
            key.activates_at,
            key.deactivated_at.map_or_else(|| "-".to_owned(), |t| t.to_string()),
            if key.private_sealed.is_some() { key.master_key_id.as_str() } else { "-" }
        );
    }
    Ok(())
}

/// The new master key of `keys rewrap`: the flag (or `AUTH_NEW_MASTER_KEY`), else the file, else
/// stdin.
fn new_master_key_from(key: Option<&str>, file: Option<&std::path::Path>) -> anyhow::Result<MasterKey> {
    if let Some(text) = key {
        return MasterKey::from_text(text).context("AUTH_NEW_MASTER_KEY");
    }
    let text = match file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading the new master key from stdin")?;
            text
        }
    };
    MasterKey::from_text(&text).context("the new master key")
}
