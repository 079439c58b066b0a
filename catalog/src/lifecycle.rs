//! A raffle's life: the one writer of `catalog.raffle_events.state` and of
//! `catalog.raffle_transitions`. Each stage asks for the arrow it owns (admin for activation,
//! the close and cancellation; the ledger for the seal; the draw engine for the draw and the
//! completion), in its own transaction, after its own checks.

use chrono::{DateTime, Utc};
use platform::problem::Problem;
use schemas::RaffleState;
use serde_json::json;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::audit::{self, Event};

/// Moves `raffle` from `from` to `to` and records the transition with its reason and actor.
/// Refused when the lifecycle has no such arrow, and when the raffle is no longer `from` (a
/// concurrent change: the caller's transaction should not go on).
pub async fn transition(
    client: &impl GenericClient,
    raffle: Uuid,
    from: RaffleState,
    to: RaffleState,
    reason: &str,
    actor: &str,
) -> Result<(), Problem> {
    if !from.may_become(to) {
        return Err(Problem::conflict(
            "invalid-transition",
            format!("a raffle cannot go from {from} to {to}"),
        ));
    }
    let n = client
        .execute(
            "UPDATE catalog.raffle_events SET state = $3, updated_at = now(), updated_by = $4
              WHERE id = $1 AND state = $2",
            &[&raffle, &from.as_str(), &to.as_str(), &actor],
        )
        .await?;
    if n != 1 {
        return Err(Problem::conflict(
            "concurrent-change",
            format!("raffle {raffle} is no longer {from}"),
        ));
    }
    client
        .execute(
            "INSERT INTO catalog.raffle_transitions (raffle_id, from_state, to_state, reason, actor) VALUES ($1, $2, $3, $4, $5)",
            &[&raffle, &from.as_str(), &to.as_str(), &reason, &actor],
        )
        .await?;
    Ok(())
}

/// Closes the sales of every active raffle whose sales end time has passed, even if nobody
/// acts. Returns the raffles closed. Run every second by the admin service.
pub async fn close_due_raffles(client: &mut tokio_postgres::Client) -> Result<Vec<Uuid>, Problem> {
    let tx = client.transaction().await?;
    let due = tx
        .query(
            "SELECT id, organization_id, sales_end_time FROM catalog.raffle_events
              WHERE state = 'active' AND sales_end_time <= now() FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await?;
    let mut closed = Vec::new();
    for row in due {
        let (raffle, org, end): (Uuid, Uuid, DateTime<Utc>) = (row.get(0), row.get(1), row.get(2));
        let reason = format!("sales end time {end} reached");
        transition(
            &tx,
            raffle,
            RaffleState::Active,
            RaffleState::SalesClosed,
            &reason,
            "system",
        )
        .await?;
        audit::record(
            &tx,
            None,
            Event::info(
                Some(org),
                "RAFFLE_SALES_CLOSED",
                format!("raffle transitioned from active to sales_closed: {reason}"),
            )
            .raffle(raffle)
            .change(
                Some(json!({"state": "active"})),
                Some(json!({"state": "sales_closed"})),
            ),
        )
        .await?;
        closed.push(raffle);
    }
    tx.commit().await?;
    Ok(closed)
}
