//! Exact decimal arithmetic: every operation either returns the mathematically exact result or an error.
//!
//! `rust_decimal`'s `checked_mul`, `checked_add` and `checked_sub` return `None` only when the integer part
//! overflows; when the exact result needs more than 96 bits of mantissa they *silently round* it (rust_decimal
//! 1.x behaves so by design). For money that is an implicit rounding, which tally forbids. These wrappers detect it: an exact
//! product has the scale `a.scale + b.scale`, an exact sum `max(a.scale, b.scale)`; a smaller scale means digits
//! were dropped, and the operation fails with [`Error::Overflow`]. A product that fails the check is retried with
//! normalized inputs, so trailing zeros never cause a false alarm (and the common case pays for no normalizing).
//!
//! clippy's `disallowed-methods` (billing-core/clippy.toml) forbids the raw `checked_*` calls everywhere else.
#![allow(clippy::disallowed_methods)]

use rust_decimal::Decimal;

use crate::error::{Error, Result};

/// The most decimal places a `Decimal` can hold.
const MAX_SCALE: u32 = 28;

/// `a × b`, exactly.
///
/// # Errors
/// [`Error::Overflow`] when the exact product does not fit in a `Decimal`.
pub fn mul(a: Decimal, b: Decimal, context: &'static str) -> Result<Decimal> {
    if let Some(r) = exact_product(a, b) {
        return Ok(r);
    }
    // Trailing zeros may have made the scales too large to keep; retry without them before giving up.
    exact_product(a.normalize(), b.normalize()).ok_or(Error::Overflow { context })
}

fn exact_product(a: Decimal, b: Decimal) -> Option<Decimal> {
    let want = a.scale() + b.scale();
    match a.checked_mul(b) {
        Some(r) if want <= MAX_SCALE && (r.scale() == want || r.is_zero()) => Some(r),
        _ => None,
    }
}

/// `a + b`, exactly.
///
/// # Errors
/// [`Error::Overflow`] when the exact sum does not fit in a `Decimal`.
pub fn add(a: Decimal, b: Decimal, context: &'static str) -> Result<Decimal> {
    // rust_decimal returns the other operand unchanged when one is zero, whatever the scales: exact, so no check.
    if a.is_zero() {
        return Ok(b);
    }
    if b.is_zero() {
        return Ok(a);
    }
    let want = a.scale().max(b.scale());
    match a.checked_add(b) {
        Some(r) if r.scale() == want => Ok(r),
        _ => Err(Error::Overflow { context }),
    }
}

/// `a − b`, exactly.
///
/// # Errors
/// [`Error::Overflow`] when the exact difference does not fit in a `Decimal`.
pub fn sub(a: Decimal, b: Decimal, context: &'static str) -> Result<Decimal> {
    if b.is_zero() {
        return Ok(a);
    }
    if a.is_zero() {
        return Ok(-b);
    }
    let want = a.scale().max(b.scale());
    match a.checked_sub(b) {
        Some(r) if r.scale() == want => Ok(r),
        _ => Err(Error::Overflow { context }),
    }
}

/// Σ `values`, exactly.
///
/// # Errors
/// [`Error::Overflow`] when a partial sum does not fit in a `Decimal`.
pub fn sum(values: impl IntoIterator<Item = Decimal>, context: &'static str) -> Result<Decimal> {
    values.into_iter().try_fold(Decimal::ZERO, |acc, v| add(acc, v, context))
}

/// `floor(a / b)` for `a ≥ 0`, `b > 0`, computed exactly in scaled integers (no decimal division is involved).
///
/// # Errors
/// [`Error::Overflow`] when the scaled operands do not fit in an `i128`.
pub fn div_floor(a: Decimal, b: Decimal, context: &'static str) -> Result<Decimal> {
    let (n, d) = scaled_ratio(a, b, context)?;
    Ok(Decimal::from(n / d))
}

/// `ceil(a / b)` for `a ≥ 0`, `b > 0`, computed exactly in scaled integers.
///
/// # Errors
/// [`Error::Overflow`] when the scaled operands do not fit in an `i128`.
pub fn div_ceil(a: Decimal, b: Decimal, context: &'static str) -> Result<Decimal> {
    let (n, d) = scaled_ratio(a, b, context)?;
    let q = n / d;
    Ok(Decimal::from(if n % d == 0 { q } else { q + 1 }))
}

