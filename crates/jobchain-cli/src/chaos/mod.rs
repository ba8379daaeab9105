//! `jobchain chaos`: worker processes under a mixed load while a seeded fault schedule
//! kills them (SIGKILL mid-handler and mid-commit), stops them past their lease (SIGSTOP,
//! then SIGCONT: the zombie must change nothing), drops their PostgreSQL connections, or
//! holds SQLite's write lock from another process. Afterwards the faults stop, the load
//! drains, and the store and the workers' histories are checked against the invariants
//! of [`check`]. It prints one line of figures and exits 1 on any violation, naming it.

pub mod check;
pub mod worker;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use jobchain::{Client, JobFilter, JobSpec, JobState, Step, Workflow, WorkflowFilter};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use crate::bench::Target;
use crate::common::{out, parse_duration};
use crate::CliError;
use check::{Acknowledged, Evidence, Start};

/// Options of `jobchain chaos`.
#[derive(Clone, Debug, Args)]
pub struct ChaosArgs {
    /// PostgreSQL URL to run on (a schema of its own is created and dropped); default: a
    /// temp SQLite file.
    #[arg(long)]
    pub database: Option<String>,
    /// How long faults are injected.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Worker processes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub workers: u8,
    /// Seed of the fault schedule and the load (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also restart the local PostgreSQL cluster now and then (`pg_ctlcluster`; every
    /// session on the server is cut, not only the run's).
    #[arg(long)]
    pub restart_postgres: bool,
}

/// A small, seeded, reproducible generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The worker processes.
struct Fleet {
    exe: PathBuf,
    location: String,
    dir: PathBuf,
    children: Vec<Child>,
    spawned: usize,
}

impl Fleet {
    fn spawn(&mut self) -> Result<Child, CliError> {
        self.spawned += 1;
        let history = self.dir.join(format!("history-{}.jsonl", self.spawned));
        let log = std::fs::File::create(self.dir.join(format!("worker-{}.log", self.spawned)))
            .map_err(|e| CliError::failed(format!("cannot create a worker log: {e}")))?;
        Command::new(&self.exe)
            .args(["chaos-worker", "--database", &self.location, "--history"])
            .arg(history)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| CliError::failed(format!("cannot start a worker process: {e}")))
    }

    fn pid(&self, k: usize) -> Pid {
        Pid::from_raw(self.children[k].id() as i32)
    }

    /// Kills worker `k` and starts a new one in its place.
    fn kill_and_replace(&mut self, k: usize) -> Result<(), CliError> {
        let _ = self.children[k].kill();
        let _ = self.children[k].wait();
        self.children[k] = self.spawn()?;
        Ok(())
    }

    /// Asks every worker to stop (their standard input closes) and waits.
    fn stop_all(&mut self) {
        for child in &mut self.children {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            drop(child.stdin.take());
        }
        for child in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// What the run did.
#[derive(Debug, Default)]
struct Figures {
    kills: u32,
    stops: u32,
    restarts: u32,
    dropped: u32,
    lock_holds: u32,
    disk_full: u32,
    enqueue_errors: u32,
}

/// Runs the chaos run.
pub async fn run(args: ChaosArgs) -> Result<(), CliError> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let dir = tempfile::Builder::new()
        .prefix("jobchain-chaos-")
        .tempdir()
        .map_err(|e| CliError::failed(format!("cannot create a temp folder: {e}")))?;
    // SQLite runs on a small disk of its own when it can, so that it can be filled up.
    let disk = match &args.database {
        None => SmallDisk::mount(&dir.path().join("disk")),
        Some(_) => Err("not on SQLite".to_string()),
    };
    let target = match &disk {
        Ok(disk) => Target::sqlite_at(&disk.path.join("chaos.db")),
        Err(_) => Target::create(args.database.as_deref(), "chaos").await?,
    };
    let result = tokio::select! {
        result = run_on(&args, seed, &target, dir.path(), disk.as_ref().ok()) => result,
        _ = tokio::signal::ctrl_c() => Err(CliError::failed("chaos run interrupted")),
    };
    target.destroy().await;
    if let Err(why) = &disk {
        tracing::info!("chaos: no disk-full faults: {why}");
    }
    drop(disk);
    if result.is_err() {
        // Keep the workers' logs and histories for the post-mortem.
        let kept = dir.keep();
        out(format!(
            "the workers' logs and histories are kept in {}",
            kept.display()
        ));
    }
    result
}

