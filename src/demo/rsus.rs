//! The demo's RSUs: sales made at the gates, one device out of Wi-Fi range until later, a
//! sale voided before it synced, one dated before the sales window, and a repeated sync.

use std::net::SocketAddr;

use anyhow::bail;
use chrono::Utc;
use serde_json::{Value, json};

use super::DemoOptions;
use super::online::{Receipts, post_json};

/// Every RSU's sales, uploaded; returns how many were accepted.
pub(super) async fn sell(
    addr: SocketAddr,
    scenario: &scenario::seed::Scenario,
    options: &DemoOptions,
    receipts: &Receipts,
) -> anyhow::Result<usize> {
    let now = Utc::now();
    let mut uploaded = 0;
    let mut offline = Vec::new();
    for r in 0..options.rsus {
        let mut records: Vec<Value> = (0..options.rsu_sales)
            .map(|j| record(scenario, r, j, now - chrono::Duration::minutes(5), receipts))
            .collect();
        if r == 0 && records.len() > 3 {
            records[3]["voided"] = json!(true);
            eprintln!("  RSU-001: sale 3 voided at the device before it synced");
        }
        if r == options.rsus - 1 && options.rsus >= 2 {
            // A sale keyed in with a clock two days behind: before the sales window.
            records.push(record(
                scenario,
                r,
                options.rsu_sales,
                now - chrono::Duration::days(2),
                receipts,
            ));
            eprintln!(
                "  RSU-{:03}: one sale dated before the sales window (to be rejected)",
                r + 1
            );
        }
        if r == 1 && options.rsus >= 3 {
            eprintln!(
                "  RSU-002: out of Wi-Fi range; holds its {} sales until later",
                records.len()
            );
            offline = records;
            continue;
        }
        let results = upload(addr, scenario, r, &records).await?;
        uploaded += results.iter().filter(|x| x["status"] == "accepted").count();
        eprintln!(
            "  RSU-{:03}: uploaded {} records, {} accepted",
            r + 1,
            records.len(),
            results.iter().filter(|x| x["status"] == "accepted").count()
        );
    }
    if !offline.is_empty() {
        let results = upload(addr, scenario, 1, &offline).await?;
        let accepted = results.iter().filter(|x| x["status"] == "accepted").count();
        uploaded += accepted;
        eprintln!("  RSU-002: back in range, synced {accepted} offline sales");
        // A repeated sync changes nothing, even before the allocator has caught up.
        let again = upload(addr, scenario, 1, &offline).await?;
        eprintln!(
            "  RSU-002: synced the same sales again by mistake: {} of {} answered duplicate, nothing counted twice",
            again.iter().filter(|x| x["status"] == "duplicate").count(),
            offline.len()
        );
    }
    Ok(uploaded)
}

/// The `j`th sale of RSU `r`, its receipt kept for a winner's claim.
fn record(
    scenario: &scenario::seed::Scenario,
    r: usize,
    j: usize,
    made: chrono::DateTime<Utc>,
    receipts: &Receipts,
) -> Value {
    let sale = scenario::sales::rsu_sale(scenario, r, j, made, "demo-");
    receipts.keep(&sale.validation_number, &sale.check_code);
    sale.record
}

async fn upload(
    addr: SocketAddr,
    scenario: &scenario::seed::Scenario,
    r: usize,
    records: &[Value],
) -> anyhow::Result<Vec<Value>> {
    let (status, answer) = post_json(
        addr,
        "/v1/rsu/sales",
        Some(&scenario.rsus[r].api_key),
        &json!({"records": records}),
    )
    .await?;
    if status != 200 {
        bail!("RSU-{:03} upload answered {status}: {answer}", r + 1);
    }
    Ok(answer["results"].as_array().cloned().unwrap_or_default())
}
