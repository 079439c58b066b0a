//! `raffle draw …`: the draw of a sealed raffle, its verification, the manual draw, and prize
//! claims. The work is the draw engine's; this file parses, prints and sets exit codes.

use anyhow::Context;
use clap::Subcommand;
use platform::StackConfig;
use uuid::Uuid;

use crate::pipeline::database;

#[derive(Subcommand)]
pub enum DrawAction {
    /// Draw the winners of a sealed raffle with the seed committed at the seal (or resume an
    /// interrupted draw with the same selection).
    Run {
        #[arg(long)]
        raffle: Uuid,
        /// Who conducts the draw (recorded).
        #[arg(long = "as", default_value = "draw-officer")]
        by: String,
        #[arg(long)]
        json: bool,
    },
    /// Re-derive every winner from the recorded evidence and say whether it matches.
    Verify {
        #[arg(long)]
        raffle: Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Write the barrel list (every eligible number) for a manual draw.
    Barrel {
        #[arg(long)]
        raffle: Uuid,
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long = "as", default_value = "draw-officer")]
        by: String,
    },
    /// Record and validate a manual draw: `--winner POSITION=NUMBER`, repeated; a prize with
    /// several winners repeats its position, in winner order.
    Manual {
        #[arg(long)]
        raffle: Uuid,
        #[arg(long = "winner", required = true)]
        winners: Vec<String>,
        #[arg(long = "as", default_value = "draw-officer")]
        by: String,
        #[arg(long)]
        json: bool,
    },
    /// Claim a prize by winning number and the validation number on the receipt; pays it out.
    Claim {
        #[arg(long)]
        raffle: Uuid,
        #[arg(long)]
        number: i64,
        #[arg(long)]
        validation: String,
        /// The check code printed on the receipt (the buyer's secret), e.g. K7QF2-M9XPA.
        #[arg(long)]
        check_code: String,
        /// Who claims (the winner, or the staff member acting for them).
        #[arg(long = "as")]
        by: String,
    },
    /// After the claim period: return unclaimed prizes to net proceeds and complete the raffle.
    ExpireClaims {
        #[arg(long)]
        raffle: Uuid,
        #[arg(long = "as", default_value = "finance")]
        by: String,
    },
}

fn parse_winners(args: &[String]) -> anyhow::Result<Vec<(i32, Vec<i64>)>> {
    let mut out: Vec<(i32, Vec<i64>)> = Vec::new();
    for arg in args {
        let (position, number) = arg
            .split_once('=')
            .with_context(|| format!("--winner {arg:?}: expected POSITION=NUMBER, e.g. 1=50123"))?;
        let position: i32 = position
            .trim()
            .parse()
            .with_context(|| format!("--winner {arg:?}: the prize position is not a number"))?;
        let number: i64 = number
            .trim()
            .parse()
            .with_context(|| format!("--winner {arg:?}: the winning number is not a number"))?;
        match out.iter_mut().find(|(p, _)| *p == position) {
            Some((_, numbers)) => numbers.push(number),
            None => out.push((position, vec![number])),
        }
    }
    Ok(out)
}

pub fn print_outcome(outcome: &draw_engine::DrawOutcome) {
    println!(
        "raffle {} drawn ({}{}) at {}",
        outcome.raffle_id,
        outcome.method,
        if outcome.resumed { ", resumed" } else { "" },
        outcome.completed_at
    );
    if let Some(seed) = &outcome.seed {
        println!("  seed revealed      {seed}");
    }
    println!("  seed commitment    {}", outcome.seed_commitment);
    println!("  seal head hash     {}", outcome.seal_head_hash);
    println!("  eligible tickets   {}", outcome.tickets_eligible);
    for w in &outcome.winners {
        println!(
            "  prize {} {:<24} winner {}: number {:>8}  {} {}",
            w.position,
            w.prize_name,
            w.winner_index,
            w.draw_number,
            crate::money(w.value_minor),
            w.currency
        );
    }
}

pub async fn run(action: DrawAction) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let (_, pool) = database(&config, 2).await?;
    match action {
        DrawAction::Run { raffle, by, json } => {
            let outcome = draw_engine::run(
                &pool,
                &draw_engine::DrawRequest {
                    raffle_id: raffle,
                    conducted_by: by,
                    interrupt_after_prizes: None,
                    seed_key: ledger::seed_key::SeedKey::from_env().map_err(anyhow::Error::msg)?,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                print_outcome(&outcome);
            }
        }
        DrawAction::Verify { raffle, json } => {
            let client = pool.get().await?;
            let v = draw_engine::verify(&**client, raffle).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for c in &v.checks {
                    println!(
                        "  {} {:<40} {}",
                        if c.pass { "PASS" } else { "FAIL" },
                        c.check,
                        c.detail
                    );
                }
            }
            if !v.ok() {
                anyhow::bail!("the draw of raffle {raffle} does not verify");
            }
            eprintln!(
                "the draw of raffle {raffle} verifies: {} winners",
                v.recorded.len()
            );
        }
        DrawAction::Barrel { raffle, out, by } => {
            let file = platform::files::open_private(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            let (count, digest) =
                draw_engine::export_barrel(&pool, raffle, &by, &mut writer).await?;
            println!(
                "barrel list of raffle {raffle}: {count} numbers written to {} (ticket set digest {digest}, as sealed)",
                out.display()
            );
        }
        DrawAction::Manual {
            raffle,
            winners,
            by,
            json,
        } => {
            let results = parse_winners(&winners)?;
            let outcome = draw_engine::manual(
                &pool,
                &draw_engine::ManualRequest {
                    raffle_id: raffle,
                    conducted_by: by,
                    results,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                print_outcome(&outcome);
            }
        }
        DrawAction::Claim {
            raffle,
            number,
            validation,
            check_code,
            by,
        } => {
            let record = draw_engine::claim(
                &pool,
                &draw_engine::ClaimRequest {
                    raffle_id: raffle,
                    draw_number: number,
                    validation_number: validation,
                    check_code,
                    source: format!("cli:{by}"),
                    claimed_by: by,
                },
            )
            .await?;
            println!(
                "{} won by number {} claimed and paid: {} {} (claim {})",
                record.prize_name,
                record.draw_number,
                crate::money(record.amount_minor),
                record.currency,
                record.claim_id
            );
        }
        DrawAction::ExpireClaims { raffle, by } => {
            let expiry = draw_engine::expire_unclaimed(&pool, raffle, &by).await?;
            println!(
                "claim period of raffle {raffle} ended {}: {} unclaimed prizes, {} returned to net proceeds",
                expiry.deadline,
                expiry.expired.len(),
                crate::money(expiry.returned_to_proceeds_minor)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winners_group_by_position_in_order() {
        let parsed =
            parse_winners(&["1=50010".into(), "2=50020".into(), "2=50030".into()]).expect("valid");
        assert_eq!(parsed, vec![(1, vec![50010]), (2, vec![50020, 50030])]);
        assert!(parse_winners(&["1:50010".into()]).is_err());
        assert!(parse_winners(&["x=1".into()]).is_err());
    }
}
