//! `raffle ingest serve` and `raffle allocator run`: the sales pipeline's services.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use platform::StackConfig;
use platform::db::DbTarget;

pub(crate) async fn database(
    config: &StackConfig,
    pool_size: usize,
) -> anyhow::Result<(DbTarget, deadpool_postgres::Pool)> {
    let db = DbTarget::parse(&config.database_url)?;
    db.ensure_database().await?;
    db.migrate().await?;
    let pool = db.pool(pool_size)?;
    Ok((db, pool))
}

pub(crate) fn brokers(config: &StackConfig) -> anyhow::Result<String> {
    match &config.kafka_brokers {
        Some(b) => Ok(b.clone()),
        None => platform::devstack::running_tansu(&config.state_dir)
            .map(|p| p.brokers)
            .context("KAFKA_BROKERS is not set and no local stack is up: run `raffle stack up` or set KAFKA_BROKERS"),
    }
}

/// Where a consumer service serves its `/health`: the variable `name`, else `default`.
fn health_addr(name: &str, default: &str) -> anyhow::Result<SocketAddr> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
        .trim()
        .parse()
        .with_context(|| format!("{name} must be an address like {default}"))
}

/// Serves `health` on `addr` in the background until `stop` turns true.
async fn serve_health(
    service: &str,
    variable: &str,
    addr: SocketAddr,
    health: Arc<platform::health::Health>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the {service}'s health endpoint; set {variable} to a free address")
    })?;
    eprintln!(
        "{service} health on http://{}/health",
        listener.local_addr()?
    );
    tokio::spawn(platform::health::serve(health, listener, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Ok(())
}

/// Serves checkout, payment webhooks and RSU uploads on RAFFLE_INGEST_ADDR (default 127.0.0.1:8080).
pub async fn ingest() -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let brokers = brokers(&config)?;
    let (db, pool) = database(&config, 32).await?;
    platform::kafka::health(
        &brokers,
        &[&config.topics.sales],
        std::time::Duration::from_secs(5),
    )
    .await?;
    let settings = ingest::IngestConfig::from_env(&config.topics.sales, &brokers)
        .map_err(anyhow::Error::msg)?;
    let producer = platform::kafka::producer(&brokers, ingest::DELIVERY_TIMEOUT_MS)?;
    let addr: SocketAddr = std::env::var("RAFFLE_INGEST_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()
        .context("RAFFLE_INGEST_ADDR must be an address like 127.0.0.1:8080")?;
    let tls =
        platform::tls::server_config_from_env("RAFFLE_INGEST_TLS_CERT", "RAFFLE_INGEST_TLS_KEY")?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for ingest; set RAFFLE_INGEST_ADDR to a free address")
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "ingest listening on {scheme}://{}/v1",
        listener.local_addr()?
    );
    let mail = notifier::MailSettings::from_env().map_err(anyhow::Error::msg)?;
    let state = Arc::new(ingest::IngestState::new(&db, pool, producer, settings)?.with_mail(mail));
    ingest::serve_tls(state, listener, platform::service::termination(), tls).await;
    Ok(())
}

/// Imports an RSU's exported sales file through the batch-upload checks; prints each refusal.
pub async fn import_rsu(rsu: uuid::Uuid, file: std::path::PathBuf) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let brokers = brokers(&config)?;
    let (db, pool) = database(&config, 4).await?;
    let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let state = ingest::IngestState::new(
        &db,
        pool,
        platform::kafka::producer(&brokers, ingest::DELIVERY_TIMEOUT_MS)?,
        ingest::IngestConfig {
            // Imports carry no webhooks.
            webhook_secret: Vec::new(),
            webhook_tolerance_s: 300,
            order_tickets_max: 500,
            sales_topic: config.topics.sales.clone(),
            brokers: brokers.clone(),
            hold_minutes: ingest::HOLD_MINUTES_DEFAULT,
        },
    )?;
    let (_, answer) = ingest::rsu::import(&state, rsu, &body)
        .await
        .map_err(|p| anyhow::anyhow!("{}: {p}", file.display()))?;
    println!(
        "imported {} for RSU {rsu}: {} accepted, {} already on the server, {} rejected",
        file.display(),
        answer["accepted"],
        answer["duplicate"],
        answer["rejected"]
    );
    for r in answer["results"].as_array().into_iter().flatten() {
        if r["status"] == "rejected" {
            println!("  rejected {}: {}", r["local_id"], r["reason"]);
        }
    }
    Ok(())
}

