//! Hostile input: names with quotes, `%`, `_` and right-to-left marks are stored as they
//! are and match only themselves; NUL, oversized names, deep or oversized payloads and
//! cyclic workflows are refused with a clear error and write nothing; a workflow of
//! 10,000 steps is written whole.

use jobchain::{JobFilter, Step, StoreError, Workflow, WorkflowFilter};
use serde_json::{json, Value};

use crate::support::{job, Harness};

fn refused(err: jobchain::Error, says: &str) {
    let text = err.to_string();
    assert!(
        matches!(
            err,
            jobchain::Error::Store(StoreError::Invalid(_)) | jobchain::Error::Workflow(_)
        ),
        "{text}"
    );
    assert!(text.contains(says), "expected `{says}` in: {text}");
}

async fn total_jobs(h: &Harness) -> usize {
    h.client
        .jobs(JobFilter {
            limit: Some(100_000),
            ..JobFilter::default()
        })
        .await
        .expect("list")
        .len()
}

/// Odd but legal names are kept exactly; filters match them literally.
pub async fn odd_names_are_kept_and_match_only_themselves(h: &Harness) {
    let names = [
        "it's \"quoted\"",
        "100%_off",
        "100_off",
        "abc\u{202E}txt.exe",
        "emoji 📦 and 日本語",
    ];
    for name in names {
        let id = h
            .client
            .enqueue(
                job(name, &json!({ "name": name })).options(
                    jobchain::EnqueueOptions::new()
                        .queue(name)
                        .unique_key(format!("key {name}")),
                ),
            )
            .await
            .expect("enqueue")
            .id;
        let stored = h.client.job(id).await.expect("job");
        assert_eq!(stored.kind, name);
        assert_eq!(stored.queue, name);
        assert_eq!(
            stored.unique_key.as_deref(),
            Some(format!("key {name}").as_str())
        );
        let matched = h
            .client
            .jobs(JobFilter {
                kind: Some(name.to_string()),
                ..JobFilter::default()
            })
            .await
            .expect("filter");
        assert_eq!(matched.len(), 1, "`{name}` matched {matched:?}");
    }
    let wf = h
        .client
        .start_workflow(
            Workflow::new("order \"%_\" \u{202E}")
                .step(Step::untyped("step '1' %", job("k", &json!({}))))
                .step(Step::untyped("step _2_", job("k", &json!({}))).after("step '1' %")),
        )
        .await
        .expect("start");
    let listed = h
        .client
        .workflows(WorkflowFilter {
            name: Some("order \"%_\" \u{202E}".into()),
            ..WorkflowFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, wf.id);
    let steps: Vec<String> = h
        .client
        .workflow_jobs(wf.id)
        .await
        .expect("jobs")
        .into_iter()
        .filter_map(|j| j.step)
        .collect();
    assert_eq!(steps, ["step '1' %", "step _2_"]);
}

/// What no store can keep is refused before anything is written, saying what to fix.
pub async fn unstorable_input_is_refused_and_writes_nothing(h: &Harness) {
    let before = total_jobs(h).await;
    let err = h
        .client
        .enqueue(job("nul\0kind", &json!({})))
        .await
        .unwrap_err();
    refused(err, "NUL character");
    let long = "k".repeat(10 * 1024);
    let err = h.client.enqueue(job(&long, &json!({}))).await.unwrap_err();
    refused(err, "at most 1024");
    let err = h
        .client
        .enqueue(job("k", &json!({"text": "a\0b"})))
        .await
        .unwrap_err();
    refused(err, "NUL character in a string");
    let mut deep = json!(1);
    for _ in 0..1000 {
        deep = json!([deep]);
    }
    let err = h.client.enqueue(job("k", &deep)).await.unwrap_err();
    refused(err, "nested more than 128 levels");
    flatten_drop(deep);
    // An empty key (most often an unset variable) would join every job given one.
    for options in [
        jobchain::EnqueueOptions::new().concurrency_key(""),
        jobchain::EnqueueOptions::new().unique_key(""),
        jobchain::EnqueueOptions::new().debounce("", std::time::Duration::from_secs(1)),
    ] {
        let err = h
            .client
            .enqueue(job("k", &json!({})).options(options))
            .await
            .unwrap_err();
        refused(err, "is empty: give it a value");
    }
    h.client.set_max_payload_bytes(1000);
    let err = h
        .client
        .enqueue(job("k", &json!({ "blob": "x".repeat(2000) })))
        .await
        .unwrap_err();
    refused(err, "over the limit of 1000");
    h.client
        .enqueue(job("k", &json!({ "blob": "x".repeat(900) })))
        .await
        .expect("under the limit");
    h.client
        .set_max_payload_bytes(jobchain::client::DEFAULT_MAX_PAYLOAD_BYTES);
    // A many-step document with a cycle.
    let mut cyclic = Workflow::new("cyclic");
    for i in 0..1000 {
        let previous = format!("s{}", (i + 999) % 1000);
        cyclic = cyclic.step(Step::untyped(&format!("s{i}"), job("k", &json!(i))).after(&previous));
    }
    let err = h.client.start_workflow(cyclic).await.unwrap_err();
    refused(err, "cycle");
    let err = h
        .client
        .start_workflow(Workflow::new("bad\0name").step(Step::untyped("a", job("k", &json!({})))))
        .await
        .unwrap_err();
    refused(err, "NUL character");
    assert_eq!(
        total_jobs(h).await,
        before + 1,
        "only the job under the limit"
    );
}

/// A workflow of 10,000 steps (a fan-in of 9,999) is written whole, in one transaction.
pub async fn ten_thousand_steps_are_written_whole(h: &Harness) {
    let mut wide = Workflow::new("wide");
    let names: Vec<String> = (0..9_999).map(|i| format!("leaf{i}")).collect();
    for name in &names {
        wide = wide.step(Step::untyped(name, job("leaf", &json!({}))));
    }
    let mut join = Step::untyped("join", job("join", &json!({})));
    for name in &names {
        join = join.after(name);
    }
    let started = h
        .client
        .start_workflow(wide.step(join))
        .await
        .expect("start");
    assert_eq!(started.jobs.len(), 10_000);
    let info = h.client.workflow(started.id).await.expect("workflow");
    assert_eq!(info.counts.pending, 9_999);
    assert_eq!(info.counts.blocked, 1);
    assert_eq!(
        h.client
            .store()
            .dependencies(started.id)
            .await
            .expect("edges")
            .len(),
        9_999
    );
}

/// Drops a deeply nested value without recursing once per level.
fn flatten_drop(value: Value) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}
