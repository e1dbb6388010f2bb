//! A price preview: a draft price book tried against every customer before it is published. For a closed month,
//! each invoice's stored request (usage, add-ons, caps, commitment, credit) is priced again with the draft; for the
//! open periods, each customer's usage so far at its month-end projection is priced with the book in force and with
//! the draft. It reads only: nothing is written, nothing locked.
//!
//! Customers are read in pages by id; each page is priced on a blocking thread while the next is read, so the
//! database and pricing overlap (two pages priced at once at most).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use billing_core::{compute, Bill, Currency, LineKind, PriceBook, QuoteRequest, Stage};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::documents::written_at;
use super::preview::{
    page, report, Amounts, CapBinds, Moved, Page, Preview, Problem, Repriced, Span, Versions,
};
use super::service::{instant, invalid, Failure, Outcome, Service};
use crate::store::{Due, InvoicedRequest};
use crate::time::micros;

/// Customers read per page.
const PAGE: i64 = 1_000;
/// Pages being priced while the next is read.
const PRICING_AHEAD: usize = 2;
/// How many movers each way a preview lists unless asked (`top`, `tally reprice --top`).
pub const DEFAULT_TOP: usize = 10;
/// The most movers listed each way.
pub const MAX_TOP: usize = 1_000;

/// Which periods a preview reprices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewPeriod {
    /// The invoices whose period starts in this calendar month (UTC); `None`: the latest month with invoices.
    Month(Option<NaiveDate>),
    /// Every customer's open period, at its month-end projection.
    Open,
}

impl PreviewPeriod {
    /// `YYYY-MM` or `open`.
    ///
    /// # Errors
    /// `Invalid` for anything else.
    pub fn parse(path: &str, text: &str) -> Outcome<PreviewPeriod> {
        if text == "open" {
            return Ok(PreviewPeriod::Open);
        }
        let bad = || invalid(path, "expected a month `YYYY-MM` or `open`");
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        let first = NaiveDate::from_ymd_opt(year, month, 1).filter(|_| year >= 1970).ok_or_else(bad)?;
        Ok(PreviewPeriod::Month(Some(first)))
    }
}

/// What reports a preview's progress: customers done so far, of how many.
pub type PreviewProgress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// The first instant of a calendar month and of the next.
fn month_bounds(first: NaiveDate) -> Outcome<(DateTime<Utc>, DateTime<Utc>)> {
    let next =
        first.checked_add_months(chrono::Months::new(1)).ok_or_else(|| invalid("period", "out of range"))?;
    let at = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).ok_or_else(|| invalid("period", "out of range"))
    };
    Ok((at(first)?, at(next)?))
}

impl Service {
    /// Prices every customer's period with `draft` beside what it costs now, and reports the difference (see
    /// [`Preview`]), with the `top` movers each way (at most [`MAX_TOP`]). `progress` hears after each page.
    ///
    /// # Errors
    /// `InvalidState` when there is no invoice to reprice (no month given); storage errors; `Overflow`.
    pub async fn reprice(
        self: &Arc<Self>,
        draft: Arc<PriceBook>,
        period: PreviewPeriod,
        top: usize,
        progress: PreviewProgress,
    ) -> Outcome<Preview> {
        let counts = self.store.anchor_counts(i64::MAX).await?;
        let total = counts.iter().map(|(_, n)| usize::try_from(*n).unwrap_or(0)).sum();
        let pages = Pipeline::new(total, progress, draft.currency());
        let (span, (pages, used)) = match period {
            PreviewPeriod::Open => self.reprice_open(&draft, pages).await?,
            PreviewPeriod::Month(month) => {
                let first = match month {
                    Some(first) => first,
                    None => self.last_invoiced_month().await?,
                };
                let (from, until) = month_bounds(first)?;
                let span = Span { start: written_at(from), end: written_at(until) };
                (span, self.reprice_month(&draft, micros(from), micros(until), pages).await?)
            }
        };
        let mut current = self.versions_used(used);
        if current.is_none() && period == PreviewPeriod::Open {
            current = self.book_at(self.now()).version().map(str::to_owned);
        }
        let versions = Versions { current, draft: draft.version().map(str::to_owned) };
        report(pages, draft.currency(), span, versions, top.min(MAX_TOP))
    }

    /// The month of the latest invoiced period.
    async fn last_invoiced_month(&self) -> Outcome<NaiveDate> {
        let Some(start) = self.store.last_invoiced_period().await? else {
            return Err(Failure::InvalidState(
                "no invoice to reprice yet; preview the open periods instead (`open`, `tally reprice --open`)".into(),
            ));
        };
        let start = instant(start)?.date_naive();
        Ok(start.with_day(1).unwrap_or(start))
    }

    /// The versions that priced the current totals, oldest in force first, comma-separated.
    fn versions_used(&self, mut used: Vec<String>) -> Option<String> {
        let versions = self.versions();
        let position = |label: &str| versions.iter().position(|v| v.book.version() == Some(label));
        used.sort_by_key(|label| position(label));
        used.dedup();
        (!used.is_empty()).then(|| used.join(", "))
    }

