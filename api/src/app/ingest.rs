//! Usage ingestion: the rules an event or report must meet (its customer, a meter the period's price book has, a
//! period, the clock's skew), then the store (duplicates decided by the database) and the alerts it crosses.

use std::collections::BTreeMap;
use std::sync::Arc;

use billing_core::money::Rounding;
use billing_core::{BillingPeriod, PriceBook, Quantity};
use chrono::{DateTime, Utc};

use rust_decimal::Decimal;
use serde_json::json;

use super::documents::written_at;
use super::service::{instant, quantity_micros, Outcome, Service};
use super::webhooks::new_event;
use crate::store::{AlertRow, CustomerRow, EventOutcome, LimitRow, NewEvent, NewReport};
use crate::time::micros;

/// Whether a batch holds events (added up) or reports (absolute values, the highest kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `{"events": [...]}`.
    Events,
    /// `{"reports": [...]}`.
    Reports,
}

/// One entry of a batch as the HTTP layer read it: each field read, or why it could not be (a message).
#[derive(Debug)]
pub struct Entry<'a> {
    /// Its index in the request.
    pub index: usize,
    /// `customer_id`.
    pub customer_id: Result<&'a str, String>,
    /// `meter`.
    pub meter: Result<&'a str, String>,
    /// `timestamp` (events) or `as_of` (reports).
    pub at: Result<DateTime<Utc>, String>,
    /// `quantity` (events) or `value` (reports).
    pub quantity: Result<Quantity, String>,
    /// `id` (events only).
    pub event_id: Result<&'a str, String>,
}

/// A refused entry of a batch, with a stable code.
#[derive(Debug, serde::Serialize)]
pub struct Rejected {
    /// `invalid_entry`, `unknown_customer`, `invalid_timestamp`, `in_the_future`, `before_first_period`,
    /// `unknown_meter`, `invalid_quantity` or `period_closed`.
    pub code: &'static str,
    /// Its index in the request.
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

/// How far ahead of the server's clock an event may be.
const MAX_SKEW_MINUTES: i64 = 5;

/// What the rules make of a batch's entries, before the store.
#[derive(Debug, Default)]
struct Checked {
    batch: Batch,
    rejected: Vec<Rejected>,
}

/// Events and reports of one batch, after validation.
#[derive(Debug, Default)]
struct Batch {
    /// Valid events, with their index in the request.
    events: Vec<(usize, NewEvent)>,
    /// Valid reports, with their index in the request.
    reports: Vec<(usize, NewReport)>,
}

/// A checked entry: an event or a report.
#[derive(Debug)]
enum Either {
    Event(NewEvent),
    Report(NewReport),
}

/// What a batch did.
#[derive(Debug, Default)]
pub struct Ingested {
    /// Newly stored.
    pub accepted: usize,
    /// Already stored.
    pub duplicates: usize,
    /// Indexes (in the request) of the entries refused because their period is invoiced.
    pub closed: Vec<usize>,
}

impl Service {
    /// Checks each entry against the rules (in this order: its customer, its instant, the server's clock, its
    /// period, the period's price book has its meter, its quantity, its id), stores those that pass, and lists every
    /// refused entry by index (sorted), those of an invoiced period included.
    ///
    /// # Errors
    /// Storage errors (then nothing of the batch is stored).
    pub async fn ingest_entries(
        &self,
        kind: EntryKind,
        entries: Vec<Result<Entry<'_>, Rejected>>,
    ) -> Outcome<(Ingested, Vec<Rejected>)> {
        let Checked { batch, mut rejected } = self.check_entries(kind, entries).await?;
        let done = self.ingest(&batch).await?;
        rejected.extend(done.closed.iter().map(|&index| Rejected {
            index,
            code: "period_closed",
            message: "its billing period is already invoiced".into(),
        }));
        rejected.sort_by_key(|r| r.index);
        Ok((done, rejected))
    }

