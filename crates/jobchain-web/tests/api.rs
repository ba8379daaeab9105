//! The HTTP API through the router, on SQLite and PostgreSQL: every endpoint, its
//! statuses and error shape, checked against the OpenAPI document.

mod support;

use std::collections::HashSet;

use axum::http::Method;
use jobchain::{JobContext, JobError, JobSpec, JobState, WorkflowState};
use jobchain_conformance::support::quick_retry;
use jobchain_conformance::Harness;
use jobchain_web::WebOptions;
use serde_json::{json, Value};

use support::*;

fn router(h: &Harness) -> axum::Router {
    jobchain_web::router(h.client.clone(), WebOptions::default())
}

async fn stats_workers_and_the_openapi_document(h: &Harness) {
    let r = router(h);
    let doc = openapi();
    let a = get(&r, "/api/v1/openapi.json").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body, doc,
        "the served document is the one in the repository"
    );
    assert_eq!(doc["openapi"], "3.1.0");
    // Every $ref resolves.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }

    let a = get(&r, "/api/v1/stats").await;
    check_answer(&doc, "/stats", "get", &a);
    assert_eq!(a.body["totals"]["pending"], 0);
    for i in 0..3 {
        h.client
            .enqueue(JobSpec::new("mail", json!({"n": i})))
            .await
            .unwrap();
    }
    let worker = h
        .worker()
        .handler("other", |_: JobContext, _: Value| async move { Ok(()) })
        .started();
    let a = get(&r, "/api/v1/stats").await;
    check_answer(&doc, "/stats", "get", &a);
    assert_eq!(a.body["totals"]["pending"], 3);
    assert_eq!(a.body["queues"][0]["queue"], "default");
    assert!(a.body["queues"][0]["oldest_pending_seconds"]
        .as_f64()
        .is_some());
    let unhandled = eventually("the unhandled kind to show", || async {
        let a = get(&r, "/api/v1/stats").await;
        let u = a.body["unhandled"].as_array().cloned().unwrap_or_default();
        (!u.is_empty()).then_some(u)
    })
    .await;
    assert_eq!(unhandled[0]["kind"], "mail");
    assert_eq!(unhandled[0]["count"], 3);
    // The worker registers itself as it starts: wait for it to be listed.
    let a = eventually("the worker to register", || async {
        let a = get(&r, "/api/v1/workers").await;
        (a.body["workers"].as_array().is_some_and(|w| !w.is_empty())).then_some(a)
    })
    .await;
    check_answer(&doc, "/workers", "get", &a);
    // Its handlers, and the steps every worker runs itself.
    assert_eq!(
        a.body["workers"][0]["kinds"],
        json!([
            "jobchain.map",
            "jobchain.signal",
            "jobchain.sleep",
            "jobchain.workflow",
            "other"
        ])
    );
    worker.shutdown().await;

    let a = get(&r, "/api/v1/nothing-here").await;
    a.problem(404);
    let a = send(&r, Method::DELETE, "/api/v1/stats", None).await;
    a.problem(405);
}

