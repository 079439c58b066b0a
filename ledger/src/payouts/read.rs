//! Reading the provider's files: the itemized payout reconciliation report (RFC 4180 CSV,
//! amounts in major units) and a payout's balance transactions as JSON, which are turned into
//! the report's rows so that one set of rules refuses both. Nothing here touches the database.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::PayoutError;
/// The columns the import reads or accepts (plus `payment_metadata[…]` and
/// `refund_metadata[…]`).
pub const COLUMNS: &[&str] = &[
    "automatic_payout_id",
    "automatic_payout_effective_at",
    "balance_transaction_id",
    "created",
    "created_utc",
    "available_on",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "charge_id",
    "payment_intent_id",
    "customer_email",
    "customer_id",
    "connected_account",
];

const REQUIRED: &[&str] = &[
    "automatic_payout_id",
    "balance_transaction_id",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
];

/// One line of the report, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutLine {
    pub line: usize,
    pub payout_id: String,
    pub payout_effective_at: Option<String>,
    pub balance_transaction_id: String,
    pub category: String,
    pub currency: String,
    pub gross_minor: i64,
    pub fee_minor: i64,
    pub net_minor: i64,
    pub payment_intent: Option<String>,
    pub order_id: Option<Uuid>,
    pub source_id: Option<String>,
}

/// RFC 4180 CSV: quoted fields, doubled quotes, CRLF or LF.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                line += 1;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {line}: a quoted field is not closed"));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows.retain(|r| !(r.len() == 1 && r[0].trim().is_empty()));
    Ok(rows)
}

/// A decimal amount in major units (`20.00`, `-0.59`) as minor units; at most two decimals.
pub fn minor_units(text: &str) -> Option<i64> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, cents) = match t.split_once('.') {
        Some((w, c)) if c.len() <= 2 && !c.is_empty() => (w, format!("{c:0<2}")),
        Some(_) => return None,
        None => (t, "00".to_owned()),
    };
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !cents.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let v = whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents.parse::<i64>().ok()?)?;
    Some(if negative { -v } else { v })
}

