//! The `jobchain` command's implementation: `main.rs` only parses and dispatches here.

pub mod bench;
pub mod chaos;
pub mod commands;
pub mod common;
pub mod demo;
pub mod worker;

use clap::{Parser, Subcommand, ValueEnum};

use commands::enqueue::EnqueueArgs;
use commands::jobs::{DlqCommand, JobsCommand};
use commands::workflow::WorkflowCommand;
use common::{DbArgs, OutputArgs};

/// Command-line interface of jobchain.
#[derive(Debug, Parser)]
#[command(
    name = "jobchain",
    version,
    about = "A durable job queue with first-class chains and workflows",
    after_help = "Every command that reads or writes jobs takes --database (a SQLite file or a \
postgres:// URL), else JOBCHAIN_DATABASE, else jobchain.db. Exit status: 0 success, 1 a failed \
operation, 2 bad usage."
)]
pub struct Cli {
    /// Log more (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// How log lines are written to standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people: colours only on a terminal.
    Text,
    /// One JSON object per line, for machines.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the handlers of a jobchain.toml, each a program in any language.
    Worker(worker::WorkerArgs),
    /// Enqueues one job; prints its id.
    Enqueue(EnqueueArgs),
    /// Workflows: start, show, list, cancel, wait.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Jobs: list, show, cancel, retry.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// The dead-letter queue: list, retry, purge.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Lists the periodic jobs of a config file with their last and next runs.
    #[command(subcommand)]
    Periodic(commands::periodic::PeriodicCommand),
    /// Pauses, resumes and lists queues.
    #[command(subcommand)]
    Queue(commands::queue::QueueCommand),
    /// Per queue: jobs by state, the oldest pending job, kinds no live worker handles.
    Stats {
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The live workers.
    Workers {
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Serves the HTTP API, the web dashboard and Prometheus metrics.
    Serve(commands::serve::ServeArgs),
    /// Runs the order workflow (payment, confirmation, invoice and inventory) on a SQLite
    /// file or PostgreSQL.
    Demo(demo::DemoArgs),
    /// Measures throughput and latency (see docs/benchmarks.md).
    Bench(bench::BenchArgs),
    /// Worker processes under a seeded fault schedule, then a check that nothing was
    /// lost, duplicated or stuck (docs/reliability.md).
    Chaos(chaos::ChaosArgs),
    /// A worker process of `jobchain chaos` (internal).
    #[command(hide = true)]
    ChaosWorker {
        /// Store location.
        #[arg(long)]
        database: String,
        /// Where to append the history of handler starts.
        #[arg(long)]
        history: std::path::PathBuf,
    },
    /// A no-op worker process for `jobchain bench` (internal).
    #[command(hide = true)]
    BenchWorker {
        /// Store location.
        #[arg(long)]
        database: String,
    },
    /// Creates or upgrades the schema of a database, then exits.
    Migrate {
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
    },
}

/// An error of a command, printed by `main` as `error: ...`; it decides the exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    message: String,
    usage: bool,
}

impl CliError {
    /// An operation that failed (exit status 1).
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            usage: false,
        }
    }

    /// Input that cannot be used (exit status 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            usage: true,
        }
    }

    /// The exit status: 1 for a failed operation, 2 for bad usage.
    pub fn exit_code(&self) -> u8 {
        if self.usage {
            2
        } else {
            1
        }
    }

    /// Prefixes the message with where it happened (unless it already says so).
    pub fn in_context(mut self, context: &str) -> Self {
        if !self.message.contains(context) {
            self.message = format!("{context}: {}", self.message);
        }
        self
    }
}

impl From<jobchain::Error> for CliError {
    fn from(e: jobchain::Error) -> Self {
        let usage = matches!(
            &e,
            jobchain::Error::Store(jobchain::StoreError::Invalid(_))
                | jobchain::Error::UnsupportedDatabase(_)
                | jobchain::Error::Workflow(_)
                | jobchain::Error::Payload { .. }
        );
        CliError {
            message: e.to_string(),
            usage,
        }
    }
}

impl From<jobchain::StoreError> for CliError {
    fn from(e: jobchain::StoreError) -> Self {
        CliError::from(jobchain::Error::from(e))
    }
}

/// Sets up logging to standard error: warnings by default.
pub fn init_tracing(verbose: u8, format: LogFormat) {
    // sqlx reports statements slower than a second as warnings; under benchmark load
    // that is expected, so only its errors are shown unless asked for.
    let default = match verbose {
        0 => "warn,sqlx=error",
        1 => "info,sqlx=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(common::stderr_is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Worker(args) => worker::run(args).await,
        Command::Enqueue(args) => commands::enqueue::run(args).await,
        Command::Workflow(command) => commands::workflow::run(command).await,
        Command::Jobs(command) => commands::jobs::run_jobs(command).await,
        Command::Dlq(command) => commands::jobs::run_dlq(command).await,
        Command::Queue(command) => commands::queue::run(command).await,
        Command::Periodic(command) => commands::periodic::run(command).await,
        Command::Stats { db, output } => commands::status::stats(db, output).await,
        Command::Workers { db, output } => commands::status::workers(db, output).await,
        Command::Serve(args) => commands::serve::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::BenchWorker { database } => bench::worker::run(&database).await,
        Command::Chaos(args) => chaos::run(args).await,
        Command::ChaosWorker { database, history } => chaos::worker::run(&database, &history).await,
        Command::Migrate { db } => {
            let client = db.open().await?;
            client.close().await;
            common::out(format!(
                "{}: schema is current",
                common::redacted(&db.database)
            ));
            Ok(())
        }
    }
}
