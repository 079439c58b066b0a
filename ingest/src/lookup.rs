//! The orders that concurrent webhooks name, looked up together.
//!
//! Every webhook needs its order (amount, currency, status, raffle) before its sale can go to
//! the broker. One query per webhook cost Postgres about 110 µs under load, most of it the
//! fixed cost of a statement (bind, executor start, a round trip), not the index probe. Here a
//! webhook's look-up waits in a queue while earlier ones are in flight, and the next free
//! query takes everything queued: at low load each look-up goes alone, at once; under load a
//! few queries carry dozens of orders each. Nothing waits on a timer.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use platform::db::{DbError, DbTarget};
use platform::problem::Problem;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Queries in flight at once, each on its own connection.
const QUERIES_IN_FLIGHT: usize = 4;
/// Orders one query carries at most.
const BATCH_MAX: usize = 256;
/// Look-ups waiting for a query; beyond this a webhook waits to be queued (back-pressure).
const QUEUE_MAX: usize = 4096;

/// What a payment webhook checks and publishes of its order.
#[derive(Debug, Clone)]
pub struct OrderForPayment {
    pub raffle_id: Uuid,
    pub package_id: Uuid,
    pub ticket_count: i32,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_status: String,
    /// The provider's reference of the payment that paid it, once paid.
    pub payment_reference: Option<String>,
    /// The raffle's first top-level online range: the sale's range partition.
    pub online_range: Option<Uuid>,
}

type Answer = Result<Option<OrderForPayment>, Problem>;

struct Request {
    order: Uuid,
    reply: oneshot::Sender<Answer>,
}

/// Looks up online orders for payment webhooks, batching concurrent look-ups.
pub struct OrderLookup {
    queue: mpsc::Sender<Request>,
}

impl OrderLookup {
    /// Starts the batching task on the current runtime, with connections of its own; it ends
    /// when the lookup is dropped.
    pub fn start(db: &DbTarget) -> Result<Self, DbError> {
        // Generic plans: with an array of a different length each time, Postgres would plan
        // the statement anew on every execution (measured at 160 µs of bind under load).
        let pool = db.pool_with_generic_plans(QUERIES_IN_FLIGHT, "raffle-ingest-orders")?;
        let (queue, requests) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(platform::batching::in_batches(
            requests,
            QUERIES_IN_FLIGHT,
            BATCH_MAX,
            move |batch| {
                let pool = pool.clone();
                async move { answer(&pool, batch).await }
            },
        ));
        Ok(Self { queue })
    }

    /// The online order `order`, or `None` when there is no such online order.
    pub async fn get(&self, order: Uuid) -> Answer {
        let (reply, answer) = oneshot::channel();
        let stopped = || Problem::unavailable("the order look-up stopped; retry");
        self.queue
            .send(Request { order, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn answer(pool: &Pool, batch: Vec<Request>) {
    let ids: Vec<Uuid> = batch.iter().map(|r| r.order).collect();
    match fetch(pool, &ids).await {
        Ok(found) => {
            for r in batch {
                // The same order may be asked for twice in one batch (a redelivery).
                let _ = r.reply.send(Ok(found.get(&r.order).cloned()));
            }
        }
        Err(problem) => {
            tracing::warn!(orders = ids.len(), detail = %problem.detail, "order look-up failed");
            for r in batch {
                let _ = r.reply.send(Err(problem.clone()));
            }
        }
    }
}

async fn fetch(pool: &Pool, ids: &[Uuid]) -> Result<HashMap<Uuid, OrderForPayment>, Problem> {
    let client = platform::problem::pooled(pool).await?;
    // Prepared once per connection: parse and plan would cost more than the probe.
    let statement = client
        .prepare_cached(
            "SELECT o.id, o.raffle_id, o.package_id, o.ticket_count, o.total_amount_minor, o.currency, o.payment_status,
                    o.payment_reference,
                    (SELECT g.id FROM catalog.raffle_ranges g WHERE g.raffle_id = o.raffle_id AND g.range_type = 'online'
                        AND g.parent_range_id IS NULL ORDER BY g.start_number LIMIT 1)
               FROM sales.orders o WHERE o.id = ANY($1::uuid[]) AND o.source = 'online'",
        )
        .await?;
    let rows = client.query(&statement, &[&ids]).await?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                row.get(0),
                OrderForPayment {
                    raffle_id: row.get(1),
                    package_id: row.get(2),
                    ticket_count: row.get(3),
                    amount_minor: row.get(4),
                    currency: row.get(5),
                    payment_status: row.get(6),
                    payment_reference: row.get(7),
                    online_range: row.get(8),
                },
            )
        })
        .collect())
}
