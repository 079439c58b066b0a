//! The write phase: what the decide phase staged, written with a few set-based statements in
//! the batch's transaction.

use std::collections::{BTreeMap, HashMap};

use catalog::counters::{AllocationChange, RaffleChange, RangeChange};

use platform::HandlerError;
use schemas::SaleEventKind;
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::decide::{Decider, OrderUpdate};

/// Decided what the batch decided: new orders, tickets, order changes, holds given back,
/// rejections, ticket events for the outbox, the counters' changes, then the voids.
pub(super) async fn write(
    tx: &Transaction<'_>,
    d: &mut Decider,
    tickets_topic: &str,
) -> Result<(), HandlerError> {
    let w = std::mem::take(&mut d.decided);
    sales::orders::record_rsu(tx, &w.new_orders).await?;
    // Tickets before the order updates: the tickets' check (V14) locks each order in
    // key-share mode, which costs nothing while the row is still the one this batch
    // locked for update, and a lock record per order once the update made a new version.
    sales::tickets::issue(tx, &w.tickets).await?;
    sales::orders::change_status(tx, &w.order_updates).await?;
    sales::orders::record_refunded(tx, &w.refunded).await?;
    release_holds(tx, d, &w.order_updates).await?;
    for r in &w.rejections {
        let rsu = r.event.rsu_sale.as_ref();
        let currency = r.event.currency.to_string();
        let rejection = catalog::rejections::Rejection {
            raffle_id: Some(r.event.raffle_id),
            order_id: r.event.order_id,
            rsu: rsu.map(|s| (s.rsu_id, s.local_id.as_str())),
            sale_event_id: Some(r.event.event_id),
            idempotency_key: Some(&r.event.idempotency_key),
            code: r.code.as_str(),
            reason: &r.reason,
            amount_minor: Some(r.event.amount_minor),
            currency: Some(&currency),
            rejected_by: "allocator",
        };
        catalog::rejections::record(tx, &rejection).await?;
    }
    owe_refunds(tx, &w.rejections).await?;
    platform::outbox::enqueue_all(tx, tickets_topic, w.outbox).await?;
    // Counters: written as deltas, once per batch.
    let mut ranges = Vec::new();
    for (id, r) in d.state.ranges.iter_mut() {
        if r.next_changed || r.sold_delta != 0 || r.voided_delta != 0 {
            ranges.push(RangeChange {
                range_id: *id,
                next_number: r.next,
                sold: r.sold_delta,
                voided: r.voided_delta,
            });
            r.next_changed = false;
            r.sold_delta = 0;
            r.voided_delta = 0;
        }
    }
    let mut allocations = Vec::new();
    for (id, a) in d.state.allocations.iter_mut() {
        if a.sold_delta != 0 || a.voided_delta != 0 || a.used_delta != 0 {
            allocations.push(AllocationChange {
                allocation_id: *id,
                next_number: a.next,
                sold: a.sold_delta,
                voided: a.voided_delta,
                validation_block_id: a.block_id,
                next_sequence: a.next_sequence,
                validation_numbers_used: a.used_delta,
            });
            a.sold_delta = 0;
            a.voided_delta = 0;
            a.used_delta = 0;
        }
    }
    let mut raffles = Vec::new();
    for (id, r) in d.state.raffles.iter_mut() {
        if r.sold_delta != 0 || r.voided_delta != 0 || r.first_sale_new {
            raffles.push(RaffleChange {
                raffle_id: *id,
                sold: r.sold_delta,
                voided: r.voided_delta,
                first_sale: r.first_sale,
            });
            r.total_sold += r.sold_delta;
            r.sold_delta = 0;
            r.voided_delta = 0;
            r.first_sale_new = false;
        }
    }
    catalog::counters::apply(tx, &ranges, &allocations, &raffles).await?;
    // Voids last, after the counters took the batch's new sales: one statement voids every
    // sold ticket of the voided orders (issued before or in this batch); their ranges' and
    // blocks' counts move from sold to voided. The raffle's own count moved with its delta.
    if !w.voids.is_empty() {
        let (orders, reasons): (Vec<Uuid>, Vec<String>) = w.voids.into_iter().unzip();
        let mut per_range: BTreeMap<Uuid, i64> = BTreeMap::new();
        let mut per_allocation: BTreeMap<Uuid, i64> = BTreeMap::new();
        for (range, allocation) in sales::tickets::void_sold(tx, &orders, &reasons).await? {
            *per_range.entry(range).or_default() += 1;
            if let Some(a) = allocation {
                *per_allocation.entry(a).or_default() += 1;
            }
        }
        let per_range: Vec<(Uuid, i64)> = per_range.into_iter().collect();
        let per_allocation: Vec<(Uuid, i64)> = per_allocation.into_iter().collect();
        catalog::counters::move_to_voided(tx, &per_range, &per_allocation).await?;
    }
    Ok(())
}

/// Gives back the holds of the orders just decided (paid, failed, rejected, refunded):
/// their tickets are sold now, or free for others.
async fn release_holds(
    tx: &Transaction<'_>,
    d: &mut Decider,
    decided: &[OrderUpdate],
) -> Result<(), HandlerError> {
    let mut released: HashMap<Uuid, i64> = HashMap::new();
    for update in decided {
        if let Some(o) = d.state.orders.get_mut(&update.0)
            && o.held
        {
            o.held = false;
            *released.entry(o.raffle_id).or_default() += i64::from(o.ticket_count);
        }
    }
    if released.is_empty() {
        return Ok(());
    }
    for (raffle, n) in &released {
        if let Some(r) = d.state.raffles.get_mut(raffle) {
            r.held_tickets = (r.held_tickets - n).max(0);
        }
    }
    let (raffles, counts): (Vec<Uuid>, Vec<i64>) = released.into_iter().unzip();
    sales::holds::release(tx, &raffles, &counts).await?;
    Ok(())
}

/// Payments the provider captured and the allocator refused are owed back to the buyers, in
/// the transaction that refuses them (the refunds worker pays them; the ledger books them as
/// it consumes the rejection).
async fn owe_refunds(
    tx: &Transaction<'_>,
    rejections: &[super::decide::Rejection],
) -> Result<(), HandlerError> {
    let mut owed = Vec::new();
    for r in rejections {
        let e = &r.event;
        let (Some(payment), Some(amount)) = (&e.payment, e.money()) else {
            continue;
        };
        if e.kind != SaleEventKind::SaleCompleted || !r.code.refunds_payment() {
            continue;
        }
        owed.push(refunds::NewObligation {
            raffle_id: e.raffle_id,
            order_id: e.order_id,
            source_key: schemas::RefundSource::SaleEvent(e.event_id).key(),
            reason_code: r.code.as_str(),
            reason: &r.reason,
            provider: &payment.provider,
            payment_reference: &payment.reference,
            amount,
        });
    }
    let new = refunds::obligations::owe(tx, &owed).await?;
    if new > 0 {
        tracing::info!(refunds = new, "refunds owed for rejected payments");
    }
    Ok(())
}
