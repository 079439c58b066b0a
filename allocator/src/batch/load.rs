//! The load phase: what a batch's events touch, read and locked once, in a fixed order
//! (raffles, ranges, allocations, orders, then the raffles' hold rows) so that partitions of one
//! raffle never deadlock each other.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use platform::HandlerError;
use schemas::{Money, PaymentStatus, RangeRef, SaleEvent, SaleEventKind, SaleSource};
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::unique;

/// Everything one batch reads and locks: the state its events are decided against.
pub(super) struct Loaded {
    pub(super) raffles: HashMap<Uuid, Raffle>,
    pub(super) ranges: HashMap<Uuid, Range>,
    pub(super) allocations: HashMap<Uuid, Allocation>,
    pub(super) orders: HashMap<Uuid, Order>,
    pub(super) packages: HashMap<Uuid, Package>,
    /// Draw numbers already taken, per raffle, among those RSU events of the batch claim.
    pub(super) taken_numbers: HashSet<(Uuid, i64)>,
    pub(super) taken_validation: HashSet<(Uuid, String)>,
    pub(super) seen_rsu_sales: HashSet<(Uuid, String)>,
    /// Idempotency keys already rejected (in the database or earlier in this batch): a
    /// provider retries an event until it is acknowledged, and a rejection — a refund owed —
    /// is recorded once, not once per retry.
    pub(super) rejected_keys: HashSet<String>,
    /// The order each payment (provider, reference) of the batch already paid, from the
    /// database and from earlier sales of this batch: one payment never pays two orders.
    pub(super) paid_by: HashMap<(String, String), Uuid>,
    pub(super) offline_expiry_minutes: i64,
    /// The recorded order of each RSU sale (device, local id) the batch voids.
    pub(super) rsu_orders: HashMap<(Uuid, String), Uuid>,
    /// The sold draw numbers of each order the batch may void or refund.
    pub(super) sold_tickets: HashMap<Uuid, Vec<i64>>,
}

/// Minutes an offline RSU sale stays valid when the configuration in force does not say.
const OFFLINE_EXPIRY_MINUTES_DEFAULT: i64 = 1440;

impl Default for Loaded {
    /// Nothing loaded yet.
    fn default() -> Self {
        Self {
            raffles: HashMap::new(),
            ranges: HashMap::new(),
            allocations: HashMap::new(),
            orders: HashMap::new(),
            packages: HashMap::new(),
            taken_numbers: HashSet::new(),
            taken_validation: HashSet::new(),
            seen_rsu_sales: HashSet::new(),
            rejected_keys: HashSet::new(),
            paid_by: HashMap::new(),
            offline_expiry_minutes: OFFLINE_EXPIRY_MINUTES_DEFAULT,
            rsu_orders: HashMap::new(),
            sold_tickets: HashMap::new(),
        }
    }
}

pub(super) struct Raffle {
    pub(super) state: String,
    pub(super) sales_start: DateTime<Utc>,
    pub(super) sales_end: DateTime<Utc>,
    pub(super) max_tickets: i64,
    pub(super) total_sold: i64,
    pub(super) sold_delta: i64,
    pub(super) voided_delta: i64,
    pub(super) first_sale: Option<DateTime<Utc>>,
    pub(super) first_sale_new: bool,
    /// Tickets checkout holds for payments in progress (`sales.capacity_holds`), as loaded.
    pub(super) held_tickets: i64,
}

pub(super) struct Range {
    pub(super) raffle_id: Uuid,
    pub(super) range_type: String,
    pub(super) next: i64,
    pub(super) end: i64,
    pub(super) next_changed: bool,
    pub(super) sold_delta: i64,
    pub(super) voided_delta: i64,
}

pub(super) struct Allocation {
    pub(super) raffle_id: Uuid,
    pub(super) range_id: Uuid,
    pub(super) rsu_id: Uuid,
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) next: i64,
    pub(super) sold_delta: i64,
    pub(super) voided_delta: i64,
    pub(super) block_id: Uuid,
    pub(super) prefix: String,
    pub(super) first_sequence: i32,
    pub(super) block_size: i32,
    pub(super) next_sequence: i32,
    pub(super) used_delta: i32,
}

