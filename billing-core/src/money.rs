//! Currencies, their minor units, and the one place amounts are rounded.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// An ISO 4217 currency that tally knows the minor unit of.
///
/// The exponent is the number of decimal places of the minor unit: 2 for cents, 0 for yen, 3 for fils.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u32,
}

/// The currencies tally accepts, with their minor-unit exponents (ISO 4217).
const CURRENCIES: &[Currency] = &[
    Currency { code: "USD", exponent: 2 },
    Currency { code: "EUR", exponent: 2 },
    Currency { code: "GBP", exponent: 2 },
    Currency { code: "CHF", exponent: 2 },
    Currency { code: "CAD", exponent: 2 },
    Currency { code: "AUD", exponent: 2 },
    Currency { code: "JPY", exponent: 0 },
    Currency { code: "KWD", exponent: 3 },
];

impl Currency {
    /// US dollar: two decimal places.
    pub const USD: Currency = Currency { code: "USD", exponent: 2 };

    /// Looks a currency up by its ISO 4217 code (upper case).
    ///
    /// # Errors
    /// Returns the list of known codes when `code` is not one of them.
    ///
    /// # Examples
    /// ```
    /// use billing_core::Currency;
    /// assert_eq!(Currency::from_code("JPY")?.exponent(), 0);
    /// assert!(Currency::from_code("XYZ").is_err());
    /// # Ok::<(), String>(())
    /// ```
    pub fn from_code(code: &str) -> Result<Currency, String> {
        CURRENCIES.iter().find(|c| c.code == code).copied().ok_or_else(|| {
            let known: Vec<&str> = CURRENCIES.iter().map(|c| c.code).collect();
            format!("unknown currency `{}` (known: {})", crate::error::echo(code), known.join(", "))
        })
    }

    /// The ISO 4217 code.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// The number of decimal places of the minor unit.
    pub fn exponent(self) -> u32 {
        self.exponent
    }

    /// Rounds an exact amount to this currency's minor unit with the named strategy.
    ///
    /// The result always carries exactly [`Currency::exponent`] decimal places, so `50` prints as `50.00`.
    ///
    /// # Examples
    /// ```
    /// use billing_core::{Currency, Rounding};
    /// use rust_decimal::Decimal;
    /// let usd = Currency::USD;
    /// assert_eq!(usd.round(Decimal::new(12345, 3), Rounding::HalfAwayFromZero).to_string(), "12.35");
    /// assert_eq!(usd.round(Decimal::new(-12345, 3), Rounding::HalfAwayFromZero).to_string(), "-12.35");
    /// assert_eq!(usd.round(Decimal::new(12349, 3), Rounding::Down).to_string(), "12.34");
    /// ```
    pub fn round(self, exact: Decimal, rounding: Rounding) -> Decimal {
        round_to(exact, self.exponent, rounding)
    }

    /// An already rounded amount as an integer count of minor units (cents), as stored in a database.
    ///
    /// # Errors
    /// [`Error::Overflow`] when the amount has more decimal places than the currency or does not fit an `i64`.
    pub fn to_minor_units(self, rounded: Decimal) -> Result<i64> {
        let scaled =
            crate::exact::mul(rounded, Decimal::from(crate::exact::pow10(self.exponent)), "minor units")?;
        if !scaled.fract().is_zero() {
            return Err(Error::Overflow { context: "minor units (amount is not rounded)" });
        }
        i64::try_from(scaled.trunc().mantissa() / crate::exact::pow10(scaled.trunc().scale()))
            .map_err(|_| Error::Overflow { context: "minor units" })
    }

