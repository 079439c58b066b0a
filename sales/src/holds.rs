//! Capacity holds (`sales.capacity_holds`): per raffle, the tickets checkout holds for payments
//! in progress. Checkout adds to a raffle's row; the allocator gives back what it decides; the
//! expired-hold sweeper what ran out ([`crate::orders::release_expired_holds`]). Whoever
//! changes a raffle's sold count or its holds does it under the row's lock.

use std::collections::HashMap;

use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Checkout's lock: the raffles' hold rows (created for raffles that exist and have none),
/// locked to the commit in raffle order; their held tickets.
pub async fn lock_for_checkout(
    tx: &deadpool_postgres::Transaction<'_>,
    raffles: &[Uuid],
) -> Result<HashMap<Uuid, i64>, tokio_postgres::Error> {
    let holds_now = tx
        .prepare_cached(
            "SELECT raffle_id, held_tickets FROM sales.capacity_holds WHERE raffle_id = ANY($1) ORDER BY raffle_id FOR UPDATE",
        )
        .await?;
    let mut holds = tx.query(&holds_now, &[&raffles]).await?;
    if holds.len() < raffles.len() {
        tx.execute(
            "INSERT INTO sales.capacity_holds (raffle_id)
             SELECT r.id FROM catalog.raffle_events r WHERE r.id = ANY($1) ORDER BY r.id ON CONFLICT (raffle_id) DO NOTHING",
            &[&raffles],
        )
        .await?;
        holds = tx.query(&holds_now, &[&raffles]).await?;
    }
    Ok(holds.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The allocator's lock: the batch's raffles' hold rows (created when missing), locked after
/// its orders until its commit; their held tickets.
pub async fn lock_for_allocation(
    client: &impl GenericClient,
    raffles: &[Uuid],
) -> Result<Vec<(Uuid, i64)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "INSERT INTO sales.capacity_holds AS h (raffle_id) SELECT unnest($1::uuid[]) ORDER BY 1
             ON CONFLICT (raffle_id) DO UPDATE SET held_tickets = h.held_tickets
             RETURNING raffle_id, held_tickets",
            &[&raffles],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Checkout holds `n` more tickets of each raffle.
pub async fn add(
    tx: &deadpool_postgres::Transaction<'_>,
    raffles: &[Uuid],
    counts: &[i64],
) -> Result<(), tokio_postgres::Error> {
    let hold = tx
        .prepare_cached(
            "UPDATE sales.capacity_holds h SET held_tickets = h.held_tickets + u.n
               FROM unnest($1::uuid[], $2::bigint[]) AS u(raffle_id, n) WHERE h.raffle_id = u.raffle_id",
        )
        .await?;
    tx.execute(&hold, &[&raffles, &counts]).await?;
    Ok(())
}

/// The allocator gives back `n` held tickets of each raffle: their orders are decided.
pub async fn release(
    client: &impl GenericClient,
    raffles: &[Uuid],
    counts: &[i64],
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE sales.capacity_holds h SET held_tickets = h.held_tickets - u.n
               FROM unnest($1::uuid[], $2::bigint[]) AS u(raffle_id, n) WHERE h.raffle_id = u.raffle_id",
            &[&raffles, &counts],
        )
        .await?;
    Ok(())
}
