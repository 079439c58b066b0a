//! draw-engine: picks the winners from the sealed ledger in a way an auditor can re-check.
//!
//! Owns: the `draw` schema (`draw_executions`, `draw_results`, `prize_claims`,
//! `claim_attempts`, `unclaimed_prizes`), the reveal of the seed committed at the seal,
//! ChaCha20 selection without replacement or modulo bias ([`select`]), manual draws from an
//! exported barrel list, verification of a recorded draw, prize claims and their expiry.
//!
//! Must not touch: sales, orders or counters — it only marks winning tickets `winner` or
//! `claimed`, through `sales::tickets` — and no ledger entry other than the ones it posts through [`ledger::append`]:
//! `prize_awarded` (liability for a prize moves to the winner), `prize_payout` (paid on a
//! claim), `unclaimed_prize` (back to net proceeds after the claim period). The database
//! refuses any other entry for a sealed raffle. The raffle moves to `drawn` and `completed`
//! through `catalog::lifecycle`, and its critical events are written by `catalog::audit`
//! with the operator as the actor; staff claims over HTTP are the admin API's route.

pub mod claims;
mod engine;
mod errors;
mod manual;
mod pending;
mod prepare;
pub mod select;
mod verify;

pub use claims::{
    ClaimRecord, ClaimRequest, Expiry, MAX_REFUSED_ATTEMPTS, MAX_REFUSED_PER_SOURCE, claim,
    claim_at, expire_unclaimed, expire_unclaimed_at,
};
pub use engine::{DrawOutcome, DrawRequest, ManualRequest, manual, run};
pub use errors::DrawError;
pub use manual::export_barrel;
pub use pending::{PendingExecution, SEED_KEEPER};
pub use prepare::{
    Prepared, PrizeSlot, Timings, Winner, prepare, prepare_with_key, recorded_winners,
    select_winners,
};
pub use verify::{DrawCheck, DrawVerification, verify};
