//! How decimals arrive in JSON: as integers or as decimal strings, never as floats.
//!
//! serde_json parses `0.1` into a binary float before any visitor sees it, so a JSON number with a fraction is
//! rejected here rather than converted: `"0.1"` (a string) is the only way to say one tenth. Whole numbers may be
//! plain JSON integers, since they are exact.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// A decimal read from a JSON integer or a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Num(pub Decimal);

struct NumVisitor;

impl Visitor<'_> for NumVisitor {
    type Value = Num;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a decimal string such as \"0.00005\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
        Ok(Num(Decimal::from(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
        Ok(Num(Decimal::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
        parse_decimal(v).map(Num).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

/// Parses a plain decimal string (`"12"`, `"0.00005"`, `"-3.5"`); no exponent, no spaces, no thousands separators.
///
/// # Errors
/// A message naming the text when it is not such a decimal or has more than 28 decimal places.
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let plain = !text.is_empty()
        && text.trim_start_matches(['-', '+']).chars().all(|c| c.is_ascii_digit() || c == '.')
        && text.chars().filter(|c| *c == '.').count() <= 1
        && text.trim_start_matches(['-', '+']).chars().any(|c| c.is_ascii_digit());
    if !plain {
        return Err(format!("`{text}` is not a decimal number"));
    }
    let value =
        Decimal::from_str_exact(text).map_err(|_| format!("`{text}` has too many digits to be exact"))?;
    Ok(value)
}

/// A tier's upper bound: a number, or `null` / `"inf"` for the open-ended last tier (Stripe's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpTo(pub Option<Decimal>);

struct UpToVisitor;

impl Visitor<'_> for UpToVisitor {
    type Value = UpTo;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer, a decimal string, null or \"inf\"")
    }

    fn visit_unit<E: de::Error>(self) -> Result<UpTo, E> {
        Ok(UpTo(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<UpTo, E> {
        Ok(UpTo(None))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<UpTo, E> {
        Ok(UpTo(Some(Decimal::from(v))))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<UpTo, E> {
        Ok(UpTo(Some(Decimal::from(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<UpTo, E> {
        if v == "inf" {
            Ok(UpTo(None))
        } else {
            parse_decimal(v).map(|d| UpTo(Some(d))).map_err(E::custom)
        }
    }
}

impl<'de> Deserialize<'de> for UpTo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UpToVisitor)
    }
}

/// Serializes a decimal as a string without trailing zeros (`324.4`, not `324.4000000`), and zero as `0`.
///
/// Exact amounts carry whatever scale their computation left; they are normalized here, once, when they leave
/// the process, instead of after every operation.
///
/// # Errors
/// Those of the serializer.
pub fn normalized<S: serde::Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    if value.is_zero() {
        s.serialize_str("0")
    } else {
        s.collect_str(&value.normalize())
    }
}

/// [`normalized`] for an optional decimal (`None` serializes as `null`).
///
/// # Errors
/// Those of the serializer.
pub fn normalized_option<S: serde::Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => normalized(v, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_decimal_strings_are_accepted() {
        let n: Num = serde_json::from_str("2000000").unwrap();
        assert_eq!(n.0, Decimal::from(2_000_000));
        let n: Num = serde_json::from_str("\"0.0000343\"").unwrap();
        assert_eq!(n.0.to_string(), "0.0000343");
    }

    #[test]
    fn json_floats_are_rejected_not_converted() {
        let err = serde_json::from_str::<Num>("0.1").unwrap_err().to_string();
        assert!(err.contains("expected an integer or a decimal string"), "{err}");
        assert!(serde_json::from_str::<Num>("1e6").is_err());
    }

    #[test]
    fn malformed_decimal_strings_are_rejected() {
        for bad in ["", "1e5", " 1", "1,000", "abc", "1.2.3", "-", "."] {
            assert!(parse_decimal(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_decimal("0.00000000000000000000000000001").is_err());
    }

    #[test]
    fn up_to_accepts_null_and_inf_for_the_open_tier() {
        assert_eq!(serde_json::from_str::<UpTo>("null").unwrap(), UpTo(None));
        assert_eq!(serde_json::from_str::<UpTo>("\"inf\"").unwrap(), UpTo(None));
        assert_eq!(serde_json::from_str::<UpTo>("10").unwrap(), UpTo(Some(Decimal::from(10))));
    }
}
