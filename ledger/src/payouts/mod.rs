//! The provider's payouts, reconciled: its itemized payout reconciliation report (Stripe's
//! `payout_reconciliation.itemized` CSV) imported, each line matched to the books by payment
//! and amount with no tolerance, fees booked as operating expenses, and each payout moved from
//! payment clearing to the bank.
//!
//! Bad input is refused whole, line by line with the reason, before anything is written: an
//! unknown column, a foreign currency, a duplicate line, a line of another account, an amount
//! that is not money or a net that is not gross less fee. A line that is good but matches
//! nothing in the books (a payment of another product, an amount that differs) is reported,
//! not booked; payments in the books that no line covers are reported too.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::Account;

mod read;

pub use read::{
    COLUMNS, PayoutLine, balance_transactions_as_report, minor_units, parse_csv, read_report,
};

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error("the payout report is refused, nothing was imported: {}", .0.iter().map(|(l, r)| format!("line {l}: {r}")).collect::<Vec<_>>().join("; "))]
    Refused(Vec<(usize, String)>),
    #[error("raffle {0} does not exist")]
    UnknownRaffle(Uuid),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// A payout as the import found it.
#[derive(Debug, Clone, Serialize)]
pub struct PayoutSummary {
    pub payout_id: String,
    pub lines: usize,
    pub net_minor: i64,
    pub fees_minor: i64,
    /// Every line of the payout matched the books, so clearing nets to zero for it.
    pub clearing_nets_to_zero: bool,
}

/// What an import did and found.
#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    pub file_sha256: String,
    pub lines: usize,
    pub already_imported: usize,
    pub matched: Vec<(String, String)>,
    /// Lines of the file that match nothing in the books: (line, transaction, why).
    pub unmatched_in_file: Vec<(usize, String, String)>,
    /// Money in the books that no imported line covers yet.
    pub unmatched_in_books: Vec<String>,
    pub payouts: Vec<PayoutSummary>,
}

impl ImportOutcome {
    pub fn all_matched(&self) -> bool {
        self.unmatched_in_file.is_empty() && self.unmatched_in_books.is_empty()
    }
}

/// A refund owed for a payment: (id, amount, state, the provider's refund id).
type OwedRefund = (Uuid, i64, String, Option<String>);

/// What the books hold for the payments a file names, read once for the whole file (a record
/// day's payout has hundreds of thousands of lines): each order's booked sale and reversals, and
/// the refunds owed or paid, by PaymentIntent.
#[derive(Default)]
struct BooksByPayment {
    /// PaymentIntent → (order, the sale booked for it).
    sales: HashMap<String, (Uuid, i64)>,
    /// PaymentIntent → (order, the reversals booked for it).
    reversals: HashMap<String, (Uuid, Vec<i64>)>,
    /// PaymentIntent → the refunds owed for it.
    owed: HashMap<String, Vec<OwedRefund>>,
}

impl BooksByPayment {
    /// Three plain scans of the raffle, joined here: the planner has no statistics yet for a
    /// raffle that just sold (nor for what this transaction wrote) and would nest the
    /// aggregate per order.
    async fn load(
        tx: &Transaction<'_>,
        raffle: Uuid,
        payments: &[&str],
    ) -> Result<Self, tokio_postgres::Error> {
        let wanted: HashSet<&str> = payments.iter().copied().collect();
        let mut books = Self::default();
        let mut by_order: HashMap<Uuid, String> = HashMap::new();
        for r in tx
            .query(
                "SELECT id, payment_reference FROM sales.orders
                  WHERE raffle_id = $1 AND source = 'online' AND payment_reference IS NOT NULL",
                &[&raffle],
            )
            .await?
        {
            let (order, pi): (Uuid, String) = (r.get(0), r.get(1));
            if wanted.contains(pi.as_str()) {
                books.sales.insert(pi.clone(), (order, 0));
                books.reversals.insert(pi.clone(), (order, Vec::new()));
                by_order.insert(order, pi);
            }
        }
        for r in tx
            .query(
                "SELECT e.order_id, e.entry_type, p.amount_minor
                   FROM ledger.journal_entries e JOIN ledger.postings p ON p.entry_id = e.id
                   JOIN ledger.accounts a ON a.id = p.account_id
                  WHERE e.raffle_id = $1 AND e.order_id IS NOT NULL
                    AND ((e.entry_type = 'ticket_sale' AND a.code = 'gross_ticket_revenue')
                      OR (e.entry_type = 'ticket_reversal' AND a.code = 'refunds_and_voids'))",
                &[&raffle],
            )
            .await?
        {
            let (order, entry_type, amount): (Uuid, &str, i64) = (r.get(0), r.get(1), r.get(2));
            let Some(pi) = by_order.get(&order) else {
                continue;
            };
            if entry_type == "ticket_sale" {
                if let Some(sale) = books.sales.get_mut(pi) {
                    sale.1 -= amount;
                }
            } else if let Some(reversals) = books.reversals.get_mut(pi) {
                reversals.1.push(amount);
            }
        }
        for r in tx
            .query(
                "SELECT payment_reference, id, amount_minor, state, provider_refund_id FROM refunds.obligations
                  WHERE raffle_id = $1 ORDER BY id",
                &[&raffle],
            )
            .await?
        {
            let pi: String = r.get(0);
            if wanted.contains(pi.as_str()) {
                books
                    .owed
                    .entry(pi)
                    .or_default()
                    .push((r.get(1), r.get(2), r.get(3), r.get(4)));
            }
        }
        Ok(books)
    }

