//! Prize claims: a winner claims by winning number, the validation number printed on the
//! receipt and the receipt's secret check code, within the claim period (the raffle's draw time plus `claim_period_days`). An
//! accepted claim records the claim, marks the ticket claimed and posts the payout; a refused one
//! is recorded with its reason. Wrong claims for one number, and from one source, are
//! rate-limited, atomically with the judgement. After the period,
//! unclaimed prizes return to the charity's net proceeds.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Pool;
use ledger::postings::Account;
use schemas::{DrawRefusal, RaffleState};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::errors::{DrawError, event, failed, record_event, refused};

/// Refused attempts on one number within [`RATE_WINDOW_MINUTES`] before further attempts are
/// refused outright.
pub const MAX_REFUSED_ATTEMPTS: i64 = 5;
pub const RATE_WINDOW_MINUTES: i64 = 15;
/// Refused attempts from one source within [`RATE_WINDOW_MINUTES`], whatever the numbers.
pub const MAX_REFUSED_PER_SOURCE: i64 = 20;

/// The account prize money leaves the charity by.
pub const PRIZE_DISBURSEMENTS: &str = ledger::postings::PRIZE_DISBURSEMENTS;

pub struct ClaimRequest {
    pub raffle_id: Uuid,
    pub draw_number: i64,
    pub validation_number: String,
    /// The secret printed on the receipt (`schemas::CheckCode`), as the claimant gives it.
    pub check_code: String,
    pub claimed_by: String,
    /// Where the claim comes from, for the limit per source: the staff member and the
    /// address of the request, or the CLI's operator.
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimRecord {
    pub claim_id: Uuid,
    pub raffle_id: Uuid,
    pub draw_number: i64,
    pub prize_name: String,
    pub amount_minor: i64,
    pub currency: String,
    pub claimed_at: DateTime<Utc>,
}

/// The claim-by date of a raffle: its draw time plus its claim period.
pub async fn claim_deadline(
    client: &impl tokio_postgres::GenericClient,
    raffle_id: Uuid,
) -> Result<(Uuid, DateTime<Utc>), DrawError> {
    let row = client
        .query_opt(
            "SELECT organization_id, draw_time, claim_period_days FROM catalog.raffle_events WHERE id = $1",
            &[&raffle_id],
        )
        .await
        .map_err(failed)?
        .ok_or_else(|| refused(DrawRefusal::UnknownRaffle, format!("raffle {raffle_id} does not exist")))?;
    let (draw_time, days): (DateTime<Utc>, i32) = (row.get(1), row.get(2));
    Ok((row.get(0), draw_time + Duration::days(i64::from(days))))
}

/// Claims now.
pub async fn claim(pool: &Pool, request: &ClaimRequest) -> Result<ClaimRecord, DrawError> {
    claim_at(pool, request, Utc::now()).await
}

/// Claims as of `at` (tests and drills use a moment past the deadline; the CLI passes now).
///
/// One transaction judges and records: the rate limits, the judgement, and the attempt (and
/// its critical event) that the next judgement counts. Claims for one number, and claims from
/// one source, wait for each other, so that twelve wrong claims at once are judged five times
/// and refused as rate-limited seven (they were judged eleven times when the count and the
/// record were apart).
pub async fn claim_at(
    pool: &Pool,
    request: &ClaimRequest,
    at: DateTime<Utc>,
) -> Result<ClaimRecord, DrawError> {
    let mut client = pool.get().await.map_err(failed)?;
    let (organization, deadline) = claim_deadline(&**client, request.raffle_id).await?;
    let tx = client.transaction().await.map_err(failed)?;
    // Number before source, always: no two claims can wait for each other in a circle.
    for key in [
        format!("claim/{}/{}", request.raffle_id, request.draw_number),
        format!("claim-source/{}", request.source),
    ] {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .await
        .map_err(failed)?;
    }
    match judge(&tx, request, at, deadline).await {
        Ok(record) => {
            record_event(
                &*tx,
                &request.claimed_by,
                event(
                    Some(organization),
                    request.raffle_id,
                    "PRIZE_CLAIMED",
                    catalog::audit::Severity::Info,
                    format!(
                        "{} won by number {} claimed and paid: {} {}",
                        record.prize_name, record.draw_number, record.amount_minor, record.currency
                    ),
                    json!(&record),
                ),
            )
            .await?;
            attempt(&tx, request, at, "accepted", None).await?;
            tx.commit().await.map_err(failed)?;
            Ok(record)
        }
        Err(DrawError::Refused { code, reason }) => {
            // The refusal is evidence, and what the rate limits count.
            attempt(
                &tx,
                request,
                at,
                "refused",
                Some(&format!("{code}: {reason}")),
            )
            .await?;
            record_event(
                &*tx,
                &request.claimed_by,
                event(
                    Some(organization),
                    request.raffle_id,
                    "PRIZE_CLAIM_REFUSED",
                    catalog::audit::Severity::Warning,
                    format!(
                        "claim for number {} of raffle {} refused: {reason}",
                        request.draw_number, request.raffle_id
                    ),
                    json!({"draw_number": request.draw_number, "code": code, "source": request.source}),
                ),
            )
            .await?;
            tx.commit().await.map_err(failed)?;
            Err(DrawError::Refused { code, reason })
        }
        Err(other) => Err(other),
    }
}

async fn attempt(
    tx: &tokio_postgres::Transaction<'_>,
    request: &ClaimRequest,
    at: DateTime<Utc>,
    outcome: &str,
    reason: Option<&str>,
) -> Result<(), DrawError> {
    tx.execute(
        "INSERT INTO draw.claim_attempts (raffle_id, winning_number, claimed_by, outcome, reason, attempted_at, source)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&request.raffle_id, &request.draw_number, &request.claimed_by, &outcome, &reason, &at, &request.source],
    )
    .await
    .map_err(failed)?;
    Ok(())
}

/// Refused attempts within the window, on this number and from this source.
async fn recent_refusals(
    tx: &tokio_postgres::Transaction<'_>,
    request: &ClaimRequest,
    at: DateTime<Utc>,
) -> Result<(i64, i64), DrawError> {
    let since = at - Duration::minutes(RATE_WINDOW_MINUTES);
    let row = tx
        .query_one(
            "SELECT count(*) FILTER (WHERE raffle_id = $1 AND winning_number = $2),
                    count(*) FILTER (WHERE source = $3)
               FROM draw.claim_attempts
              WHERE outcome = 'refused' AND attempted_at > $4
                AND ((raffle_id = $1 AND winning_number = $2) OR source = $3)",
            &[
                &request.raffle_id,
                &request.draw_number,
                &request.source,
                &since,
            ],
        )
        .await
        .map_err(failed)?;
    Ok((row.get(0), row.get(1)))
}

/// Decides the claim inside `tx`; on acceptance, records it, marks the ticket claimed and
/// posts the payout.
async fn judge(
    tx: &tokio_postgres::Transaction<'_>,
    request: &ClaimRequest,
    at: DateTime<Utc>,
    deadline: DateTime<Utc>,
) -> Result<ClaimRecord, DrawError> {
    let (raffle, number) = (request.raffle_id, request.draw_number);
    let (on_number, from_source) = recent_refusals(tx, request, at).await?;
    if on_number >= MAX_REFUSED_ATTEMPTS {
        return Err(refused(
            DrawRefusal::RateLimited,
            format!(
                "{on_number} refused claims for number {number} in the last {RATE_WINDOW_MINUTES} minutes; try again later or ask the raffle's staff"
            ),
        ));
    }
    if from_source >= MAX_REFUSED_PER_SOURCE {
        return Err(refused(
            DrawRefusal::RateLimited,
            format!(
                "{from_source} refused claims from {} in the last {RATE_WINDOW_MINUTES} minutes; try again later",
                request.source
            ),
        ));
    }
    let row = tx
        .query_opt(
            "SELECT r.id, p.name, r.prize_value_at_draw_minor, r.currency, r.winning_ticket_id, o.validation_number,
                    EXISTS (SELECT 1 FROM draw.prize_claims c WHERE c.draw_result_id = r.id),
                    EXISTS (SELECT 1 FROM draw.unclaimed_prizes u WHERE u.draw_result_id = r.id),
                    o.check_code_hash
               FROM draw.draw_results r
               JOIN draw.draw_executions e ON e.id = r.draw_execution_id AND e.state = 'completed'
               JOIN catalog.prizes p ON p.id = r.prize_id
               JOIN sales.tickets t ON t.id = r.winning_ticket_id
               JOIN sales.orders o ON o.id = t.order_id
              WHERE e.raffle_event_id = $1 AND r.winning_number = $2
              FOR UPDATE OF t",
            &[&raffle, &number],
        )
        .await
        .map_err(failed)?;
    let Some(row) = row else {
        let drawn: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM draw.draw_executions WHERE raffle_event_id = $1 AND state = 'completed')",
                &[&raffle],
            )
            .await
            .map_err(failed)?
            .get(0);
        return Err(if drawn {
            refused(
                DrawRefusal::NotAWinner,
                format!("number {number} did not win a prize in raffle {raffle}"),
            )
        } else {
            refused(
                DrawRefusal::NotDrawn,
                format!("raffle {raffle} has not been drawn yet"),
            )
        });
    };
    let (result_id, prize_name, amount, currency, ticket_id, validation): (
        Uuid,
        String,
        i64,
        String,
        Uuid,
        String,
    ) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    );
    let check_code_hash: Option<Vec<u8>> = row.get(8);
    if row.get::<_, bool>(6) {
        return Err(refused(
            DrawRefusal::AlreadyClaimed,
            format!("the prize won by number {number} was already claimed"),
        ));
    }
    if row.get::<_, bool>(7) || at > deadline {
        return Err(refused(
            DrawRefusal::ClaimPeriodOver,
            format!("prizes of raffle {raffle} had to be claimed by {deadline}"),
        ));
    }
    let given = request.validation_number.trim().to_ascii_uppercase();
    if !schemas::constant_time_eq(given.as_bytes(), validation.as_bytes()) {
        return Err(refused(
            DrawRefusal::WrongValidationNumber,
            format!("the validation number does not match the one issued with number {number}"),
        ));
    }
    // The validation number is on the receipt for people and can be worked out from another
    // receipt; the check code is the buyer's secret.
    let Some(stored) = check_code_hash else {
        return Err(refused(
            DrawRefusal::NoCheckCode,
            format!(
                "the receipt of number {number} was issued without a check code; the raffle's staff verify the winner in person"
            ),
        ));
    };
    let code = schemas::CheckCode::parse(&request.check_code)
        .map_err(|e| refused(DrawRefusal::WrongCheckCode, e.to_string()))?;
    if !code.matches(raffle, &validation, &stored) {
        return Err(refused(
            DrawRefusal::WrongCheckCode,
            format!("the check code does not match the receipt of number {number}"),
        ));
    }
    let (claim_id, claimed_at): (Uuid, DateTime<Utc>) = {
        let r = tx
            .query_one(
                "INSERT INTO draw.prize_claims (draw_result_id, claimed_at, claimed_by, verification_method, verified_by)
                 VALUES ($1, $2, $3, 'validation_number', 'validation number and check code match') RETURNING id, claimed_at",
                &[&result_id, &at, &request.claimed_by],
            )
            .await
            .map_err(failed)?;
        (r.get(0), r.get(1))
    };
    sales::tickets::mark_claimed(tx, ticket_id)
        .await
        .map_err(failed)?;
    settle_payable(
        tx,
        raffle,
        result_id,
        amount,
        &currency,
        Settlement::Paid(format!(
            "{prize_name} paid to the holder of number {number}"
        )),
    )
    .await?;
    Ok(ClaimRecord {
        claim_id,
        raffle_id: raffle,
        draw_number: number,
        prize_name,
        amount_minor: amount,
        currency,
        claimed_at,
    })
}

