//! `raffle draw run` and the manual draw: the checks before a draw, the recording of winners
//! prize by prize, and the completion.
//!
//! A draw records each prize's winners, marks their tickets and posts the prize entry in one
//! transaction per prize, so an interruption leaves whole prizes behind; the next run replays
//! the same selection, checks it meets what was recorded and records the rest.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use ledger::postings::Posting;
use ledger::tickets::{EligibleSet, EligibleTicket};
use schemas::RaffleState;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Instant;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::select;

#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    /// The draw (or claim) cannot happen; `code` is stable, `reason` names the figures.
    #[error("refused ({code}): {reason}")]
    Refused { code: &'static str, reason: String },
    /// A drill: the run stopped on purpose after the prizes it was told to record.
    #[error("interrupted after {prizes_recorded} prizes; run the draw again to resume")]
    Interrupted { prizes_recorded: usize },
    #[error("draw failed: {0}")]
    Failed(String),
}

pub(crate) fn refused(code: &'static str, reason: impl Into<String>) -> DrawError {
    DrawError::Refused {
        code,
        reason: reason.into(),
    }
}

pub(crate) fn failed(e: impl std::error::Error + 'static) -> DrawError {
    DrawError::Failed(platform::error_chain(&e))
}

/// A critical event about a raffle, with what it recorded.
pub(crate) fn event<'a>(
    organization_id: Option<Uuid>,
    raffle_id: Uuid,
    event_type: &'a str,
    severity: catalog::audit::Severity,
    description: String,
    after: serde_json::Value,
) -> catalog::audit::Event<'a> {
    catalog::audit::Event::info(organization_id, event_type, description)
        .raffle(raffle_id)
        .severity(severity)
        .change(None, Some(after))
}

/// Writes a critical event. A failure is an error of the whole operation: inside a
/// transaction the failed insert has aborted it, and committing anyway would turn the COMMIT
/// into a ROLLBACK while the caller reported success.
pub(crate) async fn record_event(
    client: &impl GenericClient,
    by: &str,
    event: catalog::audit::Event<'_>,
) -> Result<(), DrawError> {
    let (raffle_id, event_type) = (event.raffle_id, event.event_type.to_owned());
    catalog::audit::record(client, Some(&catalog::audit::Actor::cli(by)), event)
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::error!(raffle_id = ?raffle_id, event_type, error = %e, "could not record a critical event");
            DrawError::Failed(format!("recording the critical event {event_type}: {e}"))
        })
}

/// One prize as the seal valued it.
#[derive(Debug, Clone, Serialize)]
pub struct PrizeSlot {
    pub prize_id: Uuid,
    pub name: String,
    pub position: i32,
    pub winner_count: i32,
    pub amount_minor: i64,
}

/// Everything a draw (or its verification) stands on, checked.
pub struct Prepared {
    pub raffle_id: Uuid,
    pub organization_id: Uuid,
    pub raffle_state: String,
    pub currency: String,
    pub draw_time: DateTime<Utc>,
    pub execution_id: Uuid,
    pub method: String,
    pub execution_state: String,
    /// The seed, once revealed (or unwrapped with the key).
    pub seed: Option<[u8; 32]>,
    /// The stored seed is still wrapped under the seed key.
    pub seed_wrapped: bool,
    pub commitment: [u8; 32],
    pub seal_head: [u8; 32],
    pub eligible: EligibleSet,
    pub prizes: Vec<PrizeSlot>,
    pub timings: Timings,
}

/// Where a preparation's time went, for the benchmark.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    pub ledger_check_ms: f64,
    pub ticket_load_ms: f64,
    pub seal_check_ms: f64,
}

/// One winner: chosen, or recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Winner {
    pub prize_id: Uuid,
    pub prize_name: String,
    pub position: i32,
    pub winner_index: i32,
    pub draw_number: i64,
    pub ticket_id: Uuid,
    pub value_minor: i64,
    pub currency: String,
}

fn bytes32(v: &[u8], what: &str) -> Result<[u8; 32], DrawError> {
    v.try_into()
        .map_err(|_| DrawError::Failed(format!("{what} is {} bytes, not 32", v.len())))
}

