//! `evd-api`: the REST API on its own. Reads settings, sets up logging, binds, runs.

use anyhow::Context;
use clap::{Parser, Subcommand};
use evd_api::settings::Settings;
use evd_api::signal::shutdown_signal;
use evd_protocol::auth::{Claims, Role, Tier};
use std::io::IsTerminal;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "evd-api",
    version,
    about = "The evd REST API and system of record"
)]
struct Cli {
    /// A TOML settings file; `EVD_*` environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Print a token signed with the configured key (for development and tests).
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        user: String,
        /// The org id.
        #[arg(long)]
        org: String,
        /// `attendee`, `organizer` or `owner`.
        #[arg(long, default_value = "attendee", value_parser = parse_role)]
        role: Role,
        /// `vip` or `standard`.
        #[arg(long, value_parser = parse_tier)]
        tier: Option<Tier>,
        /// Validity in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| "expected attendee, organizer or owner".into())
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| "expected vip or standard".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("evd-api: invalid configuration: {e}");
            std::process::exit(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Token {
            user,
            org,
            role,
            tier,
            ttl_secs,
        } => {
            let signer = settings.jwt.signer().context("jwt settings")?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("clock before 1970")?
                .as_secs();
            let mut claims = Claims::new(&user, &org, role, now, ttl_secs);
            claims.tier = tier;
            let token = signer.sign(&claims).context("signing")?;
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
            Ok(())
        }
        Command::Serve => serve(settings).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if std::io::stdout().is_terminal() {
        logs.init();
    } else {
        logs.json().init();
    }
    tracing::info!(?settings, "starting");
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    evd_api::run(listener, settings, shutdown).await?;
    Ok(())
}
