//! The demo's online buyers: checkout, then the provider's signed webhooks, with the trouble
//! real buyers bring (a declined card, a buyer who gives up, a retried delivery, a Checkout
//! Session, refunds and a dispute), and a sell-out of a small raffle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use platform::http_client::request;
use scenario::sales::{Payment, stripe_event};
use scenario::stripe::StripeStandIn;
use serde_json::{Value, json};

use super::progress::Progress;
use super::{DemoOptions, SECRET};

/// A provider event id of this run: the provider's ids are unique across its account, so a
/// second demo on the same database is not taken for a re-delivery of the first.
fn event_id(name: &str) -> String {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_owned());
    format!("evt_{run}_{name}")
}

/// Delivers a webhook signed as the provider would; its HTTP status.
pub(super) async fn deliver(addr: SocketAddr, event: &Value) -> anyhow::Result<u16> {
    Ok(scenario::sales::deliver(addr, SECRET.as_bytes(), event)
        .await
        .map_err(anyhow::Error::msg)?
        .status)
}

pub(super) async fn post_json(
    addr: SocketAddr,
    path: &str,
    auth: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let bearer = auth.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    let r = request(addr, "POST", path, &headers, &serde_json::to_vec(body)?)
        .await
        .map_err(anyhow::Error::msg)?;
    let value = r.json().unwrap_or(Value::Null);
    Ok((r.status, value))
}

/// The receipts the demo's buyers keep: the check code of each validation number, which a
/// winner needs to claim (the platform keeps only its hash).
#[derive(Default)]
pub(super) struct Receipts(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl Receipts {
    pub(super) fn keep(&self, validation_number: &str, check_code: &str) {
        if let Ok(mut r) = self.0.lock() {
            r.insert(validation_number.to_owned(), check_code.to_owned());
        }
    }

    pub(super) fn check_code(&self, validation_number: &str) -> Option<String> {
        self.0.lock().ok()?.get(validation_number).cloned()
    }
}

/// `options.orders` buyers, `options.clients` at a time; returns the refund and dispute
/// webhooks to deliver once their sales are allocated.
pub(super) async fn sell(
    addr: SocketAddr,
    scenario: &Arc<scenario::seed::Scenario>,
    options: &DemoOptions,
    receipts: &Arc<Receipts>,
    provider: &StripeStandIn,
) -> anyhow::Result<Vec<Value>> {
    let progress = Progress::new("online orders", options.orders);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..options.clients.max(1) {
        let (next, scenario, progress) = (next.clone(), scenario.clone(), progress.clone());
        let receipts = receipts.clone();
        let provider = provider.clone();
        let total = options.orders;
        workers.push(tokio::spawn(async move {
            let mut refunds = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(refunds);
                }
                refunds.extend(buyer(addr, &scenario, i, &receipts, &provider).await?);
                progress.tick();
            }
        }));
    }
    let mut refunds = Vec::new();
    for w in workers {
        refunds.extend(w.await??);
    }
    Ok(refunds)
}

/// One online buyer: checkout, pay; the provider retries some deliveries; buyer 1's card is
/// declined and the retry pays; buyer 3 gives up (the payment is cancelled); buyer 2 is
/// refunded later. Returns the order and its refund webhook, if any.
async fn buyer(
    addr: SocketAddr,
    scenario: &scenario::seed::Scenario,
    i: usize,
    receipts: &Receipts,
    provider: &StripeStandIn,
) -> anyhow::Result<Option<Value>> {
    let (package, amount) = match scenario.windowed_package_id {
        Some(p) if i % 10 == 3 => (p, 1000),
        _ => (scenario.package_id, 2000),
    };
    let (status, order) = post_json(
        addr,
        "/v1/checkout",
        None,
        &json!({"raffle_id": scenario.raffle_id, "package_id": package, "customer": customer(i)}),
    )
    .await?;
    if status != 201 {
        bail!("checkout {i} answered {status}: {order}");
    }
    receipts.keep(
        order["validation_number"].as_str().unwrap_or_default(),
        order["check_code"].as_str().unwrap_or_default(),
    );
    let order = order["order_id"].as_str().unwrap_or_default().to_owned();
    if i == 1 {
        // Declined, then paid on the retry: the failed attempt leaves the order payable.
        let declined = stripe_event(
            &event_id(&format!("fail_{i}")),
            &order,
            amount,
            Payment::Failed,
        );
        deliver(addr, &declined).await?;
    }
    if i == 3 {
        // Gives up: the PaymentIntent is cancelled, and the order ends unpaid.
        let cancelled = stripe_event(
            &event_id(&format!("cancel_{i}")),
            &order,
            amount,
            Payment::Canceled,
        );
        deliver(addr, &cancelled).await?;
        return Ok(None);
    }
    let paid = stripe_event(
        &event_id(&format!("{i}")),
        &order,
        amount,
        Payment::Succeeded,
    );
    provider.charge(&format!("pi_{order}"), amount);
    let statuses = if i == 4 {
        // A Checkout Session buyer: the Session's completion and its PaymentIntent's success
        // arrive together, in either order; one payment, tickets once.
        let session = stripe_event(
            &event_id(&format!("session_{i}")),
            &order,
            amount,
            Payment::SessionCompleted,
        );
        let (a, b) = tokio::join!(deliver(addr, &session), deliver(addr, &paid));
        vec![a?, b?]
    } else if i.is_multiple_of(25) {
        // The provider delivers the same event twice at once: one sale.
        let (a, b) = tokio::join!(deliver(addr, &paid), deliver(addr, &paid));
        vec![a?, b?]
    } else {
        vec![deliver(addr, &paid).await?]
    };
    if statuses.iter().any(|s| *s != 200) {
        bail!("payment webhook {i} answered {statuses:?}");
    }
    if i == 7 {
        // Unsure it went through, buyer 7 pays again in another tab: a second PaymentIntent
        // for the same order, captured. It is owed back, and the platform refunds it.
        let again_pi = format!("pi_{order}_again");
        let mut again = stripe_event(
            &event_id(&format!("again_{i}")),
            &order,
            amount,
            Payment::Succeeded,
        );
        again["data"]["object"]["id"] = json!(again_pi);
        provider.charge(&again_pi, amount);
        if deliver(addr, &again).await? != 200 {
            bail!("buyer {i}'s second payment was refused");
        }
    }
    // Later: buyer 2 refunded in full, buyer 5 in part ($5 back, tickets kept), buyer 6's
    // bank takes the money back (a dispute lost: the tickets leave the draw). The provider
    // knows them (they were made in its dashboard) and reports them in its payout.
    let pi = format!("pi_{order}");
    match i {
        2 => provider.refunded_outside(&pi, amount),
        5 => provider.refunded_outside(&pi, 500),
        6 => provider.disputed(&pi, amount),
        _ => {}
    }
    Ok(match i {
        2 => Some(stripe_event(
            &event_id(&format!("refund_{i}")),
            &order,
            amount,
            Payment::Refunded,
        )),
        5 => Some(stripe_event(
            &event_id(&format!("partial_{i}")),
            &order,
            500,
            Payment::PartlyRefunded {
                charged_minor: 2000,
            },
        )),
        6 => Some(stripe_event(
            &event_id(&format!("dispute_{i}")),
            &order,
            amount,
            Payment::DisputeLost,
        )),
        _ => None,
    })
}