pub(super) struct Order {
    pub(super) raffle_id: Uuid,
    pub(super) package_id: Uuid,
    pub(super) ticket_count: i32,
    pub(super) amount: Money,
    /// What the provider refunded of it while its tickets stay (cumulative).
    pub(super) refunded_minor: i64,
    pub(super) status: PaymentStatus,
    pub(super) source: SaleSource,
    /// (provider, reference) of the payment that paid it, once paid.
    pub(super) paid_by: Option<(String, String)>,
    /// Checkout holds its tickets (until decided or the hold's time runs out).
    pub(super) held: bool,
}

pub(super) struct Package {
    pub(super) raffle_id: Uuid,
    pub(super) ticket_count: i32,
    pub(super) price: Money,
}

pub(super) async fn load(
    tx: &Transaction<'_>,
    events: &[&SaleEvent],
) -> Result<Loaded, HandlerError> {
    let raffle_ids: Vec<Uuid> = unique(events.iter().map(|e| e.raffle_id));
    let range_ids: Vec<Uuid> =
        unique(events.iter().filter_map(|e| match e.range_partition.range {
            RangeRef::Range(id) => Some(id),
            RangeRef::Allocation(_) => None,
        }));
    let allocation_ids: Vec<Uuid> = unique(
        events
            .iter()
            .filter_map(|e| e.rsu_sale.as_ref().map(|s| s.allocation_id)),
    );
    let package_ids: Vec<Uuid> = unique(events.iter().filter_map(|e| e.package_id));
    // The orders that RSU voids name by the device's local id: locked with the others and
    // their sold tickets read, so that the void is decided with the rest of the batch.
    let (void_rsus, void_locals): (Vec<Uuid>, Vec<String>) = events
        .iter()
        .filter(|e| e.kind == SaleEventKind::RsuSaleVoided)
        .filter_map(|e| e.rsu_sale.as_ref())
        .map(|s| (s.rsu_id, s.local_id.clone()))
        .unzip();
    let mut rsu_orders = HashMap::new();
    if !void_rsus.is_empty() {
        for row in tx
            .query(
                "SELECT o.rsu_id, o.rsu_local_id, o.id FROM sales.orders o
                   JOIN unnest($1::uuid[], $2::text[]) AS c(rsu_id, local_id)
                     ON c.rsu_id = o.rsu_id AND c.local_id = o.rsu_local_id",
                &[&void_rsus, &void_locals],
            )
            .await?
        {
            rsu_orders.insert((row.get(0), row.get(1)), row.get(2));
        }
    }
    let order_ids: Vec<Uuid> = unique(
        events
            .iter()
            .filter_map(|e| e.order_id)
            .chain(rsu_orders.values().copied()),
    );
    let mut loaded = Loaded {
        rsu_orders,
        ..Loaded::default()
    };
    let ids = Ids {
        raffle_ids,
        range_ids,
        allocation_ids,
        package_ids,
        order_ids,
    };
    lock_raffles(tx, &ids, &mut loaded).await?;
    lock_ranges_and_blocks(tx, &ids, &mut loaded).await?;
    lock_orders(tx, &ids, &mut loaded).await?;
    sold_tickets(tx, events, &mut loaded).await?;
    holds_and_packages(tx, &ids, &mut loaded).await?;
    paid_and_refused(tx, events, &mut loaded).await?;
    rsu_claims(tx, events, &mut loaded).await?;
    Ok(loaded)
}

/// The ids a batch's events name, by kind, each once and in order.
struct Ids {
    raffle_ids: Vec<Uuid>,
    range_ids: Vec<Uuid>,
    allocation_ids: Vec<Uuid>,
    package_ids: Vec<Uuid>,
    order_ids: Vec<Uuid>,
}

