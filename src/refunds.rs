//! `raffle refunds …`: the refunds worker, and what finance does with the list. The work is the
//! refunds crate's; this file parses, prints and sets exit codes.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use platform::StackConfig;
use refunds::obligations::{self, Obligation, State};
use uuid::Uuid;

use crate::pipeline::database;

#[derive(Subcommand)]
pub enum RefundsAction {
    /// Pay the refunds owed through the provider until interrupted (RAFFLE_STRIPE_API_URL,
    /// RAFFLE_STRIPE_SECRET_KEY, RAFFLE_REFUNDS_RATE requests a second, default 22).
    Run {
        /// One pass over what is due, then stop (for scripts and tests).
        #[arg(long)]
        once: bool,
    },
    /// The refunds of a raffle (or of all), in one state or all.
    List {
        #[arg(long)]
        raffle: Option<Uuid>,
        /// owed, requested, succeeded, failed or cancelled.
        #[arg(long)]
        state: Option<String>,
        /// json or csv; a table when not given.
        #[arg(long)]
        format: Option<String>,
    },
    /// Ask again for a failed refund (under a new idempotency key) or an owed one now.
    Retry {
        id: Uuid,
        #[arg(long = "as", default_value = "finance")]
        by: String,
    },
    /// Give an online order back whole, with the reason: the refund is owed and the sale
    /// reversed now, the worker pays it, the provider's refund voids the tickets.
    Order {
        #[arg(long)]
        raffle: Uuid,
        #[arg(long)]
        order: Uuid,
        #[arg(long)]
        reason: String,
        #[arg(long = "as", default_value = "finance")]
        by: String,
    },
    /// Take a refund off the provider's list (paid another way, or not owed), with the reason.
    Cancel {
        id: Uuid,
        #[arg(long)]
        reason: String,
        #[arg(long = "as", default_value = "finance")]
        by: String,
    },
}

/// The provider API and the worker's settings from the environment.
pub fn worker_from_env() -> anyhow::Result<(refunds::StripeApi, refunds::WorkerConfig)> {
    let url = std::env::var("RAFFLE_STRIPE_API_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "https://api.stripe.com".into());
    let key = std::env::var("RAFFLE_STRIPE_SECRET_KEY").context(
        "RAFFLE_STRIPE_SECRET_KEY must hold the provider's secret key (sk_live_… or sk_test_…)",
    )?;
    let api = refunds::StripeApi::new(&url, &key).map_err(anyhow::Error::msg)?;
    let mut config = refunds::WorkerConfig::default();
    if let Ok(rate) = std::env::var("RAFFLE_REFUNDS_RATE") {
        config.rate_per_second = rate
            .trim()
            .parse()
            .ok()
            .filter(|r| (1..=1000).contains(r))
            .context("RAFFLE_REFUNDS_RATE must be requests a second, 1 to 1000")?;
    }
    if let Ok(secs) = std::env::var("RAFFLE_REFUNDS_LEASE_SECONDS") {
        config.lease = Duration::from_secs(
            secs.trim()
                .parse()
                .ok()
                .filter(|s| (1..=3600).contains(s))
                .context("RAFFLE_REFUNDS_LEASE_SECONDS must be 1 to 3600")?,
        );
    }
    if let Ok(secs) = std::env::var("RAFFLE_REFUNDS_RECHECK_SECONDS") {
        config.pending_recheck = Duration::from_secs(
            secs.trim()
                .parse()
                .ok()
                .filter(|s| (1..=86_400).contains(s))
                .context("RAFFLE_REFUNDS_RECHECK_SECONDS must be 1 to 86400")?,
        );
    }
    Ok((api, config))
}

pub async fn run(action: RefundsAction) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let (_, pool) = database(&config, 12).await?;
    match action {
        RefundsAction::Run { once } => {
            let (api, worker) = worker_from_env()?;
            if once {
                let pacer = refunds::Pacer::new(worker.rate_per_second);
                let pass = refunds::run_once(&pool, &api, &worker, &pacer).await?;
                println!("{}", serde_json::to_string(&pass_json(&pass))?);
                return Ok(());
            }
            eprintln!(
                "refunds worker asking {} at most {}/s",
                api.base_url(),
                worker.rate_per_second
            );
            let stop = platform::service::stop_on_termination();
            refunds::worker::run(&pool, &api, &worker, stop).await?;
            Ok(())
        }
        RefundsAction::List {
            raffle,
            state,
            format,
        } => {
            let state: Option<State> = state
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let client = pool.get().await?;
            let list = obligations::list(&**client, raffle, state).await?;
            match format.as_deref() {
                Some("json") => println!("{}", serde_json::to_string_pretty(&list)?),
                Some("csv") => print!("{}", obligations::to_csv(&list)),
                None => print_table(&list),
                Some(other) => anyhow::bail!("--format {other:?}: json or csv"),
            }
            Ok(())
        }
        RefundsAction::Retry { id, by } => {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let after = obligations::retry(&*tx, id, &catalog::audit::Actor::cli(&by)).await?;
            tx.commit().await?;
            println!("refund {id} is {} ({})", after.state, after.idempotency_key);
            Ok(())
        }
        RefundsAction::Order {
            raffle,
            order,
            reason,
            by,
        } => {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let owed = refunds::orders::refund_order(
                &tx,
                raffle,
                order,
                &reason,
                &catalog::audit::Actor::cli(&by),
            )
            .await?;
            tx.commit().await?;
            println!(
                "order {order} is owed back: refund {} of {} {} ({})",
                owed.id,
                crate::money(owed.amount_minor),
                owed.currency,
                owed.state
            );
            Ok(())
        }
        RefundsAction::Cancel { id, reason, by } => {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let after =
                obligations::cancel(&*tx, id, &catalog::audit::Actor::cli(&by), &reason).await?;
            tx.commit().await?;
            println!("refund {id} is {}", after.state);
            Ok(())
        }
    }
}

fn pass_json(p: &refunds::Pass) -> serde_json::Value {
    serde_json::json!({
        "asked": p.asked, "found_after_restart": p.found_after_restart, "succeeded": p.succeeded,
        "pending": p.pending, "failed": p.failed, "rate_limited": p.rate_limited,
        "unavailable": p.unavailable, "booked": p.booked, "owed_for_cancellations": p.owed_for_cancellations,
    })
}

fn print_table(list: &[Obligation]) {
    println!(
        "{:<36}  {:<10}  {:>12}  {:<3}  {:<24}  {:<28}  last error",
        "refund", "state", "amount", "cur", "reason", "payment"
    );
    for o in list {
        println!(
            "{:<36}  {:<10}  {:>12}  {:<3}  {:<24}  {:<28}  {}",
            o.id,
            o.state,
            schemas::amount_for_people(o.amount_minor),
            o.currency,
            o.reason_code,
            o.payment_reference,
            o.last_error.as_deref().unwrap_or("")
        );
    }
    let owed: i64 = list
        .iter()
        .filter(|o| matches!(o.state, State::Owed | State::Requested | State::Failed))
        .map(|o| o.amount_minor)
        .sum();
    println!(
        "{} refunds; still to pay: {}",
        list.len(),
        schemas::amount_for_people(owed)
    );
}
