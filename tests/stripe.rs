//! Payments as Stripe really sends them: events in the shapes of Stripe's API objects (the
//! current API, and the 2020 one whose PaymentIntent embeds its charges), signed as Stripe
//! signs them, through the real ingest server, broker and allocator. Every buyer who paid
//! either holds exactly the tickets paid for or is on the list of payments to refund; nothing
//! Stripe legitimately sends is answered 4xx.

mod common;

use std::net::SocketAddr;

use chrono::Utc;
use platform::http_client::request;
use platform::testkit::TestEnv;
use serde_json::{Value, json};
use uuid::Uuid;

const SECRET: &[u8] = b"whsec_stripe_shapes_test_secret";

async fn spawn_ingest(env: &TestEnv) -> SocketAddr {
    common::ingest(env, SECRET).await
}

/// An event envelope as Stripe sends it.
fn event(id: &str, kind: &str, api_version: &str, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "api_version": api_version, "created": Utc::now().timestamp(),
        "data": {"object": object}, "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null}, "type": kind
    })
}

/// A PaymentIntent of the current API; `order` goes into its metadata when given.
fn payment_intent(pi: &str, amount: i64, status: &str, order: Option<&str>) -> Value {
    let metadata = order.map_or(json!({}), |o| json!({"order_id": o}));
    json!({
        "id": pi, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
        "amount_received": if status == "succeeded" { amount } else { 0 }, "capture_method": "automatic",
        "client_secret": format!("{pi}_secret_x"), "confirmation_method": "automatic", "created": Utc::now().timestamp(),
        "currency": "usd", "customer": null, "description": null, "last_payment_error": null,
        "latest_charge": format!("ch_{pi}"), "livemode": false, "metadata": metadata,
        "payment_method": "pm_card_visa", "payment_method_types": ["card"], "status": status
    })
}

/// The 2020 shape: the PaymentIntent embeds its charges, and has no amount_received.
fn payment_intent_2020(pi: &str, amount: i64, order: &str) -> Value {
    json!({
        "id": pi, "object": "payment_intent", "amount": amount, "currency": "usd",
        "charges": {"object": "list", "data": [{"id": format!("ch_{pi}"), "object": "charge", "amount": amount,
                     "paid": true, "status": "succeeded", "currency": "usd"}], "has_more": false},
        "metadata": {"order_id": order}, "status": "succeeded"
    })
}

fn checkout_session(
    cs: &str,
    order: &str,
    pi: Option<&str>,
    amount: i64,
    payment_status: &str,
) -> Value {
    json!({
        "id": cs, "object": "checkout.session", "amount_subtotal": amount, "amount_total": amount,
        "client_reference_id": order, "currency": "usd", "customer_details": {"email": "buyer@example.org"},
        "livemode": false, "metadata": {"order_id": order}, "mode": "payment", "payment_intent": pi,
        "payment_status": payment_status, "status": "complete", "url": null
    })
}

fn charge(pi: &str, amount: i64, refunded_so_far: i64) -> Value {
    json!({
        "id": format!("ch_{pi}"), "object": "charge", "amount": amount, "amount_captured": amount,
        "amount_refunded": refunded_so_far, "captured": true, "currency": "usd", "metadata": {},
        "paid": true, "payment_intent": pi, "refunded": refunded_so_far >= amount, "status": "succeeded"
    })
}

