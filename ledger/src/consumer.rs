//! The ledger consumer of `raffle.tickets.v1`: one transaction per consumed batch, entries
//! chained per raffle in the order their events stand in the partition (the topic is keyed by
//! raffle, so one consumer owns each raffle's chain).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::Pool;
use platform::consumer::{ConsumerConfig, ConsumerStats};
use platform::db::DbTarget;
use platform::service::ConsumerService;
use platform::{BatchHandler, ConsumerError, Disposition, HandlerError, Record, TopicNames};
use schemas::{RefundSource, TicketEvent, TicketEventKind};
use tokio::sync::watch;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::chain::{EntryText, GENESIS};
use crate::postings::postings_for;

pub const CONSUMER_GROUP: &str = "ledger";

/// Posts ticket events; see the crate documentation.
pub struct Ledger;

struct Head {
    sequence: i64,
    hash: [u8; 32],
    changed: bool,
}

pub(crate) struct NewEntry {
    id: Uuid,
    raffle_id: Uuid,
    sequence: i64,
    entry_type: &'static str,
    event_id: Uuid,
    order_id: Option<Uuid>,
    description: String,
    currency: String,
    occurred_at: DateTime<Utc>,
    previous: [u8; 32],
    hash: [u8; 32],
    postings: Vec<(Uuid, i64)>,
}

fn hash_of(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if bytes.len() == 32 {
        out.copy_from_slice(bytes);
    }
    out
}

