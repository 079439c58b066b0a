//! The decide phase alone, on state built in memory: no database, no broker.

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use schemas::{
    Currency, PaymentRef, RangePartition, RangeRef, SaleEvent, SaleEventKind, TicketEvent,
    TicketEventKind,
};
use uuid::Uuid;

use super::decide::{Decider, Outcome};
use super::load::{Loaded, Order, Raffle, Range};

const RANGE_START: i64 = 50_001;
const PRICE_PER_TICKET: i64 = 400;

/// A selling raffle of `max` tickets (`sold` of them sold before), one online range, and
/// `orders` pending orders of the given ticket counts.
struct Setup {
    raffle: Uuid,
    range: Uuid,
    orders: Vec<(Uuid, i32)>,
}

fn loaded(max: i64, sold: i64, orders: &[i32]) -> (Setup, Loaded) {
    let raffle = Uuid::now_v7();
    let range = Uuid::now_v7();
    let at = |h| {
        Utc.with_ymd_and_hms(2026, 11, 30, h, 0, 0)
            .single()
            .unwrap()
    };
    let mut state = Loaded::default();
    state.raffles.insert(
        raffle,
        Raffle {
            state: "active".into(),
            sales_start: at(0),
            sales_end: at(23),
            max_tickets: max,
            total_sold: sold,
            sold_delta: 0,
            voided_delta: 0,
            first_sale: None,
            first_sale_new: false,
            held_tickets: 0,
        },
    );
    state.ranges.insert(
        range,
        Range {
            raffle_id: raffle,
            range_type: "online".into(),
            next: RANGE_START + sold,
            end: RANGE_START + 1_000_000,
            next_changed: false,
            sold_delta: 0,
            voided_delta: 0,
        },
    );
    let mut ids = Vec::new();
    for &count in orders {
        let id = Uuid::now_v7();
        state.orders.insert(
            id,
            Order {
                raffle_id: raffle,
                package_id: Uuid::nil(),
                ticket_count: count,
                amount: schemas::Money::of(i64::from(count) * PRICE_PER_TICKET, "USD").unwrap(),
                refunded_minor: 0,
                status: schemas::PaymentStatus::Pending,
                source: schemas::SaleSource::Online,
                paid_by: None,
                held: true,
            },
        );
        ids.push((id, count));
    }
    let setup = Setup {
        raffle,
        range,
        orders: ids,
    };
    (setup, state)
}

fn event(s: &Setup, kind: SaleEventKind, order: (Uuid, i32), key: &str) -> SaleEvent {
    let paid = Utc
        .with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
        .single()
        .unwrap()
        .timestamp_micros();
    SaleEvent {
        event_id: Uuid::now_v7(),
        idempotency_key: key.to_owned(),
        kind,
        raffle_id: s.raffle,
        range_partition: RangePartition {
            raffle_id: s.raffle,
            range: RangeRef::Range(s.range),
        },
        order_id: Some(order.0),
        package_id: None,
        ticket_count: order.1,
        amount_minor: i64::from(order.1) * PRICE_PER_TICKET,
        currency: Currency::parse("USD").unwrap(),
        occurred_at_us: paid,
        received_at_us: paid,
        payment: Some(PaymentRef {
            provider: "stripe".into(),
            reference: format!("pi_{}", order.0),
            provider_event_id: format!("evt_{key}"),
        }),
        rsu_sale: None,
        customer: None,
        reason: None,
    }
}

fn ticket_events(d: &Decider) -> Vec<TicketEvent> {
    d.decided
        .outbox
        .iter()
        .map(|(_, payload)| schemas::decode::<TicketEvent>(payload).unwrap())
        .collect()
}

