//! Metered quantities.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A metered quantity: non-negative, at most [`Quantity::MAX`], with at most [`Quantity::MAX_SCALE`] decimal places.
///
/// The bounds make every computation on quantities exact: a quantity times a unit price fits a `Decimal`, and the
/// spend-limit search multiplies two scaled quantities in an `i128` (10^18 · 10^18 < 1.7 · 10^38).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity(Decimal);

impl Quantity {
    /// The largest quantity of one meter in one period: a trillion units.
    pub const MAX: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);
    /// The most decimal places a quantity may have (a millionth of a unit).
    pub const MAX_SCALE: u32 = 6;
    /// Zero.
    pub const ZERO: Quantity = Quantity(Decimal::ZERO);

    /// Validates a quantity.
    ///
    /// # Errors
    /// A message (lowercase, no period) when the value is negative, too large or too precise.
    ///
    /// # Examples
    /// ```
    /// use billing_core::Quantity;
    /// use rust_decimal::Decimal;
    /// assert!(Quantity::new(Decimal::new(15, 1)).is_ok());
    /// assert!(Quantity::new(Decimal::new(-1, 0)).is_err());
    /// ```
    pub fn new(value: Decimal) -> Result<Quantity, String> {
        let value = value.normalize();
        if value.is_sign_negative() && !value.is_zero() {
            Err(format!("must not be negative (got {value})"))
        } else if value > Self::MAX {
            Err(format!("must be at most {} (got {value})", Self::MAX))
        } else if value.scale() > Self::MAX_SCALE {
            Err(format!("must have at most {} decimal places (got {value})", Self::MAX_SCALE))
        } else {
            // `normalize` turns −0 into 0.
            Ok(Quantity(value.abs()))
        }
    }

    /// The value.
    pub fn value(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::wire::DecimalText::new(self.0).as_str())
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = crate::wire::Num::deserialize(d)?;
        Quantity::new(value.0).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn max_is_one_trillion() {
        assert_eq!(Quantity::MAX, Decimal::from_str("1000000000000").unwrap());
    }

    #[test]
    fn quantities_are_normalized_and_bounded() {
        assert_eq!(Quantity::new(Decimal::from_str("1.500").unwrap()).unwrap().to_string(), "1.5");
        assert!(Quantity::new(Decimal::from_str("1000000000000.1").unwrap()).is_err());
        assert!(Quantity::new(Decimal::from_str("0.0000001").unwrap()).is_err());
        assert_eq!(Quantity::new(Decimal::from_str("-0").unwrap()).unwrap(), Quantity::ZERO);
    }
}
