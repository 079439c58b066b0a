//! The reconciliation report: what finance signs off and regulators ask for — gross by
//! source, package, RSU and seller; numbers sold, voided and unsold per range and allocation
//! (sold + voided + unsold = total); money received against the value of numbers sold per RSU
//! and seller; prizes, fee and net proceeds; the trial balance; and every check with pass or
//! fail and the figures behind it. Every figure is read from the orders, tickets and ledger
//! tables directly, so the report can disagree with them only if the books do.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

mod confirm;
mod csv;
mod html;
mod tables;

pub use confirm::{ConfirmError, Confirmation, confirm, report_sha256};
pub use csv::{csv_cell, to_csv};
pub use html::to_html;
pub use tables::{Cell, Table, tables, units};

/// One check with its result and the figures behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub figures: Value,
}

/// The raffle the report is of. Times as the database writes them (RFC 3339).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RaffleLine {
    pub id: Uuid,
    pub name: String,
    pub event_identifier: String,
    pub state: String,
    pub currency: String,
    pub sales_start_time: String,
    pub sales_end_time: String,
    pub total_sold: i64,
    pub total_voided: i64,
    pub max_tickets: i64,
    /// The charity that runs it, its licence, the jurisdiction and the venue.
    pub organization: String,
    pub license_number: Option<String>,
    pub jurisdiction: String,
    pub venue: String,
    /// The venue's time zone; the `*_local` times are in it.
    pub timezone: String,
    pub sales_start_local: String,
    pub sales_end_local: String,
    pub draw_time_local: String,
}

/// Paid orders of one source (online, rsu).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceGross {
    pub source: String,
    pub orders: i64,
    pub tickets: i64,
    pub amount_minor: i64,
}

/// Paid orders of one package, none included.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageGross {
    pub package_id: Uuid,
    pub name: String,
    pub orders: i64,
    pub amount_minor: i64,
}

/// Paid orders of one RSU.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RsuGross {
    pub rsu_id: Uuid,
    pub name: String,
    pub orders: i64,
    pub amount_minor: i64,
}

/// Paid orders of one seller (`online` for the web).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SellerGross {
    pub seller: String,
    pub orders: i64,
    pub amount_minor: i64,
}

/// A range's numbers: its counters, and the tickets they must match.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RangeNumbers {
    pub range_id: Uuid,
    #[serde(rename = "type")]
    pub range_type: String,
    pub start: i64,
    pub end: i64,
    pub total: i64,
    pub sold: i64,
    pub voided: i64,
    pub unsold: i64,
    pub tickets_sold: i64,
    pub tickets_voided: i64,
}

/// An RSU block's numbers: its counters, and the tickets they must match.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocationNumbers {
    pub allocation_id: Uuid,
    pub rsu_id: Uuid,
    /// The device's name, as staff know it.
    #[serde(default)]
    pub rsu_name: String,
    pub state: String,
    pub start: i64,
    pub end: i64,
    pub total: i64,
    pub sold: i64,
    pub voided: i64,
    pub unsold: i64,
    pub tickets_sold: i64,
    pub tickets_voided: i64,
}

/// What a device's float holds in the ledger against the value of the numbers it sold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RsuMoney {
    pub rsu_id: Uuid,
    pub name: String,
    pub value_of_numbers_sold_minor: i64,
    pub written_off_minor: i64,
    pub money_received_minor: i64,
    /// Cash counted by two people, less the float, over every count of the device.
    pub counted_minor: i64,
    /// Counted less what the books expected: over positive, short negative.
    pub over_short_minor: i64,
    /// Sales the books hold that no count has covered yet (write-offs aside).
    pub uncounted_minor: i64,
}

/// Refunds of payments the raffle could not honour (`refunds.obligations`), by state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundLine {
    pub state: String,
    pub count: i64,
    pub amount_minor: i64,
}

