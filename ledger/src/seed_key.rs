//! The key the draw seed waits under between the seal and the draw (`RAFFLE_DRAW_SEED_KEY`, 32
//! bytes as 64 hex digits), held by whoever seals and draws. The seed is XORed with a ChaCha20
//! keystream keyed by SHA-256("raffle-seed-wrap/v1" ‖ key ‖ raffle id): one keystream per raffle,
//! used once, since a raffle is sealed once. Unwrapping with a wrong key yields a seed that does
//! not meet the commitment published in the seal, which the draw refuses.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const ENV: &str = "RAFFLE_DRAW_SEED_KEY";

#[derive(Clone)]
pub struct SeedKey([u8; 32]);

impl std::fmt::Debug for SeedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeedKey(…)")
    }
}

impl SeedKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, String> {
        use rand::TryRngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| format!("the operating system's random source failed: {e}"))?;
        Ok(Self(key))
    }

    pub fn from_hex(text: &str) -> Result<Self, String> {
        let bytes =
            hex::decode(text.trim()).map_err(|e| format!("{ENV} must be 64 hex digits: {e}"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!("{ENV} must be 32 bytes (64 hex digits), not {}", b.len())
        })?;
        Ok(Self(bytes))
    }

    /// The key from the environment, if set.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(ENV) {
            Ok(v) if !v.trim().is_empty() => Self::from_hex(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// Wraps or unwraps (the same operation) the seed of `raffle_id`.
    pub fn apply(&self, raffle_id: Uuid, seed: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"raffle-seed-wrap/v1");
        h.update(self.0);
        h.update(raffle_id.as_bytes());
        let mut stream = [0u8; 32];
        ChaCha20Rng::from_seed(h.finalize().into()).fill_bytes(&mut stream);
        let mut out = [0u8; 32];
        for (o, (s, k)) in out.iter_mut().zip(seed.iter().zip(stream)) {
            *o = s ^ k;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_twice_gives_the_seed_back_and_depends_on_key_and_raffle() {
        let key = SeedKey::new([7; 32]);
        let seed = [42u8; 32];
        let raffle = Uuid::from_u128(1);
        let wrapped = key.apply(raffle, &seed);
        assert_ne!(wrapped, seed);
        assert_eq!(key.apply(raffle, &wrapped), seed);
        assert_ne!(SeedKey::new([8; 32]).apply(raffle, &wrapped), seed);
        assert_ne!(key.apply(Uuid::from_u128(2), &seed), wrapped);
        assert!(SeedKey::from_hex("abcd").is_err());
        assert!(SeedKey::from_hex(&"0f".repeat(32)).is_ok());
    }
}