    /// The invoices whose period starts in `[from, until)`, repriced.
    async fn reprice_month(
        self: &Arc<Self>,
        draft: &Arc<PriceBook>,
        from: i64,
        until: i64,
        mut pages: Pipeline,
    ) -> Outcome<(Vec<Page>, Vec<String>)> {
        let mut after = String::new();
        loop {
            let page = self.store.invoiced_requests(from, until, &after, PAGE).await?;
            let Some(last) = page.last else { break };
            after = last;
            let (service, draft, rows) = (self.clone(), draft.clone(), page.requests);
            let price = move || {
                let version = |row: &InvoicedRequest| Some(row.price_book_version.clone());
                rows.iter().map(|row| (service.reprice_invoice(&draft, row), version(row))).collect()
            };
            pages.push(page.customers, price).await?;
        }
        pages.finish().await
    }

    /// Every customer's open period at its month-end projection, under the book in force and the draft.
    async fn reprice_open(
        self: &Arc<Self>,
        draft: &Arc<PriceBook>,
        mut pages: Pipeline,
    ) -> Outcome<(Span, (Vec<Page>, Vec<String>))> {
        let mut after = String::new();
        let (mut first, mut end): (Option<i64>, Option<i64>) = (None, None);
        let now = self.now();
        loop {
            let due = self.store.open_periods(&after, PAGE).await?;
            let Some(last) = due.last().map(|d| d.customer.id.clone()) else { break };
            for d in &due {
                first = Some(first.map_or(d.customer.open_from, |f| f.min(d.customer.open_from)));
                end = end.max(d.customer.open_until);
            }
            after = last;
            let (service, draft) = (self.clone(), draft.clone());
            let n = due.len();
            let price = move || due.iter().map(|d| service.reprice_open_period(&draft, d, now)).collect();
            pages.push(n, price).await?;
        }
        let repriced = pages.finish().await?;
        let at = |m: Option<i64>| m.map_or(Ok(now), instant).map(written_at);
        Ok((Span { start: at(first)?, end: at(end)? }, repriced))
    }

    /// One invoice's stored request, priced with the book that priced it and with the draft.
    fn reprice_invoice(&self, draft: &PriceBook, row: &InvoicedRequest) -> Repriced {
        let currency = Currency::from_code(&row.currency);
        let total = row.total.parse::<Decimal>();
        let outcome = (|| {
            let currency = *currency.as_ref().map_err(|m| unpriced(m))?;
            let total = *total.as_ref().map_err(|e| unpriced(&format!("its total: {e}")))?;
            let request = QuoteRequest::from_json(&row.request).map_err(|e| unpriced(&e.to_string()))?;
            let book = self.book_version(&row.price_book_version).ok_or_else(|| {
                unpriced(&format!("its price-book version `{}` is not published", row.price_book_version))
            })?;
            let bill = compute(&book, &request).map_err(|e| unpriced(&e.to_string()))?;
            if bill.total != total || bill.currency != currency {
                let (t, c) = (bill.total, bill.currency);
                return Err(unpriced(&format!(
                    "its request prices to {t} {c}, the invoice says {total} {currency}"
                )));
            }
            reprice(&bill, draft, &request)
        })();
        Repriced {
            customer_id: row.customer_id.clone(),
            invoice_id: Some(row.invoice_id.clone()),
            currency: currency.unwrap_or(draft.currency()),
            current_total: total.unwrap_or(Decimal::ZERO),
            outcome,
        }
    }

    /// A customer's open period at its month-end projection, priced with the book in force and the draft; and the
    /// version in force.
    fn reprice_open_period(
        &self,
        draft: &PriceBook,
        due: &Due,
        now: DateTime<Utc>,
    ) -> (Repriced, Option<String>) {
        let (mut version, mut current) = (None, None);
        let outcome = (|| {
            let open_from = instant(due.customer.open_from).map_err(|e| unpriced(&e.to_string()))?;
            let period =
                Service::period_of(&due.customer, open_from).map_err(|e| unpriced(&e.to_string()))?;
            let book = self.book_at(period.start());
            version = book.version().map(str::to_owned);
            let (request, _) = super::period::period_request(self, &book, due, period)
                .map_err(|e| unpriced(&e.to_string()))?;
            let projected = billing_core::project_request(&request, period, now, period.end())
                .map_err(|e| unpriced(&e.to_string()))?;
            let bill = compute(&book, &projected).map_err(|e| unpriced(&e.to_string()))?;
            current = Some((bill.currency, bill.total));
            reprice(&bill, draft, &projected)
        })();
        let (currency, current_total) = current.unwrap_or((draft.currency(), Decimal::ZERO));
        let repriced = Repriced {
            customer_id: due.customer.id.clone(),
            invoice_id: None,
            currency,
            current_total,
            outcome,
        };
        (repriced, version)
    }
}

