//! `raffle draw verify`: re-derives every winner from the recorded evidence (the revealed seed,
//! its commitment in the seal, the seal's head hash, the eligible ticket set recomputed from the
//! tickets) and compares them with the recorded results.

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::errors::DrawError;
use crate::prepare::{Winner, prepare, recorded_winners, select_winners};

#[derive(Debug, Clone, Serialize)]
pub struct DrawCheck {
    pub check: &'static str,
    pub pass: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrawVerification {
    pub raffle_id: Uuid,
    pub execution_id: Uuid,
    pub method: String,
    pub state: String,
    pub checks: Vec<DrawCheck>,
    pub recorded: Vec<Winner>,
}

impl DrawVerification {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

fn describe(w: &Winner) -> String {
    format!(
        "prize {} winner {}: number {} (ticket {}), {} {}",
        w.position, w.winner_index, w.draw_number, w.ticket_id, w.value_minor, w.currency
    )
}

/// Verifies the draw of `raffle_id`. A ledger or seal that no longer verifies is reported as a
/// failed check, not an error: that is what an auditor asks this command to find.
pub async fn verify(
    client: &impl GenericClient,
    raffle_id: Uuid,
) -> Result<DrawVerification, DrawError> {
    let p = match prepare(client, raffle_id).await {
        Ok(p) => p,
        Err(DrawError::Refused { code, reason }) => {
            let execution = client
                .query_opt(
                    "SELECT id, method, state FROM draw.draw_executions WHERE raffle_event_id = $1 ORDER BY created_at DESC LIMIT 1",
                    &[&raffle_id],
                )
                .await
                .map_err(crate::errors::failed)?;
            let (execution_id, method, state) = execution
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .unwrap_or((Uuid::nil(), String::new(), "none".into()));
            return Ok(DrawVerification {
                raffle_id,
                execution_id,
                method,
                state,
                checks: vec![DrawCheck {
                    check: code,
                    pass: false,
                    detail: reason,
                }],
                recorded: Vec::new(),
            });
        }
        Err(e) => return Err(e),
    };
    let recorded = recorded_winners(client, p.execution_id).await?;
    let mut checks = vec![DrawCheck {
        check: "sealed books verify",
        pass: true,
        detail: format!(
            "ledger chain and seal recompute; {} eligible tickets, digest {}",
            p.eligible.len(),
            p.eligible.digest_hex()
        ),
    }];
    checks.push(DrawCheck {
        check: "draw completed",
        pass: p.execution_state == "completed",
        detail: format!("draw {} is {}", p.execution_id, p.execution_state),
    });
    let expected: Result<Vec<Winner>, String> = if p.method == "rng" {
        match p.seed {
            Some(seed) => {
                checks.push(DrawCheck {
                    check: "seed meets its commitment",
                    pass: <[u8; 32]>::from(Sha256::digest(seed)) == p.commitment,
                    detail: format!(
                        "SHA-256({}) = {}",
                        hex::encode(seed),
                        hex::encode(p.commitment)
                    ),
                });
                select_winners(&p).map_err(|e| e.to_string())
            }
            None => Err("the seed was never revealed".into()),
        }
    } else {
        // A manual draw cannot be re-derived; each result must be an eligible ticket, each
        // prize must have its winners, the values must be the sealed shares.
        let results: Vec<(i32, Vec<i64>)> = p
            .prizes
            .iter()
            .map(|s| {
                (
                    s.position,
                    recorded
                        .iter()
                        .filter(|w| w.prize_id == s.prize_id)
                        .map(|w| w.draw_number)
                        .collect(),
                )
            })
            .collect();
        crate::manual::validate_manual(&p, &results).map_err(|e| e.to_string())
    };
    match expected {
        Err(reason) => checks.push(DrawCheck {
            check: "winners re-derived",
            pass: false,
            detail: reason,
        }),
        Ok(expected) => {
            let mut differences = Vec::new();
            for w in &expected {
                if !recorded.contains(w) {
                    let found = recorded
                        .iter()
                        .find(|r| r.prize_id == w.prize_id && r.winner_index == w.winner_index);
                    differences.push(match found {
                        Some(r) => format!("expected {}, recorded {}", describe(w), describe(r)),
                        None => format!("expected {}, nothing recorded", describe(w)),
                    });
                }
            }
            for r in &recorded {
                if !expected.contains(r)
                    && !expected
                        .iter()
                        .any(|w| w.prize_id == r.prize_id && w.winner_index == r.winner_index)
                {
                    differences.push(format!(
                        "recorded {} that no derivation selects",
                        describe(r)
                    ));
                }
            }
            // Winning tickets are marked as such (or claimed).
            let marked: i64 = client
                .query_one(
                    "SELECT count(*) FROM sales.tickets t JOIN draw.draw_results r ON r.winning_ticket_id = t.id
                      WHERE r.draw_execution_id = $1 AND t.state IN ('winner', 'claimed') AND t.draw_number = r.winning_number",
                    &[&p.execution_id],
                )
                .await
                .map_err(crate::errors::failed)?
                .get(0);
            if marked != recorded.len() as i64 {
                differences.push(format!(
                    "{} of {} winning tickets are marked as winners with their number",
                    marked,
                    recorded.len()
                ));
            }
            checks.push(DrawCheck {
                check: "recorded winners match the derivation",
                pass: differences.is_empty(),
                detail: if differences.is_empty() {
                    format!("{} winners re-derived and matched", expected.len())
                } else {
                    differences.join("; ")
                },
            });
        }
    }
    Ok(DrawVerification {
        raffle_id,
        execution_id: p.execution_id,
        method: p.method.clone(),
        state: p.execution_state.clone(),
        checks,
        recorded,
    })
}