/// The batch's raffles, locked first (FOR NO KEY UPDATE: see the query), with when their sales end.
async fn lock_raffles(
    tx: &Transaction<'_>,
    ids: &Ids,
    loaded: &mut Loaded,
) -> Result<(), HandlerError> {
    // Locks in a fixed order (raffles, ranges, allocations, orders) so that partitions
    // of one raffle never deadlock each other.
    for row in tx
        .query(
            // Sales end at the configured end or when they were closed, whichever came
            // first: a payment after an early close is rejected for refund. NO KEY
            // UPDATE: the counters change, the key does not, so checkout's new orders
            // (whose foreign key takes KEY SHARE) neither wait for a batch nor deadlock
            // with it over the capacity hold.
            "SELECT r.id, r.state, r.sales_start_time,
                    least(r.sales_end_time, (SELECT min(t.occurred_at) FROM catalog.raffle_transitions t
                                              WHERE t.raffle_id = r.id AND t.to_state = 'sales_closed')),
                    r.max_tickets, r.total_sold, r.first_sale_at
               FROM catalog.raffle_events r WHERE r.id = ANY($1) ORDER BY r.id FOR NO KEY UPDATE OF r",
            &[&ids.raffle_ids],
        )
        .await?
    {
        loaded.raffles.insert(
            row.get(0),
            Raffle {
                state: row.get(1),
                sales_start: row.get(2),
                sales_end: row.get(3),
                max_tickets: row.get(4),
                total_sold: row.get(5),
                sold_delta: 0,
                voided_delta: 0,
                first_sale: row.get(6),
                first_sale_new: false,
                held_tickets: 0,
            },
        );
    }
    Ok(())
}

/// The ranges the batch's events name and those of its RSU blocks, then the blocks with their
/// validation blocks, locked in that order.
async fn lock_ranges_and_blocks(
    tx: &Transaction<'_>,
    ids: &Ids,
    loaded: &mut Loaded,
) -> Result<(), HandlerError> {
    let mut all_range_ids = ids.range_ids.clone();
    let allocation_rows = tx
        .query(
            "SELECT a.id, a.raffle_id, a.range_id, a.entity_id, a.start_number, a.end_number, a.next_draw_number,
                    v.id, v.prefix, v.first_sequence, v.block_size, v.next_sequence
               FROM catalog.rsu_allocations a JOIN catalog.validation_number_blocks v ON v.rsu_allocation_id = a.id
              WHERE a.id = ANY($1) ORDER BY a.id",
            &[&ids.allocation_ids],
        )
        .await?;
    all_range_ids.extend(allocation_rows.iter().map(|r| r.get::<_, Uuid>(2)));
    let all_range_ids = unique(all_range_ids.into_iter());
    for row in tx
        .query(
            "SELECT id, raffle_id, range_type, next_number, end_number FROM catalog.raffle_ranges
              WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&all_range_ids],
        )
        .await?
    {
        loaded.ranges.insert(
            row.get(0),
            Range {
                raffle_id: row.get(1),
                range_type: row.get(2),
                next: row.get(3),
                end: row.get(4),
                next_changed: false,
                sold_delta: 0,
                voided_delta: 0,
            },
        );
    }
    if !ids.allocation_ids.is_empty() {
        tx.execute(
            "SELECT 1 FROM catalog.rsu_allocations WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&ids.allocation_ids],
        )
        .await?;
    }
    for row in allocation_rows {
        loaded.allocations.insert(
            row.get(0),
            Allocation {
                raffle_id: row.get(1),
                range_id: row.get(2),
                rsu_id: row.get(3),
                start: row.get(4),
                end: row.get(5),
                next: row.get(6),
                sold_delta: 0,
                voided_delta: 0,
                block_id: row.get(7),
                prefix: row.get(8),
                first_sequence: row.get(9),
                block_size: row.get(10),
                next_sequence: row.get(11),
                used_delta: 0,
            },
        );
    }
    Ok(())
}

