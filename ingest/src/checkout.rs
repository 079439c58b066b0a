//! Checkout: a pending order for one package, refused unless the sale could be made now.

use admin::problem::Problem;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use warp::http::StatusCode;

use crate::{IngestState, Reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutInput {
    raffle_id: Uuid,
    package_id: Uuid,
    customer: Option<Customer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Customer {
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

/// `VAL-` and twelve characters a person can read back over the phone.
pub fn online_validation_number() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEF";
    let mut rng = rand::rng();
    let code: String = (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("VAL-{code}")
}

/// Sold out, or every ticket left is held for a payment in progress (which may yet fail).
fn sold_out(left: i64) -> Problem {
    Problem::conflict(
        "sold-out",
        if left > 0 {
            format!("{left} tickets are left, fewer than this package holds")
        } else {
            "every ticket is sold or held for a payment in progress; held tickets come back when a payment fails or its time runs out".to_owned()
        },
    )
}

/// A check code from the operating system's CSPRNG (rand's thread generator is seeded from it).
fn new_check_code() -> schemas::CheckCode {
    let mut bytes = [0u8; 8];
    rand::rng().fill(&mut bytes);
    schemas::CheckCode::from_random(bytes)
}

pub async fn create(state: &IngestState, body: &[u8]) -> Result<Reply, Problem> {
    let input: CheckoutInput = admin::api::parse(body)?;
    let given = input.customer.unwrap_or(Customer {
        name: None,
        email: None,
        phone: None,
    });
    let customer = crate::customer(
        "customer",
        given.name.as_deref(),
        given.email.as_deref(),
        given.phone.as_deref(),
    )
    .map_err(|(field, why)| Problem::invalid(&field, why))?;
    let client = admin::pooled(&state.pool).await?;
    let offer = client
        .prepare_cached(
            "SELECT r.state, r.sales_start_time, r.sales_end_time, r.max_tickets, r.total_sold,
                    p.ticket_count, p.price_minor, p.currency, p.is_active, p.active_from, p.active_to
               FROM catalog.raffle_events r JOIN catalog.ticket_packages p ON p.raffle_id = r.id
              WHERE r.id = $1 AND p.id = $2",
        )
        .await?;
    let row = client
        .query_opt(&offer, &[&input.raffle_id, &input.package_id])
        .await?
        .ok_or_else(|| {
            Problem::invalid(
                "package_id",
                format!(
                    "package {} is not one of raffle {}'s",
                    input.package_id, input.raffle_id
                ),
            )
        })?;
    let (state_name, start, end, max, sold): (String, DateTime<Utc>, DateTime<Utc>, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let count: i32 = row.get(5);
    let price: i64 = row.get(6);
    let currency: String = row.get(7);
    let active: bool = row.get(8);
    let from: Option<DateTime<Utc>> = row.get(9);
    let to: Option<DateTime<Utc>> = row.get(10);
    let now = Utc::now();
    if state_name != "active" {
        return Err(Problem::conflict(
            "raffle-not-selling",
            format!("raffle {} is {state_name}", input.raffle_id),
        ));
    }
    if now < start || now >= end {
        return Err(Problem::conflict(
            "outside-sales-window",
            format!("sales run from {start} to {end}"),
        ));
    }
    if !active || from.is_some_and(|f| now < f) || to.is_some_and(|t| now >= t) {
        return Err(Problem::conflict(
            "package-not-on-sale",
            format!("package {} is not on sale now", input.package_id),
        )
        .with_field("package_id"));
    }
    if count > state.config.order_tickets_max {
        return Err(Problem::conflict(
            "order-too-large",
            format!(
                "an order holds at most {} tickets; this package has {count}",
                state.config.order_tickets_max
            ),
        ));
    }
    // A first look, for a clear answer; the hold below decides.
    if sold + i64::from(count) > max {
        return Err(sold_out(max - sold));
    }
    let rules = admin::rules::for_raffle(&**client, input.raffle_id, now).await?;
    admin::api::check_package_price(&rules, "package_id", price, count, &currency)?;
    if let Some(admin::rules::InForce {
        value: admin::rules::RuleValue::SalesMethod { online: false, .. },
        ..
    }) = rules.get("sales_method")
    {
        return Err(Problem::conflict(
            "regulation",
            "online sales are not allowed in this raffle's jurisdiction",
        ));
    }
    let validation_number = online_validation_number();
    let check_code = new_check_code();
    let check_code_hash = check_code
        .hash(input.raffle_id, &validation_number)
        .to_vec();
    // Time-ordered (v7): orders are paid roughly in the order they were created, so the
    // order's key, and the tickets' index by order, grow at their right edge.
    let order_id = Uuid::now_v7();
    // One statement: the hold is taken only if sold + held + these tickets fit, and the order
    // exists only with its hold. The hold's row is locked for this statement alone.
    let insert = client
        .prepare_cached(
            "WITH hold AS (
                 INSERT INTO sales.capacity_holds AS h (raffle_id, held_tickets)
                 SELECT r.id, $5::int::bigint FROM catalog.raffle_events r
                  WHERE r.id = $2 AND r.total_sold + $5::int <= r.max_tickets
                 ON CONFLICT (raffle_id) DO UPDATE SET held_tickets = h.held_tickets + EXCLUDED.held_tickets
                  WHERE h.held_tickets + EXCLUDED.held_tickets
                        + (SELECT r.total_sold FROM catalog.raffle_events r WHERE r.id = h.raffle_id)
                        <= (SELECT r.max_tickets FROM catalog.raffle_events r WHERE r.id = h.raffle_id)
                 RETURNING 1)
             INSERT INTO sales.orders (id, raffle_id, package_id, validation_number, ticket_count, total_amount_minor, currency,
                 source, customer_name, customer_email, customer_phone, created_by, check_code_hash, hold_expires_at)
             SELECT $1, $2, $3, $4, $5::int, $6, $7, 'online', $8, $9, $10, 'checkout', $11, now() + make_interval(mins => $12)
               FROM hold",
        )
        .await?;
    let inserted = client
        .execute(
            &insert,
            &[
                &order_id,
                &input.raffle_id,
                &input.package_id,
                &validation_number,
                &count,
                &price,
                &currency,
                &customer.name,
                &customer.email,
                &customer.phone,
                &check_code_hash,
                &state.config.hold_minutes,
            ],
        )
        .await
        .map_err(|e| admin::problem::from_db("creating the order", &e))?;
    if inserted == 0 {
        return Err(sold_out(0));
    }
    tracing::info!(raffle = %input.raffle_id, order = %order_id, tickets = count, amount_minor = price, "checkout");
    Ok((
        StatusCode::CREATED,
        // The check code is the buyer's alone: said once, here (and in the confirmation
        // e-mail), stored only as its hash.
        json!({"order_id": order_id, "amount_minor": price, "currency": currency, "ticket_count": count,
               "validation_number": validation_number, "check_code": check_code.display(),
               "payment_status": "pending", "held_for_minutes": state.config.hold_minutes}),
    ))
}
