//! `jobchain periodic list`: the periodic jobs of a `jobchain.toml`, with their last and
//! next runs.

use std::path::PathBuf;

use clap::Subcommand;

use crate::common::{out, out_json_lines, out_table, short_time, with_client, DbArgs, OutputArgs};
use crate::worker::config::Config;
use crate::CliError;

/// `jobchain periodic …`.
#[derive(Debug, Subcommand)]
pub enum PeriodicCommand {
    /// The periodic jobs of the config file: schedule, time zone, kind, catch-up, the last
    /// tick a worker took and the next one.
    List {
        /// The config file that declares them.
        #[arg(long, default_value = "jobchain.toml")]
        config: PathBuf,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Runs a `periodic` command.
pub async fn run(command: PeriodicCommand) -> Result<(), CliError> {
    let PeriodicCommand::List { config, db, output } = command;
    let config = Config::load(&config)?;
    with_client(&db, |client| async move {
        let now = chrono::Utc::now();
        let mut rows = Vec::new();
        for p in &config.periodic {
            let last = client.store().periodic_last(&p.name).await?;
            let next = p.schedule.next_after(now);
            rows.push((p, last, next));
        }
        if output.json {
            let lines: Vec<_> = rows
                .iter()
                .map(|(p, last, next)| {
                    serde_json::json!({
                        "name": p.name,
                        "schedule": p.schedule.expression(),
                        "timezone": p.schedule.zone(),
                        "kind": p.kind,
                        "catch_up": p.catch_up,
                        "last": last,
                        "next": next,
                    })
                })
                .collect();
            return out_json_lines(&lines);
        }
        if rows.is_empty() {
            out("no periodic jobs: add [periodic.NAME] tables to the config (see docs/flow-control.md)");
            return Ok(());
        }
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|(p, last, next)| {
                vec![
                    p.name.clone(),
                    p.schedule.expression().to_string(),
                    p.schedule.zone().to_string(),
                    p.kind.clone(),
                    format!("{:?}", p.catch_up).to_lowercase(),
                    last.as_ref().map(short_time).unwrap_or_else(|| "-".into()),
                    next.as_ref().map(short_time).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        out_table(
            &["NAME", "SCHEDULE", "TIMEZONE", "KIND", "CATCH UP", "LAST", "NEXT"],
            &table,
        );
        Ok(())
    })
    .await
}
