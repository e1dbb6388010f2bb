//! How decimals arrive in JSON: as integers or as decimal strings, never as floats.
//!
//! serde_json parses `0.1` into a binary float before any visitor sees it, so a JSON number with a fraction is
//! rejected here rather than converted: `"0.1"` (a string) is the only way to say one tenth. Whole numbers may be
//! plain JSON integers, since they are exact.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::echo;

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

/// The one grammar of decimal strings, in requests and price books alike: digits, optionally a point and more
/// digits. No sign, no exponent, no spaces, no separators, nothing before the first digit or after the last.
pub const DECIMAL_GRAMMAR: &str = "digits with an optional fractional part, such as \"12\" or \"0.00005\"";

/// Parses a decimal string of the grammar `digits[.digits]` ([`DECIMAL_GRAMMAR`]): `"12"`, `"0.00005"`.
///
/// `"+5"`, `"-0"`, `"5."`, `".5"`, `" 5"`, `"1e3"` and `"1,000"` are all refused, with the same message. Nothing
/// tally reads is negative, so there is no sign to write.
///
/// # Errors
/// A message naming the text (cut to [`crate::error::MAX_ECHO`] characters) when it does not follow the grammar or
/// has more digits than a `Decimal` holds exactly (28 decimal places, 96 bits).
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let (int, frac) = text.split_once('.').unwrap_or((text, "1"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return Err(format!("`{}` is not a decimal number: write {DECIMAL_GRAMMAR}", echo(text)));
    }
    Decimal::from_str_exact(text).map_err(|_| format!("`{}` has too many digits to be exact", echo(text)))
}

/// A decimal field of a price book as written: its value, or why it is not one. Read leniently (any JSON value), so
/// that validation reports a malformed number at its path together with every other problem of the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookNum(pub Result<Decimal, String>);

impl BookNum {
    /// A valid value.
    pub fn ok(value: Decimal) -> BookNum {
        BookNum(Ok(value))
    }
}

impl<'de> Deserialize<'de> for BookNum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(BookNum(Json::deserialize(d)?.decimal()))
    }
}

/// A tier's upper bound as written: a number, or `null` / `"inf"` for the open-ended last tier (Stripe's spelling);
/// or why it is none of these (read leniently, like [`BookNum`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpTo(pub Result<Option<Decimal>, String>);

impl<'de> Deserialize<'de> for UpTo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(UpTo(match Json::deserialize(d)? {
            Json::Null => Ok(None),
            Json::Str(s) if s == "inf" => Ok(None),
            other => other.decimal().map(Some).map_err(|m| format!("{m}, null or \"inf\"")),
        }))
    }
}

/// A decimal's text, exactly as its `Display` writes it (every digit of its scale, `-` when its sign is negative),
/// built on the stack. `rust_decimal`'s `Display` pads through a `Formatter` and was the largest single cost of
/// writing an invoice (the stored bill writes some forty numbers); this writes the mantissa's digits and places the
/// point. The property test `decimal_text_is_display` holds the two equal.
#[derive(Clone, Copy)]
pub struct DecimalText {
    bytes: [u8; DecimalText::CAPACITY],
    start: usize,
}

impl DecimalText {
    /// A sign, 29 digits and a point, or a sign, `0.` and 28 decimals.
    const CAPACITY: usize = 32;

    /// The text of `d`.
    #[must_use]
    pub fn new(d: Decimal) -> DecimalText {
        let mut bytes = [b'0'; DecimalText::CAPACITY];
        let scale = usize::try_from(d.scale()).unwrap_or(0);
        let mut at = DecimalText::CAPACITY;
        let mut written = 0_usize;
        // The digits from the last, the point after `scale` of them, and at least one digit before it.
        let mut n = d.mantissa().unsigned_abs();
        loop {
            if written == scale && scale > 0 {
                at -= 1;
                bytes[at] = b'.';
            }
            at -= 1;
            bytes[at] = b'0' + u8::try_from(n % 10).unwrap_or(0);
            n /= 10;
            written += 1;
            if n == 0 && written > scale {
                break;
            }
        }
        if d.is_sign_negative() {
            at -= 1;
            bytes[at] = b'-';
        }
        DecimalText { bytes, start: at }
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, `.` and `-` are ever written.
        std::str::from_utf8(&self.bytes[self.start..]).unwrap_or("")
    }
}

impl fmt::Display for DecimalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DecimalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
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
        s.serialize_str(DecimalText::new(value.normalize()).as_str())
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

/// The most bytes of JSON tally reads as one request or one price book (1 MiB). Larger input is refused before it
/// is parsed, so memory stays bounded whatever arrives.
pub const MAX_INPUT_BYTES: usize = 1_048_576;

