//! The endpoints, routed by method and path. Every handler runs inside the request's one
//! transaction: it checks the caller's rights, validates, writes, and records the critical
//! event of the change in that same transaction, so nothing is partly written.

mod events;
mod jurisdictions;
mod orders;
mod organizations;
mod packages;
mod perks;
mod prizes;
mod raffles;
mod rsus;

use std::collections::HashMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;
use tokio_postgres::Transaction;
use uuid::Uuid;
use warp::http::{Method, StatusCode};

use crate::auth::Actor;
use crate::problem::Problem;

pub(crate) use platform::body::{opt_prose, opt_text, parse, text};

/// What a handler works with.
pub struct Ctx<'a, 'b> {
    pub tx: &'a Transaction<'b>,
    pub actor: &'a Actor,
    pub query: &'a HashMap<String, String>,
    pub body: &'a [u8],
}

pub type Reply = (StatusCode, Value);

pub fn ok(value: Value) -> Result<Reply, Problem> {
    Ok((StatusCode::OK, value))
}

pub fn created(value: Value) -> Result<Reply, Problem> {
    Ok((StatusCode::CREATED, value))
}

/// Records the creation's critical event (with the after image) and answers 201.
pub async fn created_with(
    ctx: &Ctx<'_, '_>,
    after: Value,
    event: crate::audit::Event<'_>,
) -> Result<Reply, Problem> {
    crate::audit::record(
        ctx.tx,
        Some(ctx.actor),
        event.change(None, Some(after.clone())),
    )
    .await?;
    created(after)
}

/// Records the change's critical event (before and after images) and answers 200.
pub async fn changed_with(
    ctx: &Ctx<'_, '_>,
    before: Value,
    after: Value,
    event: crate::audit::Event<'_>,
) -> Result<Reply, Problem> {
    crate::audit::record(
        ctx.tx,
        Some(ctx.actor),
        event.change(Some(before), Some(after.clone())),
    )
    .await?;
    ok(after)
}