    /// An integer count of minor units as an amount in major units, e.g. 1999 cents as 19.99.
    pub fn from_minor_units(self, minor: i64) -> Decimal {
        Decimal::from_i128_with_scale(i128::from(minor), self.exponent)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl FromStr for Currency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Currency::from_code(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::from_code(&code).map_err(serde::de::Error::custom)
    }
}

/// A named rounding strategy. Nothing in tally rounds except through one of these.
///
/// `rust_decimal`'s `round_dp` rounds half to even (banker's rounding) without saying so; every billing engine
/// tally follows rounds money half away from zero, so that is what invoice lines use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Half away from zero: 0.005 → 0.01, −0.005 → −0.01. Used for every invoice line.
    HalfAwayFromZero,
    /// Toward zero (truncation). Used where an amount must never exceed its exact value: credit release
    /// schedules and caps.
    Down,
}

impl Rounding {
    fn strategy(self) -> RoundingStrategy {
        match self {
            Rounding::HalfAwayFromZero => RoundingStrategy::MidpointAwayFromZero,
            Rounding::Down => RoundingStrategy::ToZero,
        }
    }
}

/// Rounds `exact` to `places` decimal places and pads it to exactly that many.
pub(crate) fn round_to(exact: Decimal, places: u32, rounding: Rounding) -> Decimal {
    // An amount with no more places than asked for needs no rounding, only padding (the common case: 274.4).
    let mut r = if exact.scale() <= places {
        exact
    } else {
        round_small(exact, places, rounding)
            .unwrap_or_else(|| exact.round_dp_with_strategy(places, rounding.strategy()))
    };
    // Raising the scale only appends zeros, so it is exact.
    if r.scale() < places {
        r.rescale(places);
    }
    // A zero is never shown as −0.00 (−0 arises from negating a zero discount).
    if r.is_zero() {
        r.set_sign_positive(true);
    }
    r
}

/// `value × 10^places`: moves the decimal point, exactly (`0.10` by 2 → `10`, `58` by −1 → `5.8`).
///
/// # Errors
/// [`Error::Overflow`] when the result does not fit.
pub fn shift_decimal_point(value: Decimal, places: i32) -> Result<Decimal> {
    let scale = i64::from(value.scale()) - i64::from(places);
    let (mantissa, scale) = if scale < 0 {
        let factor =
            10_i128.checked_pow(u32::try_from(-scale).map_err(|_| Error::Overflow { context: "shift" })?);
        (factor.and_then(|f| value.mantissa().checked_mul(f)), 0)
    } else {
        (Some(value.mantissa()), u32::try_from(scale).map_err(|_| Error::Overflow { context: "shift" })?)
    };
    mantissa
        .and_then(|m| Decimal::try_from_i128_with_scale(m, scale).ok())
        .ok_or(Error::Overflow { context: "shift" })
}

/// 10^0 … 10^19: every power of ten a `u64` holds.
const POW10: [u64; 20] = {
    let mut table = [1_u64; 20];
    let mut i = 1;
    while i < 20 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// Rounds a decimal whose mantissa fits a `u64` with one integer division, instead of rust_decimal's digit-by-digit
/// rescaling (most amounts: 88,720.2512345 has a 12-digit mantissa). `None` for anything larger.
fn round_small(exact: Decimal, places: u32, rounding: Rounding) -> Option<Decimal> {
    let shift = exact.scale().checked_sub(places)?;
    let divisor = *POW10.get(usize::try_from(shift).ok()?)?;
    let magnitude = u64::try_from(exact.mantissa().unsigned_abs()).ok()?;
    let (mut q, r) = (magnitude / divisor, magnitude % divisor);
    if rounding == Rounding::HalfAwayFromZero && r >= divisor - r {
        // 2r ≥ divisor, written without overflow: at or past the midpoint, away from zero.
        q += 1;
    }
    let sign = if exact.is_sign_negative() { -1 } else { 1 };
    Decimal::try_from_i128_with_scale(sign * i128::from(q), places).ok()
}

/// An amount kept twice: exactly as computed, and rounded to the currency's minor unit.
///
/// Lago calls these `precise_amount_cents` and `amount_cents`. The rounded amount is what is billed; the exact one
/// explains it and is what further computation (tax, discounts) starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// The exact amount, never rounded.
    pub exact: Decimal,
    /// The amount rounded to the currency's minor unit.
    pub rounded: Decimal,
}

