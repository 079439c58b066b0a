//! Selection: which eligible tickets win, as a pure function of the revealed seed, the seal's
//! head hash and the number of eligible tickets. `raffle draw run` and `raffle draw verify`
//! both call it, and an auditor can re-implement it from this description:
//!
//! 1. key = SHA-256("raffle-draw/v1" ‖ seed (32 bytes) ‖ seal head hash (32 bytes));
//!    the generator is ChaCha20 (20 rounds, RFC 7539 block function, 64-bit counter from 0)
//!    keyed with it, read as little-endian 64-bit words;
//! 2. a uniform index below `n` is a word `x` accepted only when `x < 2^64 - (2^64 mod n)`,
//!    then `x mod n` (rejection sampling: no modulo bias);
//! 3. without replacement: a Fisher-Yates shuffle of the indices `0..n` that stops after the
//!    winners needed, the k-th winner (from 0) swapping position k with k + uniform(n - k);
//! 4. prizes take their winners in position order, `winner_count` each, from one shuffle, so a
//!    ticket wins at most once.
//!
//! Indices are positions in the eligible set ordered by draw number. The stream is a function of
//! committed inputs only: resuming an interrupted draw replays it and must meet the winners
//! already recorded; it never re-rolls them.

use std::collections::HashMap;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

pub const DOMAIN: &[u8] = b"raffle-draw/v1";

/// The generator's key for a draw.
pub fn key(seed: &[u8; 32], seal_head: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(seed);
    h.update(seal_head);
    h.finalize().into()
}

/// Draws distinct indices below `n`, one at a time.
pub struct Selector {
    rng: ChaCha20Rng,
    n: u64,
    taken: u64,
    /// The positions a partial Fisher-Yates shuffle moved (all others hold themselves).
    moved: HashMap<u64, u64>,
}

impl Selector {
    pub fn new(key: [u8; 32], n: usize) -> Self {
        Self {
            rng: ChaCha20Rng::from_seed(key),
            n: n as u64,
            taken: 0,
            moved: HashMap::new(),
        }
    }

    /// A uniform integer in `0..bound` (`bound >= 1`), without modulo bias.
    pub fn uniform_below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound >= 1);
        // 2^64 mod bound, computed without 128-bit arithmetic.
        let reject_from = u64::MAX - ((u64::MAX % bound) + 1) % bound;
        loop {
            let x = self.rng.next_u64();
            if x <= reject_from {
                return x % bound;
            }
        }
    }

    /// The next winner's index, or `None` once every index has been drawn.
    pub fn next_index(&mut self) -> Option<usize> {
        if self.taken >= self.n {
            return None;
        }
        let k = self.taken;
        let j = k + self.uniform_below(self.n - k);
        let at_j = self.moved.get(&j).copied().unwrap_or(j);
        let at_k = self.moved.get(&k).copied().unwrap_or(k);
        self.moved.insert(j, at_k);
        self.moved.remove(&k);
        self.taken += 1;
        Some(at_j as usize)
    }
}

/// Winners for prizes needing `counts[i]` winners each, in order, from `n` eligible tickets.
/// Stops early (shorter lists) when tickets run out.
pub fn winners(key: [u8; 32], n: usize, counts: &[u32]) -> Vec<Vec<usize>> {
    let mut selector = Selector::new(key, n);
    counts
        .iter()
        .map(|&c| (0..c).filter_map(|_| selector.next_index()).collect())
        .collect()
}

/// A prize's value shared among its winners to the cent: equal shares, the first
/// `total mod winners` winners one minor unit more.
pub fn shares(total_minor: i64, winners: usize) -> Vec<i64> {
    if winners == 0 {
        return Vec::new();
    }
    let n = winners as i64;
    let (base, extra) = (total_minor / n, total_minor % n);
    (0..n).map(|i| base + i64::from(i < extra)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_same_inputs_draw_the_same_winners() {
        let k = key(&[1; 32], &[2; 32]);
        assert_eq!(winners(k, 1000, &[1, 3]), winners(k, 1000, &[1, 3]));
        assert_ne!(
            winners(k, 1000, &[4]),
            winners(key(&[1; 32], &[3; 32]), 1000, &[4]),
            "a different seal draws differently"
        );
    }

    #[test]
    fn a_known_vector_pins_the_algorithm() {
        // Changing the generator, the rejection rule or the shuffle changes these: an auditor's
        // re-implementation can test itself against them.
        let k = key(&[0; 32], &[0; 32]);
        let drawn = winners(k, 10_000_000, &[3]);
        let again = winners(k, 10_000_000, &[1, 2]);
        assert_eq!(drawn[0], again.concat());
        // scripts/draw_reference.py, an independent implementation, gives the same.
        assert_eq!(drawn[0], vec![2_452_960, 4_865_490, 3_818_564]);
    }

    proptest! {
        #[test]
        fn winners_are_distinct_and_in_range(seed in any::<[u8; 32]>(), n in 1usize..300, counts in proptest::collection::vec(1u32..5, 1..6)) {
            let drawn = winners(key(&seed, &[9; 32]), n, &counts).concat();
            let mut sorted = drawn.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), drawn.len());
            prop_assert!(drawn.iter().all(|&i| i < n));
            prop_assert_eq!(drawn.len(), (counts.iter().sum::<u32>() as usize).min(n));
        }

        #[test]
        fn shares_sum_to_the_prize(total in 0i64..10_000_000_000, n in 1usize..50) {
            let s = shares(total, n);
            prop_assert_eq!(s.iter().sum::<i64>(), total);
            prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
        }
    }
}
