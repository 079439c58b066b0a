//! A raffle's configuration as the admin API sets it: the one writer of a raffle's row in
//! `catalog.raffle_events` (with [`crate::lifecycle`] for its state and [`crate::counters`]
//! for its counts) and of its number ranges in `catalog.raffle_ranges`. The admin API checks
//! who asks and what the regulations allow; this writes what it decided.

use chrono::{DateTime, Utc};
use platform::problem::{Problem, from_db};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// A raffle to create, in draft, with its number ranges.
pub struct NewRaffle<'a> {
    pub organization_id: Uuid,
    pub venue_id: Uuid,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub event_identifier: &'a str,
    pub sales_start_time: DateTime<Utc>,
    pub sales_end_time: DateTime<Utc>,
    pub draw_time: DateTime<Utc>,
    pub currency: &'a str,
    pub jackpot_seed_minor: i64,
    pub jackpot_starting_minor: i64,
    pub revenue_calculation_method: &'a str,
    pub max_tickets: i64,
    pub ranges: Vec<NewRange<'a>>,
    pub created_by: &'a str,
}

/// A range of draw numbers: `online`, `rsu` or `reserve`, handed out in blocks of
/// `default_allocation_size`.
pub struct NewRange<'a> {
    pub range_type: &'a str,
    pub start_number: i64,
    pub end_number: i64,
    pub default_allocation_size: i32,
}

/// Creates the raffle and its ranges; returns its id. A broken constraint (an identifier
/// taken, overlapping ranges) is a problem that names it.
pub async fn create(client: &impl GenericClient, r: &NewRaffle<'_>) -> Result<Uuid, Problem> {
    let id: Uuid = client
        .query_one(
            "INSERT INTO catalog.raffle_events (organization_id, venue_id, name, description, event_identifier,
                 sales_start_time, sales_end_time, draw_time, currency, jackpot_seed_minor, jackpot_starting_minor,
                 revenue_calculation_method, max_tickets, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) RETURNING id",
            &[
                &r.organization_id,
                &r.venue_id,
                &r.name,
                &r.description,
                &r.event_identifier,
                &r.sales_start_time,
                &r.sales_end_time,
                &r.draw_time,
                &r.currency,
                &r.jackpot_seed_minor,
                &r.jackpot_starting_minor,
                &r.revenue_calculation_method,
                &r.max_tickets,
                &r.created_by,
            ],
        )
        .await
        .map_err(|e| from_db("creating the raffle", &e))?
        .get(0);
    for g in &r.ranges {
        client
            .execute(
                "INSERT INTO catalog.raffle_ranges (raffle_id, range_type, start_number, end_number, next_number, default_allocation_size)
                 VALUES ($1, $2, $3, $4, $3, $5)",
                &[&id, &g.range_type, &g.start_number, &g.end_number, &g.default_allocation_size],
            )
            .await
            .map_err(|e| from_db("adding the number ranges", &e))?;
    }
    Ok(id)
}

/// What a change of configuration sets; `None` keeps the current value (the times are
/// always given, as the admin API resolved them).
pub struct RaffleChanges<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub sales_start_time: DateTime<Utc>,
    pub sales_end_time: DateTime<Utc>,
    pub draw_time: DateTime<Utc>,
    pub jackpot_seed_minor: Option<i64>,
    pub jackpot_starting_minor: Option<i64>,
    pub revenue_calculation_method: Option<&'a str>,
    pub max_tickets: Option<i64>,
    pub updated_by: &'a str,
}

/// Changes the configuration of the organisation's raffle.
pub async fn update(
    client: &impl GenericClient,
    organization_id: Uuid,
    raffle_id: Uuid,
    c: &RaffleChanges<'_>,
) -> Result<(), Problem> {
    client
        .execute(
            "UPDATE catalog.raffle_events SET name = coalesce($3, name), description = coalesce($4, description),
                 sales_start_time = $5, sales_end_time = $6, draw_time = $7,
                 jackpot_seed_minor = coalesce($8, jackpot_seed_minor), jackpot_starting_minor = coalesce($9, jackpot_starting_minor),
                 revenue_calculation_method = coalesce($10, revenue_calculation_method), max_tickets = coalesce($11, max_tickets),
                 updated_at = now(), updated_by = $12
             WHERE id = $1 AND organization_id = $2",
            &[
                &raffle_id,
                &organization_id,
                &c.name,
                &c.description,
                &c.sales_start_time,
                &c.sales_end_time,
                &c.draw_time,
                &c.jackpot_seed_minor,
                &c.jackpot_starting_minor,
                &c.revenue_calculation_method,
                &c.max_tickets,
                &c.updated_by,
            ],
        )
        .await
        .map_err(|e| from_db("updating the raffle", &e))?;
    Ok(())
}

/// Records that finance confirmed the raffle's reconciliation: who, when, and the digest of the
/// report they confirmed. Once: returns false when it was confirmed before (the database
/// refuses to change a confirmation).
pub async fn confirm_reconciliation(
    client: &impl GenericClient,
    raffle: Uuid,
    by: &str,
    report_sha256: &str,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "UPDATE catalog.raffle_events
                SET reconciliation_confirmed_at = now(), reconciliation_confirmed_by = $2,
                    reconciliation_report_sha256 = $3, updated_at = now(), updated_by = $2
              WHERE id = $1 AND reconciliation_confirmed_at IS NULL
              RETURNING reconciliation_confirmed_at",
            &[&raffle, &by, &report_sha256],
        )
        .await?
        .map(|r| r.get(0)))
}
