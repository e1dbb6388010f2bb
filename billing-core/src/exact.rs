//! Exact decimal arithmetic: every operation either returns the mathematically exact result or an error.
//!
//! `rust_decimal`'s `checked_mul`, `checked_add` and `checked_sub` return `None` only when the integer part
//! overflows; when the exact result needs more than 96 bits of mantissa they *silently round* it (rust-decimal
//! issue #515). For money that is an implicit rounding, which tally forbids. These wrappers detect it: an exact
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
    fn division_floor_and_ceil_are_exact() {
        assert_eq!(div_floor(d("10"), d("3"), "t").unwrap(), d("3"));
        assert_eq!(div_ceil(d("10"), d("3"), "t").unwrap(), d("4"));
        assert_eq!(div_ceil(d("9"), d("3"), "t").unwrap(), d("3"));
        assert_eq!(div_floor(d("2.5"), d("0.5"), "t").unwrap(), d("5"));
        assert_eq!(div_ceil(d("2.5000001"), d("0.5"), "t").unwrap(), d("6"));
    }
}