/// Consumes every partition of the sales topic it can lease, and relays the outbox; serves its
/// health on RAFFLE_ALLOCATOR_HEALTH_ADDR (default 127.0.0.1:8082). Exits non-zero when a
/// partition's consumer cannot recover, so that a supervisor restarts it.
pub async fn allocator() -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let brokers = brokers(&config)?;
    let variable = "RAFFLE_ALLOCATOR_HEALTH_ADDR";
    let addr = health_addr(variable, "127.0.0.1:8082")?;
    let partitions = config.topics.sales_partitions as usize;
    // A pooled connection per partition's batch, the relay's and the health check's.
    let (db, pool) = database(&config, partitions + 4).await?;
    platform::kafka::health(
        &brokers,
        &[&config.topics.sales],
        std::time::Duration::from_secs(5),
    )
    .await?;
    let service = allocator::service(&db, &pool, &brokers, &config.topics)?;
    let health = platform::health::Health::start(platform::health::HealthConfig {
        brokers: Some(brokers.clone()),
        produces: vec![config.topics.tickets.clone(), config.topics.dlq.clone()],
        leases: service.leases(),
        stats: service.stats(),
        outbox: true,
        ..platform::health::HealthConfig::database_only("allocator", pool.clone())
    });
    let stop = platform::service::stop_on_termination();
    serve_health("allocator", variable, addr, health, stop.clone()).await?;
    eprintln!(
        "allocator consuming {} ({} partitions)",
        config.topics.sales, config.topics.sales_partitions
    );
    service.run(stop).await?;
    Ok(())
}

/// Posts every ticket event it can lease a partition of, until interrupted; serves its health
/// on RAFFLE_LEDGER_HEALTH_ADDR (default 127.0.0.1:8083). Exits non-zero when a partition's
/// consumer cannot recover, so that a supervisor restarts it.
pub async fn ledger() -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let brokers = brokers(&config)?;
    let variable = "RAFFLE_LEDGER_HEALTH_ADDR";
    let addr = health_addr(variable, "127.0.0.1:8083")?;
    let partitions = config.topics.tickets_partitions as usize;
    let (db, pool) = database(&config, partitions + 4).await?;
    platform::kafka::health(
        &brokers,
        &[&config.topics.tickets],
        std::time::Duration::from_secs(5),
    )
    .await?;
    let service = ledger::service(&db, &pool, &brokers, &config.topics);
    let health = platform::health::Health::start(platform::health::HealthConfig {
        brokers: Some(brokers.clone()),
        produces: vec![config.topics.dlq.clone()],
        leases: service.leases(),
        stats: service.stats(),
        ..platform::health::HealthConfig::database_only("ledger", pool.clone())
    });
    let stop = platform::service::stop_on_termination();
    serve_health("ledger", variable, addr, health, stop.clone()).await?;
    eprintln!(
        "ledger consuming {} ({} partitions)",
        config.topics.tickets, config.topics.tickets_partitions
    );
    service.run(stop).await?;
    Ok(())
}

/// Consumes every partition of the tickets topic it can lease, writing the e-mails buyers are
/// owed, and sends them over RAFFLE_SMTP_URL; serves its health on RAFFLE_NOTIFIER_HEALTH_ADDR
/// (default 127.0.0.1:8085). `RAFFLE_NOTIFIER_LEASE_SECONDS` sets how long a message being sent is
/// left alone before it is tried again.
pub async fn notifier() -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let brokers = brokers(&config)?;
    let variable = "RAFFLE_NOTIFIER_HEALTH_ADDR";
    let addr = health_addr(variable, "127.0.0.1:8085")?;
    let partitions = config.topics.tickets_partitions as usize;
    let (db, pool) = database(&config, partitions + 6).await?;
    platform::kafka::health(
        &brokers,
        &[&config.topics.tickets],
        std::time::Duration::from_secs(5),
    )
    .await?;
    let settings = notifier::MailSettings::from_env().map_err(anyhow::Error::msg)?;
    let mut sender = notifier::SenderConfig::default();
    if let Ok(seconds) = std::env::var("RAFFLE_NOTIFIER_LEASE_SECONDS") {
        let seconds: u64 = seconds
            .trim()
            .parse()
            .context("RAFFLE_NOTIFIER_LEASE_SECONDS must be a whole number of seconds")?;
        sender.lease = std::time::Duration::from_secs(seconds.max(1));
    }
    eprintln!(
        "notifier consuming {} ({} partitions), sending as {} through {}",
        config.topics.tickets,
        config.topics.tickets_partitions,
        settings.from,
        settings.smtp_url_for_people()
    );
    let service = notifier::service(
        &db,
        &pool,
        &brokers,
        &config.topics,
        std::sync::Arc::new(settings),
        sender,
    );
    let health = platform::health::Health::start(platform::health::HealthConfig {
        brokers: Some(brokers.clone()),
        produces: vec![config.topics.dlq.clone()],
        leases: service.leases(),
        stats: service.stats(),
        ..platform::health::HealthConfig::database_only("notifier", pool.clone())
    });
    let stop = platform::service::stop_on_termination();
    serve_health("notifier", variable, addr, health, stop.clone()).await?;
    service.run(stop).await?;
    Ok(())
}