/// The refusal of an input over [`MAX_INPUT_BYTES`], or `None` when it fits.
pub fn too_large(what: &str, bytes: usize) -> Option<String> {
    (bytes > MAX_INPUT_BYTES).then(|| {
        format!("the {what} is larger than {MAX_INPUT_BYTES} bytes (1 MiB), the most tally reads; it was not parsed")
    })
}

/// A JSON document as written: objects keep their keys in order, duplicates included, so a repeated key is
/// reported instead of silently overwritten; numbers with a fraction or an exponent are kept apart (as `Float`),
/// never converted. Read with serde_json (whose nesting limit of 128 bounds the depth).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// A JSON integer within `i64`/`u64`.
    Int(i128),
    /// A JSON number with a fraction or an exponent, or an integer too large for 64 bits: serde_json reads all of
    /// them as binary floating point, so its value is dropped unread and the number is refused where a decimal is
    /// expected (`visit_f64` below exists only to record that refusal instead of aborting the whole document).
    Float,
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// What this value is, for messages (`expected an object, found a string`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Int(_) => "an integer",
            Json::Float => "a number with a fraction or exponent",
            Json::Str(_) => "a string",
            Json::Arr(_) => "an array",
            Json::Obj(_) => "an object",
        }
    }

    /// A decimal from a JSON integer or a decimal string of [`DECIMAL_GRAMMAR`].
    pub(crate) fn decimal(&self) -> Result<Decimal, String> {
        match self {
            Json::Int(n) => Decimal::try_from_i128_with_scale(*n, 0).map_err(|e| e.to_string()),
            Json::Str(s) => parse_decimal(s),
            Json::Float => Err(format!(
                "a JSON number with a fraction, an exponent or more than 19 digits is read as a binary float: \
                 write it as a decimal string, {DECIMAL_GRAMMAR}"
            )),
            other => Err(format!("expected an integer or a decimal string, found {}", other.kind())),
        }
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Int(i128::from(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Int(i128::from(v)))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Float)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Arr(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Json::Obj(entries))
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_is_display_at_the_edges() {
        let cases = [
            Decimal::ZERO,
            Decimal::new(0, 2),
            Decimal::from_parts(0, 0, 0, true, 0),
            Decimal::from_parts(0, 0, 0, true, 3),
            Decimal::new(5, 2),
            Decimal::new(-5, 2),
            Decimal::new(12_345, 2),
            Decimal::new(1, 28),
            Decimal::new(-1, 28),
            Decimal::MAX,
            Decimal::MIN,
            Decimal::from_parts(u32::MAX, u32::MAX, u32::MAX, false, 28),
            Decimal::from_parts(u32::MAX, u32::MAX, u32::MAX, true, 28),
            Decimal::from_parts(u32::MAX, u32::MAX, u32::MAX, true, 1),
            Decimal::new(100, 0),
            Decimal::new(1_000_000, 6),
        ];
        for d in cases {
            assert_eq!(DecimalText::new(d).as_str(), d.to_string(), "{d:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decimal_text_is_display(
            lo: u32, mid: u32, hi: u32, negative: bool, scale in 0_u32..=28, small in 0_u32..3
        ) {
            // Small mantissas too (most amounts), where the point and leading zeros matter most.
            let (mid, hi) = if small > 0 { (0, 0) } else { (mid, hi) };
            let lo = if small == 2 { lo % 1000 } else { lo };
            let d = Decimal::from_parts(lo, mid, hi, negative, scale);
            let text = DecimalText::new(d);
            proptest::prop_assert_eq!(text.as_str(), d.to_string());
        }
    }

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
        for bad in [
            "", "1e5", " 1", "1 ", "1,000", "abc", "1.2.3", "-", ".", "+5", "-0", "-1", "5.", ".5", "0x10",
            "١",
        ] {
            let err = parse_decimal(bad).unwrap_err();
            assert!(err.contains("is not a decimal number: write digits"), "{bad:?}: {err}");
        }
        for good in ["0", "007", "12", "0.00005", "1000000000000", "3.730"] {
            assert!(parse_decimal(good).is_ok(), "{good:?} should be accepted");
        }
        assert!(parse_decimal("0.00000000000000000000000000001").is_err());
    }

    #[test]
    fn up_to_accepts_null_and_inf_for_the_open_tier() {
        assert_eq!(serde_json::from_str::<UpTo>("null").unwrap(), UpTo(Ok(None)));
        assert_eq!(serde_json::from_str::<UpTo>("\"inf\"").unwrap(), UpTo(Ok(None)));
        assert_eq!(serde_json::from_str::<UpTo>("10").unwrap(), UpTo(Ok(Some(Decimal::from(10)))));
        assert!(serde_json::from_str::<UpTo>("\"-inf\"").unwrap().0.is_err());
    }
}
