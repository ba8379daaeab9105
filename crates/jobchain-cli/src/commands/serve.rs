//! `jobchain serve`: the HTTP API, the dashboard and `/metrics` over one store.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use jobchain_web::WebOptions;
use tokio::task::JoinHandle;

use crate::common::DbArgs;
use crate::CliError;

/// Options of `jobchain serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Where to listen. A non-loopback address needs --token-file (or --insecure).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// A file holding the token that every API request must send as
    /// `Authorization: Bearer TOKEN` (the dashboard asks for it once per tab).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Refuse every change (enqueue, retry, cancel, start): a view for everyone.
    #[arg(long)]
    pub read_only: bool,
    /// Serve a non-loopback address without a token: anyone who reaches it can change
    /// jobs. Only behind your own authenticating proxy.
    #[arg(long)]
    pub insecure: bool,
    /// Where the jobs are.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let token = match &args.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    jobchain_web::check_bind(args.addr, token.is_some(), args.insecure).map_err(CliError::usage)?;
    let client = args.db.open().await?;
    let options = WebOptions {
        local_only: token.is_none() && args.addr.ip().is_loopback(),
        token,
        read_only: args.read_only,
        metrics: None,
    };
    let router = jobchain_web::router(client.clone(), options);
    let listener = bind(args.addr).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::failed(format!("cannot read the address listened on: {e}")))?;
    println!("jobchain dashboard: http://{addr}/ (API: http://{addr}/api/v1, metrics: http://{addr}/metrics)");
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(stop_signal())
        .await;
    client.close().await;
    served.map_err(|e| CliError::failed(format!("the server on {addr} failed: {e}")))
}

/// Listens on `addr` and serves `router` in the background (the worker's metrics).
pub async fn spawn(
    addr: SocketAddr,
    router: axum::Router,
    what: &str,
) -> Result<JoinHandle<()>, CliError> {
    let listener = bind(addr).await?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!("serving {what} at http://{bound}/metrics");
    println!("jobchain {what}: http://{bound}/metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the {bound} server stopped");
        }
    }))
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, CliError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        CliError::failed(format!(
            "cannot listen on {addr}: {e}; pick another --addr (port 0 picks a free one)"
        ))
    })
}

fn read_token(path: &std::path::Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::usage(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })?;
    let token = text.trim().to_string();
    if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CliError::usage(format!(
            "the token in {} must be one line of at least 16 characters without spaces (e.g. `openssl rand -hex 32 > {}`)",
            path.display(),
            path.display()
        )));
    }
    Ok(token)
}

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