/// Writes `a / b` as the integer ratio `n / d` with the same value (both non-negative, `d > 0`).
fn scaled_ratio(a: Decimal, b: Decimal, context: &'static str) -> Result<(i128, i128)> {
    let (a, b) = (a.normalize(), b.normalize());
    if a.is_sign_negative() || b <= Decimal::ZERO {
        return Err(Error::Overflow { context });
    }
    // a = A / 10^sa and b = B / 10^sb, so a / b = (A · 10^sb) / (B · 10^sa).
    let n = a.mantissa().checked_mul(pow10(b.scale())).ok_or(Error::Overflow { context })?;
    let d = b.mantissa().checked_mul(pow10(a.scale())).ok_or(Error::Overflow { context })?;
    Ok((n, d))
}

/// `10^exp` as an `i128`; `exp` is a `Decimal` scale, so at most 28.
pub(crate) fn pow10(exp: u32) -> i128 {
    10_i128.pow(exp)
}

/// `value × num / den` rounded half away from zero to `places` decimal places, exactly: the rational is formed
/// in 256-bit integers and divided once, so nothing is cut to 28 digits before the one rounding.
///
/// # Errors
/// [`Error::Overflow`] when `den` is zero, `places` exceeds 28, `num × 10^(places − scale)` exceeds 2^128, or the
/// result does not fit in a `Decimal`.
pub fn mul_div_round(
    value: Decimal,
    num: u64,
    den: u64,
    places: u32,
    context: &'static str,
) -> Result<Decimal> {
    let overflow = || Error::Overflow { context };
    if den == 0 || places > MAX_SCALE {
        return Err(overflow());
    }
    // value = m / 10^s, so value × num / den at `places` = m · num · 10^places / (10^s · den), with the common
    // power of ten cancelled first so both sides stay within 2^160.
    let (m, s) = (value.mantissa().unsigned_abs(), value.scale());
    let (up, down) = if places >= s { (places - s, 0) } else { (0, s - places) };
    let scaled = u128::from(num).checked_mul(10_u128.pow(up)).ok_or_else(overflow)?;
    let numerator = U256::mul(m, scaled);
    let denominator = U256::mul(u128::from(den), 10_u128.pow(down));
    let (q, r) = numerator.div_rem(denominator);
    // Half away from zero on the magnitude: up when 2r ≥ d, i.e. r ≥ d − r.
    let q = if r >= denominator.sub(r) { q.add_one() } else { q };
    let q = q.to_u128().and_then(|q| i128::try_from(q).ok()).ok_or_else(overflow)?;
    let q = if value.is_sign_negative() { -q } else { q };
    Decimal::try_from_i128_with_scale(q, places).map_err(|_| overflow())
}

/// A 256-bit unsigned integer, just enough for [`mul_div_round`]: `(high, low)` halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct U256(u128, u128);

impl U256 {
    /// The full product of two `u128`s.
    fn mul(a: u128, b: u128) -> U256 {
        const LOW: u128 = u64::MAX as u128;
        let (a1, a0, b1, b0) = (a >> 64, a & LOW, b >> 64, b & LOW);
        let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
        // The middle column: at most 3·(2^64 − 1), fits.
        let mid = (p00 >> 64) + (p01 & LOW) + (p10 & LOW);
        let low = (p00 & LOW) | (mid << 64);
        let high = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
        U256(high, low)
    }

    fn sub(self, other: U256) -> U256 {
        let (low, borrow) = self.1.overflowing_sub(other.1);
        U256(self.0.wrapping_sub(other.0).wrapping_sub(u128::from(borrow)), low)
    }

    fn add_one(self) -> U256 {
        let (low, carry) = self.1.overflowing_add(1);
        U256(self.0.wrapping_add(u128::from(carry)), low)
    }

    fn bit(self, i: u32) -> bool {
        if i >= 128 {
            (self.0 >> (i - 128)) & 1 == 1
        } else {
            (self.1 >> i) & 1 == 1
        }
    }

    fn shl1_or(self, bit: bool) -> U256 {
        U256((self.0 << 1) | (self.1 >> 127), (self.1 << 1) | u128::from(bit))
    }

    fn set_bit(self, i: u32) -> U256 {
        if i >= 128 {
            U256(self.0 | (1 << (i - 128)), self.1)
        } else {
            U256(self.0, self.1 | (1 << i))
        }
    }

    /// Quotient and remainder by binary long division; `d` is non-zero and below 2^255 (so the running remainder,
    /// always below `d`, never loses its top bit when shifted).
    fn div_rem(self, d: U256) -> (U256, U256) {
        let (mut q, mut r) = (U256(0, 0), U256(0, 0));
        for i in (0..256).rev() {
            r = r.shl1_or(self.bit(i));
            if r >= d {
                r = r.sub(d);
                q = q.set_bit(i);
            }
        }
        (q, r)
    }

