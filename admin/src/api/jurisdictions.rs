//! Jurisdictions (a hierarchy), their regulations, and the versioned system configuration:
//! shared reference data that platform administrators keep and everyone may read.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Ctx, Reply, created, ok, parse, query, row_json, rows_json, text};
use crate::audit::{self, Event};
use crate::auth::require_platform_admin;
use crate::problem::Problem;
use catalog::regulations;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JurisdictionInput {
    name: String,
    code: String,
    #[serde(rename = "type")]
    kind: String,
    parent_jurisdiction_id: Option<Uuid>,
}

pub async fn create(ctx: &Ctx<'_, '_>) -> Result<Reply, Problem> {
    require_platform_admin(ctx.actor)?;
    let j: JurisdictionInput = parse(ctx.body)?;
    if !["country", "state", "province", "local"].contains(&j.kind.as_str()) {
        return Err(Problem::invalid(
            "type",
            format!(
                "{:?} is not one of: country, state, province, local",
                j.kind
            ),
        ));
    }
    let code = text("code", &j.code, 40)?;
    if !code
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Problem::invalid(
            "code",
            "must be A-Z, 0-9 and '-', e.g. SF-CA-US",
        ));
    }
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.jurisdictions (name, code, jurisdiction_type, parent_jurisdiction_id, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING to_jsonb(jurisdictions.*)",
            &[&text("name", &j.name, 200)?, &code, &j.kind, &j.parent_jurisdiction_id, &ctx.actor.sub],
        )
        .await
        .map_err(|e| crate::problem::from_db("creating the jurisdiction", &e))?;
    let after: Value = row.get(0);
    super::created_with(
        ctx,
        after,
        Event::info(
            None,
            "JURISDICTION_CREATED",
            format!("jurisdiction {code} created"),
        ),
    )
    .await
}

pub async fn list(ctx: &Ctx<'_, '_>) -> Result<Reply, Problem> {
    ok(rows_json(
        ctx.tx,
        "SELECT to_jsonb(j) FROM catalog.jurisdictions j ORDER BY code",
        &[],
    )
    .await?)
}

