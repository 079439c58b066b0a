//! The report's sections as tables, defined once for the printable page and the CSV: what a
//! section is called, its columns, and its rows, with devices and sellers by name and money as
//! money. The page prints amounts grouped (1,234.50), the CSV plain (1234.50), both in whole
//! currency units.

use serde_json::Value;

use super::{Check, Report};

/// One cell of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Count(i64),
    /// Minor units of the report's currency.
    Money(i64),
}

impl Cell {
    fn text(s: impl Into<String>) -> Self {
        Cell::Text(s.into())
    }

    /// As a person reads it: money grouped with two decimals.
    pub fn for_people(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Count(n) => n.to_string(),
            Cell::Money(m) => schemas::amount_for_people(*m),
        }
    }

    /// As a spreadsheet or an accounting import reads it: money as a plain decimal number.
    pub fn for_import(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Count(n) => n.to_string(),
            Cell::Money(m) => units(*m),
        }
    }
}

/// Minor units as a plain decimal in whole units: `-1234.05`.
pub fn units(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[derive(Debug, Clone)]
pub struct Table {
    pub title: &'static str,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// Shown on the page as a chart or in the header instead; the CSV has it as a table.
    pub csv_only: bool,
}

impl Table {
    fn new(title: &'static str, columns: &[&str]) -> Self {
        Self {
            title,
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
            csv_only: false,
        }
    }

    fn row(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "{}", self.title);
        self.rows.push(cells);
    }
}

/// A figure's name as words: `refunds_payable_minor` → `refunds payable`.
fn words(key: &str) -> String {
    key.strip_suffix("_minor").unwrap_or(key).replace('_', " ")
}