/// The orders the batch's events name (and those RSU voids name), locked last.
async fn lock_orders(
    tx: &Transaction<'_>,
    ids: &Ids,
    loaded: &mut Loaded,
) -> Result<(), HandlerError> {
    for row in tx
        .query(
            "SELECT id, raffle_id, package_id, ticket_count, total_amount_minor, currency, payment_status, source,
                    payment_provider, payment_reference, hold_expires_at IS NOT NULL, refunded_minor
               FROM sales.orders WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&ids.order_ids],
        )
        .await?
    {
        loaded.orders.insert(
            row.get(0),
            Order {
                raffle_id: row.get(1),
                package_id: row.get(2),
                ticket_count: row.get(3),
                amount: Money::of(row.get(4), row.get(5)).map_err(|e| stored_badly("order", &row, e))?,
                status: row.get::<_, String>(6).parse().map_err(|e| stored_badly("order", &row, e))?,
                source: row.get::<_, String>(7).parse().map_err(|e| stored_badly("order", &row, e))?,
                paid_by: row
                    .get::<_, Option<String>>(8)
                    .zip(row.get::<_, Option<String>>(9)),
                held: row.get(10),
                refunded_minor: row.get(11),
            },
        );
    }
    Ok(())
}

/// The sold tickets of the orders the batch may void or refund, read under the orders' locks.
async fn sold_tickets(
    tx: &Transaction<'_>,
    events: &[&SaleEvent],
    loaded: &mut Loaded,
) -> Result<(), HandlerError> {
    // The sold tickets of the orders the batch may void or refund, read under the orders'
    // locks.
    let voidable: Vec<Uuid> = unique(
        events
            .iter()
            .filter(|e| e.kind == SaleEventKind::RefundRequested)
            .filter_map(|e| e.order_id)
            .chain(loaded.rsu_orders.values().copied()),
    );
    if !voidable.is_empty() {
        for row in tx
            .query(
                "SELECT order_id, draw_number FROM sales.tickets
                  WHERE order_id = ANY($1) AND state = 'sold' ORDER BY order_id, draw_number",
                &[&voidable],
            )
            .await?
        {
            loaded
                .sold_tickets
                .entry(row.get::<_, Uuid>(0))
                .or_default()
                .push(row.get(1));
        }
    }
    Ok(())
}

/// The raffles' hold rows, locked after the orders; and the packages the sales name.
async fn holds_and_packages(
    tx: &Transaction<'_>,
    ids: &Ids,
    loaded: &mut Loaded,
) -> Result<(), HandlerError> {
    // The raffles' hold rows, locked after the orders (as the expired-hold sweeper locks
    // them) until the commit. Checkout decides on a raffle's sold count under this lock,
    // so every change of the count made here lands before its read or after its holds.
    let known: Vec<Uuid> = unique(loaded.raffles.keys().copied());
    for (raffle, held) in sales::holds::lock_for_allocation(tx, &known).await? {
        if let Some(r) = loaded.raffles.get_mut(&raffle) {
            r.held_tickets = held;
        }
    }
    for row in tx
        .query(
            "SELECT id, raffle_id, ticket_count, price_minor, currency FROM catalog.ticket_packages WHERE id = ANY($1)",
            &[&ids.package_ids],
        )
        .await?
    {
        loaded.packages.insert(
            row.get(0),
            Package {
                raffle_id: row.get(1),
                ticket_count: row.get(2),
                price: Money::of(row.get(3), row.get(4)).map_err(|e| stored_badly("package", &row, e))?,
            },
        );
    }
    Ok(())
}

