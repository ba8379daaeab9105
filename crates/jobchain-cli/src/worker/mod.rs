//! `jobchain worker`: runs the handlers of a `jobchain.toml`, each a program in any
//! language ([`exec`]), until SIGTERM or Ctrl-C (or, with `--until-idle`, until no job it
//! can run is left).

pub mod config;
pub mod exec;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use jobchain::{JobFilter, JobState, KindOptions, RetryPolicy, Worker, WorkerConfig};

use crate::common::{parse_duration, DbArgs};
use crate::CliError;
use config::Config;
use exec::ExecHandler;

/// Options of `jobchain worker`.
#[derive(Clone, Debug, Args)]
pub struct WorkerArgs {
    /// The handlers to run (see docs/cli.md).
    #[arg(long, default_value = "jobchain.toml")]
    pub config: PathBuf,
    /// Only the handlers of this queue (repeat for several; default: all of them).
    #[arg(long = "queue")]
    pub queues: Vec<String>,
    /// Jobs run at once on each queue.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Exit 0 once no job this worker can run is pending or running.
    #[arg(long)]
    pub until_idle: bool,
    /// At SIGTERM or Ctrl-C, how long running handlers may finish before their processes
    /// are stopped and their jobs released for another worker; also the time a timed-out
    /// handler gets between SIGTERM and SIGKILL.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub grace: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics: this worker's attempts by kind
    /// (completed, failed, retried, dead), handler durations and start latency, with the
    /// store's job counts and live workers. A non-loopback address is served as given:
    /// metrics change nothing.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the jobs are.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Runs the worker.
pub async fn run(args: WorkerArgs) -> Result<(), CliError> {
    let config = Config::load(&args.config)?;
    let handlers: Vec<_> = config
        .handlers
        .iter()
        .filter(|h| args.queues.is_empty() || args.queues.contains(&h.queue))
        .cloned()
        .collect();
    if handlers.is_empty() {
        return Err(CliError::usage(format!(
            "{} has no handler on queue(s) {}",
            args.config.display(),
            args.queues.join(", ")
        )));
    }
    let client = args.db.open().await?;
    let metrics = args.metrics_addr.map(|_| jobchain::Metrics::new());
    let mut builder = Worker::builder(&client).config(WorkerConfig {
        concurrency: args.concurrency as usize,
        shutdown_timeout: args.grace,
        metrics: metrics.clone(),
        ..WorkerConfig::default()
    });
    for handler in &handlers {
        let mut options = KindOptions::new().queue(handler.queue.clone());
        options.rate_limit = handler.rate_limit;
        options.max_running = handler.max_running;
        options.max_running_per_key = handler.max_running_per_key;
        if let Some(max) = handler.max_attempts {
            options = options.retry(RetryPolicy {
                max_attempts: max,
                ..RetryPolicy::default()
            });
        }
        // The program's timeout is enforced by the exec handler itself (SIGTERM, grace,
        // SIGKILL), not by dropping the attempt.
        let exec = ExecHandler::new(handler.clone(), config.dir.clone(), args.grace);
        builder = builder.handler_with(
            &handler.kind,
            options,
            move |ctx: jobchain::JobContext, payload: serde_json::Value| {
                exec.clone().run(ctx, payload)
            },
        );
    }
    for (queue, limits) in &config.queues {
        builder = builder.queue_limits(queue, *limits);
    }
    for periodic in &config.periodic {
        builder = builder.periodic(periodic.periodic());
    }
    let worker = builder.build()?;
    let metrics_server = match args.metrics_addr {
        Some(addr) => {
            let router = jobchain_web::metrics_router(client.clone(), metrics);
            Some(crate::commands::serve::spawn(addr, router, "metrics").await?)
        }
        None => None,
    };
    let worker = worker.start();
    tracing::info!(
        kinds = ?handlers.iter().map(|h| &h.kind).collect::<Vec<_>>(),
        "worker running; SIGTERM or Ctrl-C stops it"
    );
    let result = if args.until_idle {
        tokio::select! {
            idle = wait_until_idle(&client, &handlers, &worker) => idle,
            stopped = worker.shutdown_on_signal() => stopped.map(|_| ()).map_err(CliError::from),
        }
    } else {
        worker
            .shutdown_on_signal()
            .await
            .map(|_| ())
            .map_err(CliError::from)
    };
    let report = worker.shutdown().await;
    if let Some(server) = metrics_server {
        server.abort();
    }
    if report.released > 0 || report.unwritten > 0 {
        tracing::warn!(
            released = report.released,
            unwritten = report.unwritten,
            "stopped with jobs handed back"
        );
    }
    client.close().await;
    result
}

/// Returns once no job of the handlers' kinds and queues is pending or running, twice in
/// a row 100 ms apart (a completion's follow-ups are written with it, so none is missed).
async fn wait_until_idle(
    client: &jobchain::Client,
    handlers: &[config::HandlerConfig],
    worker: &jobchain::WorkerHandle,
) -> Result<(), CliError> {
    let mut quiet = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut busy = worker.running() > 0;
        for h in handlers {
            if busy {
                break;
            }
            for state in [JobState::Pending, JobState::Running] {
                let found = client
                    .jobs(JobFilter {
                        state: Some(state),
                        kind: Some(h.kind.clone()),
                        queue: Some(h.queue.clone()),
                        limit: Some(1),
                        ..JobFilter::default()
                    })
                    .await?;
                if !found.is_empty() {
                    busy = true;
                    break;
                }
            }
        }
        quiet = if busy { 0 } else { quiet + 1 };
        if quiet >= 2 {
            return Ok(());
        }
    }
}
