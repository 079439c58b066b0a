//! `raffle demo`: one whole raffle on the local stack, end to end. The services (ingest, the
//! allocator, the ledger) run in this process on topics of the run's own; buyers and RSUs talk
//! to ingest over HTTP exactly as real ones do. Then sales close, the books are sealed, the
//! winners drawn, and the reconciliation and audit results printed.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use platform::StackConfig;
use platform::http_client::request;
use serde_json::{Value, json};
use uuid::Uuid;
use warp::http::Method;

const SECRET: &str = "whsec_demo_secret_for_the_local_run";

pub struct DemoOptions {
    pub orders: usize,
    pub rsus: usize,
    pub rsu_sales: usize,
    pub clients: usize,
}

/// A progress bar on a terminal; a line per quarter otherwise.
struct Progress {
    label: &'static str,
    total: usize,
    done: AtomicUsize,
    tty: bool,
}

impl Progress {
    fn new(label: &'static str, total: usize) -> Arc<Self> {
        Arc::new(Self {
            label,
            total: total.max(1),
            done: AtomicUsize::new(0),
            tty: std::io::stderr().is_terminal(),
        })
    }

    fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        self.show(done);
    }

    /// Moves the bar to `done` (for progress read from elsewhere); never backwards.
    fn advance_to(&self, done: usize) {
        let before = self.done.fetch_max(done, Ordering::Relaxed);
        for d in before + 1..=done {
            self.show(d);
        }
    }

    fn show(&self, done: usize) {
        let pct = done * 100 / self.total;
        if self.tty {
            let filled = done * 30 / self.total;
            eprint!(
                "\r  {:<26} [{}{}] {:>3}% ({done}/{})",
                self.label,
                "#".repeat(filled),
                ".".repeat(30 - filled),
                pct,
                self.total
            );
            if done == self.total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        } else if done == self.total || (done * 4 / self.total) != ((done - 1) * 4 / self.total) {
            eprintln!("  {:<26} {pct:>3}% ({done}/{})", self.label, self.total);
        }
    }
}

fn step(text: &str) {
    eprintln!("\n== {text}");
}

fn payment_webhook(kind: &str, event_id: &str, order: &str, amount: i64) -> Value {
    let pi = format!("pi_{order}");
    let object = match kind {
        "charge.refunded" => {
            json!({"id": format!("ch_{order}"), "amount": 2000, "amount_refunded": amount, "currency": "usd",
                   "payment_intent": pi, "metadata": {"order_id": order}})
        }
        // A partial refund as Stripe sends it for a Checkout payment: the charge carries no
        // order id; the order is found by the PaymentIntent that paid it.
        "charge.refunded.partial" => {
            json!({"id": format!("ch_{order}"), "amount": 2000, "amount_refunded": amount, "currency": "usd",
                   "payment_intent": pi, "metadata": {}, "refunded": false})
        }
        "charge.dispute.closed" => {
            json!({"id": format!("dp_{order}"), "object": "dispute", "amount": amount, "charge": format!("ch_{order}"),
                   "currency": "usd", "payment_intent": pi, "reason": "fraudulent", "status": "lost"})
        }
        "checkout.session.completed" => {
            json!({"id": format!("cs_{order}"), "object": "checkout.session", "amount_total": amount,
                   "client_reference_id": order, "currency": "usd", "mode": "payment", "payment_intent": pi,
                   "payment_status": "paid", "status": "complete"})
        }
        _ => {
            json!({"id": pi, "amount": amount, "currency": "usd", "metadata": {"order_id": order}})
        }
    };
    let kind = kind.trim_end_matches(".partial");
    json!({"id": event_id, "type": kind, "created": Utc::now().timestamp(), "data": {"object": object}})
}

