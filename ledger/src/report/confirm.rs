//! Finance confirms a reconciliation: only when every check passes, no refund is owed and the
//! books are sealed; once; recorded on the raffle (`reconciliationConfirmedAt/By`, through
//! `catalog::raffles`) with the digest of the report confirmed, and as a critical event.

use catalog::audit::{self, Actor, Severity};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::{Report, ReportError};

/// A confirmation as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Confirmation {
    pub confirmed_at: String,
    pub confirmed_by: String,
    pub report_sha256: String,
    /// Whether the report today still has the digest that was confirmed (a change to the
    /// books afterwards, a refund reopened say, makes it false).
    pub still_matches: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("raffle {0} does not exist")]
    UnknownRaffle(Uuid),
    #[error("raffle {raffle} cannot be confirmed yet: {reason}")]
    Refused { raffle: Uuid, reason: String },
    #[error("raffle {raffle} was confirmed already, by {by} at {at}")]
    AlreadyConfirmed {
        raffle: Uuid,
        by: String,
        at: String,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// The digest of what a report says: its JSON without the confirmation, the time and software
/// that made it, and the raffle's state (which moves on after the draw without the books
/// changing).
pub fn report_sha256(report: &Report) -> String {
    let mut value = serde_json::to_value(report).unwrap_or(Value::Null);
    if let Some(o) = value.as_object_mut() {
        o.remove("confirmation");
        o.remove("generated_at");
        o.remove("software");
        if let Some(raffle) = o.get_mut("raffle").and_then(Value::as_object_mut) {
            raffle.remove("state");
        }
    }
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// The confirmation recorded for the raffle, if any, against the report as it is now.
pub(super) async fn recorded(
    client: &impl GenericClient,
    raffle: Uuid,
    report: &Report,
) -> Result<Option<Confirmation>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT reconciliation_confirmed_at, reconciliation_confirmed_by, reconciliation_report_sha256
               FROM catalog.raffle_events WHERE id = $1 AND reconciliation_confirmed_at IS NOT NULL",
            &[&raffle],
        )
        .await?;
    Ok(row.map(|r| {
        let sha: String = r.get(2);
        Confirmation {
            confirmed_at: r.get::<_, DateTime<Utc>>(0).to_rfc3339(),
            confirmed_by: r.get(1),
            still_matches: sha == report_sha256(report),
            report_sha256: sha,
        }
    }))
}

/// Confirms the reconciliation of `raffle` as `by`, in the caller's transaction. Refused, with
/// the reason, while the raffle is not sealed, a check fails or a refund is still owed.
pub async fn confirm(
    client: &impl GenericClient,
    raffle: Uuid,
    by: &Actor,
) -> Result<Confirmation, ConfirmError> {
    let row = client
        .query_opt(
            "SELECT state, organization_id, reconciliation_confirmed_by, reconciliation_confirmed_at
               FROM catalog.raffle_events WHERE id = $1 FOR UPDATE",
            &[&raffle],
        )
        .await?
        .ok_or(ConfirmError::UnknownRaffle(raffle))?;
    let (state, organization): (String, Uuid) = (row.get(0), row.get(1));
    if let (Some(by), Some(at)) = (
        row.get::<_, Option<String>>(2),
        row.get::<_, Option<DateTime<Utc>>>(3),
    ) {
        return Err(ConfirmError::AlreadyConfirmed {
            raffle,
            by,
            at: at.to_rfc3339(),
        });
    }
    let refused = |reason: String| ConfirmError::Refused { raffle, reason };
    if !matches!(state.as_str(), "sealed" | "drawn" | "completed") {
        return Err(refused(format!(
            "it is {state}; the books are confirmed once they are sealed"
        )));
    }
    let report = super::reconciliation(client, raffle).await?;
    let failing = report.failing();
    if !failing.is_empty() {
        return Err(refused(format!(
            "{} of {} checks fail: {}",
            failing.len(),
            report.checks.len(),
            failing.join("; ")
        )));
    }
    let owed: Vec<String> = report
        .refunds
        .iter()
        .filter(|l| matches!(l.state.as_str(), "owed" | "requested" | "failed"))
        .map(|l| {
            format!(
                "{} {} ({})",
                l.count,
                l.state,
                schemas::amount_for_people(l.amount_minor)
            )
        })
        .collect();
    if !owed.is_empty() {
        return Err(refused(format!(
            "refunds are still owed to buyers: {}",
            owed.join(", ")
        )));
    }
    let sha = report_sha256(&report);
    let Some(at) = catalog::raffles::confirm_reconciliation(client, raffle, &by.sub, &sha).await?
    else {
        return Err(refused("it was confirmed meanwhile".into()));
    };
    let event = audit::Event::info(
        Some(organization),
        "RECONCILIATION_CONFIRMED",
        format!(
            "reconciliation of raffle {raffle} confirmed by {}: {} checks pass, no refund owed (report sha256 {sha})",
            by.sub,
            report.checks.len()
        ),
    )
    .raffle(raffle)
    .severity(Severity::Critical)
    .change(
        None,
        Some(json!({"confirmed_by": by.sub, "confirmed_at": at, "report_sha256": sha})),
    );
    audit::record(client, Some(by), event).await?;
    Ok(Confirmation {
        confirmed_at: at.to_rfc3339(),
        confirmed_by: by.sub.clone(),
        report_sha256: sha,
        still_matches: true,
    })
}