/// Keeps the jackpots (a consumer of the tickets topic) and serves them and the public pages on
/// RAFFLE_DISPLAYS_ADDR (default 127.0.0.1:8086), where its health is too.
pub async fn displays() -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let brokers = brokers(&config)?;
    let partitions = config.topics.tickets_partitions as usize;
    let (db, pool) = database(&config, partitions + 8).await?;
    platform::kafka::health(
        &brokers,
        &[&config.topics.tickets],
        std::time::Duration::from_secs(5),
    )
    .await?;
    let addr: SocketAddr = std::env::var("RAFFLE_DISPLAYS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8086".into())
        .parse()
        .context("RAFFLE_DISPLAYS_ADDR must be an address like 127.0.0.1:8086")?;
    let service = displays::service(&db, &pool, &brokers, &config.topics);
    let health = platform::health::Health::start(platform::health::HealthConfig {
        brokers: Some(brokers.clone()),
        produces: vec![config.topics.dlq.clone()],
        leases: service.leases(),
        stats: service.stats(),
        ..platform::health::HealthConfig::database_only("displays", pool.clone())
    });
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} for the displays; set RAFFLE_DISPLAYS_ADDR to a free address"
        )
    })?;
    println!(
        "displays on http://{}/v1/raffles/{{id}}/jackpot (also /stream, /widget) and /page",
        listener.local_addr()?
    );
    let stop = platform::service::stop_on_termination();
    let state = Arc::new(displays::http::DisplaysState::new(pool, health));
    let server = tokio::spawn(displays::http::serve(state, listener, stop.clone()));
    service.run(stop).await?;
    let _ = server.await;
    Ok(())
}

/// Recomputes a raffle's hash chain and balances from the database rows; fails naming the first
/// entry that does not verify.
pub async fn audit_verify(raffle: uuid::Uuid, json: bool) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let (_, pool) = database(&config, 2).await?;
    let client = pool.get().await?;
    let verification = ledger::verify(&**client, raffle).await?;
    let balances = ledger::balances(&**client, raffle, None).await?;
    let seal = ledger::verify_seal(&**client, raffle).await?;
    if json {
        let out = serde_json::json!({"verification": verification, "balances": balances, "seal_mismatches": seal});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "raffle {raffle}: {} entries verified, head hash {}",
            verification.entries_verified, verification.head_hash
        );
        for (account, balance) in &balances {
            println!("  {account:<50} {balance:>14}");
        }
        println!(
            "  {:<50} {:>14}",
            "trial balance",
            balances.values().sum::<i64>()
        );
    }
    if !json {
        match &seal {
            None => println!("  not sealed yet"),
            Some(m) if m.is_empty() => {
                println!("  seal: every figure recomputes from the entries and tickets")
            }
            Some(m) => {
                for x in m {
                    println!(
                        "  seal MISMATCH {}: sealed {}, recomputed {}",
                        x.field, x.sealed, x.recomputed
                    );
                }
            }
        }
    }
    if !json && let Some(f) = &verification.first_failure {
        println!(
            "  FIRST FAILURE: entry {} (sequence {}): {}",
            f.entry_id, f.sequence, f.reason
        );
    }
    // The entry first: a changed entry usually changes the seal's figures too, and the entry
    // is what an auditor has to find.
    let mut failures = Vec::new();
    if let Some(f) = &verification.first_failure {
        failures.push(format!(
            "entry {} (sequence {}) does not verify: {}",
            f.entry_id, f.sequence, f.reason
        ));
    }
    if let Some(m) = seal.filter(|m| !m.is_empty()) {
        let fields: Vec<&str> = m.iter().map(|x| x.field).collect();
        failures.push(format!(
            "the seal of raffle {raffle} does not match its books: {}",
            fields.join(", ")
        ));
    }
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}

