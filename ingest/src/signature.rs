//! Payment-provider webhook signatures in the Stripe format:
//! `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">[,v1=…]`.
//! Compared in constant time; refused outside the tolerance window (replays).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a signature was refused, in words a provider's dashboard can show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("Stripe-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "signature timestamp {timestamp} is {age_s} s from now, outside the {tolerance_s} s tolerance"
    )]
    Stale {
        timestamp: i64,
        age_s: i64,
        tolerance_s: i64,
    },
    #[error("signature does not match the payload")]
    Mismatch,
}

/// Checks `header` for `body` at `now_s`; returns the signed timestamp.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    let mut malformed_v1 = false;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => {
                timestamp = Some(
                    v.parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is not a number"))?,
                )
            }
            // A v1 that is not hex cannot match; another beside it may (Stripe may add
            // schemes and values): it is skipped, not a refusal of the whole header.
            Some(("v1", v)) => {
                if let Ok(candidate) = hex::decode(v) {
                    candidates.push(candidate);
                } else {
                    malformed_v1 = true;
                }
            }
            Some(_) => {} // other schemes (v0) are ignored, as the provider documents
            None => return Err(SignatureError::Malformed("expected key=value pairs")),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t="))?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed(if malformed_v1 {
            "no v1= is hex"
        } else {
            "no v1="
        }));
    }
    let age_s = now_s - timestamp;
    if age_s.abs() > tolerance_s {
        return Err(SignatureError::Stale {
            timestamp,
            age_s,
            tolerance_s,
        });
    }
    for candidate in candidates {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        if mac.verify_slice(&candidate).is_ok() {
            return Ok(timestamp);
        }
    }
    Err(SignatureError::Mismatch)
}

/// Signs `body` as the provider would (tests and the benchmark's simulated provider).
pub fn sign(secret: &[u8], body: &[u8], timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";

    #[test]
    fn a_good_signature_verifies_and_anything_else_is_refused_with_the_reason() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(SECRET, body, 1_000);
        assert_eq!(verify(SECRET, Some(&header), body, 1_100, 300), Ok(1_000));
        assert_eq!(
            verify(SECRET, Some(&header), b"{}", 1_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(&header), body, 1_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify(SECRET, Some(&header), body, 1_301, 300),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            verify(SECRET, None, body, 1_000, 300),
            Err(SignatureError::Missing)
        );
        assert!(matches!(
            verify(SECRET, Some("t=abc,v1=00"), body, 1_000, 300),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify(SECRET, Some("t=1000"), body, 1_000, 300),
            Err(SignatureError::Malformed(_))
        ));
        // A rotated secret: the provider sends two v1 signatures; either may match.
        let two = format!(
            "{},v1={}",
            sign(b"old", body, 1_000),
            &header.split("v1=").nth(1).unwrap()
        );
        assert_eq!(verify(SECRET, Some(&two), body, 1_000, 300), Ok(1_000));
        // A malformed v1 beside a good one is skipped, in either order.
        for header in [
            format!("{header},v1=not-hex"),
            format!("t=1000,v1=zz,{}", &header[7..]),
        ] {
            assert_eq!(
                verify(SECRET, Some(&header), body, 1_000, 300),
                Ok(1_000),
                "{header}"
            );
        }
        assert_eq!(
            verify(SECRET, Some("t=1000,v1=zz"), body, 1_000, 300),
            Err(SignatureError::Malformed("no v1= is hex"))
        );
    }
}
