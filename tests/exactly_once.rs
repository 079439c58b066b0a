//! Exactly-once effects of the consumer plumbing, against the real broker and Postgres:
//! (a) a consumer killed in the middle of a batch and restarted applies every message once;
//! (b) two consumers on one partition never both commit, also when the owner is stale;
//! (c) a re-delivered message is a no-op;
//! and a record that cannot be decoded, or whose effects the database refuses, goes to the DLQ
//! without blocking its partition.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{eventually, produce, wait_for_offset};
use platform::consumer::{ConsumerStats, claim_event};
use platform::outbox::OutboxRelay;
use platform::testkit::TestEnv;
use platform::{
    BatchHandler, ConsumerConfig, Disposition, HandlerError, PartitionConsumer, Record,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, watch};
use tokio_postgres::Transaction;

const PARTITION: i32 = 3;

/// Applies `{"event_id", "amount"}` messages: one row per effect (no unique constraint, so a
/// duplicate effect would show) and a running total. Can hang mid-batch to simulate a crash.
struct EffectHandler {
    group: String,
    tag: String,
    applied: AtomicUsize,
    /// Hang forever after applying this many records (the task is then killed).
    crash_after: Option<usize>,
    /// After the first record, announce it and wait for the gate.
    gate: Option<Arc<Notify>>,
    reached: Arc<Notify>,
}

impl EffectHandler {
    fn new(group: &str, tag: &str) -> Self {
        Self {
            group: group.to_owned(),
            tag: tag.to_owned(),
            applied: AtomicUsize::new(0),
            crash_after: None,
            gate: None,
            reached: Arc::new(Notify::new()),
        }
    }
}

#[derive(serde::Deserialize)]
struct TestEvent {
    event_id: String,
    amount: i64,
}

impl BatchHandler for EffectHandler {
    async fn handle(
        &self,
        tx: &Transaction<'_>,
        batch: &[Record],
    ) -> Result<Vec<Disposition>, HandlerError> {
        let mut out = Vec::with_capacity(batch.len());
        for record in batch {
            let parsed = record
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_slice::<TestEvent>(p).ok());
            let Some(event) = parsed else {
                out.push(Disposition::dead(
                    "undecodable",
                    "payload is not a test event",
                ));
                continue;
            };
            if !claim_event(tx, &self.group, &event.event_id, record).await? {
                out.push(Disposition::Duplicate);
                continue;
            }
            tx.execute(
                "INSERT INTO test_effects (event_id, consumer, amount, kafka_offset) VALUES ($1, $2, $3, $4)",
                &[&event.event_id, &self.tag, &event.amount, &record.offset],
            )
            .await?;
            tx.execute(
                "UPDATE test_totals SET total = total + $1",
                &[&event.amount],
            )
            .await?;
            out.push(Disposition::Applied);
            let n = self.applied.fetch_add(1, Ordering::SeqCst) + 1;
            if Some(n) == self.crash_after {
                self.reached.notify_one();
                std::future::pending::<()>().await;
            }
            if let Some(gate) = &self.gate
                && n == 1
            {
                self.reached.notify_one();
                gate.notified().await;
            }
        }
        Ok(out)
    }
}

async fn prepare(env: &TestEnv) {
    env.client()
        .await
        .batch_execute(
            "CREATE TABLE test_effects (event_id text NOT NULL, consumer text NOT NULL,
                                        amount bigint NOT NULL CONSTRAINT amount_not_negative CHECK (amount >= 0),
                                        kafka_offset bigint NOT NULL);
             CREATE TABLE test_totals (total bigint NOT NULL);
             INSERT INTO test_totals VALUES (0);",
        )
        .await
        .expect("test tables");
}

fn events(range: std::ops::Range<i64>) -> Vec<(String, Vec<u8>)> {
    range
        .map(|i| {
            let payload = serde_json::json!({"event_id": format!("evt-{i}"), "amount": i});
            (format!("key-{i}"), payload.to_string().into_bytes())
        })
        .collect()
}