/// How a winner's payable prize is settled, with the entry's description.
enum Settlement {
    /// Paid out to the winner on a claim.
    Paid(String),
    /// Returned to the charity's net proceeds after the claim period.
    Unclaimed(String),
}

/// Closes the payable of draw result `result_id`: the one ledger entry a claim or an expiry
/// posts. Nothing to post for a prize of no value.
async fn settle_payable(
    tx: &tokio_postgres::Transaction<'_>,
    raffle_id: Uuid,
    result_id: Uuid,
    amount: i64,
    currency: &str,
    settlement: Settlement,
) -> Result<(), DrawError> {
    if amount <= 0 {
        return Ok(());
    }
    let (entry_type, description, counter) = match settlement {
        Settlement::Paid(d) => (
            "prize_payout",
            d,
            Account::PrizeDisbursements.credit(amount),
        ),
        Settlement::Unclaimed(d) => ("unclaimed_prize", d, Account::NetProceeds.credit(amount)),
    };
    let payable = Account::PrizePayable(result_id).debit(amount);
    ledger::append(
        tx,
        raffle_id,
        entry_type,
        description,
        currency,
        &[payable, counter],
    )
    .await
    .map_err(failed)
}

#[derive(Debug, Clone, Serialize)]
pub struct Expiry {
    pub raffle_id: Uuid,
    pub deadline: DateTime<Utc>,
    pub expired: Vec<(i64, i64)>,
    pub returned_to_proceeds_minor: i64,
}