/// A check's figures as a phrase: amounts as money, ids left out (the names say which).
fn phrase(figures: &Value) -> String {
    match figures {
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !k.ends_with("_id") && k.as_str() != "id")
            .filter_map(|(k, v)| {
                let value = match v {
                    Value::Number(n) if k.ends_with("_minor") => {
                        schemas::amount_for_people(n.as_i64().unwrap_or(0))
                    }
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
                    Value::String(s) => s.clone(),
                    Value::Null => "none".to_owned(),
                    Value::Array(a) if a.is_empty() => "none".to_owned(),
                    Value::Array(a) => a.iter().map(phrase).collect::<Vec<_>>().join("; "),
                    Value::Object(_) => phrase(v),
                };
                (!value.is_empty()).then(|| format!("{} {value}", words(k)))
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::Array(a) => a.iter().map(phrase).collect::<Vec<_>>().join("; "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Check {
    /// The check as a sentence with its figures: "Trial balance is zero: sum 0.00. Passes."
    pub fn sentence(&self) -> String {
        let mut name = self.name.clone();
        if let Some(first) = name.get(..1) {
            name.replace_range(..1, &first.to_uppercase());
        }
        let figures = phrase(&self.figures);
        let verdict = if self.pass { "Passes" } else { "FAILS" };
        if figures.is_empty() {
            format!("{name}. {verdict}.")
        } else {
            format!("{name}: {figures}. {verdict}.")
        }
    }
}

/// Every section of the report as a table, in the order the page prints them.
pub fn tables(report: &Report) -> Vec<Table> {
    let currency = report
        .raffle
        .as_ref()
        .map_or_else(String::new, |r| format!(" ({})", r.currency));
    let amount = format!("amount{currency}");
    let mut out = Vec::new();

    if let Some(r) = &report.raffle {
        let mut t = Table::new("Raffle", &["item", "value"]);
        t.csv_only = true;
        for (item, value) in [
            ("raffle", r.name.clone()),
            ("event", r.event_identifier.clone()),
            ("raffle id", r.id.to_string()),
            ("charity", r.organization.clone()),
            (
                "licence",
                r.license_number
                    .clone()
                    .unwrap_or_else(|| "none recorded".into()),
            ),
            ("jurisdiction", r.jurisdiction.clone()),
            ("venue", r.venue.clone()),
            ("time zone", r.timezone.clone()),
            ("sales start", r.sales_start_local.clone()),
            ("sales end", r.sales_end_local.clone()),
            ("draw", r.draw_time_local.clone()),
            ("state", r.state.clone()),
            ("currency", r.currency.clone()),
            ("generated", report.generated_at.clone()),
            ("software", report.software.clone()),
        ] {
            t.row(vec![Cell::text(item), Cell::Text(value)]);
        }
        for (item, n) in [
            ("tickets sold", r.total_sold),
            ("tickets voided", r.total_voided),
            ("tickets at most", r.max_tickets),
        ] {
            t.row(vec![Cell::text(item), Cell::Count(n)]);
        }
        out.push(t);
    }

    let mut t = Table::new("Gross by source", &["source", "orders", "tickets", &amount]);
    for g in &report.gross_by_source {
        t.row(vec![
            Cell::text(&g.source),
            Cell::Count(g.orders),
            Cell::Count(g.tickets),
            Cell::Money(g.amount_minor),
        ]);
    }
    out.push(t);
    let mut t = Table::new("Gross by package", &["package", "orders", &amount]);
    for g in &report.gross_by_package {
        t.row(vec![
            Cell::text(&g.name),
            Cell::Count(g.orders),
            Cell::Money(g.amount_minor),
        ]);
    }
    out.push(t);
    let mut t = Table::new("Gross by RSU", &["RSU", "orders", &amount]);
    for g in &report.gross_by_rsu {
        t.row(vec![
            Cell::text(&g.name),
            Cell::Count(g.orders),
            Cell::Money(g.amount_minor),
        ]);
    }
    out.push(t);
    let mut t = Table::new("Gross by seller", &["seller", "orders", &amount]);
    for g in &report.gross_by_seller {
        t.row(vec![
            Cell::text(&g.seller),
            Cell::Count(g.orders),
            Cell::Money(g.amount_minor),
        ]);
    }
    out.push(t);

    let mut t = Table::new(
        "Numbers per range",
        &["range", "from", "to", "total", "sold", "voided", "unsold"],
    );
    for g in &report.numbers_by_range {
        t.row(vec![
            Cell::text(&g.range_type),
            Cell::Count(g.start),
            Cell::Count(g.end),
            Cell::Count(g.total),
            Cell::Count(g.sold),
            Cell::Count(g.voided),
            Cell::Count(g.unsold),
        ]);
    }
    out.push(t);
    let mut t = Table::new(
        "Numbers per RSU block",
        &["RSU", "state", "from", "to", "sold", "voided", "unsold"],
    );
    for a in &report.numbers_by_allocation {
        t.row(vec![
            Cell::text(&a.rsu_name),
            Cell::text(&a.state),
            Cell::Count(a.start),
            Cell::Count(a.end),
            Cell::Count(a.sold),
            Cell::Count(a.voided),
            Cell::Count(a.unsold),
        ]);
    }
    out.push(t);
    let mut t = Table::new(
        "Money per RSU",
        &[
            "RSU",
            "value of numbers sold",
            "written off",
            "money received",
            "cash counted",
            "over / short",
            "not counted",
        ],
    );
    for m in &report.money_by_rsu {
        t.row(vec![
            Cell::text(&m.name),
            Cell::Money(m.value_of_numbers_sold_minor),
            Cell::Money(m.written_off_minor),
            Cell::Money(m.money_received_minor),
            Cell::Money(m.counted_minor),
            Cell::Money(m.over_short_minor),
            Cell::Money(m.uncounted_minor),
        ]);
    }
    out.push(t);
    let mut t = Table::new(
        "Refunds the platform owes or paid",
        &["state", "refunds", &amount],
    );
    for l in &report.refunds {
        t.row(vec![
            Cell::text(&l.state),
            Cell::Count(l.count),
            Cell::Money(l.amount_minor),
        ]);
    }
    out.push(t);

    let mut t = Table::new("Tickets sold per hour", &["hour (venue time)", "tickets"]);
    t.csv_only = true;
    for h in &report.sales_by_hour {
        t.row(vec![Cell::text(&h.local), Cell::Count(h.tickets)]);
    }
    out.push(t);

    if let Some(s) = &report.seal {
        let mut t = Table::new("Seal", &["item", &amount]);
        for (item, minor) in [
            ("gross sales", s.gross_sales_minor),
            ("refunds and voids", s.refunds_minor),
            ("written off", s.written_off_minor),
            ("gross receipts", s.gross_receipts_minor),
            ("operating fee", s.operating_fee_minor),
            ("net proceeds", s.net_proceeds_minor),
            ("refunds still owed at the seal", s.refunds_owed_minor),
        ] {
            t.row(vec![Cell::text(item), Cell::Money(minor)]);
        }
        out.push(t);
        let mut t = Table::new("Seal evidence", &["item", "value"]);
        for (item, value) in [
            ("sealed at", s.sealed_at.clone()),
            ("sealed by", s.sealed_by.clone()),
            (
                "refunds still owed at the seal",
                s.refunds_owed_count.to_string(),
            ),
            ("tickets eligible", s.tickets_eligible.to_string()),
            ("tickets voided", s.tickets_voided.to_string()),
            ("ledger entries", s.entries.to_string()),
            ("ledger head hash", s.head_hash.clone()),
            ("ticket set digest", s.ticket_set_digest.clone()),
            ("draw seed commitment", s.seed_commitment.clone()),
        ] {
            t.row(vec![Cell::text(item), Cell::Text(value)]);
        }
        out.push(t);
        let mut t = Table::new("Prizes as sealed", &["prize", &amount]);
        for p in &s.prizes {
            t.row(vec![Cell::text(&p.name), Cell::Money(p.amount_minor)]);
        }
        out.push(t);
    }
    if !report.winners.is_empty() {
        let mut t = Table::new("Winners", &["prize", "winner", "number", "value", "status"]);
        for w in &report.winners {
            t.row(vec![
                Cell::text(&w.prize),
                Cell::Count(w.winner_index),
                Cell::Count(w.number),
                Cell::Money(w.value_minor),
                Cell::text(&w.status),
            ]);
        }
        out.push(t);
    }
    let mut t = Table::new(
        "Trial balance",
        &["account", &format!("balance, debit +{currency}")],
    );
    for (account, balance) in &report.trial_balance.accounts {
        t.row(vec![Cell::text(account), Cell::Money(*balance)]);
    }
    t.row(vec![
        Cell::text("sum"),
        Cell::Money(report.trial_balance.sum_minor),
    ]);
    out.push(t);
    let mut t = Table::new("Checks", &["check", "result"]);
    for c in &report.checks {
        t.row(vec![
            Cell::Text(c.sentence()),
            Cell::text(if c.pass { "pass" } else { "FAIL" }),
        ]);
    }
    out.push(t);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_check_reads_as_a_sentence_with_its_figures() {
        let check = Check {
            name: "refunds payable in the books equal the refunds not yet paid".into(),
            pass: false,
            figures: json!({"refunds_payable_minor": 400_000, "refunds_not_paid_minor": 2000,
                            "rsu_id": "0192", "late": true}),
        };
        assert_eq!(
            check.sentence(),
            "Refunds payable in the books equal the refunds not yet paid: late yes, refunds not paid 20.00, refunds payable 4,000.00. FAILS."
        );
        let none = Check {
            name: "the chain verifies".into(),
            pass: true,
            figures: json!({}),
        };
        assert_eq!(none.sentence(), "The chain verifies. Passes.");
    }

    #[test]
    fn money_goes_to_a_spreadsheet_in_whole_units() {
        assert_eq!(units(0), "0.00");
        assert_eq!(units(5), "0.05");
        assert_eq!(units(-123_405), "-1234.05");
        assert_eq!(Cell::Money(123_405).for_people(), "1,234.05");
        assert_eq!(Cell::Money(123_405).for_import(), "1234.05");
    }
}
