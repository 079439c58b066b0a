//! The decide phase: every event of a batch judged in partition order against the loaded
//! state, in memory, without a transaction. What it decides — orders, tickets, voids,
//! rejections, ticket events, counter changes — is written afterwards in one go
//! ([`super::write`]), so the same events on the same state always decide the same. Online
//! sales are judged in [`super::online`], RSU sales in [`super::rsu`].

use chrono::DateTime;
use chrono::Utc;
use schemas::{
    DrawNumber, PaymentStatus, SaleEvent, SaleEventKind, SaleRefusal, SaleSource, TicketEvent,
    TicketEventKind,
};
use uuid::Uuid;

use super::load::Loaded;
use super::wire_time;

/// What a batch decided, to be written in one go.
#[derive(Default)]
pub(super) struct Decided {
    /// RSU orders, recorded as they arrive.
    pub(super) new_orders: Vec<NewOrder>,
    pub(super) order_updates: Vec<OrderUpdate>,
    pub(super) tickets: Vec<NewTicket>,
    pub(super) rejections: Vec<Rejection>,
    /// Orders whose sold tickets are voided, with the reason: (order, reason).
    pub(super) voids: Vec<(Uuid, String)>,
    /// Orders refunded in part, tickets kept: (order, refunded so far).
    pub(super) refunded: Vec<(Uuid, i64)>,
    pub(super) outbox: Vec<(Vec<u8>, Vec<u8>)>,
}

/// (order, new status, payment provider, payment reference, paid at, reason).
pub(super) use sales::orders::StatusChange as OrderUpdate;

pub(super) use sales::orders::NewRsuOrder as NewOrder;
pub(super) use sales::tickets::NewTicket;

pub(super) struct Rejection {
    pub(super) event: SaleEvent,
    pub(super) code: SaleRefusal,
    pub(super) reason: String,
}

/// What a batch decided on, next to the state it decided against.
pub(super) struct Decider {
    pub(super) state: Loaded,
    pub(super) decided: Decided,
}

/// An event's effect: it changed something, or was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Applied,
    Duplicate,
}

impl Decider {
    pub(super) fn new(state: Loaded) -> Self {
        Self {
            state,
            decided: Decided::default(),
        }
    }

    /// Decides one event.
    pub(super) fn decide(&mut self, event: SaleEvent) -> Outcome {
        match event.kind {
            SaleEventKind::SaleCompleted => self.complete_online(event),
            SaleEventKind::PaymentFailed => self.fail_online(event),
            SaleEventKind::RsuSaleRecorded => self.record_rsu(event, false),
            SaleEventKind::RsuSaleVoided => self.void_rsu(event),
            SaleEventKind::RefundRequested => self.refund(event),
        }
    }

    pub(super) fn reject(
        &mut self,
        event: &SaleEvent,
        code: SaleRefusal,
        reason: String,
    ) -> Outcome {
        if !self
            .state
            .rejected_keys
            .insert(event.idempotency_key.clone())
        {
            return Outcome::Duplicate;
        }
        tracing::info!(raffle = %event.raffle_id, order = ?event.order_id, %code, reason = ?reason, "sale rejected");
        if let Some(order) = event.order_id
            && let Some(o) = self.state.orders.get_mut(&order)
            && o.status == PaymentStatus::Pending
        {
            o.status = PaymentStatus::Rejected;
            self.decided.order_updates.push((
                order,
                PaymentStatus::Rejected,
                None,
                None,
                None,
                Some(reason.clone()),
            ));
        }
        self.emit(
            event,
            TicketEventKind::SaleRejected,
            Vec::new(),
            Some(reason.clone()),
        );
        self.decided.rejections.push(Rejection {
            event: event.clone(),
            code,
            reason,
        });
        Outcome::Applied
    }

