//! The crate's one error type.

use std::fmt;

/// One problem found in a price book or a request, with the JSON path of the field it concerns.
///
/// Validation never stops at the first problem: every issue found is reported, so a user fixes a price book in one
/// pass (Lago's validators do the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Where the problem is, as a JSON path such as `products[0].tiers[2].up_to` (empty for the document itself).
    pub path: String,
    /// What is wrong, as a lowercase fragment with no trailing period.
    pub message: String,
}

impl Issue {
    /// Builds an issue from a path and a message.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Issue { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything that can go wrong in billing-core: invalid input, or a number too large to compute exactly.
///
/// Deliberately not `#[non_exhaustive]`: the service maps each variant to an HTTP status with an exhaustive `match`,
/// and a new variant must force that decision to be made again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The price book is not valid JSON of the expected shape, or breaks a rule; every problem is listed.
    #[error("invalid price book: {}", join(.0))]
    InvalidPriceBook(Vec<Issue>),
    /// The request (usage, add-ons, limits, commitment, period) is not valid against the price book.
    #[error("invalid request: {}", join(.0))]
    InvalidRequest(Vec<Issue>),
    /// A result could not be represented exactly in 96 bits and 28 decimal places.
    ///
    /// Amounts are never rounded to make them fit: the computation fails instead.
    #[error("amount out of range while computing {context}: the exact result does not fit in 28 significant digits")]
    Overflow {
        /// What was being computed.
        context: &'static str,
    },
}

impl Error {
    /// The issues behind an input error, or an empty slice for [`Error::Overflow`].
    pub fn issues(&self) -> &[Issue] {
        match self {
            Error::InvalidPriceBook(issues) | Error::InvalidRequest(issues) => issues,
            Error::Overflow { .. } => &[],
        }
    }
}

fn join(issues: &[Issue]) -> String {
    let mut out = String::new();
    for (i, issue) in issues.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&issue.to_string());
    }
    out
}

/// The result type of billing-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
