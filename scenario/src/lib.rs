//! scenario: raffles and sales to run the real services against, for the demo, the benchmark
//! commands and the tests — never part of a service.
//!
//! Owns: a raffle on sale set up through the admin API with its own rules and audit trail
//! ([`seed`]), a sealed raffle of any size for the draw ([`fixture`]), and the `raffle bench`
//! commands with what they share ([`bench`]), and a stand-in for the payment provider's
//! Refunds API ([`stripe`]), which these machines cannot reach.
//!
//! Writes: nothing of its own. It acts through the services' APIs; the fixture alone writes
//! sales in bulk by SQL, into a raffle it created, where the allocator's per-sale path is not
//! what is being measured.

pub mod bench;
pub mod fixture;
pub mod sales;
pub mod seed;
pub mod stripe;

/// Seals the books as soon as the pipeline has drained: the seal refuses `in-flight` while a
/// consumer still has sales or ticket events to take, and is asked again every 100 ms until
/// `within` has passed. Any other refusal, or the last `in-flight` one, is returned.
pub async fn seal_when_drained(
    pool: &deadpool_postgres::Pool,
    brokers: &str,
    topics: &platform::TopicNames,
    request: &ledger::SealRequest,
    within: std::time::Duration,
) -> Result<ledger::SealRecord, ledger::SealError> {
    let deadline = std::time::Instant::now() + within;
    loop {
        match ledger::seal(pool, brokers, topics, request).await {
            Err(ledger::SealError::Refused {
                code: "in-flight",
                reason,
            }) if std::time::Instant::now() < deadline => {
                tracing::debug!(raffle_id = %request.raffle_id, %reason, "waiting for the pipeline to drain");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}
