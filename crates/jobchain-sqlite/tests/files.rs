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

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts one, or says why it cannot (mounting needs root).
    fn mount(size: &str) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if output.status.success() {
            Ok(SmallDisk { dir })
        } else {
            Err(format!(
                "mounting a small tmpfs failed (it needs root): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// A full disk is its own error, naming the file; every job acknowledged before it is
/// still there, and the store works again once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_its_own_error_naming_the_file_and_loses_nothing() {
    let disk = match SmallDisk::mount("1m") {
        Ok(disk) => disk,
        Err(why) if std::env::var("JOBCHAIN_REQUIRE_ROOT").is_ok_and(|v| v == "1") => {
            panic!("JOBCHAIN_REQUIRE_ROOT=1 but {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let path = disk.dir.path().join("jobs.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("open");
    let filler = "x".repeat(4096);
    let mut acknowledged = 0;
    let err = loop {
        let batch: Vec<NewJob> = (0..10)
            .map(|_| NewJob::new("fill", json!({ "filler": filler }), EnqueueOptions::new()))
            .collect();
        match store.enqueue(batch).await {
            Ok(written) => acknowledged += written.len(),
            Err(e) => break e,
        }
        assert!(acknowledged < 10_000, "a 1 MiB disk never filled up");
    };
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("disk"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    let stored = store
        .list_jobs(JobFilter {
            limit: Some(100_000),
            ..JobFilter::default()
        })
        .await
        .expect("reads work on a full disk");
    assert_eq!(
        stored.len(),
        acknowledged,
        "every acknowledged job is stored"
    );
    store.close().await;
    drop(store);
    // Room again: the same file takes jobs.
    std::process::Command::new("mount")
        .args(["-o", "remount,size=8m"])
        .arg(disk.dir.path())
        .status()
        .expect("remount");
    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("reopen");
    store
        .enqueue(vec![job("after")])
        .await
        .expect("enqueue with room");
    let stored = store
        .list_jobs(JobFilter {
            limit: Some(100_000),
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(stored.len(), acknowledged + 1);
    store.close().await;
}

#[test]
fn a_new_database_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    drop(SqliteStore::open(&path, SqliteOptions::default()).expect("create"));
    for entry in std::fs::read_dir(dir.path()).expect("ls") {
        let entry = entry.expect("entry");
        let mode = entry.metadata().expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{:?} is {mode:o}", entry.file_name());
    }
}
