//! The `jobchain` command: parses its arguments, runs the command, prints any error.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = jobchain_cli::Cli::parse();
    jobchain_cli::init_tracing(cli.verbose, cli.log_format);
    match jobchain_cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