    /// What a line matches in the books, or why it matches nothing.
    fn match_line(&self, l: &PayoutLine) -> Result<String, String> {
        let Some(pi) = &l.payment_intent else {
            return Err(format!(
                "a {} line names no payment: not matched automatically",
                l.category
            ));
        };
        let owed = self.owed.get(pi).map(Vec::as_slice).unwrap_or_default();
        match l.category.as_str() {
            "charge" | "payment" => {
                if let Some((order, booked)) = self.sales.get(pi) {
                    return if *booked == l.gross_minor {
                        Ok(format!("the sale of order {order}"))
                    } else {
                        Err(format!(
                            "{pi} is {} in the file and {booked} in the books (order {order})",
                            l.gross_minor
                        ))
                    };
                }
                match owed.first() {
                    Some((id, amount, _, _)) if *amount == l.gross_minor => {
                        Ok(format!("a payment owed back (refund {id})"))
                    }
                    Some((id, amount, _, _)) => Err(format!(
                        "{pi} is {} in the file and {amount} in the books (refund {id})",
                        l.gross_minor
                    )),
                    None => Err(format!("{pi} is no payment of this raffle")),
                }
            }
            "refund" | "refund_failure" | "dispute" => {
                // A refund (whole or in part) or a dispute of a sale, made outside the
                // platform: one of the order's reversals, of the same amount.
                if let Some((order, booked)) = self.reversals.get(pi)
                    && (!booked.is_empty() || l.category == "dispute")
                {
                    return if booked.contains(&-l.gross_minor) {
                        Ok(format!("the {} of order {order}", l.category))
                    } else {
                        Err(format!(
                            "the {} of {pi} is {} in the file; the books reverse {booked:?} of order {order}",
                            l.category, -l.gross_minor
                        ))
                    };
                }
                if l.category == "dispute" {
                    return Err(format!("no disputed sale of {pi} in the books"));
                }
                let paid = owed.iter().find(|(_, _, state, refund)| {
                    state == "succeeded"
                        && (l.source_id.is_none() || refund.as_deref() == l.source_id.as_deref())
                });
                match paid {
                    Some((id, amount, _, _)) if *amount == -l.gross_minor => {
                        Ok(format!("refund {id} paid"))
                    }
                    Some((_, amount, _, _)) => Err(format!(
                        "refund of {pi} is {} in the file and {amount} in the books",
                        -l.gross_minor
                    )),
                    None => Err(format!("no paid refund of {pi} in the books")),
                }
            }
            other => Err(format!("a {other} line of {pi}: not matched automatically")),
        }
    }
}

