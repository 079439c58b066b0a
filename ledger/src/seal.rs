//! The seal: after sales close and the pipeline has drained, the books of a raffle are closed.
//! Percentage prizes, the guaranteed minimum and starting amount, the operating fee and net
//! proceeds are computed ([`crate::split`]) and posted; the seal records the chain's head hash,
//! the totals and counts, the digest of the eligible ticket set and the commitment to the draw
//! seed. After it, sales no longer post (the consumer refuses them to the DLQ).

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use platform::TopicNames;
use rand::TryRngCore;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::consumer::append;
use crate::postings::{Account, GROSS_TICKET_REVENUE, REFUNDS_AND_VOIDS};
use crate::tickets::EligibleSet;
use schemas::{RaffleState, SealRefusal};

pub struct SealRequest {
    pub raffle_id: Uuid,
    pub sealed_by: String,
    /// Webhooks for payments made before the end may arrive this long after it.
    pub grace_seconds: i64,
    /// Allocations whose device never synced, written off: their unsold numbers count as sold
    /// (gross receipts), as regulators require for unaccounted numbers.
    pub write_off: Vec<Uuid>,
    /// The key the draw seed waits under until the draw; without one (development) it waits in
    /// clear, readable by anyone who can read `draw.draw_executions`.
    pub seed_key: Option<crate::seed_key::SeedKey>,
    /// Who keeps the seed until the draw: the draw engine (`&draw_engine::SEED_KEEPER`).
    pub seed_keeper: &'static dyn SeedKeeper,
}

/// The seed committed at the seal, as it is handed to its keeper.
pub struct SealedSeed<'a> {
    pub raffle_id: Uuid,
    /// SHA-256 of the seed: what the seal records and publishes.
    pub commitment: [u8; 32],
    /// The seed as it is stored: wrapped under the seed key, or in clear when none is
    /// configured.
    pub stored: [u8; 32],
    pub wrapped: bool,
    pub sealed_by: &'a str,
}

/// Who keeps the draw seed from the seal to the draw, in the seal's transaction: the draw
/// engine, which owns the draw's tables. The ledger stands below the draw engine and knows it
/// only through this.
pub trait SeedKeeper: Send + Sync {
    fn keep<'a>(
        &'a self,
        tx: &'a tokio_postgres::Transaction<'_>,
        seed: SealedSeed<'a>,
    ) -> futures::future::BoxFuture<'a, Result<(), tokio_postgres::Error>>;
}

