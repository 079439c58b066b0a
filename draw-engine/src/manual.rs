//! The manual draw's two ends: the barrel list exported for a draw by hand, and the check of
//! the result recorded from it.

use deadpool_postgres::Pool;
use schemas::DrawRefusal;
use serde_json::json;
use uuid::Uuid;

use crate::errors::{DrawError, event, failed, record_event, refused};
use crate::prepare::{Prepared, Winner, assign, prepare};

/// Checks a manual result: every prize gets exactly its winners, each number sold and not
/// voided, no number twice.
pub(crate) fn validate_manual(
    p: &Prepared,
    results: &[(i32, Vec<i64>)],
) -> Result<Vec<Winner>, DrawError> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut tickets = Vec::new();
    for slot in &p.prizes {
        let numbers: Vec<i64> = results
            .iter()
            .filter(|(pos, _)| *pos == slot.position)
            .flat_map(|(_, n)| n.iter().copied())
            .collect();
        if numbers.len() != slot.winner_count as usize {
            problems.push(format!(
                "prize {} ({}) needs {} winning numbers, {} given",
                slot.position,
                slot.name,
                slot.winner_count,
                numbers.len()
            ));
        }
        let mut drawn = Vec::new();
        for n in numbers {
            if !seen.insert(n) {
                problems.push(format!("number {n} is given more than once"));
            }
            match p.eligible.find(n) {
                Some(t) => drawn.push(t),
                None => problems.push(format!(
                    "number {n} is not a sold, non-voided ticket of this raffle"
                )),
            }
        }
        tickets.push(drawn);
    }
    for (pos, _) in results {
        if !p.prizes.iter().any(|s| s.position == *pos) {
            problems.push(format!("the raffle has no prize at position {pos}"));
        }
    }
    if !problems.is_empty() {
        return Err(refused(
            DrawRefusal::InvalidManualResult,
            problems.join("; "),
        ));
    }
    Ok(assign(p, tickets))
}

/// Writes the barrel list of a sealed raffle (`draw_number,ticket_id` per eligible ticket, in
/// number order) for a manual draw; returns how many lines and their digest, which equals the
/// seal's ticket set digest.
pub async fn export_barrel(
    pool: &Pool,
    raffle_id: Uuid,
    by: &str,
    out: &mut impl std::io::Write,
) -> Result<(usize, String), DrawError> {
    let client = pool.get().await.map_err(failed)?;
    let p = prepare(&**client, raffle_id).await?;
    if p.execution_state == "completed" {
        return Err(refused(
            DrawRefusal::AlreadyDrawn,
            format!("raffle {raffle_id} was drawn"),
        ));
    }
    writeln!(out, "draw_number,ticket_id").map_err(failed)?;
    for t in &p.eligible.tickets {
        writeln!(out, "{},{}", t.draw_number, t.ticket_id).map_err(failed)?;
    }
    out.flush().map_err(failed)?;
    let digest = p.eligible.digest_hex();
    record_event(
        &**client,
        by,
        event(
            Some(p.organization_id),
            raffle_id,
            "BARREL_EXPORTED",
            catalog::audit::Severity::Info,
            format!(
                "barrel list of raffle {raffle_id} exported: {} numbers",
                p.eligible.len()
            ),
            json!({"tickets": p.eligible.len(), "ticket_set_digest": digest}),
        ),
    )
    .await?;
    Ok((p.eligible.len(), digest))
}
