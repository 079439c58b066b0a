//! The HTML the public reads: the jackpot widget and the raffle's page. Self-contained (no
//! asset from elsewhere: inline style, one inline script allowed by its hash), readable on a
//! phone, and useful without the script (the values are in the HTML as served; the script
//! keeps them live from the stream and counts down the time left).

use std::sync::OnceLock;

use base64::Engine;
use schemas::text::html as escape;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::jackpot::Jackpot;

/// Keeps the jackpot block live: the raffle comes from the block's `data-raffle`, so the
/// script is the same on every page and its hash fixed.
const SCRIPT: &str = r#"(function () {
  var box = document.getElementById('jackpot');
  if (!box) { return; }
  var end = Date.parse(box.getAttribute('data-end'));
  function set(id, text) { var e = document.getElementById(id); if (e) { e.textContent = text; } }
  function left() {
    var s = Math.max(0, Math.floor((end - Date.now()) / 1000));
    set('left', s > 0 ? Math.floor(s / 3600) + ' h ' + Math.floor(s % 3600 / 60) + ' min ' + (s % 60) + ' s left' : 'sales have closed');
  }
  function show(j) {
    set('amount', j.jackpot);
    set('label', j.label);
    set('note', j.note);
    set('sold', j.tickets_sold.toLocaleString('en') + ' tickets sold');
    if (j.winning_numbers.length) {
      set('winners', 'Winning numbers: ' + j.winning_numbers.map(function (w) { return w.prize + ' ' + w.number; }).join(', '));
    }
    end = Date.parse(j.sales_end_time);
    box.setAttribute('data-version', j.version);
    left();
  }
  left();
  setInterval(left, 1000);
  var stream = new EventSource('/v1/raffles/' + box.getAttribute('data-raffle') + '/jackpot/stream');
  stream.addEventListener('jackpot', function (e) { show(JSON.parse(e.data)); });
})();"#;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;padding:1rem;color:#111;background:#fff}\
main{max-width:40rem;margin:auto}#jackpot{text-align:center;border:3px solid #0a5;border-radius:1rem;padding:1rem}\
#amount{font-size:clamp(2rem,10vw,4rem);font-weight:800;margin:.2em 0}#label{text-transform:uppercase;letter-spacing:.1em}\
.small{color:#444;font-size:.9rem}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem;border-bottom:1px solid #ddd}\
code{word-break:break-all;font-size:.8rem}";

/// The Content-Security-Policy of a page running [`SCRIPT`]: its own hash, its own stream,
/// inline style, nothing from elsewhere; framing allowed where `framed`.
pub fn policy(framed: bool) -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    let hash = HASH.get_or_init(|| {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT.as_bytes()))
    });
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; script-src 'sha256-{hash}'; frame-ancestors {}",
        if framed { "*" } else { "'none'" }
    )
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head>",
        escape(title)
    )
}

