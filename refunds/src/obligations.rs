//! Refund obligations: owed, asked for, settled, and what finance may do with them.

use std::fmt;
use std::str::FromStr;

use catalog::audit::{self, Actor, Severity};
use chrono::{DateTime, Utc};
use schemas::Money;
use serde::Serialize;
use serde_json::json;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

/// Where an obligation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// To be asked for.
    Owed,
    /// Asked for; the provider has not said it is paid (or the ask is under way).
    Requested,
    /// The provider paid it.
    Succeeded,
    /// The provider could not pay it; finance retries or cancels it.
    Failed,
    /// Finance decided it is not paid through the provider (said who and why).
    Cancelled,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Owed,
        State::Requested,
        State::Succeeded,
        State::Failed,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Owed => "owed",
            State::Requested => "requested",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    /// The state a provider's refund status means (`pending`, `requires_action`,
    /// `succeeded`, `failed`, `canceled`); `None` for a status the provider does not document.
    pub fn of_provider_status(status: &str) -> Option<State> {
        match status {
            "pending" | "requires_action" => Some(State::Requested),
            "succeeded" => Some(State::Succeeded),
            "failed" | "canceled" => Some(State::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a refund state (owed, requested, succeeded, failed, cancelled)"
                )
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("refund {0} does not exist")]
    Unknown(Uuid),
    #[error("refund {id} is {state}: it cannot be {action}")]
    NotAllowed {
        id: Uuid,
        state: State,
        action: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// A refund to owe.
#[derive(Debug, Clone)]
pub struct NewObligation<'a> {
    pub raffle_id: Uuid,
    pub order_id: Option<Uuid>,
    pub source_key: String,
    pub reason_code: &'a str,
    pub reason: &'a str,
    pub provider: &'a str,
    pub payment_reference: &'a str,
    pub amount: Money,
}

/// Owes the refunds, once per source: owing the same one again does nothing. Returns how many
/// are new.
pub async fn owe(
    client: &impl GenericClient,
    list: &[NewObligation<'_>],
) -> Result<u64, tokio_postgres::Error> {
    owe_returning(client, list)
        .await
        .map(|new| new.len() as u64)
}

/// [`owe`], returning the source keys of the obligations that are new.
pub async fn owe_returning(
    client: &impl GenericClient,
    list: &[NewObligation<'_>],
) -> Result<std::collections::HashSet<String>, tokio_postgres::Error> {
    let list: Vec<&NewObligation<'_>> = list
        .iter()
        .filter(|o| o.amount.amount_minor() > 0)
        .collect();
    if list.is_empty() {
        return Ok(Default::default());
    }
    let ids: Vec<Uuid> = list.iter().map(|_| Uuid::now_v7()).collect();
    let raffles: Vec<Uuid> = list.iter().map(|o| o.raffle_id).collect();
    let orders: Vec<Option<Uuid>> = list.iter().map(|o| o.order_id).collect();
    let sources: Vec<&str> = list.iter().map(|o| o.source_key.as_str()).collect();
    let codes: Vec<&str> = list.iter().map(|o| o.reason_code).collect();
    let reasons: Vec<&str> = list.iter().map(|o| o.reason).collect();
    let providers: Vec<&str> = list.iter().map(|o| o.provider).collect();
    let references: Vec<&str> = list.iter().map(|o| o.payment_reference).collect();
    let amounts: Vec<i64> = list.iter().map(|o| o.amount.amount_minor()).collect();
    let currencies: Vec<&str> = list.iter().map(|o| o.amount.currency_code()).collect();
    let rows = client
        .query(
            "INSERT INTO refunds.obligations (id, raffle_id, order_id, source_key, reason_code, reason, provider,
                 payment_reference, amount_minor, currency)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                 $7::text[], $8::text[], $9::bigint[], $10::text[])
             ON CONFLICT (source_key) DO NOTHING RETURNING source_key",
            &[
                &ids,
                &raffles,
                &orders,
                &sources,
                &codes,
                &reasons,
                &providers,
                &references,
                &amounts,
                &currencies,
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// An obligation as finance sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Obligation {
    pub id: Uuid,
    pub raffle_id: Uuid,
    pub order_id: Option<Uuid>,
    pub reason_code: String,
    pub reason: String,
    pub provider: String,
    pub payment_reference: String,
    pub amount_minor: i64,
    pub currency: String,
    pub state: State,
    pub provider_refund_id: Option<String>,
    pub provider_status: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub idempotency_key: String,
    pub cancelled_by: Option<String>,
    pub cancel_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, raffle_id, order_id, reason_code, reason, provider, payment_reference, amount_minor,
    currency, state, provider_refund_id, provider_status, attempts, last_error, key_generation, cancelled_by,
    cancel_reason, created_at, updated_at";

/// The Idempotency-Key of an obligation's current request: the same on every retry of the
/// request (after a timeout, a 429 or a crash), new only when finance retries a failed refund.
/// The refund carries it in its metadata too, so a webhook names the request it answers.
pub fn idempotency_key(id: Uuid, generation: i32) -> String {
    format!("refund-{id}-{generation}")
}

/// The obligation and request generation a key names, if it is one of ours.
pub fn parse_idempotency_key(key: &str) -> Option<(Uuid, i32)> {
    let rest = key.strip_prefix("refund-")?;
    let (id, generation) = rest.rsplit_once('-')?;
    Some((Uuid::parse_str(id).ok()?, generation.parse().ok()?))
}

fn obligation(row: &Row) -> Result<Obligation, RefundError> {
    let id: Uuid = row.get(0);
    Ok(Obligation {
        id,
        raffle_id: row.get(1),
        order_id: row.get(2),
        reason_code: row.get(3),
        reason: row.get(4),
        provider: row.get(5),
        payment_reference: row.get(6),
        amount_minor: row.get(7),
        currency: row.get(8),
        state: row
            .get::<_, String>(9)
            .parse()
            .map_err(|e| RefundError::Invalid(format!("refund {id}: {e}")))?,
        provider_refund_id: row.get(10),
        provider_status: row.get(11),
        attempts: row.get(12),
        last_error: row.get(13),
        idempotency_key: idempotency_key(id, row.get(14)),
        cancelled_by: row.get(15),
        cancel_reason: row.get(16),
        created_at: row.get(17),
        updated_at: row.get(18),
    })
}

/// The obligations of a raffle (or of every raffle), in one state or all, oldest first.
pub async fn list(
    client: &impl GenericClient,
    raffle: Option<Uuid>,
    state: Option<State>,
) -> Result<Vec<Obligation>, RefundError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM refunds.obligations
                  WHERE ($1::uuid IS NULL OR raffle_id = $1) AND ($2::text IS NULL OR state = $2)
                  ORDER BY created_at, id"
            ),
            &[&raffle, &state.map(State::as_str)],
        )
        .await?;
    rows.iter().map(obligation).collect()
}

pub async fn get(client: &impl GenericClient, id: Uuid) -> Result<Obligation, RefundError> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM refunds.obligations WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(RefundError::Unknown(id))?;
    obligation(&row)
}