/// What the batch must not do twice: pay an order with a payment that paid another, or record
/// a refusal already recorded.
async fn paid_and_refused(
    tx: &Transaction<'_>,
    events: &[&SaleEvent],
    loaded: &mut Loaded,
) -> Result<(), HandlerError> {
    // Payments the batch's online sales name that may already have paid an order: the
    // order's unique (provider, reference) would otherwise fail the whole batch, again at
    // every retry, and hold up the partition behind it.
    let (providers, references): (Vec<&str>, Vec<&str>) = events
        .iter()
        .filter(|e| e.kind == SaleEventKind::SaleCompleted)
        .filter_map(|e| e.payment.as_ref())
        .map(|p| (p.provider.as_str(), p.reference.as_str()))
        .unzip();
    if !providers.is_empty() {
        for row in tx
            .query(
                "SELECT o.payment_provider, o.payment_reference, o.id FROM sales.orders o
                   JOIN unnest($1::text[], $2::text[]) AS c(provider, reference)
                     ON c.provider = o.payment_provider AND c.reference = o.payment_reference",
                &[&providers, &references],
            )
            .await?
        {
            loaded.paid_by.insert((row.get(0), row.get(1)), row.get(2));
        }
    }
    let keys: Vec<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
    for row in tx
        .query(
            "SELECT idempotency_key FROM sales.rejected_sales WHERE idempotency_key = ANY($1)",
            &[&keys],
        )
        .await?
    {
        loaded.rejected_keys.insert(row.get(0));
    }
    Ok(())
}

/// What RSU events claim that may already be taken (numbers, validation numbers, sales), and
/// the offline expiry in force.
async fn rsu_claims(
    tx: &Transaction<'_>,
    events: &[&SaleEvent],
    loaded: &mut Loaded,
) -> Result<(), HandlerError> {
    // What RSU events claim that may already be taken: numbers, validation numbers, sales.
    let rsu_events: Vec<&&SaleEvent> = events.iter().filter(|e| e.rsu_sale.is_some()).collect();
    if !rsu_events.is_empty() {
        let mut raffles = Vec::new();
        let mut numbers = Vec::new();
        let mut validation = Vec::new();
        let mut rsus = Vec::new();
        let mut locals = Vec::new();
        for e in &rsu_events {
            let s = e
                .rsu_sale
                .as_ref()
                .ok_or_else(|| HandlerError::Fatal("rsu event without sale".into()))?;
            for n in &s.draw_numbers {
                raffles.push(e.raffle_id);
                numbers.push(n.get());
            }
            validation.push((e.raffle_id, s.validation_number.clone()));
            rsus.push(s.rsu_id);
            locals.push(s.local_id.clone());
        }
        for row in tx
            .query(
                "SELECT t.raffle_id, t.draw_number FROM sales.tickets t
                   JOIN unnest($1::uuid[], $2::bigint[]) AS c(raffle_id, draw_number)
                     ON c.raffle_id = t.raffle_id AND c.draw_number = t.draw_number",
                &[&raffles, &numbers],
            )
            .await?
        {
            loaded.taken_numbers.insert((row.get(0), row.get(1)));
        }
        let (v_raffles, v_numbers): (Vec<Uuid>, Vec<String>) = validation.into_iter().unzip();
        for row in tx
            .query(
                "SELECT o.raffle_id, o.validation_number FROM sales.orders o
                   JOIN unnest($1::uuid[], $2::text[]) AS c(raffle_id, validation_number)
                     ON c.raffle_id = o.raffle_id AND c.validation_number = o.validation_number",
                &[&v_raffles, &v_numbers],
            )
            .await?
        {
            loaded.taken_validation.insert((row.get(0), row.get(1)));
        }
        for row in tx
            .query(
                "SELECT o.rsu_id, o.rsu_local_id FROM sales.orders o
                   JOIN unnest($1::uuid[], $2::text[]) AS c(rsu_id, local_id)
                     ON c.rsu_id = o.rsu_id AND c.local_id = o.rsu_local_id",
                &[&rsus, &locals],
            )
            .await?
        {
            loaded.seen_rsu_sales.insert((row.get(0), row.get(1)));
        }
        if let Some(minutes) = catalog::configuration::setting_i64(
            tx,
            catalog::configuration::OFFLINE_SALE_EXPIRATION_MINUTES,
        )
        .await?
        {
            loaded.offline_expiry_minutes = minutes;
        }
    }
    Ok(())
}

/// A row the database holds that the schema's own constraints should have kept out: the batch
/// stops, naming the row (a consumer that skipped it would decide on a guess).
fn stored_badly(what: &str, row: &tokio_postgres::Row, e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Fatal(format!("{what} {}: {e}", row.get::<_, Uuid>(0)))
}
