//! The write phase: what the decide phase staged, written with a few set-based statements in
//! the batch's transaction.

use std::collections::{BTreeMap, HashMap};

use catalog::counters::{AllocationChange, RaffleChange, RangeChange};

use platform::HandlerError;
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
    if !w.new_orders.is_empty() {
        let o = &w.new_orders;
        tx.execute(
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
    }
    // Tickets before the order updates: the tickets' check (V14) locks each order in
    // key-share mode, which costs nothing while the row is still the one this batch
    // locked for update, and a lock record per order once the update made a new version.
    if !w.tickets.is_empty() {
        let t = &w.tickets;
        // Time-ordered ids (v7), made here: each lands at the right edge of the primary
        // key instead of on a random leaf page (and its full-page image in the WAL after
        // every checkpoint). 5,000 tickets in psql: 57 → 41 ms.
        let ids: Vec<Uuid> = t.iter().map(|_| Uuid::now_v7()).collect();
        tx.execute(
            "INSERT INTO sales.tickets (id, raffle_id, order_id, range_id, rsu_allocation_id, draw_number, state, sold_at, sold_by,
                                        voided_at, voided_by, voided_reason)
             SELECT u.id, u.raffle_id, u.order_id, u.range_id, u.allocation_id, u.number,
                    CASE WHEN u.voided THEN 'voided' ELSE 'sold' END, u.sold_at, u.sold_by,
                    CASE WHEN u.voided THEN u.sold_at END, CASE WHEN u.voided THEN u.sold_by END,
                    CASE WHEN u.voided THEN 'voided on the RSU before sync' END
               FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[], $6::bool[], $7::timestamptz[], $8::text[],
                           $9::uuid[])
                 AS u(raffle_id, order_id, range_id, allocation_id, number, voided, sold_at, sold_by, id)",
            &[
                &t.iter().map(|x| x.raffle_id).collect::<Vec<_>>(),
                &t.iter().map(|x| x.order_id).collect::<Vec<_>>(),
                &t.iter().map(|x| x.range_id).collect::<Vec<_>>(),
                &t.iter().map(|x| x.allocation_id).collect::<Vec<_>>(),
                &t.iter().map(|x| x.number).collect::<Vec<_>>(),
                &t.iter().map(|x| x.voided).collect::<Vec<_>>(),
                &t.iter().map(|x| x.sold_at).collect::<Vec<_>>(),
                &t.iter().map(|x| x.sold_by.clone()).collect::<Vec<_>>(),
                &ids,
            ],
        )
        .await?;
    }
    if !w.order_updates.is_empty() {
        let u = &w.order_updates;
        tx.execute(
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
    }
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
        for row in tx
            .query(
                "UPDATE sales.tickets t SET state = 'voided', voided_at = now(), voided_by = 'allocator',
                        voided_reason = u.reason, updated_at = now()
                   FROM unnest($1::uuid[], $2::text[]) AS u(order_id, reason)
                  WHERE t.order_id = u.order_id AND t.state = 'sold'
              RETURNING t.range_id, t.rsu_allocation_id",
                &[&orders, &reasons],
            )
            .await?
        {
            *per_range.entry(row.get(0)).or_default() += 1;
            if let Some(a) = row.get::<_, Option<Uuid>>(1) {
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
    tx
        .execute(
            "UPDATE sales.capacity_holds h SET held_tickets = h.held_tickets - u.n
               FROM unnest($1::uuid[], $2::bigint[]) AS u(raffle_id, n) WHERE h.raffle_id = u.raffle_id",
            &[&raffles, &counts],
        )
        .await?;
    Ok(())
}