/// Refunds not yet paid, per currency: what the raffle still owes its buyers (cancelled ones
/// excluded: finance pays those outside the platform).
pub async fn owed_total(
    client: &impl GenericClient,
    raffle: Uuid,
) -> Result<Vec<(String, i64, i64)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT currency, count(*), coalesce(sum(amount_minor), 0)::bigint FROM refunds.obligations
              WHERE raffle_id = $1 AND state IN ('owed', 'requested', 'failed')
              GROUP BY currency ORDER BY currency",
            &[&raffle],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

async fn locked(client: &impl GenericClient, id: Uuid) -> Result<Obligation, RefundError> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM refunds.obligations WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or(RefundError::Unknown(id))?;
    obligation(&row)
}

async fn organization_of(
    client: &impl GenericClient,
    raffle: Uuid,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT organization_id FROM catalog.raffle_events WHERE id = $1",
            &[&raffle],
        )
        .await?
        .map(|r| r.get(0)))
}

/// Asks again: a failed refund under a new Idempotency-Key (the provider answered the old
/// one for good), an owed one now rather than after its back-off. A critical event says who.
pub async fn retry(
    client: &impl GenericClient,
    id: Uuid,
    by: &Actor,
) -> Result<Obligation, RefundError> {
    let before = locked(client, id).await?;
    let bump = match before.state {
        State::Failed => 1,
        State::Owed => 0,
        state => {
            return Err(RefundError::NotAllowed {
                id,
                state,
                action: "retried (only owed and failed refunds are)",
            });
        }
    };
    client
        .execute(
            "UPDATE refunds.obligations SET state = 'owed', key_generation = key_generation + $2,
                    provider_refund_id = CASE WHEN $2 = 1 THEN NULL ELSE provider_refund_id END,
                    provider_status = CASE WHEN $2 = 1 THEN NULL ELSE provider_status END,
                    next_attempt_at = now(), updated_at = now()
              WHERE id = $1",
            &[&id, &bump],
        )
        .await?;
    let after = get(client, id).await?;
    let event = audit::Event::info(
        organization_of(client, before.raffle_id).await?,
        "REFUND_RETRIED",
        format!(
            "refund {id} of {} {} ({}) asked for again, was {}",
            before.amount_minor, before.currency, before.payment_reference, before.state
        ),
    )
    .raffle(before.raffle_id)
    .severity(Severity::Warning)
    .change(
        Some(json!({"state": before.state, "idempotency_key": before.idempotency_key})),
        Some(json!({"state": after.state, "idempotency_key": after.idempotency_key})),
    );
    audit::record(client, Some(by), event).await?;
    Ok(after)
}

