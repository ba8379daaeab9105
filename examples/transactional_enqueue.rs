//! An order row and the job that processes it commit together, or not at all:
//! enqueue inside your own PostgreSQL transaction.
//!
//! Run with: `cargo run -p jobchain --features postgres --example transactional_enqueue`
//! (uses `JOBCHAIN_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`)

use jobchain::postgres::sqlx;
use jobchain::JobArgs;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct ProcessOrder {
    order: u64,
}

impl JobArgs for ProcessOrder {
    const KIND: &'static str = "process_order";
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("JOBCHAIN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let client =
        jobchain::postgres::connect_url(&format!("{url}?jobchain_schema=jobchain_example")).await?;
    let pool = client.pool().clone();
    sqlx::query("CREATE TABLE IF NOT EXISTS example_orders (id bigint PRIMARY KEY)")
        .execute(&pool)
        .await?;

    // The customer's order and its processing job: one transaction.
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO example_orders (id) VALUES (42) ON CONFLICT DO NOTHING")
        .execute(&mut *tx)
        .await?;
    let job = client
        .enqueue_in(&mut tx, &ProcessOrder { order: 42 })
        .await?
        .id;
    tx.commit().await?;
    println!("order 42 and job {job} committed together");

    // A failure after the enqueue rolls both back: no job without its order.
    let mut tx = pool.begin().await?;
    let ghost = client
        .enqueue_in(&mut tx, &ProcessOrder { order: 43 })
        .await?
        .id;
    tx.rollback().await?;
    println!(
        "job {ghost} rolled back: {}",
        client.job(ghost).await.is_err()
    );

    sqlx::query("DROP TABLE example_orders")
        .execute(&pool)
        .await?;
    jobchain::postgres::drop_schema(&pool, "jobchain_example").await?;
    client.close().await;
    Ok(())
}