#[derive(Debug, Clone, Serialize)]
pub struct SealRecord {
    pub raffle_id: Uuid,
    pub head_hash: String,
    pub entries: i64,
    pub currency: String,
    pub gross_sales_minor: i64,
    pub refunds_minor: i64,
    /// Refunds still owed when the books were sealed: the refunds payable balance, and how
    /// many obligations it stands for. The seal does not wait for them (the provider pays at
    /// its own rate, and their entries are accepted after the seal), but it says what is owed.
    pub refunds_owed_minor: i64,
    pub refunds_owed_count: i64,
    pub written_off_minor: i64,
    pub gross_receipts_minor: i64,
    pub prizes: serde_json::Value,
    pub operating_fee_minor: i64,
    pub net_proceeds_minor: i64,
    pub tickets_eligible: i64,
    pub tickets_voided: i64,
    pub ticket_set_digest: String,
    pub seed_commitment: String,
    pub sealed_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The seal cannot happen yet, or at all; `code` is a [`SealRefusal`]'s published code,
    /// `reason` names the figures.
    #[error("seal refused ({code}): {reason}")]
    Refused { code: &'static str, reason: String },
    /// Something broke; the failure keeps its cause.
    #[error("seal failed: {0}")]
    Failed(#[source] platform::Failure),
}

fn refused(refusal: SealRefusal, reason: impl Into<String>) -> SealError {
    SealError::Refused {
        code: refusal.code(),
        reason: reason.into(),
    }
}

fn overflow(what: &str) -> SealError {
    refused(
        SealRefusal::AmountOverflow,
        format!("the {what} does not fit in 64-bit minor units"),
    )
}

fn checked_sum(amounts: &[i64], what: &str) -> Result<i64, SealError> {
    amounts
        .iter()
        .try_fold(0i64, |sum, a| sum.checked_add(*a))
        .ok_or_else(|| overflow(what))
}

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> SealError {
    SealError::Failed(platform::Failure::of(e))
}

/// Refuses while anything produced before now is still on its way: sales not yet allocated,
/// ticket events not yet relayed or posted. Checked upstream first: the allocator commits its
/// offsets with its outbox rows, the relay publishes them before the ledger can read them, so
/// each check holds once the one before it did.
async fn ensure_drained(pool: &Pool, brokers: &str, topics: &TopicNames) -> Result<(), SealError> {
    let client = pool.get().await.map_err(failed)?;
    behind(
        &client,
        brokers,
        "allocator",
        &topics.sales,
        topics.sales_partitions,
    )
    .await?;
    let outbox: i64 = client
        .query_one(
            "SELECT count(*) FROM platform.outbox WHERE published_at IS NULL AND topic = $1",
            &[&topics.tickets],
        )
        .await
        .map_err(failed)?
        .get(0);
    if outbox > 0 {
        return Err(refused(
            SealRefusal::InFlight,
            format!("{outbox} ticket events are waiting in the allocator's outbox"),
        ));
    }
    behind(
        &client,
        brokers,
        "ledger",
        &topics.tickets,
        topics.tickets_partitions,
    )
    .await
}

/// Refuses when `group` has not consumed every partition of `topic` up to its high watermark.
async fn behind(
    client: &tokio_postgres::Client,
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), SealError> {
    let high = platform::kafka::high_watermarks(brokers, topic, partitions)
        .await
        .map_err(failed)?;
    for (partition, high) in high.into_iter().enumerate() {
        let stored: i64 = client
            .query_opt(
                "SELECT next_offset FROM platform.consumer_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
                &[&group, &topic, &(partition as i32)],
            )
            .await
            .map_err(failed)?
            .map(|r| r.get(0))
            .unwrap_or(0);
        if stored < high {
            return Err(refused(
                SealRefusal::InFlight,
                format!(
                    "the {group} has {} messages to consume on {topic}[{partition}] (at {stored} of {high})",
                    high - stored
                ),
            ));
        }
    }
    Ok(())
}

pub async fn seal(
    pool: &Pool,
    brokers: &str,
    topics: &TopicNames,
    request: &SealRequest,
) -> Result<SealRecord, SealError> {
    let raffle = request.raffle_id;
    check_closed(pool, request).await?;
    ensure_drained(pool, brokers, topics).await?;

    let mut client = pool.get().await.map_err(failed)?;
    let tx = client.transaction().await.map_err(failed)?;
    let terms = terms(&tx, raffle).await?;
    check_cash_counted(&tx, request).await?;
    let written_off = write_off_unsynced(&tx, request, &terms.currency).await?;
    let totals = totals(&tx, raffle, written_off).await?;
    let (money, prizes_json) = post_split(&tx, raffle, &terms, &totals).await?;
    let Totals {
        gross_sales,
        refunds,
        gross_receipts,
        written_off,
    } = totals;
    let currency = terms.currency.clone();
    let organization = terms.organization_id;

    // The eligible ticket set and the draw seed's commitment.
    let tickets = EligibleSet::load(&*tx, raffle, 0).await.map_err(failed)?;
    let ticket_set_digest = tickets.digest;
    let voided: i64 = tx
        .query_one(
            "SELECT count(*) FROM sales.tickets WHERE raffle_id = $1 AND state = 'voided'",
            &[&raffle],
        )
        .await
        .map_err(failed)?
        .get(0);
    let commitment = commit_seed(&tx, request).await?;
    let (refunds_owed_minor, refunds_owed_count) = refunds_owed(&tx, raffle).await?;

    let verification = crate::verify(&*tx, raffle).await.map_err(failed)?;
    let head = hex::decode(&verification.head_hash).map_err(failed)?;
    let sealed_at: DateTime<Utc> = tx
        .query_one(
            "INSERT INTO ledger.seals (raffle_id, head_hash, entries, currency, gross_sales_minor, refunds_minor, written_off_minor,
                 gross_receipts_minor, prizes, operating_fee_minor, net_proceeds_minor, tickets_eligible, tickets_voided,
                 ticket_set_digest, seed_commitment, sealed_by, refunds_owed_minor, refunds_owed_count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING sealed_at",
            &[
                &raffle,
                &head,
                &verification.entries_verified,
                &currency,
                &gross_sales,
                &refunds,
                &written_off,
                &gross_receipts,
                &json!(prizes_json),
                &money.operating_fee_minor,
                &money.net_proceeds_minor,
                &(tickets.len() as i64),
                &voided,
                &ticket_set_digest.to_vec(),
                &commitment.to_vec(),
                &request.sealed_by,
                &refunds_owed_minor,
                &refunds_owed_count,
            ],
        )
        .await
        .map_err(failed)?
        .get(0);
    catalog::lifecycle::transition(
        &*tx,
        raffle,
        RaffleState::SalesClosed,
        RaffleState::Sealed,
        "books sealed",
        &request.sealed_by,
    )
    .await
    .map_err(failed)?;
    let record = SealRecord {
        raffle_id: raffle,
        head_hash: verification.head_hash.clone(),
        entries: verification.entries_verified,
        currency,
        gross_sales_minor: gross_sales,
        refunds_minor: refunds,
        refunds_owed_minor,
        refunds_owed_count,
        written_off_minor: written_off,
        gross_receipts_minor: gross_receipts,
        prizes: json!(prizes_json),
        operating_fee_minor: money.operating_fee_minor,
        net_proceeds_minor: money.net_proceeds_minor,
        tickets_eligible: tickets.len() as i64,
        tickets_voided: voided,
        ticket_set_digest: hex::encode(ticket_set_digest),
        seed_commitment: hex::encode(commitment),
        sealed_at,
    };
    let description = format!(
        "raffle sealed: gross receipts {gross_receipts} {}, head hash {}",
        record.currency, record.head_hash
    );
    let after = serde_json::to_value(&record).map_err(failed)?;
    catalog::audit::record(
        &*tx,
        Some(&catalog::audit::Actor::cli(&request.sealed_by)),
        catalog::audit::Event::info(Some(organization), "RAFFLE_SEALED", description)
            .raffle(raffle)
            .change(None, Some(after)),
    )
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(record)
}

/// What the raffle owes back as it is sealed: the refunds payable balance (a credit) and the
/// obligations whose liability is open. The two agree unless the books are wrong, which the
/// reconciliation's check names; the seal records both as they are.
async fn refunds_owed(tx: &Transaction<'_>, raffle: Uuid) -> Result<(i64, i64), SealError> {
    let payable = crate::balances(&**tx, raffle, None)
        .await
        .map_err(failed)?
        .get(crate::postings::REFUNDS_PAYABLE)
        .copied()
        .unwrap_or(0);
    let open: i64 = tx
        .query_one(
            "SELECT count(*) FROM refunds.obligations WHERE raffle_id = $1 AND booked = 'owed'",
            &[&raffle],
        )
        .await
        .map_err(failed)?
        .get(0);
    Ok((-payable, open))
}

/// Only a raffle whose sales closed is sealed, and only once the grace period for late
/// payment webhooks is over.
async fn check_closed(pool: &Pool, request: &SealRequest) -> Result<(), SealError> {
    let raffle = request.raffle_id;

    let client = pool.get().await.map_err(failed)?;
    let row = client
        .query_opt(
            // Sales end at the end time, or earlier when closed early.
            "SELECT r.state, least(r.sales_end_time, (SELECT max(t.occurred_at) FROM catalog.raffle_transitions t
                                                       WHERE t.raffle_id = r.id AND t.to_state = 'sales_closed'))
               FROM catalog.raffle_events r WHERE r.id = $1",
            &[&raffle],
        )
        .await
        .map_err(failed)?
        .ok_or_else(|| refused(SealRefusal::UnknownRaffle, format!("raffle {raffle} does not exist")))?;
    let (state, end): (String, DateTime<Utc>) = (row.get(0), row.get(1));
    if state != "sales_closed" {
        return Err(refused(
            SealRefusal::NotClosed,
            format!("raffle {raffle} is {state}; only a raffle whose sales closed is sealed"),
        ));
    }
    let open_until = end + chrono::Duration::seconds(request.grace_seconds);
    if Utc::now() < open_until {
        return Err(refused(
            SealRefusal::GracePeriod,
            format!("late payment webhooks are accepted until {open_until}"),
        ));
    }
    Ok(())
}

