//! Organisations, their addresses, contacts, venues and members.

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    Ctx, Reply, currency, ok, opt_prose, opt_text, parse, percent, positive, row_json, rows_json,
    text,
};
use crate::audit::{self, Event};
use crate::auth::{Role, require, rights};
use crate::problem::Problem;

pub async fn me(ctx: &Ctx<'_, '_>) -> Result<Reply, Problem> {
    let memberships = rows_json(
        ctx.tx,
        "SELECT jsonb_build_object('organization_id', m.organization_id, 'organization_name', o.name,
                                   'role', m.role, 'is_default', m.is_default, 'joined_at', m.joined_at)
           FROM catalog.organization_memberships m JOIN catalog.organizations o ON o.id = m.organization_id
          WHERE m.user_id = $1 ORDER BY o.name",
        &[&ctx.actor.user_id],
    )
    .await?;
    ok(json!({ "user": ctx.actor, "memberships": memberships }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    street: String,
    city: String,
    state: Option<String>,
    zip_code: Option<String>,
    country: String,
}

/// A new address of organisation `org` (only its own row, venues and contacts may refer to it).
async fn insert_address(
    ctx: &Ctx<'_, '_>,
    org: Uuid,
    a: &AddressInput,
    field: &str,
) -> Result<Uuid, Problem> {
    let street = text(&format!("{field}.street"), &a.street, 200)?;
    let city = text(&format!("{field}.city"), &a.city, 100)?;
    if a.country.len() != 2 || !a.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Problem::invalid(
            &format!("{field}.country"),
            "must be an ISO 3166 two-letter code, e.g. US",
        ));
    }
    let state = opt_text(&format!("{field}.state"), &a.state, 100)?;
    let zip = opt_text(&format!("{field}.zip_code"), &a.zip_code, 20)?;
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.addresses (street, city, state, zip_code, country, organization_id)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&street, &city, &state, &zip, &a.country, &org],
        )
        .await?;
    Ok(row.get(0))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatingFee {
    #[serde(rename = "type")]
    kind: String,
    percent: Option<Value>,
    amount_minor: Option<i64>,
}

