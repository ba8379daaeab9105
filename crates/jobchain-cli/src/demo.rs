//! `jobchain demo`: the order workflow on a SQLite file (or PostgreSQL).
//!
//! process_order → send_order_confirmation → {generate_invoice, sync_inventory}, with
//! simulated external calls of a few milliseconds. Chained dynamically by default (each
//! handler hands on the next steps), or declared up front with `--declared`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use jobchain::{
    Client, JobArgs, JobContext, JobError, JobState, KindOptions, RetryPolicy, Step, Worker,
    Workflow, WorkflowId,
};
use serde::{Deserialize, Serialize};

use crate::CliError;

/// A step that `--fail` makes fail on every attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailStep {
    /// process_order: the payment gateway times out.
    Payment,
    /// send_order_confirmation: the mail server is down.
    Email,
    /// generate_invoice: the invoice service errors.
    Invoice,
}

/// Options of `jobchain demo`.
#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// How many orders to process.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub orders: u32,
    /// Makes this step fail on every attempt, so it ends in the dead-letter queue.
    #[arg(long, value_enum)]
    pub fail: Option<FailStep>,
    /// Treats the confirmation e-mail as nice-to-have: if it fails, invoice and inventory
    /// run anyway (conditional chaining; with --declared, optional edges).
    #[arg(long)]
    pub email_optional: bool,
    /// Declares the workflow up front as a graph instead of chaining in the handlers.
    #[arg(long)]
    pub declared: bool,
    /// SQLite file (created if missing) or PostgreSQL URL (postgres://...).
    #[arg(long, default_value = "jobchain-demo.db")]
    pub database: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    order_id: u32,
    amount_cents: u64,
    email: String,
}

/// The four steps of an order: typed jobs, each carrying its kind and retry policy.
macro_rules! order_step {
    ($name:ident, $kind:literal) => {
        #[derive(Clone, Debug, Serialize, Deserialize)]
        #[serde(transparent)]
        struct $name(Order);

        impl JobArgs for $name {
            const KIND: &'static str = $kind;
            fn options() -> KindOptions {
                demo_retry()
            }
        }
    };
}

order_step!(ProcessOrder, "process_order");
order_step!(SendConfirmation, "send_order_confirmation");
order_step!(GenerateInvoice, "generate_invoice");
order_step!(SyncInventory, "sync_inventory");

/// A simulated external call of a few milliseconds.
async fn external_call(order: &Order, base_ms: u64) {
    let jitter = u64::from(order.order_id * 7 % 5);
    tokio::time::sleep(Duration::from_millis(base_ms + jitter)).await;
}

fn demo_retry() -> KindOptions {
    KindOptions::new().retry(RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(100),
        cap: Duration::from_millis(400),
        jitter: 0.2,
    })
}

/// Runs the demo and prints each order's workflow tree and a summary.
pub async fn run(args: DemoArgs) -> Result<(), CliError> {
    let client = jobchain::open(&args.database).await?;
    let worker = register(Worker::builder(&client), &args).build()?.start();
    let style = if args.declared {
        "declared up front"
    } else {
        "chained dynamically"
    };
    crate::common::out(format!(
        "jobchain demo: {} order(s) on {} ({style})\n",
        args.orders,
        crate::common::redacted(&args.database)
    ));
    let started = Instant::now();
    let mut workflows = Vec::new();
    for n in 1..=args.orders {
        let order = Order {
            order_id: n,
            amount_cents: 1999 + u64::from(n) * 100,
            email: format!("customer{n}@example.com"),
        };
        let started = if args.declared {
            client
                .start_workflow(declared(&order, args.email_optional))
                .await?
        } else {
            client.start_workflow(&ProcessOrder(order)).await?
        };
        workflows.push((n, started.id));
    }
    if args.declared {
        // The warehouse confirms each order's parcel: a signal, which the order's
        // `warehouse_packed` step waits for (sent now, it is kept until the step is
        // reached).
        for (n, id) in &workflows {
            client
                .signal(
                    *id,
                    "warehouse_packed",
                    serde_json::json!({ "parcel": format!("PKG-{n:05}") }),
                )
                .await?;
        }
    }
    let mut summary = Summary::default();
    for (n, id) in &workflows {
        client
            .wait_for_workflow(*id, Duration::from_secs(120))
            .await
            .map_err(|e| CliError::failed(format!("order {n}: {e}")))?;
        print_order(&client, *n, *id, &mut summary).await?;
    }
    let elapsed = started.elapsed();
    worker.shutdown().await;
    client.close().await;
    crate::common::out(summary.line(args.orders, elapsed));
    Ok(())
}