pub async fn dispatch(ctx: &Ctx<'_, '_>, method: &Method, path: &[&str]) -> Result<Reply, Problem> {
    use organizations as orgs;
    let m = method.as_str();
    match (m, path) {
        ("GET", ["me"]) => orgs::me(ctx).await,
        ("POST", ["organizations"]) => orgs::create(ctx).await,
        ("GET", ["organizations", o]) => orgs::get(ctx, id(o, "organization_id")?).await,
        ("PATCH", ["organizations", o]) => orgs::update(ctx, id(o, "organization_id")?).await,
        ("POST", ["organizations", o, "addresses"]) => {
            orgs::create_address(ctx, id(o, "organization_id")?).await
        }
        ("GET", ["organizations", o, "addresses"]) => {
            orgs::list(ctx, id(o, "organization_id")?, orgs::Listing::Addresses).await
        }
        ("POST", ["organizations", o, "contacts"]) => {
            orgs::create_contact(ctx, id(o, "organization_id")?).await
        }
        ("GET", ["organizations", o, "contacts"]) => {
            orgs::list(ctx, id(o, "organization_id")?, orgs::Listing::Contacts).await
        }
        ("POST", ["organizations", o, "venues"]) => {
            orgs::create_venue(ctx, id(o, "organization_id")?).await
        }
        ("GET", ["organizations", o, "venues"]) => {
            orgs::list(ctx, id(o, "organization_id")?, orgs::Listing::Venues).await
        }
        ("GET", ["organizations", o, "members"]) => {
            orgs::list(ctx, id(o, "organization_id")?, orgs::Listing::Members).await
        }
        ("PUT", ["organizations", o, "members", sub]) => {
            orgs::put_member(ctx, id(o, "organization_id")?, sub).await
        }
        ("DELETE", ["organizations", o, "members", sub]) => {
            orgs::remove_member(ctx, id(o, "organization_id")?, sub).await
        }

        ("POST", ["jurisdictions"]) => jurisdictions::create(ctx).await,
        ("GET", ["jurisdictions"]) => jurisdictions::list(ctx).await,
        ("GET", ["jurisdictions", j]) => jurisdictions::get(ctx, id(j, "jurisdiction_id")?).await,
        ("POST", ["jurisdictions", j, "regulations"]) => {
            jurisdictions::create_regulation(ctx, id(j, "jurisdiction_id")?).await
        }
        ("GET", ["jurisdictions", j, "regulations"]) => {
            jurisdictions::list_regulations(ctx, id(j, "jurisdiction_id")?).await
        }
        ("GET", ["jurisdictions", j, "effective-rules"]) => {
            jurisdictions::effective(ctx, id(j, "jurisdiction_id")?).await
        }
        ("GET", ["system-configuration"]) => jurisdictions::current_configuration(ctx).await,
        ("POST", ["system-configuration"]) => jurisdictions::create_configuration(ctx).await,

        ("POST", ["organizations", o, "package-templates"]) => {
            packages::create_package_template(ctx, id(o, "organization_id")?).await
        }
        ("GET", ["organizations", o, "package-templates"]) => {
            orgs::list(
                ctx,
                id(o, "organization_id")?,
                orgs::Listing::PackageTemplates,
            )
            .await
        }
        ("POST", ["organizations", o, "prize-templates"]) => {
            prizes::create_prize_template(ctx, id(o, "organization_id")?).await
        }
        ("GET", ["organizations", o, "prize-templates"]) => {
            orgs::list(
                ctx,
                id(o, "organization_id")?,
                orgs::Listing::PrizeTemplates,
            )
            .await
        }

        ("POST", ["organizations", o, "raffles"]) => {
            raffles::create(ctx, id(o, "organization_id")?).await
        }
        ("GET", ["organizations", o, "raffles"]) => {
            raffles::list(ctx, id(o, "organization_id")?).await
        }
        ("GET", ["organizations", o, "raffles", r]) => {
            raffles::get(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("PATCH", ["organizations", o, "raffles", r]) => {
            raffles::update(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("POST", ["organizations", o, "raffles", r, "transitions"]) => {
            raffles::transition(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("POST", ["organizations", o, "raffles", r, "packages"]) => {
            packages::create_package(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("GET", ["organizations", o, "raffles", r, "packages"]) => {
            packages::list_packages(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("PATCH", ["organizations", o, "raffles", r, "packages", p]) => {
            packages::update_package(
                ctx,
                id(o, "organization_id")?,
                id(r, "raffle_id")?,
                id(p, "package_id")?,
            )
            .await
        }
        ("POST", ["organizations", o, "raffles", r, "prizes"]) => {
            prizes::create_prize(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("GET", ["organizations", o, "raffles", r, "prizes"]) => {
            prizes::list_prizes(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("POST", ["organizations", o, "raffles", r, "allocations"]) => {
            rsus::allocate(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("GET", ["organizations", o, "raffles", r, "allocations"]) => {
            rsus::list_allocations(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("POST", ["organizations", o, "allocations", a, "return"]) => {
            rsus::return_allocation(ctx, id(o, "organization_id")?, id(a, "allocation_id")?).await
        }

        ("POST", ["organizations", o, "perks"]) => {
            perks::create(ctx, id(o, "organization_id")?).await
        }
        ("GET", ["organizations", o, "perks"]) => {
            orgs::list(ctx, id(o, "organization_id")?, orgs::Listing::Perks).await
        }
        ("POST", ["organizations", o, "perks", p, "claims"]) => {
            perks::claim(ctx, id(o, "organization_id")?, id(p, "perk_id")?).await
        }

        ("GET", ["organizations", o, "orders"]) => {
            orders::search(ctx, id(o, "organization_id")?).await
        }
        ("GET", ["organizations", o, "orders", x, "messages"]) => {
            orders::messages(ctx, id(o, "organization_id")?, id(x, "order_id")?).await
        }
        ("POST", ["organizations", o, "orders", x, "resend"]) => {
            orders::resend(ctx, id(o, "organization_id")?, id(x, "order_id")?).await
        }
        ("POST", ["organizations", o, "rsus"]) => {
            rsus::create(ctx, id(o, "organization_id")?).await
        }
        ("GET", ["organizations", o, "rsus"]) => {
            orgs::list(ctx, id(o, "organization_id")?, orgs::Listing::Rsus).await
        }
        ("POST", ["organizations", o, "rsus", d, "api-keys"]) => {
            rsus::issue_key(ctx, id(o, "organization_id")?, id(d, "rsu_id")?).await
        }
        ("GET", ["organizations", o, "rsus", d, "api-keys"]) => {
            rsus::list_keys(ctx, id(o, "organization_id")?, id(d, "rsu_id")?).await
        }
        ("DELETE", ["organizations", o, "rsus", d, "api-keys", k]) => {
            rsus::revoke_key(
                ctx,
                id(o, "organization_id")?,
                id(d, "rsu_id")?,
                id(k, "key_id")?,
            )
            .await
        }

        ("GET", ["organizations", o, "critical-events"]) => {
            events::list(ctx, id(o, "organization_id")?).await
        }
        ("GET", ["organizations", o, "critical-events", "export"]) => {
            events::export(ctx, id(o, "organization_id")?).await
        }
        _ => Err(Problem::no_route(m, &path.join("/"))),
    }
}

/// A path segment that must be a UUID.
pub fn id(segment: &str, name: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(segment)
        .map_err(|_| Problem::invalid(name, format!("{segment:?} is not a UUID")))
}

/// A query parameter parsed as `T`, or the default.
pub fn query<T: FromStr>(ctx: &Ctx<'_, '_>, name: &str, default: T) -> Result<T, Problem> {
    match ctx.query.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| Problem::invalid(name, format!("{v:?} is not a valid value"))),
    }
}

pub fn currency(field: &str, value: &str) -> Result<String, Problem> {
    schemas::Currency::parse(value)
        .map(|c| c.to_string())
        .map_err(|e| Problem::invalid(field, e.to_string()))
}

pub fn money(field: &str, amount_minor: i64) -> Result<i64, Problem> {
    if amount_minor < 0 {
        return Err(Problem::invalid(
            field,
            "must be a non-negative integer of minor units (cents)",
        ));
    }
    let max = platform::config::amount_minor_max();
    if amount_minor > max {
        return Err(Problem::invalid(
            field,
            format!("must be at most {max} minor units (RAFFLE_AMOUNT_MINOR_MAX)"),
        ));
    }
    Ok(amount_minor)
}

/// A percentage given as a JSON number or string ("4.5"); exact, never through a float.
pub fn percent(field: &str, value: &Value) -> Result<Decimal, Problem> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => {
            return Err(Problem::invalid(
                field,
                "must be a number between 0 and 100",
            ));
        }
    };
    let d = Decimal::from_str_exact(text.trim())
        .or_else(|_| Decimal::from_scientific(text.trim()))
        .map_err(|_| Problem::invalid(field, format!("{text:?} is not a decimal number")))?;
    schemas::Percentage::new(d)
        .map(|p| p.get())
        .map_err(|e| Problem::invalid(field, e.to_string()))
}

pub fn positive(field: &str, value: i64, max: i64) -> Result<i64, Problem> {
    if value < 1 || value > max {
        return Err(Problem::invalid(
            field,
            format!("must be between 1 and {max}"),
        ));
    }
    Ok(value)
}

/// The row of `table` with `id` as JSON (`to_jsonb`), or 404 naming it.
pub async fn row_json(
    tx: &Transaction<'_>,
    table: &str,
    id: Uuid,
    what: &str,
) -> Result<Value, Problem> {
    tx.query_opt(
        &format!("SELECT to_jsonb(t) FROM {table} t WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|r| r.get(0))
    .ok_or_else(|| Problem::not_found(format!("{what} {id}")))
}

/// Rows of a query returning one jsonb column, as a JSON array.
pub async fn rows_json(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Value, Problem> {
    let rows = tx.query(sql, params).await?;
    Ok(Value::Array(
        rows.iter().map(|r| r.get::<_, Value>(0)).collect(),
    ))
}

/// The template `template_id` of this organisation (its row from `select`, whose first two
/// columns are name and description), refused when it is another organisation's.
pub(crate) async fn own_template(
    ctx: &Ctx<'_, '_>,
    select: &str,
    template_id: Option<Uuid>,
    org: Uuid,
    what: &str,
) -> Result<Option<tokio_postgres::Row>, Problem> {
    let Some(t) = template_id else {
        return Ok(None);
    };
    ctx.tx
        .query_opt(
            &format!("{select} WHERE id = $1 AND organization_id = $2"),
            &[&t, &org],
        )
        .await?
        .map(Some)
        .ok_or_else(|| {
            Problem::invalid(
                "template_id",
                format!("{what} {t} is not this organization's"),
            )
        })
}

/// Name and description from the request, or else from the template.
pub(crate) fn name_and_description(
    name: &Option<String>,
    description: &Option<String>,
    template: Option<&tokio_postgres::Row>,
) -> Result<(String, Option<String>), Problem> {
    let name = name
        .clone()
        .or_else(|| template.map(|t| t.get(0)))
        .ok_or_else(|| Problem::invalid("name", "is required"))?;
    Ok((
        name,
        description
            .clone()
            .or_else(|| template.and_then(|t| t.get(1))),
    ))
}