/// After the claim period: every unclaimed prize returns to net proceeds (once), and the raffle
/// is completed.
pub async fn expire_unclaimed(pool: &Pool, raffle_id: Uuid, by: &str) -> Result<Expiry, DrawError> {
    expire_unclaimed_at(pool, raffle_id, by, Utc::now()).await
}

/// [`expire_unclaimed`] as of `at` (tests use a moment past the deadline).
pub async fn expire_unclaimed_at(
    pool: &Pool,
    raffle_id: Uuid,
    by: &str,
    at: DateTime<Utc>,
) -> Result<Expiry, DrawError> {
    let mut client = pool.get().await.map_err(failed)?;
    let (organization, deadline) = claim_deadline(&**client, raffle_id).await?;
    if at <= deadline {
        return Err(refused(
            DrawRefusal::ClaimPeriodOpen,
            format!("winners of raffle {raffle_id} may claim until {deadline}"),
        ));
    }
    let tx = client.transaction().await.map_err(failed)?;
    let state: String = tx
        .query_one(
            "SELECT state FROM catalog.raffle_events WHERE id = $1 FOR UPDATE",
            &[&raffle_id],
        )
        .await
        .map_err(failed)?
        .get(0);
    if state != "drawn" {
        return Err(refused(
            DrawRefusal::NotDrawn,
            format!("raffle {raffle_id} is {state}; only a drawn raffle's unclaimed prizes expire"),
        ));
    }
    let open = tx
        .query(
            "SELECT r.id, r.winning_number, r.prize_value_at_draw_minor, r.currency
               FROM draw.draw_results r JOIN draw.draw_executions e ON e.id = r.draw_execution_id AND e.state = 'completed'
              WHERE e.raffle_event_id = $1
                AND NOT EXISTS (SELECT 1 FROM draw.prize_claims c WHERE c.draw_result_id = r.id)
                AND NOT EXISTS (SELECT 1 FROM draw.unclaimed_prizes u WHERE u.draw_result_id = r.id)
              ORDER BY r.position, r.winner_index",
            &[&raffle_id],
        )
        .await
        .map_err(failed)?;
    let mut expired = Vec::new();
    for r in &open {
        let (result_id, number, amount, currency): (Uuid, i64, i64, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        tx.execute(
            "INSERT INTO draw.unclaimed_prizes (draw_result_id, expired_at, recorded_by) VALUES ($1, $2, $3)",
            &[&result_id, &at, &by],
        )
        .await
        .map_err(failed)?;
        settle_payable(
            &tx,
            raffle_id,
            result_id,
            amount,
            &currency,
            Settlement::Unclaimed(format!(
                "prize won by number {number} unclaimed by {deadline}: returned to proceeds"
            )),
        )
        .await?;
        expired.push((number, amount));
    }
    catalog::lifecycle::transition(
        &*tx,
        raffle_id,
        RaffleState::Drawn,
        RaffleState::Completed,
        "claim period over",
        by,
    )
    .await
    .map_err(failed)?;
    let expiry = Expiry {
        raffle_id,
        deadline,
        returned_to_proceeds_minor: expired.iter().map(|(_, a)| a).sum(),
        expired,
    };
    record_event(&*tx, by, event(Some(organization), raffle_id, "UNCLAIMED_PRIZES_TO_PROCEEDS", catalog::audit::Severity::Info, format!(
            "claim period of raffle {raffle_id} over: {} unclaimed prizes ({} minor units) returned to proceeds",
            expiry.expired.len(),
            expiry.returned_to_proceeds_minor
        ), json!(&expiry)))
    .await?;
    tx.commit().await.map_err(failed)?;
    Ok(expiry)
}
