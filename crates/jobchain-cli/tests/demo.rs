//! `jobchain demo` end to end on a temp SQLite file, and its errors for bad input.

use std::process::Command;

/// Whether some line of `out` names `step` in `state`.
fn shows(out: &str, step: &str, state: &str) -> bool {
    out.lines().any(|l| {
        let mut words = l.split_whitespace().skip_while(|w| *w != step);
        words.next() == Some(step) && words.next() == Some(state)
    })
}

fn demo(args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("demo.db");
    let output = Command::new(env!("CARGO_BIN_EXE_jobchain"))
        .arg("demo")
        .args(["--database", db.to_str().expect("utf-8")])
        .args(args)
        .output()
        .expect("run jobchain demo");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_order_workflow_completes() {
    let (ok, out, err) = demo(&[]);
    assert!(ok, "{err}");
    assert_eq!(out.matches("· completed").count(), 3, "{out}");
    assert!(
        out.contains("└─ send_order_confirmation  completed"),
        "{out}"
    );
    assert!(
        out.contains("3 order(s): 3 completed · 12 jobs: 12 completed"),
        "{out}"
    );
}

#[test]
fn a_failing_payment_stops_everything_downstream() {
    let (ok, out, err) = demo(&["--orders", "1", "--fail", "payment"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("process_order  dead        3 attempts"),
        "{out}"
    );
    assert!(!out.contains("send_order_confirmation"), "{out}");
    assert!(out.contains("1 in the dead-letter queue"), "{out}");
}

#[test]
fn optional_email_lets_invoice_and_inventory_run() {
    // Chained dynamically, the handler catches the e-mail error and hands on anyway.
    let (ok, out, err) = demo(&["--orders", "1", "--fail", "email", "--email-optional"]);
    assert!(ok, "{err}");
    assert!(shows(&out, "send_order_confirmation", "completed"), "{out}");
    assert!(shows(&out, "generate_invoice", "completed"), "{out}");
    assert!(shows(&out, "sync_inventory", "completed"), "{out}");
    assert!(err.contains("continuing without it"), "{err}");
    // Declared, the e-mail step dies and its optional edges let the rest run.
    let (ok, out, err) = demo(&[
        "--orders",
        "1",
        "--fail",
        "email",
        "--email-optional",
        "--declared",
    ]);
    assert!(ok, "{err}");
    assert!(shows(&out, "send_order_confirmation", "dead"), "{out}");
    assert!(shows(&out, "generate_invoice", "completed"), "{out}");
    assert!(out.contains("· completed, 1 tolerated failure(s)"), "{out}");
}

#[test]
fn bad_arguments_and_files_are_refused_clearly() {
    let (ok, _, err) = demo(&["--orders", "0"]);
    assert!(!ok);
    assert!(err.contains("--orders"), "{err}");
    let (ok, _, err) = demo(&["--fail", "printer"]);
    assert!(!ok);
    assert!(err.contains("possible values"), "{err}");
    let dir = tempfile::tempdir().expect("temp dir");
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a database").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_jobchain"))
        .args(["demo", "--database", notes.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("not a SQLite database"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&notes).expect("read"),
        "not a database"
    );
}