impl Amount {
    /// Rounds `exact` half away from zero to the currency's minor unit and keeps both.
    pub fn round(currency: Currency, exact: Decimal) -> Amount {
        Amount { exact, rounded: currency.round(exact, Rounding::HalfAwayFromZero) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::d;

    #[test]
    fn rounding_is_half_away_from_zero_not_bankers() {
        let usd = Currency::USD;
        // Banker's rounding would give 0.02 and 0.00 here.
        assert_eq!(usd.round(d("0.025"), Rounding::HalfAwayFromZero), d("0.03"));
        assert_eq!(usd.round(d("0.005"), Rounding::HalfAwayFromZero), d("0.01"));
        assert_eq!(usd.round(d("-0.005"), Rounding::HalfAwayFromZero), d("-0.01"));
        assert_eq!(usd.round(d("0.0049999"), Rounding::HalfAwayFromZero), d("0.00"));
        assert_eq!(usd.round(-d("0"), Rounding::HalfAwayFromZero).to_string(), "0.00");
        assert_eq!(usd.round(d("-0.004"), Rounding::HalfAwayFromZero).to_string(), "0.00");
    }

    #[test]
    fn the_integer_rounding_path_agrees_with_rust_decimal() {
        let cases = [
            "0.005",
            "-0.005",
            "0.015",
            "2.675",
            "-2.675",
            "0.0049999",
            "999999.9950",
            "1.23456789",
            "-0.001",
        ];
        for c in cases {
            let x = d(c);
            for (rounding, strategy) in [
                (Rounding::HalfAwayFromZero, RoundingStrategy::MidpointAwayFromZero),
                (Rounding::Down, RoundingStrategy::ToZero),
            ] {
                let fast = round_small(x, 2, rounding).unwrap();
                assert_eq!(fast, x.round_dp_with_strategy(2, strategy), "{c} {rounding:?}");
            }
        }
        // Too large for a u64 mantissa: the fast path declines and rust_decimal rounds.
        assert_eq!(round_small(d("123456789012345678901.2345"), 2, Rounding::HalfAwayFromZero), None);
    }

    #[test]
    fn rounded_amounts_carry_the_minor_unit_places() {
        assert_eq!(Currency::USD.round(d("50"), Rounding::HalfAwayFromZero).to_string(), "50.00");
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(jpy.round(d("1234.5"), Rounding::HalfAwayFromZero).to_string(), "1235");
        let kwd = Currency::from_code("KWD").unwrap();
        assert_eq!(kwd.round(d("1.23456"), Rounding::HalfAwayFromZero).to_string(), "1.235");
    }

    #[test]
    fn shifting_the_decimal_point_is_exact() {
        assert_eq!(shift_decimal_point(d("0.10"), 2).unwrap(), d("10"));
        assert_eq!(shift_decimal_point(d("58"), -1).unwrap(), d("5.8"));
        assert_eq!(shift_decimal_point(d("0.35"), 2).unwrap().normalize().to_string(), "35");
        assert_eq!(shift_decimal_point(d("7"), 3).unwrap(), d("7000"));
        assert!(shift_decimal_point(d("79228162514264337593543950335"), 1).is_err());
        assert!(shift_decimal_point(d("1"), -29).is_err());
    }

    #[test]
    fn minor_units_round_trip() {
        let usd = Currency::USD;
        assert_eq!(usd.to_minor_units(d("2999.70")).unwrap(), 299_970);
        assert_eq!(usd.from_minor_units(299_970), d("2999.70"));
        assert_eq!(usd.to_minor_units(d("-0.01")).unwrap(), -1);
        assert!(usd.to_minor_units(d("0.001")).is_err());
        assert!(usd.to_minor_units(d("1000000000000000000")).is_err());
    }

    #[test]
    fn unknown_currencies_are_named_in_the_error() {
        let err = Currency::from_code("usd").unwrap_err();
        assert!(err.contains("unknown currency `usd`"), "{err}");
    }
}
