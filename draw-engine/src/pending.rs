//! The draw's pending execution, created at the seal in the seal's transaction with the seed
//! it committed to: the draw engine keeps the seed (wrapped when a key is configured) until the
//! draw reveals it.

use futures::future::BoxFuture;
use ledger::{SealedSeed, SeedKeeper};

/// Keeps the seed as a pending RNG execution of the raffle's draw.
pub struct PendingExecution;

/// What the seal is given (`SealRequest::seed_keeper`).
pub static SEED_KEEPER: PendingExecution = PendingExecution;

impl SeedKeeper for PendingExecution {
    fn keep<'a>(
        &'a self,
        tx: &'a tokio_postgres::Transaction<'_>,
        seed: SealedSeed<'a>,
    ) -> BoxFuture<'a, Result<(), tokio_postgres::Error>> {
        Box::pin(async move {
            tx.execute(
                "INSERT INTO draw.draw_executions (raffle_event_id, method, state, rng_seed_commitment, rng_seed, rng_seed_wrapped, conducted_by)
                 VALUES ($1, 'rng', 'pending', $2, $3, $4, $5)",
                &[
                    &seed.raffle_id,
                    &seed.commitment.to_vec(),
                    &seed.stored.to_vec(),
                    &seed.wrapped,
                    &seed.sealed_by,
                ],
            )
            .await?;
            Ok(())
        })
    }
}
