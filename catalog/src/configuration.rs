//! The system configuration in force: of the versions in `catalog.system_configurations`, the
//! one whose period covers the moment. Every stage reads its settings here, so a new version
//! takes effect everywhere at once.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::GenericClient;

/// The version in force now, as SQL to select from (`FROM ({IN_FORCE}) c`): for statements
/// that need a setting inside themselves (a critical event's retention).
pub const IN_FORCE: &str = "SELECT * FROM catalog.system_configurations
      WHERE effective_from <= now() AND (effective_to IS NULL OR effective_to > now())";

/// The whole version in force at `at`, as JSON, if there is one.
pub async fn at(
    client: &impl GenericClient,
    at: DateTime<Utc>,
) -> Result<Option<Value>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT to_jsonb(c) FROM catalog.system_configurations c
              WHERE effective_from <= $1 AND (effective_to IS NULL OR effective_to > $1)",
            &[&at],
        )
        .await?
        .map(|r| r.get(0)))
}

/// A whole-number setting in force now, by its path in `settings` (`/rsu/apiKeyRotationDays`);
/// `None` when the setting is missing or not a whole number.
pub async fn setting_i64(
    client: &impl GenericClient,
    pointer: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let path: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let row = client
        .query_opt(
            &format!("SELECT settings #>> $1 FROM ({IN_FORCE}) c"),
            &[&path],
        )
        .await?;
    Ok(row
        .and_then(|r| r.get::<_, Option<String>>(0))
        .and_then(|v| v.parse().ok()))
}

/// Minutes an RSU's offline sale stays valid for upload after it was made.
pub const OFFLINE_SALE_EXPIRATION_MINUTES: &str = "/rsu/offlineSaleExpirationMinutes";