async fn deliver(addr: SocketAddr, event: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(event).unwrap();
    let signature = ingest::signature::sign(SECRET, &body, Utc::now().timestamp());
    let r = request(
        addr,
        "POST",
        "/v1/webhooks/payments",
        &[
            ("Stripe-Signature", signature.as_str()),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await
    .unwrap();
    (r.status, r.json().unwrap_or(Value::Null))
}

async fn checkout(addr: SocketAddr, s: &scenario::seed::Scenario) -> String {
    let r = request(
        addr,
        "POST",
        "/v1/checkout",
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(&json!({"raffle_id": s.raffle_id, "package_id": s.package_id}))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201);
    r.json().unwrap()["order_id"].as_str().unwrap().to_owned()
}

/// (payment status, tickets not voided, tickets voided) of an order.
async fn order_state(env: &TestEnv, order: &str) -> (String, i64, i64) {
    let id: Uuid = order.parse().unwrap();
    let row = env
        .client()
        .await
        .query_one(
            "SELECT o.payment_status, count(t.id) FILTER (WHERE t.state <> 'voided'), count(t.id) FILTER (WHERE t.state = 'voided')
               FROM sales.orders o LEFT JOIN sales.tickets t ON t.order_id = o.id WHERE o.id = $1 GROUP BY o.id",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn settled(env: &TestEnv) {
    common::sales_settled(env).await
}

async fn count(env: &TestEnv, sql: &str) -> i64 {
    env.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_stripe_sends_ends_with_tickets_or_a_refund_owed() {
    let env = TestEnv::new().await;
    let s = scenario::seed::raffle_on_sale(
        &env.pool,
        &scenario::seed::Options {
            rsu_count: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let addr = spawn_ingest(&env).await;
    let running = common::allocator(&env);
    const API: &str = "2024-06-20";

    // Declined, then paid on the same PaymentIntent.
    let declined = checkout(addr, &s).await;
    let pi = format!("pi_decl_{}", &declined[..8]);
    let fail = event(
        "evt_decl_1",
        "payment_intent.payment_failed",
        API,
        payment_intent(&pi, 2000, "requires_payment_method", Some(&declined)),
    );
    assert_eq!(deliver(addr, &fail).await.0, 200);
    let ok = event(
        "evt_decl_2",
        "payment_intent.succeeded",
        API,
        payment_intent(&pi, 2000, "succeeded", Some(&declined)),
    );
    assert_eq!(deliver(addr, &ok).await.0, 200);

    // A Checkout Session: its events and the PaymentIntent's (which carries no order id), in
    // any order, twice each.
    let session_order = checkout(addr, &s).await;
    let spi = format!("pi_cs_{}", &session_order[..8]);
    let pi_first = event(
        "evt_cs_pi",
        "payment_intent.succeeded",
        API,
        payment_intent(&spi, 2000, "succeeded", None),
    );
    let completed = event(
        "evt_cs_done",
        "checkout.session.completed",
        API,
        checkout_session("cs_1", &session_order, Some(&spi), 2000, "paid"),
    );
    for e in [&completed, &pi_first, &completed, &pi_first] {
        assert_eq!(deliver(addr, e).await.0, 200);
    }

    // An asynchronous payment (a bank debit): completed unpaid, then succeeded.
    let async_order = checkout(addr, &s).await;
    let api = format!("pi_async_{}", &async_order[..8]);
    let unpaid = event(
        "evt_async_1",
        "checkout.session.completed",
        API,
        checkout_session("cs_2", &async_order, Some(&api), 2000, "unpaid"),
    );
    assert_eq!(deliver(addr, &unpaid).await.1["status"], "noted");
    let paid = event(
        "evt_async_2",
        "checkout.session.async_payment_succeeded",
        API,
        checkout_session("cs_2", &async_order, Some(&api), 2000, "paid"),
    );
    assert_eq!(deliver(addr, &paid).await.0, 200);

    // An expired Session ends its order.
    let expired_order = checkout(addr, &s).await;
    let expired = event(
        "evt_exp",
        "checkout.session.expired",
        API,
        checkout_session("cs_3", &expired_order, None, 2000, "unpaid"),
    );
    assert_eq!(deliver(addr, &expired).await.0, 200);

    // Adaptive Pricing before 2025-03-31: the buyer paid in euros; the session says what that
    // was in the order's currency.
    let euro_order = checkout(addr, &s).await;
    let mut euro = checkout_session("cs_4", &euro_order, Some("pi_eur_1"), 1852, "paid");
    euro["currency"] = json!("eur");
    euro["currency_conversion"] = json!({"amount_subtotal": 2000, "amount_total": 2000, "fx_rate": "0.926", "source_currency": "usd"});
    assert_eq!(
        deliver(
            addr,
            &event("evt_eur", "checkout.session.completed", API, euro)
        )
        .await
        .0,
        200
    );

    // The 2020 API shape.
    let old_order = checkout(addr, &s).await;
    let old = event(
        "evt_2020",
        "payment_intent.succeeded",
        "2020-08-27",
        payment_intent_2020("pi_2020_1", 2000, &old_order),
    );
    assert_eq!(deliver(addr, &old).await.0, 200);

    // Refunds whose charge has no order id: partial (tickets stay), then whole (voided).
    let refunded_order = checkout(addr, &s).await;
    let rpi = "pi_refund_1";
    assert_eq!(
        deliver(
            addr,
            &event(
                "evt_r0",
                "payment_intent.succeeded",
                API,
                payment_intent(rpi, 2000, "succeeded", Some(&refunded_order))
            )
        )
        .await
        .0,
        200
    );
    settled(&env).await;
    let partial = event("evt_r1", "charge.refunded", API, charge(rpi, 2000, 500));
    assert_eq!(deliver(addr, &partial).await.0, 200);
    settled(&env).await;
    assert_eq!(
        order_state(&env, &refunded_order).await,
        ("completed".into(), 5, 0),
        "a partial refund keeps the tickets"
    );
    let whole = event("evt_r2", "charge.refunded", API, charge(rpi, 2000, 2000));
    assert_eq!(deliver(addr, &whole).await.0, 200);

    // A dispute: opened (noted), then lost (the tickets leave the draw).
    let disputed_order = checkout(addr, &s).await;
    let dpi = "pi_dispute_1";
    assert_eq!(
        deliver(
            addr,
            &event(
                "evt_d0",
                "payment_intent.succeeded",
                API,
                payment_intent(dpi, 2000, "succeeded", Some(&disputed_order))
            )
        )
        .await
        .0,
        200
    );
    settled(&env).await;
    let dispute = |status: &str| {
        json!({"id": "dp_1", "object": "dispute", "amount": 2000, "charge": format!("ch_{dpi}"),
                                        "currency": "usd", "payment_intent": dpi, "reason": "fraudulent", "status": status})
    };
    assert_eq!(
        deliver(
            addr,
            &event(
                "evt_d1",
                "charge.dispute.created",
                API,
                dispute("needs_response")
            )
        )
        .await
        .1["status"],
        "noted"
    );
    assert_eq!(
        deliver(
            addr,
            &event("evt_d2", "charge.dispute.closed", API, dispute("lost"))
        )
        .await
        .0,
        200
    );

    // Captured, but for a wrong amount: acknowledged, and on the list to refund once.
    let wrong_order = checkout(addr, &s).await;
    let wrong = event(
        "evt_wrong",
        "payment_intent.succeeded",
        API,
        payment_intent("pi_wrong_1", 1999, "succeeded", Some(&wrong_order)),
    );
    for _ in 0..3 {
        assert_eq!(deliver(addr, &wrong).await.0, 200);
    }

    // What Stripe sends that is not ours to act on: 2xx whatever it holds.
    for (id, kind, object) in [
        (
            "evt_cust",
            "customer.created",
            json!({"id": "cus_1", "object": "customer", "currency": null}),
        ),
        (
            "evt_bal",
            "balance.available",
            json!({"object": "balance", "available": [{"amount": 0, "currency": "usd"}]}),
        ),
        (
            "evt_other",
            "payment_intent.succeeded",
            payment_intent("pi_other_product", 4900, "succeeded", None),
        ),
    ] {
        let (status, body) = deliver(addr, &event(id, kind, API, object)).await;
        assert_eq!(status, 200, "{kind}: {body}");
    }
    assert_eq!(
        deliver(
            addr,
            &event(
                "evt_other",
                "payment_intent.succeeded",
                API,
                payment_intent("pi_other_product", 4900, "succeeded", None)
            )
        )
        .await
        .0,
        200
    );

    settled(&env).await;
    running.stop().await;

    assert_eq!(
        order_state(&env, &declined).await,
        ("completed".into(), 5, 0),
        "declined, then paid"
    );
    assert_eq!(
        order_state(&env, &session_order).await,
        ("completed".into(), 5, 0),
        "a Checkout Session, once"
    );
    assert_eq!(
        order_state(&env, &async_order).await,
        ("completed".into(), 5, 0),
        "an asynchronous payment"
    );
    assert_eq!(
        order_state(&env, &expired_order).await.0,
        "failed",
        "an expired session"
    );
    assert_eq!(
        order_state(&env, &euro_order).await,
        ("completed".into(), 5, 0),
        "paid in euros"
    );
    assert_eq!(
        order_state(&env, &old_order).await,
        ("completed".into(), 5, 0),
        "the 2020 shape"
    );
    assert_eq!(
        order_state(&env, &refunded_order).await,
        ("refunded".into(), 0, 5),
        "refunded in whole"
    );
    assert_eq!(
        order_state(&env, &disputed_order).await,
        ("refunded".into(), 0, 5),
        "a lost dispute"
    );
    assert_eq!(
        order_state(&env, &wrong_order).await.0,
        "rejected",
        "a wrong amount"
    );
    let wrong_id: Uuid = wrong_order.parse().unwrap();
    let owed: i64 = env
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM sales.rejected_sales WHERE order_id = $1",
            &[&wrong_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        owed, 1,
        "the payment to refund is listed once, whatever the retries"
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM sales.provider_events WHERE note = 'partial_refund'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &env,
            // A Session's PaymentIntent that arrives before the Session's own event is noted
            // too; it is no longer unmatched once the order holds that payment.
            "SELECT count(*) FROM sales.provider_events e WHERE note = 'not_a_raffle_order'
               AND NOT EXISTS (SELECT 1 FROM sales.orders o WHERE o.payment_reference = e.payment_reference)"
        )
        .await,
        1,
        "another product's payment, once"
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM sales.provider_events WHERE note = 'dispute_open'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM sales.provider_events WHERE note = 'payment_attempt_failed'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_read_as_stripe_writes_them() {
    let env = TestEnv::new().await;
    let addr = spawn_ingest(&env).await;
    let body = serde_json::to_vec(&event(
        "evt_sig",
        "customer.created",
        "2024-06-20",
        json!({"id": "cus_1"}),
    ))
    .unwrap();
    // No header: said so, not "the body is not JSON".
    let r = request(addr, "POST", "/v1/webhooks/payments", &[], &body)
        .await
        .unwrap();
    let p = r.json().unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(p["type"], "/problems/signature-missing", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("missing Stripe-Signature"),
        "{p}"
    );
    // A malformed v1 beside a good one is skipped.
    let good = ingest::signature::sign(SECRET, &body, Utc::now().timestamp());
    let header = format!("{good},v1=not-hex,v0=abc");
    let r = request(
        addr,
        "POST",
        "/v1/webhooks/payments",
        &[("Stripe-Signature", header.as_str())],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Old signatures stay refused.
    let stale = ingest::signature::sign(SECRET, &body, Utc::now().timestamp() - 3600);
    let r = request(
        addr,
        "POST",
        "/v1/webhooks/payments",
        &[("Stripe-Signature", stale.as_str())],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
}
