//! `raffle demo`: one whole raffle on the local stack, end to end. The services (ingest, the
//! allocator, the ledger) run in this process on topics of the run's own; buyers and RSUs talk
//! to ingest over HTTP exactly as real ones do. Then sales close, the books are sealed, the
//! winners drawn, and the reconciliation and audit results printed.

mod books;
mod mail;
mod online;
mod progress;
mod rsus;

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use chrono::Utc;
use platform::StackConfig;
use uuid::Uuid;

const SECRET: &str = "whsec_demo_secret_for_the_local_run";

pub struct DemoOptions {
    pub orders: usize,
    pub rsus: usize,
    pub rsu_sales: usize,
    pub clients: usize,
}

fn step(text: &str) {
    eprintln!("\n== {text}");
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
    let displays_task = {
        let (db, pool, brokers, topics, stopped) = (
            db.clone(),
            pool.clone(),
            brokers.clone(),
            topics.clone(),
            stopped.clone(),
        );
        tokio::spawn(async move {
            displays::service(&db, &pool, &brokers, &topics)
                .run(stopped)
                .await
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    step("starting the mail server the buyers' e-mails go to (aiosmtpd, a real SMTP server)");
    let mailbox = mail::mailbox(&config.state_dir, &run_id).await?;
    let mail = mail::settings(&mailbox, addr);
    let ingest_state = Arc::new(
        ingest::IngestState::new(
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
        )?
        .with_mail(mail.clone()),
    );
    let notifier_task = {
        let (db, pool, brokers, topics, stopped, mail) = (
            db.clone(),
            pool.clone(),
            brokers.clone(),
            topics.clone(),
            stopped.clone(),
            mail.clone(),
        );
        tokio::spawn(async move {
            notifier::run(
                db,
                pool,
                &brokers,
                &topics,
                mail,
                notifier::SenderConfig::default(),
                stopped,
            )
            .await
        })
    };
    eprintln!(
        "  SMTP on {}; the notifier consuming the tickets topic",
        mailbox.addr
    );
    let mut ingest_stop = stopped.clone();
    let ingest_task = tokio::spawn(ingest::serve(ingest_state, listener, async move {
        let _ = ingest_stop.changed().await;
    }));
    // The payment provider's Refunds API, played by the local stand-in (Stripe cannot be
    // reached from here), and the refunds worker asking it.
    let provider = scenario::stripe::StripeStandIn::start(scenario::stripe::StandInConfig {
        webhooks: Some(scenario::stripe::WebhookTarget {
            ingest: addr,
            secret: SECRET.as_bytes().to_vec(),
        }),
        ..Default::default()
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let refunds_task = {
        let api = refunds::StripeApi::new(&provider.base_url(), &provider.config.secret_key)
            .map_err(anyhow::Error::msg)?;
        let (pool, stopped) = (pool.clone(), stopped.clone());
        tokio::spawn(async move {
            refunds::worker::run(&pool, &api, &refunds::WorkerConfig::default(), stopped).await
        })
    };
    eprintln!(
        "  ingest on http://{addr}/v1, allocator and ledger consuming; refunds paid through the provider stand-in at {}",
        provider.base_url()
    );

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
    let screen = mail::screen(&pool, raffle, stopped.clone()).await?;
    eprintln!(
        "  the live jackpot on http://{}/v1/raffles/{raffle}/jackpot (/stream, /widget) and the public page /v1/raffles/{raffle}/page",
        screen.addr
    );
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
    let scenario = Arc::new(scenario);
    let receipts = Arc::new(online::Receipts::default());
    let refunds = online::sell(addr, &scenario, &options, &receipts, &provider).await?;
    eprintln!(
        "  every 25th payment delivered twice at once; buyer 1's card declined, then paid on the retry; buyer 3 gave up (payment cancelled); buyer 4 paid through a Checkout Session; buyer 7 paid twice; buyers 2, 5 and 6 to be refunded, refunded in part and disputed"
    );

    step("a sell-out: more buyers than tickets");
    let sold_out = online::sell_out(addr, &pool).await?;

    step("selling on the RSUs");
    let uploaded = rsus::sell(addr, &scenario, &options, &receipts).await?;

    step("waiting for the pipeline: allocator and ledger");
    let client = db.connect("raffle-demo").await?;
    let expected = options.orders + uploaded;
    books::wait_for_pipeline(&client, raffle, expected, addr, &refunds).await?;
    books::wait_for_refunds(&client, raffle, &provider).await?;

    step("closing sales, taking the RSUs' number blocks back, sealing the books");
    let (seal, seed_key) = books::close_and_seal(&pool, &brokers, &topics, &scenario).await?;

    step("drawing the winners (seed revealed, ChaCha20, no modulo bias)");
    let (outcome, claimed) = books::draw(&pool, &client, raffle, seed_key, &receipts).await?;

    step("the provider's payout, matched to the books line by line");
    books::payouts(&pool, raffle, &provider).await?;

    let mails_client = db.connect("raffle-demo-mail").await?;

    step("reconciling and auditing");
    let audit = books::audit(&client, &config, raffle).await?;
    books::print_summary(
        &client, raffle, sold_out, &seal, &outcome, &claimed, &audit, started,
    )
    .await?;
    mail::report(&mails_client, raffle, &mailbox).await?;
    mail::report_screen(&mails_client, &screen, &seal).await?;
    let _ = stop.send(true);

    for task in [allocator, ledger_task, notifier_task, displays_task] {
        if let Ok(Err(e)) = task.await {
            tracing::warn!(error = %e, "a consumer stopped with an error");
        }
    }
    if let Ok(Err(e)) = refunds_task.await {
        tracing::warn!(error = %e, "the refunds worker stopped with an error");
    }
    let _ = ingest_task.await;
    if !audit.passes() {
        bail!("the demo raffle does not reconcile or verify; see the checks above");
    }
    Ok(())
}