/// The live jackpot block, as served (the script keeps it live).
fn block(j: &Jackpot) -> String {
    let value = j.to_json();
    let s = |k: &str| escape(value[k].as_str().unwrap_or(""));
    let winners = if j.winners.is_empty() {
        String::new()
    } else {
        format!(
            "Winning numbers: {}",
            escape(
                &j.winners
                    .iter()
                    .map(|w| format!("{} {}", w["prize"].as_str().unwrap_or(""), w["number"]))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        )
    };
    format!(
        "<section id=\"jackpot\" data-raffle=\"{}\" data-end=\"{}\" data-version=\"{}\">\
         <div id=\"label\">{}</div><div id=\"amount\">{}</div><div id=\"note\" class=\"small\">{}</div>\
         <div id=\"sold\">{} tickets sold</div><div id=\"left\" class=\"small\"></div><div id=\"winners\">{winners}</div></section>",
        j.raffle_id,
        j.sales_end_time.to_rfc3339(),
        escape(&j.version),
        s("label"),
        s("jackpot"),
        s("note"),
        j.tickets_sold
    )
}

/// The embeddable widget: the jackpot block alone.
pub fn widget(j: &Jackpot) -> String {
    format!(
        "{}<body><main>{}</main><script>{SCRIPT}</script></body></html>",
        head(&format!("{} — jackpot", j.raffle)),
        block(j)
    )
}

fn money(minor: Option<i64>, currency: &str) -> String {
    minor
        .map(|m| format!("{} {currency}", schemas::amount_for_people(m)))
        .unwrap_or_default()
}

/// The raffle's public page from its public JSON and its jackpot.
pub fn raffle_page(public: &Value, j: &Jackpot) -> String {
    let rules = &public["rules"];
    let t = |v: &Value| escape(v.as_str().unwrap_or(""));
    let currency = rules["currency"].as_str().unwrap_or("");
    let mut html = head(rules["raffle"].as_str().unwrap_or("Raffle"));
    html.push_str("<body><main>");
    html.push_str(&format!(
        "<h1>{}</h1><p>{} · licence <b>{}</b></p>",
        t(&rules["raffle"]),
        t(&rules["organization"]),
        t(&rules["license_number"])
    ));
    html.push_str(&block(j));
    html.push_str(&format!(
        "<h2>Sales and draw</h2><p>Sales from {} to {}.<br>The draw: {}. Prizes must be claimed by {}.</p>",
        t(&rules["sales_start_time"]),
        t(&rules["sales_end_time"]),
        t(&rules["draw_time"]),
        t(&rules["claim_by"])
    ));
    html.push_str("<h2>Tickets</h2><table><tr><th>Package</th><th>Tickets</th><th>Price</th></tr>");
    for p in rules["packages"].as_array().into_iter().flatten() {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            t(&p["name"]),
            p["tickets"],
            escape(&money(p["price_minor"].as_i64(), currency))
        ));
    }
    html.push_str("</table><h2>Prizes</h2><ol>");
    for p in rules["prizes"].as_array().into_iter().flatten() {
        let value = if p["percentage"].is_null() {
            money(p["value_minor"].as_i64(), currency)
        } else {
            let percent = p["percentage"]
                .as_str()
                .map_or_else(|| p["percentage"].to_string(), str::to_owned);
            format!(
                "{percent}% of the {}",
                rules["revenue_basis"]
                    .as_str()
                    .unwrap_or("")
                    .replace('_', " ")
            )
        };
        html.push_str(&format!("<li>{} — {}</li>", t(&p["name"]), escape(&value)));
    }
    html.push_str(&format!(
        "</ol><p class=\"small\">Guaranteed minimum of the main prize: {}. {}.</p>",
        escape(&money(rules["guaranteed_minimum_minor"].as_i64(), currency)),
        t(&rules["draw"])
    ));
    if let Some(seal) = public["seal"].as_object() {
        html.push_str(&format!(
            "<h2>The sealed books</h2><p>Sealed {} with {} eligible tickets; gross receipts {}.</p>\
             <p class=\"small\">Ledger head hash <code>{}</code><br>Ticket-set digest <code>{}</code><br>\
             Seed commitment <code>{}</code></p>",
            t(&seal["sealed_at"]),
            seal["tickets_eligible"],
            escape(&money(seal["gross_receipts_minor"].as_i64(), currency)),
            t(&seal["ledger_head_hash"]),
            t(&seal["ticket_set_digest"]),
            t(&seal["seed_commitment"])
        ));
    }
    if let Some(draw) = public["draw"].as_object() {
        html.push_str("<h2>The winners</h2><ol>");
        for w in draw["winners"].as_array().into_iter().flatten() {
            html.push_str(&format!(
                "<li>{}: number <b>{}</b> ({})</li>",
                t(&w["prize"]),
                w["number"],
                escape(&money(w["value_minor"].as_i64(), currency))
            ));
        }
        html.push_str(&format!(
            "</ol><p class=\"small\">Drawn {}. Revealed seed <code>{}</code>. To re-check: {}.</p>",
            t(&draw["completed_at"]),
            t(&draw["seed"]),
            t(&draw["how_to_check"])
        ));
    }
    html.push_str(&format!(
        "<p class=\"small\">This page as data: <code>/v1/raffles/{}</code></p>",
        j.raffle_id
    ));
    html.push_str(&format!("</main><script>{SCRIPT}</script></body></html>"));
    html
}
