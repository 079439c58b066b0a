//! `raffle payouts import`: the provider's itemized payout reconciliation report, matched to the
//! books. The work is the ledger's (`ledger::payouts`); this file reads the file and prints.

use anyhow::Context;
use clap::Subcommand;
use platform::StackConfig;
use uuid::Uuid;

use crate::pipeline::database;

#[derive(Subcommand)]
pub enum PayoutsAction {
    /// Import a `payout_reconciliation.itemized` CSV: every line matched by payment and amount,
    /// fees and payouts booked; unmatched lines on either side listed. Exits non-zero when
    /// anything is unmatched or the file is refused.
    Import {
        #[arg(long)]
        raffle: Uuid,
        #[arg(long)]
        file: std::path::PathBuf,
        /// The provider account the file must be of (its `connected_account` column, if any).
        #[arg(long)]
        account: Option<String>,
        #[arg(long = "as", default_value = "finance")]
        by: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(action: PayoutsAction) -> anyhow::Result<()> {
    let PayoutsAction::Import {
        raffle,
        file,
        account,
        by,
        json,
    } = action;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("reading the payout report {}", file.display()))?;
    let config = StackConfig::from_env()?;
    let (_, pool) = database(&config, 2).await?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let outcome = ledger::payouts::import(&tx, raffle, &text, account.as_deref(), &by).await?;
    tx.commit().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!(
            "{} lines ({} imported before): {} matched, {} unmatched in the file, {} unmatched in the books",
            outcome.lines,
            outcome.already_imported,
            outcome.matched.len(),
            outcome.unmatched_in_file.len(),
            outcome.unmatched_in_books.len()
        );
        for p in &outcome.payouts {
            println!(
                "  payout {}: {} lines, {} to the bank, fees {}, clearing {}",
                p.payout_id,
                p.lines,
                crate::money(p.net_minor),
                crate::money(p.fees_minor),
                if p.clearing_nets_to_zero {
                    "nets to zero"
                } else {
                    "does NOT net to zero"
                }
            );
        }
        for (line, bt, why) in &outcome.unmatched_in_file {
            println!("  line {line} ({bt}): {why}");
        }
        for why in &outcome.unmatched_in_books {
            println!("  in the books: {why}");
        }
    }
    if !outcome.all_matched() {
        anyhow::bail!("the payout report does not match the books; see the lines above");
    }
    Ok(())
}
