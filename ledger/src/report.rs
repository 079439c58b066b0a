//! The reconciliation report: what finance signs off and regulators ask for — gross by
//! source, package, RSU and seller; numbers sold, voided and unsold per range and allocation
//! (sold + voided + unsold = total); money received against the value of numbers sold per RSU
//! and seller; prizes, fee and net proceeds; the trial balance; and every check with pass or
//! fail and the figures behind it. Every figure is read from the orders, tickets and ledger
//! tables directly, so the report can disagree with them only if the books do.

use schemas::amount_for_people as money;
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
    /// After the draw: every winner with its prize, value and claim status.
    pub winners: Value,
    pub seal: Value,
    pub trial_balance: Value,
    pub checks: Vec<Check>,
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
    let winners = rows(
        client,
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
    if let Some(drawn) = winners.as_array().filter(|w| !w.is_empty()) {
        let mut differing = Vec::new();
        for prize in seal["prizes"].as_array().into_iter().flatten() {
            let name = prize["name"].as_str().unwrap_or("?");
            let sealed = prize["amount_minor"].as_i64().unwrap_or(0);
            let awarded: i64 = drawn
                .iter()
                .filter(|w| w["prize_id"] == prize["prize_id"])
                .map(|w| w["value_minor"].as_i64().unwrap_or(0))
                .sum();
            if awarded != sealed {
                differing
                    .push(json!({"prize": name, "sealed_minor": sealed, "awarded_minor": awarded}));
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
        winners,
        seal,
        trial_balance: json!({"accounts": balances, "sum_minor": trial_total}),
        checks,
    })
}

/// One CSV cell. A text that a spreadsheet would run as a formula (it starts with `=`, `+`,
/// `-`, `@`, a tab or a carriage return: a seller's name `=HYPERLINK(...)`) is prefixed with
/// `'`, so it shows as the text it is; numbers, negative amounts included, stay numbers.
pub fn csv_cell(s: &str) -> String {
    let is_number = s.parse::<i64>().is_ok() || s.parse::<rust_decimal::Decimal>().is_ok();
    let formula = !is_number && s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if formula || s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The report as CSV: one row per figure, `section,item,field,value`.
pub fn to_csv(report: &Report) -> String {
    let cell = csv_cell;
    fn flat(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let mut out = String::from("section,item,field,value\n");
    let sections: [(&str, &Value); 11] = [
        ("raffle", &report.raffle),
        ("gross_by_source", &report.gross_by_source),
        ("gross_by_package", &report.gross_by_package),
        ("gross_by_rsu", &report.gross_by_rsu),
        ("gross_by_seller", &report.gross_by_seller),
        ("numbers_by_range", &report.numbers_by_range),
        ("numbers_by_allocation", &report.numbers_by_allocation),
        ("money_by_rsu", &report.money_by_rsu),
        ("seal", &report.seal),
        ("winners", &report.winners),
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(title: &str, rows: &Value, columns: &[(&str, &str)]) -> String {
    let mut html = format!("<h2>{}</h2><table><tr>", escape(title));
    for (_, label) in columns {
        html.push_str(&format!("<th>{}</th>", escape(label)));
    }
    html.push_str("</tr>");
    for row in rows.as_array().into_iter().flatten() {
        html.push_str("<tr>");
        for (key, _) in columns {
            let v = &row[*key];
            let text = match v {
                Value::Number(n) if key.ends_with("_minor") => money(n.as_i64().unwrap_or(0)),
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            html.push_str(&format!("<td>{}</td>", escape(&text)));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

/// Tickets sold per hour as an inline SVG bar chart (no script, prints as is).
fn chart(sales_by_hour: &Value) -> String {
    let points: Vec<(String, i64)> = sales_by_hour
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["hour"].as_str().unwrap_or("").chars().take(13).collect(),
                p["tickets"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    if points.is_empty() {
        return "<p>No sales yet.</p>".into();
    }
    let max = points.iter().map(|p| p.1).max().unwrap_or(1).max(1);
    let (width, height, bar) = (720.0, 200.0, 720.0 / points.len() as f64);
    let mut svg = format!(
        r#"<svg viewBox="0 0 {width} {}" width="100%" role="img" aria-label="tickets sold per hour">"#,
        height + 30.0
    );
    for (i, (hour, tickets)) in points.iter().enumerate() {
        let h = height * *tickets as f64 / max as f64;
        let x = i as f64 * bar;
        svg.push_str(&format!(
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#3b6ea8"><title>{} UTC: {} tickets</title></rect>"##,
            x + 1.0, height - h, (bar - 2.0).max(1.0), h, escape(hour), tickets
        ));
    }
    let first = &points[0].0;
    let last = &points[points.len() - 1].0;
    svg.push_str(&format!(
        r#"<text x="0" y="{}" font-size="12">{} UTC</text><text x="{width}" y="{}" font-size="12" text-anchor="end">{} UTC · peak {} tickets/h</text></svg>"#,
        height + 20.0, escape(first), height + 20.0, escape(last), max
    ));
    svg
}

/// The report as a printable HTML page with a chart of sales over time.
pub fn to_html(report: &Report) -> String {
    let r = &report.raffle;
    let name = r["name"].as_str().unwrap_or("raffle");
    let mut html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Reconciliation — {name}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:0.5em 0 1.5em}}
td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}th{{background:#eee}}td:first-child,th:first-child{{text-align:left}}
.pass{{color:#1a7f37}}.fail{{color:#c62828;font-weight:bold}}@media print{{body{{margin:0}}}}</style></head><body>
<h1>Reconciliation — {name}</h1><p>{} · {} · state {} · currency {} · sales {} to {}</p>"#,
        escape(r["event_identifier"].as_str().unwrap_or("")),
        escape(r["id"].as_str().unwrap_or("")),
        escape(r["state"].as_str().unwrap_or("")),
        escape(r["currency"].as_str().unwrap_or("")),
        escape(r["sales_start_time"].as_str().unwrap_or("")),
        escape(r["sales_end_time"].as_str().unwrap_or("")),
        name = escape(name),
    );
    let failing = report.checks.iter().filter(|c| !c.pass).count();
    html.push_str(&format!(
        r#"<p class="{}"><strong>{} of {} checks pass.</strong></p>"#,
        if failing == 0 { "pass" } else { "fail" },
        report.checks.len() - failing,
        report.checks.len()
    ));
    html.push_str("<h2>Tickets sold per hour</h2>");
    html.push_str(&chart(&report.sales_by_hour));
    html.push_str(&table(
        "Gross by source",
        &report.gross_by_source,
        &[
            ("source", "source"),
            ("orders", "orders"),
            ("tickets", "tickets"),
            ("amount_minor", "amount"),
        ],
    ));
    html.push_str(&table(
        "Gross by package",
        &report.gross_by_package,
        &[
            ("name", "package"),
            ("orders", "orders"),
            ("amount_minor", "amount"),
        ],
    ));
    html.push_str(&table(
        "Gross by RSU",
        &report.gross_by_rsu,
        &[
            ("name", "RSU"),
            ("orders", "orders"),
            ("amount_minor", "amount"),
        ],
    ));
    html.push_str(&table(
        "Gross by seller",
        &report.gross_by_seller,
        &[
            ("seller", "seller"),
            ("orders", "orders"),
            ("amount_minor", "amount"),
        ],
    ));
    html.push_str(&table(
        "Numbers per range",
        &report.numbers_by_range,
        &[
            ("type", "range"),
            ("start", "from"),
            ("end", "to"),
            ("total", "total"),
            ("sold", "sold"),
            ("voided", "voided"),
            ("unsold", "unsold"),
        ],
    ));
    html.push_str(&table(
        "Numbers per allocation",
        &report.numbers_by_allocation,
        &[
            ("allocation_id", "allocation"),
            ("state", "state"),
            ("start", "from"),
            ("end", "to"),
            ("sold", "sold"),
            ("voided", "voided"),
            ("unsold", "unsold"),
        ],
    ));
    html.push_str(&table(
        "Money per RSU",
        &report.money_by_rsu,
        &[
            ("name", "RSU"),
            ("value_of_numbers_sold_minor", "value of numbers sold"),
            ("written_off_minor", "written off"),
            ("money_received_minor", "money received"),
        ],
    ));
    if !report.seal.is_null() {
        let s = &report.seal;
        html.push_str("<h2>Seal</h2><table>");
        for (label, key) in [
            ("gross sales", "gross_sales_minor"),
            ("refunds and voids", "refunds_minor"),
            ("written off", "written_off_minor"),
            ("gross receipts", "gross_receipts_minor"),
            ("operating fee", "operating_fee_minor"),
            ("net proceeds", "net_proceeds_minor"),
        ] {
            html.push_str(&format!(
                "<tr><td>{label}</td><td>{}</td></tr>",
                money(s[key].as_i64().unwrap_or(0))
            ));
        }
        html.push_str("</table>");
        html.push_str(&table(
            "Prizes",
            &s["prizes"],
            &[("name", "prize"), ("amount_minor", "amount")],
        ));
        html.push_str(&format!(
            "<p>Ledger head {} · ticket set digest {} · draw seed commitment {}</p>",
            escape(s["head_hash"].as_str().unwrap_or("")),
            escape(s["ticket_set_digest"].as_str().unwrap_or("")),
            escape(s["seed_commitment"].as_str().unwrap_or(""))
        ));
    }
    if report.winners.as_array().is_some_and(|w| !w.is_empty()) {
        html.push_str(&table(
            "Winners",
            &report.winners,
            &[
                ("prize", "prize"),
                ("winner_index", "winner"),
                ("number", "number"),
                ("value_minor", "value"),
                ("status", "status"),
            ],
        ));
    }
    html.push_str(
        "<h2>Trial balance</h2><table><tr><th>account</th><th>balance (debit +)</th></tr>",
    );
    for (account, balance) in report.trial_balance["accounts"]
        .as_object()
        .into_iter()
        .flatten()
    {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(account),
            money(balance.as_i64().unwrap_or(0))
        ));
    }
    html.push_str(&format!(
        "<tr><th>sum</th><th>{}</th></tr></table>",
        money(report.trial_balance["sum_minor"].as_i64().unwrap_or(0))
    ));
    html.push_str("<h2>Checks</h2><table><tr><th>check</th><th>result</th><th>figures</th></tr>");
    for c in &report.checks {
        html.push_str(&format!(
            r#"<tr><td>{}</td><td class="{}">{}</td><td style="text-align:left;font-size:smaller">{}</td></tr>"#,
            escape(&c.name),
            if c.pass { "pass" } else { "fail" },
            if c.pass { "pass" } else { "FAIL" },
            escape(&c.figures.to_string())
        ));
    }
    html.push_str("</table></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn a_cell_a_spreadsheet_would_run_is_shown_as_text() {
        assert_eq!(
            csv_cell("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        for formula in ["+1+1", "-1+cmd|' /C calc'!A0", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(formula).starts_with("\"'"), "{formula:?}");
        }
        assert_eq!(csv_cell("-2000"), "-2000");
        assert_eq!(csv_cell("-20.50"), "-20.50");
        assert_eq!(csv_cell("seller-1"), "seller-1");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }
}
