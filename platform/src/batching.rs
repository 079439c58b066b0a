//! Requests taken in batches: while a few batches are in flight, requests queue; when one
//! finishes, the next batch takes everything queued. At low load a batch holds one request and
//! goes at once; under load each database round trip serves many.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

/// Runs until `requests` closes: waits for one of `in_flight` permits, takes the next request
/// and everything queued behind it (up to `max`), and hands the batch to `handle` on a task of
/// its own, which holds the permit until it is done.
pub async fn in_batches<R, F, Fut>(
    mut requests: mpsc::Receiver<R>,
    in_flight: usize,
    max: usize,
    handle: F,
) where
    R: Send + 'static,
    F: Fn(Vec<R>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = requests.recv().await {
        // Waiting for a permit is what lets the queue fill: take it all once one is free.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let work = handle(batch);
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
    }
}
