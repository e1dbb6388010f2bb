//! The crate's one error type, and the bounds on what an error may say.
//!
//! Validation reports every problem, but an error stays small whatever the input: at most [`MAX_ISSUES`] issues
//! are listed, then one `… and N more`; any name or value from the input is echoed cut to [`MAX_ECHO`] characters.

use std::borrow::Cow;
use std::fmt;

/// The most issues an error lists; the rest are counted in a last `… and N more` issue.
pub const MAX_ISSUES: usize = 50;

/// The most characters of a name or value from the input that an error message repeats.
pub const MAX_ECHO: usize = 64;

/// `text` as an error message may repeat it: cut to [`MAX_ECHO`] characters, with `…` when cut.
pub fn echo(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_ECHO) {
        None => Cow::Borrowed(text),
        Some((at, _)) => Cow::Owned(format!("{}…", &text[..at])),
    }
}

/// A message from a parser (serde) with every quoted or back-quoted stretch of input cut by [`echo`].
pub(crate) fn clip_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(512));
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let close = rest.find(quote).unwrap_or(rest.len());
        out.push_str(&echo(&rest[..close]));
        rest = &rest[close..];
        if let Some(q) = rest.chars().next() {
            out.push(q);
            rest = &rest[q.len_utf8()..];
        }
    }
    out.push_str(rest);
    out
}

/// A JSON path (`products[0].tiers[1].up_to`) with every segment cut by [`echo`]: a key from the input is repeated
/// at most [`MAX_ECHO`] characters long.
pub(crate) fn clip_path(path: &str) -> String {
    path.split('.').map(echo).collect::<Vec<_>>().join(".")
}

/// Collects issues in order, keeping the first [`MAX_ISSUES`] and counting the rest.
#[derive(Debug, Default)]
pub(crate) struct Report {
    issues: Vec<Issue>,
    more: usize,
}

impl Report {
    /// Records an issue.
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(Issue::new(path, message));
        } else {
            self.more += 1;
        }
    }

    /// How many issues were recorded, listed or counted.
    pub(crate) fn count(&self) -> usize {
        self.issues.len() + self.more
    }

    /// Whether an issue is listed at `path`.
    pub(crate) fn has_issue_at(&self, path: &str) -> bool {
        self.issues.iter().any(|i| i.path == path)
    }

    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.issues.is_empty()
    }

    /// The issues, with a last `… and N more` when some were only counted.
    pub(crate) fn finish(mut self) -> Vec<Issue> {
        if self.more > 0 {
            self.issues.push(Issue::new("", format!("… and {} more", self.more)));
        }
        self.issues
    }
}

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