/// Imports a report for `raffle` in the caller's transaction: lines already imported are
/// skipped, matched lines are kept and booked, the rest reported.
pub async fn import(
    tx: &Transaction<'_>,
    raffle: Uuid,
    text: &str,
    account: Option<&str>,
    imported_by: &str,
) -> Result<ImportOutcome, PayoutError> {
    let currency: String = tx
        .query_opt(
            "SELECT currency FROM catalog.raffle_events WHERE id = $1 FOR UPDATE",
            &[&raffle],
        )
        .await?
        .ok_or(PayoutError::UnknownRaffle(raffle))?
        .get(0);
    // The itemized report as CSV, or the payout's balance transactions as JSON.
    let lines = if text.trim_start().starts_with(['{', '[']) {
        read_report(&balance_transactions_as_report(text)?, &currency, account)?
    } else {
        read_report(text, &currency, account)?
    };
    let sha = hex::encode(Sha256::digest(text.as_bytes()));
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l.balance_transaction_id.as_str())
        .collect();
    let mut known: HashSet<String> = HashSet::new();
    let mut elsewhere = Vec::new();
    for r in tx
        .query(
            "SELECT balance_transaction_id, raffle_id FROM ledger.payout_lines WHERE balance_transaction_id = ANY($1)",
            &[&ids],
        )
        .await?
    {
        let (bt, of): (String, Uuid) = (r.get(0), r.get(1));
        if of == raffle {
            known.insert(bt);
        } else if let Some(l) = lines.iter().find(|l| l.balance_transaction_id == bt) {
            elsewhere.push((l.line, format!("{bt} was imported for raffle {of}")));
        }
    }
    if !elsewhere.is_empty() {
        elsewhere.sort();
        return Err(PayoutError::Refused(elsewhere));
    }
    let mut outcome = ImportOutcome {
        file_sha256: sha.clone(),
        lines: lines.len(),
        already_imported: 0,
        matched: Vec::new(),
        unmatched_in_file: Vec::new(),
        unmatched_in_books: Vec::new(),
        payouts: Vec::new(),
    };
    let payments: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.payment_intent.as_deref())
        .collect();
    let books = BooksByPayment::load(tx, raffle, &payments).await?;
    let mut per_payout: BTreeMap<String, (usize, i64, i64, i64, bool)> = BTreeMap::new();
    let mut keep: Vec<(&PayoutLine, String)> = Vec::new();
    for l in &lines {
        let p = per_payout
            .entry(l.payout_id.clone())
            .or_insert((0, 0, 0, 0, true));
        p.0 += 1;
        if known.contains(&l.balance_transaction_id) {
            outcome.already_imported += 1;
            continue;
        }
        match books.match_line(l) {
            Ok(what) => {
                if l.category.starts_with("dispute") {
                    p.3 += l.fee_minor;
                } else {
                    p.2 += l.fee_minor;
                }
                p.1 += l.net_minor;
                outcome
                    .matched
                    .push((l.balance_transaction_id.clone(), what.clone()));
                keep.push((l, what));
            }
            Err(why) => {
                p.4 = false;
                outcome
                    .unmatched_in_file
                    .push((l.line, l.balance_transaction_id.clone(), why));
            }
        }
    }
    for chunk in keep.chunks(20_000) {
        let col = |f: fn(&PayoutLine) -> Option<String>| -> Vec<Option<String>> {
            chunk.iter().map(|(l, _)| f(l)).collect()
        };
        let bts = col(|l| Some(l.balance_transaction_id.clone()));
        let payouts = col(|l| Some(l.payout_id.clone()));
        let effective = col(|l| l.payout_effective_at.clone());
        let categories = col(|l| Some(l.category.clone()));
        let intents = col(|l| l.payment_intent.clone());
        let sources = col(|l| l.source_id.clone());
        let amounts =
            |f: fn(&PayoutLine) -> i64| -> Vec<i64> { chunk.iter().map(|(l, _)| f(l)).collect() };
        let (gross, fee, net) = (
            amounts(|l| l.gross_minor),
            amounts(|l| l.fee_minor),
            amounts(|l| l.net_minor),
        );
        let orders: Vec<Option<Uuid>> = chunk.iter().map(|(l, _)| l.order_id).collect();
        let matched: Vec<&str> = chunk.iter().map(|(_, what)| what.as_str()).collect();
        tx.execute(
            "INSERT INTO ledger.payout_lines (raffle_id, balance_transaction_id, payout_id, payout_effective_at,
                 reporting_category, currency, gross_minor, fee_minor, net_minor, payment_intent, order_id,
                 source_id, matched, file_sha256, imported_by)
             SELECT $1, u.bt, u.payout, u.effective, u.category, $2, u.gross, u.fee, u.net, u.intent, u.order_id,
                    u.source, u.matched, $3, $4
               FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[],
                           $12::text[], $13::uuid[], $14::text[], $15::text[])
                    AS u(bt, payout, effective, category, gross, fee, net, intent, order_id, source, matched)",
            &[
                &raffle, &currency, &sha, &imported_by, &bts, &payouts, &effective, &categories, &gross,
                &fee, &net, &intents, &orders, &sources, &matched,
            ],
        )
        .await?;
    }
    for (payout, (count, net, fees, dispute_fees, all_matched)) in &per_payout {
        let mut postings = Vec::new();
        if *fees != 0 {
            postings.push(Account::ProcessingFees.debit(*fees));
        }
        if *dispute_fees != 0 {
            postings.push(Account::DisputeFees.debit(*dispute_fees));
        }
        let fee_total = fees + dispute_fees;
        if fee_total != 0 {
            postings.push(Account::PaymentClearing.credit(fee_total));
            crate::append(
                tx,
                raffle,
                "provider_fee",
                format!("the provider's fees of payout {payout}"),
                &currency,
                &postings,
            )
            .await?;
        }
        if *net != 0 {
            crate::append(
                tx,
                raffle,
                "provider_payout",
                format!("payout {payout} from the provider to the bank"),
                &currency,
                &[
                    Account::Bank.debit(*net),
                    Account::PaymentClearing.credit(*net),
                ],
            )
            .await?;
        }
        outcome.payouts.push(PayoutSummary {
            payout_id: payout.clone(),
            lines: *count,
            net_minor: *net,
            fees_minor: fee_total,
            clearing_nets_to_zero: *all_matched,
        });
    }
    outcome.unmatched_in_books = unmatched_in_books(tx, raffle).await?;
    Ok(outcome)
}

