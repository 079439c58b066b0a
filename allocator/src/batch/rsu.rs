//! RSU sales as the decide phase judges them: a recorded sale claims its numbers in its
//! allocation and its validation number in its block; a void voids a recorded sale, or records
//! one voided before it ever synced.

use std::collections::HashSet;

use schemas::{PaymentStatus, RsuSale, SaleEvent, SaleRefusal, TicketEventKind};
use uuid::Uuid;

use super::decide::{Decider, NewOrder, NewTicket, Outcome};
use super::wire_time;

/// What the checks of an RSU sale found, for recording it.
struct Checked {
    range_id: Uuid,
    /// The validation number's place in its block.
    sequence: i32,
    count: i64,
    /// The block's first number.
    a_start: i64,
}

impl Decider {
    pub(super) fn record_rsu(&mut self, event: SaleEvent, voided: bool) -> Outcome {
        let Some(sale) = event.rsu_sale.clone() else {
            return self.reject(&event, SaleRefusal::Invalid, "no RSU sale".into());
        };
        if self
            .state
            .seen_rsu_sales
            .contains(&(sale.rsu_id, sale.local_id.clone()))
        {
            return Outcome::Duplicate;
        }
        let checked = match self.check_rsu_sale(&event, &sale, voided) {
            Ok(c) => c,
            Err((code, reason)) => return self.reject(&event, code, reason),
        };
        let Checked {
            range_id,
            sequence,
            count,
            a_start,
        } = checked;
        let sold_at = wire_time(event.occurred_at_us);
        // Accepted: claim everything in memory, then stage the writes.
        self.state
            .seen_rsu_sales
            .insert((sale.rsu_id, sale.local_id.clone()));
        self.state
            .taken_validation
            .insert((event.raffle_id, sale.validation_number.clone()));
        let order_id = event.order_id.unwrap_or_else(Uuid::now_v7);
        let max = sale
            .draw_numbers
            .iter()
            .map(|n| n.get())
            .max()
            .unwrap_or(a_start - 1);
        if let Some(a) = self.state.allocations.get_mut(&sale.allocation_id) {
            a.next = a.next.max(max + 1);
            if voided {
                a.voided_delta += count;
            } else {
                a.sold_delta += count;
            }
            a.next_sequence = a.next_sequence.max(sequence + 1);
            a.used_delta += 1;
        }
        if let Some(r) = self.state.ranges.get_mut(&range_id) {
            if voided {
                r.voided_delta += count;
            } else {
                r.sold_delta += count;
            }
        }
        if voided {
            if let Some(r) = self.state.raffles.get_mut(&event.raffle_id) {
                r.voided_delta += count;
            }
        } else {
            self.count_sale(event.raffle_id, count, sold_at);
        }
        let numbers: Vec<i64> = sale.draw_numbers.iter().map(|n| n.get()).collect();
        for &n in &numbers {
            self.state.taken_numbers.insert((event.raffle_id, n));
            self.decided.tickets.push(NewTicket {
                raffle_id: event.raffle_id,
                order_id,
                range_id,
                allocation_id: Some(sale.allocation_id),
                number: n,
                voided,
                sold_at,
                sold_by: sale.operator_id.clone(),
            });
        }
        let customer = event.customer.clone().unwrap_or_default();
        self.decided.new_orders.push(NewOrder {
            id: order_id,
            raffle_id: event.raffle_id,
            package_id: event.package_id.unwrap_or_default(),
            validation_number: sale.validation_number.clone(),
            ticket_count: count as i32,
            amount_minor: event.amount_minor,
            currency: event.currency.to_string(),
            status: if voided {
                PaymentStatus::Voided
            } else {
                PaymentStatus::Completed
            },
            idempotency_key: event.idempotency_key.clone(),
            rsu_id: sale.rsu_id,
            allocation_id: sale.allocation_id,
            operator_id: sale.operator_id.clone(),
            is_offline: sale.is_offline_sale,
            created_on_device: sold_at,
            local_id: sale.local_id.clone(),
            customer_name: customer.name,
            customer_email: customer.email,
            customer_phone: customer.phone,
            // Checked as 64 hex digits at the edge; anything else would be no code at all.
            check_code_hash: sale
                .check_code_hash
                .as_deref()
                .and_then(|h| hex::decode(h).ok())
                .filter(|h| h.len() == 32),
        });
        let mut issued = event.clone();
        issued.order_id = Some(order_id);
        let kind = if voided {
            TicketEventKind::TicketsVoided
        } else {
            TicketEventKind::TicketsIssued
        };
        self.emit(&issued, kind, numbers, event.reason.clone());
        Outcome::Applied
    }