/// Every device's cash is counted before the seal (two people, `raffle cash count`), or its
/// block is written off in this seal.
async fn check_cash_counted(tx: &Transaction<'_>, request: &SealRequest) -> Result<(), SealError> {
    let written_off: Vec<Uuid> = tx
        .query(
            "SELECT entity_id FROM catalog.rsu_allocations WHERE id = ANY($1)",
            &[&request.write_off],
        )
        .await
        .map_err(failed)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let uncounted: Vec<String> = crate::cash::uncounted(&**tx, request.raffle_id)
        .await
        .map_err(failed)?
        .into_iter()
        .filter(|(rsu, _, _)| !written_off.contains(rsu))
        .map(|(_, name, value)| format!("{name} ({})", schemas::amount_for_people(value)))
        .collect();
    if !uncounted.is_empty() {
        return Err(refused(
            SealRefusal::CashNotCounted,
            format!(
                "the cash of {} is not counted: count it with two people (`raffle cash count`) or write its block off",
                uncounted.join(", ")
            ),
        ));
    }
    Ok(())
}

/// What the raffle and its organisation set for the split.
struct Terms {
    currency: String,
    organization_id: Uuid,
    split: crate::split::Terms,
}

/// The raffle locked for the seal, still closed, and its terms.
async fn terms(tx: &Transaction<'_>, raffle: Uuid) -> Result<Terms, SealError> {
    let row = tx
        .query_one(
            "SELECT r.state, r.organization_id FROM catalog.raffle_events r WHERE r.id = $1 FOR UPDATE OF r",
            &[&raffle],
        )
        .await
        .map_err(failed)?;
    let state: String = row.get(0);
    if state != "sales_closed" {
        return Err(refused(
            SealRefusal::NotClosed,
            format!("raffle {raffle} is {state}"),
        ));
    }
    let split = crate::split::Terms::load(&**tx, raffle)
        .await
        .map_err(failed)?
        .ok_or_else(|| refused(SealRefusal::NotClosed, format!("no raffle {raffle}")))?;
    Ok(Terms {
        currency: split.currency.clone(),
        organization_id: row.get(1),
        split,
    })
}

