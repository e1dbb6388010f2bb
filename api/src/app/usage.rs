//! The usage view of a customer's period: usage so far, the bill as the invoice would price it, the month-end
//! projection, and when each cap was and will be reached.

use std::collections::BTreeMap;
use std::sync::Arc;

use billing_core::{compute, Bill, BillingPeriod, PriceBook, Quantity, QuoteRequest};
use chrono::{DateTime, Utc};

use super::service::{from_micros, instant, quantity_micros, Failure, Outcome, Service};
use crate::store::{CustomerRow, LimitRow, StoreError};
use crate::time::micros;

/// A capped product, when its cap was reached, and when the projection reaches it.
pub type CapTimes = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A period's usage, bill and projection for one customer.
#[derive(Debug)]
pub struct UsageView {
    /// The period.
    pub period: BillingPeriod,
    /// Usage per meter.
    pub usage: BTreeMap<String, Quantity>,
    /// The period's quote request so far (usage, add-ons, caps, commitment): what `bill` prices.
    pub request: QuoteRequest,
    /// The bill of that usage.
    pub bill: Bill<'static>,
    /// Usage projected to the period's end.
    pub projected_usage: BTreeMap<String, Quantity>,
    /// Its bill.
    pub projected_bill: Bill<'static>,
    /// Per capped product: when the cap was reached, and when the projection reaches it.
    pub caps: Vec<CapTimes>,
}

impl Service {
    /// The price book, request and bill of a customer's stored usage in `period`, under the customer's caps
    /// (`limits`, as the caller read them) and commitment: the invoice the period would get if it ended now.
    pub(super) async fn bill_for(
        &self,
        customer: &CustomerRow,
        limits: &[LimitRow],
        period: BillingPeriod,
    ) -> Outcome<(Arc<PriceBook>, QuoteRequest, Bill<'static>)> {
        let book = self.book_at(period.start());
        let totals = self.store.usage_totals(&customer.id, micros(period.start())).await?;
        let commitments = self.store.commitments(&customer.id).await?;
        let credits =
            if commitments.is_empty() { Vec::new() } else { self.store.credit_entries(&customer.id).await? };
        let due = crate::store::Due {
            customer: customer.clone(),
            totals,
            limits: limits.to_vec(),
            commitments,
            credits,
        };
        let (request, _) = super::period::period_request(self, &book, &due, period)?;
        let bill = compute(&book, &request)?.into_owned();
        Ok((book, request, bill))
    }

    /// The usage view of a customer's period containing `at`.
    ///
    /// # Errors
    /// `NotFound`, `Invalid` when `at` is before the first period.
    pub async fn usage_view(&self, customer: &CustomerRow, at: DateTime<Utc>) -> Outcome<UsageView> {
        let period = Self::period_of(customer, at)?;
        let limits = self.store.limits(&customer.id).await?;
        // An invoiced period shows its invoice: what was billed, not a recomputation with today's ledger.
        let (book, request, bill) = match self.invoiced(customer, period).await? {
            Some(invoiced) => invoiced,
            None => self.bill_for(customer, &limits, period).await?,
        };
        let now = self.now();
        let projected_request = billing_core::project_request(&request, period, now, period.end())?;
        let projected_bill = compute(&book, &projected_request)?.into_owned();
        let mut caps = Vec::new();
        for limit in &bill.spend_limits {
            let reached_at = if limit.reached {
                self.cap_reached_at(customer, period, &book, &request, &limit.product).await?
            } else {
                None
            };
            let outlook = billing_core::cap_outlook(&book, &request, period, now, &limit.product)?;
            caps.push((limit.product.clone(), reached_at, outlook.projected_at));
        }
        Ok(UsageView {
            period,
            usage: request.usage.clone(),
            request,
            bill,
            projected_usage: projected_request.usage,
            projected_bill,
            caps,
        })
    }

    /// The price book, request and bill of a period's invoice, when it has one.
    pub(super) async fn invoiced(
        &self,
        customer: &CustomerRow,
        period: BillingPeriod,
    ) -> Outcome<Option<(Arc<PriceBook>, QuoteRequest, Bill<'static>)>> {
        if micros(period.start()) >= customer.open_from {
            return Ok(None);
        }
        let filter = crate::store::InvoiceFilter {
            customer_id: Some(customer.id.clone()),
            period_start: Some(micros(period.start())),
            status: None,
        };
        let Some(invoice) = self.store.invoices(&filter, None, 1).await?.into_iter().next() else {
            return Ok(None);
        };
        let corrupt = |e: String| Failure::Store(StoreError::Corrupt(format!("invoice {}: {e}", invoice.id)));
        let book = self.book_at(period.start());
        let request =
            QuoteRequest::from_json_for(&book, &invoice.request).map_err(|e| corrupt(e.to_string()))?;
        let bill = self.invoice_bill(&invoice)?;
        Ok(Some((book, request, bill)))
    }

    /// When a reached cap was reached: the time of the event after which the product's usage made it bind. Found by
    /// bisecting over the product's meters' events in time order, each step one quote.
    pub(super) async fn cap_reached_at(
        &self,
        customer: &CustomerRow,
        period: BillingPeriod,
        book: &PriceBook,
        request: &QuoteRequest,
        product: &str,
    ) -> Outcome<Option<DateTime<Utc>>> {
        let Some(p) = book.product(product) else { return Ok(None) };
        // One meter decides in the common case (the product's own); with several, the product's own meter is the
        // clock: the first event of it at which the cap binds given the other meters' full usage.
        let meter = &p.metered.meter;
        let Some(total) = request.usage.get(&**meter) else { return Ok(None) };
        let binds = |micros_of_meter: i64| -> Outcome<bool> {
            let mut r = request.clone();
            r.usage.insert(meter.to_string(), from_micros(micros_of_meter)?);
            let b = compute(book, &r)?;
            Ok(b.spend_limits.iter().any(|l| l.product == product && l.reached))
        };
        let total_micros = quantity_micros(*total)?;
        if !binds(total_micros)? {
            return Ok(None);
        }
        let (mut lo, mut hi) = (0_i64, total_micros);
        if binds(lo)? {
            return Ok(Some(period.start()));
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if binds(mid)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let at = self.store.time_total_reached(&customer.id, micros(period.start()), meter, hi).await?;
        at.map(instant).transpose()
    }
}
