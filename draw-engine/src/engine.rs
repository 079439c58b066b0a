//! `raffle draw run` and the manual draw: the checks before a draw, the recording of winners
//! prize by prize, and the completion.
//!
//! A draw records each prize's winners, marks their tickets and posts the prize entry in one
//! transaction per prize, so an interruption leaves whole prizes behind; the next run replays
//! the same selection, checks it meets what was recorded and records the rest.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use ledger::postings::Account;
use schemas::{DrawRefusal, RaffleState};
use serde::Serialize;
use serde_json::json;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::errors::{DrawError, broken, event, failed, record_event, refused};
use crate::manual::validate_manual;
use crate::prepare::{
    Prepared, PrizeSlot, Winner, prepare_with_key, recorded_winners, select_winners,
};

pub struct DrawRequest {
    pub raffle_id: Uuid,
    pub conducted_by: String,
    /// A drill for tests and rehearsals: stop (as a crash would) after recording this many
    /// prizes. `None` in production.
    pub interrupt_after_prizes: Option<usize>,
    /// The key the seal wrapped the seed under, if it did.
    pub seed_key: Option<ledger::seed_key::SeedKey>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrawOutcome {
    pub raffle_id: Uuid,
    pub execution_id: Uuid,
    pub method: String,
    pub resumed: bool,
    /// Hex; revealed at the draw.
    pub seed: Option<String>,
    pub seed_commitment: String,
    pub seal_head_hash: String,
    pub tickets_eligible: usize,
    pub system_checksum: String,
    pub winners: Vec<Winner>,
    pub completed_at: DateTime<Utc>,
}

/// Holds the draw's session-level advisory lock: one draw of a raffle at a time.
async fn lock(client: &tokio_postgres::Client, raffle_id: Uuid) -> Result<(), DrawError> {
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended('draw:' || $1::uuid::text, 0))",
            &[&raffle_id],
        )
        .await
        .map_err(failed)?
        .get(0);
    if got {
        Ok(())
    } else {
        Err(refused(
            DrawRefusal::DrawInProgress,
            format!("another process is drawing raffle {raffle_id} right now"),
        ))
    }
}

async fn unlock(client: &tokio_postgres::Client, raffle_id: Uuid) {
    let _ = client
        .execute(
            "SELECT pg_advisory_unlock(hashtextextended('draw:' || $1::uuid::text, 0))",
            &[&raffle_id],
        )
        .await;
}

/// Runs (or resumes) the RNG draw of a sealed raffle.
pub async fn run(pool: &Pool, request: &DrawRequest) -> Result<DrawOutcome, DrawError> {
    let mut client = pool.get().await.map_err(failed)?;
    lock(&client, request.raffle_id).await?;
    let result = draw_locked(&mut client, request, Method::Rng).await;
    unlock(&client, request.raffle_id).await;
    result
}

/// What a manual draw records: for each prize position, its winning numbers in winner order.
pub struct ManualRequest {
    pub raffle_id: Uuid,
    pub conducted_by: String,
    pub results: Vec<(i32, Vec<i64>)>,
}

/// Records and validates the result of a draw made by hand from the exported barrel list.
pub async fn manual(pool: &Pool, request: &ManualRequest) -> Result<DrawOutcome, DrawError> {
    let mut client = pool.get().await.map_err(failed)?;
    lock(&client, request.raffle_id).await?;
    let draw = DrawRequest {
        raffle_id: request.raffle_id,
        conducted_by: request.conducted_by.clone(),
        interrupt_after_prizes: None,
        seed_key: None,
    };
    let result = draw_locked(&mut client, &draw, Method::Manual(&request.results)).await;
    unlock(&client, request.raffle_id).await;
    result
}

enum Method<'a> {
    Rng,
    Manual(&'a [(i32, Vec<i64>)]),
}

impl Method<'_> {
    fn name(&self) -> &'static str {
        match self {
            Method::Rng => "rng",
            Method::Manual(_) => "manual",
        }
    }
}

