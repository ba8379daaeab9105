//! The one writer thread: group commit.
//!
//! SQLite allows one writer at a time, and a commit costs a WAL append (and an fsync
//! with `synchronous=FULL`) however much it carries. So every write goes to one thread
//! that owns the write connection. It takes every operation queued at that moment (up to
//! [`MAX_BATCH`]), runs each inside its own savepoint of one `BEGIN IMMEDIATE`
//! transaction, commits once, and only then answers the callers: an answer always means
//! durable. An operation that fails rolls back its own savepoint and nothing else (an
//! operation alone in its transaction, or one SQL statement, needs no savepoint).

use std::sync::mpsc;
use std::thread::JoinHandle;

use jobchain_core::StoreError;
use rusqlite::Connection;

use crate::map_err;

/// Most operations committed together.
pub const MAX_BATCH: usize = 512;

/// Called after the commit with its result.
pub type Reply = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;
/// The body of an operation: runs on the write connection (or learns that the
/// transaction could not start), says whether it succeeded, and gives the reply to send
/// once the transaction's fate is known.
pub type WriteFn = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> (bool, Reply) + Send>;

/// One operation of a group commit.
pub struct WriteOp {
    /// The operation is one SQL statement, which SQLite already makes atomic: it needs
    /// no savepoint of its own (a savepoint journals every page it touches).
    pub single_statement: bool,
    /// What it does.
    pub run: WriteFn,
}

/// Starts the writer thread on `conn`; it ends when every sender is dropped.
pub fn spawn(conn: Connection, ops: mpsc::Receiver<WriteOp>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("jobchain-sqlite-writer".into())
        .spawn(move || run(conn, ops))
}

fn run(conn: Connection, ops: mpsc::Receiver<WriteOp>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = ops.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
            let err = map_err(e);
            for op in batch.drain(..) {
                let (_, reply) = (op.run)(Err(&err));
                reply(Err(&err));
            }
            continue;
        }
        // An operation alone in its transaction needs no savepoint either: if it fails,
        // the whole transaction rolls back.
        let alone = batch.len() == 1;
        let mut failed_alone = false;
        for op in batch.drain(..) {
            if op.single_statement || alone {
                let (ok, reply) = (op.run)(Ok(&conn));
                failed_alone = alone && !ok;
                replies.push(reply);
                continue;
            }
            let savepoint = run_cached(&conn, "SAVEPOINT op");
            let (ok, reply) = (op.run)(Ok(&conn));
            if savepoint.is_ok() {
                let end = if ok {
                    run_cached(&conn, "RELEASE op")
                } else {
                    run_cached(&conn, "ROLLBACK TO op")
                        .and_then(|()| run_cached(&conn, "RELEASE op"))
                };
                if let Err(e) = end {
                    tracing::error!(error = %e, "sqlite savepoint could not be closed");
                }
            }
            replies.push(reply);
        }
        if failed_alone {
            if let Err(e) = run_cached(&conn, "ROLLBACK") {
                tracing::error!(error = %e, "sqlite transaction could not be rolled back");
            }
            // The operation's reply carries its own error.
            for reply in replies.drain(..) {
                reply(Ok(()));
            }
            continue;
        }
        match run_cached(&conn, "COMMIT") {
            Ok(()) => {
                for reply in replies.drain(..) {
                    reply(Ok(()));
                }
            }
            Err(e) => {
                let err = map_err(e);
                let _ = conn.execute_batch("ROLLBACK");
                for reply in replies.drain(..) {
                    reply(Err(&err));
                }
            }
        }
    }
}

/// Runs a parameterless statement through the statement cache (no re-parsing).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}
