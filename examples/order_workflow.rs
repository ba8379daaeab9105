//! The order workflow in both styles, side by side: chained dynamically by its handlers,
//! and declared up front as a graph. Both run on one SQLite file with one worker, with
//! typed jobs: each step is a payload type that carries its kind and defaults.
//!
//! Run with: `cargo run -p jobchain --example order_workflow`

use std::time::Duration;

use jobchain::{
    Client, JobArgs, JobContext, JobError, KindOptions, Step, Worker, Workflow, WorkflowId,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct ProcessOrder {
    id: u64,
    cents: u64,
}

impl JobArgs for ProcessOrder {
    const KIND: &'static str = "process_order";
}

#[derive(Clone, Serialize, Deserialize)]
struct SendConfirmation {
    order_id: u64,
    cents: u64,
}

impl JobArgs for SendConfirmation {
    const KIND: &'static str = "send_order_confirmation";
    /// E-mail has its own queue and a short retry budget.
    fn options() -> KindOptions {
        KindOptions::new().queue("emails").max_attempts(3)
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct GenerateInvoice {
    order_id: u64,
    cents: u64,
}

impl JobArgs for GenerateInvoice {
    const KIND: &'static str = "generate_invoice";
}

#[derive(Clone, Serialize, Deserialize)]
struct SyncInventory {
    order_id: u64,
}

impl JobArgs for SyncInventory {
    const KIND: &'static str = "sync_inventory";
}

/// Charges the payment. Chained dynamically, it hands on the confirmation itself;
/// as a declared step, the graph does that.
async fn process_order(ctx: JobContext, order: ProcessOrder) -> Result<String, JobError> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if ctx.step().is_none() {
        ctx.enqueue(&SendConfirmation {
            order_id: order.id,
            cents: order.cents,
        })?;
    }
    Ok(format!("ch_{}", order.id))
}

/// Mails the customer. E-mail is nice-to-have: if it fails, the next steps run anyway
/// (conditional chaining in the dynamic style; optional edges in the declared one).
async fn send_confirmation(ctx: JobContext, mail: SendConfirmation) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    if ctx.step().is_none() {
        ctx.enqueue(&GenerateInvoice {
            order_id: mail.order_id,
            cents: mail.cents,
        })?;
        ctx.enqueue(&SyncInventory {
            order_id: mail.order_id,
        })?;
    }
    Ok(())
}

/// Writes the invoice; its output is stored with the job for dependents to read.
async fn generate_invoice(_ctx: JobContext, invoice: GenerateInvoice) -> Result<String, JobError> {
    Ok(format!(
        "INV-{:05} for {} cents",
        invoice.order_id, invoice.cents
    ))
}

async fn sync_inventory(_ctx: JobContext, _sync: SyncInventory) -> Result<(), JobError> {
    Ok(())
}

fn declared(order: &ProcessOrder) -> Workflow {
    let id = order.id;
    Workflow::new("order")
        .step(Step::new("process_order", order))
        .step(
            Step::new(
                "send_order_confirmation",
                &SendConfirmation {
                    order_id: id,
                    cents: order.cents,
                },
            )
            .after("process_order"),
        )
        .step(
            Step::new(
                "generate_invoice",
                &GenerateInvoice {
                    order_id: id,
                    cents: order.cents,
                },
            )
            .after_optional("send_order_confirmation"),
        )
        .step(
            Step::new("sync_inventory", &SyncInventory { order_id: id })
                .after_optional("send_order_confirmation"),
        )
}

async fn show(client: &Client, title: &str, id: WorkflowId) -> Result<(), jobchain::Error> {
    let info = client
        .wait_for_workflow(id, Duration::from_secs(30))
        .await?;
    println!("{title}: workflow {id} is {}", info.state);
    println!("{}", client.render_workflow(id).await?);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), jobchain::Error> {
    let path = std::env::temp_dir().join("jobchain-order-example.db");
    let client = Client::sqlite(&path).await?;
    let worker = Worker::builder(&client)
        .register(process_order)
        .register(send_confirmation)
        .register(generate_invoice)
        .register(sync_inventory)
        .build()?
        .start();

    let order = ProcessOrder {
        id: 42,
        cents: 2599,
    };
    let dynamic = client.start_workflow(&order).await?;
    let planned = client.start_workflow(declared(&order)).await?;
    show(&client, "chained dynamically", dynamic.id).await?;
    show(&client, "declared up front", planned.id).await?;

    worker.shutdown().await;
    client.close().await;
    Ok(())
}