/// Devices that never gave their block back: refused unless written off; a written-off
/// block's unaccounted numbers count as sold at the lowest price per ticket on offer.
/// Returns the value written off.
async fn write_off_unsynced(
    tx: &Transaction<'_>,
    request: &SealRequest,
    currency: &str,
) -> Result<i64, SealError> {
    let raffle = request.raffle_id;
    let open = tx
        .query(
            "SELECT a.id, a.entity_id, a.tickets_available FROM catalog.rsu_allocations a
              WHERE a.raffle_id = $1 AND a.state = 'active' ORDER BY a.start_number FOR UPDATE",
            &[&raffle],
        )
        .await
        .map_err(failed)?;
    let unsynced: Vec<String> = open
        .iter()
        .filter(|r| !request.write_off.contains(&r.get::<_, Uuid>(0)))
        .map(|r| {
            format!(
                "{} (RSU {}, {} numbers unaccounted)",
                r.get::<_, Uuid>(0),
                r.get::<_, Uuid>(1),
                r.get::<_, i64>(2)
            )
        })
        .collect();
    if !unsynced.is_empty() {
        return Err(refused(
            SealRefusal::UnsyncedAllocations,
            format!(
                "these allocations were neither returned nor written off: {}",
                unsynced.join(", ")
            ),
        ));
    }
    // A written-off number counts as sold at the lowest price per ticket on offer.
    let per_ticket: i64 = tx
        .query_one(
            "SELECT coalesce(min((price_minor + ticket_count - 1) / ticket_count), 0)::bigint FROM catalog.ticket_packages
              WHERE raffle_id = $1 AND is_active",
            &[&raffle],
        )
        .await
        .map_err(failed)?
        .get(0);
    let mut written_off = 0;
    for r in &open {
        let (allocation, rsu, unaccounted): (Uuid, Uuid, i64) = (r.get(0), r.get(1), r.get(2));
        let value = unaccounted
            .checked_mul(per_ticket)
            .ok_or_else(|| overflow("value of the written-off numbers"))?;
        catalog::rsus::write_off(&**tx, allocation)
            .await
            .map_err(failed)?;
        if value > 0 {
            append(
                tx,
                raffle,
                "written_off_receipts",
                format!(
                    "{unaccounted} unaccounted numbers of allocation {allocation} counted as sold"
                ),
                currency,
                &[
                    Account::RsuFloat(rsu).debit(value),
                    Account::GrossTicketRevenue.credit(value),
                ],
            )
            .await
            .map_err(failed)?;
        }
        written_off = checked_sum(&[written_off, value], "written-off receipts")?;
    }
    Ok(written_off)
}

/// The seal's totals, from a ledger that verifies.
struct Totals {
    gross_sales: i64,
    refunds: i64,
    gross_receipts: i64,
    written_off: i64,
}