    fn to_u128(self) -> Option<u128> {
        (self.0 == 0).then_some(self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::d;

    #[test]
    fn mul_is_exact_for_money_sized_values() {
        assert_eq!(mul(d("0.0000343"), d("13000000"), "t").unwrap(), d("445.9"));
    }

    #[test]
    fn mul_fails_instead_of_rounding_when_digits_would_be_lost() {
        // rust_decimal's checked_mul would answer 1.0000000000000000000000000002 here.
        let x = d("1.0000000000000000000000000001");
        assert_eq!(mul(x, x, "t"), Err(Error::Overflow { context: "t" }));
    }

    #[test]
    fn add_fails_instead_of_rounding_when_digits_would_be_lost() {
        let big = d("79228162514264337593543950330");
        assert!(add(big, d("0.5"), "t").is_err());
        assert!(add(big, d("10"), "t").is_err());
        assert_eq!(add(d("1.25"), d("2.5"), "t").unwrap(), d("3.75"));
    }

    #[test]
    fn adding_zero_of_another_scale_is_exact() {
        assert_eq!(add(d("0.00"), d("0"), "t").unwrap(), d("0"));
        assert_eq!(add(d("0"), d("50.00"), "t").unwrap().to_string(), "50.00");
        assert_eq!(sub(d("0"), d("1.5"), "t").unwrap(), d("-1.5"));
        assert_eq!(sub(d("2.50"), d("0.0"), "t").unwrap(), d("2.5"));
        assert!(!sub(d("0"), d("0"), "t").unwrap().is_sign_negative(), "0 − 0 is not −0");
    }

    #[test]
    fn trailing_zeros_are_not_mistaken_for_lost_digits() {
        assert_eq!(mul(d("0.50"), d("0.20"), "t").unwrap(), d("0.1"));
        assert_eq!(mul(d("0"), d("0.0000000000000000000000000001"), "t").unwrap(), d("0"));
    }

    #[test]
    fn mul_div_round_is_exact_and_rounds_half_away_from_zero() {
        assert_eq!(mul_div_round(d("250"), 15, 30, 2, "t").unwrap().to_string(), "125.00");
        // 1 × 1/200 = 0.005 exactly: a midpoint, rounded away from zero.
        assert_eq!(mul_div_round(d("1"), 1, 200, 2, "t").unwrap(), d("0.01"));
        assert_eq!(mul_div_round(d("-1"), 1, 200, 2, "t").unwrap(), d("-0.01"));
        assert_eq!(mul_div_round(d("1"), 1, 201, 2, "t").unwrap(), d("0"));
        // The largest Decimal times a year of seconds over a year: no overflow on the way.
        let max = Decimal::MAX;
        assert_eq!(mul_div_round(max, 31_622_400, 31_622_400, 0, "t").unwrap(), max);
        let tiny = d("0.0000000000000000000000000001");
        assert_eq!(mul_div_round(tiny, u64::MAX, 1, 28, "t").unwrap(), d("0.0000000018446744073709551615"));
        assert!(mul_div_round(max, 2, 1, 0, "t").is_err());
        assert!(mul_div_round(max, 1, 0, 0, "t").is_err());
    }

    #[test]
    fn u256_multiplies_and_divides_like_u128_where_it_fits() {
        for (a, b, c) in
            [(7_u128, 9_u128, 4_u128), (u64::MAX.into(), u64::MAX.into(), 3), (1 << 100, 1 << 20, 1 << 119)]
        {
            let (q, r) = U256::mul(a, b).div_rem(U256::mul(c, 1));
            assert_eq!((q, r), (U256(0, a * b / c), U256(0, a * b % c)));
        }
        assert_eq!(U256::mul(u128::MAX, u128::MAX), U256(u128::MAX - 1, 1));
    }

    #[test]
    fn division_floor_and_ceil_are_exact() {
        assert_eq!(div_floor(d("10"), d("3"), "t").unwrap(), d("3"));
        assert_eq!(div_ceil(d("10"), d("3"), "t").unwrap(), d("4"));
        assert_eq!(div_ceil(d("9"), d("3"), "t").unwrap(), d("3"));
        assert_eq!(div_floor(d("2.5"), d("0.5"), "t").unwrap(), d("5"));
        assert_eq!(div_ceil(d("2.5000001"), d("0.5"), "t").unwrap(), d("6"));
    }
}