#[test]
fn a_payment_issues_the_next_numbers_once_and_a_refund_in_the_same_batch_voids_them() {
    let (s, state) = loaded(100, 10, &[5, 3]);
    let mut d = Decider::new(state);
    let paid = event(&s, SaleEventKind::SaleCompleted, s.orders[0], "a");
    assert_eq!(d.decide(paid.clone()), Outcome::Applied);
    assert_eq!(d.decide(paid), Outcome::Duplicate, "a re-delivery");
    assert_eq!(
        d.decide(event(&s, SaleEventKind::SaleCompleted, s.orders[1], "b")),
        Outcome::Applied
    );
    let numbers: Vec<i64> = d.decided.tickets.iter().map(|t| t.number).collect();
    assert_eq!(
        numbers,
        (50_011..50_019).collect::<Vec<_>>(),
        "gap-free from the cursor"
    );
    let refund = event(&s, SaleEventKind::RefundRequested, s.orders[0], "c");
    assert_eq!(d.decide(refund.clone()), Outcome::Applied);
    assert_eq!(d.decide(refund), Outcome::Duplicate, "refunded once");
    let events = ticket_events(&d);
    let voided = events
        .iter()
        .find(|e| e.kind == TicketEventKind::TicketsVoided)
        .expect("a void event");
    let voided: Vec<i64> = voided.draw_numbers.iter().map(|n| n.get()).collect();
    assert_eq!(voided, (50_011..50_016).collect::<Vec<_>>());
    assert_eq!(
        d.decided.voids,
        vec![(s.orders[0].0, "refunded".to_owned())]
    );
    let r = &d.state.raffles[&s.raffle];
    assert_eq!((r.sold_delta, r.voided_delta), (3, 5));
}

#[test]
fn a_refund_voids_the_tickets_sold_before_the_batch() {
    let (s, mut state) = loaded(100, 10, &[4]);
    let order = s.orders[0];
    if let Some(o) = state.orders.get_mut(&order.0) {
        o.status = schemas::PaymentStatus::Completed;
        o.held = false;
    }
    state
        .sold_tickets
        .insert(order.0, vec![50_003, 50_004, 50_005, 50_006]);
    let mut d = Decider::new(state);
    assert_eq!(
        d.decide(event(&s, SaleEventKind::RefundRequested, order, "r")),
        Outcome::Applied
    );
    let r = &d.state.raffles[&s.raffle];
    assert_eq!((r.sold_delta, r.voided_delta), (-4, 4));
    let voided = ticket_events(&d)
        .into_iter()
        .find(|e| e.kind == TicketEventKind::TicketsVoided)
        .expect("a void event");
    assert_eq!(voided.draw_numbers.len(), 4);
}

#[test]
fn partial_refunds_are_booked_once_each_and_a_whole_refund_reverses_only_the_rest() {
    let (s, mut state) = loaded(100, 10, &[4]);
    let order = s.orders[0];
    if let Some(o) = state.orders.get_mut(&order.0) {
        o.status = schemas::PaymentStatus::Completed;
        o.held = false;
        o.paid_by = Some(("stripe".into(), format!("pi_{}", order.0)));
    }
    state
        .sold_tickets
        .insert(order.0, vec![50_003, 50_004, 50_005, 50_006]);
    let mut d = Decider::new(state);
    let refunded = |key: &str, cumulative: i64| {
        let mut e = event(&s, SaleEventKind::RefundRequested, order, key);
        e.amount_minor = cumulative;
        e
    };
    assert_eq!(d.decide(refunded("p1", 500)), Outcome::Applied);
    assert_eq!(
        d.decide(refunded("p2", 500)),
        Outcome::Duplicate,
        "the same cumulative amount again"
    );
    assert_eq!(
        d.decide(refunded("p3", 1600)),
        Outcome::Applied,
        "then in whole"
    );
    let reversals: Vec<(usize, i64)> = ticket_events(&d)
        .into_iter()
        .filter(|e| e.kind == TicketEventKind::TicketsVoided)
        .map(|e| (e.draw_numbers.len(), e.amount_minor))
        .collect();
    assert_eq!(
        reversals,
        vec![(0, 500), (4, 1100)],
        "$5 while the tickets stay, then the rest with the tickets"
    );
    assert_eq!(d.decided.refunded, vec![(order.0, 500)]);
}