    /// Everything an RSU sale must meet before it is recorded: its block is the device's for
    /// this raffle, its package matches, its numbers lie in the block and are free, its
    /// validation number lies in the block and is free; and, unless it was voided before it
    /// synced, the raffle takes it and it arrived within the offline expiry.
    fn check_rsu_sale(
        &self,
        event: &SaleEvent,
        sale: &RsuSale,
        voided: bool,
    ) -> Result<Checked, (SaleRefusal, String)> {
        let Some(a) = self.state.allocations.get(&sale.allocation_id) else {
            return Err((
                SaleRefusal::UnknownAllocation,
                format!("allocation {} does not exist", sale.allocation_id),
            ));
        };
        if a.rsu_id != sale.rsu_id || a.raffle_id != event.raffle_id {
            return Err((
                SaleRefusal::AllocationMismatch,
                format!(
                    "allocation {} is not RSU {}'s for this raffle",
                    sale.allocation_id, sale.rsu_id
                ),
            ));
        }
        let Some(package) = event.package_id.and_then(|p| self.state.packages.get(&p)) else {
            return Err((
                SaleRefusal::UnknownPackage,
                "the sale names no package of this raffle".into(),
            ));
        };
        let count = sale.draw_numbers.len() as i64;
        if package.raffle_id != event.raffle_id
            || i64::from(package.ticket_count) != count
            || event.money() != Some(package.price)
        {
            return Err((
                SaleRefusal::PackageMismatch,
                "draw numbers, amount or currency do not match the package".into(),
            ));
        }
        let (a_start, a_end, prefix, first_seq, block_size, range_id) = (
            a.start,
            a.end,
            a.prefix.clone(),
            a.first_sequence,
            a.block_size,
            a.range_id,
        );
        let mut distinct = HashSet::new();
        for n in &sale.draw_numbers {
            let n = n.get();
            if n < a_start || n > a_end {
                return Err((
                    SaleRefusal::NumberOutsideAllocation,
                    format!("draw number {n} is outside the allocation {a_start}..{a_end}"),
                ));
            }
            if !distinct.insert(n) || self.state.taken_numbers.contains(&(event.raffle_id, n)) {
                return Err((
                    SaleRefusal::NumberAlreadyUsed,
                    format!("draw number {n} is already used"),
                ));
            }
        }
        let sequence = schemas::ValidationNumber::sequence_in(&sale.validation_number, &prefix)
            .filter(|s| *s >= first_seq && *s < first_seq + block_size);
        let Some(sequence) = sequence else {
            return Err((
                SaleRefusal::ValidationNumberOutsideBlock,
                format!(
                    "validation number {} is not in the allocation's block",
                    sale.validation_number
                ),
            ));
        };
        if self
            .state
            .taken_validation
            .contains(&(event.raffle_id, sale.validation_number.clone()))
        {
            return Err((
                SaleRefusal::ValidationNumberUsed,
                format!(
                    "validation number {} is already used",
                    sale.validation_number
                ),
            ));
        }
        let sold_at = wire_time(event.occurred_at_us);
        let received = wire_time(event.received_at_us);
        if !voided {
            self.admit(event, count)?;
            if sale.is_offline_sale
                && received - sold_at > chrono::Duration::minutes(self.state.offline_expiry_minutes)
            {
                return Err((
                    SaleRefusal::OfflineSaleExpired,
                    format!(
                        "offline sale from {sold_at} arrived after the {}-minute offline expiry",
                        self.state.offline_expiry_minutes
                    ),
                ));
            }
        }
        Ok(Checked {
            range_id,
            sequence,
            count,
            a_start,
        })
    }

    /// A void from the device: of a sale already recorded (its tickets are voided), or of a
    /// sale voided before it ever synced (recorded with its numbers voided).
    pub(super) fn void_rsu(&mut self, event: SaleEvent) -> Outcome {
        let Some(sale) = event.rsu_sale.clone() else {
            return Outcome::Duplicate;
        };
        let existing = if self
            .state
            .seen_rsu_sales
            .contains(&(sale.rsu_id, sale.local_id.clone()))
        {
            self.recorded_rsu_order(sale.rsu_id, &sale.local_id)
        } else {
            None
        };
        match existing {
            None => self.record_rsu(event, true),
            Some((order_id, status)) => {
                if status != PaymentStatus::Completed {
                    return Outcome::Duplicate;
                }
                if let Some(o) = self.state.orders.get_mut(&order_id) {
                    o.status = PaymentStatus::Voided;
                }
                let mut e = event.clone();
                e.order_id = Some(order_id);
                let reason = event
                    .reason
                    .clone()
                    .unwrap_or_else(|| "voided on the RSU".into());
                self.void_order(&e, order_id, PaymentStatus::Voided, reason)
            }
        }
    }

    /// The order of the RSU sale (device, local id) and its status now: recorded before this
    /// batch, or earlier in it.
    fn recorded_rsu_order(&self, rsu_id: Uuid, local_id: &str) -> Option<(Uuid, PaymentStatus)> {
        let key = (rsu_id, local_id.to_owned());
        if let Some(&id) = self.state.rsu_orders.get(&key) {
            return self.state.orders.get(&id).map(|o| (id, o.status));
        }
        let staged = self
            .decided
            .new_orders
            .iter()
            .find(|o| o.rsu_id == rsu_id && o.local_id == local_id)?;
        let status = match self.decided.voids.iter().find(|v| v.0 == staged.id) {
            Some(_) => PaymentStatus::Voided,
            None => staged.status,
        };
        Some((staged.id, status))
    }
}
