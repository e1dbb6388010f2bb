//! The invoice lifecycle: draft → issued (numbered, gap-free) → paid, or void (its credit returned).
use super::service::{Failure, Outcome, Service};
use crate::store::{InvoiceAction, InvoiceFilter, InvoiceRow, Transition};
use crate::time::micros;

impl Service {
    /// A lifecycle step of an invoice.
    ///
    /// # Errors
    /// `NotFound`; `InvalidState` when the invoice's status does not allow it.
    pub async fn transition(&self, id: &str, action: InvoiceAction, prefix: &str) -> Outcome<InvoiceRow> {
        match self.store.transition_invoice(id, action, prefix, micros(self.now())).await? {
            Transition::Done(invoice) => Ok(*invoice),
            Transition::NotFound => Err(Failure::NotFound("invoice")),
            Transition::InvalidState(status) => Err(Failure::InvalidState(format!(
                "an invoice in status `{status}` cannot be {}",
                match action {
                    InvoiceAction::Issue => "issued",
                    InvoiceAction::Pay => "paid",
                    InvoiceAction::Void => "voided",
                }
            ))),
        }
    }

    /// An invoice, as the caller may see it: a customer's key sees its own customer's invoices only (another's is
    /// not there for it: `NotFound`).
    ///
    /// # Errors
    /// `NotFound`; storage errors.
    pub async fn invoice(&self, id: &str, only_customer: Option<&str>) -> Outcome<InvoiceRow> {
        let invoice = self.store.invoice(id).await?.ok_or(Failure::NotFound("invoice"))?;
        if only_customer.is_some_and(|own| own != invoice.customer_id) {
            return Err(Failure::NotFound("invoice"));
        }
        Ok(invoice)
    }

    /// A page of invoices after `cursor` (an id), at most `limit`.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn invoices(
        &self,
        filter: &InvoiceFilter,
        cursor: Option<&str>,
        limit: i64,
    ) -> Outcome<Vec<InvoiceRow>> {
        Ok(self.store.invoices(filter, cursor, limit).await?)
    }
}
