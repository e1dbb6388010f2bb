//! The service's use-cases: load what the store holds, ask billing-core what it costs, store what happened.
//!
//! Handlers (`http`) parse and present; this module owns the rules of the service (periods, caps in force, what an
//! event may be) and never computes a price itself: every amount comes from [`billing_core::compute`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use billing_core::{
    compute, project_month_end, AddonChoice, Bill, BillingPeriod, PriceBook, Quantity, QuoteRequest, Rounding,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::store::{
    AddonSince, AlertRow, CustomerRow, EventOutcome, LimitRow, NewEvent, NewReport, Store, StoreError,
    StoredBook,
};

/// Where "now" comes from: the system clock in production, a pinned instant in tests.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that says what it is told (tests).
#[derive(Debug)]
pub struct FixedClock(pub RwLock<DateTime<Utc>>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A failure of a use-case, before it becomes an HTTP answer.
#[derive(Debug)]
pub enum Failure {
    /// The input breaks a rule: every problem, with its path.
    Invalid(Vec<billing_core::Issue>),
    /// Nothing by that id.
    NotFound(&'static str),
    /// The id or version is taken.
    Conflict(String),
    /// A number too large to compute exactly.
    Overflow(billing_core::Error),
    /// The period is already invoiced.
    Closed(String),
    /// The resource's state does not allow that.
    InvalidState(String),
    /// Storage failed.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<billing_core::Error> for Failure {
    fn from(e: billing_core::Error) -> Self {
        // Exhaustive on purpose: a new core error must be mapped here.
        match e {
            billing_core::Error::InvalidPriceBook(issues) | billing_core::Error::InvalidRequest(issues) => {
                Failure::Invalid(issues)
            }
            e @ billing_core::Error::Overflow { .. } => Failure::Overflow(e),
        }
    }
}

/// The result of a use-case.
pub type Outcome<T> = Result<T, Failure>;

/// A validation failure of one field.
pub fn invalid(path: &str, message: impl Into<String>) -> Failure {
    Failure::Invalid(vec![billing_core::Issue::new(path, message)])
}

/// Microseconds since the epoch, as stored.
pub fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// An instant from stored microseconds.
pub fn instant(micros: i64) -> Outcome<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| Failure::Store(StoreError::Corrupt("instant".into())))
}

/// A quantity as stored: integer micro-units.
pub fn quantity_micros(q: Quantity) -> Outcome<i64> {
    let scaled = billing_core::money::shift_decimal_point(q.value(), 6).map_err(Failure::from)?;
    i64::try_from(scaled.trunc()).map_err(|_| invalid("quantity", "too large"))
}

/// A stored quantity.
pub fn from_micros(micros: i64) -> Outcome<Quantity> {
    Quantity::new(Decimal::new(micros, 6))
        .map_err(|m| invalid("usage", format!("the period's usage is out of range: {m}")))
}

/// A published price-book version.
#[derive(Debug)]
pub struct Version {
    /// From when it prices periods.
    pub in_force_at: DateTime<Utc>,
    /// The book.
    pub book: Arc<PriceBook>,
}

/// The service's state: the store, the clock, and the price-book versions (read once, kept in memory).
#[derive(Debug)]
pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    versions: RwLock<Arc<Vec<Arc<Version>>>>,
    /// The book the service started with: in force when no stored version is (never, once started).
    fallback: Arc<PriceBook>,
}

/// Events and reports of one batch, after validation.
#[derive(Debug, Default)]
pub struct Batch {
    /// Valid events, with their index in the request.
    pub events: Vec<(usize, NewEvent)>,
    /// Valid reports, with their index in the request.
    pub reports: Vec<(usize, NewReport)>,
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

/// A capped product, when its cap was reached, and when the projection reaches it.
pub type CapTimes = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A period's usage, bill and projection for one customer.
#[derive(Debug)]
pub struct UsageView {
    /// The period.
    pub period: BillingPeriod,
    /// Usage per meter.
    pub usage: BTreeMap<String, Quantity>,
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
    /// A service over a migrated store; loads the published price books, publishing `first` when there is none.
    ///
    /// # Errors
    /// Storage errors, or a stored book that no longer parses.
    pub async fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>, first: &PriceBook) -> Outcome<Service> {
        if store.price_books().await?.is_empty() {
            let in_force_at = first.effective_from().unwrap_or_else(|| clock.now());
            let stored = StoredBook {
                version: first.version().unwrap_or("1").to_owned(),
                in_force_at: micros(in_force_at),
                body: serde_json::to_string(first).map_err(|e| invalid("price_book", e.to_string()))?,
            };
            store.insert_price_book(&stored, micros(clock.now())).await?;
        }
        let service = Service {
            store,
            clock,
            versions: RwLock::new(Arc::new(Vec::new())),
            fallback: Arc::new(first.clone()),
        };
        service.reload_books().await?;
        service.backfill_open_periods().await?;
        Ok(service)
    }

