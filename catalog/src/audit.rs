//! Critical events: every change and every refused attempt, with who, when, what, before and
//! after. Numbered per organisation by the database (never reset, never skipped) and kept for
//! the retention the system configuration in force names. The one writer of
//! `audit.critical_events`: every stage records its events through [`record`].

use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::configuration::IN_FORCE;

/// Who acted, as a critical event names them: the `sub` of a person (a bearer token's
/// subject), `rsu:{id}` for a device, or `system` work nobody asked for; and the channel the
/// act came in by (`http`, `cli`, `rsu`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub sub: String,
    pub channel: &'static str,
}

impl Actor {
    /// An operator at the command line (`raffle ledger seal --by`, `raffle draw run --by`).
    pub fn cli(sub: &str) -> Self {
        Self {
            sub: sub.to_owned(),
            channel: "cli",
        }
    }

    /// A device, acting with its own API key.
    pub fn rsu(rsu_id: Uuid) -> Self {
        Self {
            sub: format!("rsu:{rsu_id}"),
            channel: "rsu",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// One critical event to write.
pub struct Event<'a> {
    pub organization_id: Option<Uuid>,
    pub event_type: &'a str,
    pub severity: Severity,
    pub raffle_id: Option<Uuid>,
    pub rsu_id: Option<Uuid>,
    pub description: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl<'a> Event<'a> {
    pub fn info(
        organization_id: Option<Uuid>,
        event_type: &'a str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            organization_id,
            event_type,
            severity: Severity::Info,
            raffle_id: None,
            rsu_id: None,
            description: description.into(),
            before: None,
            after: None,
        }
    }

    pub fn raffle(mut self, raffle_id: Uuid) -> Self {
        self.raffle_id = Some(raffle_id);
        self
    }

    pub fn rsu(mut self, rsu_id: Uuid) -> Self {
        self.rsu_id = Some(rsu_id);
        self
    }

    pub fn change(mut self, before: Option<Value>, after: Option<Value>) -> Self {
        self.before = before;
        self.after = after;
        self
    }

    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
}

/// Writes the event in the caller's transaction; returns its sequence number.
pub async fn record(
    client: &impl GenericClient,
    actor: Option<&Actor>,
    event: Event<'_>,
) -> Result<i64, tokio_postgres::Error> {
    let metadata = json!({
        "before": event.before,
        "after": event.after,
        "channel": actor.map(|a| a.channel),
    });
    let user = actor.map(|a| a.sub.as_str());
    let row = client
        .query_one(
            &format!("INSERT INTO audit.critical_events
                 (organization_id, event_type, raffle_id, rsu_id, user_id, severity, description, metadata, retain_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                     now() + make_interval(days => (
                         SELECT (settings -> 'dataRetention' ->> 'criticalEventsDays')::int
                           FROM ({IN_FORCE}) c)))
             RETURNING sequence_number"),
            &[
                &event.organization_id,
                &event.event_type,
                &event.raffle_id,
                &event.rsu_id,
                &user,
                &event.severity.as_str(),
                &event.description,
                &metadata,
            ],
        )
        .await?;
    Ok(row.get(0))
}