async fn jobs_filter_and_page_by_keyset(h: &Harness) {
    let r = router(h);
    let doc = openapi();
    let mut ids = Vec::new();
    for i in 0..7 {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        let queue = if i < 4 { "default" } else { "bulk" };
        let a = post(
            &r,
            "/api/v1/jobs",
            json!({"kind": kind, "payload": {"i": i}, "options": {"queue": queue}}),
        )
        .await;
        check_answer(&doc, "/jobs", "post", &a);
        assert_eq!(a.status, 201);
        ids.push(a.body["id"].as_i64().unwrap());
    }
    // Newest first, three per page, through every page exactly once.
    let seen: Vec<i64> = all_pages(&r, "/api/v1/jobs?limit=3", "jobs", (&doc, "/jobs"))
        .await
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let a = get(&r, "/api/v1/jobs?order=oldest&limit=2").await;
    let first: Vec<i64> = a.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(first, ids[..2]);
    let c = a.body["next_cursor"].as_str().unwrap().to_string();
    let a = get(&r, &format!("/api/v1/jobs?order=oldest&limit=2&cursor={c}")).await;
    assert_eq!(a.body["jobs"][0]["id"].as_i64().unwrap(), ids[2]);

    let count = |a: &Answer| a.body["jobs"].as_array().unwrap().len();
    assert_eq!(count(&get(&r, "/api/v1/jobs?kind=even").await), 4);
    assert_eq!(count(&get(&r, "/api/v1/jobs?queue=bulk").await), 3);
    assert_eq!(count(&get(&r, "/api/v1/jobs?kind=odd&queue=bulk").await), 1);
    assert_eq!(count(&get(&r, "/api/v1/jobs?state=pending").await), 7);
    assert_eq!(count(&get(&r, "/api/v1/jobs?state=dead").await), 0);
    assert_eq!(
        count(&get(&r, "/api/v1/jobs?state=&kind=").await),
        7,
        "empty filters are absent"
    );

    for (uri, says) in [
        ("/api/v1/jobs?limit=0", "limit `0`"),
        ("/api/v1/jobs?limit=501", "from 1 to 500"),
        ("/api/v1/jobs?state=lost", "unknown job state"),
        ("/api/v1/jobs?cursor=abc", "next_cursor"),
        ("/api/v1/jobs?workflow=42", "not a workflow id"),
        ("/api/v1/jobs?order=up", "neither `newest` nor `oldest`"),
        ("/api/v1/jobs?limt=5", "unknown field `limt`"),
    ] {
        let a = get(&r, uri).await;
        check_answer(&doc, "/jobs", "get", &a);
        let detail = a.problem(400);
        assert!(detail.contains(says), "{uri}: {detail}");
    }
}

