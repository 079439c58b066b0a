//! A consumer service: one [`PartitionConsumer`] per partition of its topic (each waits for
//! its lease, so several instances share the work) and, for the service that has one, the
//! outbox relay, run side by side until shutdown.
//!
//! Each consumer rides out faults by itself (see [`crate::consumer`]). When one cannot — a
//! fatal handler error, trouble past its give-up time, a panic — the service does not carry on
//! with that partition silently dead: it stops every other task and returns the error, so the
//! process exits non-zero and its supervisor starts it again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::consumer::PartitionConsumer;
use crate::consumer::{BatchHandler, ConsumerConfig, ConsumerError, ConsumerStats};
use crate::db::DbTarget;
use crate::lease::LeaseKey;
use crate::outbox::OutboxRelay;

/// How long the relay gets to finish its batch once the consumers have stopped.
const RELAY_STOP_WAIT: Duration = Duration::from_secs(5);

/// Work that runs beside the consumers until shutdown (a sweeper, say).
type Task =
    Box<dyn FnOnce(watch::Receiver<bool>) -> futures::future::BoxFuture<'static, ()> + Send>;

pub struct ConsumerService<H> {
    consumers: Vec<PartitionConsumer>,
    handler: Arc<H>,
    relay: Option<OutboxRelay>,
    tasks: Vec<Task>,
}

impl<H: BatchHandler + 'static> ConsumerService<H> {
    /// A consumer for each of `configs`, all applying `handler`.
    pub fn new(db: &DbTarget, pool: &Pool, configs: Vec<ConsumerConfig>, handler: H) -> Self {
        let consumers = configs
            .into_iter()
            .map(|config| PartitionConsumer::new(config, db.clone(), pool.clone()))
            .collect();
        Self {
            consumers,
            handler: Arc::new(handler),
            relay: None,
            tasks: Vec::new(),
        }
    }

    /// Also runs `task` (given the shutdown watch) beside the consumers; it is stopped with
    /// them.
    pub fn with_task<F, Fut>(mut self, task: F) -> Self
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(Box::new(move |stop| Box::pin(task(stop))));
        self
    }

    /// Also runs the outbox relay.
    pub fn with_relay(mut self, relay: OutboxRelay) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Each consumer's counters, in partition order.
    pub fn stats(&self) -> Vec<Arc<ConsumerStats>> {
        self.consumers
            .iter()
            .map(PartitionConsumer::stats)
            .collect()
    }

    /// The leases the service's consumers take, in partition order.
    pub fn leases(&self) -> Vec<LeaseKey> {
        self.consumers
            .iter()
            .map(PartitionConsumer::lease_key)
            .collect()
    }

    /// Runs until `shutdown` turns true (every task then ends cleanly) or until one consumer
    /// fails in a way it cannot recover from (every task is stopped, the error returned).
    pub async fn run(
        self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Vec<Arc<ConsumerStats>>, ConsumerError> {
        let stats = self.stats();
        let (stop, stopping) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut leases = HashMap::new();
        for consumer in self.consumers {
            let (handler, stopping) = (self.handler.clone(), stopping.clone());
            let lease = consumer.lease_key();
            let id = tasks
                .spawn(async move { consumer.run(handler.as_ref(), stopping).await })
                .id();
            leases.insert(id, lease);
        }
        let relay = self.relay.map(|relay| {
            let stopping = stopping.clone();
            tokio::spawn(async move { relay.run(stopping).await })
        });
        let sidecars: Vec<_> = self
            .tasks
            .into_iter()
            .map(|task| tokio::spawn(task(stopping.clone())))
            .collect();
        let mut first_error = None;
        loop {
            let joined = tokio::select! {
                joined = tasks.join_next_with_id() => joined,
                _ = shutdown.wait_for(|stop| *stop), if !*stop.borrow() => {
                    let _ = stop.send(true);
                    continue;
                }
            };
            let Some(joined) = joined else { break };
            let error = match joined {
                Ok((_, Ok(()))) => continue,
                Ok((_, Err(e))) => e,
                Err(e) => ConsumerError::Panicked {
                    lease: leases.get(&e.id()).cloned().unwrap_or_else(unknown_lease),
                    reason: e.to_string(),
                },
            };
            tracing::error!(error = %error, "partition consumer stopped; stopping the service so that it is restarted");
            let _ = stop.send(true);
            first_error.get_or_insert(error);
        }
        let _ = stop.send(true);
        if let Some(relay) = relay
            && tokio::time::timeout(RELAY_STOP_WAIT, relay).await.is_err()
        {
            tracing::warn!("the outbox relay did not stop in time");
        }
        for sidecar in sidecars {
            if tokio::time::timeout(RELAY_STOP_WAIT, sidecar)
                .await
                .is_err()
            {
                tracing::warn!("a task beside the consumers did not stop in time");
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }
}

fn unknown_lease() -> LeaseKey {
    LeaseKey {
        consumer_group: "?".into(),
        topic: "?".into(),
        partition: -1,
    }
}

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT) in a terminal, SIGTERM from a
/// supervisor (systemd, Kubernetes, `docker stop`).
pub async fn termination() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// A watch that turns true on [`termination`], for the services' run loops.
pub fn stop_on_termination() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        termination().await;
        tracing::info!("asked to stop; finishing the batches in flight");
        let _ = tx.send(true);
    });
    rx
}
