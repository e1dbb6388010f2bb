//! Invoice runs. An invoice is billing-core's `compute` of a closed period. The run never decides "exactly once"
//! itself: the store claims customers, writes each invoice with its credit consumption and the customer's next
//! open period in one transaction, and the unique (customer, period start) key refuses a second invoice.

use std::sync::Arc;
use std::time::Duration;

use billing_core::{compute, BillingPeriod};
use chrono::{DateTime, Utc};

use super::credit::{allocate, text};
use super::period::period_request;
use super::service::{instant, invalid, Failure, Outcome, Service};
use crate::secret::new_id;
use crate::store::{
    BatchDone, ClaimCursor, CreditEntry, Due, InvoiceRow, PriceFn, PricedInvoice, PricingError, RunRow,
};
use crate::time::micros;

/// The default prefix of invoice numbers.
pub const DEFAULT_PREFIX: &str = "INV-";

/// How a run works.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Concurrent workers in this process.
    pub workers: usize,
    /// Customers per transaction.
    pub batch: usize,
    /// The prefix of invoice numbers.
    pub prefix: String,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings { workers: 1, batch: 1000, prefix: DEFAULT_PREFIX.into() }
    }
}

/// A run as counted: `already_invoiced` is what the run found invoiced (before it, or by another run at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCounts {
    /// Customer periods ended by `as_of`, when the run was opened.
    pub eligible: i64,
    /// Invoiced by this run.
    pub invoiced: i64,
    /// Invoiced before or by another run.
    pub already_invoiced: i64,
    /// Could not be invoiced.
    pub failed: i64,
}

impl RunCounts {
    /// The counts of a stored run.
    pub fn of(run: &RunRow) -> RunCounts {
        let failed = i64::try_from(run.failures.len()).unwrap_or(i64::MAX);
        RunCounts {
            eligible: run.eligible,
            invoiced: run.invoiced,
            already_invoiced: (run.eligible - run.invoiced - failed).max(0),
            failed,
        }
    }
}

/// A use-case's failure as the run records it for a customer: rejected, with its sentence.
#[allow(clippy::needless_pass_by_value)] // used as `map_err(rejected)`
fn rejected(f: Failure) -> PricingError {
    PricingError::Rejected(f.to_string())
}