async fn one_job_enqueue_retry_and_cancel(h: &Harness) {
    let r = router(h);
    let doc = openapi();
    let a = post(
        &r,
        "/api/v1/jobs",
        json!({"kind": "charge", "payload": {"order": 1}, "options": {"unique_key": "order-1", "priority": "high", "delay": "1h", "max_attempts": 2}}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let id = a.body["id"].as_i64().unwrap();
    let a = post(
        &r,
        "/api/v1/jobs",
        json!({"kind": "charge", "options": {"unique_key": "order-1"}}),
    )
    .await;
    check_answer(&doc, "/jobs", "post", &a);
    assert_eq!(a.status, 200);
    assert_eq!(a.body, json!({"id": id, "duplicate": true}));

    let a = get(&r, &format!("/api/v1/jobs/{id}")).await;
    check_answer(&doc, "/jobs/{id}", "get", &a);
    assert_eq!(a.body["payload"], json!({"order": 1}));
    assert_eq!(a.body["priority"], 10);
    assert_eq!(a.body["max_attempts"], 2);
    assert_eq!(a.body["state"], "pending");

    for (body, status, says) in [
        (json!({"payload": 1}), 400, "missing field `kind`"),
        (
            json!({"kind": "x", "options": {"delay": "5 parsecs"}}),
            400,
            "unknown unit",
        ),
        (
            json!({"kind": "x", "options": {"priority": "urgent"}}),
            400,
            "priority",
        ),
        (
            json!({"kind": "x", "colour": "red"}),
            400,
            "unknown field `colour`",
        ),
        (
            json!({"kind": "x", "workflow_id": "nope"}),
            400,
            "not a workflow id",
        ),
        (json!({"kind": "", "payload": 1}), 400, "kind"),
        (json!({"kind": "x", "payload": "a\u{0}b"}), 400, "NUL"),
    ] {
        let a = post(&r, "/api/v1/jobs", body.clone()).await;
        check_answer(&doc, "/jobs", "post", &a);
        let detail = a.problem(status);
        assert!(detail.contains(says), "{body}: {detail}");
    }
    let a = send(&r, Method::POST, "/api/v1/jobs", None).await;
    check_answer(&doc, "/jobs", "post", &a);
    assert!(a.problem(415).contains("Content-Type: application/json"));
    let a = send_with(
        &r,
        Method::POST,
        "/api/v1/jobs",
        None,
        &[("content-type", "application/json")],
    )
    .await;
    a.problem(400);

    let missing = id + 1000;
    let a = get(&r, &format!("/api/v1/jobs/{missing}")).await;
    check_answer(&doc, "/jobs/{id}", "get", &a);
    assert_eq!(a.problem(404), format!("job {missing} was not found"));
    let a = get(&r, "/api/v1/jobs/seven").await;
    check_answer(&doc, "/jobs/{id}", "get", &a);
    assert!(a.problem(400).contains("whole numbers"));

    let a = send(&r, Method::POST, &format!("/api/v1/jobs/{id}/retry"), None).await;
    check_answer(&doc, "/jobs/{id}/retry", "post", &a);
    assert!(a.problem(409).contains("only dead jobs can be retried"));
    let a = send(&r, Method::POST, &format!("/api/v1/jobs/{id}/cancel"), None).await;
    check_answer(&doc, "/jobs/{id}/cancel", "post", &a);
    assert_eq!(a.status, 200);
    assert_eq!(a.body["state"], "cancelled");
    let a = send(&r, Method::POST, &format!("/api/v1/jobs/{id}/cancel"), None).await;
    check_answer(&doc, "/jobs/{id}/cancel", "post", &a);
    a.problem(409);

    // A dead job: retry brings it back; cancelling it discards it.
    let worker = h
        .worker()
        .handler_with(
            "fail",
            quick_retry(1),
            |_: JobContext, _: Value| async move { Err::<(), _>(JobError::permanent("no")) },
        )
        .started();
    let dead = h
        .client
        .enqueue(JobSpec::new("fail", json!({})))
        .await
        .unwrap()
        .id;
    eventually("the job to die", || async {
        (h.client.job(dead).await.unwrap().state == JobState::Dead).then_some(())
    })
    .await;
    worker.shutdown().await;
    let a = send(
        &r,
        Method::POST,
        &format!("/api/v1/jobs/{}/retry", dead.0),
        None,
    )
    .await;
    check_answer(&doc, "/jobs/{id}/retry", "post", &a);
    assert_eq!(a.body["state"], "pending");
    assert_eq!(a.body["errors"][0]["message"], "no");
}

fn order_document(key: Option<&str>) -> Value {
    let mut doc = json!({
        "name": "order",
        "input": {"order_id": 7},
        "steps": [
            {"name": "charge_payment", "kind": "ok"},
            {"name": "send_confirmation", "kind": "send_email", "after": ["charge_payment"], "optional": true},
            {"name": "generate_invoice", "kind": "ok", "after": ["charge_payment"], "after_optional": ["send_confirmation"]},
            {"name": "sync_inventory", "kind": "ok", "after": ["charge_payment"], "after_optional": ["send_confirmation"]}
        ]
    });
    if let Some(key) = key {
        doc["unique_key"] = json!(key);
    }
    doc
}

async fn workflows_start_list_show_and_cancel(h: &Harness) {
    let r = router(h);
    let doc = openapi();
    let a = post(&r, "/api/v1/workflows", order_document(Some("order-7"))).await;
    check_answer(&doc, "/workflows", "post", &a);
    assert_eq!(a.status, 201, "{}", a.text);
    let id = a.body["id"].as_str().unwrap().to_string();
    assert_eq!(a.body["jobs"].as_array().unwrap().len(), 4);
    let a = post(&r, "/api/v1/workflows", order_document(Some("order-7"))).await;
    check_answer(&doc, "/workflows", "post", &a);
    assert_eq!(
        (a.status.as_u16(), a.body["duplicate"].clone()),
        (200, json!(true))
    );

    let a = get(&r, &format!("/api/v1/workflows/{id}")).await;
    check_answer(&doc, "/workflows/{id}", "get", &a);
    assert_eq!(a.body["workflow"]["state"], "running");
    let jobs = a.body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j["payload"] == json!({"order_id": 7})));
    let edges = a.body["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 5);
    assert_eq!(
        edges.iter().filter(|e| e["policy"] == "optional").count(),
        2
    );

    for (body, says) in [
        (json!({"name": "x", "steps": []}), "no steps"),
        (json!({"name": "x", "stepz": []}), "unknown field `stepz`"),
        (
            json!({"name": "x", "steps": [{"name": "a", "kind": "k", "after": ["b"]}]}),
            "b",
        ),
        (
            json!({"name": "x", "steps": [{"name": "a", "kind": "k", "after": ["a"]}]}),
            "a",
        ),
        (
            json!({"name": "x", "steps": [{"name": "a", "kind": 3}]}),
            "steps[0].kind",
        ),
    ] {
        let a = post(&r, "/api/v1/workflows", body.clone()).await;
        check_answer(&doc, "/workflows", "post", &a);
        let detail = a.problem(400);
        assert!(detail.contains(says), "{body}: {detail}");
    }
    let a = send_with(
        &r,
        Method::POST,
        "/api/v1/workflows",
        None,
        &[("content-type", "text/plain")],
    )
    .await;
    check_answer(&doc, "/workflows", "post", &a);
    a.problem(415);

    for i in 0..4 {
        h.client
            .start_workflow(order_workflow(i, "ok"))
            .await
            .unwrap();
    }
    let seen: Vec<String> = all_pages(
        &r,
        "/api/v1/workflows?limit=2",
        "workflows",
        (&doc, "/workflows"),
    )
    .await
    .iter()
    .map(|w| w["id"].as_str().unwrap().to_string())
    .collect();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);
    let a = get(&r, "/api/v1/workflows?state=completed").await;
    assert_eq!(a.body["workflows"].as_array().unwrap().len(), 0);
    for uri in [
        "/api/v1/workflows?state=done",
        "/api/v1/workflows?cursor=x",
        "/api/v1/workflows?limit=-1",
    ] {
        let a = get(&r, uri).await;
        check_answer(&doc, "/workflows", "get", &a);
        a.problem(400);
    }

    let a = send(
        &r,
        Method::POST,
        &format!("/api/v1/workflows/{id}/cancel"),
        None,
    )
    .await;
    check_answer(&doc, "/workflows/{id}/cancel", "post", &a);
    assert_eq!(a.body["state"], "cancelled");
    let a = send(
        &r,
        Method::POST,
        &format!("/api/v1/workflows/{id}/cancel"),
        None,
    )
    .await;
    check_answer(&doc, "/workflows/{id}/cancel", "post", &a);
    a.problem(409);
    let ghost = jobchain::WorkflowId::new();
    let a = get(&r, &format!("/api/v1/workflows/{ghost}")).await;
    check_answer(&doc, "/workflows/{id}", "get", &a);
    a.problem(404);
    let a = get(&r, "/api/v1/workflows/not-a-uuid").await;
    a.problem(400);
}