/// Refuses, recording the refusal as a critical event.
async fn refuse(
    client: &impl GenericClient,
    request: &DrawRequest,
    organization_id: Option<Uuid>,
    error: DrawError,
) -> DrawError {
    if let DrawError::Refused { code, reason } = &error {
        let recorded = record_event(
            client,
            &request.conducted_by,
            event(
                organization_id,
                request.raffle_id,
                "DRAW_REFUSED",
                catalog::audit::Severity::Warning,
                format!("draw of raffle {} refused: {reason}", request.raffle_id),
                json!({"code": code, "reason": reason}),
            ),
        )
        .await;
        // The refusal stands either way; the caller also learns it is not on the trail.
        if let Err(DrawError::Failed(why)) = recorded {
            return broken(format!(
                "draw refused ({code}: {reason}), and the refusal could not be recorded: {why}"
            ));
        }
    }
    error
}

async fn draw_locked(
    client: &mut tokio_postgres::Client,
    request: &DrawRequest,
    method: Method<'_>,
) -> Result<DrawOutcome, DrawError> {
    let raffle_id = request.raffle_id;
    let organization: Option<Uuid> = client
        .query_opt(
            "SELECT organization_id FROM catalog.raffle_events WHERE id = $1",
            &[&raffle_id],
        )
        .await
        .map_err(failed)?
        .map(|r| r.get(0));
    let prepared = match prepare_with_key(&*client, raffle_id, request.seed_key.as_ref()).await {
        Ok(p) => p,
        Err(e) => return Err(refuse(&*client, request, organization, e).await),
    };
    let org = Some(prepared.organization_id);
    let (winners, recorded) = match checked_winners(&*client, &prepared, &method).await {
        Ok(w) => w,
        Err(e) => return Err(refuse(&*client, request, org, e).await),
    };
    let resumed = !recorded.is_empty() || prepared.execution_state == "in_progress";
    begin(client, request, &prepared, &method, resumed, recorded.len()).await?;

    // Prize by prize, each in its own transaction; what a resumed draw recorded is skipped.
    let mut recorded_now = 0;
    for slot in &prepared.prizes {
        let prize_winners: Vec<&Winner> = winners
            .iter()
            .filter(|w| w.prize_id == slot.prize_id)
            .collect();
        if prize_winners.iter().all(|w| recorded.contains(w)) {
            continue;
        }
        if request.interrupt_after_prizes == Some(recorded_now) {
            return Err(DrawError::Interrupted {
                prizes_recorded: recorded_now,
            });
        }
        record_prize(client, &prepared, slot, &prize_winners).await?;
        recorded_now += 1;
    }

    complete(client, request, &prepared, &method, winners, resumed).await
}

