//! Documents the service gives out beyond one HTTP answer: an invoice as `GET /v1/invoices/{id}` answers it, which
//! is also the `data` of the invoice events a webhook delivers (frozen as the invoice was at the event).

use billing_core::Bill;
use serde::Serialize;
use serde_json::Value;

use super::service::{instant, Failure, Outcome, Service};
use crate::store::{InvoiceRow, StoreError};

/// An instant as the API writes it: RFC 3339, UTC, `Z`, seconds' fraction only when there is one (answers, event
/// data and webhook bodies alike).
#[must_use]
pub fn written_at(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A stored instant (microseconds) as the API writes it.
///
/// # Errors
/// `Store(Corrupt)` for micros out of chrono's range.
pub fn written(micros: i64) -> Outcome<String> {
    Ok(written_at(instant(micros)?))
}

fn written_opt(micros: Option<i64>) -> Outcome<Option<String>> {
    micros.map(written).transpose()
}

/// `[start, end)`, as text.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodText {
    /// End (exclusive).
    pub end: String,
    /// Start.
    pub start: String,
}

/// An invoice: its request and bill (the stored form read back), its totals and lifecycle. Fields in alphabetical
/// order (the order the API always answered them in).
#[derive(Debug, Serialize)]
pub struct InvoiceDocument {
    amount_due: String,
    bill: Bill<'static>,
    created_at: String,
    credit_applied: String,
    currency: String,
    customer_id: String,
    id: String,
    issued_at: Option<String>,
    number: Option<String>,
    paid_at: Option<String>,
    period: PeriodText,
    price_book_version: String,
    request: Value,
    run_id: Option<String>,
    status: String,
    total: String,
    voided_at: Option<String>,
}

impl Service {
    /// An invoice as the API answers it.
    ///
    /// # Errors
    /// `Store(Corrupt)` when its stored bill or request does not read.
    pub fn invoice_document(&self, i: &InvoiceRow) -> Outcome<InvoiceDocument> {
        Ok(InvoiceDocument {
            amount_due: i.amount_due.clone(),
            bill: self.invoice_bill(i)?,
            created_at: written(i.created_at)?,
            credit_applied: i.credit_applied.clone(),
            currency: i.currency.clone(),
            customer_id: i.customer_id.clone(),
            id: i.id.clone(),
            issued_at: written_opt(i.issued_at)?,
            number: i.number.clone(),
            paid_at: written_opt(i.paid_at)?,
            period: PeriodText { end: written(i.period_end)?, start: written(i.period_start)? },
            price_book_version: i.price_book_version.clone(),
            request: serde_json::from_str(&i.request)
                .map_err(|e| Failure::Store(StoreError::Corrupt(format!("invoice {}: {e}", i.id))))?,
            run_id: i.run_id.clone(),
            status: i.status.clone(),
            total: i.total.clone(),
            voided_at: written_opt(i.voided_at)?,
        })
    }

    /// The invoice as it was right after the step an event of `kind` reports, given the invoice now. Exact because an
    /// invoice changes only by its lifecycle (draft → issued → paid | void), each step setting its own fields once:
    /// the steps after the event's are undone.
    ///
    /// # Errors
    /// As [`Service::invoice_document`].
    pub fn invoice_at_event(&self, kind: &str, now: &InvoiceRow) -> Outcome<InvoiceDocument> {
        let mut then = now.clone();
        match kind {
            "invoice.created" => {
                then.status = "draft".into();
                (then.number, then.issued_at, then.paid_at, then.voided_at) = (None, None, None, None);
            }
            "invoice.issued" => {
                then.status = "issued".into();
                (then.paid_at, then.voided_at) = (None, None);
            }
            "invoice.paid" => then.status = "paid".into(),
            _ => then.status = "void".into(),
        }
        self.invoice_document(&then)
    }
}