async fn dead_letter_queue_in_bulk(h: &Harness) {
    let r = router(h);
    let doc = openapi();
    let worker = order_worker(h);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            h.client
                .start_workflow(order_workflow(i, "ok"))
                .await
                .unwrap()
                .id,
        );
    }
    for id in &ids {
        let info = finished(h, *id).await;
        assert_eq!(
            info.state,
            WorkflowState::Failed,
            "closing needs the e-mail"
        );
    }
    worker.shutdown().await;
    let a = get(&r, "/api/v1/jobs?state=dead").await;
    let dead: Vec<i64> = a.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(dead.len(), 3);
    let completed = h.client.workflow_jobs(ids[0]).await.unwrap()[0].id.0;

    let a = post(
        &r,
        "/api/v1/dlq/retry",
        json!({"ids": [dead[0], completed]}),
    )
    .await;
    check_answer(&doc, "/dlq/retry", "post", &a);
    assert_eq!(a.body["done"], json!([dead[0]]));
    assert_eq!(a.body["failed"][0]["id"], completed);
    assert_eq!(a.body["failed"][0]["status"], 409);

    let a = post(
        &r,
        "/api/v1/dlq/cancel",
        json!({"all": true, "kind": "send_email"}),
    )
    .await;
    check_answer(&doc, "/dlq/cancel", "post", &a);
    assert_eq!(a.body["done"].as_array().unwrap().len(), 2);
    let a = get(&r, "/api/v1/jobs?state=dead").await;
    assert_eq!(a.body["jobs"], json!([]));
    let a = get(&r, &format!("/api/v1/jobs/{}", dead[1])).await;
    assert_eq!(a.body["state"], "cancelled");
    assert!(a.body["cancel_reason"]
        .as_str()
        .unwrap()
        .contains("dead-letter queue"));
    let a = post(&r, "/api/v1/dlq/cancel", json!({"ids": [dead[0]]})).await;
    assert_eq!(a.body["failed"][0]["status"], 409, "{}", a.text);

    for body in [
        json!({}),
        json!({"ids": [1], "all": true}),
        json!({"kind": "x"}),
        json!({"ids": "1"}),
    ] {
        let a = post(&r, "/api/v1/dlq/retry", body.clone()).await;
        check_answer(&doc, "/dlq/retry", "post", &a);
        a.problem(400);
    }
}

