//! The `jobchain` command's implementation: `main.rs` only parses and dispatches here.

pub mod bench;
pub mod demo;

use clap::{Parser, Subcommand};

/// Command-line interface of jobchain.
#[derive(Debug, Parser)]
#[command(
    name = "jobchain",
    version,
    about = "A durable job queue with first-class chains and workflows"
)]
pub struct Cli {
    /// Log more (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the order workflow (payment, confirmation, invoice and inventory) on a SQLite
    /// file or PostgreSQL.
    Demo(demo::DemoArgs),
    /// Measures throughput and latency (see docs/benchmarks.md).
    Bench(bench::BenchArgs),
    /// A no-op worker process for `jobchain bench` (internal).
    #[command(hide = true)]
    BenchWorker {
        /// Store location.
        #[arg(long)]
        database: String,
    },
    /// Creates or upgrades the schema of a database, then exits.
    Migrate {
        /// SQLite file path or PostgreSQL URL (postgres://...; `?jobchain_schema=NAME`
        /// picks the schema).
        #[arg(long, default_value = "jobchain.db")]
        database: String,
    },
}

/// An error of a command, printed by `main` as `error: ...`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl From<jobchain::Error> for CliError {
    fn from(e: jobchain::Error) -> Self {
        CliError(e.to_string())
    }
}

/// Sets up logging to standard error: warnings by default.
pub fn init_tracing(verbose: u8) {
    // sqlx reports statements slower than a second as warnings; under benchmark load
    // that is expected, so only its errors are shown unless asked for.
    let default = match verbose {
        0 => "warn,sqlx=error",
        1 => "info,sqlx=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::BenchWorker { database } => bench::worker::run(&database).await,
        Command::Migrate { database } => {
            let client = jobchain::open(&database).await?;
            client.close().await;
            println!("{database}: schema is current");
            Ok(())
        }
    }
}