/// A sell-out: eight buyers at once for a small raffle of 25 tickets. Five get orders with
/// their tickets held, three are told "sold out" before anyone pays; one held buyer gives up,
/// the hold comes back and a late buyer takes it. Returns (orders taken, told sold out).
pub(super) async fn sell_out(
    addr: SocketAddr,
    pool: &deadpool_postgres::Pool,
) -> anyhow::Result<(usize, usize)> {
    let small = scenario::seed::raffle_on_sale(
        pool,
        &scenario::seed::Options {
            rsu_count: 0,
            max_tickets: 25,
            ..Default::default()
        },
    )
    .await
    .map_err(|p| anyhow::anyhow!("{p}"))?;
    let checkout = |i: usize| {
        let body = json!({"raffle_id": small.raffle_id, "package_id": small.package_id,
                          "customer": {"name": format!("Late buyer {i}"), "email": format!("late.buyer{i}@example.org")}});
        async move { post_json(addr, "/v1/checkout", None, &body).await }
    };
    let mut buyers = tokio::task::JoinSet::new();
    for i in 0..8 {
        buyers.spawn(checkout(i));
    }
    let mut orders: Vec<String> = Vec::new();
    let mut sold_out = 0;
    while let Some(answer) = buyers.join_next().await {
        match answer?? {
            (201, order) => orders.push(order["order_id"].as_str().unwrap_or_default().to_owned()),
            (409, _) => sold_out += 1,
            (status, body) => bail!("sell-out checkout answered {status}: {body}"),
        }
    }
    eprintln!(
        "  a small raffle of 25 tickets, 8 buyers at once: {} orders held, {sold_out} told sold out before paying",
        orders.len()
    );
    let Some(quitter) = orders.pop() else {
        bail!("no buyer of the small raffle got an order");
    };
    let cancelled = stripe_event(
        &event_id("soldout_cancel"),
        &quitter,
        2000,
        Payment::Canceled,
    );
    deliver(addr, &cancelled).await?;
    // The cancellation goes through the allocator, which gives the hold back.
    let deadline = Instant::now() + Duration::from_secs(30);
    let late = loop {
        match checkout(8).await? {
            (201, order) => break order["order_id"].as_str().unwrap_or_default().to_owned(),
            (409, _) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            (status, body) => bail!("the late buyer's checkout answered {status}: {body}"),
        }
    };
    orders.push(late);
    for (i, order) in orders.iter().enumerate() {
        let paid = stripe_event(
            &event_id(&format!("soldout_{i}")),
            order,
            2000,
            Payment::Succeeded,
        );
        if deliver(addr, &paid).await? != 200 {
            bail!("the small raffle's payment {i} was refused");
        }
    }
    eprintln!(
        "  one held buyer gave up; the hold came back and a late buyer took it; all five paid: sold out, nobody charged for nothing"
    );
    Ok((orders.len(), sold_out))
}

/// Buyer `i` as checkout hears of them: most leave an e-mail address for their numbers; every
/// 50th does not (the numbers are on their receipt and the look-up page).
fn customer(i: usize) -> Value {
    if i % 50 == 49 {
        json!({"name": format!("Buyer {i}")})
    } else {
        json!({"name": format!("Buyer {i}"), "email": format!("buyer{i}@example.org")})
    }
}