/// Loads and checks what a draw of `raffle_id` stands on: the raffle sealed, its ledger chain
/// verifying entry by entry, the seal's figures and eligible ticket set recomputing exactly,
/// and the revealed seed meeting its commitment. Refusals name what failed.
pub async fn prepare(client: &impl GenericClient, raffle_id: Uuid) -> Result<Prepared, DrawError> {
    prepare_with_key(client, raffle_id, None).await
}

/// [`prepare`], unwrapping a seed the seal stored under `key`. Without the key a wrapped seed
/// stays unknown (`seed` is `None`): enough to verify the books, not to draw.
pub async fn prepare_with_key(
    client: &impl GenericClient,
    raffle_id: Uuid,
    key: Option<&ledger::seed_key::SeedKey>,
) -> Result<Prepared, DrawError> {
    let raffle = client
        .query_opt(
            "SELECT organization_id, state, currency, draw_time FROM catalog.raffle_events WHERE id = $1",
            &[&raffle_id],
        )
        .await
        .map_err(failed)?
        .ok_or_else(|| refused("unknown-raffle", format!("raffle {raffle_id} does not exist")))?;
    let raffle_state: String = raffle.get(1);
    let seal = client
        .query_opt(
            "SELECT head_hash, tickets_eligible, seed_commitment, prizes FROM ledger.seals WHERE raffle_id = $1",
            &[&raffle_id],
        )
        .await
        .map_err(failed)?
        .ok_or_else(|| {
            refused(
                "not-sealed",
                format!("raffle {raffle_id} is {raffle_state}: its books are not sealed, so it cannot be drawn"),
            )
        })?;
    let execution = client
        .query_opt(
            "SELECT id, method, state, rng_seed, rng_seed_commitment, rng_seed_wrapped FROM draw.draw_executions
              WHERE raffle_event_id = $1 ORDER BY created_at DESC LIMIT 1",
            &[&raffle_id],
        )
        .await
        .map_err(failed)?
        .ok_or_else(|| {
            DrawError::Failed(format!(
                "raffle {raffle_id} is sealed but has no draw execution"
            ))
        })?;

    let started = Instant::now();
    let chain = ledger::verify(client, raffle_id).await.map_err(failed)?;
    if let Some(f) = chain.first_failure {
        return Err(refused(
            "ledger-does-not-verify",
            format!(
                "the ledger of raffle {raffle_id} does not verify at entry {} (sequence {}): {}",
                f.entry_id, f.sequence, f.reason
            ),
        ));
    }
    let ledger_check_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let expected = seal.get::<_, i64>(1).max(0) as usize;
    let eligible = EligibleSet::load(client, raffle_id, expected)
        .await
        .map_err(failed)?;
    let ticket_load_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let mismatches = ledger::verify_seal_with(client, raffle_id, Some(&eligible))
        .await
        .map_err(failed)?
        .unwrap_or_default();
    if !mismatches.is_empty() {
        let list: Vec<String> = mismatches
            .iter()
            .map(|m| format!("{} sealed {} but now {}", m.field, m.sealed, m.recomputed))
            .collect();
        return Err(refused(
            "seal-does-not-verify",
            format!(
                "the seal of raffle {raffle_id} no longer matches its books: {}",
                list.join("; ")
            ),
        ));
    }
    let seal_check_ms = started.elapsed().as_secs_f64() * 1e3;

    let commitment = bytes32(seal.get::<_, &[u8]>(2), "the seed commitment")?;
    let execution_commitment: Option<Vec<u8>> = execution.get(4);
    if execution_commitment.as_deref() != Some(&commitment[..]) {
        return Err(refused(
            "commitment-mismatch",
            "the draw execution's seed commitment differs from the one published in the seal",
        ));
    }
    let wrapped: bool = execution.get(5);
    let seed = match (execution.get::<_, Option<Vec<u8>>>(3), wrapped, key) {
        (Some(stored), false, _) => Some(bytes32(&stored, "the draw seed")?),
        (Some(stored), true, Some(key)) => {
            Some(key.apply(raffle_id, &bytes32(&stored, "the wrapped draw seed")?))
        }
        _ => None,
    };
    if let Some(seed) = seed
        && <[u8; 32]>::from(Sha256::digest(seed)) != commitment
    {
        return Err(refused(
            "commitment-mismatch",
            if wrapped {
                "the draw seed does not hash to the commitment published in the seal: is this the RAFFLE_DRAW_SEED_KEY the raffle was sealed with?"
            } else {
                "the stored draw seed does not hash to the commitment published in the seal"
            },
        ));
    }

    let sealed_amounts: serde_json::Value = seal.get(3);
    let prize_rows = client
        .query(
            "SELECT id, name, position, winner_count FROM catalog.prizes WHERE raffle_id = $1 ORDER BY position",
            &[&raffle_id],
        )
        .await
        .map_err(failed)?;
    let prizes = prize_rows
        .iter()
        .map(|r| {
            let prize_id: Uuid = r.get(0);
            let amount_minor = sealed_amounts
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["prize_id"].as_str() == Some(&prize_id.to_string()))
                .and_then(|p| p["amount_minor"].as_i64())
                .ok_or_else(|| {
                    DrawError::Failed(format!("the seal holds no amount for prize {prize_id}"))
                })?;
            Ok(PrizeSlot {
                prize_id,
                name: r.get(1),
                position: r.get(2),
                winner_count: r.get(3),
                amount_minor,
            })
        })
        .collect::<Result<Vec<_>, DrawError>>()?;

    Ok(Prepared {
        raffle_id,
        organization_id: raffle.get(0),
        raffle_state,
        currency: raffle.get(2),
        draw_time: raffle.get(3),
        execution_id: execution.get(0),
        method: execution.get(1),
        execution_state: execution.get(2),
        seed,
        seed_wrapped: wrapped,
        commitment,
        seal_head: bytes32(seal.get::<_, &[u8]>(0), "the seal's head hash")?,
        eligible,
        prizes,
        timings: Timings {
            ledger_check_ms,
            ticket_load_ms,
            seal_check_ms,
        },
    })
}

