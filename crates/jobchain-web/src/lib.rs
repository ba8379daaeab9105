//! jobchain's HTTP API, web dashboard and Prometheus metrics.
//!
//! [`router`] builds an axum [`Router`] from a [`Client`]: the JSON API under `/api/v1`
//! (described by `/api/v1/openapi.json`), the dashboard at `/` (its assets are compiled
//! into the binary) and `/metrics`. Mount it in your own axum app, or run
//! `jobchain serve`:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = jobchain::open("jobchain.db").await?;
//! let app = jobchain_web::router(client, jobchain_web::WebOptions::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Security: with [`WebOptions::token`] set, every API request needs
//! `Authorization: Bearer TOKEN`; [`WebOptions::read_only`] refuses every change; without a
//! token, [`WebOptions::local_only`] (the default) accepts only requests addressed to a
//! loopback host name, so a web page cannot reach the API through DNS rebinding. A POST
//! whose `Origin` is another site is refused in every mode. Pages carry a
//! Content-Security-Policy without inline scripts, and no CORS headers are sent.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jobchain::{Client, Metrics};

mod api;
mod assets;
mod problem;
mod views;

pub use problem::Problem;

/// How the router behaves; the default serves everything, read-write, to loopback only.
#[derive(Clone, Debug)]
pub struct WebOptions {
    /// Every API request must carry `Authorization: Bearer` with this token.
    pub token: Option<String>,
    /// Refuse every request that would change something.
    pub read_only: bool,
    /// Accept only requests whose `Host` is a loopback name (`localhost`, `127.0.0.1`,
    /// `[::1]`): the guard against DNS rebinding for a server without a token. Turn it off
    /// when the router is reached through another name behind your own authentication.
    pub local_only: bool,
    /// The worker counters to include in `/metrics` (a process that runs handlers);
    /// without them `/metrics` shows the store's gauges.
    pub metrics: Option<Metrics>,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            token: None,
            read_only: false,
            local_only: true,
            metrics: None,
        }
    }
}

/// What every handler sees.
#[derive(Clone)]
struct AppState {
    client: Client,
    options: Arc<WebOptions>,
}

/// The API, the dashboard and `/metrics`, on `client`'s store.
pub fn router(client: Client, options: WebOptions) -> Router {
    let state = AppState {
        client,
        options: Arc::new(options),
    };
    Router::new()
        .nest("/api/v1", api::routes())
        .route("/metrics", get(metrics))
        .merge(assets::routes())
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// `/metrics` alone: what `jobchain worker --metrics-addr` serves.
pub fn metrics_router(client: Client, metrics: Option<Metrics>) -> Router {
    router(
        client,
        WebOptions {
            metrics,
            read_only: true,
            local_only: false,
            ..WebOptions::default()
        },
    )
    .route_layer(middleware::from_fn(only_metrics))
}

async fn only_metrics(request: Request, next: Next) -> Response {
    if request.uri().path() == "/metrics" {
        next.run(request).await
    } else {
        Problem::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "this server has only /metrics",
        )
        .into_response()
    }
}

/// Whether a server may listen on `addr`: a non-loopback address needs a token (or the
/// explicit `insecure`), for anyone who reaches it could otherwise change jobs.
pub fn check_bind(addr: SocketAddr, token: bool, insecure: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || token || insecure {
        Ok(())
    } else {
        Err(format!(
            "{addr} is reachable from other machines: give --token-file FILE (API requests then need `Authorization: Bearer` with its token), or --insecure to serve it without one"
        ))
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Response, Problem> {
    let text = match &state.options.metrics {
        Some(m) => m.render(&state.client).await?,
        None => jobchain::metrics::render_store(&state.client).await?,
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(jobchain::metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

/// The Content-Security-Policy of every response: scripts and styles only from this
/// server, no inline script, no framing, no form posts, fetches only to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Host check, origin check, token, read-only; then security headers on every response.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = match admit(
        &state.options,
        request.method(),
        request.uri().path(),
        request.headers(),
    ) {
        Ok(()) => next.run(request).await,
        Err(problem) => problem.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn admit(
    options: &WebOptions,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), Problem> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if options.local_only {
        if let Some(host) = host {
            if !is_loopback_host(host) {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "Host not allowed",
                    format!("this server answers only to loopback names (localhost, 127.0.0.1, [::1]), not `{host}`: serve with --token-file to use other names"),
                ));
            }
        }
    }
    let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if mutating {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let same = host.is_some_and(|h| origin_host(origin) == Some(h));
            if !same {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "Cross-origin request refused",
                    format!("a page of `{origin}` may not change jobs here"),
                ));
            }
        }
    }
    let api = path.starts_with("/api/") && path != "/api/v1/openapi.json";
    if let (Some(token), true) = (&options.token, api) {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => {
                let mut problem = Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "Token required",
                    "send `Authorization: Bearer TOKEN` with the token this server was started with",
                );
                problem.challenge = true;
                return Err(problem);
            }
            Some(given) if !same_secret(given.trim().as_bytes(), token.as_bytes()) => {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "Wrong token",
                    "the bearer token does not match this server's",
                ));
            }
            Some(_) => {}
        }
    }
    if mutating && options.read_only {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Read-only",
            "this server was started with --read-only: it changes nothing",
        ));
    }
    Ok(())
}

/// Compares two secrets in time that depends only on their lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `host[:port]` of an origin such as `http://localhost:8080`.
fn origin_host(origin: &str) -> Option<&str> {
    origin.split_once("://").map(|(_, rest)| rest)
}

fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_are_recognised() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:80",
            "127.3.2.1",
            "[::1]:8080",
            "app.localhost:3000",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:8080",
            "10.0.0.1:8080",
            "localhost.evil.com",
            "[2001:db8::1]:80",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn binding_beyond_loopback_needs_a_token_or_insecure() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(check_bind(local, false, false).is_ok());
        let err = check_bind(public, false, false).unwrap_err();
        assert!(err.contains("--token-file"), "{err}");
        assert!(check_bind(public, true, false).is_ok());
        assert!(check_bind(public, false, true).is_ok());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