/// Online payments and paid refunds of the raffle that no imported payout line covers. The
/// anti-join is made here, over the raffle's lines read once: inside the import's transaction
/// the planner has no statistics for the lines just written and would probe them once per
/// order (a record day: 300,000 × 325,600).
pub async fn unmatched_in_books(
    client: &impl tokio_postgres::GenericClient,
    raffle: Uuid,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut charged: HashSet<String> = HashSet::new();
    let mut refunded: HashSet<String> = HashSet::new();
    for r in client
        .query(
            "SELECT payment_intent, reporting_category FROM ledger.payout_lines
              WHERE raffle_id = $1 AND payment_intent IS NOT NULL AND reporting_category IN ('charge', 'payment', 'refund')",
            &[&raffle],
        )
        .await?
    {
        let (pi, category): (String, &str) = (r.get(0), r.get(1));
        if category == "refund" {
            refunded.insert(pi);
        } else {
            charged.insert(pi);
        }
    }
    let mut out = Vec::new();
    for r in client
        .query(
            "SELECT o.id, o.payment_reference, o.total_amount_minor FROM sales.orders o
              WHERE o.raffle_id = $1 AND o.source = 'online' AND o.payment_status = 'completed'
              ORDER BY o.id",
            &[&raffle],
        )
        .await?
    {
        let pi: Option<String> = r.get(1);
        if pi.as_ref().is_some_and(|pi| charged.contains(pi)) {
            continue;
        }
        out.push(format!(
            "the sale of order {} ({}, {}) is in no payout",
            r.get::<_, Uuid>(0),
            pi.unwrap_or_default(),
            schemas::amount_for_people(r.get(2))
        ));
    }
    for r in client
        .query(
            "SELECT b.id, b.payment_reference, b.amount_minor FROM refunds.obligations b
              WHERE b.raffle_id = $1 AND b.state = 'succeeded' ORDER BY b.id",
            &[&raffle],
        )
        .await?
    {
        let pi: String = r.get(1);
        if refunded.contains(&pi) {
            continue;
        }
        out.push(format!(
            "refund {} ({pi}, {}) is in no payout",
            r.get::<_, Uuid>(0),
            schemas::amount_for_people(r.get(2))
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_read_as_major_units_exactly() {
        assert_eq!(minor_units("20.00"), Some(2000));
        assert_eq!(minor_units("-0.59"), Some(-59));
        assert_eq!(minor_units("7"), Some(700));
        assert_eq!(minor_units("1.5"), Some(150));
        for bad in ["", "1.234", "1,00", "abc", "1.", "--1", "1e3"] {
            assert_eq!(minor_units(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn balance_transactions_as_json_read_as_the_itemized_report() {
        let json = r#"{"object": "list", "data": [
            {"id": "txn_1", "object": "balance_transaction", "amount": 2000, "fee": 88, "net": 1912,
             "currency": "usd", "type": "charge", "reporting_category": "charge", "created": 1764547200,
             "source": {"id": "ch_1", "object": "charge", "payment_intent": "pi_1", "metadata": {"order_id": "0192d1f0-0000-7000-8000-000000000001"}}},
            {"id": "txn_2", "amount": -2000, "fee": 0, "net": -2000, "currency": "usd", "type": "refund",
             "reporting_category": "refund", "source": {"id": "re_1", "payment_intent": "pi_2"}},
            {"id": "txn_3", "amount": -88, "fee": 0, "net": -88, "currency": "usd", "type": "payout",
             "reporting_category": "payout", "source": "po_1"}
        ]}"#;
        let lines =
            read_report(&balance_transactions_as_report(json).unwrap(), "USD", None).unwrap();
        assert_eq!(lines.len(), 2, "the payout's own transaction is left out");
        assert_eq!(
            (
                lines[0].payout_id.as_str(),
                lines[0].gross_minor,
                lines[0].fee_minor,
                lines[0].net_minor
            ),
            ("po_1", 2000, 88, 1912)
        );
        assert_eq!(lines[0].payment_intent.as_deref(), Some("pi_1"));
        assert!(lines[0].order_id.is_some());
        assert_eq!(
            (
                lines[1].category.as_str(),
                lines[1].gross_minor,
                lines[1].source_id.as_deref()
            ),
            ("refund", -2000, Some("re_1"))
        );
        // The same rules refuse it: another currency, a float amount, no payout named.
        let foreign = json.replace(
            "\"currency\": \"usd\", \"type\": \"refund\"",
            "\"currency\": \"eur\", \"type\": \"refund\"",
        );
        assert!(
            matches!(read_report(&balance_transactions_as_report(&foreign).unwrap(), "USD", None),
                         Err(PayoutError::Refused(p)) if p[0].0 == 3 && p[0].1.contains("is in EUR"))
        );
        let float = json.replace("\"amount\": 2000", "\"amount\": 20.00");
        assert!(matches!(balance_transactions_as_report(&float),
                         Err(PayoutError::Refused(p)) if p[0].1.contains("txn_1: amount must be an integer")));
        let no_payout = json.replace("\"type\": \"payout\"", "\"type\": \"adjustment\"");
        assert!(matches!(balance_transactions_as_report(&no_payout),
                         Err(PayoutError::Refused(p)) if p[0].1.contains("?payout=po_")));
    }

    #[test]
    fn a_bad_report_is_refused_line_by_line() {
        let header = "automatic_payout_id,balance_transaction_id,currency,gross,fee,net,reporting_category,payment_intent_id";
        let ok = format!("{header}\npo_1,txn_1,usd,20.00,0.88,19.12,charge,pi_1\n");
        assert_eq!(read_report(&ok, "USD", None).unwrap().len(), 1);
        let refused = |text: &str| match read_report(text, "USD", None) {
            Err(PayoutError::Refused(p)) => p,
            other => panic!("not refused: {other:?}"),
        };
        let p = refused(&format!(
            "{header},shoe_size\npo_1,txn_1,usd,20.00,0.88,19.12,charge,pi_1,9\n"
        ));
        assert!(p[0].1.contains("unknown column \"shoe_size\""), "{p:?}");
        let p = refused(&format!(
            "{header}\npo_1,txn_1,eur,20.00,0.88,19.12,charge,pi_1\n"
        ));
        assert_eq!(p[0].0, 2);
        assert!(p[0].1.contains("is in EUR"), "{p:?}");
        let p = refused(&format!(
            "{header}\npo_1,txn_1,usd,20.00,0.88,19.12,charge,pi_1\npo_1,txn_1,usd,20.00,0.88,19.12,charge,pi_1\n"
        ));
        assert_eq!(p, vec![(3, "a duplicate line of txn_1".to_owned())]);
        let p = refused(&format!(
            "{header}\npo_1,txn_1,usd,20.00,0.88,19.00,charge,pi_1\n"
        ));
        assert!(p[0].1.contains("is not gross"), "{p:?}");
        let with_account = format!(
            "{header},connected_account\npo_1,txn_1,usd,20.00,0.88,19.12,charge,pi_1,acct_other\n"
        );
        let p = match read_report(&with_account, "USD", Some("acct_ours")) {
            Err(PayoutError::Refused(p)) => p,
            other => panic!("{other:?}"),
        };
        assert!(p[0].1.contains("of account acct_other"), "{p:?}");
    }

    proptest! {
        #[test]
        fn csv_fields_round_trip(rows in proptest::collection::vec(proptest::collection::vec("[ -~]{0,8}", 1..5), 1..5)) {
            let text: String = rows
                .iter()
                .map(|r| r.iter().map(|f| format!("\"{}\"", f.replace('"', "\"\""))).collect::<Vec<_>>().join(","))
                .collect::<Vec<_>>()
                .join("\r\n");
            let parsed = parse_csv(&text).unwrap();
            let expected: Vec<Vec<String>> = rows.into_iter().filter(|r| !(r.len() == 1 && r[0].trim().is_empty())).collect();
            prop_assert_eq!(parsed, expected);
        }

        #[test]
        fn cents_round_trip(v in -1_000_000_000_000i64..1_000_000_000_000) {
            let text = format!("{}{}.{:02}", if v < 0 { "-" } else { "" }, v.abs() / 100, v.abs() % 100);
            prop_assert_eq!(minor_units(&text), Some(v));
        }
    }
}