    async fn reload_books(&self) -> Outcome<()> {
        let mut versions = Vec::new();
        for stored in self.store.price_books().await? {
            let book = PriceBook::from_json(&stored.body).map_err(|e| {
                Failure::Store(StoreError::Corrupt(format!("price book {}: {e}", stored.version)))
            })?;
            versions
                .push(Arc::new(Version { in_force_at: instant(stored.in_force_at)?, book: Arc::new(book) }));
        }
        *self.versions.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(versions);
        Ok(())
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Every published version, oldest in force first.
    pub fn versions(&self) -> Arc<Vec<Arc<Version>>> {
        self.versions.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The version in force at `at`: the latest whose `in_force_at` is not after it; before the first, the first.
    pub fn book_at(&self, at: DateTime<Utc>) -> Arc<PriceBook> {
        let versions = self.versions();
        versions
            .iter()
            .rev()
            .find(|v| v.in_force_at <= at)
            .or_else(|| versions.first())
            .map_or_else(|| self.fallback.clone(), |v| v.book.clone())
    }

    /// The published version labelled `version`.
    pub fn book_version(&self, version: &str) -> Option<Arc<PriceBook>> {
        self.versions().iter().find(|v| v.book.version() == Some(version)).map(|v| v.book.clone())
    }

    /// An invoice's bill, read from its stored form against the price-book version it names.
    ///
    /// # Errors
    /// `Store(Corrupt)` when the version is not published or the stored bill does not read.
    pub fn invoice_bill(&self, invoice: &crate::store::InvoiceRow) -> Outcome<Bill<'static>> {
        let corrupt = |e: String| Failure::Store(StoreError::Corrupt(format!("invoice {}: {e}", invoice.id)));
        let book = self.book_version(&invoice.price_book_version).ok_or_else(|| {
            corrupt(format!("its price-book version `{}` is not published", invoice.price_book_version))
        })?;
        billing_core::stored::decode(&invoice.bill, &book).map_err(corrupt)
    }

    /// Publishes a new version.
    ///
    /// # Errors
    /// `Invalid` for a book without a version label, `Conflict` when the label is taken.
    pub async fn publish(
        &self,
        book: &PriceBook,
        in_force_at: Option<DateTime<Utc>>,
    ) -> Outcome<Arc<Version>> {
        let Some(version) = book.version() else {
            return Err(invalid("price_book.version", "is required to publish a version"));
        };
        let in_force_at = in_force_at.or(book.effective_from()).unwrap_or_else(|| self.now());
        let stored = StoredBook {
            version: version.to_owned(),
            in_force_at: micros(in_force_at),
            body: serde_json::to_string(book).map_err(|e| invalid("price_book", e.to_string()))?,
        };
        if !self.store.insert_price_book(&stored, micros(self.now())).await? {
            return Err(Failure::Conflict(format!("price-book version `{version}` is already published")));
        }
        self.reload_books().await?;
        Ok(Arc::new(Version { in_force_at, book: Arc::new(book.clone()) }))
    }

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

    /// Creates a customer with its first key's hash.
    ///
    /// # Errors
    /// `Invalid` add-ons, `Conflict` when the id is taken.
    pub async fn create_customer(
        &self,
        id: &str,
        name: &str,
        anchor: Option<DateTime<Utc>>,
        addons: &[String],
        key_hash: &str,
    ) -> Outcome<CustomerRow> {
        let now = self.now();
        let anchor = anchor.unwrap_or_else(|| first_of_month(now));
        let row = CustomerRow {
            id: id.to_owned(),
            name: name.to_owned(),
            billing_anchor: micros(anchor),
            addons: self.check_addons(addons, &[], micros(anchor), now)?,
            created_at: micros(now),
            updated_at: micros(now),
            open_from: micros(anchor),
            open_until: Some(micros(Self::period_of_anchor(anchor)?.end())),
        };
        if !self.store.insert_customer(&row, key_hash).await? {
            return Err(Failure::Conflict(format!("customer `{id}` already exists")));
        }
        Ok(row)
    }

    /// The add-on choices `keys` against the book in force, keeping the `since` of those already chosen. An add-on
    /// switched off keeps its entry, with `until` = now, while a period it was on in is not invoiced yet
    /// (`open_from`): that period bills it up to then. Switched on again in the same period, it resumes its entry.
    fn check_addons(
        &self,
        keys: &[String],
        before: &[AddonSince],
        open_from: i64,
        now: DateTime<Utc>,
    ) -> Outcome<Vec<AddonSince>> {
        let book = self.book_at(now);
        let mut issues = Vec::new();
        let mut out: Vec<AddonSince> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let known = book.addon(key).is_some_and(|a| a.optional) || book.platform_addon(key).is_some();
            if !known {
                issues.push(billing_core::Issue::new(
                    format!("addons[{i}]"),
                    format!(
                        "`{}` is not an optional or platform add-on of the price book",
                        billing_core::error::echo(key)
                    ),
                ));
            } else if out.iter().any(|a| a.key == *key && a.until.is_none()) {
                issues.push(billing_core::Issue::new(
                    format!("addons[{i}]"),
                    format!("`{key}` is chosen twice"),
                ));
            } else {
                // Still on, or switched off in a period not invoiced yet (resumed: the gap is billed too, as one
                // add-on on for the whole span): its entry goes on.
                let resumed = before.iter().find(|a| a.key == *key && a.until.is_none_or(|u| u > open_from));
                let since = resumed.map_or(micros(now), |a| a.since);
                out.push(AddonSince { key: key.clone(), since, until: None });
            }
        }
        // Switched off now: kept, ended now, while a period it was on in is still to be invoiced.
        for a in before {
            let still_on = out.iter().any(|o| o.key == a.key);
            let ended = a.until.unwrap_or(micros(now));
            if !still_on && ended > open_from && a.since < ended {
                out.push(AddonSince { key: a.key.clone(), since: a.since, until: Some(ended) });
            }
        }
        if issues.is_empty() {
            Ok(out)
        } else {
            Err(Failure::Invalid(issues))
        }
    }

