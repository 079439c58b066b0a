//! The consumer's two clocks: how long it has been in trouble without progress (long enough,
//! and it gives up), and when to look whether records wait at the broker while none arrive.

use std::time::{Duration, Instant};

use super::{ConsumerConfig, ConsumerError};
use crate::lease::LeaseKey;

/// How long the consumer has been failing without progress; long enough, and it gives up.
#[derive(Default)]
pub(super) struct Trouble {
    since: Option<Instant>,
    reports: u64,
}

impl Trouble {
    /// Counts one failure; an error once the trouble has lasted `give_up_after_ms`.
    pub(super) fn note(
        &mut self,
        config: &ConsumerConfig,
        lease: &LeaseKey,
        reason: &str,
    ) -> Result<(), ConsumerError> {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.reports += 1;
        if since.elapsed() >= Duration::from_millis(config.give_up_after_ms) {
            return Err(ConsumerError::GaveUp {
                lease: lease.clone(),
                seconds: since.elapsed().as_secs(),
                reason: reason.to_owned(),
            });
        }
        Ok(())
    }

    pub(super) fn clear(&mut self, lease: &LeaseKey) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                %lease,
                failures = self.reports,
                seconds = since.elapsed().as_secs_f64(),
                "recovered"
            );
        }
        self.reports = 0;
    }
}

/// When to look at the broker's high watermark: after `stall_check_ms` without a record, and
/// then at most once per `stall_check_ms`.
pub(super) struct StallWatch {
    every: Duration,
    last: Instant,
}

impl StallWatch {
    pub(super) fn new(config: &ConsumerConfig) -> Self {
        Self {
            every: Duration::from_millis(config.stall_check_ms),
            last: Instant::now(),
        }
    }

    pub(super) fn progress(&mut self) {
        self.last = Instant::now();
    }

    pub(super) fn due(&mut self) -> bool {
        if self.last.elapsed() < self.every {
            return false;
        }
        self.last = Instant::now();
        true
    }
}
