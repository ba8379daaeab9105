//! The dashboard in a real browser: headless Chromium driven through ChromeDriver
//! (Debian's `chromium` and `chromium-driver`; `scripts/install-browser.sh` installs them).
//! Without them the test says it skipped, unless `JOBCHAIN_REQUIRE_BROWSER=1` (CI) makes
//! that a failure.
//!
//! It serves the router on a real socket over a SQLite store with a worker running, and
//! checks what an operator sees: the overview's counts, an order workflow whose e-mail
//! step died drawn as a graph (nodes, colours by state, dashed optional edges, a cancel
//! reason on hover), the retry of the dead e-mail from the dead-letter page turning the
//! workflow completed, and a hostile payload shown as text without running. Screenshots
//! go to `target/screenshots/` (and to `$JOBCHAIN_SCREENSHOTS` when set, e.g.
//! `docs/images`).

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use jobchain::{JobContext, JobError, JobSpec, WorkflowState};
use jobchain_conformance::support::quick_retry;
use jobchain_web::WebOptions;
use serde_json::{json, Value};

use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Stops ChromeDriver when the test ends, however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn browser_available() -> bool {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if present {
        return true;
    }
    if std::env::var("JOBCHAIN_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("JOBCHAIN_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing: run scripts/install-browser.sh");
    }
    eprintln!("skipped: headless Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}); run scripts/install-browser.sh, or set JOBCHAIN_REQUIRE_BROWSER=1 to make this a failure");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn start_browser() -> (Driver, Browser) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(child);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-dev-shm-usage", "--window-size=1200,900"]
        }),
    );
    let started = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(browser) => return (driver, browser),
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a Chromium session through ChromeDriver: {e}"),
        }
    }
}

