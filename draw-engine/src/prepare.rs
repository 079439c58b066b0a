//! What a draw stands on, loaded and checked: the sealed raffle, its chain verified, the seal
//! recomputed from the eligible tickets, the seed against its commitment; and the winners
//! the committed inputs select.

use chrono::{DateTime, Utc};
use ledger::tickets::{EligibleSet, EligibleTicket};
use schemas::DrawRefusal;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::Instant;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::errors::{DrawError, broken, failed, refused};
use crate::select;

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
        .map_err(|_| broken(format!("{what} is {} bytes, not 32", v.len())))
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
        .ok_or_else(|| refused(DrawRefusal::UnknownRaffle, format!("raffle {raffle_id} does not exist")))?;
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
                DrawRefusal::NotSealed,
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
            broken(format!(
                "raffle {raffle_id} is sealed but has no draw execution"
            ))
        })?;

    let expected = seal.get::<_, i64>(1).max(0) as usize;
    let (eligible, timings) = verified_books(client, raffle_id, expected).await?;
    let commitment = bytes32(seal.get::<_, &[u8]>(2), "the seed commitment")?;
    let wrapped: bool = execution.get(5);
    let seed = revealed_seed(raffle_id, &execution, &commitment, key)?;
    let prizes = prize_slots(client, raffle_id, &seal.get::<_, serde_json::Value>(3)).await?;

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
        timings,
    })
}

/// The books a draw stands on, re-checked: the chain verifies entry by entry, the eligible
/// tickets load (as many as the seal counted) and the seal's figures recompute from them.
async fn verified_books(
    client: &impl GenericClient,
    raffle_id: Uuid,
    expected: usize,
) -> Result<(EligibleSet, Timings), DrawError> {
    let started = Instant::now();
    let chain = ledger::verify(client, raffle_id).await.map_err(failed)?;
    if let Some(f) = chain.first_failure {
        return Err(refused(
            DrawRefusal::LedgerDoesNotVerify,
            format!(
                "the ledger of raffle {raffle_id} does not verify at entry {} (sequence {}): {}",
                f.entry_id, f.sequence, f.reason
            ),
        ));
    }
    let ledger_check_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
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
            DrawRefusal::SealDoesNotVerify,
            format!(
                "the seal of raffle {raffle_id} no longer matches its books: {}",
                list.join("; ")
            ),
        ));
    }
    let seal_check_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok((
        eligible,
        Timings {
            ledger_check_ms,
            ticket_load_ms,
            seal_check_ms,
        },
    ))
}

/// The seed the execution keeps, once it meets the seal's commitment: in clear, or unwrapped
/// with `key`; `None` while it stays wrapped (no key given).
fn revealed_seed(
    raffle_id: Uuid,
    execution: &tokio_postgres::Row,
    commitment: &[u8; 32],
    key: Option<&ledger::seed_key::SeedKey>,
) -> Result<Option<[u8; 32]>, DrawError> {
    let execution_commitment: Option<Vec<u8>> = execution.get(4);
    if execution_commitment.as_deref() != Some(&commitment[..]) {
        return Err(refused(
            DrawRefusal::CommitmentMismatch,
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
        && <[u8; 32]>::from(Sha256::digest(seed)) != *commitment
    {
        return Err(refused(
            DrawRefusal::CommitmentMismatch,
            if wrapped {
                "the draw seed does not hash to the commitment published in the seal: is this the RAFFLE_DRAW_SEED_KEY the raffle was sealed with?"
            } else {
                "the stored draw seed does not hash to the commitment published in the seal"
            },
        ));
    }
    Ok(seed)
}

/// The raffle's prizes in position order, each with the amount the seal valued it at.
async fn prize_slots(
    client: &impl GenericClient,
    raffle_id: Uuid,
    sealed_amounts: &serde_json::Value,
) -> Result<Vec<PrizeSlot>, DrawError> {
    let prize_rows = client
        .query(
            "SELECT id, name, position, winner_count FROM catalog.prizes WHERE raffle_id = $1 ORDER BY position",
            &[&raffle_id],
        )
        .await
        .map_err(failed)?;
    prize_rows
        .iter()
        .map(|r| {
            let prize_id: Uuid = r.get(0);
            let amount_minor = sealed_amounts
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["prize_id"].as_str() == Some(&prize_id.to_string()))
                .and_then(|p| p["amount_minor"].as_i64())
                .ok_or_else(|| broken(format!("the seal holds no amount for prize {prize_id}")))?;
            Ok(PrizeSlot {
                prize_id,
                name: r.get(1),
                position: r.get(2),
                winner_count: r.get(3),
                amount_minor,
            })
        })
        .collect::<Result<Vec<_>, DrawError>>()
}

/// The winners the committed seed selects, prize by prize in position order.
pub fn select_winners(p: &Prepared) -> Result<Vec<Winner>, DrawError> {
    let seed = p
        .seed
        .ok_or_else(|| broken("the draw seed is missing: it cannot be revealed"))?;
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
pub(crate) fn assign(p: &Prepared, tickets: Vec<Vec<EligibleTicket>>) -> Vec<Winner> {
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
