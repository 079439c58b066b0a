//! Signed links to an order's page: what a buyer clicks in their e-mail instead of typing the
//! order id and check code. The link carries the order id, an expiry and an HMAC-SHA256 of both
//! under the operator's link key (`RAFFLE_LINK_KEY`), so it opens that one order until it
//! expires and cannot be made for another.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// How long a link in an e-mail keeps working: past the claim period of any raffle.
pub const LINK_DAYS: i64 = 400;

fn mac(key: &[u8], order: Uuid, expires: i64) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(format!("order-link:v1:{order}:{expires}").as_bytes());
    Some(mac)
}

/// The signature of a link to `order` valid until `expires` (Unix seconds), as hex.
pub fn sign(key: &[u8], order: Uuid, expires: i64) -> String {
    mac(key, order, expires)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// The path and query of the link, to be put after the public base URL.
pub fn path(key: &[u8], order: Uuid, expires: i64) -> String {
    format!(
        "/v1/orders/{order}?expires={expires}&signature={}",
        sign(key, order, expires)
    )
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link has expired; look the order up with its check code instead")]
    Expired,
    #[error("this link's signature does not match")]
    Forged,
}

/// Whether `signature` is this key's for `order` until `expires`, and the link still holds at
/// `now` (Unix seconds). The comparison takes the same time whatever the signature holds.
pub fn verify(
    key: &[u8],
    order: Uuid,
    expires: i64,
    signature: &str,
    now: i64,
) -> Result<(), LinkError> {
    let candidate = hex::decode(signature.trim()).map_err(|_| LinkError::Forged)?;
    let mac = mac(key, order, expires).ok_or(LinkError::Forged)?;
    mac.verify_slice(&candidate)
        .map_err(|_| LinkError::Forged)?;
    if now > expires {
        return Err(LinkError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_its_order_only_until_it_expires() {
        let key = b"the operator's link key";
        let order = Uuid::now_v7();
        let signature = sign(key, order, 2_000);
        assert_eq!(verify(key, order, 2_000, &signature, 1_999), Ok(()));
        assert_eq!(
            verify(key, order, 2_000, &signature, 2_001),
            Err(LinkError::Expired)
        );
        assert_eq!(
            verify(key, Uuid::now_v7(), 2_000, &signature, 1_000),
            Err(LinkError::Forged)
        );
        // A later expiry is not the buyer's to choose.
        assert_eq!(
            verify(key, order, 9_000, &signature, 1_000),
            Err(LinkError::Forged)
        );
        assert_eq!(
            verify(b"another key", order, 2_000, &signature, 1_000),
            Err(LinkError::Forged)
        );
        assert_eq!(
            verify(key, order, 2_000, "not hex", 1_000),
            Err(LinkError::Forged)
        );
    }
}
