//! Staff find a buyer's order: `GET /v1/organizations/{org}/orders?…` by e-mail, name, phone,
//! validation number, payment reference or draw number (with `raffle_id` to narrow it), for an
//! organisation's admins, operators and finance staff — a buyer at the desk, on the phone, or
//! in an e-mail. Each answer holds at most 50 orders of this organisation's raffles, newest
//! first, with their draw numbers and what the platform owes back for them.

use uuid::Uuid;

use super::{Ctx, Reply, ok, rows_json};
use crate::auth::{require, rights};
use crate::problem::Problem;

const CRITERIA: &[&str] = &[
    "email",
    "name",
    "phone",
    "validation_number",
    "payment_reference",
    "draw_number",
];

/// The digits of a phone number, as people write it differently (`+1 (701) 555-0100`).
fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

pub async fn search(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::FIND_ORDERS).await?;
    if let Some(other) = ctx
        .query
        .keys()
        .find(|k| !CRITERIA.contains(&k.as_str()) && k.as_str() != "raffle_id")
    {
        return Err(Problem::invalid(
            other,
            format!(
                "{other:?} is not a way to find an order: use {} (and raffle_id)",
                CRITERIA.join(", ")
            ),
        ));
    }
    let given = |k: &str| {
        ctx.query
            .get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if CRITERIA.iter().all(|c| given(c).is_none()) {
        return Err(Problem::invalid(
            "query",
            format!("say how to find the order: {}", CRITERIA.join(", ")),
        ));
    }
    let raffle: Option<Uuid> = given("raffle_id")
        .map(|r| r.parse())
        .transpose()
        .map_err(|_| Problem::invalid("raffle_id", "not a UUID"))?;
    let email = given("email").map(|e| e.to_lowercase());
    let name = match given("name") {
        Some(n) if n.chars().count() < 3 => {
            return Err(Problem::invalid(
                "name",
                "give at least three letters of the name",
            ));
        }
        n => n.map(|n| {
            format!(
                "%{}%",
                n.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        }),
    };
    let phone = match given("phone").map(|p| digits(&p)) {
        Some(p) if p.len() < 6 => {
            return Err(Problem::invalid(
                "phone",
                "give at least six digits of the phone number",
            ));
        }
        p => p,
    };
    let draw_number: Option<i64> = given("draw_number")
        .map(|n| n.parse())
        .transpose()
        .map_err(|_| Problem::invalid("draw_number", "a draw number is a whole number"))?;
    let found = rows_json(
        ctx.tx,
        "SELECT jsonb_build_object(
                'order_id', o.id, 'raffle_id', o.raffle_id, 'raffle', r.name, 'source', o.source,
                'payment_status', o.payment_status, 'validation_number', o.validation_number,
                'ticket_count', o.ticket_count, 'amount_minor', o.total_amount_minor, 'currency', o.currency,
                'refunded_minor', o.refunded_minor, 'payment_reference', o.payment_reference,
                'customer', jsonb_build_object('name', o.customer_name, 'email', o.customer_email, 'phone', o.customer_phone),
                'created_at', o.created_at, 'paid_at', o.paid_at,
                'draw_numbers', coalesce((SELECT jsonb_agg(t.draw_number ORDER BY t.draw_number) FROM sales.tickets t
                                           WHERE t.order_id = o.id AND t.state <> 'voided'), '[]'),
                'voided_numbers', coalesce((SELECT jsonb_agg(t.draw_number ORDER BY t.draw_number) FROM sales.tickets t
                                             WHERE t.order_id = o.id AND t.state = 'voided'), '[]'),
                'refunds', coalesce((SELECT jsonb_agg(jsonb_build_object('refund_id', b.id, 'state', b.state,
                                                                          'amount_minor', b.amount_minor, 'reason', b.reason_code)
                                                      ORDER BY b.created_at)
                                       FROM refunds.obligations b WHERE b.order_id = o.id), '[]'))
           FROM sales.orders o JOIN catalog.raffle_events r ON r.id = o.raffle_id
          WHERE r.organization_id = $1
            AND ($2::uuid IS NULL OR o.raffle_id = $2)
            AND ($3::text IS NULL OR lower(o.customer_email) = $3)
            AND ($4::text IS NULL OR o.customer_name ILIKE $4)
            AND ($5::text IS NULL OR regexp_replace(coalesce(o.customer_phone, ''), '[^0-9]', '', 'g') LIKE '%' || $5)
            AND ($6::text IS NULL OR o.validation_number = $6)
            AND ($7::text IS NULL OR o.payment_reference = $7)
            AND ($8::bigint IS NULL OR EXISTS (SELECT 1 FROM sales.tickets t WHERE t.order_id = o.id AND t.draw_number = $8))
          ORDER BY o.created_at DESC LIMIT 50",
        &[
            &org,
            &raffle,
            &email,
            &name,
            &phone,
            &given("validation_number"),
            &given("payment_reference"),
            &draw_number,
        ],
    )
    .await?;
    let count = found.as_array().map_or(0, Vec::len);
    tracing::info!(organization = %org, found = count, by = %ctx.actor.sub, "staff order search");
    ok(serde_json::json!({"orders": found, "limit": 50, "truncated": count == 50}))
}

/// An order of the organisation's raffles, or the one answer for any other.
async fn order_of(ctx: &Ctx<'_, '_>, org: Uuid, order: Uuid) -> Result<(), Problem> {
    ctx.tx
        .query_opt(
            "SELECT 1 FROM sales.orders o JOIN catalog.raffle_events r ON r.id = o.raffle_id
              WHERE o.id = $1 AND r.organization_id = $2",
            &[&order, &org],
        )
        .await?
        .map(|_| ())
        .ok_or_else(|| Problem::not_found(format!("no order {order} in this organization")))
}

/// `GET /v1/organizations/{org}/orders/{order}/messages`: every e-mail owed to the order's
/// buyer and what became of it (sent, waiting with the last error, failed, no address).
pub async fn messages(ctx: &Ctx<'_, '_>, org: Uuid, order: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::FIND_ORDERS).await?;
    order_of(ctx, org, order).await?;
    let deliveries = notifier::messages::deliveries(ctx.tx, order).await?;
    ok(serde_json::json!({
        "order_id": order,
        "messages": deliveries.iter().map(notifier::Delivery::to_json).collect::<Vec<_>>(),
    }))
}

/// `POST /v1/organizations/{org}/orders/{order}/resend`: the order's numbers e-mailed again to
/// the address it was bought with, at most `RESENDS_PER_HOUR` times an hour (buyer and staff
/// together).
pub async fn resend(ctx: &Ctx<'_, '_>, org: Uuid, order: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::FIND_ORDERS).await?;
    order_of(ctx, org, order).await?;
    let settings = notifier::MailSettings::from_env()
        .map_err(|e| Problem::internal("reading the mail settings", &e))?;
    let delivery = notifier::messages::resend(ctx.tx, &settings, order, &ctx.actor.sub)
        .await
        .map_err(notifier::ResendError::problem)?;
    Ok((warp::http::StatusCode::ACCEPTED, delivery.to_json()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn phone_numbers_compare_by_their_digits() {
        assert_eq!(super::digits("+1 (701) 555-0100"), "17015550100");
        assert_eq!(super::digits("  "), "");
    }
}
