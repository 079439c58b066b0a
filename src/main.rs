//! `raffle`: the one binary. Each subcommand dispatches to the crate that owns the work; this
//! file parses arguments, prints results and turns errors into exit codes, nothing else.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod bench;
mod cash;
mod demo;
mod draw;
mod payouts;
mod pipeline;
mod refunds;
mod stack;

#[derive(Parser)]
#[command(
    name = "raffle",
    about = "Electronic raffle platform: sales, draw numbers, ledger and draw, one binary",
    disable_version_flag = true
)]
struct Cli {
    /// Print the name, the version and the SHA-256 of this executable, then exit.
    #[arg(long, short = 'V')]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// A whole raffle end to end on the local stack: set up, online and RSU sales (with
    /// duplicates, a declined card, a refund, a void, an offline device, a rejected sale), close,
    /// seal, draw, claim, reconciliation and audit. The README's main command.
    Demo {
        /// Online orders, each a checkout and a signed payment webhook.
        #[arg(long, default_value_t = 5_000)]
        orders: usize,
        /// Remote Sales Units selling in the venue.
        #[arg(long, default_value_t = 3)]
        rsus: usize,
        /// Sales each RSU makes.
        #[arg(long, default_value_t = 40)]
        rsu_sales: usize,
        /// Buyers checking out at the same time.
        #[arg(long, default_value_t = 16)]
        clients: usize,
    },
    /// The local stack: Postgres, the broker (Tansu unless KAFKA_BROKERS is set), topics.
    Stack {
        #[command(subcommand)]
        action: stack::StackAction,
    },
    /// Apply the database migrations to DATABASE_URL and report what was applied.
    Migrate,
    /// The admin API: organisations, rules, raffles, packages, prizes, perks, RSUs, users.
    Admin {
        #[command(subcommand)]
        action: admin::AdminAction,
    },
    /// The HTTP edge: checkout, payment webhooks, RSU batch uploads (`ingest serve`).
    Ingest {
        #[command(subcommand)]
        action: IngestAction,
    },
    /// Sales into draw numbers, exactly once (`allocator run`).
    Allocator {
        #[command(subcommand)]
        action: AllocatorAction,
    },
    /// The double-entry ledger (`ledger run`).
    Ledger {
        #[command(subcommand)]
        action: LedgerAction,
    },
    /// The e-mails buyers get: their numbers, refusals, voids, wins (`notifier run`).
    Notifier {
        #[command(subcommand)]
        action: NotifierAction,
    },
    /// The live jackpot (JSON, stream, widget) and the public raffle pages (`displays run`).
    Displays {
        #[command(subcommand)]
        action: DisplaysAction,
    },
    /// Refunds the platform pays through the provider (`refunds run`, `list`, `retry`, `cancel`).
    Refunds {
        #[command(subcommand)]
        action: refunds::RefundsAction,
    },
    /// A device's cash counted by two people, and deposits (`cash count`, `cash deposit`).
    Cash {
        #[command(subcommand)]
        action: cash::CashAction,
    },
    /// The provider's payouts matched to the books (`payouts import`).
    Payouts {
        #[command(subcommand)]
        action: payouts::PayoutsAction,
    },
    /// What auditors run (`audit verify --raffle ID`).
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Reports for finance and regulators (`report reconciliation --raffle ID`).
    Report {
        #[command(subcommand)]
        action: ReportAction,
    },
    /// The draw of a sealed raffle, its verification, manual draws and prize claims.
    Draw {
        #[command(subcommand)]
        action: draw::DrawAction,
    },
    /// Ask a service's health endpoint (for container health checks, which have no curl):
    /// exits 0 when it answers 200, else 1; prints the report.
    Health {
        /// For example http://127.0.0.1:8082/health/ready
        url: String,
        /// For an https:// URL: the PEM file of the CA (or certificate) to trust.
        #[arg(long)]
        ca: Option<std::path::PathBuf>,
    },
    /// Benchmarks that print their figures (`--json` too).
    Bench {
        #[command(subcommand)]
        action: bench::BenchAction,
    },
}

