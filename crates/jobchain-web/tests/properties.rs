//! A property-based run of the API against its OpenAPI document, on SQLite and
//! PostgreSQL: requests generated from the document (every operation; path ids that
//! exist, do not, or are not ids; query values that fit or do not; bodies valid, mutated
//! or not JSON at all) never get a 5xx, and every answer has a status the document lists
//! with a body that matches its schema.

mod support;

use axum::http::Method;
use jobchain_conformance::Harness;
use jobchain_web::WebOptions;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};

use support::*;

/// One generated request.
#[derive(Clone, Debug)]
struct Generated {
    path: String,
    method: String,
    id: IdChoice,
    query: Vec<(String, String)>,
    body: BodyChoice,
}

#[derive(Clone, Debug)]
enum IdChoice {
    Existing,
    Missing,
    Garbage(String),
}

#[derive(Clone, Debug)]
enum BodyChoice {
    Valid,
    Mutated(Vec<(String, Value)>, Vec<String>),
    Raw(String),
    None,
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(Value::String),
        Just(json!("<img src=x onerror=alert(1)>")),
        Just(json!("a\u{0}b")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("pending".to_string()),
        Just("dead".to_string()),
        Just("running".to_string()),
        Just("oldest".to_string()),
        Just("newest".to_string()),
        (0i64..1000).prop_map(|n| n.to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("2026-11-27T10:00:00Z~01a21c73-3038-7016-b446-ee975a5be5c4".to_string()),
        "\\PC{0,12}",
    ]
}

fn generated(operations: Vec<(String, String, Vec<String>)>) -> impl Strategy<Value = Generated> {
    (0..operations.len()).prop_flat_map(move |i| {
        let (path, method, params) = operations[i].clone();
        let params_strategy = prop::collection::vec(
            (
                prop_oneof![
                    8 => prop::sample::select(if params.is_empty() { vec!["limit".to_string()] } else { params.clone() }),
                    1 => "[a-z]{1,6}",
                ],
                query_value(),
            ),
            0..4,
        );
        let id = prop_oneof![
            3 => Just(IdChoice::Existing),
            1 => Just(IdChoice::Missing),
            1 => prop_oneof![
                Just("abc".to_string()),
                Just("-5".to_string()),
                Just("1.5".to_string()),
                Just("00000000-0000-0000-0000-00000000000g".to_string()),
                "[a-zA-Z0-9%._~-]{1,40}",
            ]
            .prop_map(IdChoice::Garbage),
        ];
        let body = prop_oneof![
            3 => Just(BodyChoice::Valid),
            3 => (
                prop::collection::vec(("[a-z_]{1,10}", any_json()), 0..3),
                prop::collection::vec("[a-z_]{1,10}", 0..2),
            )
                .prop_map(|(set, drop)| BodyChoice::Mutated(set, drop)),
            1 => "\\PC{0,40}".prop_map(BodyChoice::Raw),
            1 => Just(BodyChoice::None),
        ];
        (Just(path), Just(method), id, params_strategy, body).prop_map(
            |(path, method, id, query, body)| Generated {
                path,
                method,
                id,
                query,
                body,
            },
        )
    })
}

/// A valid body for each operation that takes one.
fn valid_body(path: &str, job: i64) -> Value {
    match path {
        "/jobs" => {
            json!({"kind": "generated", "payload": {"n": 1}, "options": {"queue": "q", "priority": 5}})
        }
        "/workflows" => {
            json!({"name": "generated", "result": "b", "steps": [
                {"name": "a", "kind": "k"},
                {"name": "b", "kind": "k", "after": ["a"]},
                {"name": "shipped", "wait_for_signal": {"timeout": "1h"}, "after": ["a"]},
                {"name": "each", "map": {"kind": "k", "over": "a", "max_parallel": 2}},
                {"name": "pause", "sleep": "10s"},
                {"name": "maybe", "kind": "k", "after": ["a"], "skip_if": {"step": "a", "op": "exists"}},
                {"name": "child", "workflow": {"name": "c", "steps": [{"name": "x", "kind": "k"}]}}
            ]})
        }
        _ => json!({"ids": [job]}),
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn generated_requests_get_documented_answers(h: &Harness) {
    let r = jobchain_web::router(h.client.clone(), WebOptions::default());
    let doc = openapi();
    // Something to find: a job, a dead job, a workflow.
    let job = post(&r, "/api/v1/jobs", json!({"kind": "seed", "payload": 1}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let started = post(
        &r,
        "/api/v1/workflows",
        json!({"name": "seed", "steps": [{"name": "a", "kind": "k"}]}),
    )
    .await;
    let workflow = started.body["id"].as_str().unwrap().to_string();

    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let params = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect();
            operations.push((path.clone(), method.clone(), params));
        }
    }
    assert_eq!(
        operations.len(),
        18,
        "every operation of the document is exercised"
    );
    let strategy = generated(operations);
    let mut runner = TestRunner::deterministic();
    for case in 0..300 {
        let g = strategy.new_tree(&mut runner).expect("a case").current();
        let id = match (&g.id, g.path.contains("/workflows/")) {
            (IdChoice::Existing, false) => job.to_string(),
            (IdChoice::Existing, true) => workflow.clone(),
            (IdChoice::Missing, false) => (job + 1_000_000).to_string(),
            (IdChoice::Missing, true) => jobchain::WorkflowId::new().to_string(),
            (IdChoice::Garbage(text), _) => text.clone(),
        };
        let mut uri = format!(
            "/api/v1{}",
            g.path
                .replace("{id}", &encode(&id))
                .replace("{name}", &encode(&format!("q{}", id.len() % 3)))
        );
        if g.method == "get" && !g.query.is_empty() {
            let q: Vec<String> = g
                .query
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            uri = format!("{uri}?{}", q.join("&"));
        }
        let method = if g.method == "get" {
            Method::GET
        } else {
            Method::POST
        };
        let takes_body = doc["paths"][&g.path][&g.method]["requestBody"].is_object();
        let answer = if method == Method::GET || !takes_body {
            send(&r, method, &uri, None).await
        } else {
            match &g.body {
                BodyChoice::Valid => post(&r, &uri, valid_body(&g.path, job)).await,
                BodyChoice::Mutated(set, drop) => {
                    let mut body = valid_body(&g.path, job);
                    for key in drop {
                        body.as_object_mut().unwrap().remove(key);
                    }
                    for (k, v) in set {
                        body[k] = v.clone();
                    }
                    post(&r, &uri, body).await
                }
                BodyChoice::Raw(text) => {
                    let request = axum::http::Request::post(&uri)
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(text.clone()))
                        .unwrap();
                    raw(&r, request).await
                }
                BodyChoice::None => send(&r, Method::POST, &uri, None).await,
            }
        };
        assert!(
            !answer.status.is_server_error(),
            "case {case}: {} {uri} answered {}: {}",
            g.method,
            answer.status,
            answer.text
        );
        check_answer(&doc, &g.path, &g.method, &answer);
    }
}

async fn raw(r: &axum::Router, request: axum::http::Request<axum::body::Body>) -> Answer {
    use tower::ServiceExt;
    let response = r.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

on_both_stores!(generated_requests_get_documented_answers);