/// Takes a refund off the provider's list: finance pays it another way (or decided it is not
/// owed) and says why. The liability stays in the books until that payment is booked.
pub async fn cancel(
    client: &impl GenericClient,
    id: Uuid,
    by: &Actor,
    reason: &str,
) -> Result<Obligation, RefundError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(RefundError::Invalid(
            "a cancellation needs a reason of 1 to 500 characters".into(),
        ));
    }
    let before = locked(client, id).await?;
    if !matches!(before.state, State::Owed | State::Failed) {
        return Err(RefundError::NotAllowed {
            id,
            state: before.state,
            action: "cancelled (only owed and failed refunds are; a requested one waits for the provider's answer)",
        });
    }
    client
        .execute(
            "UPDATE refunds.obligations SET state = 'cancelled', cancelled_by = $2, cancel_reason = $3,
                    updated_at = now()
              WHERE id = $1",
            &[&id, &by.sub, &reason],
        )
        .await?;
    let event = audit::Event::info(
        organization_of(client, before.raffle_id).await?,
        "REFUND_CANCELLED",
        format!(
            "refund {id} of {} {} ({}) cancelled: {reason}",
            before.amount_minor, before.currency, before.payment_reference
        ),
    )
    .raffle(before.raffle_id)
    .severity(Severity::Warning)
    .change(
        Some(json!({"state": before.state})),
        Some(json!({"state": "cancelled", "reason": reason})),
    );
    audit::record(client, Some(by), event).await?;
    get(client, id).await
}

/// What the provider said about one of our refunds (in its answer to the request, or in a
/// `refund.*` webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The request answered: its Idempotency-Key (from the refund's metadata).
    pub idempotency_key: String,
    pub provider_refund_id: String,
    pub provider_status: String,
    pub failure_reason: Option<String>,
}

