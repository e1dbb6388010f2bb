//! Quotes and commitment advice under the price-book version in force: billing-core, and nothing else.

use billing_core::{compute, QuoteRequest};
use rust_decimal::Decimal;

use super::service::{Failure, Outcome, Service};
use crate::store::StoreError;

impl Service {
    /// A quote of a request's text against the version in force now (the one `tally quote` would use with it), as
    /// JSON bytes: serialized from the bill as it borrows the book, with no copy of its text.
    ///
    /// # Errors
    /// `Invalid` with every problem of the request.
    pub fn quote_json(&self, text: &str) -> Outcome<Vec<u8>> {
        let book = self.book_at(self.now());
        let request = QuoteRequest::from_json_for(&book, text)?;
        let bill = compute(&book, &request)?;
        serde_json::to_vec(&bill).map_err(|e| Failure::Store(StoreError::Corrupt(e.to_string())))
    }

    /// The commitment advice for a monthly estimate under the version in force.
    ///
    /// # Errors
    /// `Invalid` for a bad estimate or a book without a commitment offer; `Overflow` for a huge one.
    pub fn commitment_advice(&self, monthly_estimate: Decimal) -> Outcome<billing_core::CommitmentAdvice> {
        let book = self.book_at(self.now());
        let offer = book.commitment().ok_or_else(|| {
            Failure::Invalid(vec![billing_core::Issue::new(
                "monthly_estimate",
                "the price book in force offers no commitment",
            )])
        })?;
        Ok(billing_core::commitment_advice(offer, book.currency(), monthly_estimate)?)
    }
}