    pub(super) fn emit(
        &mut self,
        event: &SaleEvent,
        kind: TicketEventKind,
        numbers: Vec<i64>,
        reason: Option<String>,
    ) {
        let rsu = event.rsu_sale.as_ref();
        let ticket = TicketEvent {
            event_id: Uuid::now_v7(),
            kind,
            raffle_id: event.raffle_id,
            order_id: event.order_id,
            sale_event_id: event.event_id,
            range_partition: event.range_partition,
            source: if rsu.is_some() {
                SaleSource::Rsu
            } else {
                SaleSource::Online
            },
            rsu_id: rsu.map(|s| s.rsu_id),
            allocation_id: rsu.map(|s| s.allocation_id),
            package_id: event.package_id,
            seller_id: rsu.and_then(|s| s.operator_id.clone()),
            amount_minor: event.amount_minor,
            currency: event.currency,
            draw_numbers: numbers
                .into_iter()
                .filter_map(|n| DrawNumber::new(n).ok())
                .collect(),
            validation_number: rsu.map(|s| s.validation_number.clone()),
            reason,
            occurred_at_us: event.occurred_at_us,
        };
        match schemas::encode(&ticket) {
            Ok(payload) => self
                .decided
                .outbox
                .push((event.raffle_id.to_string().into_bytes(), payload)),
            Err(e) => tracing::error!(error = %e, "cannot encode a ticket event"),
        }
    }

    /// Checks a sale against the raffle: state, sales window by payment time, capacity.
    pub(super) fn admit(&self, event: &SaleEvent, count: i64) -> Result<(), (SaleRefusal, String)> {
        let Some(r) = self.state.raffles.get(&event.raffle_id) else {
            return Err((
                SaleRefusal::UnknownRaffle,
                format!("raffle {} does not exist", event.raffle_id),
            ));
        };
        if r.state != "active" && r.state != "sales_closed" {
            return Err((
                SaleRefusal::RaffleNotSelling,
                format!("raffle is {}", r.state),
            ));
        }
        let paid = wire_time(event.occurred_at_us);
        if paid < r.sales_start || paid >= r.sales_end {
            return Err((
                SaleRefusal::OutsideSalesWindow,
                format!(
                    "sale at {paid} is outside the sales window {} .. {}",
                    r.sales_start, r.sales_end
                ),
            ));
        }
        if r.total_sold + r.sold_delta + count > r.max_tickets {
            return Err((
                SaleRefusal::RaffleSoldOut,
                format!(
                    "{count} tickets would exceed the raffle's maximum of {} ({} sold)",
                    r.max_tickets,
                    r.total_sold + r.sold_delta
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn count_sale(&mut self, raffle: Uuid, count: i64, paid: DateTime<Utc>) {
        if let Some(r) = self.state.raffles.get_mut(&raffle) {
            r.sold_delta += count;
            if r.first_sale.is_none() {
                r.first_sale = Some(paid);
                r.first_sale_new = true;
            }
        }
    }

    /// Voids every sold ticket of the order — those sold before this batch and those issued
    /// earlier in it — and gives the order its new status. The tickets themselves are voided
    /// by one statement for the whole batch ([`super::write`]).
    pub(super) fn void_order(
        &mut self,
        event: &SaleEvent,
        order_id: Uuid,
        status: PaymentStatus,
        reason: String,
    ) -> Outcome {
        let mut numbers = self
            .state
            .sold_tickets
            .remove(&order_id)
            .unwrap_or_default();
        numbers.extend(
            self.decided
                .tickets
                .iter()
                .filter(|t| t.order_id == order_id && !t.voided)
                .map(|t| t.number),
        );
        let n = numbers.len() as i64;
        if let Some(r) = self.state.raffles.get_mut(&event.raffle_id) {
            r.sold_delta -= n;
            r.voided_delta += n;
        }
        self.decided.voids.push((order_id, reason.clone()));
        self.decided
            .order_updates
            .push((order_id, status, None, None, None, Some(reason.clone())));
        self.emit(event, TicketEventKind::TicketsVoided, numbers, Some(reason));
        Outcome::Applied
    }
}
