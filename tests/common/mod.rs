//! Helpers shared by the end-to-end tests: producing to and waiting on the real stack.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use platform::testkit::TestEnv;
use rdkafka::producer::FutureRecord;

/// Produces `(key, payload)` records to one partition and waits for every acknowledgement.
pub async fn produce(env: &TestEnv, topic: &str, partition: i32, records: &[(String, Vec<u8>)]) {
    let producer = platform::kafka::producer(&env.brokers, 10_000).expect("producer");
    let sends = records.iter().map(|(key, payload)| {
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(topic)
                        .partition(partition)
                        .key(key)
                        .payload(payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
        }
    });
    // In order, one at a time per call keeps offsets in the order given.
    for send in sends {
        send.await.expect("broker acknowledged");
    }
}

/// Waits until the stored offset of (group, topic, partition) reaches `target`.
pub async fn wait_for_offset(env: &TestEnv, group: &str, topic: &str, partition: i32, target: i64) {
    let client = env.client().await;
    let started = Instant::now();
    loop {
        let row = client
            .query_opt(
                "SELECT next_offset FROM platform.consumer_offsets
                  WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
                &[&group, &topic, &partition],
            )
            .await
            .expect("query offsets");
        let offset: i64 = row.map(|r| r.get(0)).unwrap_or(0);
        if offset >= target {
            assert_eq!(offset, target, "consumed past the end of what was produced");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{group}/{topic}[{partition}] stuck at offset {offset}, expected {target}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a condition checked by `probe`, failing the test with `what` after 30 s.
pub async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !probe().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
