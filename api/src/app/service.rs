//! The service every use-case is a method of: the store, the clock and the price-book versions in force (kept
//! parsed in memory); a use-case's failure; instants and quantities as stored. The use-cases themselves are in the
//! files beside this one.

use std::sync::{Arc, RwLock};

use billing_core::{Bill, BillingPeriod, PriceBook, Quantity};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::store::CustomerRow;
use crate::store::Store;
use crate::store::StoreError;
use crate::store::StoredBook;
use crate::time::micros;
use crate::time::Clock;

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
    /// Something the caller could not cause failed (the operating system's randomness…).
    Internal(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Invalid(issues) => {
                let mut first = true;
                for i in issues {
                    write!(f, "{}{}: {}", if first { "" } else { "; " }, i.path, i.message)?;
                    first = false;
                }
                Ok(())
            }
            Failure::NotFound(what) => write!(f, "no such {what}"),
            Failure::Conflict(m) | Failure::Closed(m) | Failure::InvalidState(m) | Failure::Internal(m) => {
                f.write_str(m)
            }
            Failure::Overflow(e) => write!(f, "{e}"),
            Failure::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Failure {}

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

/// How webhooks are delivered (`tally serve`'s flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Whether endpoints may be private, loopback or link-local addresses (`--webhook-allow-private`).
    pub allow_private: bool,
    /// A factor on the retry schedule and the five days after which a failing endpoint is disabled
    /// (`TALLY_WEBHOOK_RETRY_SCALE`; 1 in production, 0.001 in drills).
    pub retry_scale: Decimal,
    /// How long an attempt may take (15 s).
    pub timeout: std::time::Duration,
    /// Attempts in flight at once, per instance.
    pub concurrency: usize,
    /// How soon an idle worker looks for work again (then less and less often, up to five times this).
    pub poll: std::time::Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_private: false,
            retry_scale: Decimal::ONE,
            timeout: std::time::Duration::from_secs(15),
            concurrency: 32,
            poll: std::time::Duration::from_millis(200),
        }
    }
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
    /// The storage every use-case reads and writes (the use-cases' files only: nothing above `app` sees it).
    pub(super) store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    versions: RwLock<Arc<Vec<Arc<Version>>>>,
    /// The book the service started with: in force when no stored version is (never, once started).
    fallback: Arc<PriceBook>,
    /// How webhooks are delivered.
    pub(super) webhooks: WebhookSettings,
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
            webhooks: WebhookSettings::default(),
        };
        service.reload_books().await?;
        service.backfill_open_periods().await?;
        Ok(service)
    }

    /// A service that only reads a database `tally serve` keeps (migrated, its price books published): nothing is
    /// published, nothing backfilled. For commands that must write nothing (`tally reprice`).
    ///
    /// # Errors
    /// `InvalidState` when the database holds no price book (not tally's, or never served); storage errors.
    pub async fn reader(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Outcome<Service> {
        let fallback = Arc::new(PriceBook::default_book()?);
        let service = Service {
            store,
            clock,
            versions: RwLock::new(Arc::new(Vec::new())),
            fallback,
            webhooks: WebhookSettings::default(),
        };
        service.reload_books().await?;
        if service.versions().is_empty() {
            return Err(Failure::InvalidState(
                "the database holds no price book: is it tally's, started once by `tally serve`?".into(),
            ));
        }
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

    /// The service with these webhook settings.
    #[must_use]
    pub fn with_webhooks(mut self, settings: WebhookSettings) -> Self {
        self.webhooks = settings;
        self
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
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
}
