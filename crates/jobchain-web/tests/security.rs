//! The router's guards: bearer token, read-only, loopback host names (DNS rebinding),
//! same-origin changes, security headers, no CORS; and the pages' own discipline (no
//! inline script, no markup built from strings).

mod support;

use axum::http::Method;
use jobchain_web::WebOptions;
use serde_json::json;

use support::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn a_token_guards_every_api_request() {
    let h = sqlite_harness().await.unwrap();
    let r = jobchain_web::router(
        h.client.clone(),
        WebOptions {
            token: Some(TOKEN.into()),
            local_only: false,
            ..WebOptions::default()
        },
    );
    let a = get(&r, "/api/v1/stats").await;
    a.problem(401);
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    let a = send_with(
        &r,
        Method::GET,
        "/api/v1/stats",
        None,
        &[("authorization", "Bearer wrong")],
    )
    .await;
    a.problem(403);
    let a = send_with(
        &r,
        Method::POST,
        "/api/v1/jobs",
        Some(json!({"kind": "k"})),
        &[("authorization", "Basic abc")],
    )
    .await;
    a.problem(401);
    assert!(
        h.client.jobs(Default::default()).await.unwrap().is_empty(),
        "nothing was written"
    );
    let bearer = format!("Bearer {TOKEN}");
    let a = send_with(
        &r,
        Method::GET,
        "/api/v1/stats",
        None,
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(a.status, 200);
    let a = send_with(
        &r,
        Method::POST,
        "/api/v1/jobs",
        Some(json!({"kind": "k"})),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(a.status, 201);
    // The document and the page itself are public: the page asks for the token.
    assert_eq!(get(&r, "/api/v1/openapi.json").await.status, 200);
    assert_eq!(get(&r, "/").await.status, 200);
    h.close().await;
}

#[tokio::test]
async fn read_only_refuses_every_change() {
    let h = sqlite_harness().await.unwrap();
    let id = h
        .client
        .enqueue(jobchain::JobSpec::new("k", json!({})))
        .await
        .unwrap()
        .id;
    let r = jobchain_web::router(
        h.client.clone(),
        WebOptions {
            read_only: true,
            ..WebOptions::default()
        },
    );
    for (uri, body) in [
        ("/api/v1/jobs".to_string(), json!({"kind": "k"})),
        (format!("/api/v1/jobs/{}/cancel", id.0), json!({})),
        (format!("/api/v1/jobs/{}/retry", id.0), json!({})),
        (
            "/api/v1/workflows".to_string(),
            json!({"name": "x", "steps": [{"name": "a", "kind": "k"}]}),
        ),
        ("/api/v1/dlq/retry".to_string(), json!({"all": true})),
        ("/api/v1/dlq/cancel".to_string(), json!({"all": true})),
    ] {
        let a = post(&r, &uri, body).await;
        assert!(a.problem(403).contains("read-only"), "{uri}");
    }
    assert_eq!(get(&r, "/api/v1/jobs").await.status, 200);
    let jobs = h.client.jobs(Default::default()).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, jobchain::JobState::Pending);
    h.close().await;
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused_and_no_cors_is_sent() {
    let h = sqlite_harness().await.unwrap();
    let r = jobchain_web::router(h.client.clone(), WebOptions::default());
    // DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own Host.
    let a = send_with(
        &r,
        Method::GET,
        "/api/v1/stats",
        None,
        &[("host", "evil.example:8080")],
    )
    .await;
    assert!(a.problem(403).contains("loopback"));
    let a = send_with(
        &r,
        Method::GET,
        "/api/v1/stats",
        None,
        &[("host", "localhost:8080")],
    )
    .await;
    assert_eq!(a.status, 200);
    // A cross-site form or fetch carries its Origin; the page's own matches the host.
    for (origin, status) in [("http://evil.example", 403), ("http://127.0.0.1:8080", 201)] {
        let a = send_with(
            &r,
            Method::POST,
            "/api/v1/jobs",
            Some(json!({"kind": "k"})),
            &[("host", "127.0.0.1:8080"), ("origin", origin)],
        )
        .await;
        assert_eq!(a.status.as_u16(), status, "{origin}: {}", a.text);
        if status == 403 {
            assert!(a.problem(403).contains("evil.example"));
        }
    }
    // No CORS: a preflight is not answered with permission, nor is a simple request.
    let a = send_with(
        &r,
        Method::OPTIONS,
        "/api/v1/jobs",
        None,
        &[
            ("origin", "http://evil.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert!(!a.headers.contains_key("access-control-allow-origin"));
    let a = send_with(
        &r,
        Method::GET,
        "/api/v1/stats",
        None,
        &[("origin", "http://evil.example")],
    )
    .await;
    assert!(!a.headers.contains_key("access-control-allow-origin"));
    h.close().await;
}

#[tokio::test]
async fn pages_carry_a_strict_policy_and_build_no_markup_from_strings() {
    let h = sqlite_harness().await.unwrap();
    let r = jobchain_web::router(h.client.clone(), WebOptions::default());
    let page = get(&r, "/").await;
    assert_eq!(page.status, 200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline")
            && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    // Every script of the page is a file of this server; none is inline.
    for tag in page.text.split("<script").skip(1) {
        let head = tag.split('>').next().unwrap();
        assert!(
            head.contains("src=\"/assets/"),
            "an inline script: <script{head}>"
        );
        assert!(
            tag.split('>').nth(1).unwrap().starts_with("</script"),
            "inline code in a script tag"
        );
    }
    let handler = page.text.split(" on").skip(1).find(|rest| {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    });
    assert!(
        handler.is_none(),
        "an inline event handler: on{}",
        handler.unwrap_or("")
    );
    for (path, ty) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let a = get(&r, path).await;
        assert_eq!(a.status, 200, "{path}");
        assert!(a.content_type().starts_with(ty), "{path}");
    }
    // The script never turns strings into markup.
    let script = get(&r, "/assets/app.js").await.text;
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ] {
        assert!(!script.contains(sink), "app.js uses {sink}");
    }
    h.close().await;
}