fn register(builder: jobchain::WorkerBuilder, args: &DemoArgs) -> jobchain::WorkerBuilder {
    let fail = args.fail;
    let email_optional = args.email_optional;
    builder
        .register(move |ctx: JobContext, ProcessOrder(order)| async move {
            external_call(&order, 8).await;
            if fail == Some(FailStep::Payment) {
                return Err(JobError::retryable(format!(
                    "payment gateway timed out charging {} cents",
                    order.amount_cents
                )));
            }
            if ctx.step().is_none() {
                ctx.enqueue(&SendConfirmation(order.clone()))?;
            }
            Ok(serde_json::json!({ "charge_id": format!("ch_{}", order.order_id) }))
        })
        .register(move |ctx: JobContext, SendConfirmation(order)| async move {
            external_call(&order, 5).await;
            let sent = if fail == Some(FailStep::Email) {
                Err(JobError::retryable(format!("mail server refused {}", order.email)))
            } else {
                Ok(())
            };
            if ctx.step().is_some() {
                // Declared: the graph decides what runs next.
                return sent;
            }
            match sent {
                Ok(()) => {}
                Err(e) if email_optional => {
                    tracing::warn!(order = order.order_id, error = %e, "confirmation e-mail failed; continuing without it");
                }
                Err(e) => return Err(e),
            }
            ctx.enqueue(&GenerateInvoice(order.clone()))?;
            ctx.enqueue(&SyncInventory(order))?;
            Ok(())
        })
        .register(move |_ctx: JobContext, GenerateInvoice(order)| async move {
            external_call(&order, 6).await;
            if fail == Some(FailStep::Invoice) {
                return Err(JobError::retryable("invoice service returned 500"));
            }
            Ok(serde_json::json!({ "invoice": format!("INV-{:05}", order.order_id) }))
        })
        .register(|_ctx: JobContext, SyncInventory(order)| async move {
            external_call(&order, 4).await;
            Ok(())
        })
}

/// The order workflow as a declared graph; inventory is synced once the warehouse has
/// signalled that the parcel is packed.
fn declared(order: &Order, email_optional: bool) -> Workflow {
    let after_email = |step: Step| {
        if email_optional {
            step.after_optional("send_order_confirmation")
        } else {
            step.after("send_order_confirmation")
        }
    };
    let order = || order.clone();
    Workflow::new("order")
        .step(Step::new("process_order", &ProcessOrder(order())))
        .step(
            Step::new("send_order_confirmation", &SendConfirmation(order())).after("process_order"),
        )
        .step(after_email(Step::new(
            "generate_invoice",
            &GenerateInvoice(order()),
        )))
        .step(
            Step::wait_for_signal("warehouse_packed", Duration::from_secs(60))
                .after("process_order"),
        )
        .step(after_email(
            Step::new("sync_inventory", &SyncInventory(order())).after("warehouse_packed"),
        ))
}

#[derive(Default)]
struct Summary {
    workflows: BTreeMap<&'static str, u32>,
    jobs: BTreeMap<&'static str, u64>,
    tolerated: u64,
}

impl Summary {
    fn line(&self, orders: u32, elapsed: Duration) -> String {
        let workflows: Vec<String> = self
            .workflows
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        let total: u64 = self.jobs.values().sum();
        let jobs: Vec<String> = JobState::ALL
            .iter()
            .filter_map(|s| self.jobs.get(s.as_str()).map(|n| format!("{n} {s}")))
            .collect();
        let dead = self.jobs.get("dead").copied().unwrap_or(0);
        let tolerated = if self.tolerated > 0 {
            format!(" ({} tolerated)", self.tolerated)
        } else {
            String::new()
        };
        format!(
            "{orders} order(s): {} · {total} jobs: {}{tolerated} · {dead} in the dead-letter queue · {:.2} s",
            workflows.join(", "),
            jobs.join(", "),
            elapsed.as_secs_f64()
        )
    }
}

async fn print_order(
    client: &Client,
    n: u32,
    id: WorkflowId,
    summary: &mut Summary,
) -> Result<(), CliError> {
    let info = client.workflow(id).await?;
    let tolerated = if info.tolerated_failures > 0 {
        format!(", {} tolerated failure(s)", info.tolerated_failures)
    } else {
        String::new()
    };
    crate::common::out(format!(
        "order {n} · workflow {id} · {}{tolerated}",
        info.state
    ));
    crate::common::out(client.render_workflow(id).await?.trim_end());
    crate::common::out("");
    *summary.workflows.entry(info.state.as_str()).or_default() += 1;
    for state in JobState::ALL {
        let count = info.counts.get(state);
        if count > 0 {
            *summary.jobs.entry(state.as_str()).or_default() += count;
        }
    }
    summary.tolerated += info.tolerated_failures;
    Ok(())
}
