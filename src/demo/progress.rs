//! Progress of a step: a bar on a terminal, a line per quarter otherwise.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A progress bar on a terminal; a line per quarter otherwise.
pub(super) struct Progress {
    label: &'static str,
    total: usize,
    done: AtomicUsize,
    tty: bool,
}

impl Progress {
    pub(super) fn new(label: &'static str, total: usize) -> Arc<Self> {
        Arc::new(Self {
            label,
            total: total.max(1),
            done: AtomicUsize::new(0),
            tty: std::io::stderr().is_terminal(),
        })
    }

    pub(super) fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        self.show(done);
    }

    /// Moves the bar to `done` (for progress read from elsewhere); never backwards.
    pub(super) fn advance_to(&self, done: usize) {
        let before = self.done.fetch_max(done, Ordering::Relaxed);
        for d in before + 1..=done {
            self.show(d);
        }
    }

    fn show(&self, done: usize) {
        let pct = done * 100 / self.total;
        if self.tty {
            let filled = done * 30 / self.total;
            eprint!(
                "\r  {:<26} [{}{}] {:>3}% ({done}/{})",
                self.label,
                "#".repeat(filled),
                ".".repeat(30 - filled),
                pct,
                self.total
            );
            if done == self.total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        } else if done == self.total || (done * 4 / self.total) != ((done - 1) * 4 / self.total) {
            eprintln!("  {:<26} {pct:>3}% ({done}/{})", self.label, self.total);
        }
    }
}
