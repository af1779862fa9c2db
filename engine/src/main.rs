//! `evd`: run the engine, or mint a development token.

use anyhow::Context;
use clap::{Parser, Subcommand};
use evd_api::signal::shutdown_signal;
use evd_engine::Settings;
use evd_protocol::auth::{Claims, Role, Tier};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "evd", version, about = "Realtime engine for live events")]
struct Cli {
    /// TOML config file (also EVD_CONFIG).
    #[arg(long, global = true, env = "EVD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine and the REST API in one process (127.0.0.1:8080, SQLite at ./evd.db,
    /// in-memory broker by default).
    Serve {
        /// Address to listen on (overrides config and EVD_LISTEN).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run the engine alone, over the store; pair it with `evd api` on the same database.
    Engine {
        /// Address to listen on (overrides config and EVD_LISTEN).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run the REST API alone (with the offer sweeper).
    Api {
        /// Address to listen on (overrides config and EVD_LISTEN).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Print a token signed with the configured key.
    Token {
        /// User id (`sub`).
        #[arg(long)]
        user: String,
        /// Organization id.
        #[arg(long)]
        org: String,
        /// owner, organizer or attendee.
        #[arg(long, default_value = "attendee")]
        role: String,
        /// vip or standard.
        #[arg(long)]
        tier: Option<String>,
        /// Rooms an attendee may join, comma-separated (e.g. event:E1,session:S1).
        #[arg(long, value_delimiter = ',')]
        rooms: Vec<String>,
        /// Lifetime, e.g. 1h, 30m, 7d.
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("evd: configuration error: {e}");
            std::process::exit(2);
        }
    };
    match cli.command {
        Command::Token {
            user,
            org,
            role,
            tier,
            rooms,
            ttl,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("unknown role `{role}`: use owner, organizer or attendee")
            })?;
            let tier = tier
                .map(|t| {
                    Tier::parse(&t)
                        .with_context(|| format!("unknown tier `{t}`: use vip or standard"))
                })
                .transpose()?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let mut claims = Claims::new(&user, &org, role, now, ttl.as_secs());
            claims.tier = tier;
            if !rooms.is_empty() {
                claims.rooms = Some(rooms);
            }
            let token = settings.api.jwt.mint(claims)?;
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
            Ok(())
        }
        Command::Serve { listen } => start(settings, listen, Mode::All),
        Command::Engine { listen } => start(settings, listen, Mode::Engine),
        Command::Api { listen } => start(settings, listen, Mode::Api),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    Engine,
    Api,
}

fn start(mut settings: Settings, listen: Option<SocketAddr>, mode: Mode) -> anyhow::Result<()> {
    if let Some(addr) = listen {
        settings.listen = addr;
    }
    init_tracing();
    for var in Settings::unknown_env() {
        tracing::warn!(%var, "ignoring an EVD_ variable that names no setting");
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if settings.workers > 0 {
        runtime.worker_threads(settings.workers);
    }
    runtime.build()?.block_on(serve(settings, mode))
}

async fn serve(settings: Settings, mode: Mode) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    if settings.api.jwt.uses_dev_secret() {
        tracing::warn!(
            "using the built-in development JWT secret; set EVD_JWT_SECRET in production"
        );
    }
    let tls = settings.tls.cert_path.is_some();
    let (ws, http) = if tls {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    tracing::info!(%addr, "evd listening");
    let db = evd_api::store::redact_url(&settings.api.database_url);
    if mode != Mode::Api {
        eprintln!(
            "evd listening on {ws}://{addr}/ws\n  store:         {db}\n  mint a token:  evd token --user u1 --org o1 --role organizer\n  connect:       {ws}://{addr}/ws?token=<token>\n  metrics:       {http}://{addr}/metrics"
        );
    }
    if mode != Mode::Engine {
        eprintln!("evd REST API on {http}://{addr}/api/v1 (OpenAPI: /api/v1/openapi.json)");
    }
    if mode == Mode::All {
        eprintln!("  page:          {http}://{addr}/");
        if settings.api.jwt.uses_dev_secret() {
            eprintln!("  dev sign-in:   POST {http}://{addr}/dev/token (development secret only)");
        }
    }
    match mode {
        Mode::All => evd_engine::run(listener, settings, shutdown_signal()).await?,
        Mode::Engine => evd_engine::run_engine(listener, settings, shutdown_signal()).await?,
        Mode::Api => {
            let token = tokio_util::sync::CancellationToken::new();
            let cancel = token.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                cancel.cancel();
            });
            evd_api::run(listener, settings.api(), token).await?;
        }
    }
    tracing::info!("evd stopped");
    Ok(())
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("EVD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    }
}
