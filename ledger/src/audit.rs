//! The audit export: files an auditor can take away — every journal entry with its postings and
//! hashes, the organisation's critical events, the seal, the draw evidence, and a manifest of
//! the files' SHA-256 — and the verification that works from those files alone.

use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::Account;
use crate::verify::{ChainEntry, Verification, check_chain, load_entries};

const FILES: [&str; 4] = [
    "entries.jsonl",
    "critical_events.jsonl",
    "seal.json",
    "draw.json",
];

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit export: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("audit files in {dir}: {reason}")]
    Files { dir: String, reason: String },
}

fn files_err(dir: &Path, reason: impl std::fmt::Display) -> AuditError {
    AuditError::Files {
        dir: dir.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Writes the export of `raffle_id` into `dir` (created if missing); returns the manifest.
pub async fn export(
    client: &impl GenericClient,
    raffle_id: Uuid,
    dir: &Path,
    software: &str,
) -> Result<Value, AuditError> {
    platform::files::private_dir(dir).map_err(|e| files_err(dir, e))?;
    let entries = load_entries(client, raffle_id).await?;
    let mut lines = String::new();
    for e in &entries {
        lines.push_str(&serde_json::to_string(e).map_err(|e| files_err(dir, e))?);
        lines.push('\n');
    }
    let events = client
        .query(
            "SELECT to_jsonb(e) FROM audit.critical_events e
              WHERE e.organization_id = (SELECT organization_id FROM catalog.raffle_events WHERE id = $1)
              ORDER BY e.sequence_number",
            &[&raffle_id],
        )
        .await?;
    let mut event_lines = String::new();
    for row in &events {
        event_lines.push_str(&row.get::<_, Value>(0).to_string());
        event_lines.push('\n');
    }
    let seal: Value = client
        .query_opt(
            "SELECT to_jsonb(s) || jsonb_build_object('head_hash', encode(s.head_hash, 'hex'),
                    'ticket_set_digest', encode(s.ticket_set_digest, 'hex'), 'seed_commitment', encode(s.seed_commitment, 'hex'))
               FROM ledger.seals s WHERE raffle_id = $1",
            &[&raffle_id],
        )
        .await?
        .map(|r| r.get(0))
        .unwrap_or(Value::Null);
    // The seed is evidence only once revealed: a pending draw's seed stays out of the export.
    let draw: Value = client
        .query_one(
            "SELECT jsonb_build_object(
                 'executions', coalesce((SELECT jsonb_agg(to_jsonb(d) - 'rng_seed' - 'rng_seed_commitment'
                        || jsonb_build_object('rng_seed_commitment', encode(d.rng_seed_commitment, 'hex'),
                                              'rng_seed', CASE WHEN d.state = 'completed' THEN encode(d.rng_seed, 'hex') END))
                     FROM draw.draw_executions d WHERE d.raffle_event_id = $1), '[]'::jsonb),
                 'results', coalesce((SELECT jsonb_agg(to_jsonb(r)) FROM draw.draw_results r
                     JOIN draw.draw_executions d ON d.id = r.draw_execution_id WHERE d.raffle_event_id = $1), '[]'::jsonb),
                 'claims', coalesce((SELECT jsonb_agg(to_jsonb(c) ORDER BY c.claimed_at) FROM draw.prize_claims c
                     JOIN draw.draw_results r ON r.id = c.draw_result_id
                     JOIN draw.draw_executions d ON d.id = r.draw_execution_id WHERE d.raffle_event_id = $1), '[]'::jsonb),
                 'unclaimed', coalesce((SELECT jsonb_agg(to_jsonb(u)) FROM draw.unclaimed_prizes u
                     JOIN draw.draw_results r ON r.id = u.draw_result_id
                     JOIN draw.draw_executions d ON d.id = r.draw_execution_id WHERE d.raffle_event_id = $1), '[]'::jsonb),
                 'claim_attempts', coalesce((SELECT jsonb_agg(to_jsonb(a) ORDER BY a.attempted_at) FROM draw.claim_attempts a
                     WHERE a.raffle_id = $1), '[]'::jsonb))",
            &[&raffle_id],
        )
        .await?
        .get(0);
    let contents = [
        lines,
        event_lines,
        serde_json::to_string_pretty(&seal).unwrap_or_default(),
        serde_json::to_string_pretty(&draw).unwrap_or_default(),
    ];
    let mut digests = serde_json::Map::new();
    for (name, text) in FILES.iter().zip(&contents) {
        platform::files::write_private(&dir.join(name), text.as_bytes())
            .map_err(|e| files_err(dir, e))?;
        digests.insert(
            (*name).to_owned(),
            json!(hex::encode(Sha256::digest(text.as_bytes()))),
        );
    }
    let manifest = json!({
        "raffle_id": raffle_id,
        "exported_at": chrono::Utc::now(),
        "software": software,
        "entries": entries.len(),
        "files_sha256": digests,
    });
    platform::files::write_private(
        &dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(|e| files_err(dir, e))?;
    Ok(manifest)
}

/// What verifying an export found.
#[derive(Debug, Clone, Serialize)]
pub struct ExportVerification {
    pub raffle_id: Uuid,
    /// Files whose SHA-256 no longer matches the manifest.
    pub changed_files: Vec<String>,
    pub chain: Verification,
    /// Seal figures that the exported entries do not support: (field, sealed, recomputed).
    pub seal_mismatches: Vec<(String, String, String)>,
}

impl ExportVerification {
    pub fn ok(&self) -> bool {
        self.changed_files.is_empty() && self.chain.ok() && self.seal_mismatches.is_empty()
    }
}

/// Sums of the seal's figures over the entries up to `sequence`, from the postings alone.
fn seal_totals(entries: &[ChainEntry], sequence: i64) -> [(&'static str, i64); 6] {
    let sum = |entry_type: &str, code: &str, sign: i64| -> i64 {
        entries
            .iter()
            .filter(|e| e.sequence <= sequence && e.entry_type == entry_type)
            .flat_map(|e| e.postings.iter())
            .filter(|(c, _)| c == code)
            .map(|(_, amount)| sign * amount)
            .sum()
    };
    [
        (
            "gross_sales_minor",
            sum("ticket_sale", &Account::GrossTicketRevenue.code(), -1),
        ),
        (
            "refunds_minor",
            sum("ticket_reversal", &Account::RefundsAndVoids.code(), 1),
        ),
        (
            "written_off_minor",
            sum(
                "written_off_receipts",
                &Account::GrossTicketRevenue.code(),
                -1,
            ),
        ),
        (
            "operating_fee_minor",
            sum(
                "prize_and_fee_allocation",
                &Account::OperatingFeeExpense.code(),
                1,
            ),
        ),
        (
            "net_proceeds_minor",
            sum("close_to_net_proceeds", &Account::NetProceeds.code(), -1),
        ),
        (
            "refunds_owed_minor",
            -entries
                .iter()
                .filter(|e| e.sequence <= sequence)
                .flat_map(|e| e.postings.iter())
                .filter(|(c, _)| *c == Account::RefundsPayable.code())
                .map(|(_, amount)| amount)
                .sum::<i64>(),
        ),
    ]
}

/// Verifies an export from its files alone: the manifest's digests, the chain, the seal.
pub fn verify_export(dir: &Path) -> Result<ExportVerification, AuditError> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| files_err(dir, format!("{name}: {e}")))
    };
    let manifest: Value = serde_json::from_str(&read("manifest.json")?)
        .map_err(|e| files_err(dir, format!("manifest.json: {e}")))?;
    let raffle_id: Uuid = manifest["raffle_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| files_err(dir, "manifest.json names no raffle"))?;
    let mut changed_files = Vec::new();
    for name in FILES {
        let text = read(name)?;
        if manifest["files_sha256"][name].as_str()
            != Some(hex::encode(Sha256::digest(text.as_bytes())).as_str())
        {
            changed_files.push(name.to_owned());
        }
    }
    let mut entries = Vec::new();
    for (i, line) in read("entries.jsonl")?.lines().enumerate() {
        entries.push(
            serde_json::from_str::<ChainEntry>(line)
                .map_err(|e| files_err(dir, format!("entries.jsonl line {}: {e}", i + 1)))?,
        );
    }
    let chain = check_chain(raffle_id, &entries);
    let mut seal_mismatches = Vec::new();
    let seal: Value = serde_json::from_str(&read("seal.json")?)
        .map_err(|e| files_err(dir, format!("seal.json: {e}")))?;
    if !seal.is_null() {
        let sequence = seal["entries"].as_i64().unwrap_or(0);
        let head = entries
            .iter()
            .find(|e| e.sequence == sequence)
            .map(|e| e.hash.clone())
            .unwrap_or_default();
        if seal["head_hash"].as_str() != Some(head.as_str()) {
            seal_mismatches.push(("head_hash".into(), seal["head_hash"].to_string(), head));
        }
        let totals = seal_totals(&entries, sequence);
        for (field, recomputed) in totals {
            if seal[field].as_i64() != Some(recomputed) {
                seal_mismatches.push((
                    field.into(),
                    seal[field].to_string(),
                    recomputed.to_string(),
                ));
            }
        }
        let receipts = totals[0].1 + totals[2].1 - totals[1].1;
        if seal["gross_receipts_minor"].as_i64() != Some(receipts) {
            seal_mismatches.push((
                "gross_receipts_minor".into(),
                seal["gross_receipts_minor"].to_string(),
                receipts.to_string(),
            ));
        }
    }
    Ok(ExportVerification {
        raffle_id,
        changed_files,
        chain,
        seal_mismatches,
    })
}
