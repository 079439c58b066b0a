//! Online sales as the decide phase judges them: a payment completes its pending order and
//! issues the next numbers of the order's range; a failed attempt leaves the order payable;
//! a refund voids what the order holds.

use schemas::{PaymentStatus, RangeRef, SaleEvent, SaleRefusal, SaleSource, TicketEventKind};

use super::decide::{Decider, NewTicket, Outcome, Rejection};
use super::wire_time;

impl Decider {
    pub(super) fn complete_online(&mut self, event: SaleEvent) -> Outcome {
        let Some(order_id) = event.order_id else {
            return self.reject(&event, SaleRefusal::Invalid, "no order id".into());
        };
        let Some(order) = self.state.orders.get(&order_id) else {
            return self.reject(
                &event,
                SaleRefusal::UnknownOrder,
                format!("order {order_id} does not exist"),
            );
        };
        let payment = event
            .payment
            .as_ref()
            .map(|p| (p.provider.clone(), p.reference.clone()));
        match order.status {
            PaymentStatus::Pending => {}
            // The same payment again is a re-delivery; another payment for a paid order (a
            // buyer who paid twice) is rejected with the reason, so that it is refunded.
            PaymentStatus::Completed => match (&payment, &order.paid_by) {
                (Some(new), Some(old)) if new != old => {
                    let reason = format!(
                        "order {order_id} is already paid by payment {} of {}; payment {} of {} is to be refunded",
                        old.1, old.0, new.1, new.0
                    );
                    return self.reject(&event, SaleRefusal::OrderAlreadyPaid, reason);
                }
                _ => return Outcome::Duplicate,
            },
            other => {
                if !self
                    .state
                    .rejected_keys
                    .insert(event.idempotency_key.clone())
                {
                    return Outcome::Duplicate;
                }
                let reason =
                    format!("order {order_id} is {other}; a payment for it cannot issue tickets");
                self.emit(
                    &event,
                    TicketEventKind::SaleRejected,
                    Vec::new(),
                    Some(reason.clone()),
                );
                self.decided.rejections.push(Rejection {
                    event,
                    code: SaleRefusal::OrderNotPending,
                    reason,
                });
                return Outcome::Applied;
            }
        }
        if order.raffle_id != event.raffle_id
            || order.source != SaleSource::Online
            || event.package_id.is_some_and(|p| p != order.package_id)
            || event.money() != Some(order.amount)
        {
            return self.reject(
                &event,
                SaleRefusal::OrderMismatch,
                format!("payment does not match order {order_id} (raffle, amount or currency)"),
            );
        }
        if let Some(key @ (provider, reference)) = &payment
            && let Some(&other) = self.state.paid_by.get(key)
            && other != order_id
        {
            return self.reject(
                &event,
                SaleRefusal::PaymentReused,
                format!(
                    "payment {reference} of {provider} already paid order {other}; it cannot pay order {order_id}"
                ),
            );
        }
        let count = i64::from(order.ticket_count);
        let held = order.held;
        if let Err((code, reason)) = self.admit(&event, count) {
            return self.reject(&event, code, reason);
        }
        // Its hold's time ran out: what is left may be held for others' payments.
        if !held
            && let Some(r) = self.state.raffles.get(&event.raffle_id)
            && r.total_sold + r.sold_delta + r.held_tickets + count > r.max_tickets
        {
            let reason = format!(
                "the hold of order {order_id} ran out and the {} tickets left are held for payments in progress",
                (r.max_tickets - r.total_sold - r.sold_delta).max(0)
            );
            return self.reject(&event, SaleRefusal::SoldOutHoldExpired, reason);
        }
        let RangeRef::Range(range_id) = event.range_partition.range else {
            return self.reject(
                &event,
                SaleRefusal::Invalid,
                "an online sale must name a range".into(),
            );
        };
        let Some(range) = self.state.ranges.get_mut(&range_id) else {
            return self.reject(
                &event,
                SaleRefusal::UnknownRange,
                format!("range {range_id} does not exist"),
            );
        };
        if range.raffle_id != event.raffle_id || range.range_type == "rsu" {
            return self.reject(
                &event,
                SaleRefusal::Invalid,
                format!("range {range_id} is not an online range of this raffle"),
            );
        }
        if range.next + count - 1 > range.end {
            let left = range.end - range.next + 1;
            return self.reject(
                &event,
                SaleRefusal::RangeExhausted,
                format!("range {range_id} has {left} numbers left"),
            );
        }
        let first = range.next;
        range.next += count;
        range.next_changed = true;
        range.sold_delta += count;
        let paid = wire_time(event.occurred_at_us);
        let numbers: Vec<i64> = (first..first + count).collect();
        for &n in &numbers {
            assert!(n <= range.end, "number {n} beyond range {range_id}");
            self.decided.tickets.push(NewTicket {
                raffle_id: event.raffle_id,
                order_id,
                range_id,
                allocation_id: None,
                number: n,
                voided: false,
                sold_at: paid,
                sold_by: None,
            });
        }
        self.count_sale(event.raffle_id, count, paid);
        if let Some(o) = self.state.orders.get_mut(&order_id) {
            o.status = PaymentStatus::Completed;
            o.paid_by.clone_from(&payment);
        }
        let (provider, reference) = payment.clone().unzip();
        if let Some(p) = payment {
            self.state.paid_by.insert(p, order_id);
        }
        self.decided.order_updates.push((
            order_id,
            PaymentStatus::Completed,
            provider,
            reference,
            Some(paid),
            None,
        ));
        self.emit(&event, TicketEventKind::TicketsIssued, numbers, None);
        Outcome::Applied
    }

