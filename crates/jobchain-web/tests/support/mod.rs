//! What the web tests share: stores, requests through the router, a small JSON Schema
//! check against the OpenAPI document, and the order workflow with a failing e-mail.

#![allow(dead_code, unused_imports)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use jobchain::{JobContext, JobError, Step, Workflow, WorkflowId};
use jobchain_conformance::support::{job, quick_retry};
use jobchain_conformance::Harness;
use serde_json::{json, Value};
use tower::ServiceExt;

pub use jobchain_conformance::support::{eventually, postgres_harness, StartWorker};

/// A SQLite store in a temp dir of its own.
pub async fn sqlite_harness() -> Option<Harness> {
    let dir = tempfile::tempdir().expect("temp dir");
    let location = dir
        .path()
        .join("jobs.db")
        .to_str()
        .expect("utf-8")
        .to_string();
    let client = jobchain::open(&location).await.expect("open sqlite");
    Some(Harness::new(client, location, dir))
}

/// Runs each named case on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let h = $crate::support::sqlite_harness().await.expect("sqlite");
                    super::$case(&h).await;
                    h.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(h) = $crate::support::postgres_harness().await else { return };
                    super::$case(&h).await;
                    h.close().await;
                }
            )*
        }
    };
}

/// An answer: status, headers and the body as JSON (`Value::Null` when empty or not
/// JSON; the text is in `text`).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts an error answer in problem+json with `status`, and returns its detail.
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "{}",
            self.text
        );
        assert_eq!(self.body["status"], status);
        let detail = self.body["detail"].as_str().expect("a detail").to_string();
        assert!(!detail.is_empty());
        detail
    }
}

/// Sends one request through the router.
pub async fn send(router: &Router, method: Method, uri: &str, body: Option<Value>) -> Answer {
    send_with(router, method, uri, body, &[]).await
}

/// Sends one request with extra headers.
pub async fn send_with(
    router: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

pub async fn get(router: &Router, uri: &str) -> Answer {
    send(router, Method::GET, uri, None).await
}

pub async fn post(router: &Router, uri: &str, body: Value) -> Answer {
    send(router, Method::POST, uri, Some(body)).await
}

/// The OpenAPI document the router serves.
pub fn openapi() -> Value {
    serde_json::from_str(include_str!("../../assets/openapi.json")).expect("openapi.json is JSON")
}

/// Checks `value` against a schema of the OpenAPI document (the subset it uses: `$ref`,
/// `type`, `enum`, `required`, `properties`, `additionalProperties: false`, `items`,
/// `minimum`, `maximum`). Returns what does not match.
pub fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        return check_schema(doc, &doc["components"]["schemas"][name], value, at);
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        });
        if !fits {
            wrong.push(format!("{at}: {value} is not {types:?}"));
            return wrong;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            wrong.push(format!("{at}: {value} is not one of {options:?}"));
        }
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if n < min {
            wrong.push(format!("{at}: {n} < {min}"));
        }
    }
    if let Value::Object(map) = value {
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(key) {
                wrong.push(format!("{at}: `{key}` is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, v) in map {
            match properties.and_then(|p| p.get(key)) {
                Some(s) => wrong.extend(check_schema(doc, s, v, &format!("{at}.{key}"))),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    wrong.push(format!("{at}: `{key}` is not in the schema"))
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            wrong.extend(check_schema(doc, s, v, &format!("{at}[{i}]")));
        }
    }
    wrong
}

/// Checks an answer against the document's description of `operation` (by path template
/// and method): the status is documented, and the body matches its schema.
pub fn check_answer(doc: &Value, path: &str, method: &str, answer: &Answer) {
    let responses = &doc["paths"][path][method]["responses"];
    let status = answer.status.as_u16().to_string();
    let documented = &responses[&status];
    assert!(
        documented.is_object(),
        "{method} {path} answered {status}, which the document does not list: {}",
        answer.text
    );
    let (media, schema) = documented["content"]
        .as_object()
        .and_then(|c| c.iter().next())
        .expect("documented content");
    assert!(
        answer.content_type().starts_with(media.as_str()),
        "{method} {path} {status}: content type {} is not {media}",
        answer.content_type()
    );
    let wrong = check_schema(doc, &schema["schema"], &answer.body, "body");
    assert!(
        wrong.is_empty(),
        "{method} {path} {status} does not match the document: {wrong:?}\n{}",
        answer.text
    );
}

/// A worker for the order workflow: payment, e-mail (fails for good), invoice, inventory.
pub fn order_worker(h: &Harness) -> jobchain::WorkerHandle {
    h.worker()
        .handler("ok", |_: JobContext, p: Value| async move { Ok(p) })
        .handler_with(
            "send_email",
            quick_retry(2),
            |_: JobContext, _: Value| async move {
                Err::<(), _>(JobError::retryable("the mail server is down"))
            },
        )
        .started()
}

/// The order, declared: payment, then the e-mail; invoice and inventory wait for the
/// e-mail on optional edges (they run whatever it does); closing the order needs the
/// e-mail sent, so a dead e-mail fails the workflow until it is retried. `pay_kind` is the
/// payment step's kind.
pub fn order_workflow(order: u32, pay_kind: &str) -> Workflow {
    let p = json!({"order_id": order, "email": format!("customer{order}@example.com")});
    Workflow::new("order")
        .step(Step::untyped("charge_payment", job(pay_kind, &p)))
        .step(Step::untyped("send_confirmation", job("send_email", &p)).after("charge_payment"))
        .step(
            Step::untyped("generate_invoice", job("ok", &p))
                .after("charge_payment")
                .after_optional("send_confirmation"),
        )
        .step(
            Step::untyped("sync_inventory", job("ok", &p))
                .after("charge_payment")
                .after_optional("send_confirmation"),
        )
        .step(Step::untyped("close_order", job("ok", &p)).after("send_confirmation"))
}

/// Follows `next_cursor` from `first` to the last page; returns every item of `key`.
pub async fn all_pages(
    router: &Router,
    first: &str,
    key: &str,
    check: (&Value, &str),
) -> Vec<Value> {
    let (doc, path) = check;
    let mut items = Vec::new();
    let mut uri = first.to_string();
    loop {
        let a = get(router, &uri).await;
        check_answer(doc, path, "get", &a);
        items.extend(a.body[key].as_array().expect("a page").iter().cloned());
        match a.body["next_cursor"].as_str() {
            Some(c) => {
                let base = first.split("&cursor=").next().unwrap_or(first);
                uri = format!("{base}&cursor={c}");
            }
            None => return items,
        }
    }
}

/// Waits until the workflow has finished.
pub async fn finished(h: &Harness, id: WorkflowId) -> jobchain::WorkflowInfo {
    eventually("the workflow to finish", || async {
        let info = h.client.workflow(id).await.expect("workflow");
        (info.state != jobchain::WorkflowState::Running).then_some(info)
    })
    .await
}
