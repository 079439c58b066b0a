//! The feed: the current jackpot of every raffle someone watches, held in memory and pushed
//! to every subscriber when it changes. A refresher reads the raffles' stamps (their tallies'
//! change count and their state: one indexed query for all of them) every
//! [`Feed::REFRESH`] and recomputes only the raffles whose stamp moved, so ten thousand screens
//! cost the database what one does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::Pool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::jackpot::{Jackpot, Stamp, stamps};

/// One published value: the jackpot, its JSON as sent, and its entity tag.
#[derive(Debug)]
pub struct Snapshot {
    pub jackpot: Jackpot,
    pub json: Bytes,
    pub etag: String,
}

impl Snapshot {
    fn of(jackpot: Jackpot) -> Arc<Self> {
        let json = Bytes::from(jackpot.to_json().to_string());
        let etag = format!("\"{}\"", jackpot.version);
        Arc::new(Self {
            jackpot,
            json,
            etag,
        })
    }
}

struct Watched {
    stamp: Stamp,
    sender: watch::Sender<Arc<Snapshot>>,
}

pub struct Feed {
    pool: Pool,
    raffles: Mutex<HashMap<Uuid, Watched>>,
}

impl Feed {
    /// How often the feed looks for changes: a change reaches the screens within this, plus the
    /// consumer's batch linger.
    pub const REFRESH: Duration = Duration::from_millis(200);

    pub fn new(pool: Pool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            raffles: Mutex::new(HashMap::new()),
        })
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Watched>> {
        self.raffles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current value of `raffle`, watched from now on; `None` for no such public raffle.
    pub async fn subscribe(
        &self,
        raffle: Uuid,
    ) -> Result<Option<watch::Receiver<Arc<Snapshot>>>, String> {
        if let Some(w) = self.watched().get(&raffle) {
            return Ok(Some(w.sender.subscribe()));
        }
        let client = self.pool.get().await.map_err(|e| e.to_string())?;
        let Some(stamp) = stamps(&**client, &[raffle])
            .await
            .map_err(|e| e.to_string())?
            .pop()
        else {
            return Ok(None);
        };
        let Some(jackpot) = Jackpot::load(&**client, raffle).await? else {
            return Ok(None);
        };
        let mut raffles = self.watched();
        let w = raffles.entry(raffle).or_insert_with(|| Watched {
            stamp: stamp.1,
            sender: watch::channel(Snapshot::of(jackpot)).0,
        });
        Ok(Some(w.sender.subscribe()))
    }

    /// The current value of `raffle`.
    pub async fn current(&self, raffle: Uuid) -> Result<Option<Arc<Snapshot>>, String> {
        Ok(self.subscribe(raffle).await?.map(|r| r.borrow().clone()))
    }

    /// One look for changes; returns how many raffles' values moved.
    pub async fn refresh(&self) -> Result<usize, String> {
        let ids: Vec<Uuid> = self.watched().keys().copied().collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let client = self.pool.get().await.map_err(|e| e.to_string())?;
        let now = stamps(&**client, &ids).await.map_err(|e| e.to_string())?;
        let moved: Vec<(Uuid, Stamp)> = {
            let raffles = self.watched();
            now.into_iter()
                .filter(|(id, stamp)| raffles.get(id).is_some_and(|w| w.stamp != *stamp))
                .collect()
        };
        let mut changed = 0;
        for (raffle, stamp) in moved {
            let Some(jackpot) = Jackpot::load(&**client, raffle).await? else {
                continue;
            };
            let mut raffles = self.watched();
            if let Some(w) = raffles.get_mut(&raffle) {
                w.stamp = stamp;
                let snapshot = Snapshot::of(jackpot);
                if snapshot.json != w.sender.borrow().json {
                    w.sender.send_replace(snapshot);
                    changed += 1;
                }
            }
        }
        // Raffles nobody watches any more are dropped (their last subscriber has gone).
        self.watched()
            .retain(|_, w| w.sender.receiver_count() > 0 || w.stamp.state != "drawn");
        Ok(changed)
    }

    /// Refreshes until `stop` turns true; database trouble is logged and ridden out.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(Self::REFRESH);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "the jackpot feed could not refresh; trying again");
            }
        }
    }
}