async fn totals(tx: &Transaction<'_>, raffle: Uuid, written_off: i64) -> Result<Totals, SealError> {
    let verification = crate::verify(&**tx, raffle).await.map_err(failed)?;
    if let Some(f) = verification.first_failure {
        return Err(refused(
            SealRefusal::LedgerDoesNotVerify,
            format!(
                "entry {} (sequence {}): {}",
                f.entry_id, f.sequence, f.reason
            ),
        ));
    }
    let balances = crate::balances(&**tx, raffle, None).await.map_err(failed)?;
    let revenue = balances.get(GROSS_TICKET_REVENUE).copied().unwrap_or(0);
    let gross_sales = revenue
        .checked_neg()
        .and_then(|r| r.checked_sub(written_off))
        .ok_or_else(|| overflow("gross sales"))?;
    let refunds = balances.get(REFUNDS_AND_VOIDS).copied().unwrap_or(0);
    let gross_receipts = gross_sales
        .checked_add(written_off)
        .and_then(|g| g.checked_sub(refunds))
        .ok_or_else(|| overflow("gross receipts"))?;
    Ok(Totals {
        gross_sales,
        refunds,
        gross_receipts,
        written_off,
    })
}

/// The split (prizes, fee, net proceeds) computed and posted: prizes and fee become
/// liabilities; revenue and expenses close to net proceeds. Returns the split and the prizes
/// as the seal records them.
async fn post_split(
    tx: &Transaction<'_>,
    raffle: Uuid,
    terms: &Terms,
    totals: &Totals,
) -> Result<(crate::split::Split, Vec<serde_json::Value>), SealError> {
    let Totals {
        gross_sales,
        refunds,
        gross_receipts,
        written_off,
    } = *totals;
    let currency = &terms.currency;
    let money = terms
        .split
        .split(gross_receipts)
        .map_err(|e| refused(SealRefusal::AmountOverflow, e.to_string()))?;
    let parts: Vec<i64> = money
        .prizes_minor
        .iter()
        .copied()
        .chain([money.operating_fee_minor, money.net_proceeds_minor])
        .collect();
    assert_eq!(
        checked_sum(&parts, "split")?,
        gross_receipts,
        "the split of raffle {raffle} adds up to its gross"
    );

    let mut allocation = Vec::new();
    let mut closing = vec![
        Account::GrossTicketRevenue.debit(gross_sales + written_off),
        Account::RefundsAndVoids.credit(refunds),
    ];
    let mut prizes_json = Vec::new();
    for (prize, amount) in terms.split.prizes.iter().zip(&money.prizes_minor) {
        let id = prize.id;
        prizes_json.push(json!({"prize_id": id, "name": prize.name, "amount_minor": amount}));
        if *amount > 0 {
            allocation.push(Account::PrizeExpense(id).debit(*amount));
            allocation.push(Account::PrizeLiability(id).credit(*amount));
            closing.push(Account::PrizeExpense(id).credit(*amount));
        }
    }
    if money.operating_fee_minor > 0 {
        allocation.push(Account::OperatingFeeExpense.debit(money.operating_fee_minor));
        allocation.push(Account::OperatingFeePayable.credit(money.operating_fee_minor));
        closing.push(Account::OperatingFeeExpense.credit(money.operating_fee_minor));
    }
    closing.push(Account::NetProceeds.credit(money.net_proceeds_minor));
    closing.retain(|p| p.amount_minor != 0);
    if allocation.len() >= 2 {
        append(
            tx,
            raffle,
            "prize_and_fee_allocation",
            "prizes and operating fee at the seal".into(),
            currency,
            &allocation,
        )
        .await
        .map_err(failed)?;
    }
    if closing.len() >= 2 {
        append(
            tx,
            raffle,
            "close_to_net_proceeds",
            "revenue and expenses closed to net proceeds".into(),
            currency,
            &closing,
        )
        .await
        .map_err(failed)?;
    }
    Ok((money, prizes_json))
}

/// The draw seed, drawn now from the operating system: it waits for the draw with its
/// execution (wrapped when a key is configured); only its commitment is published.
async fn commit_seed(tx: &Transaction<'_>, request: &SealRequest) -> Result<[u8; 32], SealError> {
    let raffle = request.raffle_id;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(failed)?;
    let commitment: [u8; 32] = Sha256::digest(seed).into();
    let (stored, wrapped) = match &request.seed_key {
        Some(key) => (key.apply(raffle, &seed), true),
        None => {
            tracing::warn!(raffle_id = %raffle, "no {} configured: the draw seed waits in clear", crate::seed_key::ENV);
            (seed, false)
        }
    };
    let sealed = SealedSeed {
        raffle_id: raffle,
        commitment,
        stored,
        wrapped,
        sealed_by: &request.sealed_by,
    };
    request.seed_keeper.keep(tx, sealed).await.map_err(failed)?;
    Ok(commitment)
}
