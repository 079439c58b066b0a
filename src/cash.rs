//! `raffle cash …`: a device's cash counted by two people, and deposits to the bank. The work is
//! the ledger's (`ledger::cash`); this file parses and prints.

use clap::Subcommand;
use platform::StackConfig;
use uuid::Uuid;

use crate::pipeline::database;

#[derive(Subcommand)]
pub enum CashAction {
    /// Record a device's counted cash (two people, both named), against its float and the
    /// value of its sales; the difference is booked as over or short.
    Count {
        #[arg(long)]
        raffle: Uuid,
        #[arg(long)]
        rsu: Uuid,
        /// The seller whose cash box it was, if one seller's.
        #[arg(long)]
        seller: Option<String>,
        /// The starting cash the device was handed, in minor units.
        #[arg(long, default_value_t = 0)]
        float_minor: i64,
        /// What the two people counted, in minor units.
        #[arg(long)]
        counted_minor: i64,
        #[arg(long)]
        counted_by: String,
        #[arg(long)]
        witnessed_by: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Record a deposit of counted cash to the bank, with its slip.
    Deposit {
        #[arg(long)]
        raffle: Uuid,
        #[arg(long)]
        slip: String,
        /// The day of the deposit, YYYY-MM-DD.
        #[arg(long)]
        on: chrono::NaiveDate,
        #[arg(long)]
        amount_minor: i64,
        #[arg(long = "as", default_value = "finance")]
        by: String,
    },
}

pub async fn run(action: CashAction) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let (_, pool) = database(&config, 2).await?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    match action {
        CashAction::Count {
            raffle,
            rsu,
            seller,
            float_minor,
            counted_minor,
            counted_by,
            witnessed_by,
            note,
        } => {
            let c = ledger::cash::count(
                &tx,
                &ledger::cash::NewCount {
                    raffle_id: raffle,
                    rsu_id: rsu,
                    seller_id: seller.as_deref(),
                    float_minor,
                    counted_minor,
                    counted_by: &counted_by,
                    witnessed_by: &witnessed_by,
                    note: note.as_deref(),
                },
            )
            .await?;
            tx.commit().await?;
            println!(
                "{}: counted {}, float {}, sales {}, {} {}; deposit {} by {}",
                c.rsu_name,
                crate::money(c.counted_minor),
                crate::money(c.float_minor),
                crate::money(c.expected_minor),
                if c.over_short_minor < 0 {
                    "short"
                } else {
                    "over"
                },
                crate::money(c.over_short_minor.abs()),
                crate::money(c.to_deposit_minor),
                c.deposit_due_by
            );
        }
        CashAction::Deposit {
            raffle,
            slip,
            on,
            amount_minor,
            by,
        } => {
            let left = ledger::cash::deposit(
                &tx,
                &ledger::cash::NewDeposit {
                    raffle_id: raffle,
                    slip_number: &slip,
                    deposited_on: on,
                    amount_minor,
                    recorded_by: &by,
                },
            )
            .await?;
            tx.commit().await?;
            println!(
                "deposit slip {slip} of {} recorded; still to deposit {}",
                crate::money(amount_minor),
                crate::money(left)
            );
        }
    }
    Ok(())
}