    pub(super) fn fail_online(&mut self, event: SaleEvent) -> Outcome {
        let Some(order_id) = event.order_id else {
            return Outcome::Duplicate;
        };
        match self.state.orders.get_mut(&order_id) {
            Some(o) if o.status == PaymentStatus::Pending => {
                o.status = PaymentStatus::Failed;
                self.decided.order_updates.push((
                    order_id,
                    PaymentStatus::Failed,
                    None,
                    None,
                    None,
                    event.reason.clone(),
                ));
                Outcome::Applied
            }
            // Already paid, failed or unknown: nothing to undo.
            _ => Outcome::Duplicate,
        }
    }

    pub(super) fn refund(&mut self, event: SaleEvent) -> Outcome {
        let Some(order_id) = event.order_id else {
            return Outcome::Duplicate;
        };
        let status = self.state.orders.get(&order_id).map(|o| o.status);
        // A refund of another payment than the one that paid the order (a second payment,
        // refunded because the order was already paid) leaves the order's tickets alone.
        let paid_by = self
            .state
            .orders
            .get(&order_id)
            .and_then(|o| o.paid_by.clone());
        if let (Some(refunded), Some(paid)) = (&event.payment, &paid_by)
            && (refunded.provider.as_str(), refunded.reference.as_str())
                != (paid.0.as_str(), paid.1.as_str())
        {
            tracing::info!(raffle = %event.raffle_id, order = %order_id, payment = %refunded.reference,
                           paid_by = %paid.1, "refund of another payment of the order: tickets kept");
            return Outcome::Applied;
        }
        let paid = self
            .state
            .orders
            .get(&order_id)
            .map(|o| o.amount.amount_minor());
        let already = self
            .state
            .orders
            .get(&order_id)
            .map_or(0, |o| o.refunded_minor);
        if status == Some(PaymentStatus::Completed) && paid.is_some_and(|p| event.amount_minor < p)
        {
            // A partial refund: the tickets stay (ingest noted it for finance); the money that
            // left is booked as a reversal of what is new since the last one (the provider
            // reports the refunded amount cumulatively).
            let new = event.amount_minor - already;
            if new <= 0 {
                return Outcome::Duplicate;
            }
            if let Some(o) = self.state.orders.get_mut(&order_id) {
                o.refunded_minor = event.amount_minor;
            }
            self.decided.refunded.push((order_id, event.amount_minor));
            tracing::info!(raffle = %event.raffle_id, order = %order_id, refunded_minor = event.amount_minor, new_minor = new, "partial refund: tickets kept");
            let mut part = event.clone();
            part.amount_minor = new;
            self.emit(
                &part,
                TicketEventKind::TicketsVoided,
                Vec::new(),
                Some("partial refund: tickets kept".into()),
            );
            return Outcome::Applied;
        }
        match status {
            Some(PaymentStatus::Completed) => {}
            Some(PaymentStatus::Refunded) | Some(PaymentStatus::Voided) => {
                return Outcome::Duplicate;
            }
            // The platform's own refund of a payment it rejected (sold out, after the order
            // ended): the order holds no tickets, and the refunds crate booked the money.
            Some(PaymentStatus::Rejected | PaymentStatus::Failed) => {
                tracing::info!(raffle = %event.raffle_id, order = %order_id,
                               "refund of a rejected order's payment: nothing to void");
                return Outcome::Duplicate;
            }
            Some(_) | None => {
                return self.reject(
                    &event,
                    SaleRefusal::NothingToRefund,
                    format!("order {order_id} holds no tickets to refund"),
                );
            }
        }
        let raffle_state = self
            .state
            .raffles
            .get(&event.raffle_id)
            .map(|r| r.state.clone())
            .unwrap_or_default();
        // A cancelled raffle's orders are all refunded (the refunds worker owes them): the
        // provider's refund voids the tickets as any refund does.
        if !["active", "sales_closed", "cancelled"].contains(&raffle_state.as_str()) {
            return self.reject(
                &event,
                SaleRefusal::RaffleSealed,
                format!("raffle is {raffle_state}; refunds after the seal go through the ledger"),
            );
        }
        if let Some(o) = self.state.orders.get_mut(&order_id) {
            o.status = PaymentStatus::Refunded;
        }
        let reason = event.reason.clone().unwrap_or_else(|| "refunded".into());
        // What partial refunds reversed already is not reversed again.
        let mut rest = event;
        rest.amount_minor = paid
            .unwrap_or(rest.amount_minor)
            .saturating_sub(already)
            .max(0);
        self.void_order(&rest, order_id, PaymentStatus::Refunded, reason)
    }
}