pub async fn get(ctx: &Ctx<'_, '_>, id: Uuid) -> Result<Reply, Problem> {
    ok(row_json(ctx.tx, "catalog.jurisdictions", id, "jurisdiction").await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegulationInput {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    value: Value,
    effective_date: DateTime<Utc>,
    expiration_date: Option<DateTime<Utc>>,
    overridable: bool,
}

/// Adds a regulation. A child jurisdiction cannot loosen a parent's non-overridable rule.
pub async fn create_regulation(ctx: &Ctx<'_, '_>, jurisdiction: Uuid) -> Result<Reply, Problem> {
    require_platform_admin(ctx.actor)?;
    let r: RegulationInput = parse(ctx.body)?;
    let value = regulations::parse(&r.kind, &r.value)?;
    if r.expiration_date.is_some_and(|e| e <= r.effective_date) {
        return Err(Problem::invalid(
            "expiration_date",
            "must be after effective_date",
        ));
    }
    row_json(
        ctx.tx,
        "catalog.jurisdictions",
        jurisdiction,
        "jurisdiction",
    )
    .await?;
    // The parent's rules in force when this one starts, and now.
    let parent: Option<Uuid> = ctx
        .tx
        .query_one(
            "SELECT parent_jurisdiction_id FROM catalog.jurisdictions WHERE id = $1",
            &[&jurisdiction],
        )
        .await?
        .get(0);
    if let Some(parent) = parent {
        let binding = ctx
            .tx
            .query(
                &format!(
                    "{}
                 SELECT r.id, r.value FROM chain c JOIN catalog.jurisdiction_regulations r ON r.jurisdiction_id = c.id
                  WHERE r.regulation_type = $2 AND NOT r.overridable
                    AND (r.expiration_date IS NULL OR r.expiration_date > $3)
                    AND ($4::timestamptz IS NULL OR r.effective_date < $4)",
                    regulations::JURISDICTION_CHAIN
                ),
                &[&parent, &r.kind, &r.effective_date, &r.expiration_date],
            )
            .await?;
        for row in binding {
            let (id, parent_value): (Uuid, Value) = (row.get(0), row.get(1));
            let parent_value = regulations::parse(&r.kind, &parent_value)?;
            let looser = regulations::loosens(&value, &parent_value)
                .map_err(|e| Problem::invalid("value", e))?;
            if looser {
                return Err(Problem::conflict(
                    "regulation-loosens-parent",
                    format!("a {} of {} is looser than the parent's non-overridable regulation {id} ({})", r.kind, r.value, serde_json::to_string(&parent_value).unwrap_or_default()),
                )
                .with_field("value"));
            }
        }
    }
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.jurisdiction_regulations (jurisdiction_id, name, regulation_type, value, effective_date,
                 expiration_date, overridable)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING to_jsonb(jurisdiction_regulations.*)",
            &[&jurisdiction, &text("name", &r.name, 200)?, &r.kind, &r.value, &r.effective_date, &r.expiration_date, &r.overridable],
        )
        .await?;
    let after: Value = row.get(0);
    super::created_with(
        ctx,
        after,
        Event::info(
            None,
            "REGULATION_CREATED",
            format!("{} regulation added to jurisdiction {jurisdiction}", r.kind),
        ),
    )
    .await
}

pub async fn list_regulations(ctx: &Ctx<'_, '_>, jurisdiction: Uuid) -> Result<Reply, Problem> {
    ok(rows_json(
        ctx.tx,
        "SELECT to_jsonb(r) FROM catalog.jurisdiction_regulations r WHERE jurisdiction_id = $1 ORDER BY regulation_type, effective_date",
        &[&jurisdiction],
    )
    .await?)
}

/// The rules in force at `?at=` (default now), inherited and clamped.
pub async fn effective(ctx: &Ctx<'_, '_>, jurisdiction: Uuid) -> Result<Reply, Problem> {
    row_json(
        ctx.tx,
        "catalog.jurisdictions",
        jurisdiction,
        "jurisdiction",
    )
    .await?;
    let at: DateTime<Utc> = query(ctx, "at", Utc::now())?;
    let rules = regulations::effective(ctx.tx, jurisdiction, at).await?;
    ok(json!({"jurisdiction_id": jurisdiction, "at": at, "rules": rules}))
}

pub async fn current_configuration(ctx: &Ctx<'_, '_>) -> Result<Reply, Problem> {
    let at: DateTime<Utc> = query(ctx, "at", Utc::now())?;
    let configuration = catalog::configuration::at(ctx.tx, at)
        .await?
        .ok_or_else(|| Problem::not_found(format!("system configuration in effect at {at}")))?;
    ok(configuration)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigurationInput {
    version: String,
    effective_from: DateTime<Utc>,
    settings: Value,
}

/// Checks the settings the platform reads: every key present with a sensible value.
fn check_settings(s: &Value) -> Result<(), Problem> {
    let positive_ints = [
        "/verification/scheduleIntervalHours",
        "/dataRetention/criticalEventsDays",
        "/dataRetention/ticketDataDays",
        "/rsu/defaultMaxOfflineTickets",
        "/rsu/defaultSyncIntervalMinutes",
        "/rsu/apiKeyRotationDays",
        "/rsu/validationNumberBlockSize",
        "/rsu/offlineSaleExpirationMinutes",
        "/ticketGeneration/batchSize",
    ];
    for pointer in positive_ints {
        let field = format!("settings{}", pointer.replace('/', "."));
        match s.pointer(pointer).and_then(Value::as_i64) {
            Some(v) if (1..=1_000_000).contains(&v) => {}
            _ => {
                return Err(Problem::invalid(
                    &field,
                    "must be a whole number between 1 and 1000000",
                ));
            }
        }
    }
    if s.pointer("/verification/requiredBeforeDraw")
        .and_then(Value::as_bool)
        .is_none()
    {
        return Err(Problem::invalid(
            "settings.verification.requiredBeforeDraw",
            "must be true or false",
        ));
    }
    match s
        .pointer("/ticketGeneration/strategy")
        .and_then(Value::as_str)
    {
        Some("just_in_time" | "pre_generated") => Ok(()),
        _ => Err(Problem::invalid(
            "settings.ticketGeneration.strategy",
            "must be one of: just_in_time, pre_generated",
        )),
    }
}

/// A new version takes effect at `effective_from`; the version in force until then ends there.
pub async fn create_configuration(ctx: &Ctx<'_, '_>) -> Result<Reply, Problem> {
    require_platform_admin(ctx.actor)?;
    let c: ConfigurationInput = parse(ctx.body)?;
    check_settings(&c.settings)?;
    let before: Option<Value> = ctx
        .tx
        .query_opt(
            "UPDATE catalog.system_configurations SET effective_to = $1
              WHERE effective_to IS NULL AND effective_from < $1 RETURNING to_jsonb(system_configurations.*)",
            &[&c.effective_from],
        )
        .await?
        .map(|r| r.get(0));
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.system_configurations (version, effective_from, settings, created_by)
             VALUES ($1, $2, $3, $4) RETURNING to_jsonb(system_configurations.*)",
            &[&text("version", &c.version, 40)?, &c.effective_from, &c.settings, &ctx.actor.sub],
        )
        .await
        .map_err(|e| crate::problem::from_db("adding the configuration version", &e))?;
    let after: Value = row.get(0);
    audit::record(
        ctx.tx,
        Some(ctx.actor),
        Event::info(
            None,
            "SYSTEM_CONFIGURATION_CHANGED",
            format!(
                "system configuration {} effective {}",
                c.version, c.effective_from
            ),
        )
        .change(before, Some(after.clone())),
    )
    .await?;
    created(after)
}
