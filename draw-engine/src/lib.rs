//! draw-engine: picks the winners from the sealed ledger in a way an auditor can re-check.
//!
//! Owns: the `draw` schema (`draw_executions`, `draw_results`, `prize_claims`), the reveal of
//! the seed committed at the seal, ChaCha20 selection without replacement or modulo bias,
//! manual draws, prize claims.
//!
//! Must not touch: sales, counters, or any ledger entry other than the prize, claim and payout
//! entries it posts through the ledger.
//!
//! Status: tables exist (migration V2); the engine is its own issue.