/// Every check before the draw records anything, and the winners: the raffle is sealed and
/// not drawn, every prize can be drawn, an unfinished draw is finished the same way, the
/// jurisdiction allows the method, and what an interrupted run recorded is what the committed
/// inputs select. Returns the winners and those already recorded.
async fn checked_winners(
    client: &impl GenericClient,
    prepared: &Prepared,
    method: &Method<'_>,
) -> Result<(Vec<Winner>, Vec<Winner>), DrawError> {
    let raffle_id = prepared.raffle_id;
    if prepared.execution_state == "completed" || prepared.raffle_state != "sealed" {
        let e = refused(
            DrawRefusal::AlreadyDrawn,
            format!(
                "raffle {raffle_id} is {} and its draw {} is {}: a raffle is drawn once",
                prepared.raffle_state, prepared.execution_id, prepared.execution_state
            ),
        );
        return Err(e);
    }
    let needed: i64 = prepared
        .prizes
        .iter()
        .map(|p| i64::from(p.winner_count))
        .sum();
    if (prepared.eligible.len() as i64) < needed {
        let e = refused(
            DrawRefusal::TooFewTickets,
            format!(
                "raffle {raffle_id} has {} eligible tickets for {needed} winners: every prize must be drawable",
                prepared.eligible.len()
            ),
        );
        return Err(e);
    }
    let name = method.name();
    if prepared.execution_state == "in_progress" && prepared.method != name {
        let e = refused(
            DrawRefusal::DrawInProgress,
            format!(
                "a {} draw of raffle {raffle_id} is in progress; it must be finished the same way",
                prepared.method
            ),
        );
        return Err(e);
    }
    let winners = match method {
        Method::Rng => {
            let methods = catalog::regulations::for_raffle(client, raffle_id, Utc::now())
                .await
                .map_err(failed)?
                .sales_methods();
            if !methods.rng_draw {
                let e = refused(
                    DrawRefusal::RngDrawForbidden,
                    format!(
                        "the jurisdiction of raffle {raffle_id} forbids RNG draws: export the barrel list (`raffle draw barrel`) and record the manual result (`raffle draw manual`)"
                    ),
                );
                return Err(e);
            }
            if prepared.seed.is_none() {
                let e = refused(
                    DrawRefusal::SeedKeyMissing,
                    format!(
                        "the draw seed of raffle {raffle_id} was sealed under a key: set {} to the key the raffle was sealed with",
                        ledger::seed_key::ENV
                    ),
                );
                return Err(e);
            }
            select_winners(prepared)?
        }
        Method::Manual(results) => validate_manual(prepared, results)?,
    };

    // Resuming: what is recorded must be what the committed inputs select.
    let recorded = recorded_winners(client, prepared.execution_id).await?;
    if recorded.iter().any(|r| !winners.contains(r)) {
        let e = refused(
            DrawRefusal::RecordedResultsDiffer,
            format!(
                "draw {} of raffle {raffle_id} holds results the committed inputs do not select; it cannot be resumed",
                prepared.execution_id
            ),
        );
        return Err(e);
    }
    Ok((winners, recorded))
}

/// Marks the draw in progress (revealing the seed of an RNG draw: from here on it is
/// evidence, stored in clear) and records that it started or resumed.
async fn begin(
    client: &mut tokio_postgres::Client,
    request: &DrawRequest,
    prepared: &Prepared,
    method: &Method<'_>,
    resumed: bool,
    recorded: usize,
) -> Result<(), DrawError> {
    let (raffle_id, org, name) = (
        prepared.raffle_id,
        Some(prepared.organization_id),
        method.name(),
    );
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute(
        "UPDATE draw.draw_executions SET state = 'in_progress', method = $2, conducted_by = $3,
                started_at = coalesce(started_at, now()), updated_at = now()
          WHERE id = $1",
        &[&prepared.execution_id, &name, &request.conducted_by],
    )
    .await
    .map_err(failed)?;
    // The reveal: from here on the seed is evidence, stored in clear.
    if let (Method::Rng, Some(seed), true) = (method, prepared.seed, prepared.seed_wrapped) {
        tx.execute(
            "UPDATE draw.draw_executions SET rng_seed = $2, rng_seed_wrapped = false WHERE id = $1",
            &[&prepared.execution_id, &seed.to_vec()],
        )
        .await
        .map_err(failed)?;
    }
    let description = if resumed {
        format!(
            "{name} draw of raffle {raffle_id} resumed with {} winners recorded",
            recorded
        )
    } else {
        format!("{name} draw of raffle {raffle_id} started")
    };
    record_event(&tx, &request.conducted_by, event(org, raffle_id, if resumed {
            "DRAW_RESUMED"
        } else {
            "DRAW_STARTED"
        }, catalog::audit::Severity::Info, description, json!({"execution_id": prepared.execution_id, "seed_commitment": hex::encode(prepared.commitment),
               "seal_head_hash": hex::encode(prepared.seal_head), "tickets_eligible": prepared.eligible.len()})))
    .await?;
    tx.commit().await.map_err(failed)?;
    Ok(())
}