/// A small tmpfs for the SQLite file, filled up by the disk-full fault; unmounted when
/// dropped. Mounting needs root.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path) -> Result<SmallDisk, String> {
        std::fs::create_dir_all(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if status.success() {
            Ok(SmallDisk {
                path: path.to_path_buf(),
            })
        } else {
            Err("mounting a tmpfs needs root".into())
        }
    }

    /// Fills the disk, holds it full for `hold`, then frees it.
    async fn fill_for(&self, hold: Duration) -> Result<(), CliError> {
        let filler = self.path.join("filler");
        let path = filler.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut file = std::fs::File::create(&path)?;
            let block = vec![0u8; 1 << 20];
            loop {
                if let Err(e) = file.write_all(&block) {
                    if e.raw_os_error() == Some(28) {
                        return Ok(()); // ENOSPC: full
                    }
                    return Err(e);
                }
            }
        })
        .await
        .map_err(|e| CliError::failed(format!("filler task failed: {e}")))?
        .map_err(|e| CliError::failed(format!("cannot fill the disk: {e}")))?;
        tokio::time::sleep(hold).await;
        std::fs::remove_file(&filler)
            .map_err(|e| CliError::failed(format!("cannot free the disk: {e}")))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path.join("filler"));
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

async fn run_on(
    args: &ChaosArgs,
    seed: u64,
    target: &Target,
    dir: &Path,
    disk: Option<&SmallDisk>,
) -> Result<(), CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("cannot find this program: {e}")))?;
    let client = target.client().await?;
    let mut fleet = Fleet {
        exe,
        location: target.location.clone(),
        dir: dir.to_path_buf(),
        children: Vec::new(),
        spawned: 0,
    };
    for _ in 0..args.workers {
        let child = fleet.spawn()?;
        fleet.children.push(child);
    }
    let mut rng = Rng::new(seed);
    let mut figures = Figures::default();
    let mut acknowledged = Vec::new();
    let started = Instant::now();
    let mut next_load = Instant::now();
    let mut next_fault = Instant::now() + Duration::from_millis(500 + rng.below(1500));
    let mut round = 0u64;
    while started.elapsed() < args.duration {
        if Instant::now() >= next_load {
            round += 1;
            if let Err(e) = enqueue_round(&client, round, &mut acknowledged).await {
                figures.enqueue_errors += 1;
                tracing::info!(error = %e, "chaos: an enqueue failed (not acknowledged)");
            }
            next_load = Instant::now() + Duration::from_millis(100);
        }
        if Instant::now() >= next_fault {
            fault(
                &mut rng,
                &mut fleet,
                target,
                disk,
                args.restart_postgres,
                &mut figures,
            )
            .await?;
            next_fault = Instant::now() + Duration::from_millis(300 + rng.below(1700));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The faults stop: every worker runs, and the load drains.
    for k in 0..fleet.children.len() {
        let _ = kill(fleet.pid(k), Signal::SIGCONT);
        if matches!(fleet.children[k].try_wait(), Ok(Some(_))) {
            fleet.children[k] = fleet.spawn()?;
        }
    }
    let drained = drain(&client, Duration::from_secs(120)).await;
    fleet.stop_all();
    let evidence = Evidence {
        acknowledged,
        jobs: all_jobs(&client).await?,
        workflows: client
            .workflows(WorkflowFilter {
                limit: Some(1_000_000),
                ..WorkflowFilter::default()
            })
            .await?,
        starts: read_histories(dir)?,
        chain_kind: "chain".into(),
    };
    client.close().await;
    let verdict = check::check(&evidence);
    out(format!(
        "seed={seed} store={} duration={}s workers={} kills={} stops={} restarts={} dropped={} lock_holds={} disk_full={} enqueue_errors={} jobs={} workflows={} attempts={} lost={} duplicated={} double_completed={} stuck={} miscounted={}",
        target.store,
        args.duration.as_secs(),
        args.workers,
        figures.kills,
        figures.stops,
        figures.restarts,
        figures.dropped,
        figures.lock_holds,
        if disk.is_some() || target.store == "postgres" {
            figures.disk_full.to_string()
        } else {
            "skipped(needs-root)".into()
        },
        figures.enqueue_errors,
        evidence.jobs.len(),
        evidence.workflows.len(),
        evidence
            .starts
            .iter()
            .filter(|s| s.completed.is_none())
            .count(),
        verdict.lost.len(),
        verdict.duplicated.len(),
        verdict.double_completed.len(),
        verdict.stuck.len(),
        verdict.miscounted.len(),
    ));
    if !drained {
        out("warning: the load did not drain within 120 s of the faults stopping");
    }
    if verdict.ok() {
        return Ok(());
    }
    let mut named = Vec::new();
    for line in verdict
        .lost
        .iter()
        .chain(&verdict.duplicated)
        .chain(&verdict.double_completed)
        .chain(&verdict.stuck)
        .chain(&verdict.miscounted)
        .take(20)
    {
        out(format!("violation: {line}"));
        named.extend(check::jobs_named(line));
    }
    // The history around each job named: which attempt ran in which process, and what
    // the store holds for it.
    for id in named.into_iter().take(10) {
        let runs: Vec<String> = evidence
            .starts
            .iter()
            .filter(|s| s.job == id)
            .map(|s| format!("attempt {} in pid {}", s.attempt, s.pid))
            .collect();
        let stored = evidence.jobs.iter().find(|j| j.id.0 == id).map(|j| {
            format!(
                "{} {} after {} attempt(s), errors {:?}",
                j.kind,
                j.state,
                j.attempts,
                j.errors.iter().map(|e| &e.message).collect::<Vec<_>>()
            )
        });
        out(format!(
            "history of job {id}: {}; stored: {}",
            if runs.is_empty() {
                "never started".into()
            } else {
                runs.join(", ")
            },
            stored.unwrap_or_else(|| "missing".into())
        ));
    }
    Err(CliError::failed(format!(
        "the chaos run broke an invariant (seed {seed}; replay the fault schedule with --seed {seed})"
    )))
}

/// One round of load: plain, slow, retried, panicking, timing-out and doomed jobs, a
/// unique key enqueued twice, a dynamic chain, and every fifth round a declared fan-in.
async fn enqueue_round(
    client: &Client,
    round: u64,
    acknowledged: &mut Vec<Acknowledged>,
) -> Result<(), CliError> {
    let specs = [
        ("plain", JobState::Completed),
        ("plain", JobState::Completed),
        ("plain", JobState::Completed),
        ("slow", JobState::Completed),
        ("flaky", JobState::Completed),
        ("panicky", JobState::Completed),
        ("sleepy", JobState::Completed),
        ("doomed", JobState::Dead),
    ];
    let enqueued = client
        .enqueue_many(
            specs
                .iter()
                .map(|(kind, _)| JobSpec::new(*kind, json!({ "round": round }))),
        )
        .await?;
    for (e, (_, expect)) in enqueued.iter().zip(specs) {
        acknowledged.push(Acknowledged { id: e.id, expect });
    }
    let key = format!("round-{round}");
    let once = client
        .enqueue(
            JobSpec::new("plain", json!({}))
                .options(jobchain::EnqueueOptions::new().unique_key(key.clone())),
        )
        .await?;
    let twice = client
        .enqueue(
            JobSpec::new("plain", json!({}))
                .options(jobchain::EnqueueOptions::new().unique_key(key)),
        )
        .await?;
    if !once.duplicate {
        acknowledged.push(Acknowledged {
            id: once.id,
            expect: JobState::Completed,
        });
    }
    if twice.id != once.id && !twice.duplicate {
        // The first one finished in between: a new job, also to be run.
        acknowledged.push(Acknowledged {
            id: twice.id,
            expect: JobState::Completed,
        });
    }
    let chain = client
        .start_workflow(JobSpec::new("chain", json!({ "left": 3 })))
        .await?;
    acknowledged.extend(chain.jobs.iter().map(|&id| Acknowledged {
        id,
        expect: JobState::Completed,
    }));
    if round % 5 == 0 {
        let fan_in = Workflow::new("fan-in")
            .step(Step::untyped("a", JobSpec::new("plain", json!({}))))
            .step(Step::untyped("b", JobSpec::new("slow", json!({}))))
            .step(Step::untyped(
                "c",
                JobSpec::new("chain", json!({ "left": 0 })),
            ))
            .step(
                Step::untyped("join", JobSpec::new("plain", json!({})))
                    .after("a")
                    .after("b")
                    .after("c"),
            );
        let started = client.start_workflow(fan_in).await?;
        acknowledged.extend(started.jobs.iter().map(|&id| Acknowledged {
            id,
            expect: JobState::Completed,
        }));
    }
    Ok(())
}

/// Injects one fault, chosen by the seeded generator.
async fn fault(
    rng: &mut Rng,
    fleet: &mut Fleet,
    target: &Target,
    disk: Option<&SmallDisk>,
    restart_postgres: bool,
    figures: &mut Figures,
) -> Result<(), CliError> {
    let k = rng.below(fleet.children.len() as u64) as usize;
    let postgres = target.store == "postgres";
    match rng.below(6) {
        0 | 1 => {
            figures.kills += 1;
            fleet.kill_and_replace(k)?;
        }
        2 => {
            // Past the lease: its jobs are rescued while it sleeps; when it wakes, every
            // outcome it wrote must be rejected by the fence.
            figures.stops += 1;
            let pid = fleet.pid(k);
            let _ = kill(pid, Signal::SIGSTOP);
            tokio::time::sleep(worker::LEASE + Duration::from_millis(500 + rng.below(1000))).await;
            let _ = kill(pid, Signal::SIGCONT);
        }
        3 if postgres && restart_postgres && rng.below(2) == 0 => {
            figures.restarts += 1;
            restart_cluster()?;
        }
        3 | 4 if postgres => {
            figures.dropped += 1;
            drop_connections(target).await?;
        }
        5 if disk.is_some() => {
            figures.disk_full += 1;
            if let Some(disk) = disk {
                disk.fill_for(Duration::from_millis(300 + rng.below(1200)))
                    .await?;
            }
        }
        _ if !postgres => {
            figures.lock_holds += 1;
            hold_sqlite_lock(
                &target.location,
                Duration::from_millis(500 + rng.below(2000)),
            )
            .await?;
        }
        _ => {
            figures.kills += 1;
            fleet.kill_and_replace(k)?;
        }
    }
    Ok(())
}

/// Restarts the local Debian PostgreSQL cluster.
fn restart_cluster() -> Result<(), CliError> {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .ok_or_else(|| {
            CliError::usage("--restart-postgres needs a local Debian cluster under /etc/postgresql")
        })?;
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .map_err(|e| CliError::failed(format!("cannot run pg_ctlcluster: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "pg_ctlcluster restart failed: {status}"
        )))
    }
}

