//! Secrets and ids: how a credential is made, how it is stored (SHA-256, never the secret itself), and the ids of
//! stored records. A leaf: it depends on nothing of tally's.

use sha2::{Digest, Sha256};

/// SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// SHA-256 of some bytes, as hex text (an idempotent request's fingerprint).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Bytes as lowercase hex text.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// 64 hex digits as the 32 bytes they spell; `None` for anything else.
pub fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0_u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new random secret: a prefix and 32 random bytes in hex.
///
/// # Errors
/// When the operating system has no randomness to give.
pub fn new_secret(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0_u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

/// A new id with a prefix: the creation time (hex microseconds, so ids sort in creation order, as lists page by id)
/// and 8 random bytes.
///
/// # Errors
/// When the operating system has no randomness to give.
pub fn new_id(prefix: &str) -> Result<String, String> {
    let mut bytes = [0_u8; 8];
    getrandom::getrandom(&mut bytes).map_err(|e| e.to_string())?;
    let micros = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
    Ok(format!("{prefix}{micros:014x}{}", hex(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::{hex, unhex};

    #[test]
    fn hex_is_lowercase_two_digits_a_byte_and_unhex_reads_it_back() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        let bytes: [u8; 32] = std::array::from_fn(|i| u8::try_from(i * 8).unwrap_or(0));
        let text = hex(&bytes);
        assert_eq!(text, bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        assert_eq!(unhex(&text), Some(bytes));
    }
}
