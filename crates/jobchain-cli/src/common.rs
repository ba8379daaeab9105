//! What the operator commands share: where the database is, JSON or table output, and
//! the parsing of durations, times and JSON arguments.

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use clap::Args;
use jobchain::Client;
use serde::Serialize;

use crate::CliError;

/// Where the jobs are.
#[derive(Clone, Debug, Args)]
pub struct DbArgs {
    /// SQLite file or PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE;
    /// `?jobchain_schema=NAME` picks the schema).
    #[arg(long, env = "JOBCHAIN_DATABASE", default_value = "jobchain.db")]
    pub database: String,
}

impl DbArgs {
    /// Opens the store (created and migrated when missing).
    pub async fn open(&self) -> Result<Client, CliError> {
        jobchain::open(&self.database)
            .await
            .map_err(|e| CliError::from(e).in_context(&redacted(&self.database)))
    }
}

/// A database location as it may be shown: a PostgreSQL URL without its password.
pub fn redacted(location: &str) -> String {
    jobchain::postgres::redact(location)
}

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, Args)]
pub struct OutputArgs {
    /// Print JSON: one document, or one object per line for lists.
    #[arg(long)]
    pub json: bool,
}

/// Writes a line to standard output. A closed pipe (`| head`) ends the process quietly,
/// as command-line tools do.
pub fn out(line: impl AsRef<str>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{}", line.as_ref()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Prints one JSON document.
pub fn out_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failed(format!("cannot print JSON: {e}")))?;
    out(text);
    Ok(())
}

/// Prints one JSON object per line.
pub fn out_json_lines<T: Serialize>(items: &[T]) -> Result<(), CliError> {
    for item in items {
        let text = serde_json::to_string(item)
            .map_err(|e| CliError::failed(format!("cannot print JSON: {e}")))?;
        out(text);
    }
    Ok(())
}

/// Prints rows under headers, each column as wide as its widest cell.
pub fn out_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.trim_end().to_string()
    };
    out(line(headers.to_vec()));
    for row in rows {
        out(line(row.iter().map(String::as_str).collect()));
    }
}

pub use jobchain::document::{parse_duration, parse_time};

/// Whether standard error is a terminal (colours and progress only then).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Parses a workflow id.
pub fn parse_workflow_id(text: &str) -> Result<jobchain::WorkflowId, String> {
    text.parse().map_err(|_| {
        format!("`{text}` is not a workflow id: it is a UUID such as 01a21c73-3038-7016-b446-ee975a5be5c4 (see `jobchain workflow list`)")
    })
}

/// Parses a job id.
pub fn parse_job_id(text: &str) -> Result<jobchain::JobId, String> {
    text.parse().map_err(|_| {
        format!("`{text}` is not a job id: it is a whole number (see `jobchain jobs list`)")
    })
}

/// Parses a JSON argument; `-` reads it from standard input. `what` names it in errors.
pub fn parse_json_arg(text: &str, what: &str) -> Result<serde_json::Value, CliError> {
    let owned;
    let text = if text == "-" {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| CliError::usage(format!("cannot read {what} from stdin: {e}")))?;
        owned = input;
        owned.as_str()
    } else {
        text
    };
    serde_json::from_str(text).map_err(|e| {
        CliError::usage(format!(
            "{what} is not valid JSON ({e}): quote it for the shell, e.g. '{{\"id\": 1}}', or pass - to read stdin"
        ))
    })
}

/// Opens the store, runs `f`, and closes the store whatever `f` returned.
pub async fn with_client<F, Fut>(db: &DbArgs, f: F) -> Result<(), CliError>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    let client = db.open().await?;
    let result = f(client.clone()).await;
    client.close().await;
    result
}

/// The first line of `text`, at most `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_string()
    }
}

/// A time as a short human text: `2026-11-27 10:00:03`.
pub fn short_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A duration as a short human text: `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        format!("{}ms", d.as_millis())
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Durations, times and ids from the command line parse or are refused; never a
        /// panic, never an infinite or negative duration.
        #[test]
        fn command_line_values_parse_or_say_why(text in "\\PC{0,40}") {
            match parse_duration(&text) {
                Ok(d) => prop_assert!(d.as_secs() <= 100 * 365 * 86_400),
                Err(e) => prop_assert!(!e.is_empty()),
            }
            let _ = parse_time(&text);
            let _ = parse_job_id(&text);
            let _ = parse_workflow_id(&text);
        }
    }

    #[test]
    fn durations_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["10", "s", "10x", "", "1e400s", "inf", "1000000d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn short_durations_read_well() {
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(short_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(short_duration(Duration::from_secs(7380)), "2h03m");
    }
}
