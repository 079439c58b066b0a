//! Orders: pending ones created at checkout with their holds, RSU orders recorded as they
//! arrive, and every change of an order's payment status as the allocator decides it.

use chrono::{DateTime, Utc};
use schemas::PaymentStatus;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// An RSU sale's order, recorded when its sale is (completed, or voided before it synced).
pub struct NewRsuOrder {
    pub id: Uuid,
    pub raffle_id: Uuid,
    pub package_id: Uuid,
    pub validation_number: String,
    pub ticket_count: i32,
    pub amount_minor: i64,
    pub currency: String,
    pub status: PaymentStatus,
    pub idempotency_key: String,
    pub rsu_id: Uuid,
    pub allocation_id: Uuid,
    pub operator_id: Option<String>,
    pub is_offline: bool,
    pub created_on_device: DateTime<Utc>,
    pub local_id: String,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub check_code_hash: Option<Vec<u8>>,
}

/// Records RSU orders, in one statement.
pub async fn record_rsu(
    client: &impl GenericClient,
    o: &[NewRsuOrder],
) -> Result<(), tokio_postgres::Error> {
    if o.is_empty() {
        return Ok(());
    }
    client
        .execute(
        "INSERT INTO sales.orders (id, raffle_id, package_id, validation_number, ticket_count, total_amount_minor,
             currency, payment_status, idempotency_key, source, rsu_id, rsu_allocation_id, operator_id,
             is_offline_sale, offline_sync_status, offline_created_at, rsu_local_id, customer_name, customer_email,
             customer_phone, paid_at, created_by, check_code_hash)
         SELECT u.id, u.raffle_id, u.package_id, u.validation_number, u.ticket_count, u.amount, u.currency, u.status,
                u.key, 'rsu', u.rsu_id, u.allocation_id, u.operator_id, u.offline, 'synced', u.created, u.local_id,
                u.name, u.email, u.phone, u.created, 'allocator', u.check_code_hash
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::bigint[], $7::text[], $8::text[],
                       $9::text[], $10::uuid[], $11::uuid[], $12::text[], $13::bool[], $14::timestamptz[], $15::text[],
                       $16::text[], $17::text[], $18::text[], $19::bytea[])
             AS u(id, raffle_id, package_id, validation_number, ticket_count, amount, currency, status, key, rsu_id,
                  allocation_id, operator_id, offline, created, local_id, name, email, phone, check_code_hash)",
        &[
            &o.iter().map(|x| x.id).collect::<Vec<_>>(),
            &o.iter().map(|x| x.raffle_id).collect::<Vec<_>>(),
            &o.iter().map(|x| x.package_id).collect::<Vec<_>>(),
            &o.iter().map(|x| x.validation_number.clone()).collect::<Vec<_>>(),
            &o.iter().map(|x| x.ticket_count).collect::<Vec<_>>(),
            &o.iter().map(|x| x.amount_minor).collect::<Vec<_>>(),
            &o.iter().map(|x| x.currency.clone()).collect::<Vec<_>>(),
            &o.iter().map(|x| x.status.as_str()).collect::<Vec<_>>(),
            &o.iter().map(|x| x.idempotency_key.clone()).collect::<Vec<_>>(),
            &o.iter().map(|x| x.rsu_id).collect::<Vec<_>>(),
            &o.iter().map(|x| x.allocation_id).collect::<Vec<_>>(),
            &o.iter().map(|x| x.operator_id.clone()).collect::<Vec<_>>(),
            &o.iter().map(|x| x.is_offline).collect::<Vec<_>>(),
            &o.iter().map(|x| x.created_on_device).collect::<Vec<_>>(),
            &o.iter().map(|x| x.local_id.clone()).collect::<Vec<_>>(),
            &o.iter().map(|x| x.customer_name.clone()).collect::<Vec<_>>(),
            &o.iter().map(|x| x.customer_email.clone()).collect::<Vec<_>>(),
            &o.iter().map(|x| x.customer_phone.clone()).collect::<Vec<_>>(),
            &o.iter().map(|x| x.check_code_hash.clone()).collect::<Vec<_>>(),
        ],
    )
        .await?;
    Ok(())
}

/// (order, new status, payment provider, payment reference, paid at, reason): what the
/// allocator decided of an order. The provider, reference, time and reason keep the order's
/// own when `None`; the hold is over either way.
pub type StatusChange = (
    Uuid,
    PaymentStatus,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<String>,
);

/// Writes the status changes, in one statement.
pub async fn change_status(
    client: &impl GenericClient,
    u: &[StatusChange],
) -> Result<(), tokio_postgres::Error> {
    if u.is_empty() {
        return Ok(());
    }
    client
        .execute(
        "UPDATE sales.orders o SET payment_status = u.status, payment_provider = coalesce(u.provider, o.payment_provider),
                payment_reference = coalesce(u.reference, o.payment_reference), paid_at = coalesce(u.paid_at, o.paid_at),
                rejection_reason = coalesce(u.reason, o.rejection_reason), hold_expires_at = NULL, updated_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])
             AS u(id, status, provider, reference, paid_at, reason)
          WHERE o.id = u.id",
        &[
            &u.iter().map(|x| x.0).collect::<Vec<_>>(),
            &u.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(),
            &u.iter().map(|x| x.2.clone()).collect::<Vec<_>>(),
            &u.iter().map(|x| x.3.clone()).collect::<Vec<_>>(),
            &u.iter().map(|x| x.4).collect::<Vec<_>>(),
            &u.iter().map(|x| x.5.clone()).collect::<Vec<_>>(),
        ],
    )
        .await?;
    Ok(())
}