/// Seals a raffle's books and prints the seal.
pub async fn seal(request: ledger::SealRequest, json: bool) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let brokers = brokers(&config)?;
    let (_, pool) = database(&config, 4).await?;
    let record = ledger::seal(&pool, &brokers, &config.topics, &request).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        println!("raffle {} sealed at {}", record.raffle_id, record.sealed_at);
        println!(
            "  gross sales {} {}, refunds and voids {}, written off {}",
            record.gross_sales_minor,
            record.currency,
            record.refunds_minor,
            record.written_off_minor
        );
        println!("  gross receipts {}", record.gross_receipts_minor);
        for prize in record.prizes.as_array().into_iter().flatten() {
            println!(
                "  prize {:<30} {}",
                prize["name"].as_str().unwrap_or("?"),
                prize["amount_minor"]
            );
        }
        println!(
            "  operating fee {}, net proceeds {}",
            record.operating_fee_minor, record.net_proceeds_minor
        );
        println!(
            "  {} eligible tickets, {} voided; ticket set digest {}",
            record.tickets_eligible, record.tickets_voided, record.ticket_set_digest
        );
        println!(
            "  ledger head {} over {} entries; draw seed commitment {}",
            record.head_hash, record.entries, record.seed_commitment
        );
    }
    Ok(())
}

/// Prints (or writes) the reconciliation report; fails when a check fails.
pub async fn confirm_reconciliation(raffle: uuid::Uuid, by: &str) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let (_, pool) = database(&config, 2).await?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let confirmation =
        ledger::report::confirm(&*tx, raffle, &catalog::audit::Actor::cli(by)).await?;
    tx.commit().await?;
    println!(
        "reconciliation of raffle {raffle} confirmed by {} at {} (report sha256 {})",
        confirmation.confirmed_by, confirmation.confirmed_at, confirmation.report_sha256
    );
    Ok(())
}

pub async fn reconciliation(
    raffle: uuid::Uuid,
    format: &str,
    out: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let (_, pool) = database(&config, 2).await?;
    let client = pool.get().await?;
    let report = ledger::report::reconciliation(&**client, raffle).await?;
    let text = match format {
        "json" => serde_json::to_string_pretty(&report)?,
        "csv" => ledger::report::to_csv(&report),
        "html" => ledger::report::to_html(&report),
        other => anyhow::bail!("--format {other:?}: choose json, csv or html"),
    };
    match out {
        Some(path) => {
            platform::files::write_private(&path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("report written to {}", path.display());
        }
        None => println!("{text}"),
    }
    let failing = report.failing();
    if !failing.is_empty() {
        anyhow::bail!(
            "{} reconciliation checks fail: {}",
            failing.len(),
            failing.join("; ")
        );
    }
    Ok(())
}

/// Writes the audit export of a raffle into `out`.
pub async fn audit_export(raffle: uuid::Uuid, out: std::path::PathBuf) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let (_, pool) = database(&config, 2).await?;
    let client = pool.get().await?;
    let software = platform::version::version_line("raffle", env!("CARGO_PKG_VERSION"));
    let manifest = ledger::audit::export(&**client, raffle, &out, &software).await?;
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    eprintln!("audit export written to {}", out.display());
    Ok(())
}

/// Verifies an audit export from its files alone.
pub fn audit_verify_export(dir: std::path::PathBuf) -> anyhow::Result<()> {
    let result = ledger::audit::verify_export(&dir)?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    if result.ok() {
        eprintln!(
            "export of raffle {} verifies: {} entries, head {}",
            result.raffle_id, result.chain.entries_verified, result.chain.head_hash
        );
        return Ok(());
    }
    if let Some(f) = &result.chain.first_failure {
        anyhow::bail!(
            "entry {} (sequence {}) does not verify: {}",
            f.entry_id,
            f.sequence,
            f.reason
        );
    }
    anyhow::bail!(
        "the export does not verify: changed files {:?}, seal mismatches {:?}",
        result.changed_files,
        result.seal_mismatches
    )
}