/// Delivers a webhook signed as the provider would; its HTTP status.
async fn deliver(addr: SocketAddr, body: &Value) -> anyhow::Result<u16> {
    let bytes = serde_json::to_vec(body)?;
    let signature = ingest::signature::sign(SECRET.as_bytes(), &bytes, Utc::now().timestamp());
    let headers = [
        ("Stripe-Signature", signature.as_str()),
        ("Content-Type", "application/json"),
    ];
    Ok(
        request(addr, "POST", "/v1/webhooks/payments", &headers, &bytes)
            .await
            .map_err(anyhow::Error::msg)?
            .status,
    )
}

async fn post_json(
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
struct Receipts(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl Receipts {
    fn keep(&self, validation_number: &str, check_code: &str) {
        if let Ok(mut r) = self.0.lock() {
            r.insert(validation_number.to_owned(), check_code.to_owned());
        }
    }

    fn check_code(&self, validation_number: &str) -> Option<String> {
        self.0.lock().ok()?.get(validation_number).cloned()
    }
}

/// One online buyer: checkout, pay; the provider retries some deliveries; buyer 1's card is
/// declined and the retry pays; buyer 3 gives up (the payment is cancelled); buyer 2 is
/// refunded later. Returns the order and its refund webhook, if any.
async fn buyer(
    addr: SocketAddr,
    scenario: &scenario::seed::Scenario,
    i: usize,
    receipts: &Receipts,
) -> anyhow::Result<Option<Value>> {
    let (package, amount) = match scenario.windowed_package_id {
        Some(p) if i % 10 == 3 => (p, 1000),
        _ => (scenario.package_id, 2000),
    };
    let (status, order) = post_json(
        addr,
        "/v1/checkout",
        None,
        &json!({"raffle_id": scenario.raffle_id, "package_id": package, "customer": {"name": format!("Buyer {i}")}}),
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
        let declined = payment_webhook(
            "payment_intent.payment_failed",
            &format!("evt_demo_fail_{i}"),
            &order,
            amount,
        );
        deliver(addr, &declined).await?;
    }
    if i == 3 {
        // Gives up: the PaymentIntent is cancelled, and the order ends unpaid.
        let cancelled = payment_webhook(
            "payment_intent.canceled",
            &format!("evt_demo_cancel_{i}"),
            &order,
            amount,
        );
        deliver(addr, &cancelled).await?;
        return Ok(None);
    }
    let paid = payment_webhook(
        "payment_intent.succeeded",
        &format!("evt_demo_{i}"),
        &order,
        amount,
    );
    let statuses = if i == 4 {
        // A Checkout Session buyer: the Session's completion and its PaymentIntent's success
        // arrive together, in either order; one payment, tickets once.
        let session = payment_webhook(
            "checkout.session.completed",
            &format!("evt_demo_session_{i}"),
            &order,
            amount,
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
    // Later: buyer 2 refunded in full, buyer 5 in part ($5 back, tickets kept), buyer 6's
    // bank takes the money back (a dispute lost: the tickets leave the draw).
    Ok(match i {
        2 => Some(payment_webhook(
            "charge.refunded",
            &format!("evt_demo_refund_{i}"),
            &order,
            amount,
        )),
        5 => Some(payment_webhook(
            "charge.refunded.partial",
            &format!("evt_demo_partial_{i}"),
            &order,
            500,
        )),
        6 => Some(payment_webhook(
            "charge.dispute.closed",
            &format!("evt_demo_dispute_{i}"),
            &order,
            amount,
        )),
        _ => None,
    })
}

/// A sell-out: eight buyers at once for a small raffle of 25 tickets. Five get orders with
/// their tickets held, three are told "sold out" before anyone pays; one held buyer gives up,
/// the hold comes back and a late buyer takes it. Returns (orders taken, told sold out).
async fn sell_out(
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
                          "customer": {"name": format!("Late buyer {i}")}});
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
    let cancelled = payment_webhook(
        "payment_intent.canceled",
        "evt_demo_soldout_cancel",
        &quitter,
        2000,
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
        let paid = payment_webhook(
            "payment_intent.succeeded",
            &format!("evt_demo_soldout_{i}"),
            order,
            2000,
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

fn rsu_record(
    scenario: &scenario::seed::Scenario,
    r: usize,
    j: usize,
    created: chrono::DateTime<Utc>,
    receipts: &Receipts,
) -> Value {
    let alloc = &scenario.rsus[r].allocation;
    let start = alloc["start_number"].as_i64().unwrap_or_default();
    let block = &alloc["validation_number_block"];
    let prefix = block["prefix"].as_str().unwrap_or_default();
    let first = block["first_sequence"].as_i64().unwrap_or_default();
    let j = j as i64;
    let validation = schemas::ValidationNumber::in_block(prefix, (first + j) as i32);
    // As the device does: a code on the receipt, its hash in the record.
    let mut random = [0u8; 8];
    random.copy_from_slice(&Uuid::new_v4().as_bytes()[..8]);
    let code = schemas::CheckCode::from_random(random);
    receipts.keep(&validation, &code.display());
    json!({
        "localId": format!("demo-{r}-{j}"), "eventId": scenario.raffle_id, "allocationId": alloc["id"],
        "validationNumber": validation,
        "checkCodeHash": hex::encode(code.hash(scenario.raffle_id, &validation)),
        "drawNumbers": (0..5).map(|k| start + 5 * j + k).collect::<Vec<_>>(),
        "packageId": scenario.package_id, "ticketCount": 5, "totalAmount": 2000, "currency": "USD",
        "operatorId": format!("seller-{}", r + 1), "createdAt": created, "isOfflineSale": true,
        "syncStatus": "pending", "syncAttempts": 0
    })
}

async fn upload(
    addr: SocketAddr,
    scenario: &scenario::seed::Scenario,
    r: usize,
    records: &[Value],
) -> anyhow::Result<Vec<Value>> {
    let (status, answer) = post_json(
        addr,
        "/v1/rsu/sales",
        Some(&scenario.rsus[r].api_key),
        &json!({"records": records}),
    )
    .await?;
    if status != 200 {
        bail!("RSU-{:03} upload answered {status}: {answer}", r + 1);
    }
    Ok(answer["results"].as_array().cloned().unwrap_or_default())
}

async fn scalar(client: &tokio_postgres::Client, sql: &str, raffle: Uuid) -> anyhow::Result<i64> {
    Ok(client.query_one(sql, &[&raffle]).await?.get(0))
}

fn money(minor: i64) -> String {
    format!("${}", crate::money(minor))
}

pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = StackConfig::from_env()?;
    step("starting the local stack (Postgres, the broker, topics of this run)");
    let stack = platform::devstack::up(&config).await?;
    let brokers = stack.broker.brokers.clone();
    let run_id = format!("demo{}", Utc::now().format("%Y%m%d%H%M%S"));
    let topics = platform::config::TopicNames::with_prefix(&format!("{run_id}."));
    platform::kafka::ensure_topics(&brokers, &topics.all(), topics.replication).await?;
    let db = platform::db::DbTarget::parse(&config.database_url)?;
    let pool = db.pool(24)?;
    eprintln!(
        "  Postgres {} · broker {brokers} · topics {}*",
        stack.postgres_version,
        format_args!("{run_id}.")
    );

    // The services, in this process.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let allocator = {
        let (db, pool, brokers, topics, stopped) = (
            db.clone(),
            pool.clone(),
            brokers.clone(),
            topics.clone(),
            stopped.clone(),
        );
        tokio::spawn(async move { allocator::run(db, pool, &brokers, &topics, stopped).await })
    };
    let ledger_task = {
        let (db, pool, brokers, topics, stopped) = (
            db.clone(),
            pool.clone(),
            brokers.clone(),
            topics.clone(),
            stopped.clone(),
        );
        tokio::spawn(async move { ledger::run(db, pool, &brokers, &topics, stopped).await })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let ingest_state = Arc::new(ingest::IngestState::new(
        &db,
        pool.clone(),
        platform::kafka::producer(&brokers, ingest::DELIVERY_TIMEOUT_MS)?,
        ingest::IngestConfig {
            webhook_secret: SECRET.as_bytes().to_vec(),
            webhook_tolerance_s: 300,
            order_tickets_max: 500,
            sales_topic: topics.sales.clone(),
            brokers: brokers.clone(),
            hold_minutes: ingest::HOLD_MINUTES_DEFAULT,
        },
    )?);
    let mut ingest_stop = stopped.clone();
    let ingest_task = tokio::spawn(ingest::serve(ingest_state, listener, async move {
        let _ = ingest_stop.changed().await;
    }));
    eprintln!("  ingest on http://{addr}/v1, allocator and ledger consuming");

    step("setting up the charity, its raffle, packages, prizes and RSUs (through the admin API)");
    let scenario = scenario::seed::raffle_on_sale(
        &pool,
        &scenario::seed::Options {
            rsu_count: options.rsus,
            allocation_size: (options.rsu_sales as i64 * 5 + 50).max(100),
            early_bird_winners: 1,
            windowed_package: true,
            ..Default::default()
        },
    )
    .await
    .map_err(|p| anyhow::anyhow!("{p}"))?;
    let raffle = scenario.raffle_id;
    let org = scenario.organization_id;
    eprintln!(
        "  raffle {raffle}: \"Value Pack\" 5 for $20, \"Early-bird pack\" 3 for $10 (first two hours only)"
    );
    eprintln!(
        "  prizes: 50% jackpot (guaranteed minimum $1,000), $500 early-bird draw; {} RSUs with number blocks",
        options.rsus
    );

    step(&format!(
        "selling online: {} buyers, {} at a time, through checkout and signed payment webhooks",
        options.orders, options.clients
    ));
    let progress = Progress::new("online orders", options.orders);
    let next = Arc::new(AtomicUsize::new(0));
    let scenario = Arc::new(scenario);
    let receipts = Arc::new(Receipts::default());
    let mut workers = Vec::new();
    for _ in 0..options.clients.max(1) {
        let (next, scenario, progress) = (next.clone(), scenario.clone(), progress.clone());
        let receipts = receipts.clone();
        let total = options.orders;
        workers.push(tokio::spawn(async move {
            let mut refunds = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(refunds);
                }
                refunds.extend(buyer(addr, &scenario, i, &receipts).await?);
                progress.tick();
            }
        }));
    }
    let mut refunds = Vec::new();
    for w in workers {
        refunds.extend(w.await??);
    }
    eprintln!(
        "  every 25th payment delivered twice at once; buyer 1's card declined, then paid on the retry; buyer 3 gave up (payment cancelled); buyer 4 paid through a Checkout Session; buyers 2, 5 and 6 to be refunded, refunded in part and disputed"
    );

    step("a sell-out: more buyers than tickets");
    let (sold_out_taken, sold_out_refused) = sell_out(addr, &pool).await?;

    step("selling on the RSUs");
    let now = Utc::now();
    let mut uploaded = 0;
    let mut offline = Vec::new();
    for r in 0..options.rsus {
        let mut records: Vec<Value> = (0..options.rsu_sales)
            .map(|j| {
                rsu_record(
                    &scenario,
                    r,
                    j,
                    now - chrono::Duration::minutes(5),
                    &receipts,
                )
            })
            .collect();
        if r == 0 && records.len() > 3 {
            records[3]["voided"] = json!(true);
            eprintln!("  RSU-001: sale 3 voided at the device before it synced");
        }
        if r == options.rsus - 1 && options.rsus >= 2 {
            // A sale keyed in with a clock two days behind: before the sales window.
            records.push(rsu_record(
                &scenario,
                r,
                options.rsu_sales,
                now - chrono::Duration::days(2),
                &receipts,
            ));
            eprintln!(
                "  RSU-{:03}: one sale dated before the sales window (to be rejected)",
                r + 1
            );
        }
        if r == 1 && options.rsus >= 3 {
            eprintln!(
                "  RSU-002: out of Wi-Fi range; holds its {} sales until later",
                records.len()
            );
            offline = records;
            continue;
        }
        let results = upload(addr, &scenario, r, &records).await?;
        uploaded += results.iter().filter(|x| x["status"] == "accepted").count();
        eprintln!(
            "  RSU-{:03}: uploaded {} records, {} accepted",
            r + 1,
            records.len(),
            results.iter().filter(|x| x["status"] == "accepted").count()
        );
    }
    if !offline.is_empty() {
        let results = upload(addr, &scenario, 1, &offline).await?;
        let accepted = results.iter().filter(|x| x["status"] == "accepted").count();
        uploaded += accepted;
        eprintln!("  RSU-002: back in range, synced {accepted} offline sales");
        // A repeated sync changes nothing, even before the allocator has caught up.
        let again = upload(addr, &scenario, 1, &offline).await?;
        eprintln!(
            "  RSU-002: synced the same sales again by mistake: {} of {} answered duplicate, nothing counted twice",
            again.iter().filter(|x| x["status"] == "duplicate").count(),
            offline.len()
        );
    }

    step("waiting for the pipeline: allocator and ledger");
    let client = db.connect("raffle-demo").await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let expected = options.orders + uploaded;
    let allocated = Progress::new("sales allocated", expected);
    loop {
        let done = scalar(
            &client,
            "SELECT (SELECT count(*) FROM sales.orders WHERE raffle_id = $1 AND payment_status <> 'pending')
                  + (SELECT count(*) FROM sales.rejected_sales WHERE raffle_id = $1 AND source = 'rsu')",
            raffle,
        )
        .await? as usize;
        allocated.advance_to(done.min(expected));
        if done >= expected {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the pipeline did not catch up in 2 minutes: {done} of {expected} sales allocated or rejected"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for refund in &refunds {
        deliver(addr, refund).await?;
    }
    eprintln!(
        "  all sales allocated; buyer 2 refunded, buyer 5 refunded $5.00 of $20.00 (tickets kept, flagged for finance), buyer 6's dispute lost (tickets voided)"
    );

    step("closing sales, taking the RSUs' number blocks back, sealing the books");
    scenario::seed::call_as(
        &pool,
        "admin",
        Method::POST,
        &format!("organizations/{org}/raffles/{raffle}/transitions"),
        json!({"to": "sales_closed", "reason": "demo: the gates close"}),
    )
    .await
    .map_err(|p| anyhow::anyhow!("{p}"))?;
    for rsu in &scenario.rsus {
        let allocation = rsu.allocation["id"].as_str().unwrap_or_default();
        scenario::seed::call_as(
            &pool,
            "admin",
            Method::POST,
            &format!("organizations/{org}/allocations/{allocation}/return"),
            Value::Null,
        )
        .await
        .map_err(|p| anyhow::anyhow!("{p}"))?;
    }
    let seed_key = ledger::seed_key::SeedKey::generate().map_err(anyhow::Error::msg)?;
    let request = ledger::SealRequest {
        raffle_id: raffle,
        sealed_by: "finance".into(),
        // Every payment of this run was delivered before the close.
        grace_seconds: 0,
        write_off: Vec::new(),
        // Until the draw the seed waits wrapped under a key only this run holds.
        seed_key: Some(seed_key.clone()),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let seal = loop {
        match ledger::seal(&pool, &brokers, &topics, &request).await {
            Ok(seal) => break seal,
            Err(ledger::SealError::Refused {
                code: "in-flight",
                reason,
            }) if Instant::now() < deadline => {
                tracing::debug!(raffle_id = %raffle, %reason, "waiting for the pipeline to drain");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    eprintln!(
        "  sealed: {} entries, head {}…, seed commitment {}…",
        seal.entries,
        &seal.head_hash[..16],
        &seal.seed_commitment[..16]
    );

    step("drawing the winners (seed revealed, ChaCha20, no modulo bias)");
    let outcome = draw_engine::run(
        &pool,
        &draw_engine::DrawRequest {
            raffle_id: raffle,
            conducted_by: "draw-officer".into(),
            interrupt_after_prizes: None,
            seed_key: Some(seed_key.clone()),
        },
    )
    .await?;
    // The early-bird winner claims with the validation number and the check code of the receipt.
    let claimed = match outcome.winners.iter().find(|w| w.position == 2) {
        Some(w) => {
            let validation: String = client
                .query_one(
                    "SELECT o.validation_number FROM sales.tickets t JOIN sales.orders o ON o.id = t.order_id WHERE t.id = $1",
                    &[&w.ticket_id],
                )
                .await?
                .get(0);
            Some(
                draw_engine::claim(
                    &pool,
                    &draw_engine::ClaimRequest {
                        raffle_id: raffle,
                        draw_number: w.draw_number,
                        check_code: receipts.check_code(&validation).unwrap_or_default(),
                        validation_number: validation,
                        claimed_by: "early-bird winner".into(),
                        source: "demo".into(),
                    },
                )
                .await?,
            )
        }
        None => None,
    };

    step("reconciling and auditing");
    let report = ledger::report::reconciliation(&client, raffle).await?;
    let html = std::path::absolute(
        config
            .state_dir
            .join(format!("reconciliation-{raffle}.html")),
    )?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    platform::files::write_private(&html, ledger::report::to_html(&report).as_bytes())
        .with_context(|| format!("writing {}", html.display()))?;
    let chain = ledger::verify(&client, raffle).await?;
    let seal_mismatches = ledger::verify_seal(&client, raffle)
        .await?
        .unwrap_or_default();
    let export_dir = config.state_dir.join(format!("audit-{raffle}"));
    let software = platform::version::version_line("raffle", env!("CARGO_PKG_VERSION"));
    ledger::audit::export(&client, raffle, &export_dir, &software).await?;
    let export = ledger::audit::verify_export(&export_dir)?;
    let draw_check = draw_engine::verify(&client, raffle).await?;
    let _ = stop.send(true);

    // The summary.
    let counts = client
        .query_one(
            "SELECT count(*) FILTER (WHERE payment_status = 'completed'), count(*) FILTER (WHERE payment_status = 'failed'),
                    count(*) FILTER (WHERE payment_status = 'refunded'), count(*) FILTER (WHERE payment_status = 'voided'),
                    (SELECT count(*) FROM sales.tickets WHERE raffle_id = $1 AND state <> 'voided'),
                    (SELECT count(*) FROM sales.tickets WHERE raffle_id = $1 AND state = 'voided')
               FROM sales.orders WHERE raffle_id = $1",
            &[&raffle],
        )
        .await?;
    let rejected = client
        .query(
            "SELECT coalesce(local_id, order_id::text), reason FROM sales.rejected_sales WHERE raffle_id = $1 ORDER BY rejected_at",
            &[&raffle],
        )
        .await?;
    println!();
    println!("RAFFLE {raffle} — Record 50/50 at the Stadium");
    println!(
        "  orders paid {}, declined {}, refunded {}, voided {}; tickets eligible {}, voided {}",
        counts.get::<_, i64>(0),
        counts.get::<_, i64>(1),
        counts.get::<_, i64>(2),
        counts.get::<_, i64>(3),
        counts.get::<_, i64>(4),
        counts.get::<_, i64>(5)
    );
    for r in &rejected {
        println!(
            "  rejected sale {}: {}",
            r.get::<_, String>(0),
            r.get::<_, String>(1)
        );
    }
    for n in client
        .query(
            "SELECT note, coalesce(order_id::text, '-'), coalesce(amount_minor, 0) FROM sales.provider_events
              WHERE raffle_id = $1 AND note IN ('partial_refund', 'dispute_open') ORDER BY received_at",
            &[&raffle],
        )
        .await?
    {
        println!(
            "  for finance: {} on order {} ({})",
            n.get::<_, String>(0).replace('_', " "),
            n.get::<_, String>(1),
            money(n.get(2))
        );
    }
    println!(
        "  sell-out of a 25-ticket raffle: {sold_out_taken} orders paid, {sold_out_refused} buyers told sold out before paying, none charged for nothing"
    );
    println!(
        "  gross sales {}  refunds and voids {}  gross receipts {}",
        money(seal.gross_sales_minor),
        money(seal.refunds_minor),
        money(seal.gross_receipts_minor)
    );
    for prize in seal.prizes.as_array().into_iter().flatten() {
        println!(
            "  prize: {:<22} {}",
            prize["name"].as_str().unwrap_or("?"),
            money(prize["amount_minor"].as_i64().unwrap_or_default())
        );
    }
    println!(
        "  operating fee {}  net proceeds to the charity {}",
        money(seal.operating_fee_minor),
        money(seal.net_proceeds_minor)
    );
    println!("WINNERS");
    for w in &outcome.winners {
        println!(
            "  {:<22} number {:>6}  {}",
            w.prize_name,
            w.draw_number,
            money(w.value_minor)
        );
    }
    if let Some(c) = &claimed {
        println!(
            "  {} claimed with its validation number and paid: {}",
            c.prize_name,
            money(c.amount_minor)
        );
    }
    println!(
        "  seed {} (committed at the seal as {}…)",
        outcome.seed.as_deref().unwrap_or("-"),
        &outcome.seed_commitment[..16]
    );
    let failing = report.failing();
    println!("CHECKS");
    println!(
        "  reconciliation: {} of {} checks pass{}",
        report.checks.len() - failing.len(),
        report.checks.len(),
        if failing.is_empty() {
            String::new()
        } else {
            format!(" — FAILING: {}", failing.join("; "))
        }
    );
    println!(
        "  audit verify: {} ({} entries chained, head {}…; seal {})",
        if chain.ok() && seal_mismatches.is_empty() {
            "PASS"
        } else {
            "FAIL"
        },
        chain.entries_verified,
        &chain.head_hash[..16],
        if seal_mismatches.is_empty() {
            "recomputes".to_owned()
        } else {
            format!("{seal_mismatches:?}")
        }
    );
    println!(
        "  audit export verified from its files alone: {} ({})",
        if export.ok() { "PASS" } else { "FAIL" },
        export_dir.display()
    );
    println!(
        "  draw verify: {} ({} winners re-derived from the revealed seed)",
        if draw_check.ok() { "PASS" } else { "FAIL" },
        draw_check.recorded.len()
    );
    println!("  reconciliation report (printable): {}", html.display());
    println!(
        "  explore: raffle report reconciliation --raffle {raffle} · raffle audit verify --raffle {raffle} · raffle draw verify --raffle {raffle}"
    );
    println!("  finished in {:.0} s", started.elapsed().as_secs_f64());
    println!("  the local stack stays up for exploring; `raffle stack down` stops the broker");

    for task in [allocator, ledger_task] {
        if let Ok(Err(e)) = task.await {
            tracing::warn!(error = %e, "a consumer stopped with an error");
        }
    }
    let _ = ingest_task.await;
    if !failing.is_empty()
        || !chain.ok()
        || !seal_mismatches.is_empty()
        || !export.ok()
        || !draw_check.ok()
    {
        bail!("the demo raffle does not reconcile or verify; see the checks above");
    }
    Ok(())
}