/// Records how much of each order the provider has refunded so far while its tickets stay
/// (cumulative; never lowered).
pub async fn record_refunded(
    client: &impl GenericClient,
    refunded: &[(Uuid, i64)],
) -> Result<(), tokio_postgres::Error> {
    if refunded.is_empty() {
        return Ok(());
    }
    client
        .execute(
            "UPDATE sales.orders o SET refunded_minor = greatest(o.refunded_minor, u.refunded), updated_at = now()
               FROM unnest($1::uuid[], $2::bigint[]) AS u(id, refunded) WHERE o.id = u.id",
            &[
                &refunded.iter().map(|x| x.0).collect::<Vec<_>>(),
                &refunded.iter().map(|x| x.1).collect::<Vec<_>>(),
            ],
        )
        .await?;
    Ok(())
}

/// A checkout's order, pending its payment; its tickets are held for it.
pub struct NewPendingOrder<'a> {
    pub id: Uuid,
    pub raffle_id: Uuid,
    pub package_id: Uuid,
    pub validation_number: &'a str,
    pub ticket_count: i32,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub customer: &'a schemas::Customer,
    pub check_code_hash: &'a [u8],
}

/// Creates a batch of checkouts' pending orders, in one prepared statement; their holds end
/// `hold_minutes` from now.
pub async fn create_pending(
    tx: &deadpool_postgres::Transaction<'_>,
    orders: &[NewPendingOrder<'_>],
    hold_minutes: i32,
) -> Result<(), tokio_postgres::Error> {
    if orders.is_empty() {
        return Ok(());
    }
    let optional = |f: fn(&schemas::Customer) -> Option<String>| {
        orders
            .iter()
            .map(|o| f(o.customer))
            .collect::<Vec<Option<String>>>()
    };
    let insert = tx
        .prepare_cached(
            "INSERT INTO sales.orders (id, raffle_id, package_id, validation_number, ticket_count, total_amount_minor,
                 currency, source, customer_name, customer_email, customer_phone, created_by, check_code_hash, hold_expires_at)
             SELECT u.id, u.raffle_id, u.package_id, u.validation_number, u.ticket_count, u.amount, u.currency, 'online',
                    u.name, u.email, u.phone, 'checkout', u.hash, now() + make_interval(mins => $11)
               FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::bigint[], $7::text[],
                           $8::text[], $9::text[], $10::text[], $12::bytea[])
                 AS u(id, raffle_id, package_id, validation_number, ticket_count, amount, currency, name, email, phone, hash)",
        )
        .await?;
    tx.execute(
        &insert,
        &[
            &orders.iter().map(|o| o.id).collect::<Vec<_>>(),
            &orders.iter().map(|o| o.raffle_id).collect::<Vec<_>>(),
            &orders.iter().map(|o| o.package_id).collect::<Vec<_>>(),
            &orders
                .iter()
                .map(|o| o.validation_number)
                .collect::<Vec<_>>(),
            &orders.iter().map(|o| o.ticket_count).collect::<Vec<_>>(),
            &orders.iter().map(|o| o.amount_minor).collect::<Vec<_>>(),
            &orders.iter().map(|o| o.currency).collect::<Vec<_>>(),
            &optional(|c| c.name.clone()),
            &optional(|c| c.email.clone()),
            &optional(|c| c.phone.clone()),
            &hold_minutes,
            &orders.iter().map(|o| o.check_code_hash).collect::<Vec<_>>(),
        ],
    )
    .await?;
    Ok(())
}

/// Gives back the holds of pending orders whose time ran out (their payment may still come:
/// it is then honoured if tickets are left, else rejected for refund). Returns the tickets
/// released. Locks orders before holds, as the allocator's batches do.
pub async fn release_expired_holds(
    client: &impl GenericClient,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "WITH expired AS (
                 UPDATE sales.orders SET hold_expires_at = NULL
                  WHERE hold_expires_at < now() AND payment_status = 'pending'
                 RETURNING raffle_id, ticket_count),
             per_raffle AS (SELECT raffle_id, sum(ticket_count)::bigint AS n FROM expired GROUP BY raffle_id),
             released AS (
                 UPDATE sales.capacity_holds h SET held_tickets = greatest(h.held_tickets - p.n, 0)
                   FROM per_raffle p WHERE h.raffle_id = p.raffle_id RETURNING p.n)
             SELECT coalesce(sum(n), 0)::bigint FROM released",
            &[],
        )
        .await?;
    Ok(row.get(0))
}