#[test]
fn a_refund_of_another_payment_of_the_order_leaves_its_tickets() {
    let (s, mut state) = loaded(100, 10, &[4]);
    let order = s.orders[0];
    if let Some(o) = state.orders.get_mut(&order.0) {
        o.status = schemas::PaymentStatus::Completed;
        o.held = false;
        o.paid_by = Some(("stripe".into(), "pi_the_first".into()));
    }
    state.sold_tickets.insert(order.0, vec![50_003, 50_004]);
    let mut d = Decider::new(state);
    assert_eq!(
        d.decide(event(&s, SaleEventKind::RefundRequested, order, "r2")),
        Outcome::Applied
    );
    assert!(ticket_events(&d).is_empty(), "nothing voided");
    assert!(d.decided.voids.is_empty());
}

#[test]
fn a_payment_beyond_the_raffle_is_rejected_for_refund_and_recorded_once() {
    let (s, state) = loaded(12, 10, &[5]);
    let mut d = Decider::new(state);
    let paid = event(&s, SaleEventKind::SaleCompleted, s.orders[0], "x");
    assert_eq!(d.decide(paid.clone()), Outcome::Applied);
    assert_eq!(d.decide(paid), Outcome::Duplicate);
    assert!(d.decided.tickets.is_empty());
    assert_eq!(d.decided.rejections.len(), 1);
    assert_eq!(
        d.decided.rejections[0].code,
        schemas::SaleRefusal::RaffleSoldOut
    );
}

proptest! {
    /// Any mix of payments, re-deliveries and refunds, in any order: numbers are unique and
    /// gap-free from the range's cursor, never more are sold than the raffle holds (a refund
    /// frees its tickets' capacity, never their numbers), every order is issued at most once,
    /// and the sold and voided counts add up to what was issued.
    #[test]
    fn numbers_stay_unique_gap_free_and_within_the_raffle(
        counts in prop::collection::vec(1i32..=5, 1..30),
        steps in prop::collection::vec((0usize..30, 0u8..4), 1..80),
        max in 1i64..60,
        sold_before in 0i64..10,
    ) {
        let max = max + sold_before;
        let (s, state) = loaded(max, sold_before, &counts);
        let mut d = Decider::new(state);
        for (n, (i, what)) in steps.into_iter().enumerate() {
            let order = s.orders[i % s.orders.len()];
            let kind = match what {
                0 | 1 => SaleEventKind::SaleCompleted,
                2 => SaleEventKind::RefundRequested,
                _ => SaleEventKind::PaymentFailed,
            };
            let key = format!("{:?}-{}-{}", kind, order.0, if what == 1 { n } else { 0 });
            d.decide(event(&s, kind, order, &key));
        }
        let numbers: Vec<i64> = d.decided.tickets.iter().map(|t| t.number).collect();
        let expected: Vec<i64> =
            (RANGE_START + sold_before..RANGE_START + sold_before + numbers.len() as i64).collect();
        prop_assert_eq!(&numbers, &expected);
        let issued = numbers.len() as i64;
        let r = &d.state.raffles[&s.raffle];
        prop_assert!(sold_before + r.sold_delta <= max, "{} sold of {}", sold_before + r.sold_delta, max);
        let mut orders_issued = HashSet::new();
        for t in &d.decided.tickets {
            orders_issued.insert(t.order_id);
        }
        let per_order: usize = orders_issued
            .iter()
            .map(|o| s.orders.iter().find(|x| x.0 == *o).map_or(0, |x| x.1 as usize))
            .sum();
        prop_assert_eq!(per_order, numbers.len(), "each order issued once, whole");
        prop_assert_eq!(r.sold_delta + r.voided_delta, issued);
        prop_assert!(r.voided_delta >= 0 && r.sold_delta >= 0);
    }
}