impl Service {
    /// Sets the end of the open period of customers stored before invoicing existed.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn backfill_open_periods(&self) -> Outcome<()> {
        for c in self.store.customers_without_open_until().await? {
            let period = Service::period_of(&c, instant(c.open_from)?)?;
            self.store.set_open_until(&c.id, micros(period.end())).await?;
        }
        Ok(())
    }

    /// Prices a customer's next period for an invoice run (sync: called inside the run's transaction).
    ///
    /// # Errors
    /// Why the period cannot be invoiced (recorded as the run's failure for that customer).
    pub fn price_due(&self, due: &Due, run: &RunRow, now: i64) -> Result<PricedInvoice, PricingError> {
        let c = &due.customer;
        let period = Service::period_of(c, instant(c.open_from).map_err(rejected)?).map_err(rejected)?;
        if micros(period.start()) != c.open_from {
            return Err(PricingError::NotAPeriodStart(c.open_from));
        }
        let book = self.book_at(period.start());
        let (request, available) = period_request(self, &book, due, period).map_err(rejected)?;
        let bill = compute(&book, &request).map_err(|e| rejected(e.into()))?;
        let id = new_id("in_").map_err(PricingError::Internal)?;
        let consumed = allocate(-bill.credit_applied, &available);
        let last_instant = micros(period.end()) - 1;
        let consumption = consumed
            .into_iter()
            .map(|(commitment_id, amount)| CreditEntry {
                commitment_id,
                invoice_id: id.clone(),
                kind: "consumption".into(),
                amount: text(-amount),
                at: last_instant,
            })
            .collect();
        let next = Service::period_of(c, period.end()).map_err(rejected)?;
        let invoice = InvoiceRow {
            id,
            customer_id: c.id.clone(),
            period_start: micros(period.start()),
            period_end: micros(period.end()),
            status: if run.issue { "issued".into() } else { "draft".into() },
            number: None,
            price_book_version: book.version().unwrap_or("").to_owned(),
            currency: book.currency().code().to_owned(),
            request: serde_json::to_string(&request).map_err(|e| PricingError::Internal(e.to_string()))?,
            bill: billing_core::stored::encode(&bill, &book).map_err(PricingError::Internal)?,
            total: text(bill.total),
            credit_applied: text(bill.credit_applied),
            amount_due: text(bill.amount_due),
            run_id: Some(run.id.clone()),
            created_at: now,
            issued_at: None,
            paid_at: None,
            voided_at: None,
        };
        Ok(PricedInvoice { invoice, consumption, next: (micros(next.start()), micros(next.end())) })
    }

    /// Customer periods that ended at or before `as_of`, over every customer.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn count_eligible(&self, as_of: DateTime<Utc>) -> Outcome<i64> {
        // Grouped by billing anchor (all a customer's periods follow from it): one calendar walk per anchor, not
        // per customer (100,000 customers on one anchor: 0.9 s → a GROUP BY).
        let mut count = 0_i64;
        for (anchor, customers) in self.store.anchor_counts(micros(as_of)).await? {
            let anchor = instant(anchor)?;
            let mut period = Service::period_of_anchor(anchor)?;
            let mut ended = 0_i64;
            while period.end() <= as_of {
                ended += 1;
                period = BillingPeriod::monthly(anchor, period.end()).map_err(|m| invalid("as_of", m))?;
            }
            count = count.saturating_add(ended.saturating_mul(customers));
        }
        Ok(count)
    }

    /// Opens the run of `as_of` (or joins the one running with the same `as_of` and `issue`).
    ///
    /// # Errors
    /// `Invalid` for an `as_of` in the future; storage errors.
    pub async fn open_run(&self, as_of: DateTime<Utc>, issue: bool) -> Outcome<(RunRow, bool)> {
        if as_of > self.now() {
            return Err(invalid("as_of", "must not be in the future: only ended periods are invoiced"));
        }
        let eligible = self.count_eligible(as_of).await?;
        let id = new_id("run_").map_err(|m| invalid("id", m))?;
        Ok(self.store.open_run(&id, micros(as_of), issue, eligible, micros(self.now())).await?)
    }

    /// Works on a run until no customer period it covers is left: `settings.workers` workers, each invoicing one
    /// batch of customers per transaction; then marks it completed. `progress` hears of every batch.
    ///
    /// # Errors
    /// A batch that keeps failing in storage (after retries).
    pub async fn work_run(
        self: &Arc<Self>,
        run: &RunRow,
        settings: &RunSettings,
        progress: Arc<dyn Fn(BatchDone) + Send + Sync>,
    ) -> Outcome<RunRow> {
        let mut workers = Vec::new();
        let cursor = Arc::new(ClaimCursor::default());
        for _ in 0..settings.workers.max(1) {
            let (service, run, settings, progress) =
                (self.clone(), run.clone(), settings.clone(), progress.clone());
            let cursor = Arc::clone(&cursor);
            workers.push(tokio::spawn(
                async move { service.worker(&run, &settings, &cursor, &*progress).await },
            ));
        }
        let mut first_error = None;
        for w in workers {
            let outcome = w.await.map_err(|e| invalid("worker", e.to_string())).and_then(|r| r);
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let now = self.now();
        let done = self.store.run(&run.id).await?.ok_or(Failure::NotFound("invoice run"))?;
        let counts = RunCounts::of(&done);
        let data = serde_json::json!({
            "id": done.id,
            "as_of": super::documents::written(done.as_of)?,
            "issue": done.issue,
            "eligible": counts.eligible,
            "invoiced": counts.invoiced,
            "already_invoiced": counts.already_invoiced,
            "failed": counts.failed,
            "created_at": super::documents::written(done.created_at)?,
            "finished_at": super::documents::written_at(now),
        });
        let event = super::webhooks::new_event("invoice_run.completed", None, &data, now)?;
        self.store.finish_run(&run.id, micros(now), &event).await?;
        self.store.run(&run.id).await?.ok_or(Failure::NotFound("invoice run"))
    }

    pub(super) async fn worker(
        self: &Arc<Self>,
        run: &RunRow,
        settings: &RunSettings,
        cursor: &ClaimCursor,
        progress: &(dyn Fn(BatchDone) + Send + Sync),
    ) -> Outcome<()> {
        let price: PriceFn = {
            let (service, run) = (Arc::clone(self), run.clone());
            Arc::new(move |due: &Due| service.price_due(due, &run, micros(service.now())))
        };
        let mut retries = 0;
        // Passes over the customers in id order, the workers of this process sharing one cursor: each claim
        // starts after the last customer any of them claimed. A customer with several ended periods has one
        // invoiced per pass; a pass that finds nothing left after the cursor starts the next from the first id.
        loop {
            let from = cursor.get();
            match self
                .store
                .invoice_batch(run, cursor, settings.batch, &settings.prefix, micros(self.now()), &price)
                .await
            {
                Ok(done) if done.claimed > 0 => {
                    retries = 0;
                    progress(done);
                }
                Ok(_) if !from.is_empty() => {
                    cursor.restart(&from);
                }
                Ok(_) => {
                    // Nothing to claim: done, unless another worker holds customers it has not committed yet
                    // (or a crashed one's transaction is still being rolled back): wait for them.
                    if self.store.pending(run.as_of, &run.id).await? == 0 {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    // A busy database, a deadlock or a serialization failure rolls the batch back whole; try again.
                    retries += 1;
                    if retries > 5 {
                        return Err(e.into());
                    }
                    tracing::warn!(error = %e, retries, "invoice batch failed, retrying");
                    tokio::time::sleep(Duration::from_millis(50 * retries)).await;
                }
            }
        }
    }

    /// An invoice run.
    ///
    /// # Errors
    /// `NotFound`; storage errors.
    pub async fn run(&self, id: &str) -> Outcome<RunRow> {
        self.store.run(id).await?.ok_or(Failure::NotFound("invoice run"))
    }
}
