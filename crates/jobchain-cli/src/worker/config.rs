//! `jobchain.toml`: the handlers a `jobchain worker` runs, each an argv.
//!
//! ```toml
//! [handlers.process_order]
//! command = ["python3", "handlers/process_order.py"]   # an argv: never through a shell
//! timeout = "30s"
//! max_attempts = 5
//! queue = "default"
//! env = { SMTP_HOST = "127.0.0.1" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::common::parse_duration;
use crate::CliError;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    handlers: BTreeMap<String, HandlerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerEntry {
    command: Vec<String>,
    timeout: Option<String>,
    max_attempts: Option<u32>,
    queue: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// One handler: a program run once per attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct HandlerConfig {
    /// The job kind it handles.
    pub kind: String,
    /// The program and its arguments (never through a shell).
    pub command: Vec<String>,
    /// How long one attempt may run.
    pub timeout: Option<Duration>,
    /// Attempts before the dead-letter queue.
    pub max_attempts: Option<u32>,
    /// Queue it claims from.
    pub queue: String,
    /// Environment given to the program, besides `PATH` and the `JOBCHAIN_` variables.
    pub env: BTreeMap<String, String>,
}

/// A parsed `jobchain.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The handlers, by kind.
    pub handlers: Vec<HandlerConfig>,
    /// The file's folder: programs run there, and relative paths are resolved from it.
    pub dir: PathBuf,
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!(
                "cannot read the config file {}: {e}; give --config PATH of a jobchain.toml (see docs/cli.md)",
                path.display()
            ))
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, dir).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
    }

    /// Parses a config's text; `dir` is where its programs run.
    pub fn parse(text: &str, dir: PathBuf) -> Result<Config, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.handlers.is_empty() {
            return Err(
                "no handlers: add a [handlers.KIND] table with command = [\"program\", \"arg\"]"
                    .into(),
            );
        }
        let mut handlers = Vec::with_capacity(file.handlers.len());
        for (kind, entry) in file.handlers {
            if entry.command.first().is_none_or(|p| p.trim().is_empty()) {
                return Err(format!(
                    "handler `{kind}`: command must name a program, e.g. command = [\"python3\", \"handler.py\"]"
                ));
            }
            let timeout = entry
                .timeout
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| format!("handler `{kind}`: timeout: {e}"))?;
            if timeout == Some(Duration::ZERO) {
                return Err(format!("handler `{kind}`: timeout must be above zero"));
            }
            if entry.max_attempts == Some(0) {
                return Err(format!("handler `{kind}`: max_attempts must be at least 1"));
            }
            if let Some(bad) = entry.env.keys().find(|k| k.starts_with("JOBCHAIN_")) {
                return Err(format!(
                    "handler `{kind}`: env may not set `{bad}`: the JOBCHAIN_ variables are the worker's"
                ));
            }
            handlers.push(HandlerConfig {
                kind,
                command: entry.command,
                timeout,
                max_attempts: entry.max_attempts,
                queue: entry.queue.unwrap_or_else(|| "default".into()),
                env: entry.env,
            });
        }
        Ok(Config { handlers, dir })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text is a config or a message saying what is wrong with it.
        #[test]
        fn any_config_text_parses_or_says_why(text in "\\PC{0,300}") {
            if let Err(e) = Config::parse(&text, PathBuf::from(".")) {
                prop_assert!(!e.is_empty());
            }
        }
    }

    #[test]
    fn a_config_parses_and_bad_ones_say_what_is_wrong() {
        let config = Config::parse(
            r#"
            [handlers.send]
            command = ["python3", "send.py"]
            timeout = "30s"
            max_attempts = 3
            queue = "emails"
            env = { SMTP_HOST = "127.0.0.1" }
            [handlers.plain]
            command = ["./plain.sh"]
            "#,
            PathBuf::from("."),
        )
        .unwrap();
        assert_eq!(config.handlers.len(), 2);
        let send = config.handlers.iter().find(|h| h.kind == "send").unwrap();
        assert_eq!(send.timeout, Some(Duration::from_secs(30)));
        assert_eq!(send.queue, "emails");
        assert_eq!(send.env["SMTP_HOST"], "127.0.0.1");
        for (bad, says) in [
            ("", "no handlers"),
            ("[handlers.a]\ncommand = []", "must name a program"),
            (
                "[handlers.a]\ncommand = [\"x\"]\ntimeout = \"soon\"",
                "timeout",
            ),
            (
                "[handlers.a]\ncommand = [\"x\"]\nmax_attempts = 0",
                "at least 1",
            ),
            (
                "[handlers.a]\ncommand = [\"x\"]\nshell = true",
                "unknown field",
            ),
            (
                "[handlers.a]\ncommand = [\"x\"]\nenv = { JOBCHAIN_KIND = \"b\" }",
                "JOBCHAIN_",
            ),
            ("[handlers.a\n", "expected"),
        ] {
            let err = Config::parse(bad, PathBuf::from(".")).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