/// The winners the committed seed selects, prize by prize in position order.
pub fn select_winners(p: &Prepared) -> Result<Vec<Winner>, DrawError> {
    let seed = p.seed.ok_or_else(|| {
        DrawError::Failed("the draw seed is missing: it cannot be revealed".into())
    })?;
    let counts: Vec<u32> = p.prizes.iter().map(|s| s.winner_count as u32).collect();
    let drawn = select::winners(select::key(&seed, &p.seal_head), p.eligible.len(), &counts);
    Ok(assign(
        p,
        drawn
            .iter()
            .map(|indices| indices.iter().map(|&i| p.eligible.tickets[i]).collect())
            .collect(),
    ))
}

/// Winners with their prize and value, from the tickets each prize drew (in winner order).
fn assign(p: &Prepared, tickets: Vec<Vec<EligibleTicket>>) -> Vec<Winner> {
    let mut out = Vec::new();
    for (slot, tickets) in p.prizes.iter().zip(tickets) {
        for ((k, ticket), value) in tickets
            .iter()
            .enumerate()
            .zip(select::shares(slot.amount_minor, tickets.len()))
        {
            out.push(Winner {
                prize_id: slot.prize_id,
                prize_name: slot.name.clone(),
                position: slot.position,
                winner_index: k as i32 + 1,
                draw_number: ticket.draw_number,
                ticket_id: ticket.ticket_id,
                value_minor: value,
                currency: p.currency.clone(),
            });
        }
    }
    out
}

