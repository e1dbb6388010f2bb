//! Helpers shared by the unit tests of every module.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::quantity::Quantity;

/// A decimal from its text.
pub(crate) fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// A quantity from its text.
pub(crate) fn q(s: &str) -> Quantity {
    Quantity::new(d(s)).unwrap()
}
