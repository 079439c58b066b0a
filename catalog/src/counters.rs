//! A raffle's counts of numbers, kept next to its ranges, blocks and validation blocks: the
//! one writer of the count columns of `catalog.raffle_events` (total sold and voided, the
//! first sale), `catalog.raffle_ranges` (the next number, sold, voided),
//! `catalog.rsu_allocations` (the next number, tickets sold and voided, exhaustion) and
//! `catalog.validation_number_blocks` (the next sequence, numbers used). The allocator decides
//! the changes; they are written here, as deltas, once per batch.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// A range's cursor (never moved back) and its sold and voided counts' changes.
#[derive(Debug, Clone, Copy)]
pub struct RangeChange {
    pub range_id: Uuid,
    pub next_number: i64,
    pub sold: i64,
    pub voided: i64,
}

/// An RSU block's cursor and counts' changes, and its validation block's.
#[derive(Debug, Clone, Copy)]
pub struct AllocationChange {
    pub allocation_id: Uuid,
    pub next_number: i64,
    pub sold: i64,
    pub voided: i64,
    pub validation_block_id: Uuid,
    pub next_sequence: i32,
    pub validation_numbers_used: i32,
}

/// A raffle's totals' changes, and its first sale if this is it.
#[derive(Debug, Clone, Copy)]
pub struct RaffleChange {
    pub raffle_id: Uuid,
    pub sold: i64,
    pub voided: i64,
    pub first_sale: Option<DateTime<Utc>>,
}

/// Writes the changes. A block whose cursor passed its end is exhausted.
pub async fn apply(
    client: &impl GenericClient,
    ranges: &[RangeChange],
    allocations: &[AllocationChange],
    raffles: &[RaffleChange],
) -> Result<(), tokio_postgres::Error> {
    for r in ranges {
        client
            .execute(
                "UPDATE catalog.raffle_ranges SET next_number = greatest(next_number, $2), sold = sold + $3, voided = voided + $4
                  WHERE id = $1",
                &[&r.range_id, &r.next_number, &r.sold, &r.voided],
            )
            .await?;
    }
    for a in allocations {
        client
            .execute(
                "UPDATE catalog.rsu_allocations SET next_draw_number = greatest(next_draw_number, $2),
                        tickets_sold = tickets_sold + $3, tickets_voided = tickets_voided + $4,
                        state = CASE WHEN greatest(next_draw_number, $2) > end_number AND state = 'active' THEN 'exhausted' ELSE state END,
                        exhausted_at = CASE WHEN greatest(next_draw_number, $2) > end_number THEN coalesce(exhausted_at, now()) END
                  WHERE id = $1",
                &[&a.allocation_id, &a.next_number, &a.sold, &a.voided],
            )
            .await?;
        client
            .execute(
                "UPDATE catalog.validation_number_blocks SET next_sequence = greatest(next_sequence, $2),
                        numbers_used = numbers_used + $3 WHERE id = $1",
                &[
                    &a.validation_block_id,
                    &a.next_sequence,
                    &a.validation_numbers_used,
                ],
            )
            .await?;
    }
    for r in raffles {
        client
            .execute(
                "UPDATE catalog.raffle_events SET total_sold = total_sold + $2, total_voided = total_voided + $3,
                        first_sale_at = coalesce(first_sale_at, $4) WHERE id = $1",
                &[&r.raffle_id, &r.sold, &r.voided, &r.first_sale],
            )
            .await?;
    }
    Ok(())
}

/// Moves tickets voided after they were sold from sold to voided in their ranges' and blocks'
/// counts: (range, tickets) and (allocation, tickets).
pub async fn move_to_voided(
    client: &impl GenericClient,
    per_range: &[(Uuid, i64)],
    per_allocation: &[(Uuid, i64)],
) -> Result<(), tokio_postgres::Error> {
    if !per_range.is_empty() {
        let (ids, counts): (Vec<Uuid>, Vec<i64>) = per_range.iter().copied().unzip();
        client
            .execute(
                "UPDATE catalog.raffle_ranges g SET sold = g.sold - c.n, voided = g.voided + c.n
                   FROM unnest($1::uuid[], $2::bigint[]) AS c(id, n) WHERE g.id = c.id",
                &[&ids, &counts],
            )
            .await?;
    }
    if !per_allocation.is_empty() {
        let (ids, counts): (Vec<Uuid>, Vec<i64>) = per_allocation.iter().copied().unzip();
        client
            .execute(
                "UPDATE catalog.rsu_allocations a SET tickets_sold = a.tickets_sold - c.n, tickets_voided = a.tickets_voided + c.n
                   FROM unnest($1::uuid[], $2::bigint[]) AS c(id, n) WHERE a.id = c.id",
                &[&ids, &counts],
            )
            .await?;
    }
    Ok(())
}