impl BatchHandler for Ledger {
    async fn handle(
        &self,
        tx: &Transaction<'_>,
        batch: &[Record],
    ) -> Result<Vec<Disposition>, HandlerError> {
        let mut events = Vec::with_capacity(batch.len());
        for record in batch {
            events.push(
                match record
                    .payload
                    .as_deref()
                    .map(schemas::decode::<TicketEvent>)
                {
                    Some(Ok(e)) => Ok(e),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("message has no value".to_owned()),
                },
            );
        }
        let ok: Vec<&TicketEvent> = events.iter().filter_map(|e| e.as_ref().ok()).collect();
        let raffle_ids: Vec<Uuid> = ok
            .iter()
            .map(|e| e.raffle_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let event_ids: Vec<Uuid> = ok.iter().map(|e| e.event_id).collect();
        // Only a void asks whether its order's sale was posted; an issue never does, so the
        // look-up (an index probe per order) is for the batch's voids alone.
        let order_ids: Vec<Uuid> = ok
            .iter()
            .filter(|e| e.kind == TicketEventKind::TicketsVoided)
            .filter_map(|e| e.order_id)
            .collect();

        // A rejection whose payment is owed back (the allocator owed it in the transaction
        // that wrote this event) books the money the provider holds for it.
        let rejected_sources: Vec<String> = ok
            .iter()
            .filter(|e| e.kind == TicketEventKind::SaleRejected)
            .map(|e| RefundSource::SaleEvent(e.sale_event_id).key())
            .collect();
        let refunds_owed: HashSet<Uuid> = if rejected_sources.is_empty() {
            HashSet::new()
        } else {
            tx.query(
                "SELECT source_key FROM refunds.obligations WHERE source_key = ANY($1)",
                &[&rejected_sources],
            )
            .await?
            .iter()
            .filter_map(|r| match RefundSource::parse(r.get(0)) {
                Some(RefundSource::SaleEvent(id)) => Some(id),
                _ => None,
            })
            .collect()
        };
        // A void of an order given back whole (its raffle cancelled, or refunded by staff): the
        // refunds crate booked the reversal as it owed the refund, so the void moves no more
        // money.
        let cancel_sources: Vec<String> = order_ids
            .iter()
            .flat_map(|o| RefundSource::whole_order(*o))
            .map(|s| s.key())
            .collect();
        let booked_by_cancellation: HashSet<Uuid> = if cancel_sources.is_empty() {
            HashSet::new()
        } else {
            tx.query(
                "SELECT source_key FROM refunds.obligations WHERE source_key = ANY($1)",
                &[&cancel_sources],
            )
            .await?
            .iter()
            .filter_map(|r| match RefundSource::parse(r.get(0)) {
                Some(RefundSource::CancelledOrder(id) | RefundSource::OrderRefund(id)) => Some(id),
                _ => None,
            })
            .collect()
        };
        let raffles: HashMap<Uuid, String> = tx
            .query(
                "SELECT id, state FROM catalog.raffle_events WHERE id = ANY($1)",
                &[&raffle_ids],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut posted: HashSet<Uuid> = tx
            .query(
                "SELECT event_id FROM ledger.journal_entries WHERE event_id = ANY($1)",
                &[&event_ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut issued: HashSet<Uuid> = tx
            .query(
                "SELECT order_id FROM ledger.journal_entries WHERE order_id = ANY($1) AND entry_type = 'ticket_sale'",
                &[&order_ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let known: Vec<Uuid> = raffle_ids
            .iter()
            .filter(|r| raffles.contains_key(r))
            .copied()
            .collect();
        tx.execute(
            "INSERT INTO ledger.chain_heads (raffle_id, sequence, hash) SELECT r, 0, $2 FROM unnest($1::uuid[]) r
             ON CONFLICT (raffle_id) DO NOTHING",
            &[&known, &GENESIS.to_vec()],
        )
        .await?;
        let mut heads: HashMap<Uuid, Head> = tx
            .query("SELECT raffle_id, sequence, hash FROM ledger.chain_heads WHERE raffle_id = ANY($1) ORDER BY raffle_id FOR UPDATE", &[&known])
            .await?
            .iter()
            .map(|r| (r.get(0), Head { sequence: r.get(1), hash: hash_of(r.get::<_, &[u8]>(2)), changed: false }))
            .collect();
        let mut accounts: HashMap<(Uuid, String, String), Uuid> = HashMap::new();
        let mut entries = Vec::new();
        let mut out = Vec::with_capacity(batch.len());
        for event in events {
            let event = match event {
                Ok(e) => e,
                Err(reason) => {
                    out.push(Disposition::dead("undecodable", reason));
                    continue;
                }
            };
            let Some(state) = raffles.get(&event.raffle_id) else {
                out.push(Disposition::dead(
                    "unknown_raffle",
                    format!("raffle {} does not exist", event.raffle_id),
                ));
                continue;
            };
            if posted.contains(&event.event_id) {
                out.push(Disposition::Duplicate);
                continue;
            }
            if event.kind == TicketEventKind::TicketsVoided
                && event
                    .order_id
                    .is_some_and(|o| booked_by_cancellation.contains(&o))
            {
                tracing::info!(raffle = %event.raffle_id, order = ?event.order_id, event = %event.event_id,
                               "void of an order given back whole: reversed when its refund was owed");
                posted.insert(event.event_id);
                out.push(Disposition::Applied);
                continue;
            }
            let was_issued = event.order_id.is_some_and(|o| issued.contains(&o));
            let owed = refunds_owed.contains(&event.sale_event_id);
            let Some((entry_type, postings)) = postings_for(&event, was_issued, owed) else {
                posted.insert(event.event_id);
                out.push(Disposition::Applied);
                continue;
            };
            // Refunds move clearing and refunds payable only, never the sealed revenue; a
            // cancelled raffle still takes the reversal of a sale refunded outside the platform.
            if entry_type != "refund_owed"
                && !matches!(state.as_str(), "draft" | "active" | "sales_closed")
                && !(state == "cancelled" && entry_type == "ticket_reversal")
            {
                out.push(Disposition::dead(
                    "raffle_sealed",
                    format!(
                        "raffle {} is {state}: a {entry_type} entry is not accepted (only draw, claim, refund and payout entries are)",
                        event.raffle_id
                    ),
                ));
                continue;
            }
            let total: i64 = postings.iter().map(|p| p.amount_minor).sum();
            assert_eq!(
                total, 0,
                "entry for event {} does not balance",
                event.event_id
            );
            let currency = event.currency.to_string();
            let mut resolved = Vec::with_capacity(postings.len());
            for p in &postings {
                let key = (event.raffle_id, p.code.clone(), currency.clone());
                let id = match accounts.get(&key) {
                    Some(id) => *id,
                    None => {
                        let id =
                            ensure_account(tx, event.raffle_id, &p.code, p.kind, &currency).await?;
                        accounts.insert(key, id);
                        id
                    }
                };
                resolved.push((id, p.amount_minor));
            }
            let head = heads.get_mut(&event.raffle_id).ok_or_else(|| {
                HandlerError::Fatal(format!("no chain head for raffle {}", event.raffle_id))
            })?;
            let sequence = head.sequence + 1;
            let text = EntryText {
                raffle_id: event.raffle_id,
                sequence,
                entry_type,
                event_id: event.event_id,
                order_id: event.order_id,
                currency: &currency,
                occurred_at_us: event.occurred_at_us,
                postings: postings
                    .iter()
                    .map(|p| (p.code.clone(), p.amount_minor))
                    .collect(),
            };
            let hash = text.hash(&head.hash);
            entries.push(NewEntry {
                id: Uuid::now_v7(),
                raffle_id: event.raffle_id,
                sequence,
                entry_type,
                event_id: event.event_id,
                order_id: event.order_id,
                description: format!(
                    "{entry_type} of order {}",
                    event.order_id.map(|o| o.to_string()).unwrap_or_default()
                ),
                currency,
                occurred_at: Utc
                    .timestamp_micros(event.occurred_at_us)
                    .single()
                    .unwrap_or_default(),
                previous: head.hash,
                hash,
                postings: resolved,
            });
            head.sequence = sequence;
            head.hash = hash;
            head.changed = true;
            posted.insert(event.event_id);
            if entry_type == "ticket_sale"
                && let Some(o) = event.order_id
            {
                issued.insert(o);
            }
            out.push(Disposition::Applied);
        }
        write(tx, &entries).await?;
        for (raffle, head) in heads.iter().filter(|(_, h)| h.changed) {
            tx.execute(
                "UPDATE ledger.chain_heads SET sequence = $2, hash = $3 WHERE raffle_id = $1",
                &[raffle, &head.sequence, &head.hash.to_vec()],
            )
            .await?;
        }
        Ok(out)
    }
}

pub(crate) async fn write(
    tx: &Transaction<'_>,
    entries: &[NewEntry],
) -> Result<(), tokio_postgres::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO ledger.journal_entries (id, raffle_id, sequence, entry_type, event_id, order_id, description, currency,
             occurred_at, previous_hash, hash)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::uuid[], $6::uuid[], $7::text[],
                              $8::text[], $9::timestamptz[], $10::bytea[], $11::bytea[])",
        &[
            &entries.iter().map(|e| e.id).collect::<Vec<_>>(),
            &entries.iter().map(|e| e.raffle_id).collect::<Vec<_>>(),
            &entries.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            &entries.iter().map(|e| e.entry_type).collect::<Vec<_>>(),
            &entries.iter().map(|e| e.event_id).collect::<Vec<_>>(),
            &entries.iter().map(|e| e.order_id).collect::<Vec<_>>(),
            &entries.iter().map(|e| e.description.clone()).collect::<Vec<_>>(),
            &entries.iter().map(|e| e.currency.clone()).collect::<Vec<_>>(),
            &entries.iter().map(|e| e.occurred_at).collect::<Vec<_>>(),
            &entries.iter().map(|e| e.previous.to_vec()).collect::<Vec<_>>(),
            &entries.iter().map(|e| e.hash.to_vec()).collect::<Vec<_>>(),
        ],
    )
    .await?;
    let (mut ids, mut raffles, mut accounts, mut amounts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for e in entries {
        for (account, amount) in &e.postings {
            ids.push(e.id);
            raffles.push(e.raffle_id);
            accounts.push(*account);
            amounts.push(*amount);
        }
    }
    tx.execute(
        "INSERT INTO ledger.postings (entry_id, raffle_id, account_id, amount_minor)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[])",
        &[&ids, &raffles, &accounts, &amounts],
    )
    .await?;
    Ok(())
}

/// The ledger service: a partition consumer for every partition of the tickets topic (each
/// waits for its lease, so several instances share the work).
pub fn service(
    db: &DbTarget,
    pool: &Pool,
    brokers: &str,
    topics: &TopicNames,
) -> ConsumerService<Ledger> {
    let configs = ConsumerConfig::each_partition(
        brokers,
        CONSUMER_GROUP,
        &topics.tickets,
        topics.tickets_partitions,
        &topics.dlq,
        // Entries are small and a raffle's chain is serial: larger batches spread the
        // per-batch work (look-ups, chain head, offsets, commit) over more entries.
        // 5,000 / 20 ms measured best of 2,000 / 10, 5,000 / 20 and 10,000 / 30
        // (docs/BENCHMARKS.md).
        |c| {
            c.batch_size_max = 5_000;
            c.linger_ms = 20;
        },
    );
    ConsumerService::new(db, pool, configs, Ledger)
}

/// Runs the ledger [`service`] until `shutdown` turns true; returns the consumers'
/// statistics, or the error of a consumer that could not recover.
pub async fn run(
    db: DbTarget,
    pool: Pool,
    brokers: &str,
    topics: &TopicNames,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<Arc<ConsumerStats>>, ConsumerError> {
    service(&db, &pool, brokers, topics).run(shutdown).await
}

/// The account `code` of the raffle in `currency`, created on first use.
pub(crate) async fn ensure_account(
    tx: &Transaction<'_>,
    raffle_id: Uuid,
    code: &str,
    kind: &str,
    currency: &str,
) -> Result<Uuid, tokio_postgres::Error> {
    Ok(tx
        .query_one(
            "INSERT INTO ledger.accounts (raffle_id, code, kind, currency) VALUES ($1, $2, $3, $4)
             ON CONFLICT (raffle_id, code, currency) DO UPDATE SET kind = ledger.accounts.kind
             RETURNING id",
            &[&raffle_id, &code, &kind, &currency],
        )
        .await?
        .get(0))
}

/// Appends one entry to the raffle's chain: the seal's and the draw's entries (the consumer
/// batches its own). Panics on postings that do not balance: a bug, never input.
pub async fn append(
    tx: &Transaction<'_>,
    raffle_id: Uuid,
    entry_type: &'static str,
    description: String,
    currency: &str,
    postings: &[crate::postings::Posting],
) -> Result<(), tokio_postgres::Error> {
    assert_eq!(
        postings.iter().map(|p| p.amount_minor).sum::<i64>(),
        0,
        "{entry_type} entry does not balance"
    );
    tx.execute(
        "INSERT INTO ledger.chain_heads (raffle_id, sequence, hash) VALUES ($1, 0, $2) ON CONFLICT (raffle_id) DO NOTHING",
        &[&raffle_id, &GENESIS.to_vec()],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT sequence, hash FROM ledger.chain_heads WHERE raffle_id = $1 FOR UPDATE",
            &[&raffle_id],
        )
        .await?;
    let (previous_sequence, previous): (i64, [u8; 32]) =
        (row.get(0), hash_of(row.get::<_, &[u8]>(1)));
    let mut resolved = Vec::with_capacity(postings.len());
    for p in postings {
        resolved.push((
            ensure_account(tx, raffle_id, &p.code, p.kind, currency).await?,
            p.amount_minor,
        ));
    }
    let event_id = Uuid::now_v7();
    let occurred_at = Utc::now();
    let sequence = previous_sequence + 1;
    let text = EntryText {
        raffle_id,
        sequence,
        entry_type,
        event_id,
        order_id: None,
        currency,
        occurred_at_us: occurred_at.timestamp_micros(),
        postings: postings
            .iter()
            .map(|p| (p.code.clone(), p.amount_minor))
            .collect(),
    };
    let hash = text.hash(&previous);
    let entry = NewEntry {
        id: Uuid::now_v7(),
        raffle_id,
        sequence,
        entry_type,
        event_id,
        order_id: None,
        description,
        currency: currency.to_owned(),
        // The hash covers microseconds, which is what Postgres keeps.
        occurred_at: Utc
            .timestamp_micros(occurred_at.timestamp_micros())
            .single()
            .unwrap_or(occurred_at),
        previous,
        hash,
        postings: resolved,
    };
    write(tx, std::slice::from_ref(&entry)).await?;
    tx.execute(
        "UPDATE ledger.chain_heads SET sequence = $2, hash = $3 WHERE raffle_id = $1",
        &[&raffle_id, &sequence, &hash.to_vec()],
    )
    .await?;
    Ok(())
}