    async fn check_entries(
        &self,
        kind: EntryKind,
        entries: Vec<Result<Entry<'_>, Rejected>>,
    ) -> Outcome<Checked> {
        let now = self.now();
        let mut customers: BTreeMap<String, Option<CustomerRow>> = BTreeMap::new();
        // The period and its price book, computed once per customer and period of the batch, not per event.
        let mut periods: BTreeMap<String, (BillingPeriod, Arc<PriceBook>)> = BTreeMap::new();
        let mut checked = Checked::default();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(r) => {
                    checked.rejected.push(r);
                    continue;
                }
            };
            let index = entry.index;
            let reject = |code: &'static str, message: String| Rejected { index, code, message };
            let customer_id = match entry.customer_id {
                Ok(c) => c,
                Err(m) => {
                    checked.rejected.push(reject("invalid_entry", m));
                    continue;
                }
            };
            if !customers.contains_key(customer_id) {
                customers.insert(customer_id.to_owned(), self.store.customer(customer_id).await?);
            }
            let Some(Some(customer)) = customers.get(customer_id) else {
                let message = format!("no customer `{}`", billing_core::error::echo(customer_id));
                checked.rejected.push(reject("unknown_customer", message));
                continue;
            };
            match self.check_entry(kind, entry, customer, now, &mut periods) {
                Ok(Either::Event(e)) => checked.batch.events.push((index, e)),
                Ok(Either::Report(r)) => checked.batch.reports.push((index, r)),
                Err(r) => checked.rejected.push(r),
            }
        }
        Ok(checked)
    }

    /// The rules of one entry of a known customer.
    fn check_entry(
        &self,
        kind: EntryKind,
        entry: Entry<'_>,
        customer: &CustomerRow,
        now: DateTime<Utc>,
        periods: &mut BTreeMap<String, (BillingPeriod, Arc<PriceBook>)>,
    ) -> Result<Either, Rejected> {
        let index = entry.index;
        let reject = |code: &'static str, message: String| Rejected { index, code, message };
        let meter = entry.meter.map_err(|m| reject("invalid_entry", m))?;
        let at = entry.at.map_err(|m| reject("invalid_timestamp", m))?;
        if at > now + chrono::Duration::minutes(MAX_SKEW_MINUTES) {
            return Err(reject(
                "in_the_future",
                format!("{at} is more than {MAX_SKEW_MINUTES} minutes ahead of the server's clock"),
            ));
        }
        let cached = periods.get(&customer.id).filter(|(p, _)| p.contains(at)).cloned();
        let (period, book) = match cached {
            Some(hit) => hit,
            None => {
                let period = Service::period_of(customer, at).map_err(|_| {
                    reject(
                        "before_first_period",
                        format!("{at} is before the customer's first billing period"),
                    )
                })?;
                let hit = (period, self.book_at(period.start()));
                periods.insert(customer.id.clone(), hit.clone());
                hit
            }
        };
        if !book.has_meter(meter) {
            return Err(reject(
                "unknown_meter",
                format!("no product or add-on is metered by `{}`", billing_core::error::echo(meter)),
            ));
        }
        let field = if kind == EntryKind::Events { "quantity" } else { "value" };
        let quantity = entry.quantity.map_err(|m| reject("invalid_quantity", format!("`{field}`: {m}")))?;
        let micros_of =
            quantity_micros(quantity).map_err(|_| reject("invalid_quantity", "out of range".into()))?;
        let period_start = micros(period.start());
        Ok(match kind {
            EntryKind::Events => Either::Event(NewEvent {
                customer_id: customer.id.clone(),
                event_id: entry.event_id.map_err(|m| reject("invalid_entry", m))?.to_owned(),
                meter: meter.to_owned(),
                quantity_micros: micros_of,
                occurred_at: micros(at),
                period_start,
            }),
            EntryKind::Reports => Either::Report(NewReport {
                customer_id: customer.id.clone(),
                meter: meter.to_owned(),
                value_micros: micros_of,
                period_start,
            }),
        })
    }

    /// Stores a validated batch: events deduplicated by the database, reports merged, alerts detected.
    ///
    /// # Errors
    /// Storage errors (then nothing of the batch is stored).
    async fn ingest(&self, batch: &Batch) -> Outcome<Ingested> {
        let now = self.now();
        // The caps' state before, for the alerts this batch crosses.
        let touched: BTreeMap<&str, Vec<i64>> = batch
            .events
            .iter()
            .map(|(_, e)| (e.customer_id.as_str(), e.period_start))
            .chain(batch.reports.iter().map(|(_, r)| (r.customer_id.as_str(), r.period_start)))
            .fold(BTreeMap::new(), |mut m, (c, p)| {
                let periods: &mut Vec<i64> = m.entry(c).or_default();
                if !periods.contains(&p) {
                    periods.push(p);
                }
                m
            });
        let events: Vec<NewEvent> = batch.events.iter().map(|(_, e)| e.clone()).collect();
        let stored = if events.is_empty() {
            Vec::new()
        } else {
            self.store.insert_events(&events, micros(now)).await?
        };
        let mut closed: Vec<usize> = batch
            .events
            .iter()
            .zip(&stored)
            .filter(|(_, s)| **s == EventOutcome::Closed)
            .map(|((index, _), _)| *index)
            .collect();
        let mut reported = 0;
        if !batch.reports.is_empty() {
            let reports: Vec<NewReport> = batch.reports.iter().map(|(_, r)| r.clone()).collect();
            for ((index, _), open) in
                batch.reports.iter().zip(self.store.insert_reports(&reports, micros(now)).await?)
            {
                if open {
                    reported += 1;
                } else {
                    closed.push(*index);
                }
            }
        }
        let accepted = stored.iter().filter(|s| **s == EventOutcome::Stored).count() + reported;
        for (customer, periods) in touched {
            // Read once: whether there is anything to alert on, and the caps each period is priced with.
            let limits = self.store.limits(customer).await?;
            if limits.is_empty() {
                continue;
            }
            let row = self.customer(customer).await?;
            for period_start in periods {
                self.record_alerts(&row, &limits, instant(period_start)?, now).await?;
            }
        }
        Ok(Ingested {
            accepted,
            duplicates: stored.iter().filter(|s| **s == EventOutcome::Duplicate).count(),
            closed,
        })
    }

    /// Records every alert threshold a customer's caps have reached in the period starting at `start`, once.
    pub(super) async fn record_alerts(
        &self,
        customer: &CustomerRow,
        limits: &[LimitRow],
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Outcome<()> {
        let period = Self::period_of(customer, start)?;
        let (book, request, bill) = self.bill_for(customer, limits, period).await?;
        let currency = bill.currency.code().to_owned();
        for limit in &bill.spend_limits {
            for threshold in &limit.alerts {
                let alert = AlertRow {
                    period_start: micros(period.start()),
                    product: limit.product.clone(),
                    threshold: threshold.to_string(),
                    detected_at: micros(now),
                };
                let period_text =
                    json!({"start": written_at(period.start()), "end": written_at(period.end())});
                let data = json!({
                    "customer_id": customer.id,
                    "product": limit.product,
                    "threshold": threshold.to_string(),
                    "period": period_text,
                    "amount": bill.currency.round(limit.net_exact_amount, Rounding::HalfAwayFromZero).to_string(),
                    "cap": limit.limit.to_string(),
                    "currency": currency,
                    "detected_at": written_at(now),
                });
                let mut events = vec![new_event("spend_alert.crossed", Some(&customer.id), &data, now)?];
                if *threshold >= Decimal::ONE {
                    let reached_at = if limit.reached {
                        self.cap_reached_at(customer, period, &book, &request, &limit.product).await?
                    } else {
                        None
                    };
                    let data = json!({
                        "customer_id": customer.id,
                        "product": limit.product,
                        "cap": limit.limit.to_string(),
                        "currency": currency,
                        "period": period_text,
                        "reached_at": written_at(reached_at.unwrap_or(now)),
                    });
                    events.push(new_event("spend_cap.reached", Some(&customer.id), &data, now)?);
                }
                self.store.insert_alert(&customer.id, &alert, &events).await?;
            }
        }
        Ok(())
    }
}