fn config(env: &TestEnv, group: &str, owner: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(
        &env.brokers,
        group,
        &env.topics.sales,
        PARTITION,
        &env.topics.dlq,
    );
    c.owner = owner.to_owned();
    c.batch_size_max = 50;
    c.linger_ms = 20;
    c.poll_ms = 100;
    c.lease_retry_ms = 50;
    c
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), platform::ConsumerError>>,
    stats: Arc<ConsumerStats>,
}

fn start(env: &TestEnv, config: ConsumerConfig, handler: Arc<EffectHandler>) -> Running {
    let consumer = PartitionConsumer::new(config, env.db.clone(), env.pool.clone());
    let stats = consumer.stats();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(async move { consumer.run(handler.as_ref(), rx).await });
    Running { stop, task, stats }
}

impl Running {
    async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.task
            .await
            .expect("consumer task")
            .expect("consumer ran cleanly");
    }
}

/// (count of effect rows, distinct event ids, total amount)
async fn effects(env: &TestEnv) -> (i64, i64, i64) {
    let row = env
        .client()
        .await
        .query_one(
            "SELECT count(*), count(DISTINCT event_id), (SELECT total FROM test_totals) FROM test_effects",
            &[],
        )
        .await
        .expect("effects");
    (row.get(0), row.get(1), row.get(2))
}

