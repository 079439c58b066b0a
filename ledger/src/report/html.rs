//! The report as a printable HTML page, with a chart of sales over time.

use schemas::text::html as escape;

use super::{Cell, HourSales, RaffleLine, Report, Table, tables};

fn table(t: &Table) -> String {
    let mut html = format!("<h2>{}</h2><table><thead><tr>", escape(t.title));
    for c in &t.columns {
        html.push_str(&format!("<th>{}</th>", escape(c)));
    }
    html.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        html.push_str("<tr>");
        for cell in row {
            let class = match cell {
                Cell::Text(_) => "",
                Cell::Count(_) | Cell::Money(_) => r#" class="n""#,
            };
            html.push_str(&format!("<td{class}>{}</td>", escape(&cell.for_people())));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// Tickets sold per hour as an inline SVG bar chart on a time axis in the venue's time (no
/// script, prints as is): one bar per hour of the sales, empty hours as gaps, the hours
/// labelled at even steps, the peak marked.
fn chart(sales_by_hour: &[HourSales], timezone: &str) -> String {
    if sales_by_hour.iter().all(|h| h.tickets == 0) {
        return "<p>No sales yet.</p>".into();
    }
    let max = sales_by_hour
        .iter()
        .map(|p| p.tickets)
        .max()
        .unwrap_or(1)
        .max(1);
    let (left, width, height) = (48.0, 680.0, 180.0);
    let bar = width / sales_by_hour.len() as f64;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {} {}" width="100%" role="img" aria-label="tickets sold per hour, venue time">"#,
        left + width + 8.0,
        height + 44.0
    );
    // The value axis: zero and the peak.
    svg.push_str(&format!(
        r##"<line x1="{left}" y1="{height}" x2="{}" y2="{height}" stroke="#555"/><line x1="{left}" y1="0" x2="{left}" y2="{height}" stroke="#555"/><text x="{}" y="{height}" font-size="11" text-anchor="end">0</text><text x="{}" y="10" font-size="11" text-anchor="end">{max}</text>"##,
        left + width,
        left - 4.0,
        left - 4.0
    ));
    let every = sales_by_hour.len().div_ceil(8).max(1);
    for (i, h) in sales_by_hour.iter().enumerate() {
        let x = left + i as f64 * bar;
        if h.tickets > 0 {
            let bar_height = height * h.tickets as f64 / max as f64;
            svg.push_str(&format!(
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#3b6ea8"><title>{}: {} tickets</title></rect>"##,
                x + bar * 0.1,
                height - bar_height,
                (bar * 0.8).max(0.5),
                bar_height,
                escape(&h.local),
                h.tickets
            ));
        }
        if i % every == 0 {
            svg.push_str(&format!(
                r##"<line x1="{x:.1}" y1="{height}" x2="{x:.1}" y2="{}" stroke="#555"/><text x="{x:.1}" y="{}" font-size="10">{}</text>"##,
                height + 4.0,
                height + 16.0,
                escape(h.local.get(5..).unwrap_or(&h.local))
            ));
        }
    }
    svg.push_str(&format!(
        r#"<text x="{left}" y="{}" font-size="11">hours in {} · peak {max} tickets in an hour</text></svg>"#,
        height + 36.0,
        escape(timezone)
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
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}}
table{{border-collapse:collapse;margin:0.5em 0 1.5em;max-width:100%}}td,th{{border:1px solid #bbb;padding:4px 8px;text-align:left;vertical-align:top}}
th{{background:#eee}}td.n{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}td{{overflow-wrap:anywhere}}
.pass{{color:#1a7f37}}.fail{{color:#c62828;font-weight:bold}}
@page{{size:A4;margin:14mm}}
@media print{{body{{margin:0;max-width:none;font-size:10pt}}table{{width:100%;table-layout:auto;page-break-inside:auto}}
tr{{page-break-inside:avoid}}thead{{display:table-header-group}}h2{{page-break-after:avoid}}svg{{max-height:7cm}}}}</style></head><body>
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
    html.push_str(&chart(
        &report.sales_by_hour,
        &field(|r| r.timezone.clone()),
    ));
    for t in tables(report).iter().filter(|t| !t.csv_only) {
        html.push_str(&table(t));
    }
    html.push_str("</body></html>\n");
    html
}
