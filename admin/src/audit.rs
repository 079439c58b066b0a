//! The admin API's critical events, written by the catalog's one writer with the caller as
//! it names them.

pub use catalog::audit::{Event, Severity};
use tokio_postgres::GenericClient;

use crate::auth::Actor;

/// Writes the event in the caller's transaction; returns its sequence number.
pub async fn record(
    client: &impl GenericClient,
    actor: Option<&Actor>,
    event: Event<'_>,
) -> Result<i64, tokio_postgres::Error> {
    catalog::audit::record(client, actor.map(Actor::who).as_ref(), event).await
}