fn sum(range: std::ops::Range<i64>) -> i64 {
    range.sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_and_restarted_applies_each_message_once() {
    let env = TestEnv::new().await;
    prepare(&env).await;
    let group = format!("{}-alloc", env.unique);
    produce(&env, &env.topics.sales, PARTITION, &events(0..200)).await;

    // First life: dies after 120 effects, i.e. two committed batches of 50 and 20 records
    // into the third, whose transaction is open when the process dies.
    let mut doomed = EffectHandler::new(&group, "first");
    doomed.crash_after = Some(120);
    let doomed = Arc::new(doomed);
    let reached = doomed.reached.clone();
    let first = start(&env, config(&env, &group, "first"), doomed.clone());
    tokio::time::timeout(Duration::from_secs(60), reached.notified())
        .await
        .expect("first consumer reached the crash point");
    first.task.abort();
    let _ = first.task.await;
    // Only whole batches survived the crash.
    let (rows, _, _) = effects(&env).await;
    assert_eq!(rows % 50, 0, "a partial batch was committed: {rows} rows");
    assert!(
        rows >= 100,
        "the batches before the crash were committed: {rows} rows"
    );
    assert!(rows < 200);

    // Second life: resumes from the stored offset and finishes.
    let second = start(
        &env,
        config(&env, &group, "second"),
        Arc::new(EffectHandler::new(&group, "second")),
    );
    wait_for_offset(&env, &group, &env.topics.sales, PARTITION, 200).await;
    let stats = second.stats.clone();
    second.shutdown().await;

    assert_eq!(
        effects(&env).await,
        (200, 200, sum(0..200)),
        "every effect exactly once"
    );
    assert_eq!(
        ConsumerStats::get(&stats.duplicates),
        0,
        "the restart resumed at the stored offset, not before it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_on_one_partition_never_both_commit() {
    let env = TestEnv::new().await;
    prepare(&env).await;
    let group = format!("{}-alloc", env.unique);
    let topic = env.topics.sales.clone();
    produce(&env, &topic, PARTITION, &events(0..100)).await;

    let a = start(
        &env,
        config(&env, &group, "A"),
        Arc::new(EffectHandler::new(&group, "A")),
    );
    let b = start(
        &env,
        config(&env, &group, "B"),
        Arc::new(EffectHandler::new(&group, "B")),
    );
    wait_for_offset(&env, &group, &topic, PARTITION, 100).await;
    let client = env.client().await;
    let workers: i64 = client
        .query_one("SELECT count(DISTINCT consumer) FROM test_effects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(workers, 1, "one lease holder did all the work");
    let a_leads = ConsumerStats::get(&a.stats.leases_taken) == 1;
    let b_leads = ConsumerStats::get(&b.stats.leases_taken) == 1;
    assert!(a_leads ^ b_leads, "exactly one consumer holds the lease");

    // The leader stops; the standby takes over where it left off.
    let (leader, standby, standby_tag) = if a_leads { (a, b, "B") } else { (b, a, "A") };
    leader.shutdown().await;
    produce(&env, &topic, PARTITION, &events(100..150)).await;
    wait_for_offset(&env, &group, &topic, PARTITION, 150).await;
    let by_standby: i64 = client
        .query_one(
            "SELECT count(*) FROM test_effects WHERE consumer = $1",
            &[&standby_tag],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(by_standby, 50);
    standby.shutdown().await;
    assert_eq!(effects(&env).await, (150, 150, sum(0..150)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_cannot_commit_after_its_lease_is_taken() {
    let env = TestEnv::new().await;
    prepare(&env).await;
    let group = format!("{}-alloc", env.unique);
    let topic = env.topics.sales.clone();
    produce(&env, &topic, PARTITION, &events(0..80)).await;

    // A takes the lease and stalls inside its first batch (a long GC pause, a frozen VM).
    let gate = Arc::new(Notify::new());
    let mut stalled = EffectHandler::new(&group, "A");
    stalled.gate = Some(gate.clone());
    let stalled = Arc::new(stalled);
    let reached = stalled.reached.clone();
    let a = start(&env, config(&env, &group, "A"), stalled);
    tokio::time::timeout(Duration::from_secs(60), reached.notified())
        .await
        .expect("A is inside its first batch");
    let b = start(
        &env,
        config(&env, &group, "B"),
        Arc::new(EffectHandler::new(&group, "B")),
    );

    // A's lease connection dies (network partition): the lock is free and B takes over.
    let client = env.client().await;
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name LIKE 'raffle-lease A %'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "A's lease connection found");
    eventually("B to take the lease", || {
        let stats = b.stats.clone();
        async move { ConsumerStats::get(&stats.leases_taken) == 1 }
    })
    .await;
    let epoch: i64 = client
        .query_one(
            "SELECT lease_epoch FROM platform.consumer_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
            &[&group, &topic, &PARTITION],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(epoch, 2, "B's takeover fenced out epoch 1");

    // A wakes up and tries to commit its batch: refused, rolled back.
    gate.notify_one();
    wait_for_offset(&env, &group, &topic, PARTITION, 80).await;
    eventually("A to notice its lease is gone", || {
        let stats = a.stats.clone();
        async move { ConsumerStats::get(&stats.leases_lost) == 1 }
    })
    .await;
    assert_eq!(ConsumerStats::get(&a.stats.batches), 0, "A never committed");
    let by_a: i64 = client
        .query_one(
            "SELECT count(*) FROM test_effects WHERE consumer = 'A'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(by_a, 0, "none of A's effects survived");
    assert_eq!(effects(&env).await, (80, 80, sum(0..80)));
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_is_a_no_op() {
    let env = TestEnv::new().await;
    prepare(&env).await;
    let group = format!("{}-ledger", env.unique);
    let topic = env.topics.sales.clone();
    // Every event twice (a producer retry, a provider re-sending its webhook), interleaved.
    let once = events(0..60);
    let mut twice = Vec::new();
    for chunk in once.chunks(10) {
        twice.extend_from_slice(chunk);
        twice.extend_from_slice(chunk);
    }
    produce(&env, &topic, PARTITION, &twice).await;
    let first = start(
        &env,
        config(&env, &group, "first"),
        Arc::new(EffectHandler::new(&group, "first")),
    );
    wait_for_offset(&env, &group, &topic, PARTITION, 120).await;
    assert_eq!(ConsumerStats::get(&first.stats.applied), 60);
    assert_eq!(ConsumerStats::get(&first.stats.duplicates), 60);
    first.shutdown().await;

    // Days later, the same events once more, read by a new instance.
    produce(&env, &topic, PARTITION, &once[..20]).await;
    let second = start(
        &env,
        config(&env, &group, "second"),
        Arc::new(EffectHandler::new(&group, "second")),
    );
    wait_for_offset(&env, &group, &topic, PARTITION, 140).await;
    assert_eq!(
        ConsumerStats::get(&second.stats.records),
        20,
        "resumed after the stored offset"
    );
    assert_eq!(ConsumerStats::get(&second.stats.applied), 0);
    second.shutdown().await;
    assert_eq!(effects(&env).await, (60, 60, sum(0..60)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_goes_to_the_dlq_and_the_partition_moves_on() {
    let env = TestEnv::new().await;
    prepare(&env).await;
    let group = format!("{}-alloc", env.unique);
    let topic = env.topics.sales.clone();
    let mut records = events(0..5);
    records.insert(2, ("bad-key".into(), b"\x00\xffnot json".to_vec()));
    produce(&env, &topic, PARTITION, &records).await;
    let consumer = start(
        &env,
        config(&env, &group, "c"),
        Arc::new(EffectHandler::new(&group, "c")),
    );
    wait_for_offset(&env, &group, &topic, PARTITION, 6).await;
    assert_eq!(ConsumerStats::get(&consumer.stats.dead_letters), 1);
    consumer.shutdown().await;
    assert_eq!(
        effects(&env).await,
        (5, 5, sum(0..5)),
        "records after the bad one applied"
    );

    // The dead letter is in the outbox; the relay publishes it to the DLQ topic.
    let relay = OutboxRelay {
        db: env.db.clone(),
        pool: env.pool.clone(),
        producer: platform::kafka::producer(&env.brokers, 10_000).unwrap(),
        owner: "relay".into(),
        batch_size_max: 100,
        idle_ms: 20,
    };
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    assert_eq!(relay.relay_once().await.unwrap(), 0, "published once");

    let dlq: StreamConsumer = platform::kafka::base_config(&env.brokers)
        .set("group.id", format!("{}-dlq-reader", env.unique))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&env.topics.dlq, 0, Offset::Beginning)
        .unwrap();
    dlq.assign(&tpl).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
        .await
        .expect("a dead letter arrives")
        .unwrap();
    assert_eq!(
        message.key(),
        Some(&b"bad-key"[..]),
        "keyed by the original key"
    );
    let header = message
        .headers()
        .and_then(|h| {
            h.iter()
                .find(|h| h.key == "dlq.reason")
                .and_then(|h| h.value)
        })
        .map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(header.as_deref(), Some("payload is not a test event"));
    let letter: schemas::DeadLetter = schemas::decode(message.payload().unwrap()).unwrap();
    assert_eq!(letter.topic, topic);
    assert_eq!((letter.partition, letter.offset), (PARTITION, 2));
    assert_eq!(
        letter.value.as_deref(),
        Some(&b"\x00\xffnot json"[..]),
        "original bytes kept whole"
    );
    assert_eq!(letter.error_kind, "undecodable");
    assert_eq!(letter.consumer_group, group);
}

/// A record whose effects the database refuses (a negative amount against a CHECK) is found by
/// retrying its batch in halves; it goes to the DLQ with the database's reason, and every
/// record around it is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_database_refuses_goes_to_the_dlq_and_the_rest_is_applied() {
    let env = TestEnv::new().await;
    prepare(&env).await;
    let group = format!("{}-alloc", env.unique);
    let topic = env.topics.sales.clone();
    let mut records = events(0..40);
    let poison = serde_json::json!({"event_id": "evt-poison", "amount": -5});
    records.insert(23, ("poison-key".into(), poison.to_string().into_bytes()));
    produce(&env, &topic, PARTITION, &records).await;
    let consumer = start(
        &env,
        config(&env, &group, "c"),
        Arc::new(EffectHandler::new(&group, "c")),
    );
    wait_for_offset(&env, &group, &topic, PARTITION, 41).await;
    assert_eq!(ConsumerStats::get(&consumer.stats.dead_letters), 1);
    consumer.shutdown().await;
    assert_eq!(
        effects(&env).await,
        (40, 40, sum(0..40)),
        "every other record applied, once"
    );
    let row = env
        .client()
        .await
        .query_one(
            "SELECT headers->>'dlq.error_kind', headers->>'dlq.reason', headers->>'dlq.offset', message_key
               FROM platform.outbox WHERE topic = $1",
            &[&env.topics.dlq],
        )
        .await
        .expect("one dead letter");
    let (kind, reason, offset, key): (String, String, String, Vec<u8>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(kind, "refused_by_database");
    assert!(reason.contains("amount_not_negative"), "{reason}");
    assert_eq!(offset, "23");
    assert_eq!(key, b"poison-key");
}
