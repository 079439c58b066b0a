//! Waiting before a retry: the one backoff every long-running loop of the platform uses
//! (partition consumers, the outbox relay), cut short by shutdown.

use std::time::Duration;

use tokio::sync::watch;

/// A pause that starts at `first_ms` and doubles after each use up to `max_ms`; `reset`
/// after a success. Bounded so that a loop resumes within `max_ms` of the fault's end.
#[derive(Debug, Clone)]
pub struct Backoff {
    first_ms: u64,
    max_ms: u64,
    /// The next pause.
    pub ms: u64,
}

impl Backoff {
    pub fn new(first_ms: u64, max_ms: u64) -> Self {
        assert!(
            first_ms > 0 && first_ms <= max_ms,
            "backoff {first_ms}..{max_ms} ms"
        );
        Self {
            first_ms,
            max_ms,
            ms: first_ms,
        }
    }

    pub fn reset(&mut self) {
        self.ms = self.first_ms;
    }

    /// Sleeps the next pause (or until shutdown), then doubles it.
    pub async fn pause(&mut self, shutdown: &mut watch::Receiver<bool>) {
        sleep_or_shutdown(Duration::from_millis(self.ms), shutdown).await;
        self.ms = self.ms.saturating_mul(2).min(self.max_ms);
    }
}

/// Sleeps `pause`, or less if `shutdown` changes meanwhile.
pub async fn sleep_or_shutdown(pause: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = shutdown.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn doubles_up_to_its_bound_and_resets() {
        let (_tx, mut rx) = watch::channel(false);
        let mut b = Backoff::new(1, 5);
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(b.ms);
            b.pause(&mut rx).await;
        }
        assert_eq!(seen, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.ms, 1);
    }
}