/// Completes the draw: the system checksum (seal head and the software that drew), the raffle
/// moved to `drawn`, and the completion recorded with every winner.
async fn complete(
    client: &mut tokio_postgres::Client,
    request: &DrawRequest,
    prepared: &Prepared,
    method: &Method<'_>,
    winners: Vec<Winner>,
    resumed: bool,
) -> Result<DrawOutcome, DrawError> {
    let (raffle_id, org, name) = (
        prepared.raffle_id,
        Some(prepared.organization_id),
        method.name(),
    );
    let software = platform::version::executable_sha256().map_err(failed)?;
    let system_checksum = format!(
        "seal:{} software:{software}",
        hex::encode(prepared.seal_head)
    );
    let tx = client.transaction().await.map_err(failed)?;
    let completed_at: DateTime<Utc> = tx
        .query_one(
            "UPDATE draw.draw_executions SET state = 'completed', completed_at = now(), system_checksum = $2, updated_at = now()
              WHERE id = $1 RETURNING completed_at",
            &[&prepared.execution_id, &system_checksum],
        )
        .await
        .map_err(failed)?
        .get(0);
    catalog::lifecycle::transition(
        &tx,
        raffle_id,
        RaffleState::Sealed,
        RaffleState::Drawn,
        &format!("{name} draw {}", prepared.execution_id),
        &request.conducted_by,
    )
    .await
    .map_err(failed)?;
    let outcome = DrawOutcome {
        raffle_id,
        execution_id: prepared.execution_id,
        method: name.to_owned(),
        resumed,
        seed: match method {
            Method::Rng => prepared.seed.map(hex::encode),
            Method::Manual(_) => None,
        },
        seed_commitment: hex::encode(prepared.commitment),
        seal_head_hash: hex::encode(prepared.seal_head),
        tickets_eligible: prepared.eligible.len(),
        system_checksum,
        winners,
        completed_at,
    };
    record_event(
        &tx,
        &request.conducted_by,
        event(
            org,
            raffle_id,
            "DRAW_COMPLETED",
            catalog::audit::Severity::Info,
            format!(
                "{name} draw of raffle {raffle_id} completed: {} winners from {} eligible tickets",
                outcome.winners.len(),
                outcome.tickets_eligible
            ),
            json!(&outcome),
        ),
    )
    .await?;
    tx.commit().await.map_err(failed)?;
    tracing::info!(raffle_id = %raffle_id, execution_id = %prepared.execution_id, winners = outcome.winners.len(), "draw completed");
    Ok(outcome)
}

/// One prize's winners: results, tickets marked, and the prize entry, in one transaction.
async fn record_prize(
    client: &mut tokio_postgres::Client,
    p: &Prepared,
    slot: &PrizeSlot,
    winners: &[&Winner],
) -> Result<(), DrawError> {
    let tx = client.transaction().await.map_err(failed)?;
    let mut postings = Vec::new();
    for w in winners {
        let result_id: Uuid = tx
            .query_one(
                "INSERT INTO draw.draw_results (draw_execution_id, prize_id, position, winner_index, winning_ticket_id,
                     winning_number, prize_value_at_draw_minor, currency)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[&p.execution_id, &w.prize_id, &w.position, &w.winner_index, &w.ticket_id, &w.draw_number, &w.value_minor, &w.currency],
            )
            .await
            .map_err(failed)?
            .get(0);
        let marked = sales::tickets::mark_winner(&tx, w.ticket_id, p.raffle_id)
            .await
            .map_err(failed)?;
        if !marked {
            return Err(broken(format!(
                "ticket {} (number {}) of raffle {} is no longer a sold ticket",
                w.ticket_id, w.draw_number, p.raffle_id
            )));
        }
        if w.value_minor > 0 {
            postings.push(Account::PrizePayable(result_id).credit(w.value_minor));
        }
    }
    let total: i64 = winners.iter().map(|w| w.value_minor).sum();
    assert_eq!(
        total, slot.amount_minor,
        "prize shares must add up to the sealed amount"
    );
    if total > 0 {
        postings.push(Account::PrizeLiability(slot.prize_id).debit(total));
        ledger::append(
            &tx,
            p.raffle_id,
            "prize_awarded",
            format!(
                "{} awarded to {}",
                slot.name,
                winners
                    .iter()
                    .map(|w| format!("number {}", w.draw_number))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &p.currency,
            &postings,
        )
        .await
        .map_err(failed)?;
    }
    tx.commit().await.map_err(failed)
}
