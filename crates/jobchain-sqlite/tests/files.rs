//! Bad database files get clear errors and are left untouched.

use std::time::Duration;

use jobchain_core::job::{EnqueueOptions, NewJob};
use jobchain_core::store::{JobFilter, Store};
use jobchain_core::StoreError;
use jobchain_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;

fn job(kind: &str) -> NewJob {
    NewJob::new(kind, json!({}), EnqueueOptions::new())
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    let content = b"these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &content).expect("write");
    let err = SqliteStore::open(&path, SqliteOptions::default())
        .err()
        .expect("opening a text file must fail");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("not a SQLite database"), "{message}");
    assert!(message.contains("notes.txt"), "{message}");
    assert_eq!(std::fs::read(&path).expect("read"), content);
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(files.len(), 1, "no journal or WAL was created: {files:?}");
}

#[test]
fn a_directory_or_a_missing_folder_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = SqliteStore::open(dir.path(), SqliteOptions::default())
        .err()
        .expect("a directory must fail");
    assert!(err.to_string().contains("directory"), "{err}");
    let err = SqliteStore::open(dir.path().join("missing/jobs.db"), SqliteOptions::default())
        .err()
        .expect("a missing folder must fail");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("folder exists"), "{err}");
}

#[test]
fn a_database_from_a_newer_jobchain_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    drop(SqliteStore::open(&path, SqliteOptions::default()).expect("create"));
    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute(
        "INSERT INTO jobchain_migrations (version, applied_at) VALUES (999, 0)",
        [],
    )
    .expect("fake a newer schema");
    drop(raw);
    let err = SqliteStore::open(&path, SqliteOptions::default())
        .err()
        .expect("a newer schema must be refused");
    assert!(err.to_string().contains("upgrade jobchain"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_fails_clearly_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    let store = SqliteStore::open(
        &path,
        SqliteOptions {
            busy_timeout: Duration::from_millis(100),
            ..SqliteOptions::default()
        },
    )
    .expect("open");
    store.enqueue(vec![job("before")]).await.expect("enqueue");
    let locker = rusqlite::Connection::open(&path).expect("raw");
    locker.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let err = store
        .enqueue(vec![job("during")])
        .await
        .expect_err("the lock must be reported");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("locked"), "{err}");
    locker.execute_batch("ROLLBACK").expect("unlock");
    store
        .enqueue(vec![job("after")])
        .await
        .expect("enqueue after");
    let kinds: Vec<String> = store
        .list_jobs(JobFilter::default())
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.kind)
        .collect();
    assert_eq!(kinds, ["before", "after"]);
    store.close().await;
}

#[tokio::test]
async fn reopening_keeps_every_job_and_migrates_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("open");
    let ids = store
        .enqueue((0..10).map(|i| job(&format!("k{i}"))).collect())
        .await
        .expect("enqueue");
    store.close().await;
    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("reopen");
    let jobs = store.list_jobs(JobFilter::default()).await.expect("list");
    assert_eq!(jobs.len(), 10);
    assert_eq!(jobs[0].id, ids[0].id);
    store.close().await;
}