/// The winners recorded for an execution, in prize position and winner order.
pub async fn recorded_winners(
    client: &impl GenericClient,
    execution_id: Uuid,
) -> Result<Vec<Winner>, DrawError> {
    let rows = client
        .query(
            "SELECT r.prize_id, p.name, r.position, r.winner_index, r.winning_number, r.winning_ticket_id,
                    r.prize_value_at_draw_minor, r.currency
               FROM draw.draw_results r JOIN catalog.prizes p ON p.id = r.prize_id
              WHERE r.draw_execution_id = $1 ORDER BY r.position, r.winner_index",
            &[&execution_id],
        )
        .await
        .map_err(failed)?;
    Ok(rows
        .iter()
        .map(|r| Winner {
            prize_id: r.get(0),
            prize_name: r.get(1),
            position: r.get(2),
            winner_index: r.get(3),
            draw_number: r.get(4),
            ticket_id: r.get(5),
            value_minor: r.get(6),
            currency: r.get(7),
        })
        .collect())
}

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
            "draw-in-progress",
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
            return DrawError::Failed(format!(
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
    if prepared.execution_state == "completed" || prepared.raffle_state != "sealed" {
        let e = refused(
            "already-drawn",
            format!(
                "raffle {raffle_id} is {} and its draw {} is {}: a raffle is drawn once",
                prepared.raffle_state, prepared.execution_id, prepared.execution_state
            ),
        );
        return Err(refuse(&*client, request, org, e).await);
    }
    let needed: i64 = prepared
        .prizes
        .iter()
        .map(|p| i64::from(p.winner_count))
        .sum();
    if (prepared.eligible.len() as i64) < needed {
        let e = refused(
            "too-few-tickets",
            format!(
                "raffle {raffle_id} has {} eligible tickets for {needed} winners: every prize must be drawable",
                prepared.eligible.len()
            ),
        );
        return Err(refuse(&*client, request, org, e).await);
    }
    let name = match method {
        Method::Rng => "rng",
        Method::Manual(_) => "manual",
    };
    if prepared.execution_state == "in_progress" && prepared.method != name {
        let e = refused(
            "draw-in-progress",
            format!(
                "a {} draw of raffle {raffle_id} is in progress; it must be finished the same way",
                prepared.method
            ),
        );
        return Err(refuse(&*client, request, org, e).await);
    }
    let winners = match method {
        Method::Rng => {
            let methods = catalog::regulations::for_raffle(&*client, raffle_id, Utc::now())
                .await
                .map_err(|p| DrawError::Failed(p.to_string()))?
                .sales_methods();
            if !methods.rng_draw {
                let e = refused(
                    "rng-draw-forbidden",
                    format!(
                        "the jurisdiction of raffle {raffle_id} forbids RNG draws: export the barrel list (`raffle draw barrel`) and record the manual result (`raffle draw manual`)"
                    ),
                );
                return Err(refuse(&*client, request, org, e).await);
            }
            if prepared.seed.is_none() {
                let e = refused(
                    "seed-key-missing",
                    format!(
                        "the draw seed of raffle {raffle_id} was sealed under a key: set {} to the key the raffle was sealed with",
                        ledger::seed_key::ENV
                    ),
                );
                return Err(refuse(&*client, request, org, e).await);
            }
            select_winners(&prepared)?
        }
        Method::Manual(results) => match validate_manual(&prepared, results) {
            Ok(w) => w,
            Err(e) => return Err(refuse(&*client, request, org, e).await),
        },
    };

    // Resuming: what is recorded must be what the committed inputs select.
    let recorded = recorded_winners(&*client, prepared.execution_id).await?;
    let resumed = !recorded.is_empty() || prepared.execution_state == "in_progress";
    if recorded.iter().any(|r| !winners.contains(r)) {
        let e = refused(
            "recorded-results-differ",
            format!(
                "draw {} of raffle {raffle_id} holds results the committed inputs do not select; it cannot be resumed",
                prepared.execution_id
            ),
        );
        return Err(refuse(&*client, request, org, e).await);
    }
    {
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
        if let (Method::Rng, Some(seed), true) = (&method, prepared.seed, prepared.seed_wrapped) {
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
                recorded.len()
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
    }

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
        let marked = tx
            .execute(
                "UPDATE sales.tickets SET state = 'winner', updated_at = now() WHERE id = $1 AND raffle_id = $2 AND state = 'sold'",
                &[&w.ticket_id, &p.raffle_id],
            )
            .await
            .map_err(failed)?;
        if marked != 1 {
            return Err(DrawError::Failed(format!(
                "ticket {} (number {}) of raffle {} is no longer a sold ticket",
                w.ticket_id, w.draw_number, p.raffle_id
            )));
        }
        if w.value_minor > 0 {
            postings.push(Posting {
                code: format!("prize_payable/{result_id}"),
                kind: "liability",
                amount_minor: -w.value_minor,
            });
        }
    }
    let total: i64 = winners.iter().map(|w| w.value_minor).sum();
    assert_eq!(
        total, slot.amount_minor,
        "prize shares must add up to the sealed amount"
    );
    if total > 0 {
        postings.push(Posting {
            code: format!("prize_liability/{}", slot.prize_id),
            kind: "liability",
            amount_minor: total,
        });
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
        return Err(refused("invalid-manual-result", problems.join("; ")));
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
            "already-drawn",
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