/// Ends every PostgreSQL session of the run's workers (they reconnect).
async fn drop_connections(target: &Target) -> Result<(), CliError> {
    let pg = jobchain::postgres::connect_url(&target.location).await?;
    let name = format!("jobchain_{}", pg.schema());
    let ended = jobchain::postgres::sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(pg.pool())
    .await;
    pg.client().close().await;
    ended.map_err(|e| CliError::failed(format!("cannot drop the workers' connections: {e}")))?;
    Ok(())
}

/// Holds SQLite's write lock from a connection of this process for `hold`: every
/// worker's writes wait (and fail after their busy timeout).
async fn hold_sqlite_lock(path: &str, hold: Duration) -> Result<(), CliError> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(&path)
            .map_err(|e| CliError::failed(format!("cannot open {path}: {e}")))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| CliError::failed(format!("busy timeout: {e}")))?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| CliError::failed(format!("cannot take the write lock: {e}")))?;
        std::thread::sleep(hold);
        conn.execute_batch("ROLLBACK")
            .map_err(|e| CliError::failed(format!("cannot release the write lock: {e}")))?;
        Ok(())
    })
    .await
    .map_err(|e| CliError::failed(format!("lock task failed: {e}")))?
}

/// Waits until no job is live and no workflow runs; returns whether that happened in
/// time.
async fn drain(client: &Client, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let idle = match client.queue_stats().await {
            Ok(stats) => stats.iter().all(|q| q.counts.live() == 0),
            Err(_) => false,
        };
        if idle {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn all_jobs(client: &Client) -> Result<Vec<jobchain::Job>, CliError> {
    let mut all = Vec::new();
    loop {
        let page = client
            .jobs(JobFilter {
                limit: Some(10_000),
                offset: all.len(),
                ..JobFilter::default()
            })
            .await?;
        let done = page.len() < 10_000;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

fn read_histories(dir: &Path) -> Result<Vec<Start>, CliError> {
    let mut starts = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CliError::failed(format!("cannot read the histories: {e}")))?;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("history-") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        // A line cut by a SIGKILL mid-write is not a start that ran.
        starts.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<Start>(l).ok()),
        );
    }
    Ok(starts)
}