#[derive(Subcommand)]
enum IngestAction {
    /// Serve on RAFFLE_INGEST_ADDR (default 127.0.0.1:8080).
    Serve,
    /// Import the sales file `rsu-edge export` wrote on a unit that can no longer sync, through
    /// the same checks as a batch upload.
    ImportRsu {
        /// The RSU the file comes from.
        #[arg(long)]
        rsu: uuid::Uuid,
        #[arg(long)]
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum AllocatorAction {
    /// Consume raffle.sales.v1 until interrupted.
    Run,
}

#[derive(Subcommand)]
enum DisplaysAction {
    /// Consume raffle.tickets.v1 and serve the displays until interrupted.
    Run,
}

#[derive(Subcommand)]
enum NotifierAction {
    /// Consume raffle.tickets.v1 and send the buyers' e-mails until interrupted.
    Run,
}

#[derive(Subcommand)]
enum LedgerAction {
    /// Consume raffle.tickets.v1 until interrupted.
    Run,
    /// Seal a raffle whose sales closed, once the pipeline has drained.
    Seal {
        #[arg(long)]
        raffle: uuid::Uuid,
        /// Who seals (recorded in the seal and the critical events).
        #[arg(long = "as", default_value = "finance")]
        sealed_by: String,
        /// How long after the sales end late payment webhooks are still accepted.
        #[arg(long, default_value_t = 300)]
        grace_seconds: i64,
        /// An allocation whose device never synced, counted as sold (repeatable).
        #[arg(long)]
        write_off: Vec<uuid::Uuid>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ReportAction {
    /// Gross by source, package, RSU and seller; numbers per range and allocation; money per
    /// RSU; prizes, fee, net proceeds; trial balance; every check with pass or fail.
    Reconciliation {
        #[arg(long)]
        raffle: uuid::Uuid,
        /// json, csv, or html (a printable page with a chart of sales over time).
        #[arg(long, default_value = "json")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Finance confirms the reconciliation (refused while a check fails or a refund is owed).
    Confirm {
        #[arg(long)]
        raffle: uuid::Uuid,
        /// Who confirms (recorded).
        #[arg(long = "as", default_value = "finance")]
        by: String,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Recompute a raffle's hash chain and balances; name the first entry that does not verify.
    Verify {
        #[arg(long)]
        raffle: uuid::Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Write a raffle's entries, critical events, seal and draw evidence, with a manifest of
    /// their SHA-256, as files an auditor can take away.
    Export {
        #[arg(long)]
        raffle: uuid::Uuid,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Verify an export from its files alone (no database).
    VerifyExport {
        #[arg(long)]
        dir: std::path::PathBuf,
    },
}

pub(crate) use schemas::amount_for_people as money;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!(
            "{}",
            platform::version::version_line("raffle", env!("CARGO_PKG_VERSION"))
        );
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        eprintln!("raffle: no command given; try `raffle --help`");
        return ExitCode::from(2);
    };
    if matches!(command, Command::Demo { .. }) {
        platform::telemetry::init_with_default("warn");
    } else {
        platform::telemetry::init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raffle: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Demo {
                orders,
                rsus,
                rsu_sales,
                clients,
            } => {
                demo::run(demo::DemoOptions {
                    orders,
                    rsus: rsus.max(1),
                    rsu_sales,
                    clients,
                })
                .await
            }
            Command::Stack { action } => stack::run(action).await,
            Command::Migrate => stack::migrate().await,
            Command::Admin { action } => admin::run(action).await,
            Command::Ingest {
                action: IngestAction::Serve,
            } => pipeline::ingest().await,
            Command::Ingest {
                action: IngestAction::ImportRsu { rsu, file },
            } => pipeline::import_rsu(rsu, file).await,
            Command::Allocator {
                action: AllocatorAction::Run,
            } => pipeline::allocator().await,
            Command::Notifier {
                action: NotifierAction::Run,
            } => pipeline::notifier().await,
            Command::Displays {
                action: DisplaysAction::Run,
            } => pipeline::displays().await,
            Command::Bench { action } => bench::run(action).await,
            Command::Health { url, ca } => stack::health(&url, ca.as_deref()).await,
            Command::Draw { action } => draw::run(action).await,
            Command::Refunds { action } => refunds::run(action).await,
            Command::Cash { action } => cash::run(action).await,
            Command::Payouts { action } => payouts::run(action).await,
            Command::Report {
                action:
                    ReportAction::Reconciliation {
                        raffle,
                        format,
                        out,
                    },
            } => pipeline::reconciliation(raffle, &format, out).await,
            Command::Report {
                action: ReportAction::Confirm { raffle, by },
            } => pipeline::confirm_reconciliation(raffle, &by).await,
            Command::Ledger {
                action: LedgerAction::Run,
            } => pipeline::ledger().await,
            Command::Ledger {
                action:
                    LedgerAction::Seal {
                        raffle,
                        sealed_by,
                        grace_seconds,
                        write_off,
                        json,
                    },
            } => {
                let request = ledger::SealRequest {
                    raffle_id: raffle,
                    sealed_by,
                    grace_seconds,
                    write_off,
                    seed_key: ledger::seed_key::SeedKey::from_env().map_err(anyhow::Error::msg)?,
                    seed_keeper: &draw_engine::SEED_KEEPER,
                };
                pipeline::seal(request, json).await
            }
            Command::Audit {
                action: AuditAction::Verify { raffle, json },
            } => pipeline::audit_verify(raffle, json).await,
            Command::Audit {
                action: AuditAction::Export { raffle, out },
            } => pipeline::audit_export(raffle, out).await,
            Command::Audit {
                action: AuditAction::VerifyExport { dir },
            } => pipeline::audit_verify_export(dir),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raffle: {e:#}");
            ExitCode::FAILURE
        }
    }
}