/// Tickets sold in one hour (its start, RFC 3339, and as the venue's clock shows it); every
/// hour from the sales' start to their end (or now) has one, those without sales too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HourSales {
    pub hour: String,
    #[serde(default)]
    pub local: String,
    pub tickets: i64,
}

/// A winner with its prize, value and claim status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WinnerLine {
    pub position: i64,
    pub prize_id: Uuid,
    pub prize: String,
    pub winner_index: i64,
    pub number: i64,
    pub value_minor: i64,
    pub status: String,
}

/// A prize as the seal valued it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedPrize {
    pub prize_id: Uuid,
    pub name: String,
    pub amount_minor: i64,
}

/// The seal, as `ledger.seals` holds it (hashes in hex).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealLine {
    pub raffle_id: Uuid,
    pub head_hash: String,
    pub entries: i64,
    pub currency: String,
    pub gross_sales_minor: i64,
    pub refunds_minor: i64,
    /// Refunds still owed at the seal (and how many): paid after it, through the provider.
    #[serde(default)]
    pub refunds_owed_minor: i64,
    #[serde(default)]
    pub refunds_owed_count: i64,
    pub written_off_minor: i64,
    pub gross_receipts_minor: i64,
    pub prizes: Vec<SealedPrize>,
    pub operating_fee_minor: i64,
    pub net_proceeds_minor: i64,
    pub tickets_eligible: i64,
    pub tickets_voided: i64,
    pub ticket_set_digest: String,
    pub seed_commitment: String,
    pub sealed_at: String,
    pub sealed_by: String,
}

/// Every account's balance (debit positive) and their sum, which must be zero.
#[derive(Debug, Clone, Serialize)]
pub struct TrialBalance {
    pub accounts: std::collections::BTreeMap<String, i64>,
    pub sum_minor: i64,
}

/// The reconciliation report, section by section; rendered as JSON (serde), CSV
/// ([`to_csv`]) or HTML ([`to_html`]).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub raffle: Option<RaffleLine>,
    pub gross_by_source: Vec<SourceGross>,
    pub gross_by_package: Vec<PackageGross>,
    pub gross_by_rsu: Vec<RsuGross>,
    pub gross_by_seller: Vec<SellerGross>,
    pub numbers_by_range: Vec<RangeNumbers>,
    pub numbers_by_allocation: Vec<AllocationNumbers>,
    pub money_by_rsu: Vec<RsuMoney>,
    /// Refunds the platform owes or paid through the provider, by state.
    pub refunds: Vec<RefundLine>,
    pub sales_by_hour: Vec<HourSales>,
    /// After the draw: every winner with its prize, value and claim status.
    pub winners: Vec<WinnerLine>,
    pub seal: Option<SealLine>,
    pub trial_balance: TrialBalance,
    pub checks: Vec<Check>,
    /// Finance's confirmation, once given: who, when, the digest confirmed, and whether the
    /// report still has it.
    pub confirmation: Option<Confirmation>,
    /// When the report was made (UTC) and by which software (name, version, SHA-256 of the
    /// executable); not part of the confirmed digest.
    pub generated_at: String,
    pub software: String,
}

/// `raffle 0.1.0 sha256:…` of the running executable, read once.
fn software() -> String {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| platform::version::version_line("raffle", env!("CARGO_PKG_VERSION")))
        .clone()
}

impl Report {
    pub fn all_pass(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    /// The names of the checks that fail.
    pub fn failing(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.name.as_str())
            .collect()
    }
}

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading the books: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("a figure of {section} is not what the report expects: {source}")]
    Shape {
        section: &'static str,
        source: serde_json::Error,
    },
}

/// The rows of a query that returns one jsonb object per row, as `T`.
async fn rows<T: DeserializeOwned>(
    client: &impl GenericClient,
    section: &'static str,
    sql: &str,
    raffle: Uuid,
) -> Result<Vec<T>, ReportError> {
    let rows = client.query(sql, &[&raffle]).await?;
    rows.iter()
        .map(|r| {
            serde_json::from_value(r.get::<_, Value>(0))
                .map_err(|source| ReportError::Shape { section, source })
        })
        .collect()
}

