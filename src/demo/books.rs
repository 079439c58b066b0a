//! The demo's end of sales: the pipeline drained, sales closed and the books sealed, the draw
//! and a winner's claim, the reconciliation and every audit check, and the summary printed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use platform::StackConfig;
use serde_json::{Value, json};
use uuid::Uuid;
use warp::http::Method;

use super::online::Receipts;
use super::progress::Progress;
use super::{money, scalar};

/// Waits until the allocator decided every sale (`expected`), then delivers the refunds and
/// the dispute.
pub(super) async fn wait_for_pipeline(
    client: &tokio_postgres::Client,
    raffle: Uuid,
    expected: usize,
    addr: SocketAddr,
    refunds: &[Value],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let allocated = Progress::new("sales allocated", expected);
    loop {
        let done = scalar(
            client,
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
    for refund in refunds {
        super::online::deliver(addr, refund).await?;
    }
    eprintln!(
        "  all sales allocated; buyer 2 refunded, buyer 5 refunded $5.00 of $20.00 (tickets kept, flagged for finance), buyer 6's dispute lost (tickets voided)"
    );
    Ok(())
}

/// The provider's itemized payout report of this run (from the stand-in), imported and matched.
pub(super) async fn payouts(
    pool: &deadpool_postgres::Pool,
    raffle: Uuid,
    provider: &scenario::stripe::StripeStandIn,
) -> anyhow::Result<()> {
    let report = provider.payout_report("po_demo_1");
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let outcome = ledger::payouts::import(&tx, raffle, &report, None, "finance").await?;
    tx.commit().await?;
    let payout = outcome.payouts.first();
    eprintln!(
        "  payout po_demo_1: {} lines, {} matched; {} to the bank after {} of fees; clearing {}",
        outcome.lines,
        outcome.matched.len(),
        money(payout.map_or(0, |p| p.net_minor)),
        money(payout.map_or(0, |p| p.fees_minor)),
        if payout.is_some_and(|p| p.clearing_nets_to_zero) {
            "nets to zero"
        } else {
            "does not net to zero"
        }
    );
    for (line, bt, why) in &outcome.unmatched_in_file {
        eprintln!("  unmatched line {line} ({bt}): {why}");
    }
    for why in &outcome.unmatched_in_books {
        eprintln!("  unmatched in the books: {why}");
    }
    let books = ledger::balances(&**client, raffle, None).await?;
    eprintln!(
        "  payment clearing after the payout: {} (what the provider still holds for the raffle)",
        money(
            books
                .get(ledger::postings::PAYMENT_CLEARING)
                .copied()
                .unwrap_or(0)
        )
    );
    Ok(())
}

/// Waits until every refund the raffle owes is paid through the provider and booked.
pub(super) async fn wait_for_refunds(
    client: &tokio_postgres::Client,
    raffle: Uuid,
    provider: &scenario::stripe::StripeStandIn,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let owed = scalar(
            client,
            "SELECT count(*) FROM refunds.obligations WHERE raffle_id = $1 AND NOT (state = 'succeeded' AND booked = 'paid')",
            raffle,
        )
        .await?;
        if owed == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{owed} refunds of raffle {raffle} were not paid in a minute; see `raffle refunds list --raffle {raffle}`"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let paid = scalar(
        client,
        "SELECT count(*) FROM refunds.obligations WHERE raffle_id = $1",
        raffle,
    )
    .await?;
    let counts = provider.counts();
    eprintln!(
        "  {paid} payment that could not be honoured (buyer 7's second) refunded through the provider in {} ms ({} requests, {} refunds made); refunds still owed: 0",
        started.elapsed().as_millis(),
        counts.requests,
        counts.refunds_created
    );
    Ok(())
}

/// Closes sales, takes the RSUs' blocks back and seals the books once the pipeline drained;
/// the seed waits wrapped under a key only this run holds.
pub(super) async fn close_and_seal(
    pool: &deadpool_postgres::Pool,
    brokers: &str,
    topics: &platform::TopicNames,
    scenario: &scenario::seed::Scenario,
) -> anyhow::Result<(ledger::SealRecord, ledger::seed_key::SeedKey)> {
    let (raffle, org) = (scenario.raffle_id, scenario.organization_id);
    scenario::seed::call_as(
        pool,
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
            pool,
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
        seed_keeper: &draw_engine::SEED_KEEPER,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut counted = Vec::new();
    let seal = loop {
        match ledger::seal(pool, brokers, topics, &request).await {
            Ok(seal) => break seal,
            Err(ledger::SealError::Refused {
                code: "cash-not-counted",
                ..
            }) if counted.is_empty() => {
                counted = count_cash(pool, raffle).await?;
            }
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
    deposit_cash(pool, raffle, &counted).await?;
    Ok((seal, seed_key))
}

/// The seal asks for every device's cash: two people count each (the first device is $5.00
/// short, booked as such), with a $100.00 float.
async fn count_cash(
    pool: &deadpool_postgres::Pool,
    raffle: Uuid,
) -> anyhow::Result<Vec<ledger::cash::Count>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut counts = Vec::new();
    for (i, (rsu, _, value)) in ledger::cash::uncounted(&*tx, raffle)
        .await?
        .into_iter()
        .enumerate()
    {
        let short = if i == 0 { 500 } else { 0 };
        counts.push(
            ledger::cash::count(
                &tx,
                &ledger::cash::NewCount {
                    raffle_id: raffle,
                    rsu_id: rsu,
                    seller_id: None,
                    float_minor: 10_000,
                    counted_minor: 10_000 + value - short,
                    counted_by: "Pat (cash room)",
                    witnessed_by: "Sam (treasurer)",
                    note: None,
                },
            )
            .await?,
        );
    }
    tx.commit().await?;
    let total: i64 = counts.iter().map(|c| c.counted_minor).sum();
    let short: i64 = counts.iter().map(|c| c.over_short_minor).sum();
    eprintln!(
        "  cash counted on {} devices by two people: {} with their floats, {} short (booked as cash over/short)",
        counts.len(),
        money(total),
        money(-short)
    );
    Ok(counts)
}

/// What the counts left to deposit, deposited on one slip.
async fn deposit_cash(
    pool: &deadpool_postgres::Pool,
    raffle: Uuid,
    counts: &[ledger::cash::Count],
) -> anyhow::Result<()> {
    let amount: i64 = counts.iter().map(|c| c.to_deposit_minor).sum();
    if amount <= 0 {
        return Ok(());
    }
    let due = counts
        .iter()
        .map(|c| c.deposit_due_by)
        .min()
        .unwrap_or_default();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let slip = format!("DEP-{}", &raffle.simple().to_string()[..8]);
    ledger::cash::deposit(
        &tx,
        &ledger::cash::NewDeposit {
            raffle_id: raffle,
            slip_number: &slip,
            deposited_on: chrono::Utc::now().date_naive(),
            amount_minor: amount,
            recorded_by: "Sam (treasurer)",
        },
    )
    .await?;
    tx.commit().await?;
    eprintln!(
        "  deposited {} on slip {slip} (due by {due})",
        money(amount)
    );
    Ok(())
}

/// The draw, and the early-bird winner's claim with the receipt's validation number and code.
pub(super) async fn draw(
    pool: &deadpool_postgres::Pool,
    client: &tokio_postgres::Client,
    raffle: Uuid,
    seed_key: ledger::seed_key::SeedKey,
    receipts: &Receipts,
) -> anyhow::Result<(draw_engine::DrawOutcome, Option<draw_engine::ClaimRecord>)> {
    let outcome = draw_engine::run(
        pool,
        &draw_engine::DrawRequest {
            raffle_id: raffle,
            conducted_by: "draw-officer".into(),
            interrupt_after_prizes: None,
            seed_key: Some(seed_key),
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
                    pool,
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
    Ok((outcome, claimed))
}

/// What the books say after the draw.
pub(super) struct Audit {
    report: ledger::report::Report,
    html: PathBuf,
    chain: ledger::Verification,
    seal_mismatches: Vec<ledger::SealMismatch>,
    export_dir: PathBuf,
    export: ledger::audit::ExportVerification,
    draw_check: draw_engine::DrawVerification,
    /// Why finance could not confirm the reconciliation, when it could not.
    not_confirmed: Option<String>,
}

impl Audit {
    pub(super) fn passes(&self) -> bool {
        self.report.failing().is_empty()
            && self.chain.ok()
            && self.seal_mismatches.is_empty()
            && self.export.ok()
            && self.draw_check.ok()
            && self.report.confirmation.is_some()
    }
}

/// The reconciliation (and its printable page), the chain and the seal re-checked, the audit
/// export written and verified from its files, the draw re-derived.
pub(super) async fn audit(
    client: &tokio_postgres::Client,
    config: &StackConfig,
    raffle: Uuid,
) -> anyhow::Result<Audit> {
    // Finance confirms first (refused, with the reason, while anything fails or is owed); the
    // printable report then says who confirmed it.
    client.batch_execute("BEGIN").await?;
    let not_confirmed =
        match ledger::report::confirm(client, raffle, &catalog::audit::Actor::cli("finance")).await
        {
            Ok(_) => {
                client.batch_execute("COMMIT").await?;
                None
            }
            Err(e) => {
                client.batch_execute("ROLLBACK").await?;
                Some(e.to_string())
            }
        };
    let report = ledger::report::reconciliation(client, raffle).await?;
    let html = std::path::absolute(
        config
            .state_dir
            .join(format!("reconciliation-{raffle}.html")),
    )?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    platform::files::write_private(&html, ledger::report::to_html(&report).as_bytes())
        .with_context(|| format!("writing {}", html.display()))?;
    let chain = ledger::verify(client, raffle).await?;
    let seal_mismatches = ledger::verify_seal(client, raffle)
        .await?
        .unwrap_or_default();
    let export_dir = config.state_dir.join(format!("audit-{raffle}"));
    let software = platform::version::version_line("raffle", env!("CARGO_PKG_VERSION"));
    ledger::audit::export(client, raffle, &export_dir, &software).await?;
    let export = ledger::audit::verify_export(&export_dir)?;
    let draw_check = draw_engine::verify(client, raffle).await?;
    Ok(Audit {
        report,
        html,
        chain,
        seal_mismatches,
        export_dir,
        export,
        draw_check,
        not_confirmed,
    })
}

/// Everything a charity and its auditor would want to see, on standard output.
#[allow(clippy::too_many_arguments)]
pub(super) async fn print_summary(
    client: &tokio_postgres::Client,
    raffle: Uuid,
    sold_out: (usize, usize),
    seal: &ledger::SealRecord,
    outcome: &draw_engine::DrawOutcome,
    claimed: &Option<draw_engine::ClaimRecord>,
    a: &Audit,
    started: Instant,
) -> anyhow::Result<()> {
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
    let refunds = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'succeeded'), coalesce(sum(amount_minor) FILTER (WHERE state = 'succeeded'), 0)::bigint,
                    count(*) FILTER (WHERE state IN ('owed', 'requested', 'failed')),
                    coalesce(sum(amount_minor) FILTER (WHERE state IN ('owed', 'requested', 'failed')), 0)::bigint
               FROM refunds.obligations WHERE raffle_id = $1",
            &[&raffle],
        )
        .await?;
    println!(
        "  refunds paid through the provider {} ({}); refunds owed {} ({})",
        refunds.get::<_, i64>(0),
        money(refunds.get(1)),
        refunds.get::<_, i64>(2),
        money(refunds.get(3))
    );
    println!(
        "  sell-out of a 25-ticket raffle: {} orders paid, {} buyers told sold out before paying, none charged for nothing",
        sold_out.0, sold_out.1
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
    let failing = a.report.failing();
    println!("CHECKS");
    println!(
        "  reconciliation: {} of {} checks pass{}",
        a.report.checks.len() - failing.len(),
        a.report.checks.len(),
        if failing.is_empty() {
            String::new()
        } else {
            format!(" — FAILING: {}", failing.join("; "))
        }
    );
    match (&a.report.confirmation, &a.not_confirmed) {
        (Some(c), _) => println!(
            "  reconciliation confirmed by {} at {} (report sha256 {}…)",
            c.confirmed_by,
            c.confirmed_at,
            &c.report_sha256[..16]
        ),
        (None, reason) => println!(
            "  reconciliation NOT confirmed by finance: {}",
            reason.as_deref().unwrap_or("not asked")
        ),
    }
    println!(
        "  audit verify: {} ({} entries chained, head {}…; seal {})",
        if a.chain.ok() && a.seal_mismatches.is_empty() {
            "PASS"
        } else {
            "FAIL"
        },
        a.chain.entries_verified,
        &a.chain.head_hash[..16],
        if a.seal_mismatches.is_empty() {
            "recomputes".to_owned()
        } else {
            format!("{:?}", a.seal_mismatches)
        }
    );
    println!(
        "  audit export verified from its files alone: {} ({})",
        if a.export.ok() { "PASS" } else { "FAIL" },
        a.export_dir.display()
    );
    println!(
        "  draw verify: {} ({} winners re-derived from the revealed seed)",
        if a.draw_check.ok() { "PASS" } else { "FAIL" },
        a.draw_check.recorded.len()
    );
    println!("  reconciliation report (printable): {}", a.html.display());
    println!(
        "  explore: raffle report reconciliation --raffle {raffle} · raffle audit verify --raffle {raffle} · raffle draw verify --raffle {raffle}"
    );
    println!("  finished in {:.0} s", started.elapsed().as_secs_f64());
    println!("  the local stack stays up for exploring; `raffle stack down` stops the broker");
    Ok(())
}