/// (type, percent, amount) of an operating fee, validated.
fn operating_fee(
    fee: &OperatingFee,
) -> Result<(String, Option<rust_decimal::Decimal>, Option<i64>), Problem> {
    match (fee.kind.as_str(), &fee.percent, fee.amount_minor) {
        ("percentage", Some(p), None) => Ok((
            "percentage".into(),
            Some(percent("operating_fee.percent", p)?),
            None,
        )),
        ("fixed", None, Some(a)) => Ok((
            "fixed".into(),
            None,
            Some(super::money("operating_fee.amount_minor", a)?),
        )),
        ("percentage" | "fixed", _, _) => Err(Problem::invalid(
            "operating_fee",
            "a percentage fee has only `percent`, a fixed fee only `amount_minor`",
        )),
        (other, _, _) => Err(Problem::invalid(
            "operating_fee.type",
            format!("{other:?} is not one of: percentage, fixed"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrganizationInput {
    name: String,
    description: Option<String>,
    license_number: Option<String>,
    primary_currency: String,
    contact_email: Option<String>,
    contact_phone: Option<String>,
    address: Option<AddressInput>,
    default_revenue_calculation_method: Option<String>,
    tax_rate_percent: Option<Value>,
    tax_included: Option<bool>,
    rsu_validation_block_size_default: Option<i64>,
    rsu_validation_number_prefix: Option<String>,
    rsu_offline_sync_timeout_minutes: Option<i64>,
    operating_fee: OperatingFee,
}

/// (tax rate percent, validation block size, offline sync timeout minutes); `None` keeps the
/// default or the current value.
type Settings = (Option<rust_decimal::Decimal>, Option<i32>, Option<i32>);

/// The tax rate and RSU settings an organisation is created or updated with, validated.
fn settings(
    tax_rate_percent: &Option<Value>,
    block_size: Option<i64>,
    sync_timeout_minutes: Option<i64>,
) -> Result<Settings, Problem> {
    let tax = tax_rate_percent
        .as_ref()
        .map(|v| percent("tax_rate_percent", v))
        .transpose()?;
    let block = block_size
        .map(|v| positive("rsu_validation_block_size_default", v, 100_000).map(|v| v as i32))
        .transpose()?;
    let timeout = sync_timeout_minutes
        .map(|v| positive("rsu_offline_sync_timeout_minutes", v, 10_080).map(|v| v as i32))
        .transpose()?;
    Ok((tax, block, timeout))
}

fn revenue_method(field: &str, v: &Option<String>) -> Result<Option<String>, Problem> {
    match v.as_deref() {
        None => Ok(None),
        Some(m @ ("gross_revenue" | "net_revenue")) => Ok(Some(m.to_owned())),
        Some(other) => Err(Problem::invalid(
            field,
            format!("{other:?} is not one of: gross_revenue, net_revenue"),
        )),
    }
}

fn validation_prefix(v: &Option<String>) -> Result<Option<String>, Problem> {
    match v {
        Some(p)
            if !(1..=12).contains(&p.len())
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) =>
        {
            Err(Problem::invalid(
                "rsu_validation_number_prefix",
                "must be 1-12 characters of A-Z and 0-9",
            ))
        }
        other => Ok(other.clone()),
    }
}

/// Creates an organisation; its creator becomes its first admin.
pub async fn create(ctx: &Ctx<'_, '_>) -> Result<Reply, Problem> {
    let input: OrganizationInput = parse(ctx.body)?;
    let name = text("name", &input.name, 200)?;
    let currency = currency("primary_currency", &input.primary_currency)?;
    let (fee_type, fee_percent, fee_minor) = operating_fee(&input.operating_fee)?;
    let (tax, block, timeout) = settings(
        &input.tax_rate_percent,
        input.rsu_validation_block_size_default,
        input.rsu_offline_sync_timeout_minutes,
    )?;
    let method = revenue_method(
        "default_revenue_calculation_method",
        &input.default_revenue_calculation_method,
    )?;
    let prefix = validation_prefix(&input.rsu_validation_number_prefix)?;
    let by = &ctx.actor.sub;
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.organizations (name, description, license_number, primary_currency, contact_email,
                 contact_phone, address_id, default_revenue_calculation_method, tax_rate_percent, tax_included,
                 rsu_validation_block_size_default, rsu_validation_number_prefix, rsu_offline_sync_timeout_minutes,
                 operating_fee_type, operating_fee_percent, operating_fee_minor, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, 'gross_revenue'), coalesce($9::numeric, 0), coalesce($10, false),
                 coalesce($11, 100), coalesce($12, 'RSU'), coalesce($13, 30), $14, $15, $16, $17, $17)
             RETURNING id",
            &[
                &name,
                &opt_prose("description", &input.description, 2000)?,
                &opt_text("license_number", &input.license_number, 100)?,
                &currency,
                &opt_text("contact_email", &input.contact_email, 254)?,
                &opt_text("contact_phone", &input.contact_phone, 40)?,
                &None::<Uuid>,
                &method,
                &tax,
                &input.tax_included,
                &block,
                &prefix,
                &timeout,
                &fee_type,
                &fee_percent,
                &fee_minor,
                by,
            ],
        )
        .await?;
    let id: Uuid = row.get(0);
    // The organisation's own address belongs to it, so it is written once the row exists.
    if let Some(a) = &input.address {
        let address = insert_address(ctx, id, a, "address").await?;
        ctx.tx
            .execute(
                "UPDATE catalog.organizations SET address_id = $2 WHERE id = $1",
                &[&id, &address],
            )
            .await?;
    }
    ctx.tx
        .execute(
            "INSERT INTO catalog.organization_memberships (user_id, organization_id, role, is_default)
             VALUES ($1, $2, 'admin', NOT EXISTS (SELECT 1 FROM catalog.organization_memberships WHERE user_id = $1 AND is_default))",
            &[&ctx.actor.user_id, &id],
        )
        .await?;
    let after = row_json(ctx.tx, "catalog.organizations", id, "organization").await?;
    super::created_with(
        ctx,
        after,
        Event::info(
            Some(id),
            "ORGANIZATION_CREATED",
            format!("organization '{name}' created; {by} is its admin"),
        ),
    )
    .await
}

pub async fn get(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::READ_SETUP).await?;
    ok(row_json(ctx.tx, "catalog.organizations", org, "organization").await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrganizationPatch {
    name: Option<String>,
    description: Option<String>,
    license_number: Option<String>,
    contact_email: Option<String>,
    contact_phone: Option<String>,
    default_revenue_calculation_method: Option<String>,
    tax_rate_percent: Option<Value>,
    tax_included: Option<bool>,
    rsu_validation_block_size_default: Option<i64>,
    rsu_validation_number_prefix: Option<String>,
    rsu_offline_sync_timeout_minutes: Option<i64>,
    operating_fee: Option<OperatingFee>,
    default_venue_id: Option<Uuid>,
    is_active: Option<bool>,
}

pub async fn update(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let p: OrganizationPatch = parse(ctx.body)?;
    let before = row_json(ctx.tx, "catalog.organizations", org, "organization").await?;
    let fee = p.operating_fee.as_ref().map(operating_fee).transpose()?;
    let (fee_type, fee_percent, fee_minor) = match &fee {
        Some((t, pc, m)) => (Some(t.clone()), *pc, *m),
        None => (None, None, None),
    };
    let (tax, block, timeout) = settings(
        &p.tax_rate_percent,
        p.rsu_validation_block_size_default,
        p.rsu_offline_sync_timeout_minutes,
    )?;
    let name = p
        .name
        .as_deref()
        .map(|n| text("name", n, 200))
        .transpose()?;
    ctx.tx
        .execute(
            "UPDATE catalog.organizations SET
                 name = coalesce($2, name), description = coalesce($3, description),
                 license_number = coalesce($4, license_number), contact_email = coalesce($5, contact_email),
                 contact_phone = coalesce($6, contact_phone),
                 default_revenue_calculation_method = coalesce($7, default_revenue_calculation_method),
                 tax_rate_percent = coalesce($8, tax_rate_percent), tax_included = coalesce($9, tax_included),
                 rsu_validation_block_size_default = coalesce($10, rsu_validation_block_size_default),
                 rsu_validation_number_prefix = coalesce($11, rsu_validation_number_prefix),
                 rsu_offline_sync_timeout_minutes = coalesce($12, rsu_offline_sync_timeout_minutes),
                 operating_fee_type = coalesce($13, operating_fee_type),
                 operating_fee_percent = CASE WHEN $13::text IS NULL THEN operating_fee_percent ELSE $14 END,
                 operating_fee_minor = CASE WHEN $13::text IS NULL THEN operating_fee_minor ELSE $15 END,
                 default_venue_id = coalesce($16, default_venue_id), is_active = coalesce($17, is_active),
                 updated_at = now(), updated_by = $18
             WHERE id = $1",
            &[
                &org,
                &name,
                &opt_prose("description", &p.description, 2000)?,
                &opt_text("license_number", &p.license_number, 100)?,
                &opt_text("contact_email", &p.contact_email, 254)?,
                &opt_text("contact_phone", &p.contact_phone, 40)?,
                &revenue_method("default_revenue_calculation_method", &p.default_revenue_calculation_method)?,
                &tax,
                &p.tax_included,
                &block,
                &validation_prefix(&p.rsu_validation_number_prefix)?,
                &timeout,
                &fee_type,
                &fee_percent,
                &fee_minor,
                &p.default_venue_id,
                &p.is_active,
                &ctx.actor.sub,
            ],
        )
        .await
        .map_err(|e| crate::problem::from_db("updating the organization", &e))?;
    let after = row_json(ctx.tx, "catalog.organizations", org, "organization").await?;
    super::changed_with(
        ctx,
        before,
        after,
        Event::info(
            Some(org),
            "ORGANIZATION_UPDATED",
            "organization settings changed",
        ),
    )
    .await
}

pub async fn create_address(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let input: AddressInput = parse(ctx.body)?;
    let id = insert_address(ctx, org, &input, "address").await?;
    let after = row_json(ctx.tx, "catalog.addresses", id, "address").await?;
    super::created_with(
        ctx,
        after,
        Event::info(Some(org), "ADDRESS_CREATED", "address added"),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactInput {
    name: String,
    email: Option<String>,
    phone: Option<String>,
    address_id: Option<Uuid>,
}

pub async fn create_contact(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let c: ContactInput = parse(ctx.body)?;
    if let Some(address) = c.address_id {
        let own = ctx
            .tx
            .query_opt(
                "SELECT 1 FROM catalog.addresses WHERE id = $1 AND organization_id = $2",
                &[&address, &org],
            )
            .await?;
        if own.is_none() {
            // Another organisation's address looks the same as none at all.
            return Err(Problem::invalid(
                "address_id",
                format!("organization {org} has no address {address}"),
            ));
        }
    }
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.contacts (organization_id, name, email, phone, address_id) VALUES ($1, $2, $3, $4, $5)
             RETURNING to_jsonb(contacts.*)",
            &[&org, &text("name", &c.name, 200)?, &opt_text("email", &c.email, 254)?, &opt_text("phone", &c.phone, 40)?, &c.address_id],
        )
        .await
        .map_err(|e| crate::problem::from_db("adding the contact", &e))?;
    let after: Value = row.get(0);
    super::created_with(
        ctx,
        after,
        Event::info(Some(org), "CONTACT_CREATED", "contact added"),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VenueInput {
    name: String,
    description: Option<String>,
    address: Option<AddressInput>,
    capacity: Option<i32>,
    #[serde(default)]
    amenities: Vec<String>,
    jurisdiction_id: Uuid,
    accepted_currencies: Vec<String>,
    timezone: String,
}

pub async fn create_venue(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let v: VenueInput = parse(ctx.body)?;
    if v.accepted_currencies.is_empty() {
        return Err(Problem::invalid(
            "accepted_currencies",
            "must list at least one currency",
        ));
    }
    let currencies = v
        .accepted_currencies
        .iter()
        .enumerate()
        .map(|(i, c)| currency(&format!("accepted_currencies[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    let tz = text("timezone", &v.timezone, 64)?;
    // The IANA zone must be one Postgres knows, so reports can use it.
    let known = ctx
        .tx
        .query_opt("SELECT 1 FROM pg_timezone_names WHERE name = $1", &[&tz])
        .await?
        .is_some();
    if !known {
        return Err(Problem::invalid(
            "timezone",
            format!("{tz:?} is not an IANA time zone, e.g. America/Toronto"),
        ));
    }
    if v.capacity.is_some_and(|c| c < 0) {
        return Err(Problem::invalid("capacity", "must not be negative"));
    }
    let address_id = match &v.address {
        Some(a) => Some(insert_address(ctx, org, a, "address").await?),
        None => None,
    };
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.venues (organization_id, name, description, address_id, capacity, amenities,
                 jurisdiction_id, accepted_currencies, timezone, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING to_jsonb(venues.*)",
            &[
                &org,
                &text("name", &v.name, 200)?,
                &opt_prose("description", &v.description, 2000)?,
                &address_id,
                &v.capacity,
                &v.amenities,
                &v.jurisdiction_id,
                &currencies,
                &tz,
                &ctx.actor.sub,
            ],
        )
        .await
        .map_err(|e| crate::problem::from_db("adding the venue", &e))?;
    let after: Value = row.get(0);
    super::created_with(
        ctx,
        after,
        Event::info(
            Some(org),
            "VENUE_CREATED",
            format!("venue '{}' added", v.name),
        ),
    )
    .await
}

pub enum Listing {
    Addresses,
    Contacts,
    Venues,
    Members,
    PackageTemplates,
    PrizeTemplates,
    Perks,
    Rsus,
}

pub async fn list(ctx: &Ctx<'_, '_>, org: Uuid, what: Listing) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::READ_SETUP).await?;
    let sql = match what {
        Listing::Addresses => {
            "SELECT to_jsonb(a) FROM catalog.addresses a WHERE a.organization_id = $1 ORDER BY a.created_at"
        }
        Listing::Contacts => "SELECT to_jsonb(c) FROM catalog.contacts c WHERE organization_id = $1 ORDER BY created_at",
        Listing::Venues => "SELECT to_jsonb(v) FROM catalog.venues v WHERE organization_id = $1 ORDER BY name",
        Listing::Members => {
            "SELECT jsonb_build_object('sub', u.cognito_sub, 'display_name', u.display_name, 'role', m.role,
                                       'joined_at', m.joined_at, 'is_active', u.is_active)
               FROM catalog.organization_memberships m JOIN catalog.users u ON u.id = m.user_id
              WHERE m.organization_id = $1 ORDER BY u.cognito_sub"
        }
        Listing::PackageTemplates => {
            "SELECT to_jsonb(t) FROM catalog.package_templates t WHERE organization_id = $1 ORDER BY display_order, name"
        }
        Listing::PrizeTemplates => "SELECT to_jsonb(t) FROM catalog.prize_templates t WHERE organization_id = $1 ORDER BY name",
        Listing::Perks => "SELECT to_jsonb(p) FROM catalog.perks p WHERE organization_id = $1 ORDER BY name",
        Listing::Rsus => "SELECT to_jsonb(r) FROM catalog.rsus r WHERE organization_id = $1 ORDER BY rsu_number",
    };
    ok(rows_json(ctx.tx, sql, &[&org]).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberInput {
    role: String,
    display_name: Option<String>,
}

/// Adds a user (by token subject) to the organisation with a role, or changes their role.
pub async fn put_member(ctx: &Ctx<'_, '_>, org: Uuid, sub: &str) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let input: MemberInput = parse(ctx.body)?;
    let role = Role::parse(&input.role).ok_or_else(|| {
        Problem::invalid(
            "role",
            format!(
                "{:?} is not one of: admin, operator, finance, auditor",
                input.role
            ),
        )
    })?;
    let sub = text("sub", sub, 255)?;
    let user = crate::auth::resolve_actor(
        ctx.tx,
        &sub,
        input.display_name.as_deref(),
        ctx.actor.channel,
    )
    .await?;
    let before: Option<String> = ctx
        .tx
        .query_opt(
            "SELECT role FROM catalog.organization_memberships WHERE user_id = $1 AND organization_id = $2",
            &[&user.user_id, &org],
        )
        .await?
        .map(|r| r.get(0));
    if before.as_deref() == Some("admin") && role != Role::Admin {
        ensure_another_admin(ctx, org, user.user_id).await?;
    }
    ctx.tx
        .execute(
            "INSERT INTO catalog.organization_memberships (user_id, organization_id, role) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, organization_id) DO UPDATE SET role = EXCLUDED.role",
            &[&user.user_id, &org, &role.as_str()],
        )
        .await?;
    let after = json!({"sub": sub, "role": role});
    audit::record(
        ctx.tx,
        Some(ctx.actor),
        Event::info(
            Some(org),
            "MEMBER_ROLE_SET",
            format!("{sub} is now {} of the organization", role.as_str()),
        )
        .change(
            before.map(|r| json!({"sub": sub, "role": r})),
            Some(after.clone()),
        ),
    )
    .await?;
    ok(after)
}

async fn ensure_another_admin(ctx: &Ctx<'_, '_>, org: Uuid, leaving: Uuid) -> Result<(), Problem> {
    let others: i64 = ctx
        .tx
        .query_one(
            "SELECT count(*) FROM catalog.organization_memberships WHERE organization_id = $1 AND role = 'admin' AND user_id <> $2",
            &[&org, &leaving],
        )
        .await?
        .get(0);
    if others == 0 {
        return Err(Problem::conflict(
            "last-admin",
            "an organization keeps at least one admin",
        ));
    }
    Ok(())
}

pub async fn remove_member(ctx: &Ctx<'_, '_>, org: Uuid, sub: &str) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let row = ctx
        .tx
        .query_opt(
            "SELECT m.user_id, m.role FROM catalog.organization_memberships m JOIN catalog.users u ON u.id = m.user_id
              WHERE m.organization_id = $1 AND u.cognito_sub = $2",
            &[&org, &sub],
        )
        .await?
        .ok_or_else(|| Problem::not_found(format!("member {sub} of organization {org}")))?;
    let (user_id, role): (Uuid, String) = (row.get(0), row.get(1));
    if role == "admin" {
        ensure_another_admin(ctx, org, user_id).await?;
    }
    ctx.tx
        .execute("DELETE FROM catalog.organization_memberships WHERE organization_id = $1 AND user_id = $2", &[&org, &user_id])
        .await?;
    audit::record(
        ctx.tx,
        Some(ctx.actor),
        Event::info(
            Some(org),
            "MEMBER_REMOVED",
            format!("{sub} ({role}) removed from the organization"),
        )
        .change(Some(json!({"sub": sub, "role": role})), None),
    )
    .await?;
    ok(json!({"removed": sub}))
}