/// Records the provider's word about the obligation's current request. A final answer is never
/// undone by a late "pending" (webhooks come in any order); a paid refund may still fail later
/// (the provider documents it), which reopens what is owed; a failed one stays failed until
/// finance retries it; a cancelled obligation, an older request's answer and another refund's
/// id are left alone. Returns the state now, or `None` when nothing changed.
pub async fn settle(
    client: &impl GenericClient,
    s: &Settlement,
) -> Result<Option<State>, RefundError> {
    let Some(state) = State::of_provider_status(&s.provider_status) else {
        return Err(RefundError::Invalid(format!(
            "refund {} reports status {:?}, which the provider does not document",
            s.provider_refund_id, s.provider_status
        )));
    };
    let Some((id, generation)) = parse_idempotency_key(&s.idempotency_key) else {
        return Err(RefundError::Invalid(format!(
            "refund {} carries {:?}, which is not one of our refund keys",
            s.provider_refund_id, s.idempotency_key
        )));
    };
    let row = client
        .query_opt(
            "UPDATE refunds.obligations
                SET state = $2, provider_refund_id = $3, provider_status = $4,
                    last_error = coalesce($5, last_error), updated_at = now()
              WHERE id = $1 AND key_generation = $6 AND state <> 'cancelled'
                AND (provider_refund_id IS NULL OR provider_refund_id = $3)
                AND NOT (state IN ('succeeded', 'failed') AND $2 = 'requested')
                AND NOT (state = 'failed' AND $2 <> 'failed')
                AND (state <> $2 OR provider_status IS DISTINCT FROM $4)
              RETURNING state",
            &[
                &id,
                &state.as_str(),
                &s.provider_refund_id,
                &s.provider_status,
                &s.failure_reason,
                &generation,
            ],
        )
        .await?;
    Ok(row.map(|_| state))
}

/// Whole currency units as a spreadsheet reads them (`12.34`, `-0.50`).
fn units(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// The list as CSV with a header row, amounts in whole currency units, ready for a spreadsheet.
pub fn to_csv(list: &[Obligation]) -> String {
    let cell = ledger::report::csv_cell;
    let mut out = String::from(
        "refund_id,raffle_id,order_id,state,amount,currency,reason_code,reason,provider,payment_reference,provider_refund_id,attempts,last_error,cancelled_by,cancel_reason,created_at,updated_at\n",
    );
    for o in list {
        let row = [
            o.id.to_string(),
            o.raffle_id.to_string(),
            o.order_id.map(|i| i.to_string()).unwrap_or_default(),
            o.state.to_string(),
            units(o.amount_minor),
            o.currency.clone(),
            o.reason_code.clone(),
            o.reason.clone(),
            o.provider.clone(),
            o.payment_reference.clone(),
            o.provider_refund_id.clone().unwrap_or_default(),
            o.attempts.to_string(),
            o.last_error.clone().unwrap_or_default(),
            o.cancelled_by.clone().unwrap_or_default(),
            o.cancel_reason.clone().unwrap_or_default(),
            o.created_at.to_rfc3339(),
            o.updated_at.to_rfc3339(),
        ];
        out.push_str(&row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_obligation_and_request() {
        let id = Uuid::now_v7();
        assert_eq!(
            parse_idempotency_key(&idempotency_key(id, 3)),
            Some((id, 3))
        );
        assert_eq!(parse_idempotency_key("refund-nope-1"), None);
        assert_eq!(parse_idempotency_key("order-1"), None);
    }

    #[test]
    fn provider_statuses_map_to_states() {
        assert_eq!(State::of_provider_status("pending"), Some(State::Requested));
        assert_eq!(
            State::of_provider_status("requires_action"),
            Some(State::Requested)
        );
        assert_eq!(
            State::of_provider_status("succeeded"),
            Some(State::Succeeded)
        );
        assert_eq!(State::of_provider_status("canceled"), Some(State::Failed));
        assert_eq!(State::of_provider_status("lost"), None);
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
        }
    }

    #[test]
    fn amounts_in_the_csv_are_whole_units() {
        assert_eq!(units(123_456), "1234.56");
        assert_eq!(units(5), "0.05");
        assert_eq!(units(-50), "-0.50");
    }
}
