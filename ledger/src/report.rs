//! The reconciliation report: what finance signs off and regulators ask for — gross by
//! source, package, RSU and seller; numbers sold, voided and unsold per range and allocation
//! (sold + voided + unsold = total); money received against the value of numbers sold per RSU
//! and seller; prizes, fee and net proceeds; the trial balance; and every check with pass or
//! fail and the figures behind it. Every figure is read from the orders, tickets and ledger
//! tables directly, so the report can disagree with them only if the books do.

use serde::Serialize;
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub figures: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub raffle: Value,
    pub gross_by_source: Value,
    pub gross_by_package: Value,
    pub gross_by_rsu: Value,
    pub gross_by_seller: Value,
    pub numbers_by_range: Value,
    pub numbers_by_allocation: Value,
    pub money_by_rsu: Value,
    pub sales_by_hour: Value,
    pub seal: Value,
    pub trial_balance: Value,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn all_pass(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

async fn rows(
    client: &impl GenericClient,
    sql: &str,
    raffle: Uuid,
) -> Result<Value, tokio_postgres::Error> {
    let rows = client.query(sql, &[&raffle]).await?;
    Ok(Value::Array(
        rows.iter().map(|r| r.get::<_, Value>(0)).collect(),
    ))
}

/// Orders whose tickets were issued: paid (completed), or refunded or voided after issue.
const ISSUED_ORDERS: &str = "SELECT o.* FROM sales.orders o WHERE o.raffle_id = $1 AND o.payment_status IN ('completed', 'refunded', 'voided')
      AND EXISTS (SELECT 1 FROM sales.tickets t WHERE t.order_id = o.id AND (t.state <> 'voided' OR t.voided_at > t.sold_at))";

pub async fn reconciliation(
    client: &impl GenericClient,
    raffle: Uuid,
) -> Result<Report, tokio_postgres::Error> {
    let raffle_json: Value = client
        .query_opt(
            "SELECT jsonb_build_object('id', id, 'name', name, 'event_identifier', event_identifier, 'state', state,
                    'currency', currency, 'sales_start_time', sales_start_time, 'sales_end_time', sales_end_time,
                    'total_sold', total_sold, 'total_voided', total_voided, 'max_tickets', max_tickets)
               FROM catalog.raffle_events WHERE id = $1",
            &[&raffle],
        )
        .await?
        .map(|r| r.get(0))
        .unwrap_or(Value::Null);
    let paid = "payment_status = 'completed'";
    let gross_by_source = rows(
        client,
        &format!("SELECT jsonb_build_object('source', source, 'orders', count(*), 'tickets', sum(ticket_count), 'amount_minor', sum(total_amount_minor))
           FROM sales.orders WHERE raffle_id = $1 AND {paid} GROUP BY source ORDER BY source"),
        raffle,
    )
    .await?;
    let gross_by_package = rows(
        client,
        &format!("SELECT jsonb_build_object('package_id', p.id, 'name', p.name, 'orders', count(o.id), 'amount_minor', coalesce(sum(o.total_amount_minor), 0))
           FROM catalog.ticket_packages p LEFT JOIN sales.orders o ON o.package_id = p.id AND o.{paid}
          WHERE p.raffle_id = $1 GROUP BY p.id, p.name ORDER BY p.display_order, p.name"),
        raffle,
    )
    .await?;
    let gross_by_rsu = rows(
        client,
        &format!("SELECT jsonb_build_object('rsu_id', r.id, 'name', r.name, 'orders', count(*), 'amount_minor', sum(o.total_amount_minor))
           FROM sales.orders o JOIN catalog.rsus r ON r.id = o.rsu_id WHERE o.raffle_id = $1 AND o.{paid}
          GROUP BY r.id, r.name ORDER BY r.name"),
        raffle,
    )
    .await?;
    let gross_by_seller = rows(
        client,
        &format!("SELECT jsonb_build_object('seller', coalesce(operator_id, 'online'), 'orders', count(*), 'amount_minor', sum(total_amount_minor))
           FROM sales.orders WHERE raffle_id = $1 AND {paid} GROUP BY coalesce(operator_id, 'online') ORDER BY coalesce(operator_id, 'online')"),
        raffle,
    )
    .await?;
    let numbers_by_range = rows(
        client,
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
        "SELECT jsonb_build_object('allocation_id', a.id, 'rsu_id', a.entity_id, 'state', a.state, 'start', a.start_number,
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
        "SELECT jsonb_build_object('rsu_id', r.id, 'name', r.name,
                'value_of_numbers_sold_minor', coalesce((SELECT sum(o.total_amount_minor) FROM sales.orders o
                    WHERE o.raffle_id = $1 AND o.rsu_id = r.id AND o.payment_status = 'completed'), 0),
                'written_off_minor', coalesce((SELECT sum(p.amount_minor) FROM ledger.journal_entries e
                    JOIN ledger.postings p ON p.entry_id = e.id JOIN ledger.accounts a ON a.id = p.account_id
                    WHERE e.raffle_id = $1 AND e.entry_type = 'written_off_receipts' AND a.code = 'rsu_float/' || r.id::text), 0),
                'money_received_minor', coalesce((SELECT sum(p.amount_minor) FROM ledger.postings p JOIN ledger.accounts a ON a.id = p.account_id
                    WHERE a.raffle_id = $1 AND a.code = 'rsu_float/' || r.id::text), 0))
           FROM catalog.rsus r WHERE r.id IN (SELECT entity_id FROM catalog.rsu_allocations WHERE raffle_id = $1) ORDER BY r.name",
        raffle,
    )
    .await?;
    let sales_by_hour = rows(
        client,
        "SELECT jsonb_build_object('hour', date_trunc('hour', sold_at), 'tickets', count(*))
           FROM sales.tickets WHERE raffle_id = $1 AND state <> 'voided'
          GROUP BY date_trunc('hour', sold_at) ORDER BY date_trunc('hour', sold_at)",
        raffle,
    )
    .await?;
    let seal: Value = client
        .query_opt("SELECT to_jsonb(s) - 'seed_commitment' || jsonb_build_object('seed_commitment', encode(s.seed_commitment, 'hex'),
                            'head_hash', encode(s.head_hash, 'hex'), 'ticket_set_digest', encode(s.ticket_set_digest, 'hex'))
                      FROM ledger.seals s WHERE raffle_id = $1", &[&raffle])
        .await?
        .map(|r| r.get(0))
        .unwrap_or(Value::Null);
    let balances = crate::balances(client, raffle, None).await?;
    let trial_total: i64 = balances.values().sum();

    let mut checks = Vec::new();
    checks.push(Check {
        name: "trial balance is zero".into(),
        pass: trial_total == 0,
        figures: json!({"sum_minor": trial_total}),
    });
    for (section, list) in [
        ("range", &numbers_by_range),
        ("allocation", &numbers_by_allocation),
    ] {
        for item in list.as_array().into_iter().flatten() {
            let n = |k: &str| item[k].as_i64().unwrap_or(-1);
            let id = item
                .get("range_id")
                .or_else(|| item.get("allocation_id"))
                .cloned()
                .unwrap_or(Value::Null);
            checks.push(Check {
                name: format!("{section} {}: sold + voided + unsold = total, and the counters match the tickets", id.as_str().unwrap_or("?")),
                pass: n("sold") + n("voided") + n("unsold") == n("total") && n("sold") == n("tickets_sold") && n("voided") == n("tickets_voided"),
                figures: item.clone(),
            });
        }
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
    for item in money_by_rsu.as_array().into_iter().flatten() {
        let n = |k: &str| item[k].as_i64().unwrap_or(0);
        checks.push(Check {
            name: format!(
                "RSU {}: money received = value of numbers sold + written off",
                item["name"].as_str().unwrap_or("?")
            ),
            pass: n("money_received_minor")
                == n("value_of_numbers_sold_minor") + n("written_off_minor"),
            figures: item.clone(),
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
    Ok(Report {
        raffle: raffle_json,
        gross_by_source,
        gross_by_package,
        gross_by_rsu,
        gross_by_seller,
        numbers_by_range,
        numbers_by_allocation,
        money_by_rsu,
        sales_by_hour,
        seal,
        trial_balance: json!({"accounts": balances, "sum_minor": trial_total}),
        checks,
    })
}

/// The report as CSV: one row per figure, `section,item,field,value`.
pub fn to_csv(report: &Report) -> String {
    fn cell(s: &str) -> String {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    }
    fn flat(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let mut out = String::from("section,item,field,value\n");
    let sections: [(&str, &Value); 10] = [
        ("raffle", &report.raffle),
        ("gross_by_source", &report.gross_by_source),
        ("gross_by_package", &report.gross_by_package),
        ("gross_by_rsu", &report.gross_by_rsu),
        ("gross_by_seller", &report.gross_by_seller),
        ("numbers_by_range", &report.numbers_by_range),
        ("numbers_by_allocation", &report.numbers_by_allocation),
        ("money_by_rsu", &report.money_by_rsu),
        ("seal", &report.seal),
        ("trial_balance", &report.trial_balance["accounts"]),
    ];
    for (section, value) in sections {
        let items: Vec<(String, &Value)> = match value {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            other => vec![(String::new(), other)],
        };
        for (item, v) in items {
            if let Value::Object(map) = v {
                for (k, x) in map {
                    out.push_str(&format!(
                        "{},{},{},{}\n",
                        cell(section),
                        cell(&item),
                        cell(k),
                        cell(&flat(x))
                    ));
                }
            }
        }
    }
    for check in &report.checks {
        out.push_str(&format!(
            "check,{},pass,{}\n",
            cell(&check.name),
            check.pass
        ));
    }
    out
}