async fn queues_pause_and_resume(h: &Harness) {
    let r = router(h);
    let doc = openapi();
    h.client
        .enqueue(JobSpec::new("k", json!({})))
        .await
        .unwrap();
    let a = post(&r, "/api/v1/queues/default/pause", json!({})).await;
    check_answer(&doc, "/queues/{name}/pause", "post", &a);
    assert_eq!(a.body["paused"], true);
    let a = get(&r, "/api/v1/queues").await;
    check_answer(&doc, "/queues", "get", &a);
    assert_eq!(a.body["queues"][0]["paused"], true);
    assert_eq!(a.body["queues"][0]["counts"]["pending"], 1);
    let a = get(&r, "/api/v1/stats").await;
    assert_eq!(a.body["queues"][0]["paused"], true);
    let a = post(&r, "/api/v1/queues/default/resume", json!({})).await;
    check_answer(&doc, "/queues/{name}/resume", "post", &a);
    assert_eq!(a.body["paused"], false);
    let a = post(&r, "/api/v1/queues/a%00b/pause", json!({})).await;
    check_answer(&doc, "/queues/{name}/pause", "post", &a);
    assert!(a.problem(400).contains("NUL"));
}

/// A workflow document with a signal step, started over the API: the signal completes
/// the waiting step, a second one is refused, and the result is the last step's output.
async fn signals_and_results(h: &Harness) {
    let r = router(h);
    let doc = openapi();
    let worker = h
        .worker()
        .handler(
            "echo",
            |_: jobchain::JobContext, p: Value| async move { Ok(p) },
        )
        .started();
    let document = json!({"name": "ship", "steps": [
        {"name": "shipped", "wait_for_signal": {"timeout": "1h"}},
        {"name": "done", "kind": "echo", "payload": {"ok": true}, "after": ["shipped"]}
    ]});
    let a = post(&r, "/api/v1/workflows", document).await;
    check_answer(&doc, "/workflows", "post", &a);
    let id = a.body["id"].as_str().unwrap().to_string();
    let a = get(&r, &format!("/api/v1/workflows/{id}/result")).await;
    check_answer(&doc, "/workflows/{id}/result", "get", &a);
    assert!(a.problem(409).contains("still running"), "{}", a.text);
    let a = post(
        &r,
        &format!("/api/v1/workflows/{id}/signals/shipped"),
        json!({"tracking": "ZX-1"}),
    )
    .await;
    check_answer(&doc, "/workflows/{id}/signals/{name}", "post", &a);
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["accepted"], true);
    let a = post(
        &r,
        &format!("/api/v1/workflows/{id}/signals/shipped"),
        json!(2),
    )
    .await;
    check_answer(&doc, "/workflows/{id}/signals/{name}", "post", &a);
    assert_eq!(
        (a.body["accepted"].clone(), a.body["repeats"].clone()),
        (json!(false), json!(1))
    );
    let wf: jobchain::WorkflowId = id.parse().unwrap();
    h.client
        .wait_for_workflow(wf, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let a = get(&r, &format!("/api/v1/workflows/{id}/result")).await;
    check_answer(&doc, "/workflows/{id}/result", "get", &a);
    assert_eq!(a.body["result"], json!({"ok": true}));
    let a = get(&r, &format!("/api/v1/workflows/{id}")).await;
    check_answer(&doc, "/workflows/{id}", "get", &a);
    assert_eq!(a.body["workflow"]["result_step"], "done");
    let a = post(
        &r,
        &format!(
            "/api/v1/workflows/{}/signals/shipped",
            jobchain::WorkflowId::new()
        ),
        json!({}),
    )
    .await;
    check_answer(&doc, "/workflows/{id}/signals/{name}", "post", &a);
    a.problem(404);
    worker.shutdown().await;
}

