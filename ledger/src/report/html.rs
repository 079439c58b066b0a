//! The report as a printable HTML page, with a chart of sales over time.

use schemas::amount_for_people as money;
use serde::Serialize;
use serde_json::Value;

use super::{HourSales, RaffleLine, Report};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table<T: Serialize>(title: &str, rows: &[T], columns: &[(&str, &str)]) -> String {
    // The report's own rows, plain data: serialising cannot fail.
    let rows = serde_json::to_value(rows).unwrap_or(Value::Null);
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
fn chart(sales_by_hour: &[HourSales]) -> String {
    let points: Vec<(String, i64)> = sales_by_hour
        .iter()
        .map(|p| (p.hour.chars().take(13).collect(), p.tickets))
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
    let r = report.raffle.as_ref();
    let field = |f: fn(&RaffleLine) -> String| r.map(f).unwrap_or_default();
    let name = r.map_or("raffle", |r| r.name.as_str());
    let mut html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Reconciliation — {name}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:0.5em 0 1.5em}}
td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}th{{background:#eee}}td:first-child,th:first-child{{text-align:left}}
.pass{{color:#1a7f37}}.fail{{color:#c62828;font-weight:bold}}@media print{{body{{margin:0}}}}</style></head><body>
<h1>Reconciliation — {name}</h1>
<p>{} · licence {} · {} · venue {}</p>
<p>{} · {} · state {} · currency {} · sales {} to {} · draw {} ({})</p>
<p>Generated {} by {}</p>"#,
        escape(&field(|r| r.organization.clone())),
        escape(&field(|r| r
            .license_number
            .clone()
            .unwrap_or_else(|| "none recorded".into()))),
        escape(&field(|r| r.jurisdiction.clone())),
        escape(&field(|r| r.venue.clone())),
        escape(&field(|r| r.event_identifier.clone())),
        escape(&field(|r| r.id.to_string())),
        escape(&field(|r| r.state.clone())),
        escape(&field(|r| r.currency.clone())),
        escape(&field(|r| r.sales_start_local.clone())),
        escape(&field(|r| r.sales_end_local.clone())),
        escape(&field(|r| r.draw_time_local.clone())),
        escape(&field(|r| r.timezone.clone())),
        escape(&report.generated_at),
        escape(&report.software),
        name = escape(name),
    );
    let failing = report.checks.iter().filter(|c| !c.pass).count();
    html.push_str(&format!(
        r#"<p class="{}"><strong>{} of {} checks pass.</strong></p>"#,
        if failing == 0 { "pass" } else { "fail" },
        report.checks.len() - failing,
        report.checks.len()
    ));
    html.push_str(&match &report.confirmation {
        Some(c) => format!(
            r#"<p class="{}">Confirmed by finance: {} at {} (report sha256 {}){}</p>"#,
            if c.still_matches { "pass" } else { "fail" },
            escape(&c.confirmed_by),
            escape(&c.confirmed_at),
            escape(&c.report_sha256),
            if c.still_matches {
                ""
            } else {
                "; the books have changed since: this report is not the one confirmed"
            }
        ),
        None => "<p>Not yet confirmed by finance.</p>".to_owned(),
    });
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
            ("counted_minor", "cash counted"),
            ("over_short_minor", "over / short"),
            ("uncounted_minor", "not counted"),
        ],
    ));
    html.push_str(&table(
        "Refunds of payments that could not be honoured",
        &report.refunds,
        &[
            ("state", "state"),
            ("count", "refunds"),
            ("amount_minor", "amount"),
        ],
    ));
    if let Some(s) = &report.seal {
        html.push_str("<h2>Seal</h2><table>");
        for (label, amount) in [
            ("gross sales", s.gross_sales_minor),
            ("refunds and voids", s.refunds_minor),
            ("written off", s.written_off_minor),
            ("gross receipts", s.gross_receipts_minor),
            ("operating fee", s.operating_fee_minor),
            ("net proceeds", s.net_proceeds_minor),
        ] {
            html.push_str(&format!(
                "<tr><td>{label}</td><td>{}</td></tr>",
                money(amount)
            ));
        }
        html.push_str(&format!(
            "<tr><td>refunds still owed at the seal</td><td>{} ({} refunds)</td></tr>",
            money(s.refunds_owed_minor),
            s.refunds_owed_count
        ));
        html.push_str("</table>");
        html.push_str(&table(
            "Prizes",
            &s.prizes,
            &[("name", "prize"), ("amount_minor", "amount")],
        ));
        html.push_str(&format!(
            "<p>Ledger head {} · ticket set digest {} · draw seed commitment {}</p>",
            escape(&s.head_hash),
            escape(&s.ticket_set_digest),
            escape(&s.seed_commitment)
        ));
    }
    if !report.winners.is_empty() {
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
    for (account, balance) in &report.trial_balance.accounts {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(account),
            money(*balance)
        ));
    }
    html.push_str(&format!(
        "<tr><th>sum</th><th>{}</th></tr></table>",
        money(report.trial_balance.sum_minor)
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