/// The one jsonb object a query returns, if any, as `T`.
async fn one<T: DeserializeOwned>(
    client: &impl GenericClient,
    section: &'static str,
    sql: &str,
    raffle: Uuid,
) -> Result<Option<T>, ReportError> {
    client
        .query_opt(sql, &[&raffle])
        .await?
        .map(|r| {
            serde_json::from_value(r.get::<_, Value>(0))
                .map_err(|source| ReportError::Shape { section, source })
        })
        .transpose()
}

/// Orders whose tickets were issued: paid (completed), or refunded or voided after issue.
const ISSUED_ORDERS: &str = "SELECT o.* FROM sales.orders o WHERE o.raffle_id = $1 AND o.payment_status IN ('completed', 'refunded', 'voided')
      AND EXISTS (SELECT 1 FROM sales.tickets t WHERE t.order_id = o.id AND (t.state <> 'voided' OR t.voided_at > t.sold_at))";

pub async fn reconciliation(
    client: &impl GenericClient,
    raffle: Uuid,
) -> Result<Report, ReportError> {
    let mut report = sections(client, raffle).await?;
    report.checks = checks(client, raffle, &report).await?;
    report.confirmation = confirm::recorded(client, raffle, &report).await?;
    Ok(report)
}

/// Every section of the report, read from the tables; no checks yet.
async fn sections(client: &impl GenericClient, raffle: Uuid) -> Result<Report, ReportError> {
    let raffle_line = one(
        client,
        "raffle",
            "SELECT jsonb_build_object('id', r.id, 'name', r.name, 'event_identifier', r.event_identifier, 'state', r.state,
                    'currency', r.currency, 'sales_start_time', r.sales_start_time, 'sales_end_time', r.sales_end_time,
                    'total_sold', r.total_sold, 'total_voided', r.total_voided, 'max_tickets', r.max_tickets,
                    'organization', o.name, 'license_number', o.license_number, 'jurisdiction', j.name,
                    'venue', v.name, 'timezone', v.timezone,
                    'sales_start_local', to_char(r.sales_start_time AT TIME ZONE v.timezone, 'YYYY-MM-DD HH24:MI'),
                    'sales_end_local', to_char(r.sales_end_time AT TIME ZONE v.timezone, 'YYYY-MM-DD HH24:MI'),
                    'draw_time_local', to_char(r.draw_time AT TIME ZONE v.timezone, 'YYYY-MM-DD HH24:MI'))
               FROM catalog.raffle_events r
               JOIN catalog.organizations o ON o.id = r.organization_id
               JOIN catalog.venues v ON v.id = r.venue_id
               JOIN catalog.jurisdictions j ON j.id = v.jurisdiction_id
              WHERE r.id = $1",
        raffle,
    )
    .await?;
    let paid = "payment_status = 'completed'";
    let gross_by_source = rows(
        client,
        "gross_by_source",
        &format!("SELECT jsonb_build_object('source', source, 'orders', count(*), 'tickets', sum(ticket_count), 'amount_minor', sum(total_amount_minor))
           FROM sales.orders WHERE raffle_id = $1 AND {paid} GROUP BY source ORDER BY source"),
        raffle,
    )
    .await?;
    let gross_by_package = rows(
        client,
        "gross_by_package",
        &format!("SELECT jsonb_build_object('package_id', p.id, 'name', p.name, 'orders', count(o.id), 'amount_minor', coalesce(sum(o.total_amount_minor), 0))
           FROM catalog.ticket_packages p LEFT JOIN sales.orders o ON o.package_id = p.id AND o.{paid}
          WHERE p.raffle_id = $1 GROUP BY p.id, p.name ORDER BY p.display_order, p.name"),
        raffle,
    )
    .await?;
    let gross_by_rsu = rows(
        client,
        "gross_by_rsu",
        &format!("SELECT jsonb_build_object('rsu_id', r.id, 'name', r.name, 'orders', count(*), 'amount_minor', sum(o.total_amount_minor))
           FROM sales.orders o JOIN catalog.rsus r ON r.id = o.rsu_id WHERE o.raffle_id = $1 AND o.{paid}
          GROUP BY r.id, r.name ORDER BY r.name"),
        raffle,
    )
    .await?;
    let gross_by_seller = rows(
        client,
        "gross_by_seller",
        &format!("SELECT jsonb_build_object('seller', coalesce(operator_id, 'online'), 'orders', count(*), 'amount_minor', sum(total_amount_minor))
           FROM sales.orders WHERE raffle_id = $1 AND {paid} GROUP BY coalesce(operator_id, 'online') ORDER BY coalesce(operator_id, 'online')"),
        raffle,
    )
    .await?;
    let numbers_by_range = rows(
        client,
        "numbers_by_range",
        "SELECT jsonb_build_object('range_id', g.id, 'type', g.range_type, 'start', g.start_number, 'end', g.end_number,
                'total', g.total, 'sold', g.sold, 'voided', g.voided, 'unsold', g.total - g.sold - g.voided,
                'tickets_sold', (SELECT count(*) FROM sales.tickets t WHERE t.range_id = g.id AND t.state <> 'voided'),
                'tickets_voided', (SELECT count(*) FROM sales.tickets t WHERE t.range_id = g.id AND t.state = 'voided'))
           FROM catalog.raffle_ranges g WHERE g.raffle_id = $1 ORDER BY g.start_number",
        raffle,
    )
    .await?;
    let numbers_by_allocation = rows(
        client,
        "numbers_by_allocation",
        "SELECT jsonb_build_object('allocation_id', a.id, 'rsu_id', a.entity_id,
                'rsu_name', coalesce((SELECT r.name FROM catalog.rsus r WHERE r.id = a.entity_id), a.entity_id::text),
                'state', a.state, 'start', a.start_number,
                'end', a.end_number, 'total', a.total_tickets, 'sold', a.tickets_sold, 'voided', a.tickets_voided,
                'unsold', a.tickets_available,
                'tickets_sold', (SELECT count(*) FROM sales.tickets t WHERE t.rsu_allocation_id = a.id AND t.state <> 'voided'),
                'tickets_voided', (SELECT count(*) FROM sales.tickets t WHERE t.rsu_allocation_id = a.id AND t.state = 'voided'))
           FROM catalog.rsu_allocations a WHERE a.raffle_id = $1 ORDER BY a.start_number",
        raffle,
    )
    .await?;
    // Money the device's float holds in the ledger against the value of the numbers it sold.
    let money_by_rsu = rows(
        client,
        "money_by_rsu",
        "SELECT jsonb_build_object('rsu_id', r.id, 'name', r.name,
                'value_of_numbers_sold_minor', coalesce((SELECT sum(o.total_amount_minor) FROM sales.orders o
                    WHERE o.raffle_id = $1 AND o.rsu_id = r.id AND o.payment_status = 'completed'), 0),
                'written_off_minor', coalesce((SELECT sum(p.amount_minor) FROM ledger.journal_entries e
                    JOIN ledger.postings p ON p.entry_id = e.id JOIN ledger.accounts a ON a.id = p.account_id
                    WHERE e.raffle_id = $1 AND e.entry_type = 'written_off_receipts' AND a.code = 'rsu_float/' || r.id::text), 0),
                'money_received_minor', coalesce((SELECT sum(p.amount_minor) FROM ledger.postings p JOIN ledger.accounts a ON a.id = p.account_id
                    JOIN ledger.journal_entries e ON e.id = p.entry_id
                    WHERE a.raffle_id = $1 AND a.code = 'rsu_float/' || r.id::text AND e.entry_type <> 'cash_count'), 0),
                'counted_minor', coalesce((SELECT sum(c.counted_minor - c.float_minor) FROM ledger.cash_counts c
                    WHERE c.raffle_id = $1 AND c.rsu_id = r.id), 0),
                'over_short_minor', coalesce((SELECT sum(c.over_short_minor) FROM ledger.cash_counts c
                    WHERE c.raffle_id = $1 AND c.rsu_id = r.id), 0),
                'uncounted_minor', coalesce((SELECT sum(p.amount_minor) FROM ledger.postings p JOIN ledger.accounts a ON a.id = p.account_id
                    JOIN ledger.journal_entries e ON e.id = p.entry_id
                    WHERE a.raffle_id = $1 AND a.code = 'rsu_float/' || r.id::text AND e.entry_type <> 'written_off_receipts'), 0))
           FROM catalog.rsus r WHERE r.id IN (SELECT entity_id FROM catalog.rsu_allocations WHERE raffle_id = $1) ORDER BY r.name",
        raffle,
    )
    .await?;
    let refunds = rows(
        client,
        "refunds",
        "SELECT jsonb_build_object('state', state, 'count', count(*), 'amount_minor', coalesce(sum(amount_minor), 0))
           FROM refunds.obligations WHERE raffle_id = $1 GROUP BY state ORDER BY state",
        raffle,
    )
    .await?;
    let sales_by_hour = rows(
        client,
        "sales_by_hour",
        // Hours from the sales' start (or the first sale) to their end (or now, or the last
        // sale), so that the chart's axis is time: an hour without sales is a bar of zero.
        // Sales end at their end time or when they were closed, whichever came first: once
        // closed, the hours are fixed (and so is the digest finance confirms).
        "WITH span AS (SELECT r.sales_start_time AS s, v.timezone AS tz,
                              least(r.sales_end_time, (SELECT min(t.occurred_at) FROM catalog.raffle_transitions t
                                                        WHERE t.raffle_id = r.id AND t.to_state IN ('sales_closed', 'cancelled'))) AS e
                          FROM catalog.raffle_events r JOIN catalog.venues v ON v.id = r.venue_id WHERE r.id = $1),
              sold AS (SELECT date_trunc('hour', sold_at) AS h, count(*) AS n FROM sales.tickets
                        WHERE raffle_id = $1 AND state <> 'voided' GROUP BY 1),
              hours AS (SELECT generate_series(
                            date_trunc('hour', least((SELECT s FROM span), (SELECT min(h) FROM sold))),
                            greatest(date_trunc('hour', least((SELECT e FROM span), now())), (SELECT max(h) FROM sold)),
                            interval '1 hour') AS h)
         SELECT jsonb_build_object('hour', hours.h, 'local', to_char(hours.h AT TIME ZONE (SELECT tz FROM span), 'YYYY-MM-DD HH24:MI'),
                                   'tickets', coalesce(sold.n, 0))
           FROM hours LEFT JOIN sold ON sold.h = hours.h ORDER BY hours.h LIMIT 2000",
        raffle,
    )
    .await?;
    let seal = one(
        client,
        "seal",
        "SELECT to_jsonb(s) - 'seed_commitment' || jsonb_build_object('seed_commitment', encode(s.seed_commitment, 'hex'),
                'head_hash', encode(s.head_hash, 'hex'), 'ticket_set_digest', encode(s.ticket_set_digest, 'hex'))
           FROM ledger.seals s WHERE raffle_id = $1",
        raffle,
    )
    .await?;

    let winners = rows(
        client,
        "winners",
        "SELECT jsonb_build_object('position', r.position, 'prize_id', r.prize_id, 'prize', p.name, 'winner_index', r.winner_index,
                'number', r.winning_number, 'value_minor', r.prize_value_at_draw_minor,
                'status', CASE WHEN c.id IS NOT NULL THEN 'claimed'
                               WHEN u.draw_result_id IS NOT NULL THEN 'unclaimed, returned to proceeds'
                               ELSE 'awaiting claim' END)
           FROM draw.draw_results r
           JOIN draw.draw_executions e ON e.id = r.draw_execution_id AND e.state = 'completed'
           JOIN catalog.prizes p ON p.id = r.prize_id
           LEFT JOIN draw.prize_claims c ON c.draw_result_id = r.id
           LEFT JOIN draw.unclaimed_prizes u ON u.draw_result_id = r.id
          WHERE e.raffle_event_id = $1 ORDER BY r.position, r.winner_index",
        raffle,
    )
    .await?;
    let accounts = crate::balances(client, raffle, None).await?;
    let sum_minor: i64 = accounts.values().sum();
    Ok(Report {
        raffle: raffle_line,
        gross_by_source,
        gross_by_package,
        gross_by_rsu,
        gross_by_seller,
        numbers_by_range,
        numbers_by_allocation,
        money_by_rsu,
        refunds,
        sales_by_hour,
        winners,
        seal,
        trial_balance: TrialBalance {
            accounts,
            sum_minor,
        },
        checks: Vec::new(),
        confirmation: None,
        generated_at: chrono::Utc::now().to_rfc3339(),
        software: software(),
    })
}

