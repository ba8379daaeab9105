//! The order workflow in both styles, side by side: chained dynamically by its handlers,
//! and declared up front as a graph. Both run on one SQLite file with one worker.
//!
//! Run with: `cargo run -p jobchain --example order_workflow`

use std::time::Duration;

use jobchain::{Client, EnqueueOptions, JobContext, JobError, Step, Worker, Workflow, WorkflowId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Order {
    id: u64,
    cents: u64,
}

/// Charges the payment. Chained dynamically, it hands on the confirmation itself;
/// as a declared step, the graph does that.
async fn process_order(ctx: JobContext, order: Order) -> Result<String, JobError> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if ctx.step().is_none() {
        ctx.enqueue("send_order_confirmation", &order, EnqueueOptions::new())?;
    }
    Ok(format!("ch_{}", order.id))
}

/// Mails the customer. E-mail is nice-to-have: if it fails, the next steps run anyway
/// (conditional chaining in the dynamic style; optional edges in the declared one).
async fn send_order_confirmation(ctx: JobContext, order: Order) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    if ctx.step().is_none() {
        ctx.enqueue("generate_invoice", &order, EnqueueOptions::new())?;
        ctx.enqueue("sync_inventory", &order, EnqueueOptions::new())?;
    }
    Ok(())
}

/// Writes the invoice; its output is stored with the job for dependents to read.
async fn generate_invoice(_ctx: JobContext, order: Order) -> Result<String, JobError> {
    Ok(format!("INV-{:05} for {} cents", order.id, order.cents))
}

async fn sync_inventory(_ctx: JobContext, _order: Order) -> Result<(), JobError> {
    Ok(())
}

fn declared(order: &Order) -> Workflow {
    Workflow::new("order")
        .step(Step::new("process_order", "process_order", order))
        .step(
            Step::new("send_order_confirmation", "send_order_confirmation", order)
                .after("process_order"),
        )
        .step(
            Step::new("generate_invoice", "generate_invoice", order)
                .after_optional("send_order_confirmation"),
        )
        .step(
            Step::new("sync_inventory", "sync_inventory", order)
                .after_optional("send_order_confirmation"),
        )
}

async fn show(client: &Client, title: &str, id: WorkflowId) -> Result<(), jobchain::Error> {
    let info = client
        .wait_for_workflow(id, Duration::from_millis(10), Duration::from_secs(30))
        .await?;
    println!("{title}: workflow {id} is {}", info.state);
    println!("{}", client.render_workflow(id).await?);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), jobchain::Error> {
    let path = std::env::temp_dir().join("jobchain-order-example.db");
    let client = Client::open(path.to_str().unwrap_or("jobchain-order-example.db")).await?;
    let worker = Worker::builder(&client)
        .handler("process_order", process_order)
        .handler("send_order_confirmation", send_order_confirmation)
        .handler("generate_invoice", generate_invoice)
        .handler("sync_inventory", sync_inventory)
        .build()?
        .start();

    let order = Order {
        id: 42,
        cents: 2599,
    };
    let dynamic = client.start_workflow("process_order", &order).await?;
    let planned = client.start(declared(&order)).await?;
    show(&client, "chained dynamically", dynamic).await?;
    show(&client, "declared up front", planned).await?;

    worker.shutdown().await;
    client.close().await;
    Ok(())
}
