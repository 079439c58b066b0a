//! Sales that were refused, with their reason: the one writer of `sales.rejected_sales`,
//! whether the edge refused a record (ingest) or the allocator a sale event.

use tokio_postgres::GenericClient;
use uuid::Uuid;

/// One refused sale. What the refusing stage did not know stays `None`.
#[derive(Debug, Clone, Default)]
pub struct Rejection<'a> {
    pub raffle_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    /// The device and its local id, for an RSU sale.
    pub rsu: Option<(Uuid, &'a str)>,
    /// The sale event refused; a refusal is recorded once per event.
    pub sale_event_id: Option<Uuid>,
    pub idempotency_key: Option<&'a str>,
    pub code: &'a str,
    pub reason: &'a str,
    pub amount_minor: Option<i64>,
    pub currency: Option<&'a str>,
    /// The stage that refused: `ingest` or `allocator`.
    pub rejected_by: &'a str,
}

/// Records the refusal; a sale event already refused is not recorded twice. Returns whether
/// a row was written.
pub async fn record(
    client: &impl GenericClient,
    r: &Rejection<'_>,
) -> Result<bool, tokio_postgres::Error> {
    let source = if r.rsu.is_some() { "rsu" } else { "online" };
    let n = client
        .execute(
            "INSERT INTO sales.rejected_sales (raffle_id, order_id, source, rsu_id, local_id, sale_event_id, idempotency_key,
                 reason_code, reason, amount_minor, currency, rejected_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (sale_event_id) DO NOTHING",
            &[
                &r.raffle_id,
                &r.order_id,
                &source,
                &r.rsu.map(|x| x.0),
                &r.rsu.map(|x| x.1),
                &r.sale_event_id,
                &r.idempotency_key,
                &r.code,
                &r.reason,
                &r.amount_minor,
                &r.currency,
                &r.rejected_by,
            ],
        )
        .await?;
    Ok(n == 1)
}