/// Every check, with pass or fail and its figures: the trial balance, each range's and
/// block's counts against their tickets, each issued order against its ledger sale, the
/// raffle's totals, each device's money, the winners against the seal, the chain and the seal.
async fn checks(
    client: &impl GenericClient,
    raffle: Uuid,
    r: &Report,
) -> Result<Vec<Check>, ReportError> {
    let mut checks = Vec::new();
    let trial_total = r.trial_balance.sum_minor;
    checks.push(Check {
        name: "trial balance is zero".into(),
        pass: trial_total == 0,
        figures: json!({"sum_minor": trial_total}),
    });
    let counted = |what: String,
                   [total, sold, voided, unsold, tickets_sold, tickets_voided]: [i64; 6],
                   figures: Value| Check {
        name: format!("{what}: sold + voided + unsold = total, and the counters match the tickets"),
        pass: sold + voided + unsold == total && sold == tickets_sold && voided == tickets_voided,
        figures,
    };
    for g in &r.numbers_by_range {
        checks.push(counted(
            format!("the {} range {}–{}", g.range_type, g.start, g.end),
            [
                g.total,
                g.sold,
                g.voided,
                g.unsold,
                g.tickets_sold,
                g.tickets_voided,
            ],
            json!(g),
        ));
    }
    for a in &r.numbers_by_allocation {
        checks.push(counted(
            format!("{}'s block {}–{}", a.rsu_name, a.start, a.end),
            [
                a.total,
                a.sold,
                a.voided,
                a.unsold,
                a.tickets_sold,
                a.tickets_voided,
            ],
            json!(a),
        ));
    }
    let matched = client
        .query_one(
            &format!(
                "WITH issued AS ({ISSUED_ORDERS}),
                      sales AS (SELECT e.order_id, sum(-p.amount_minor) AS amount FROM ledger.journal_entries e
                                  JOIN ledger.postings p ON p.entry_id = e.id JOIN ledger.accounts a ON a.id = p.account_id
                                 WHERE e.raffle_id = $1 AND e.entry_type = 'ticket_sale' AND a.code = 'gross_ticket_revenue'
                                 GROUP BY e.order_id)
                 SELECT (SELECT count(*) FROM issued), (SELECT coalesce(sum(total_amount_minor), 0)::bigint FROM issued),
                        (SELECT count(*) FROM sales), (SELECT coalesce(sum(amount), 0)::bigint FROM sales),
                        (SELECT count(*) FROM issued i FULL JOIN sales s ON s.order_id = i.id
                          WHERE i.id IS NULL OR s.order_id IS NULL OR s.amount <> i.total_amount_minor)"
            ),
            &[&raffle],
        )
        .await?;
    let (orders, orders_amount, entries, entries_amount, unmatched): (i64, i64, i64, i64, i64) = (
        matched.get(0),
        matched.get(1),
        matched.get(2),
        matched.get(3),
        matched.get(4),
    );
    checks.push(Check {
        name: "every order that was issued tickets has exactly its sale in the ledger, to the cent".into(),
        pass: unmatched == 0 && orders == entries && orders_amount == entries_amount,
        figures: json!({"issued_orders": orders, "issued_amount_minor": orders_amount, "ledger_sales": entries,
                        "ledger_sales_minor": entries_amount, "unmatched": unmatched}),
    });
    let raffle_counters = client
        .query_one(
            "SELECT r.total_sold, r.total_voided, (SELECT count(*) FROM sales.tickets t WHERE t.raffle_id = r.id AND t.state <> 'voided'),
                    (SELECT count(*) FROM sales.tickets t WHERE t.raffle_id = r.id AND t.state = 'voided')
               FROM catalog.raffle_events r WHERE r.id = $1",
            &[&raffle],
        )
        .await?;
    let (sold, voided, tickets_sold, tickets_voided): (i64, i64, i64, i64) = (
        raffle_counters.get(0),
        raffle_counters.get(1),
        raffle_counters.get(2),
        raffle_counters.get(3),
    );
    checks.push(Check {
        name: "raffle totals match the tickets".into(),
        pass: sold == tickets_sold && voided == tickets_voided,
        figures: json!({"total_sold": sold, "tickets_sold": tickets_sold, "total_voided": voided, "tickets_voided": tickets_voided}),
    });
    let sealed = r.seal.is_some();
    for m in &r.money_by_rsu {
        checks.push(Check {
            name: format!(
                "RSU {}: money received = value of numbers sold + written off",
                m.name
            ),
            pass: m.money_received_minor == m.value_of_numbers_sold_minor + m.written_off_minor,
            figures: json!(m),
        });
        if sealed {
            checks.push(Check {
                name: format!(
                    "RSU {}: its cash was counted by two people (or its block written off), over or short booked",
                    m.name
                ),
                pass: m.uncounted_minor == 0
                    && m.counted_minor == m.value_of_numbers_sold_minor + m.over_short_minor,
                figures: json!(m),
            });
        }
    }
    // The books owe back what the platform has not yet refunded (cancelled ones included:
    // finance pays those another way, and the liability stays until it is booked).
    let not_paid: i64 = r
        .refunds
        .iter()
        .filter(|l| l.state != "succeeded")
        .map(|l| l.amount_minor)
        .sum();
    let payable = -r
        .trial_balance
        .accounts
        .get(crate::postings::REFUNDS_PAYABLE)
        .copied()
        .unwrap_or(0);
    checks.push(Check {
        name: "refunds payable in the books equal the refunds not yet paid".into(),
        pass: payable == not_paid,
        figures: json!({"refunds_payable_minor": payable, "refunds_not_paid_minor": not_paid}),
    });
    if !r.winners.is_empty() {
        let drawn = &r.winners;
        let mut differing = Vec::new();
        for prize in r.seal.iter().flat_map(|s| &s.prizes) {
            let awarded: i64 = drawn
                .iter()
                .filter(|w| w.prize_id == prize.prize_id)
                .map(|w| w.value_minor)
                .sum();
            if awarded != prize.amount_minor {
                differing.push(json!({"prize": prize.name, "sealed_minor": prize.amount_minor, "awarded_minor": awarded}));
            }
        }
        checks.push(Check {
            name: "the winners were awarded exactly the prizes the seal valued".into(),
            pass: differing.is_empty(),
            figures: json!({"winners": drawn.len(), "differing": differing}),
        });
    }
    let chain = crate::verify(client, raffle).await?;
    checks.push(Check {
        name: "the ledger's hash chain verifies".into(),
        pass: chain.ok(),
        figures: json!({"entries": chain.entries_verified, "head_hash": chain.head_hash, "first_failure": chain.first_failure}),
    });
    if let Some(mismatches) = crate::verify_seal(client, raffle).await? {
        checks.push(Check {
            name: "every figure of the seal recomputes from the books".into(),
            pass: mismatches.is_empty(),
            figures: json!({"mismatches": mismatches}),
        });
    }
    Ok(checks)
}
