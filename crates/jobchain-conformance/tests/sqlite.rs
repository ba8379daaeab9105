//! The conformance suite on SQLite: each case on a temp file of its own.

use jobchain_conformance::Harness;

async fn sqlite() -> Option<Harness> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    let location = path.to_str().expect("utf-8 path").to_string();
    let client = jobchain::open(&location).await.expect("open sqlite store");
    Some(Harness::new(client, location, dir))
}

jobchain_conformance::conformance_suite!(sqlite);
