//! The endpoints, routed by method and path. Every handler runs inside the request's one
//! transaction: it checks the caller's rights, validates, writes, and records the critical
//! event of the change in that same transaction, so nothing is partly written.

mod catalog;
mod events;
mod jurisdictions;
mod organizations;
mod perks;
mod raffles;
mod rsus;

use std::collections::HashMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_postgres::Transaction;
use uuid::Uuid;
use warp::http::{Method, StatusCode};

use crate::auth::Actor;
use crate::problem::Problem;

pub use catalog::check_package_price;
pub use raffles::close_due_raffles;
pub use rsus::{authenticate_rsu, device_allocate, device_return, key_hash};

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
            catalog::create_package_template(ctx, id(o, "organization_id")?).await
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
            catalog::create_prize_template(ctx, id(o, "organization_id")?).await
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
            catalog::create_package(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("GET", ["organizations", o, "raffles", r, "packages"]) => {
            catalog::list_packages(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("PATCH", ["organizations", o, "raffles", r, "packages", p]) => {
            catalog::update_package(
                ctx,
                id(o, "organization_id")?,
                id(r, "raffle_id")?,
                id(p, "package_id")?,
            )
            .await
        }
        ("POST", ["organizations", o, "raffles", r, "prizes"]) => {
            catalog::create_prize(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
        }
        ("GET", ["organizations", o, "raffles", r, "prizes"]) => {
            catalog::list_prizes(ctx, id(o, "organization_id")?, id(r, "raffle_id")?).await
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

/// The request body as `T`; a bad field is named by its path (`ranges[1].end_number`). Every
/// string in it, keys included and at any depth, must be text the platform can store (no NUL,
/// no control characters but tab and line breaks, [`STRING_CHARS_MAX`] at most): otherwise
/// 422 naming the string's path, and nothing is written.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let value: Value = parse_unchecked(body)?;
    if let Some((path, e)) = unstorable(&value, &mut String::new()) {
        return Err(Problem::invalid(&path, e.to_string()));
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| field_problem(e.path().to_string(), e.into_inner()))
}

/// The longest string a request body may carry anywhere; fields have tighter limits of their own.
pub const STRING_CHARS_MAX: usize = 10_000;

/// The first string of `value` that cannot be stored, with its path.
fn unstorable(value: &Value, path: &mut String) -> Option<(String, schemas::text::TextError)> {
    match value {
        Value::String(s) => schemas::text::storable(s, STRING_CHARS_MAX).err().map(|e| {
            (
                if path.is_empty() {
                    ".".to_owned()
                } else {
                    path.clone()
                },
                e,
            )
        }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = unstorable(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            let found = schemas::text::storable(key, 200)
                .err()
                .map(|e| (path.clone(), e))
                .or_else(|| unstorable(item, path));
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

/// The body as `T`, its strings not looked at: for a batch whose records are judged one by
/// one, so that one bad record does not refuse the others (RSU uploads).
pub fn parse_unchecked<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::malformed("a JSON body is required"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| field_problem(e.path().to_string(), e.into_inner()))
}

fn field_problem(path: String, inner: serde_json::Error) -> Problem {
    if inner.is_syntax() || inner.is_eof() {
        Problem::malformed(format!("not valid JSON: {inner}"))
    } else if path == "." {
        Problem::malformed(inner.to_string())
    } else {
        Problem::invalid(&path, inner.to_string())
    }
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

/// One line of text that must be present, trimmed, at most `max` characters, with no control
/// characters or line breaks.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, Problem> {
    let v = value.trim();
    schemas::text::line(v, max).map_err(|e| Problem::invalid(field, e.to_string()))?;
    Ok(v.to_owned())
}

pub fn opt_text(
    field: &str,
    value: &Option<String>,
    max: usize,
) -> Result<Option<String>, Problem> {
    value.as_deref().map(|v| text(field, v, max)).transpose()
}

/// Free text (a description, a reason): line breaks kept, other control characters refused,
/// at most `max` characters; `None` when absent.
pub fn opt_prose(
    field: &str,
    value: &Option<String>,
    max: usize,
) -> Result<Option<String>, Problem> {
    value
        .as_deref()
        .map(|v| {
            let v = v.trim();
            schemas::text::prose(v, max)
                .map(|()| v.to_owned())
                .map_err(|e| Problem::invalid(field, e.to_string()))
        })
        .transpose()
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