/// The provider's balance transactions of one payout as JSON (Stripe's list object, or a bare
/// array, from `GET /v1/balance_transactions?payout=po_…&expand[]=data.source`) turned into
/// the itemized report's rows, so that both are read and refused by the same rules. Amounts
/// come in minor units; the payout is the list's own `payout` transaction, which is left out
/// (it moves the payout's net to the bank, which the import books itself). Line `n` of a
/// refusal is the list's `n - 1`-th transaction.
pub fn balance_transactions_as_report(json: &str) -> Result<String, PayoutError> {
    let refused = |line: usize, why: String| PayoutError::Refused(vec![(line, why)]);
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| refused(0, format!("not JSON: {e}")))?;
    let items = match &value {
        serde_json::Value::Array(items) => items,
        other => other
            .get("data")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| refused(0, "no \"data\" list of balance transactions".into()))?,
    };
    let id_of = |v: Option<&serde_json::Value>| -> Option<String> {
        match v? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o.get("id").and_then(|i| i.as_str()).map(str::to_owned),
            _ => None,
        }
    };
    let payouts: Vec<String> = items
        .iter()
        .filter(|t| t.get("type").and_then(|t| t.as_str()) == Some("payout"))
        .filter_map(|t| id_of(t.get("source")))
        .collect();
    let [payout] = payouts.as_slice() else {
        return Err(refused(
            0,
            format!(
                "the list must hold the transactions of one payout and its own payout transaction (found {}): list them with ?payout=po_…",
                payouts.len()
            ),
        ));
    };
    let cell = crate::report::csv_cell;
    let mut csv = String::from(
        "automatic_payout_id,balance_transaction_id,created,currency,gross,fee,net,reporting_category,source_id,payment_intent_id,payment_metadata[order_id]\n",
    );
    let mut problems = Vec::new();
    for (i, t) in items.iter().enumerate() {
        let line = i + 2;
        if t.get("type").and_then(|t| t.as_str()) == Some("payout") {
            continue;
        }
        let text = |k: &str| {
            t.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let mut amount = |k: &str| match t.get(k).and_then(serde_json::Value::as_i64) {
            Some(v) => crate::report::units(v),
            None => {
                problems.push((
                    line,
                    format!("{}: {k} must be an integer of minor units", text("id")),
                ));
                String::new()
            }
        };
        let (gross, fee, net) = (amount("amount"), amount("fee"), amount("net"));
        let source = t.get("source");
        let payment_intent = source
            .and_then(|s| s.get("payment_intent"))
            .and_then(|p| id_of(Some(p)))
            .unwrap_or_default();
        let order = source
            .and_then(|s| s.get("metadata"))
            .and_then(|m| m.get("order_id"))
            .and_then(|o| o.as_str())
            .unwrap_or_default()
            .to_owned();
        let category = match text("reporting_category") {
            c if c.is_empty() => text("type"),
            c => c,
        };
        let row = [
            payout.clone(),
            text("id"),
            t.get("created").map(|c| c.to_string()).unwrap_or_default(),
            text("currency"),
            gross,
            fee,
            net,
            category,
            id_of(source).unwrap_or_default(),
            payment_intent,
            order,
        ];
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    if !problems.is_empty() {
        return Err(PayoutError::Refused(problems));
    }
    Ok(csv)
}

/// Reads the report; every problem is named with its line, and any problem refuses it whole.
pub fn read_report(
    text: &str,
    currency: &str,
    account: Option<&str>,
) -> Result<Vec<PayoutLine>, PayoutError> {
    let rows = parse_csv(text).map_err(|e| PayoutError::Refused(vec![(0, e)]))?;
    let Some((header, body)) = rows.split_first() else {
        return Err(PayoutError::Refused(vec![(1, "the file is empty".into())]));
    };
    let mut problems = Vec::new();
    let at: HashMap<&str, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim(), i))
        .collect();
    for h in header {
        let h = h.trim();
        if !COLUMNS.contains(&h)
            && !h.starts_with("payment_metadata[")
            && !h.starts_with("refund_metadata[")
        {
            problems.push((1, format!("unknown column {h:?}")));
        }
    }
    for r in REQUIRED {
        if !at.contains_key(r) {
            problems.push((1, format!("the column {r:?} is missing")));
        }
    }
    if !problems.is_empty() {
        return Err(PayoutError::Refused(problems));
    }
    let mut seen = HashSet::new();
    let mut lines = Vec::new();
    for (i, row) in body.iter().enumerate() {
        let line = i + 2;
        let get = |c: &str| {
            at.get(c)
                .and_then(|&i| row.get(i))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if row.len() != header.len() {
            problems.push((
                line,
                format!("{} fields, the header has {}", row.len(), header.len()),
            ));
            continue;
        }
        let bt = get("balance_transaction_id").unwrap_or_default();
        if bt.is_empty() {
            problems.push((line, "no balance_transaction_id".into()));
            continue;
        }
        if !seen.insert(bt.clone()) {
            problems.push((line, format!("a duplicate line of {bt}")));
            continue;
        }
        let line_currency = get("currency").unwrap_or_default().to_uppercase();
        if line_currency != currency {
            problems.push((
                line,
                format!("{bt} is in {line_currency}, the raffle sells in {currency}"),
            ));
        }
        if let (Some(expected), Some(found)) = (account, get("connected_account"))
            && expected != found
        {
            problems.push((line, format!("{bt} is of account {found}, not {expected}")));
        }
        let amount = |c: &str| get(c).and_then(|v| minor_units(&v));
        let (Some(gross), Some(fee), Some(net)) = (amount("gross"), amount("fee"), amount("net"))
        else {
            problems.push((
                line,
                format!("{bt}: gross, fee and net must be amounts like 20.00"),
            ));
            continue;
        };
        if gross.checked_sub(fee) != Some(net) {
            problems.push((
                line,
                format!("{bt}: net {net} is not gross {gross} less fee {fee} (minor units)"),
            ));
        }
        let Some(payout_id) = get("automatic_payout_id") else {
            problems.push((line, format!("{bt} belongs to no payout")));
            continue;
        };
        lines.push(PayoutLine {
            line,
            payout_id,
            payout_effective_at: get("automatic_payout_effective_at"),
            balance_transaction_id: bt,
            category: get("reporting_category").unwrap_or_default(),
            currency: line_currency,
            gross_minor: gross,
            fee_minor: fee,
            net_minor: net,
            payment_intent: get("payment_intent_id"),
            order_id: get("payment_metadata[order_id]").and_then(|o| o.parse().ok()),
            source_id: get("source_id"),
        });
    }
    if problems.is_empty() {
        Ok(lines)
    } else {
        Err(PayoutError::Refused(problems))
    }
}
