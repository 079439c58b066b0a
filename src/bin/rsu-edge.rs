//! `rsu-edge`: the program on a Remote Sales Unit. Sells from the device's own number block
//! with or without a connection, prints receipts, and syncs with the server when it can. The
//! work is the `rsu-edge` crate's; this file parses arguments and prints for the operator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rsu-edge",
    about = "Sell raffle tickets on a handheld, online or offline"
)]
struct Cli {
    /// The device's local store (SQLite).
    #[arg(long, env = "RSU_EDGE_DB", default_value = "rsu-edge.db")]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register this device with the server: its URL, the device identifier and the API key.
    Enroll {
        /// https://host:port of ingest.
        #[arg(long)]
        server: String,
        #[arg(long)]
        device: String,
        #[arg(long)]
        api_key: String,
        /// PEM file of the CA (or the server's certificate) to trust instead of the system's
        /// roots; kept in the store.
        #[arg(long)]
        ca: Option<std::path::PathBuf>,
        /// Development only: allow a plain http:// server URL.
        #[arg(long)]
        allow_plain_http: bool,
    },
    /// Fetch the raffle's set-up (packages, prices, sales window, rules) and a number block.
    Allocate {
        #[arg(long)]
        raffle: uuid::Uuid,
    },
    /// Sell a package (by name or id); prints the receipt.
    Sell {
        #[arg(long)]
        package: String,
        #[arg(long)]
        customer: Option<String>,
        #[arg(long)]
        operator: Option<String>,
    },
    /// Void a sale that has not been synced yet.
    Void {
        #[arg(long)]
        sale: String,
        #[arg(long, default_value = "voided at the device")]
        reason: String,
    },
    /// Print a sale's receipt again, marked REPRINT.
    Reprint {
        #[arg(long)]
        sale: String,
    },
    /// Upload pending sales and fetch the server's final word on uploaded ones.
    Sync,
    /// What the device holds: numbers left, sales by state, unsynced tickets, rejected sales.
    Status,
    /// Give the number blocks back at the end of the shift (after a sync).
    Close,
    /// Write every sale to a file for the operator to import (a unit that can no longer sync).
    Export {
        #[arg(long)]
        out: PathBuf,
    },
}

fn run(cli: Cli) -> rsu_edge::Result<()> {
    let db = &cli.db;
    match cli.command {
        Command::Enroll {
            server,
            device,
            api_key,
            ca,
            allow_plain_http,
        } => {
            let ca_pem = match ca {
                Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                    rsu_edge::EdgeError::Config(format!("--ca {}: {e}", path.display()))
                })?),
                None => None,
            };
            let transport = rsu_edge::client::Transport {
                ca_pem,
                allow_plain_http,
            };
            rsu_edge::enroll(db, &server, &device, &api_key, transport)?;
            println!("enrolled {device} with {server}");
        }
        Command::Allocate { raffle } => {
            let a = rsu_edge::allocate(db, raffle)?;
            println!(
                "raffle {raffle} ({}): {} new blocks, {} numbers left on this device",
                a.raffle_name, a.blocks_added, a.numbers_left
            );
        }
        Command::Sell {
            package,
            customer,
            operator,
        } => {
            let receipt = rsu_edge::sell(
                db,
                &rsu_edge::SaleRequest {
                    package: &package,
                    customer_name: customer.as_deref(),
                    operator_id: operator.as_deref(),
                },
            )?;
            println!("{receipt}");
            println!("sale {}", receipt.local_id);
            match rsu_edge::refill_if_low(db) {
                Ok(Some(left)) => println!("new number block received: {left} numbers left"),
                Ok(None) => {}
                Err(e) => eprintln!(
                    "note: the block runs low and a new one could not be fetched yet ({e})"
                ),
            }
        }
        Command::Void { sale, reason } => {
            println!("{}", rsu_edge::void(db, &sale, &reason)?);
        }
        Command::Reprint { sale } => {
            println!("{}", rsu_edge::reprint(db, &sale)?);
        }
        Command::Sync => {
            let r = rsu_edge::sync(db)?;
            println!(
                "uploaded {}: {} accepted, {} already on the server; {} issued",
                r.uploaded, r.accepted, r.duplicate, r.issued
            );
            for (id, reason) in &r.rejected {
                println!("REJECTED sale {id}: {reason} — refund the buyer");
            }
        }
        Command::Status => {
            let s = rsu_edge::status(db)?;
            println!("server {}", s.server_url);
            println!(
                "raffle {}",
                s.raffle.as_deref().unwrap_or("(none: run allocate)")
            );
            println!("numbers left {}", s.numbers_left);
            println!(
                "unsynced tickets {} of at most {}",
                s.unsynced_tickets, s.unsynced_limit
            );
            for (status, n) in &s.by_status {
                println!("sales {status}: {n}");
            }
            for (id, first, reason) in &s.rejected {
                println!("REJECTED sale {id} (from number {first}): {reason}");
            }
        }
        Command::Close => {
            for (block, unsold) in rsu_edge::close(db)? {
                println!("block {block} returned: {unsold} numbers unsold");
            }
        }
        Command::Export { out } => {
            let n = rsu_edge::export(db, &out)?;
            println!("{n} sales written to {}", out.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsu-edge: {e}");
            ExitCode::FAILURE
        }
    }
}