/// Polls a script until it returns something other than `null`/`false`.
async fn until(browser: &Browser, what: &str, script: &str) -> Value {
    let started = Instant::now();
    loop {
        let value = browser.execute(script, vec![]).await.expect("script runs");
        if !(value.is_null() || value == Value::Bool(false)) {
            return value;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let text: Value = browser
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or(Value::Null);
            panic!(
                "waited 30 s for {what}; the page shows:\n{}",
                text.as_str().unwrap_or("")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&root).expect("screenshot dir");
    std::fs::write(root.join(format!("{name}.png")), &png).expect("write screenshot");
    if let Ok(dir) = std::env::var("JOBCHAIN_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), &png)
            .expect("write screenshot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let h = sqlite_harness().await.expect("sqlite");
    let mail_up = Arc::new(AtomicBool::new(false));
    let up = mail_up.clone();
    let worker =
        h.worker()
            .handler("ok", |_: JobContext, p: Value| async move { Ok(p) })
            .handler("fan_out", |ctx: JobContext, _: Value| async move {
                for part in ["invoice", "inventory"] {
                    ctx.enqueue(JobSpec::new("ok", json!({"part": part})))?;
                }
                Ok(())
            })
            .handler_with(
                "decline",
                quick_retry(1),
                |_: JobContext, _: Value| async move {
                    Err::<(), _>(JobError::permanent("card declined"))
                },
            )
            .handler_with(
                "send_email",
                quick_retry(2),
                move |_: JobContext, p: Value| {
                    let up = up.clone();
                    async move {
                        if up.load(Ordering::SeqCst) {
                            Ok(json!({"sent_to": p["email"]}))
                        } else {
                            Err(JobError::retryable("the mail server is down"))
                        }
                    }
                },
            )
            .started();
    let failed_mail = h
        .client
        .start_workflow(order_workflow(1, "ok"))
        .await
        .unwrap()
        .id;
    let declined = h
        .client
        .start_workflow(order_workflow(2, "decline"))
        .await
        .unwrap()
        .id;
    assert_eq!(finished(&h, failed_mail).await.state, WorkflowState::Failed);
    assert_eq!(finished(&h, declined).await.state, WorkflowState::Failed);
    let dynamic = h
        .client
        .start_workflow(JobSpec::new("fan_out", json!({})))
        .await
        .unwrap()
        .id;
    assert_eq!(finished(&h, dynamic).await.state, WorkflowState::Completed);
    let hostile = h
        .client
        .enqueue(JobSpec::new(
            "<b>bold</b>",
            json!({"note": "<img src=x onerror=alert(1)>", "more": "<script>window.pwned=1</script>"}),
        ))
        .await
        .unwrap()
        .id;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = jobchain_web::router(h.client.clone(), WebOptions::default());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");
    let (_driver, browser) = start_browser().await;

    // The overview: counts by state, a throughput bar, a live worker.
    browser.goto(&format!("{base}/#/")).await.unwrap();
    until(&browser, "the dead count", "const n = document.querySelector('[data-count=dead] .n'); return n && n.textContent === '2'").await;
    until(
        &browser,
        "a live worker row",
        "return document.querySelectorAll('#workers tbody tr').length === 1",
    )
    .await;
    until(
        &browser,
        "a throughput bar",
        "return document.querySelectorAll('#throughput rect.c').length > 0",
    )
    .await;
    screenshot(&browser, "overview").await;

    // The workflow whose e-mail died, drawn as a graph.
    browser
        .goto(&format!("{base}/#/workflows/{failed_mail}"))
        .await
        .unwrap();
    until(
        &browser,
        "five nodes",
        "return document.querySelectorAll('svg.graph g.node').length === 5",
    )
    .await;
    let nodes = browser
        .execute(
            "return [...document.querySelectorAll('svg.graph g.node')].map(g => ({step: g.dataset.step, state: g.dataset.state, fill: getComputedStyle(g.querySelector('rect')).fill, x: g.getCTM().e}))",
            vec![],
        )
        .await
        .unwrap();
    let node = |step: &str| {
        nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["step"] == step)
            .unwrap_or_else(|| panic!("{step} in {nodes}"))
            .clone()
    };
    assert_eq!(node("charge_payment")["state"], "completed");
    assert_eq!(node("send_confirmation")["state"], "dead");
    assert_eq!(node("generate_invoice")["state"], "completed");
    assert_eq!(node("close_order")["state"], "cancelled");
    assert_eq!(
        node("charge_payment")["fill"],
        "rgb(22, 163, 74)",
        "completed is green"
    );
    assert_eq!(
        node("send_confirmation")["fill"],
        "rgb(220, 38, 38)",
        "dead is red"
    );
    let x = |step: &str| node(step)["x"].as_f64().unwrap();
    assert!(
        x("charge_payment") < x("send_confirmation"),
        "laid out left to right"
    );
    assert!(x("send_confirmation") < x("generate_invoice"));
    let edges = browser
        .execute(
            "return [...document.querySelectorAll('svg.graph path.edge')].map(p => ({policy: p.dataset.policy, dash: getComputedStyle(p).strokeDasharray}))",
            vec![],
        )
        .await
        .unwrap();
    let edges = edges.as_array().unwrap();
    assert_eq!(edges.len(), 6, "{edges:?}");
    for e in edges {
        let dashed = e["dash"] != "none";
        assert_eq!(
            dashed,
            e["policy"] == "optional",
            "optional edges are dashed: {e}"
        );
    }
    assert_eq!(
        edges.iter().filter(|e| e["policy"] == "optional").count(),
        2
    );
    screenshot(&browser, "workflow-graph").await;

    // Steps cancelled by a declined payment: greyed... and the reason on hover.
    browser
        .goto(&format!("{base}/#/workflows/{declined}"))
        .await
        .unwrap();
    let tip = until(
        &browser,
        "the cancelled invoice node",
        "const g = document.querySelector('svg.graph g.node[data-step=generate_invoice]'); return g && g.dataset.state === 'cancelled' && g.querySelector('title').textContent",
    )
    .await;
    assert!(tip.as_str().unwrap().contains("cancelled: "), "{tip}");

    // A dynamic workflow: the jobs a handler enqueued sit in the next column, dotted.
    browser
        .goto(&format!("{base}/#/workflows/{dynamic}"))
        .await
        .unwrap();
    until(
        &browser,
        "three nodes",
        "return document.querySelectorAll('svg.graph g.node').length === 3",
    )
    .await;
    let layout = browser
        .execute(
            "const xs = [...document.querySelectorAll('svg.graph g.node')].map(g => [g.dataset.step, g.getCTM().e]); \
             const spawned = [...document.querySelectorAll('svg.graph path.edge')].map(p => [p.dataset.policy, getComputedStyle(p).strokeDasharray]); \
             return {xs, spawned}",
            vec![],
        )
        .await
        .unwrap();
    let xs = layout["xs"].as_array().unwrap();
    let parent_x = xs.iter().find(|n| n[0] == "fan_out").unwrap()[1]
        .as_f64()
        .unwrap();
    for child in xs.iter().filter(|n| n[0] == "ok") {
        assert!(
            child[1].as_f64().unwrap() > parent_x,
            "children right of their parent: {layout}"
        );
    }
    let spawned = layout["spawned"].as_array().unwrap();
    assert_eq!(spawned.len(), 2, "{layout}");
    assert!(
        spawned.iter().all(|e| e[0] == "spawned" && e[1] != "none"),
        "{layout}"
    );

    // Filters survive the page's own refreshes.
    browser
        .goto(&format!("{base}/#/jobs?state=dead"))
        .await
        .unwrap();
    until(
        &browser,
        "the dead jobs",
        "return document.querySelectorAll('#jobs-table tbody tr').length === 2",
    )
    .await;
    browser
        .find(Locator::Css("input[name=kind]"))
        .await
        .unwrap()
        .send_keys("send_")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let kept = browser
        .execute("return [document.querySelector('select[name=state]').value, document.querySelector('input[name=kind]').value, document.querySelectorAll('#jobs-table tbody tr').length]", vec![])
        .await
        .unwrap();
    assert_eq!(kept, json!(["dead", "send_", 2]), "after two refreshes");

    // The dead-letter page: retry the dead e-mail, and the workflow turns completed.
    mail_up.store(true, Ordering::SeqCst);
    let jobs = h.client.workflow_jobs(failed_mail).await.unwrap();
    let mail = jobs
        .iter()
        .find(|j| j.step.as_deref() == Some("send_confirmation"))
        .unwrap()
        .id;
    browser.goto(&format!("{base}/#/dlq")).await.unwrap();
    until(
        &browser,
        "two dead jobs",
        "return document.querySelectorAll('#dlq-table tbody tr').length === 2",
    )
    .await;
    screenshot(&browser, "dead-letter-queue").await;
    browser
        .find(Locator::Css(&format!(
            "#dlq-table tr[data-job-id='{}'] button.retry",
            mail.0
        )))
        .await
        .expect("the retry button of the dead e-mail")
        .click()
        .await
        .unwrap();
    until(
        &browser,
        "the retried job to leave the page",
        &format!(
            "return !document.querySelector(\"#dlq-table tr[data-job-id='{}']\")",
            mail.0
        ),
    )
    .await;
    assert_eq!(
        finished(&h, failed_mail).await.state,
        WorkflowState::Completed
    );
    browser
        .goto(&format!("{base}/#/workflows/{failed_mail}"))
        .await
        .unwrap();
    until(&browser, "the workflow shown completed", "const b = document.querySelector('#workflow-state .badge'); return b && b.dataset.state === 'completed'").await;
    until(&browser, "every node completed", "const s = [...document.querySelectorAll('svg.graph g.node')].map(g => g.dataset.state); return s.length === 5 && s.every(x => x === 'completed')").await;

    // A hostile payload and kind are text, and nothing of them runs.
    browser
        .goto(&format!("{base}/#/jobs/{}", hostile.0))
        .await
        .unwrap();
    let shown = until(
        &browser,
        "the payload",
        "const p = document.getElementById('payload'); return p && p.textContent",
    )
    .await;
    assert!(
        shown
            .as_str()
            .unwrap()
            .contains("<img src=x onerror=alert(1)>"),
        "{shown}"
    );
    let page = browser
        .execute(
            "return {imgs: document.querySelectorAll('main img, main script, main b').length, pwned: window.pwned === 1, title: document.querySelector('h1 .kind').textContent}",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(page["imgs"], 0, "markup from a job became elements: {page}");
    assert_eq!(page["pwned"], false);
    assert_eq!(page["title"], "<b>bold</b>");
    assert!(browser.get_alert_text().await.is_err(), "an alert opened");

    // On a phone's width the page does not scroll sideways (wide tables scroll in place).
    browser.set_window_size(390, 844).await.unwrap();
    for route in ["#/", "#/dlq", &format!("#/workflows/{failed_mail}")] {
        browser.goto(&format!("{base}/{route}")).await.unwrap();
        until(
            &browser,
            "the page",
            "return document.querySelector('main h1') !== null",
        )
        .await;
        let fits = browser
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, true, "{route} scrolls sideways on a phone");
    }
    screenshot(&browser, "phone-workflow").await;

    browser.close().await.unwrap();
    server.abort();
    worker.shutdown().await;
    h.close().await;
}