/// The current total could not be reproduced.
fn unpriced(message: &str) -> Problem {
    Problem {
        code: "current_unpriced",
        message: format!("the current total cannot be reproduced: {message}"),
    }
}

/// Why the draft refuses a request: the first issue's kind, every issue in the message.
fn refusal(draft: &PriceBook, e: &billing_core::Error) -> Problem {
    let issues = e.issues();
    let code = match issues.first().map(|i| i.path.as_str()) {
        _ if matches!(e, billing_core::Error::Overflow { .. }) => "overflow",
        Some(p) if p.starts_with("usage.") => "meter_removed",
        Some(p) if p.starts_with("addons[") => "addon_removed",
        Some(p) if p.starts_with("limits.") && draft.product(&p["limits.".len()..]).is_none() => {
            "product_removed"
        }
        Some(p) if p.starts_with("limits.") => "cap_out_of_bounds",
        Some(p) if p.starts_with("commitment") => "commitment_unavailable",
        _ => "unpriceable",
    };
    let message = if issues.is_empty() {
        e.to_string()
    } else {
        issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("; ")
    };
    Problem { code, message }
}

/// The same request under the draft, beside its current bill.
fn reprice(current: &Bill<'_>, draft: &PriceBook, request: &QuoteRequest) -> Result<Moved, Problem> {
    if draft.currency() != current.currency {
        return Err(Problem {
            code: "currency_changed",
            message: format!(
                "the draft prices in {}, this customer is billed in {}",
                draft.currency(),
                current.currency
            ),
        });
    }
    let bill = compute(draft, request).map_err(|e| refusal(draft, &e))?;
    let mut products: BTreeMap<String, Amounts> = BTreeMap::new();
    for (bill, is_draft) in [(current, false), (&bill, true)] {
        for line in bill.lines.iter().filter(|l| l.kind.stage() != Stage::Credit) {
            let key = match line.kind {
                LineKind::CommitmentDiscount => "commitment_discount",
                _ => line.product.as_deref().unwrap_or(&line.key),
            };
            let entry = products.entry(key.to_owned()).or_default();
            let slot = if is_draft { &mut entry.draft } else { &mut entry.current };
            *slot = billing_core::exact::add(*slot, line.amount, "product amount")
                .map_err(|e| refusal(draft, &e))?;
        }
        for limit in &bill.spend_limits {
            let entry = products.entry(limit.product.clone()).or_default();
            let cap = entry.cap.get_or_insert(CapBinds { current: false, draft: false });
            if is_draft {
                cap.draft = limit.reached;
            } else {
                cap.current = limit.reached;
            }
        }
    }
    Ok(Moved { draft_total: bill.total, products })
}

/// A page being priced on a blocking thread: how many customers it looked at, and its page with the versions that
/// priced its current totals.
type Pricing = (usize, tokio::task::JoinHandle<Outcome<(Page, Vec<String>)>>);

/// Pages priced (and presented) on blocking threads, in order, while the next page is read.
struct Pipeline {
    pending: VecDeque<Pricing>,
    pages: Vec<Page>,
    versions: Vec<String>,
    customers_done: usize,
    total: usize,
    progress: PreviewProgress,
    /// The draft's: every page is presented in it.
    currency: Currency,
}

impl Pipeline {
    fn new(total: usize, progress: PreviewProgress, currency: Currency) -> Self {
        Pipeline {
            pending: VecDeque::new(),
            pages: Vec::new(),
            versions: Vec::new(),
            customers_done: 0,
            total,
            progress,
            currency,
        }
    }

    /// Prices a page (`customers` looked at) with `price` on a blocking thread.
    async fn push(
        &mut self,
        customers: usize,
        price: impl FnOnce() -> Vec<(Repriced, Option<String>)> + Send + 'static,
    ) -> Outcome<()> {
        let currency = self.currency;
        self.pending.push_back((
            customers,
            tokio::task::spawn_blocking(move || {
                let (repriced, mut versions): (Vec<Repriced>, Vec<Option<String>>) =
                    price().into_iter().unzip();
                versions.sort_unstable();
                versions.dedup();
                Ok((page(repriced, currency)?, versions.into_iter().flatten().collect()))
            }),
        ));
        while self.pending.len() > PRICING_AHEAD {
            self.take_one().await?;
        }
        Ok(())
    }

    async fn take_one(&mut self) -> Outcome<()> {
        if let Some((n, job)) = self.pending.pop_front() {
            let (page, versions) =
                job.await.map_err(|e| Failure::Internal(format!("pricing a page failed: {e}")))??;
            self.pages.push(page);
            self.versions.extend(versions);
            self.customers_done += n;
            (self.progress)(self.customers_done, self.total.max(self.customers_done));
        }
        Ok(())
    }

    async fn finish(mut self) -> Outcome<(Vec<Page>, Vec<String>)> {
        while !self.pending.is_empty() {
            self.take_one().await?;
        }
        Ok((self.pages, self.versions))
    }
}
