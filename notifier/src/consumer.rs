//! The notifier's consumer of `raffle.tickets.v1`: for each event about an order, the message
//! its buyer is owed, written in the batch transaction (so with the consumer's offsets) under a
//! key of what it is about. A redelivered event, a batch consumed again after a crash, and the
//! same order's events from two partitions' histories all meet that key and write nothing more.

use std::sync::Arc;

use deadpool_postgres::Pool;
use platform::consumer::{ConsumerConfig, ConsumerStats};
use platform::db::DbTarget;
use platform::service::ConsumerService;
use platform::{BatchHandler, ConsumerError, Disposition, HandlerError, Record, TopicNames};
use schemas::{TicketEvent, TicketEventKind};
use tokio::sync::watch;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::compose::About;
use crate::messages::{self, Kind, NewMessage};
use crate::sender::{self, SenderConfig};
use crate::settings::MailSettings;

pub const CONSUMER_GROUP: &str = "notifier";

/// Writes the messages ticket events owe; see the module documentation.
pub struct Notifier {
    pub settings: Arc<MailSettings>,
}

/// Why a refused sale's payment goes back: the allocator's reason is a sentence already.
fn rejection_for_people(reason: Option<&str>) -> String {
    reason
        .map(|r| r.trim().trim_end_matches('.').to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "the sale was refused".to_owned())
}

impl BatchHandler for Notifier {
    async fn handle(
        &self,
        tx: &Transaction<'_>,
        batch: &[Record],
    ) -> Result<Vec<Disposition>, HandlerError> {
        let mut dispositions = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        for record in batch {
            match record
                .payload
                .as_deref()
                .map(schemas::decode::<TicketEvent>)
            {
                Some(Ok(event)) => {
                    dispositions.push(Disposition::Applied);
                    events.push(event);
                }
                Some(Err(e)) => dispositions.push(Disposition::dead("decode", e.to_string())),
                None => dispositions.push(Disposition::dead("decode", "message has no value")),
            }
        }
        let orders: Vec<Uuid> = events.iter().filter_map(|e| e.order_id).collect();
        let facts = messages::facts(tx, &orders).await?;
        let mut owed = Vec::new();
        for event in &events {
            let Some(facts) = event.order_id.and_then(|o| facts.get(&o)) else {
                // A refusal of a sale that never became an order (no buyer to write to).
                continue;
            };
            let numbers: Vec<i64> = event.draw_numbers.iter().map(|n| n.get()).collect();
            let reason = event.reason.as_deref().unwrap_or("voided");
            let (kind, key, about) = match event.kind {
                TicketEventKind::TicketsIssued => (
                    Kind::TicketsIssued,
                    format!("issued:{}", facts.order_id),
                    About::Issued { numbers: &numbers },
                ),
                TicketEventKind::SaleRejected => {
                    let why = rejection_for_people(event.reason.as_deref());
                    owed.push(NewMessage::about(
                        facts,
                        Kind::SaleRejected,
                        format!("rejected:{}", facts.order_id),
                        &About::Rejected { reason: &why },
                        &self.settings,
                    ));
                    continue;
                }
                // A void that takes no tickets away gives money back: a partial refund.
                TicketEventKind::TicketsVoided if numbers.is_empty() => (
                    Kind::TicketsVoided,
                    format!("voided:{}", event.event_id),
                    About::Refunded {
                        amount_minor: event.amount_minor,
                    },
                ),
                TicketEventKind::TicketsVoided => (
                    Kind::TicketsVoided,
                    format!("voided:{}", event.event_id),
                    About::Voided {
                        numbers: &numbers,
                        reason,
                    },
                ),
            };
            owed.push(NewMessage::about(facts, kind, key, &about, &self.settings));
        }
        let written = messages::insert(tx, &owed, &self.settings).await?;
        tracing::debug!(events = events.len(), written, "notifier batch");
        Ok(dispositions)
    }
}

/// The notifier: a consumer per partition of `raffle.tickets.v1` writing the messages, and the
/// sender delivering them, side by side.
pub fn service(
    db: &DbTarget,
    pool: &Pool,
    brokers: &str,
    topics: &TopicNames,
    settings: Arc<MailSettings>,
    sender: SenderConfig,
) -> ConsumerService<Notifier> {
    let configs = ConsumerConfig::each_partition(
        brokers,
        CONSUMER_GROUP,
        &topics.tickets,
        topics.tickets_partitions,
        &topics.dlq,
        |c| {
            c.batch_size_max = 2_000;
            c.linger_ms = 20;
        },
    );
    let (sender_pool, sender_settings) = (pool.clone(), settings.clone());
    ConsumerService::new(db, pool, configs, Notifier { settings }).with_task(
        move |stop| async move {
            sender::run(sender_pool, sender_settings, sender, stop).await;
        },
    )
}

/// Runs the notifier [`service`] until `shutdown` turns true.
pub async fn run(
    db: DbTarget,
    pool: Pool,
    brokers: &str,
    topics: &TopicNames,
    settings: MailSettings,
    sender: SenderConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<Arc<ConsumerStats>>, ConsumerError> {
    service(&db, &pool, brokers, topics, Arc::new(settings), sender)
        .run(shutdown)
        .await
}