    /// A customer.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn customer(&self, id: &str) -> Outcome<CustomerRow> {
        self.store.customer(id).await?.ok_or(Failure::NotFound("customer"))
    }

    /// Changes a customer's name and add-ons.
    ///
    /// # Errors
    /// `NotFound`, or `Invalid` add-ons.
    pub async fn update_customer(
        &self,
        id: &str,
        name: Option<String>,
        addons: Option<Vec<String>>,
    ) -> Outcome<CustomerRow> {
        let mut row = self.customer(id).await?;
        let now = self.now();
        if let Some(name) = name {
            row.name = name;
        }
        if let Some(addons) = addons {
            row.addons = self.check_addons(&addons, &row.addons, row.open_from, now)?;
        }
        row.updated_at = micros(now);
        self.store.update_customer(&row).await?;
        Ok(row)
    }

    /// A customer's first billing period.
    ///
    /// # Errors
    /// `Invalid` when the anchor is out of range.
    pub fn period_of_anchor(anchor: DateTime<Utc>) -> Outcome<BillingPeriod> {
        BillingPeriod::monthly(anchor, anchor).map_err(|m| invalid("billing_anchor", m))
    }

    /// The billing period of a customer containing `at`.
    ///
    /// # Errors
    /// `Invalid` when `at` is before the customer's first period.
    pub fn period_of(customer: &CustomerRow, at: DateTime<Utc>) -> Outcome<BillingPeriod> {
        BillingPeriod::monthly(instant(customer.billing_anchor)?, at).map_err(|m| invalid("at", m))
    }

    /// Stores a validated batch: events deduplicated by the database, reports merged, alerts detected.
    ///
    /// # Errors
    /// Storage errors (then nothing of the batch is stored).
    pub async fn ingest(&self, batch: &Batch) -> Outcome<Ingested> {
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
            for ((index, _), open) in batch.reports.iter().zip(self.store.insert_reports(&reports).await?) {
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
    async fn record_alerts(
        &self,
        customer: &CustomerRow,
        limits: &[LimitRow],
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Outcome<()> {
        let period = Self::period_of(customer, start)?;
        let (_, _, bill) = self.bill_for(customer, limits, period).await?;
        for limit in &bill.spend_limits {
            for threshold in &limit.alerts {
                let alert = AlertRow {
                    period_start: micros(period.start()),
                    product: limit.product.clone(),
                    threshold: threshold.to_string(),
                    detected_at: micros(now),
                };
                self.store.insert_alert(&customer.id, &alert).await?;
            }
        }
        Ok(())
    }

    /// The price book, request and bill of a customer's stored usage in `period`, under the customer's caps
    /// (`limits`, as the caller read them) and commitment: the invoice the period would get if it ended now.
    async fn bill_for(
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
        let (request, _) = crate::invoicing::period_request(self, &book, &due, period)?;
        let bill = compute(&book, &request)?.into_owned();
        Ok((book, request, bill))
    }

    /// The request of a customer's usage (`totals`) in `period`: add-ons over the period, caps in force.
    ///
    /// # Errors
    /// `Invalid` usage out of range.
    pub fn usage_request(
        &self,
        book: &PriceBook,
        customer: &CustomerRow,
        totals: &[crate::store::MeterTotal],
        limits: &[LimitRow],
        period: BillingPeriod,
    ) -> Outcome<QuoteRequest> {
        let mut usage = BTreeMap::new();
        for total in totals {
            if book.has_meter(&total.meter) {
                let sum = total
                    .events_micros
                    .checked_add(total.reported_micros)
                    .ok_or_else(|| invalid("usage", "the period's usage is out of range"))?;
                usage.insert(total.meter.clone(), from_micros(sum)?);
            }
        }
        Ok(QuoteRequest {
            usage,
            addons: self.addon_choices(customer, book, period)?,
            limits: caps_in_force(limits, period),
            period: Some(period),
            ..QuoteRequest::default()
        })
    }

    /// A customer's add-ons as a request for `period`: platform add-ons switched on or off during it are prorated
    /// to the part of the period they were on.
    fn addon_choices(
        &self,
        customer: &CustomerRow,
        book: &PriceBook,
        period: BillingPeriod,
    ) -> Outcome<Vec<AddonChoice>> {
        let mut choices: Vec<AddonChoice> = Vec::new();
        for a in &customer.addons {
            let since = instant(a.since)?;
            let until = a.until.map(instant).transpose()?;
            if since >= period.end() || until.is_some_and(|u| u <= period.start() || u <= since) {
                continue;
            }
            if choices.iter().any(|c| c.key() == a.key) {
                continue;
            }
            let choice = if book.platform_addon(&a.key).is_some() {
                let from = (since > period.start()).then_some(since);
                let until = until.filter(|u| *u < period.end());
                if from.is_none() && until.is_none() {
                    AddonChoice::Key(a.key.clone())
                } else {
                    AddonChoice::Part { key: a.key.clone(), from, until }
                }
            } else if book.addon(&a.key).is_some() {
                AddonChoice::Key(a.key.clone())
            } else {
                continue;
            };
            choices.push(choice);
        }
        Ok(choices)
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
        let project = |until: DateTime<Utc>| -> Outcome<QuoteRequest> {
            let mut r = request.clone();
            if now > period.start() && until > now {
                let window = BillingPeriod::new(period.start(), until).map_err(|m| invalid("at", m))?;
                for q in r.usage.values_mut() {
                    *q = project_month_end(*q, window, now)?;
                }
            }
            Ok(r)
        };
        let projected_request = project(period.end())?;
        let projected_bill = compute(&book, &projected_request)?.into_owned();
        let mut caps = Vec::new();
        for limit in &bill.spend_limits {
            let reached_at = if limit.reached {
                self.cap_reached_at(customer, period, &book, &request, &limit.product).await?
            } else {
                None
            };
            let projected_reaches =
                projected_bill.spend_limits.iter().any(|l| l.product == limit.product && l.reached);
            let projected_at = if limit.reached || !projected_reaches || now >= period.end() {
                None
            } else {
                // The first second at which the projected usage makes the cap bind: a bisection over the rest of
                // the period, each step one quote.
                let binds = |t: DateTime<Utc>| -> Outcome<bool> {
                    let b = compute(&book, &project(t)?)?;
                    Ok(b.spend_limits.iter().any(|l| l.product == limit.product && l.reached))
                };
                // Whole seconds since the period's start: the answer is the first second at which it binds.
                let at = |s: i64| period.start() + chrono::Duration::seconds(s);
                let (mut lo, mut hi) =
                    ((now.max(period.start()) - period.start()).num_seconds(), period.seconds());
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if binds(at(mid))? {
                        hi = mid;
                    } else {
                        lo = mid;
                    }
                }
                Some(at(hi))
            };
            caps.push((limit.product.clone(), reached_at, projected_at));
        }
        Ok(UsageView {
            period,
            usage: request.usage.clone(),
            bill,
            projected_usage: projected_request.usage,
            projected_bill,
            caps,
        })
    }

    /// The price book, request and bill of a period's invoice, when it has one.
    async fn invoiced(
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
    async fn cap_reached_at(
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

    /// Sets and removes caps, after the problems the caller already found (`issues`), reporting them all together.
    /// A cap lowered below what the current period already bills is pinned at that amount
    /// (rounded up to whole units) for this period, and applies in full from the next.
    ///
    /// # Errors
    /// `Invalid` (unknown product, a cap outside the book's rules), `NotFound`.
    pub async fn set_limits(
        &self,
        customer: &CustomerRow,
        changes: Vec<(String, Option<Decimal>)>,
        mut issues: Vec<billing_core::Issue>,
    ) -> Outcome<()> {
        let now = self.now();
        let book = self.book_at(now);
        let mut valid = Vec::new();
        for (product, amount) in changes {
            let path = format!("limits.{}", billing_core::error::echo(&product));
            if book.product(&product).is_none() {
                issues.push(billing_core::Issue::new(
                    path,
                    format!("no product `{}` in the price book", billing_core::error::echo(&product)),
                ));
                continue;
            }
            match amount {
                None => valid.push((product, None)),
                Some(a) => match billing_core::SpendLimit::new(a, book.spend_limits()) {
                    Err(m) => issues.push(billing_core::Issue::new(path, m)),
                    Ok(limit) => {
                        let whole =
                            i64::try_from(limit.amount().trunc()).map_err(|_| invalid(&path, "too large"))?;
                        valid.push((product, Some(whole)));
                    }
                },
            }
        }
        if !issues.is_empty() {
            return Err(Failure::Invalid(issues));
        }
        // What this period bills now, per product, to pin a lowered cap.
        let period = Self::period_of(customer, now).ok();
        let current = match period {
            Some(p) => Some(self.bill_for(customer, &self.store.limits(&customer.id).await?, p).await?.2),
            None => None,
        };
        let mut rows = Vec::new();
        for (product, amount) in valid {
            let row = amount.map(|amount| {
                let billed = current.as_ref().and_then(|bill| {
                    let list = billing_core::exact::sum(
                        bill.lines
                            .iter()
                            .filter(|l| l.product.as_deref() == Some(&product))
                            .map(|l| l.amount),
                        "current bill",
                    )
                    .ok()?;
                    let factor =
                        bill.commitment.as_ref().map_or(Decimal::ONE, |c| Decimal::ONE - c.discount_rate);
                    let net = billing_core::exact::mul(list, factor, "current bill").ok()?;
                    i64::try_from(book.currency().round(net, Rounding::HalfAwayFromZero).ceil()).ok()
                });
                let pinned = match (period, billed) {
                    (Some(p), Some(billed)) if billed > amount => Some((micros(p.start()), billed)),
                    _ => None,
                };
                LimitRow { product: product.clone(), amount, pinned }
            });
            rows.push((product, row));
        }
        self.store.set_limits(&customer.id, &rows, micros(now)).await?;
        Ok(())
    }
}

/// The caps in force for `period`, from a customer's stored caps: a cap lowered during a period is pinned there.
fn caps_in_force(limits: &[LimitRow], period: BillingPeriod) -> BTreeMap<String, billing_core::wire::Num> {
    limits
        .iter()
        .map(|l| {
            let amount = match l.pinned {
                Some((start, pinned)) if start == micros(period.start()) => pinned,
                _ => l.amount,
            };
            (l.product.clone(), billing_core::wire::Num(Decimal::from(amount)))
        })
        .collect()
}

/// The first instant of `now`'s month, UTC.
pub fn first_of_month(now: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Datelike;
    billing_core::period::utc_midnight(now.year(), now.month(), 1).unwrap_or(now)
}