async fn metrics_count_the_jobs_that_ran(h: &Harness) {
    let metrics = jobchain::Metrics::new();
    let worker = h
        .worker()
        .metrics(&metrics)
        .handler("ok", |_: JobContext, _: Value| async move { Ok(()) })
        .handler_with(
            "flaky",
            quick_retry(2),
            |_: JobContext, _: Value| async move { Err::<(), _>(JobError::retryable("down")) },
        )
        .started();
    for i in 0..5 {
        h.client
            .enqueue(JobSpec::new("ok", json!(i)))
            .await
            .unwrap();
    }
    for i in 0..3 {
        h.client
            .enqueue(JobSpec::new("flaky", json!(i)))
            .await
            .unwrap();
    }
    eventually("every job to end", || async {
        let stats = h.client.queue_stats().await.unwrap();
        (stats[0].counts.completed == 5 && stats[0].counts.dead == 3).then_some(())
    })
    .await;
    worker.shutdown().await;

    // Scraped over a real socket, as Prometheus does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = jobchain_web::metrics_router(h.client.clone(), Some(metrics));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let text = http_get(addr, "/metrics").await;
    server.abort();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/openmetrics-text"));
    let samples = parse_metrics(body);
    let v = |name: &str| {
        samples
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("{name} missing:\n{body}"))
    };
    assert_eq!(v("jobchain_jobs_completed_total{kind=\"ok\"}"), 5.0);
    assert_eq!(v("jobchain_jobs_failed_total{kind=\"flaky\"}"), 6.0);
    assert_eq!(v("jobchain_jobs_retried_total{kind=\"flaky\"}"), 3.0);
    assert_eq!(v("jobchain_jobs_dead_total{kind=\"flaky\"}"), 3.0);
    assert_eq!(
        v("jobchain_handler_duration_seconds_count{kind=\"ok\"}"),
        5.0
    );
    assert_eq!(
        v("jobchain_handler_duration_seconds_count{kind=\"flaky\"}"),
        6.0
    );
    assert_eq!(
        v("jobchain_start_latency_seconds_count{kind=\"flaky\"}"),
        6.0
    );
    assert_eq!(
        v("jobchain_jobs{queue=\"default\",state=\"completed\"}"),
        5.0
    );
    assert_eq!(v("jobchain_jobs{queue=\"default\",state=\"dead\"}"), 3.0);
    assert_eq!(v("jobchain_workers"), 0.0);
    assert!(!samples.contains_key("jobchain_jobs_completed_total{kind=\"flaky\"}"));
    assert!(body.trim_end().ends_with("# EOF"));

    // The dashboard's /metrics (no handlers here) shows the store's gauges.
    let a = get(&router(h), "/metrics").await;
    assert_eq!(a.status, 200);
    assert!(a
        .text
        .contains("jobchain_jobs{queue=\"default\",state=\"completed\"} 5"));
    assert!(!a.text.contains("jobchain_jobs_completed_total"));
    // The metrics server serves nothing else.
    let only = jobchain_web::metrics_router(h.client.clone(), None);
    get(&only, "/api/v1/stats").await.problem(404);
}

/// A GET over a plain TCP connection; returns the whole answer.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

/// Samples of the text format by name with labels; `# ` lines are skipped.
fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name value");
            (name.to_string(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

on_both_stores!(
    stats_workers_and_the_openapi_document,
    jobs_filter_and_page_by_keyset,
    one_job_enqueue_retry_and_cancel,
    workflows_start_list_show_and_cancel,
    dead_letter_queue_in_bulk,
    queues_pause_and_resume,
    signals_and_results,
    metrics_count_the_jobs_that_ran,
);
