//! Leaf: webhook signatures as the Standard Webhooks specification defines them (<https://www.standardwebhooks.com>).
//!
//! A secret is `whsec_` followed by the base64 of 32 random bytes; the HMAC key is the decoded bytes. The signed
//! content is `{webhook-id}.{webhook-timestamp}.{body}`; a signature is `v1,` + base64(HMAC-SHA256(key, content)),
//! and the `webhook-signature` header holds one or more of them separated by spaces (two while a rotated secret
//! still signs). A receiver accepts a message when one signature matches and the timestamp is within five minutes
//! of its clock.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a timestamp may be from the receiver's clock, in seconds.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
///
/// # Errors
/// When the operating system has no randomness to give.
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0_u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| e.to_string())?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
}

/// The HMAC key of a secret (its `whsec_` prefix optional, as the specification's libraries accept).
///
/// # Errors
/// When the rest is not base64.
pub fn key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD.decode(encoded).map_err(|e| format!("the secret is not `whsec_` followed by base64: {e}"))
}

/// `v1,` + base64(HMAC-SHA256(key, `id.timestamp.body`)).
#[must_use]
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(mac(key, id, timestamp, body).finalize().into_bytes()))
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a message does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// An input cannot be read (the secret, the timestamp, the signature header).
    #[error("bad input: {0}")]
    Malformed(String),
    /// No signature of the header matches.
    #[error(
        "no signature matches: the secret, the id, the timestamp or the body differs from what was signed"
    )]
    Mismatch,
    /// The timestamp is too far from now.
    #[error("the timestamp is {0} seconds from now, more than the {TOLERANCE_SECONDS} allowed")]
    Stale(i64),
}

/// Verifies a message as a receiver must: a `v1` signature of the header matches (compared in constant time) and
/// the timestamp is within [`TOLERANCE_SECONDS`] of `now` (Unix seconds).
///
/// # Errors
/// [`Rejection`]: `Malformed` for unreadable input, then `Mismatch`, then `Stale`.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), Rejection> {
    let key = key(secret).map_err(Rejection::Malformed)?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Rejection::Malformed(format!("the timestamp `{timestamp}` is not Unix seconds")))?;
    let mut any = false;
    let mut matched = false;
    for entry in signatures.split_whitespace() {
        let Some((version, value)) = entry.split_once(',') else {
            return Err(Rejection::Malformed(format!("`{entry}` is not `v1,<base64>`")));
        };
        any = true;
        if version != "v1" {
            continue;
        }
        let Ok(given) = STANDARD.decode(value) else {
            return Err(Rejection::Malformed(format!("`{value}` is not base64")));
        };
        matched |= mac(&key, id, at, body).verify_slice(&given).is_ok();
    }
    if !any {
        return Err(Rejection::Malformed("no signature given".into()));
    }
    if !matched {
        return Err(Rejection::Mismatch);
    }
    let skew = now - at;
    if skew.abs() > TOLERANCE_SECONDS {
        return Err(Rejection::Stale(skew));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{sign, verify, Rejection};

    /// The specification's published example (standard-webhooks, `spec/standard-webhooks.md`, and its libraries'
    /// tests): this secret, id, timestamp and body sign to this signature.
    #[test]
    fn the_specifications_example_signs_and_verifies() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(sign(&super::key(secret).unwrap(), id, 1_614_265_330, body), expected);
        assert_eq!(verify(secret, id, "1614265330", expected, body, 1_614_265_330), Ok(()));
        let two = format!("v1,bm9wZQ== {expected}");
        assert_eq!(verify(secret, id, "1614265330", &two, body, 1_614_265_400), Ok(()));
        assert_eq!(
            verify(secret, id, "1614265330", expected, b"{}", 1_614_265_330),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            verify(secret, id, "1614265330", expected, body, 1_614_265_330 + 301),
            Err(Rejection::Stale(301))
        );
        assert!(matches!(verify(secret, id, "soon", expected, body, 0), Err(Rejection::Malformed(_))));
        assert!(matches!(verify(secret, id, "1", "", body, 0), Err(Rejection::Malformed(_))));
    }
}
