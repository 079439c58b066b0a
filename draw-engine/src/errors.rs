//! How the draw engine fails and what it leaves on the trail: refusals with a stable code,
//! failures with their cause, and the critical events it writes through `catalog::audit`.

use schemas::DrawRefusal;
use tokio_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    /// The draw (or claim) cannot happen; `code` is a [`DrawRefusal`]'s published code,
    /// `reason` names the figures.
    #[error("refused ({code}): {reason}")]
    Refused { code: &'static str, reason: String },
    /// A drill: the run stopped on purpose after the prizes it was told to record.
    #[error("interrupted after {prizes_recorded} prizes; run the draw again to resume")]
    Interrupted { prizes_recorded: usize },
    /// Something broke; the failure keeps its cause.
    #[error("draw failed: {0}")]
    Failed(#[source] platform::Failure),
}

pub(crate) fn refused(refusal: DrawRefusal, reason: impl Into<String>) -> DrawError {
    DrawError::Refused {
        code: refusal.code(),
        reason: reason.into(),
    }
}

pub(crate) fn failed(e: impl std::error::Error + Send + Sync + 'static) -> DrawError {
    DrawError::Failed(platform::Failure::of(e))
}

/// A failure with no error under it: an invariant that does not hold, said in words.
pub(crate) fn broken(text: impl Into<String>) -> DrawError {
    DrawError::Failed(platform::Failure::new(text))
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
            DrawError::Failed(platform::Failure::during(
                &format!("recording the critical event {event_type}"),
                e,
            ))
        })
}
