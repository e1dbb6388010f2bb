//! Storage: one small trait, [`Store`], with one implementation per database, SQLite and PostgreSQL.
//!
//! Both implementations are the same code: the sqlx query API is identical for the two pools, every query is
//! written once with `$1, $2, …` placeholders (PostgreSQL's; SQLite reads `$N` as numbered parameters, bound in
//! order of first appearance, which is why every query numbers them in order), and `sql_store!` instantiates it
//! for `SqlitePool` and `PgPool`. The one exception is the bulk insert of events, whose placeholders come from a
//! per-backend function (see `sqlite_row_params`). Queries are checked at run time, by the storage contract suite run against both
//! databases (`api/tests/store_contract.rs`), not by sqlx's compile-time macros (which bind one database per crate).
//!
//! Exact values only: quantities are integer micro-units (a `Quantity` has at most 6 decimal places and at most
//! 10¹² units, so 10¹⁸ micro-units fit a BIGINT), caps whole currency units, instants microseconds since the Unix
//! epoch, price books their canonical JSON text. Conversions to core types happen in `service`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::Row;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database could not be reached or opened at start-up: where, and why, as a sentence.
    #[error("cannot connect to {target}: {cause}")]
    Unreachable {
        /// What was tried: `PostgreSQL at HOST:PORT (database NAME)` or `the SQLite database FILE`.
        target: String,
        /// Why: connection refused, no such database, authentication failed, no answer…
        cause: String,
    },
    /// A stored value could not be read back (a bug or a hand-edited database).
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

/// The result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;

/// A stored price-book version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBook {
    /// Its version label (unique).
    pub version: String,
    /// From when it prices periods (micros).
    pub in_force_at: i64,
    /// Canonical JSON.
    pub body: String,
}

/// A platform or optional add-on a customer has, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonSince {
    /// The add-on key.
    pub key: String,
    /// When it was switched on (micros).
    pub since: i64,
    /// When it was switched off (micros): kept while a period it was on in is not invoiced yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// A stored customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    /// Caller-chosen id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Start of the first billing period (micros).
    pub billing_anchor: i64,
    /// Add-ons chosen.
    pub addons: Vec<AddonSince>,
    /// Created (micros).
    pub created_at: i64,
    /// Last changed (micros).
    pub updated_at: i64,
    /// Start of the first period without an invoice (micros): every period before it is closed.
    pub open_from: i64,
    /// End of that period (micros); `None` only for a customer stored before invoicing existed, until the service
    /// sets it at start.
    pub open_until: Option<i64>,
}

/// A usage event to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Its customer.
    pub customer_id: String,
    /// The sender's id, unique per customer forever.
    pub event_id: String,
    /// The meter.
    pub meter: String,
    /// Quantity in micro-units.
    pub quantity_micros: i64,
    /// When it happened (micros).
    pub occurred_at: i64,
    /// Start of the billing period it falls in (micros).
    pub period_start: i64,
}

/// An absolute usage report: within a period the highest value wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    /// Its customer.
    pub customer_id: String,
    /// The meter.
    pub meter: String,
    /// Value in micro-units.
    pub value_micros: i64,
    /// Start of the billing period it falls in (micros).
    pub period_start: i64,
}

/// A period's usage of one meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterTotal {
    /// The meter.
    pub meter: String,
    /// Σ stored events (micro-units).
    pub events_micros: i64,
    /// The highest absolute report (micro-units), 0 when none.
    pub reported_micros: i64,
}

/// A spend cap in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRow {
    /// Product key.
    pub product: String,
    /// Whole currency units.
    pub amount: i64,
    /// When a lowered cap is pinned for its current period: that period's start, and the pinned cap.
    pub pinned: Option<(i64, i64)>,
}

/// An alert recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    /// Period start (micros).
    pub period_start: i64,
    /// Product key.
    pub product: String,
    /// The threshold, a decimal string (`0.8`).
    pub threshold: String,
    /// When ingestion detected it (micros).
    pub detected_at: i64,
}

/// What storing one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Newly stored (and added to its period's total).
    Stored,
    /// Its `(customer, id)` was already stored, by an earlier or a concurrent call: not counted again.
    Duplicate,
    /// Its period is already invoiced: refused, not stored.
    Closed,
}

/// A commitment bought: a yearly credit and its terms, as billing-core computed them at purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentRow {
    /// Its id.
    pub id: String,
    /// Its customer.
    pub customer_id: String,
    /// Face value (decimal text).
    pub yearly_credit: String,
    /// billing-core's `CommitmentTerms`, as JSON.
    pub terms: String,
    /// When the term starts (micros): the first release.
    pub starts_at: i64,
    /// When all of its credit expires (micros).
    pub expires_at: i64,
    /// Bought (micros).
    pub created_at: i64,
}

/// What an invoice did to a commitment's credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditEntry {
    /// The commitment whose credit moved.
    pub commitment_id: String,
    /// The invoice that moved it.
    pub invoice_id: String,
    /// `consumption` (negative amount) or `void_return` (positive).
    pub kind: String,
    /// Signed decimal text.
    pub amount: String,
    /// When (micros).
    pub at: i64,
}

/// A stored invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRow {
    /// Its id.
    pub id: String,
    /// Its customer.
    pub customer_id: String,
    /// The period invoiced (micros).
    pub period_start: i64,
    /// Its end (micros, exclusive).
    pub period_end: i64,
    /// `draft`, `issued`, `paid` or `void`.
    pub status: String,
    /// Given at issue.
    pub number: Option<String>,
    /// The price-book version that priced it.
    pub price_book_version: String,
    /// ISO code.
    pub currency: String,
    /// The quote request it was computed from (JSON).
    pub request: String,
    /// The bill (JSON).
    pub bill: String,
    /// The bill's total (decimal text).
    pub total: String,
    /// Credit applied (decimal text, zero or negative).
    pub credit_applied: String,
    /// What remains to be paid (decimal text).
    pub amount_due: String,
    /// The run that made it.
    pub run_id: Option<String>,
    /// Made (micros).
    pub created_at: i64,
    /// Issued (micros).
    pub issued_at: Option<i64>,
    /// Paid (micros).
    pub paid_at: Option<i64>,
    /// Voided (micros).
    pub voided_at: Option<i64>,
}

/// Which invoices to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceFilter {
    /// Only this customer's.
    pub customer_id: Option<String>,
    /// Only the period starting then (micros).
    pub period_start: Option<i64>,
    /// Only in this status.
    pub status: Option<String>,
}

/// A lifecycle step of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceAction {
    /// draft → issued, with the next number.
    Issue,
    /// issued → paid.
    Pay,
    /// draft or issued → void; consumed credit returns to the ledger.
    Void,
}

/// What a lifecycle step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Done: the invoice as it is now.
    Done(Box<InvoiceRow>),
    /// No invoice by that id.
    NotFound,
    /// Not allowed from the invoice's status (which is given).
    InvalidState(String),
}

/// An invoice run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// Its id.
    pub id: String,
    /// Periods that ended at or before this instant are invoiced (micros).
    pub as_of: i64,
    /// Whether its invoices are issued at once.
    pub issue: bool,
    /// `running` or `completed`.
    pub status: String,
    /// Customer periods that ended by `as_of`, counted when the run was created.
    pub eligible: i64,
    /// Invoices this run made.
    pub invoiced: i64,
    /// Created (micros).
    pub created_at: i64,
    /// Completed (micros).
    pub finished_at: Option<i64>,
    /// The periods it could not invoice, and why.
    pub failures: Vec<RunFailure>,
}

/// A period a run could not invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    /// The customer.
    pub customer_id: String,
    /// Its period (micros).
    pub period_start: i64,
    /// Why.
    pub reason: String,
}

/// What an invoice run needs to price a customer's next period: read in the transaction that invoices it.
#[derive(Debug, Clone)]
pub struct Due {
    /// The customer; its period to invoice is `[open_from, open_until)`.
    pub customer: CustomerRow,
    /// Its usage in that period.
    pub totals: Vec<MeterTotal>,
    /// Its caps.
    pub limits: Vec<LimitRow>,
    /// Its commitments.
    pub commitments: Vec<CommitmentRow>,
    /// Its credit movements so far.
    pub credits: Vec<CreditEntry>,
}

/// An invoice priced for a [`Due`] period, ready to store: the invoice (status `draft`, or `issued` without its
/// number: the store numbers it), the credit it consumes, and the customer's next open period.
#[derive(Debug, Clone)]
pub struct PricedInvoice {
    /// The invoice.
    pub invoice: InvoiceRow,
    /// Credit consumed (negative amounts).
    pub consumption: Vec<CreditEntry>,
    /// The next open period: `(open_from, open_until)`.
    pub next: (i64, i64),
}

/// Prices a due period, or says why it cannot. Shared with the blocking thread that prices a chunk while the
/// database works on the one before.
pub type PriceFn = Arc<dyn Fn(&Due) -> Result<PricedInvoice, String> + Send + Sync>;

/// A chunk of due periods, priced: the invoices, and the customers that could not be priced with the period and why;
/// with the statements that store them when they could be built on the pricing thread (`A`: the database's
/// arguments; see `invoice_batch`).
struct PricedChunk<A> {
    priced: Vec<PricedInvoice>,
    failures: Vec<(String, i64, String)>,
    /// The inserts of the invoices and the update closing their periods, built beside the pricing (`None` when the
    /// invoices are issued: their numbers are given under the database's lock, in `write_chunk`).
    statements: Option<Vec<(String, A)>>,
}

/// A chunk as the database read it: the document of [`parse_due`] (parsed on the pricing thread), how many customers
/// it holds, and the id of its last customer (claim order is by id: the next chunk starts after it).
struct ReadChunk {
    doc: String,
    count: usize,
    last: String,
}

/// Customers per chunk of a batch's pipeline (see `invoice_batch`).
const DUE_CHUNK: usize = 100;
/// Customers in a batch's first chunk (see `invoice_batch`).
const FIRST_CHUNK: usize = 25;
/// Chunks a batch reads ahead of the one being written: read, waiting for the pricing thread or being priced.
const CHUNKS_AHEAD: usize = 3;

fn price_chunk<A>(
    due: &[Due],
    price: &(dyn Fn(&Due) -> Result<PricedInvoice, String> + Send + Sync),
) -> PricedChunk<A> {
    let mut chunk =
        PricedChunk { priced: Vec::with_capacity(due.len()), failures: Vec::new(), statements: None };
    for d in due {
        match price(d) {
            Ok(p) => chunk.priced.push(p),
            Err(reason) => chunk.failures.push((d.customer.id.clone(), d.customer.open_from, reason)),
        }
    }
    chunk
}

/// What one batch of a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchDone {
    /// Customers claimed.
    pub claimed: usize,
    /// Invoices stored.
    pub invoiced: usize,
    /// Periods that failed (recorded on the run).
    pub failed: usize,
}

/// Where an invoice run's workers claim next: the highest customer id claimed so far in the current pass over the
/// customers (in id order), shared by the workers of one process. A worker claims after it, so workers take
/// successive customers instead of each scanning past the ones the others have claimed (with a cursor of its own,
/// each of N workers read every customer row: N passes' worth of claims). Moved on as each chunk is claimed, before
/// its invoices commit: a batch that then fails leaves its customers to the next pass.
#[derive(Debug, Default)]
pub struct ClaimCursor {
    at: std::sync::Mutex<String>,
}

impl ClaimCursor {
    fn lock(&self) -> std::sync::MutexGuard<'_, String> {
        // A worker that panicked while holding the lock left a String, which is always valid.
        self.at.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The id claims start after (empty: from the first customer).
    #[must_use]
    pub fn get(&self) -> String {
        self.lock().clone()
    }

    /// Where a claim that already reached `own` (a batch's own last claim) goes on from: the later of the two.
    fn after(&self, own: &str) -> String {
        let at = self.lock();
        if at.as_str() > own {
            at.clone()
        } else {
            own.to_owned()
        }
    }

    /// Records a claim up to `last`; the cursor never moves back but by [`ClaimCursor::restart`].
    fn advance(&self, last: &str) {
        let mut at = self.lock();
        if last > at.as_str() {
            last.clone_into(&mut at);
        }
    }

    /// Starts the next pass from the first customer, if the cursor is still at `seen` (where a batch that claimed
    /// nothing started): of several workers finding the end of a pass at once, one restarts it, and a worker that
    /// found the end late does not send the others back to the start of a pass they have already begun.
    /// Whether it restarted.
    pub fn restart(&self, seen: &str) -> bool {
        let mut at = self.lock();
        if at.as_str() == seen && !seen.is_empty() {
            at.clear();
            true
        } else {
            false
        }
    }
}

/// Where storage keeps tally's state. Object-safe, so the service holds an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Applies the migrations not applied yet.
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the pool (after a graceful shutdown: every acknowledged write is committed).
    async fn close(&self);

    /// A setting.
    async fn setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// Stores a setting unless one exists; whether it was stored.
    async fn put_setting_if_absent(&self, key: &str, value: &str) -> StoreResult<bool>;

    /// Stores a price-book version; `false` when the version label is taken.
    async fn insert_price_book(&self, book: &StoredBook, now: i64) -> StoreResult<bool>;
    /// Every price-book version, oldest in force first.
    async fn price_books(&self) -> StoreResult<Vec<StoredBook>>;

    /// Stores a new customer and its first key's hash; `false` when the id is taken.
    async fn insert_customer(&self, customer: &CustomerRow, key_hash: &str) -> StoreResult<bool>;
    /// A customer by id.
    async fn customer(&self, id: &str) -> StoreResult<Option<CustomerRow>>;
    /// Customers by id, after `after`, at most `limit`.
    async fn customers(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<CustomerRow>>;
    /// Stores a customer's name and add-ons.
    async fn update_customer(&self, customer: &CustomerRow) -> StoreResult<()>;
    /// Revokes a customer's keys and stores a new one.
    async fn rotate_key(&self, customer_id: &str, key_hash: &str, now: i64) -> StoreResult<()>;
    /// The customer of an active key.
    async fn key_owner(&self, key_hash: &str) -> StoreResult<Option<String>>;

    /// Stores the events whose `(customer, id)` is new and whose period is still open, and adds them to their
    /// period totals, in one transaction. Returns what happened to each: stored (the first of several with one
    /// id), a duplicate (stored before, by this call or a concurrent one: the primary key decides), or refused
    /// because its period is invoiced (decided under the customer's lock, so no event slips into a period an
    /// invoice run is closing).
    async fn insert_events(&self, events: &[NewEvent], now: i64) -> StoreResult<Vec<EventOutcome>>;
    /// Records absolute reports (the highest per period and meter wins); per report, `false` when its period is
    /// invoiced (refused).
    async fn insert_reports(&self, reports: &[NewReport]) -> StoreResult<Vec<bool>>;
    /// A customer's usage in the period starting at `period_start`.
    async fn usage_totals(&self, customer_id: &str, period_start: i64) -> StoreResult<Vec<MeterTotal>>;
    /// The event that brought a meter's running total to at least `micros` in a period: its time (micros).
    async fn time_total_reached(
        &self,
        customer_id: &str,
        period_start: i64,
        meter: &str,
        micros: i64,
    ) -> StoreResult<Option<i64>>;

    /// A customer's caps.
    async fn limits(&self, customer_id: &str) -> StoreResult<Vec<LimitRow>>;
    /// Sets (`Some`) or removes (`None`) caps, in one transaction.
    async fn set_limits(
        &self,
        customer_id: &str,
        changes: &[(String, Option<LimitRow>)],
        now: i64,
    ) -> StoreResult<()>;

    /// Records an alert once; whether it is new.
    async fn insert_alert(&self, customer_id: &str, alert: &AlertRow) -> StoreResult<bool>;
    /// A customer's alerts, oldest first.
    async fn alerts(&self, customer_id: &str) -> StoreResult<Vec<AlertRow>>;

    /// Claims an idempotency key: `Claimed` when new (the caller runs the request, then [`Store::finish_idempotent`]),
    /// otherwise what the first request left.
    async fn claim_idempotent(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: i64,
    ) -> StoreResult<Idempotent>;
    /// Stores the response of a claimed key.
    async fn finish_idempotent(&self, scope: &str, key: &str, status: i64, body: &str) -> StoreResult<()>;
    /// Forgets a claimed key whose request failed before writing anything (so it can be retried).
    async fn release_idempotent(&self, scope: &str, key: &str) -> StoreResult<()>;
    /// Deletes every idempotency record created before `before` (micros); how many.
    async fn purge_idempotent(&self, before: i64) -> StoreResult<u64>;

    /// Sets the end of a customer's open period (for customers stored before invoicing existed).
    async fn set_open_until(&self, customer_id: &str, open_until: i64) -> StoreResult<()>;
    /// Customers whose open period has no end yet.
    async fn customers_without_open_until(&self) -> StoreResult<Vec<CustomerRow>>;
    /// How many customers share each billing anchor before `before` (micros), by anchor: a customer's periods
    /// follow from its anchor alone.
    async fn anchor_counts(&self, before: i64) -> StoreResult<Vec<(i64, i64)>>;

    /// Stores a commitment.
    async fn insert_commitment(&self, commitment: &CommitmentRow) -> StoreResult<()>;
    /// A customer's commitments, oldest first.
    async fn commitments(&self, customer_id: &str) -> StoreResult<Vec<CommitmentRow>>;
    /// A customer's credit movements, oldest first.
    async fn credit_entries(&self, customer_id: &str) -> StoreResult<Vec<CreditEntry>>;

    /// An invoice.
    async fn invoice(&self, id: &str) -> StoreResult<Option<InvoiceRow>>;
    /// Invoices by id after `after`, at most `limit`.
    async fn invoices(
        &self,
        filter: &InvoiceFilter,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<InvoiceRow>>;
    /// A lifecycle step, in one transaction: issuing takes the next number (`prefix` + six digits, no gaps),
    /// voiding returns the invoice's consumed credit.
    async fn transition_invoice(
        &self,
        id: &str,
        action: InvoiceAction,
        prefix: &str,
        now: i64,
    ) -> StoreResult<Transition>;

    /// The running run of `as_of` and `issue`, or a new one (id `id`, `eligible` periods); and whether it is new.
    async fn open_run(
        &self,
        id: &str,
        as_of: i64,
        issue: bool,
        eligible: i64,
        now: i64,
    ) -> StoreResult<(RunRow, bool)>;
    /// A run and its failures.
    async fn run(&self, id: &str) -> StoreResult<Option<RunRow>>;
    /// Marks a run completed.
    async fn finish_run(&self, id: &str, now: i64) -> StoreResult<()>;
    /// Invoices up to `limit` customers' next ended period in one transaction: claims them (on PostgreSQL with
    /// `FOR UPDATE SKIP LOCKED`, so concurrent workers take different customers; on SQLite the transaction holds
    /// the write lock from its start), reads what `price` needs, stores each invoice with its credit consumption
    /// and the customer's next open period, records failures and moves the run's counter. A crash at any point
    /// leaves all of it or none. Customers are claimed in id order after `cursor` (from an empty cursor, at the
    /// first id), which moves on to the last one claimed as each chunk is claimed; a batch that claims nothing
    /// leaves it where it was.
    async fn invoice_batch(
        &self,
        run: &RunRow,
        cursor: &ClaimCursor,
        limit: usize,
        prefix: &str,
        now: i64,
        price: &PriceFn,
    ) -> StoreResult<BatchDone>;
    /// How many customers still have a period ended by `as_of` to invoice, failures of `run_id` excepted (a plain
    /// read: rows another worker holds count).
    async fn pending(&self, as_of: i64, run_id: &str) -> StoreResult<i64>;
}

/// What a claim on an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotent {
    /// New: run the request.
    Claimed,
    /// The same request already answered: replay this.
    Replay {
        /// HTTP status.
        status: i64,
        /// Body.
        body: String,
    },
    /// The same key with another request body.
    Conflict,
    /// The first request is still running.
    InProgress,
}

/// Opens the store a URL names: `sqlite://…` or `postgres://…` (also `postgresql://`).
///
/// # Errors
/// An unknown scheme, or a database that cannot be opened.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    use std::str::FromStr;
    if url.starts_with("sqlite:") {
        let (pool, alive) = sqlite_pool(url).await?;
        Ok(Arc::new(SqliteStore { pool, _alive: alive }))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)?;
        let target = format!(
            "PostgreSQL at {}:{} (database {})",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("postgres")
        );
        // One connection first, within CONNECT_TIMEOUT: its error says why (the pool would retry in silence for
        // its acquire timeout, then say only that it timed out).
        let first = tokio::time::timeout(
            CONNECT_TIMEOUT,
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options),
        )
        .await;
        match first {
            Err(_) => return Err(unreachable(target, "no answer within 5 seconds".into())),
            Ok(Err(e)) => return Err(unreachable(target, connect_cause(&e))),
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await
            .map_err(|e| unreachable(target, connect_cause(&e)))?;
        Ok(Arc::new(PgStore { pool, _alive: Arc::new(()) }))
    } else {
        Err(StoreError::Database(sqlx::Error::Configuration(
            format!("unsupported database URL `{url}`: use sqlite://FILE or postgres://…").into(),
        )))
    }
}

/// How long start-up waits for a database's first connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn unreachable(target: String, cause: String) -> StoreError {
    StoreError::Unreachable { target, cause }
}

/// Why a connection failed, in a few words a user can act on.
fn connect_cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the server running, on that port?)".into()
        }
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => format!("no such database ({})", db.message()),
            Some("28P01" | "28000") => format!("authentication failed ({})", db.message()),
            _ => db.message().to_owned(),
        },
        sqlx::Error::PoolTimedOut => "no answer within 5 seconds".into(),
        other => other.to_string(),
    }
}

/// The pool of an SQLite store: WAL, `synchronous = NORMAL`, a 30 s busy timeout, 64 MiB of page cache per
/// connection (an invoice run's indexes stay in memory), and WAL checkpoints taken off the writers' path.
///
/// SQLite checkpoints the WAL in the connection whose commit makes it pass `wal_autocheckpoint` pages, so that one
/// commit also copies the pages into the database file and syncs it: a write that usually takes 2 ms then takes
/// 30 (measured, one invoice batch in three at 1,000 pages). Here a task checkpoints every 50 ms on a connection of
/// its own, `PASSIVE` (it never waits for a reader or the writer; what it cannot copy yet it copies next time), on
/// the other core, while writers go on appending. `wal_autocheckpoint` stays as a backstop at 8,192 pages (32 MiB)
/// should that task fall behind. The task ends when the pool closes or the store is dropped (the returned guard).
///
/// # Errors
/// A bad URL, or a database that cannot be opened.
pub async fn sqlite_pool(url: &str) -> StoreResult<(sqlx::SqlitePool, Arc<()>)> {
    use std::str::FromStr;
    use std::time::Duration;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .pragma("cache_size", "-65536")
        .pragma("wal_autocheckpoint", "8192")
        .foreign_keys(true);
    let target = format!("the SQLite database {}", options.get_filename().display());
    // One connection first: a file that cannot be opened is said at once, with the reason.
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options),
    )
    .await
    {
        Err(_) => return Err(unreachable(target, "no answer within 5 seconds".into())),
        Ok(Err(e)) => return Err(unreachable(target, connect_cause(&e))),
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
        }
    }
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .map_err(|e| unreachable(target, connect_cause(&e)))?;
    let alive = Arc::new(());
    let watch = Arc::downgrade(&alive);
    let checkpoints = pool.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if checkpoints.is_closed() || watch.strong_count() == 0 {
                break;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&checkpoints).await {
                tracing::debug!(error = %e, "WAL checkpoint skipped");
            }
        }
    });
    Ok((pool, alive))
}

/// Migrations compiled into the binary, so `tally` needs no files beside it.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> futures_core::future::BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "service", include_str!("../../migrations/sqlite/0001_service.sql")),
    (2, "invoicing", include_str!("../../migrations/sqlite/0002_invoicing.sql")),
    (3, "invoice run reads", include_str!("../../migrations/sqlite/0003_invoice_run_reads.sql")),
    (4, "idempotency expiry", include_str!("../../migrations/sqlite/0004_idempotency_expiry.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "service", include_str!("../../migrations/postgres/0001_service.sql")),
    (2, "invoicing", include_str!("../../migrations/postgres/0002_invoicing.sql")),
    (3, "invoice run reads", include_str!("../../migrations/postgres/0003_invoice_run_reads.sql")),
    (4, "idempotency expiry", include_str!("../../migrations/postgres/0004_idempotency_expiry.sql")),
];

/// Ids per `IN (…)` list, rows per multi-row insert of invoices (18 parameters each): far below both databases'
/// parameter limits.
const IN_LIST: usize = 500;
const INVOICES_PER_STATEMENT: usize = 200;

const CUSTOMER_COLUMNS: &str =
    "id, name, billing_anchor, addons, created_at, updated_at, open_from, open_until";
const INVOICE_COLUMNS: &str = "id, customer_id, period_start, period_end, status, number, price_book_version, \
    currency, request, bill, total, credit_applied, amount_due, run_id, created_at, issued_at, paid_at, voided_at";
const RUN_COLUMNS: &str = "id, as_of, issue, status, eligible, invoiced, created_at, finished_at";

/// An invoice number: the prefix and at least six digits.
pub fn invoice_number(prefix: &str, n: i64) -> String {
    format!("{prefix}{n:06}")
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// Rows to insert per statement: 7 parameters each stays far below both databases' parameter limits.
const EVENTS_PER_STATEMENT: usize = 500;

macro_rules! sql_store {
    (
        $name:ident, $pool:ty, $db:ty, $backend:literal, $migrations:expr, $params:expr,
        begin_write: $begin_write:literal, share_lock: $share_lock:literal,
        update_lock: $update_lock:literal, lock_first: $lock_first:literal, due_query: $due_query:expr,
        claim_query: $claim_query:expr
    ) => {
        /// The store on this database.
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: $pool,
            /// Held while the store lives: background tasks on its pool stop when it is dropped.
            _alive: Arc<()>,
        }

        impl $name {
            /// The start of the open period of each customer named, read under a shared lock (PostgreSQL) or the
            /// write lock (SQLite): an invoice run cannot close one of these periods until the caller commits.
            async fn open_from<'a>(
                tx: &mut sqlx::Transaction<'static, $db>,
                customers: impl Iterator<Item = &'a str>,
            ) -> StoreResult<std::collections::HashMap<String, i64>> {
                let mut ids: Vec<&str> = customers.collect();
                ids.sort_unstable();
                ids.dedup();
                let mut open = std::collections::HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(IN_LIST) {
                    let sql = format!(
                        "SELECT id, open_from, billing_anchor FROM customers WHERE id IN {} ORDER BY id{}",
                        $params(0, chunk.len()),
                        $share_lock
                    );
                    let mut query = sqlx::query(&sql);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    for r in query.fetch_all(&mut **tx).await? {
                        let from: Option<i64> = r.get("open_from");
                        open.insert(r.get("id"), from.unwrap_or_else(|| r.get("billing_anchor")));
                    }
                }
                Ok(open)
            }
        }

        impl $name {
            /// Up to `n` customers of `run` after the id `after` in claim order (by id), with all pricing needs;
            /// `None` when none is left.
            async fn due_chunk(
                tx: &mut sqlx::Transaction<'static, $db>,
                run: &RunRow,
                after: String,
                n: usize,
            ) -> StoreResult<Option<ReadChunk>> {
                // Everything as one JSON document built by the database: one row crosses to this task instead of one
                // per customer, usage total, cap, commitment and credit entry. It is parsed on the pricing thread:
                // only the count and the last key, which the next read needs, are read here.
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                let (doc, count, last): (Option<String>, i64, Option<String>) = match $claim_query {
                    // PostgreSQL: the rows locked first, then read by a statement of its own, whose snapshot is
                    // taken after the locks: usage committed before a lock was granted is in it. (Read in the
                    // locking statement, it would miss usage committed while that statement ran.)
                    Some(claim) => {
                        let claimed: Vec<String> = sqlx::query_scalar(claim)
                            .bind(run.as_of)
                            .bind(&run.id)
                            .bind(n)
                            .bind(after)
                            .fetch_all(&mut **tx)
                            .await?;
                        let Some(last) = claimed.last().cloned() else {
                            return Ok(None);
                        };
                        let sql = $due_query.replace("{ids}", &$params(0, claimed.len()));
                        let mut query = sqlx::query_scalar(&sql);
                        for id in &claimed {
                            query = query.bind(id);
                        }
                        let doc = query.fetch_one(&mut **tx).await?;
                        (doc, i64::try_from(claimed.len()).unwrap_or(i64::MAX), Some(last))
                    }
                    // SQLite: one statement under the write lock `BEGIN IMMEDIATE` took.
                    None => {
                        let row = sqlx::query($due_query)
                            .bind(run.as_of)
                            .bind(&run.id)
                            .bind(n)
                            .bind(after)
                            .fetch_one(&mut **tx)
                            .await?;
                        (row.try_get("doc")?, row.try_get("n")?, row.try_get("last_id")?)
                    }
                };
                match (doc, last) {
                    (Some(doc), Some(last)) if count > 0 => {
                        Ok(Some(ReadChunk { doc, count: usize::try_from(count).unwrap_or(0), last }))
                    }
                    _ => Ok(None),
                }
            }

            /// The pricing thread's part of a chunk: reads the document, prices each customer's period and, unless
            /// the invoices are issued (numbered under the lock, in `write_chunk`), builds the statements storing them.
            fn prepare(
                doc: &str,
                price: &PriceFn,
                issuing: bool,
            ) -> StoreResult<PricedChunk<<$db as sqlx::Database>::Arguments<'static>>> {
                let due = parse_due(doc)?;
                let mut chunk = price_chunk(&due, &**price);
                if !issuing {
                    chunk.statements = Some(Self::statements(&mut chunk.priced)?);
                }
                Ok(chunk)
            }

            /// The statements storing priced invoices: multi-row inserts, then one update per list of customers moving
            /// their open period on (a statement is a round trip to the database's thread or server). The invoices'
            /// request and bill (most of their bytes) move into the statements, leaving the invoices without them.
            fn statements(
                priced: &mut [PricedInvoice],
            ) -> StoreResult<Vec<(String, <$db as sqlx::Database>::Arguments<'static>)>> {
                use sqlx::Arguments as _;
                let bad = |e| corrupt("invoice", e);
                let mut statements = Vec::new();
                for chunk in priced.chunks_mut(INVOICES_PER_STATEMENT) {
                    let rows: Vec<String> = (0..chunk.len()).map(|i| $params(i * 18, 18)).collect();
                    let sql = format!("INSERT INTO invoices ({INVOICE_COLUMNS}) VALUES {}", rows.join(","));
                    let mut args = <$db as sqlx::Database>::Arguments::<'static>::default();
                    args.reserve(chunk.len() * 18, 0);
                    for p in chunk {
                        let i = &mut p.invoice;
                        args.add(i.id.clone()).map_err(bad)?;
                        args.add(i.customer_id.clone()).map_err(bad)?;
                        args.add(i.period_start).map_err(bad)?;
                        args.add(i.period_end).map_err(bad)?;
                        args.add(i.status.clone()).map_err(bad)?;
                        args.add(i.number.clone()).map_err(bad)?;
                        args.add(i.price_book_version.clone()).map_err(bad)?;
                        args.add(i.currency.clone()).map_err(bad)?;
                        args.add(std::mem::take(&mut i.request)).map_err(bad)?;
                        args.add(std::mem::take(&mut i.bill)).map_err(bad)?;
                        args.add(i.total.clone()).map_err(bad)?;
                        args.add(i.credit_applied.clone()).map_err(bad)?;
                        args.add(i.amount_due.clone()).map_err(bad)?;
                        args.add(i.run_id.clone()).map_err(bad)?;
                        args.add(i.created_at).map_err(bad)?;
                        args.add(i.issued_at).map_err(bad)?;
                        args.add(i.paid_at).map_err(bad)?;
                        args.add(i.voided_at).map_err(bad)?;
                    }
                    statements.push((sql, args));
                }
                // The periods close with their invoices: each customer's open period moves on, in the same
                // transaction.
                for chunk in priced.chunks(IN_LIST) {
                    let rows: Vec<String> = (0..chunk.len()).map(|i| $params(i * 3, 3)).collect();
                    let sql = format!(
                        "UPDATE customers SET open_from = v.column2, open_until = v.column3
                         FROM (VALUES {}) AS v WHERE customers.id = v.column1",
                        rows.join(",")
                    );
                    let mut args = <$db as sqlx::Database>::Arguments::<'static>::default();
                    for p in chunk {
                        args.add(p.invoice.customer_id.clone()).map_err(bad)?;
                        args.add(p.next.0).map_err(bad)?;
                        args.add(p.next.1).map_err(bad)?;
                    }
                    statements.push((sql, args));
                }
                Ok(statements)
            }

            /// Stores a priced chunk: numbers (when issuing), invoices, credit consumption, the periods closed, the
            /// failures. Counts into `done`.
            async fn write_chunk(
                tx: &mut sqlx::Transaction<'static, $db>,
                run: &RunRow,
                prefix: &str,
                now: i64,
                chunk: PricedChunk<<$db as sqlx::Database>::Arguments<'static>>,
                done: &mut BatchDone,
            ) -> StoreResult<()> {
                let PricedChunk { mut priced, failures, statements } = chunk;
                let statements = match statements {
                    Some(statements) => statements,
                    None => {
                        let issuing =
                            i64::try_from(priced.iter().filter(|p| p.invoice.status == "issued").count())
                                .unwrap_or(i64::MAX);
                        if issuing > 0 {
                            let next: i64 = sqlx::query(
                                "UPDATE invoice_numbers SET next = next + $1 WHERE id = 1 RETURNING next",
                            )
                            .bind(issuing)
                            .fetch_one(&mut **tx)
                            .await?
                            .get("next");
                            let mut n = next - issuing;
                            for p in priced.iter_mut().filter(|p| p.invoice.status == "issued") {
                                p.invoice.number = Some(invoice_number(prefix, n));
                                p.invoice.issued_at = Some(now);
                                n += 1;
                            }
                        }
                        Self::statements(&mut priced)?
                    }
                };
                for (sql, args) in statements {
                    sqlx::query_with(&sql, args).execute(&mut **tx).await?;
                }
                for p in &priced {
                    for e in &p.consumption {
                        sqlx::query(
                            "INSERT INTO credit_entries (customer_id, commitment_id, invoice_id, kind, amount, at)
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(&p.invoice.customer_id)
                        .bind(&e.commitment_id)
                        .bind(&e.invoice_id)
                        .bind(&e.kind)
                        .bind(&e.amount)
                        .bind(e.at)
                        .execute(&mut **tx)
                        .await?;
                    }
                }
                for (customer, period_start, reason) in &failures {
                    sqlx::query(
                        "INSERT INTO invoice_run_failures (run_id, customer_id, period_start, reason, at)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(&run.id)
                    .bind(customer)
                    .bind(*period_start)
                    .bind(reason)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                }
                done.invoiced += priced.len();
                done.failed += failures.len();
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $name {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> StoreResult<()> {
                Migrator::new(Embedded($migrations)).await?.run(&self.pool).await?;
                Ok(())
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn close(&self) {
                self.pool.close().await;
            }

            async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.get("value")))
            }

            async fn put_setting_if_absent(&self, key: &str, value: &str) -> StoreResult<bool> {
                let done = sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(value)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_price_book(&self, book: &StoredBook, now: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO price_books (version, in_force_at, body, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (version) DO NOTHING",
                )
                .bind(&book.version)
                .bind(book.in_force_at)
                .bind(&book.body)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn price_books(&self) -> StoreResult<Vec<StoredBook>> {
                let rows = sqlx::query(
                    "SELECT version, in_force_at, body FROM price_books ORDER BY in_force_at, created_at, version",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| StoredBook { version: r.get("version"), in_force_at: r.get("in_force_at"), body: r.get("body") })
                    .collect())
            }

            async fn insert_customer(&self, c: &CustomerRow, key_hash: &str) -> StoreResult<bool> {
                let addons = serde_json::to_string(&c.addons).map_err(|e| corrupt("add-ons", e))?;
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "INSERT INTO customers (id, name, billing_anchor, addons, created_at, updated_at, open_from, open_until)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&c.id)
                .bind(&c.name)
                .bind(c.billing_anchor)
                .bind(addons)
                .bind(c.created_at)
                .bind(c.updated_at)
                .bind(c.open_from)
                .bind(c.open_until)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query("INSERT INTO api_keys (hash, customer_id, created_at) VALUES ($1, $2, $3)")
                    .bind(key_hash)
                    .bind(&c.id)
                    .bind(c.created_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn customer(&self, id: &str) -> StoreResult<Option<CustomerRow>> {
                let row = sqlx::query(&format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| customer_row(&r)).transpose()
            }

            async fn customers(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<CustomerRow>> {
                let rows = sqlx::query(&format!(
                    "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id > $1 ORDER BY id LIMIT $2"
                ))
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(|r| customer_row(r)).collect()
            }

            async fn update_customer(&self, c: &CustomerRow) -> StoreResult<()> {
                let addons = serde_json::to_string(&c.addons).map_err(|e| corrupt("add-ons", e))?;
                sqlx::query("UPDATE customers SET name = $1, addons = $2, updated_at = $3 WHERE id = $4")
                    .bind(&c.name)
                    .bind(addons)
                    .bind(c.updated_at)
                    .bind(&c.id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn rotate_key(&self, customer_id: &str, key_hash: &str, now: i64) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE customer_id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(customer_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO api_keys (hash, customer_id, created_at) VALUES ($1, $2, $3)")
                    .bind(key_hash)
                    .bind(customer_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn key_owner(&self, key_hash: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query("SELECT customer_id FROM api_keys WHERE hash = $1 AND revoked_at IS NULL")
                    .bind(key_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.get("customer_id")))
            }

            async fn insert_events(&self, events: &[NewEvent], now: i64) -> StoreResult<Vec<EventOutcome>> {
                let mut outcome = vec![EventOutcome::Duplicate; events.len()];
                let mut totals: BTreeMap<(&str, i64, &str), i64> = BTreeMap::new();
                // SQLite: a deferred BEGIN, because the first statement is the INSERT, which takes the write lock as
                // it starts (SQLite retries that with a fresh snapshot while the transaction has read nothing), so
                // everything it and later statements read is current. Measured: 8 concurrent writers store ~25 %
                // more events a second than with BEGIN IMMEDIATE (BENCHMARKS.md, issue 8).
                let mut tx = self.pool.begin_with(if $lock_first { $begin_write } else { "BEGIN" }).await?;
                // PostgreSQL reads each customer's open period first, under a shared lock (an invoice run closing
                // one waits for this transaction, and this one for it). SQLite holds the write lock from BEGIN, so
                // the INSERT itself reads the open period, current, and skips events of closed ones: no extra
                // statement unless some event was not stored.
                let mut open_from = if $lock_first {
                    Some(Self::open_from(&mut tx, events.iter().map(|e| e.customer_id.as_str())).await?)
                } else {
                    None
                };
                let is_open = |open: &std::collections::HashMap<String, i64>, e: &NewEvent| {
                    open.get(e.customer_id.as_str()).is_none_or(|o| e.period_start >= *o)
                };
                let candidates: Vec<(usize, &NewEvent)> = events
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| open_from.as_ref().is_none_or(|open| is_open(open, e)))
                    .collect();
                for chunk in candidates.chunks(EVENTS_PER_STATEMENT) {
                    let rows: Vec<String> = (0..chunk.len()).map(|i| $params(i * 7, 7)).collect();
                    let sql = if $lock_first {
                        format!(
                            "INSERT INTO usage_events (customer_id, event_id, meter, quantity_micros, occurred_at, \
                             period_start, received_at) VALUES {} \
                             ON CONFLICT (customer_id, event_id) DO NOTHING RETURNING customer_id, event_id",
                            rows.join(",")
                        )
                    } else {
                        format!(
                            "INSERT INTO usage_events (customer_id, event_id, meter, quantity_micros, occurred_at, \
                             period_start, received_at) \
                             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7 \
                             FROM (VALUES {}) AS v LEFT JOIN customers c ON c.id = v.column1 \
                             WHERE c.id IS NULL OR v.column6 >= COALESCE(c.open_from, c.billing_anchor) \
                             ON CONFLICT (customer_id, event_id) DO NOTHING RETURNING customer_id, event_id",
                            rows.join(",")
                        )
                    };
                    let mut query = sqlx::query(&sql);
                    for (_, e) in chunk {
                        query = query
                            .bind(&e.customer_id)
                            .bind(&e.event_id)
                            .bind(&e.meter)
                            .bind(e.quantity_micros)
                            .bind(e.occurred_at)
                            .bind(e.period_start)
                            .bind(now);
                    }
                    let returned: Vec<(String, String)> = query
                        .fetch_all(&mut *tx)
                        .await?
                        .into_iter()
                        .map(|r| (r.get("customer_id"), r.get("event_id")))
                        .collect();
                    let inserted: std::collections::HashSet<(&str, &str)> =
                        returned.iter().map(|(c, e)| (c.as_str(), e.as_str())).collect();
                    // The first event of a chunk with a returned id is the one stored; a repeat is a duplicate.
                    let mut seen: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
                    for (index, e) in chunk {
                        let key = (e.customer_id.as_str(), e.event_id.as_str());
                        if inserted.contains(&key) && seen.insert(key) {
                            outcome[*index] = EventOutcome::Stored;
                            let total = totals.entry((&e.customer_id, e.period_start, &e.meter)).or_default();
                            *total = total.checked_add(e.quantity_micros).ok_or_else(|| corrupt("usage total", "overflow"))?;
                        }
                    }
                }
                // Events not stored: a duplicate, or refused when its period is invoiced — unless its id was stored
                // before the period closed (a retry), which is a duplicate still.
                let unstored: Vec<usize> =
                    (0..events.len()).filter(|i| outcome[*i] != EventOutcome::Stored).collect();
                if !unstored.is_empty() {
                    if open_from.is_none() {
                        let customers = unstored.iter().map(|i| events[*i].customer_id.as_str());
                        open_from = Some(Self::open_from(&mut tx, customers).await?);
                    }
                    let open = open_from.unwrap_or_default();
                    for index in unstored {
                        let e = &events[index];
                        if is_open(&open, e) {
                            continue;
                        }
                        let known = sqlx::query("SELECT 1 AS one FROM usage_events WHERE customer_id = $1 AND event_id = $2")
                            .bind(&e.customer_id)
                            .bind(&e.event_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if known.is_none() {
                            outcome[index] = EventOutcome::Closed;
                        }
                    }
                }
                for ((customer, period_start, meter), micros) in totals {
                    sqlx::query(
                        "INSERT INTO usage_totals (customer_id, period_start, meter, events_micros) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (customer_id, period_start, meter)
                         DO UPDATE SET events_micros = usage_totals.events_micros + excluded.events_micros",
                    )
                    .bind(customer)
                    .bind(period_start)
                    .bind(meter)
                    .bind(micros)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(outcome)
            }

            async fn insert_reports(&self, reports: &[NewReport]) -> StoreResult<Vec<bool>> {
                let mut tx = self.pool.begin_with($begin_write).await?;
                let open_from = Self::open_from(&mut tx, reports.iter().map(|r| r.customer_id.as_str())).await?;
                let mut stored = Vec::with_capacity(reports.len());
                for r in reports {
                    let open = open_from.get(r.customer_id.as_str()).is_none_or(|o| r.period_start >= *o);
                    stored.push(open);
                    if !open {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO usage_totals (customer_id, period_start, meter, reported_micros) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (customer_id, period_start, meter) DO UPDATE SET reported_micros =
                           CASE WHEN excluded.reported_micros > usage_totals.reported_micros
                                THEN excluded.reported_micros ELSE usage_totals.reported_micros END",
                    )
                    .bind(&r.customer_id)
                    .bind(r.period_start)
                    .bind(&r.meter)
                    .bind(r.value_micros)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(stored)
            }

            async fn usage_totals(&self, customer_id: &str, period_start: i64) -> StoreResult<Vec<MeterTotal>> {
                let rows = sqlx::query(
                    "SELECT meter, events_micros, reported_micros FROM usage_totals
                     WHERE customer_id = $1 AND period_start = $2 ORDER BY meter",
                )
                .bind(customer_id)
                .bind(period_start)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| MeterTotal {
                        meter: r.get("meter"),
                        events_micros: r.get("events_micros"),
                        reported_micros: r.get("reported_micros"),
                    })
                    .collect())
            }

            async fn time_total_reached(
                &self,
                customer_id: &str,
                period_start: i64,
                meter: &str,
                micros: i64,
            ) -> StoreResult<Option<i64>> {
                // The running sum in time order (ties by id): the first event at which it reaches `micros`.
                let row = sqlx::query(
                    "SELECT occurred_at FROM (
                       SELECT occurred_at, SUM(quantity_micros) OVER (ORDER BY occurred_at, event_id) AS running
                       FROM usage_events WHERE customer_id = $1 AND period_start = $2 AND meter = $3
                     ) AS t WHERE running >= $4 ORDER BY occurred_at LIMIT 1",
                )
                .bind(customer_id)
                .bind(period_start)
                .bind(meter)
                .bind(micros)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|r| r.get("occurred_at")))
            }

            async fn limits(&self, customer_id: &str) -> StoreResult<Vec<LimitRow>> {
                let rows = sqlx::query(
                    "SELECT product, amount, pinned_period_start, pinned_amount FROM spend_limits
                     WHERE customer_id = $1 ORDER BY product",
                )
                .bind(customer_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| {
                        let start: Option<i64> = r.get("pinned_period_start");
                        let amount: Option<i64> = r.get("pinned_amount");
                        LimitRow { product: r.get("product"), amount: r.get("amount"), pinned: start.zip(amount) }
                    })
                    .collect())
            }

            async fn set_limits(
                &self,
                customer_id: &str,
                changes: &[(String, Option<LimitRow>)],
                now: i64,
            ) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                for (product, change) in changes {
                    match change {
                        None => {
                            sqlx::query("DELETE FROM spend_limits WHERE customer_id = $1 AND product = $2")
                                .bind(customer_id)
                                .bind(product)
                                .execute(&mut *tx)
                                .await?;
                        }
                        Some(l) => {
                            sqlx::query(
                                "INSERT INTO spend_limits (customer_id, product, amount, pinned_period_start, pinned_amount, updated_at)
                                 VALUES ($1, $2, $3, $4, $5, $6)
                                 ON CONFLICT (customer_id, product) DO UPDATE SET amount = excluded.amount,
                                   pinned_period_start = excluded.pinned_period_start,
                                   pinned_amount = excluded.pinned_amount, updated_at = excluded.updated_at",
                            )
                            .bind(customer_id)
                            .bind(product)
                            .bind(l.amount)
                            .bind(l.pinned.map(|p| p.0))
                            .bind(l.pinned.map(|p| p.1))
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn insert_alert(&self, customer_id: &str, a: &AlertRow) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO alerts (customer_id, period_start, product, threshold, detected_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id, period_start, product, threshold) DO NOTHING",
                )
                .bind(customer_id)
                .bind(a.period_start)
                .bind(&a.product)
                .bind(&a.threshold)
                .bind(a.detected_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn alerts(&self, customer_id: &str) -> StoreResult<Vec<AlertRow>> {
                let rows = sqlx::query(
                    "SELECT period_start, product, threshold, detected_at FROM alerts WHERE customer_id = $1
                     ORDER BY detected_at, period_start, product, threshold",
                )
                .bind(customer_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| AlertRow {
                        period_start: r.get("period_start"),
                        product: r.get("product"),
                        threshold: r.get("threshold"),
                        detected_at: r.get("detected_at"),
                    })
                    .collect())
            }

            async fn claim_idempotent(
                &self,
                scope: &str,
                key: &str,
                request_hash: &str,
                now: i64,
            ) -> StoreResult<Idempotent> {
                // Keys older than 24 hours are forgotten first, so the same key can be used again after a day.
                sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at < $3")
                    .bind(scope)
                    .bind(key)
                    .bind(now - 86_400_000_000)
                    .execute(&self.pool)
                    .await?;
                let claimed = sqlx::query(
                    "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (scope, key) DO NOTHING",
                )
                .bind(scope)
                .bind(key)
                .bind(request_hash)
                .bind(now)
                .execute(&self.pool)
                .await?;
                if claimed.rows_affected() == 1 {
                    return Ok(Idempotent::Claimed);
                }
                let row = sqlx::query("SELECT request_hash, status, body FROM idempotency_keys WHERE scope = $1 AND key = $2")
                    .bind(scope)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(row) = row else {
                    // Released between the two statements: the caller may simply retry.
                    return Ok(Idempotent::InProgress);
                };
                let hash: String = row.get("request_hash");
                let status: Option<i64> = row.get("status");
                let body: Option<String> = row.get("body");
                Ok(match (hash == request_hash, status, body) {
                    (false, _, _) => Idempotent::Conflict,
                    (true, Some(status), Some(body)) => Idempotent::Replay { status, body },
                    (true, _, _) => Idempotent::InProgress,
                })
            }

            async fn finish_idempotent(&self, scope: &str, key: &str, status: i64, body: &str) -> StoreResult<()> {
                sqlx::query("UPDATE idempotency_keys SET status = $1, body = $2 WHERE scope = $3 AND key = $4")
                    .bind(status)
                    .bind(body)
                    .bind(scope)
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn release_idempotent(&self, scope: &str, key: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL")
                    .bind(scope)
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn purge_idempotent(&self, before: i64) -> StoreResult<u64> {
                let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn set_open_until(&self, customer_id: &str, open_until: i64) -> StoreResult<()> {
                sqlx::query("UPDATE customers SET open_until = $1 WHERE id = $2 AND open_until IS NULL")
                    .bind(open_until)
                    .bind(customer_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn anchor_counts(&self, before: i64) -> StoreResult<Vec<(i64, i64)>> {
                let rows = sqlx::query(
                    "SELECT billing_anchor, COUNT(*) AS n FROM customers WHERE billing_anchor < $1
                     GROUP BY billing_anchor ORDER BY billing_anchor",
                )
                .bind(before)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(|r| (r.get("billing_anchor"), r.get("n"))).collect())
            }

            async fn customers_without_open_until(&self) -> StoreResult<Vec<CustomerRow>> {
                let rows = sqlx::query(&format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE open_until IS NULL"))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(|r| customer_row(r)).collect()
            }

            async fn insert_commitment(&self, c: &CommitmentRow) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO commitments (id, customer_id, yearly_credit, terms, starts_at, expires_at, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&c.id)
                .bind(&c.customer_id)
                .bind(&c.yearly_credit)
                .bind(&c.terms)
                .bind(c.starts_at)
                .bind(c.expires_at)
                .bind(c.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn commitments(&self, customer_id: &str) -> StoreResult<Vec<CommitmentRow>> {
                let rows = sqlx::query(
                    "SELECT id, customer_id, yearly_credit, terms, starts_at, expires_at, created_at FROM commitments
                     WHERE customer_id = $1 ORDER BY starts_at, created_at, id",
                )
                .bind(customer_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(|r| commitment_row(r)).collect()
            }

            async fn credit_entries(&self, customer_id: &str) -> StoreResult<Vec<CreditEntry>> {
                let rows = sqlx::query(
                    "SELECT customer_id, commitment_id, invoice_id, kind, amount, at FROM credit_entries
                     WHERE customer_id = $1 ORDER BY seq",
                )
                .bind(customer_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(|r| credit_row(r)).collect()
            }

            async fn invoice(&self, id: &str) -> StoreResult<Option<InvoiceRow>> {
                let row = sqlx::query(&format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| invoice_row(&r)).transpose()
            }

            async fn invoices(
                &self,
                filter: &InvoiceFilter,
                after: Option<&str>,
                limit: i64,
            ) -> StoreResult<Vec<InvoiceRow>> {
                let mut sql = format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id > $1");
                let mut n = 1;
                let mut next = |sql: &mut String, column: &str| {
                    n += 1;
                    sql.push_str(&format!(" AND {column} = ${n}"));
                };
                if filter.customer_id.is_some() {
                    next(&mut sql, "customer_id");
                }
                if filter.period_start.is_some() {
                    next(&mut sql, "period_start");
                }
                if filter.status.is_some() {
                    next(&mut sql, "status");
                }
                sql.push_str(&format!(" ORDER BY id LIMIT ${}", n + 1));
                let mut query = sqlx::query(&sql).bind(after.unwrap_or(""));
                if let Some(c) = &filter.customer_id {
                    query = query.bind(c);
                }
                if let Some(p) = filter.period_start {
                    query = query.bind(p);
                }
                if let Some(st) = &filter.status {
                    query = query.bind(st);
                }
                let rows = query.bind(limit).fetch_all(&self.pool).await?;
                rows.iter().map(|r| invoice_row(r)).collect()
            }

            async fn transition_invoice(
                &self,
                id: &str,
                action: InvoiceAction,
                prefix: &str,
                now: i64,
            ) -> StoreResult<Transition> {
                let mut tx = self.pool.begin_with($begin_write).await?;
                let row = sqlx::query(&format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1{}", $update_lock))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else { return Ok(Transition::NotFound) };
                let mut invoice = invoice_row(&row)?;
                match (action, invoice.status.as_str()) {
                    (InvoiceAction::Issue, "draft") => {
                        let next: i64 = sqlx::query("UPDATE invoice_numbers SET next = next + 1 WHERE id = 1 RETURNING next")
                            .fetch_one(&mut *tx)
                            .await?
                            .get("next");
                        invoice.number = Some(invoice_number(prefix, next - 1));
                        invoice.status = "issued".into();
                        invoice.issued_at = Some(now);
                        sqlx::query("UPDATE invoices SET status = 'issued', number = $1, issued_at = $2 WHERE id = $3")
                            .bind(&invoice.number)
                            .bind(now)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    (InvoiceAction::Pay, "issued") => {
                        invoice.status = "paid".into();
                        invoice.paid_at = Some(now);
                        sqlx::query("UPDATE invoices SET status = 'paid', paid_at = $1 WHERE id = $2")
                            .bind(now)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    (InvoiceAction::Void, "draft" | "issued") => {
                        invoice.status = "void".into();
                        invoice.voided_at = Some(now);
                        sqlx::query("UPDATE invoices SET status = 'void', voided_at = $1 WHERE id = $2")
                            .bind(now)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        // The credit the invoice consumed goes back to the commitments it came from.
                        let consumed = sqlx::query(
                            "SELECT customer_id, commitment_id, invoice_id, kind, amount, at FROM credit_entries
                             WHERE invoice_id = $1 AND kind = 'consumption' ORDER BY seq",
                        )
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                        for r in &consumed {
                            let entry = credit_row(r)?;
                            let amount: rust_decimal::Decimal =
                                entry.amount.parse().map_err(|e| corrupt("credit amount", e))?;
                            sqlx::query(
                                "INSERT INTO credit_entries (customer_id, commitment_id, invoice_id, kind, amount, at)
                                 VALUES ($1, $2, $3, 'void_return', $4, $5)",
                            )
                            .bind(&invoice.customer_id)
                            .bind(&entry.commitment_id)
                            .bind(id)
                            .bind((-amount).to_string())
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                    (_, status) => return Ok(Transition::InvalidState(status.to_owned())),
                }
                tx.commit().await?;
                Ok(Transition::Done(Box::new(invoice)))
            }

            async fn open_run(
                &self,
                id: &str,
                as_of: i64,
                issue: bool,
                eligible: i64,
                now: i64,
            ) -> StoreResult<(RunRow, bool)> {
                for _ in 0..3 {
                    let done = sqlx::query(
                        "INSERT INTO invoice_runs (id, as_of, issue, status, eligible, invoiced, created_at)
                         VALUES ($1, $2, $3, 'running', $4, 0, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(as_of)
                    .bind(i64::from(issue))
                    .bind(eligible)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                    let created = done.rows_affected() == 1;
                    let row = sqlx::query(&format!(
                        "SELECT {RUN_COLUMNS} FROM invoice_runs WHERE as_of = $1 AND issue = $2 AND status = 'running'"
                    ))
                    .bind(as_of)
                    .bind(i64::from(issue))
                    .fetch_optional(&self.pool)
                    .await?;
                    // (None: the running run completed between the two statements; try again.)
                    if let Some(row) = row {
                        return Ok((run_row(&row, Vec::new())?, created));
                    }
                }
                Err(StoreError::Corrupt("cannot open an invoice run".into()))
            }

            async fn run(&self, id: &str) -> StoreResult<Option<RunRow>> {
                let Some(row) = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM invoice_runs WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                let failures = sqlx::query(
                    "SELECT customer_id, period_start, reason FROM invoice_run_failures WHERE run_id = $1
                     ORDER BY customer_id",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| RunFailure {
                    customer_id: r.get("customer_id"),
                    period_start: r.get("period_start"),
                    reason: r.get("reason"),
                })
                .collect();
                Ok(Some(run_row(&row, failures)?))
            }

            async fn finish_run(&self, id: &str, now: i64) -> StoreResult<()> {
                sqlx::query("UPDATE invoice_runs SET status = 'completed', finished_at = $1 WHERE id = $2 AND status = 'running'")
                    .bind(now)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn pending(&self, as_of: i64, run_id: &str) -> StoreResult<i64> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM customers WHERE open_until <= $1 AND NOT EXISTS
                     (SELECT 1 FROM invoice_run_failures f WHERE f.run_id = $2 AND f.customer_id = customers.id)",
                )
                .bind(as_of)
                .bind(run_id)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.get("n"))
            }

            async fn invoice_batch(
                &self,
                run: &RunRow,
                cursor: &ClaimCursor,
                limit: usize,
                prefix: &str,
                now: i64,
                price: &PriceFn,
            ) -> StoreResult<BatchDone> {
                let mut tx = self.pool.begin_with($begin_write).await?;
                // A pipeline inside the one transaction. One blocking thread (the other core) reads each chunk's
                // document, prices its customers and builds the statements storing them, chunk after chunk in
                // claim order; the database meanwhile reads the chunks ahead and writes each chunk as soon as it is
                // priced, so neither side waits for the other while there is work for it (a chunk at a time, in
                // lock step, each waited for the slower of the two at every step). The transaction holds the write
                // lock (SQLite) or the claimed rows (PostgreSQL) throughout, so what a chunk read cannot change
                // before its invoices commit. Chunks follow the claim order (by id) and a chunk starts after the
                // last customer of the one before, so two chunks never hold the same customer and reading ahead
                // never reads a customer before an earlier chunk's invoice for it is written; a customer whose
                // next period also ended comes back in a later batch, after its first period's invoice is
                // committed.
                let (to_pricer, docs) = std::sync::mpsc::channel::<String>();
                let (to_database, mut priced) = tokio::sync::mpsc::unbounded_channel();
                let (pricer, issuing) = (Arc::clone(price), run.issue);
                let pricing = tokio::task::spawn_blocking(move || {
                    for doc in docs {
                        if to_database.send(Self::prepare(&doc, &pricer, issuing)).is_err() {
                            break;
                        }
                    }
                });
                let mut done = BatchDone::default();
                // The last customer this batch claimed; `None` until its first chunk.
                let mut last: Option<String> = None;
                let (mut in_flight, mut reading) = (0_usize, true);
                loop {
                    // A priced chunk is written first: it is what the pricing thread has finished with.
                    let ready = match priced.try_recv() {
                        Ok(chunk) => Some(chunk),
                        Err(_) if reading && in_flight < CHUNKS_AHEAD => None,
                        Err(_) if in_flight == 0 => break,
                        Err(_) => match priced.recv().await {
                            Some(chunk) => Some(chunk),
                            // The pricing thread stopped without an answer: it panicked.
                            None => {
                                return Err(match pricing.await {
                                    Err(e) => corrupt("pricing", e),
                                    Ok(()) => corrupt("pricing", "the pricing thread stopped"),
                                })
                            }
                        },
                    };
                    if let Some(chunk) = ready {
                        in_flight -= 1;
                        Self::write_chunk(&mut tx, run, prefix, now, chunk?, &mut done).await?;
                        continue;
                    }
                    // The first chunk is small: while it is priced the database has only the second to read, and a
                    // batch's first pricing is time the database would otherwise wait.
                    let wanted = match &last {
                        None => limit.min(FIRST_CHUNK),
                        Some(_) => limit.saturating_sub(done.claimed).min(DUE_CHUNK),
                    };
                    // After what the other workers claimed meanwhile, and never before this batch's own claims (the
                    // cursor may have been restarted by a worker finding the end of the pass).
                    let from = last.as_deref().map_or_else(|| cursor.get(), |own| cursor.after(own));
                    let next =
                        if wanted == 0 { None } else { Self::due_chunk(&mut tx, run, from, wanted).await? };
                    let Some(ReadChunk { doc, count, last: claimed_to }) = next else {
                        reading = false;
                        continue;
                    };
                    cursor.advance(&claimed_to);
                    last = Some(claimed_to);
                    done.claimed += count;
                    in_flight += 1;
                    if to_pricer.send(doc).is_err() {
                        return Err(match pricing.await {
                            Err(e) => corrupt("pricing", e),
                            Ok(()) => corrupt("pricing", "the pricing thread stopped"),
                        });
                    }
                }
                drop(to_pricer);
                if done.claimed == 0 {
                    tx.rollback().await?;
                    return Ok(BatchDone::default());
                }
                sqlx::query("UPDATE invoice_runs SET invoiced = invoiced + $1 WHERE id = $2")
                    .bind(i64::try_from(done.invoiced).unwrap_or(i64::MAX))
                    .bind(&run.id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done)
            }
        }
    };
}

/// The next chunk of an invoice run (`$1` as_of, `$2` run id, `$3` how many, after the id `$4` in claim order: by
/// id), with each customer's usage in its open period, caps, commitments and credit movements: one JSON array, one
/// element per customer, in claim order (see [`parse_due`]), beside how many customers it holds and the id of the
/// last (`n`, `last_id`: where the next chunk starts, read without parsing the document). The customers are
/// materialized once, in claim order, which the aggregate keeps. Claim order is the primary key's, not an index on
/// `open_until`: invoicing a period then rewrites the customer's row and no index (see ARCHITECTURE.md). SQLite:
/// under the write lock `BEGIN IMMEDIATE` took. The inner lists are unordered (an `ORDER BY` inside each aggregate
/// costs a temporary B-tree per customer, measured 7.8 → 4.8 ms a batch of 500); [`parse_due`] orders them.
const SQLITE_DUE: &str = "
WITH c AS MATERIALIZED (SELECT * FROM customers WHERE open_until <= $1 AND NOT EXISTS
      (SELECT 1 FROM invoice_run_failures f WHERE f.run_id = $2 AND f.customer_id = customers.id)
      AND id > $4
      ORDER BY id LIMIT $3)
SELECT count(*) AS n,
    max(c.id) AS last_id,
    json_group_array(json_array(
    c.id, c.name, c.billing_anchor, json(c.addons), c.created_at, c.updated_at, c.open_from, c.open_until,
    (SELECT json_group_array(json_array(u.meter, u.events_micros, u.reported_micros))
          FROM usage_totals u WHERE u.customer_id = c.id AND u.period_start = COALESCE(c.open_from, c.billing_anchor)),
    (SELECT json_group_array(json_array(l.product, l.amount, l.pinned_period_start, l.pinned_amount))
          FROM spend_limits l WHERE l.customer_id = c.id),
    (SELECT json_group_array(json_array(m.id, m.yearly_credit, m.terms, m.starts_at, m.expires_at, m.created_at))
          FROM commitments m WHERE m.customer_id = c.id),
    (SELECT json_group_array(json_array(e.commitment_id, e.invoice_id, e.kind, e.amount, e.at))
          FROM credit_entries e WHERE e.customer_id = c.id))) AS doc
FROM c";

/// The next chunk of a run on PostgreSQL (parameters as [`SQLITE_DUE`]'s), claimed with `FOR UPDATE SKIP LOCKED`
/// so concurrent workers take disjoint chunks.
const POSTGRES_CLAIM: &str = "
SELECT id FROM customers WHERE open_until <= $1 AND NOT EXISTS
    (SELECT 1 FROM invoice_run_failures f WHERE f.run_id = $2 AND f.customer_id = customers.id)
    AND id > $4
ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED";

/// [`SQLITE_DUE`]'s document for PostgreSQL, of the customers [`POSTGRES_CLAIM`] locked (`{ids}`: their ids'
/// parameters).
const POSTGRES_DUE: &str = "
WITH c AS (SELECT * FROM customers WHERE id IN {ids})
SELECT json_agg(json_build_array(
    c.id, c.name, c.billing_anchor, c.addons::json, c.created_at, c.updated_at, c.open_from, c.open_until,
    (SELECT COALESCE(json_agg(json_build_array(u.meter, u.events_micros, u.reported_micros)), '[]')
     FROM usage_totals u WHERE u.customer_id = c.id AND u.period_start = COALESCE(c.open_from, c.billing_anchor)),
    (SELECT COALESCE(json_agg(json_build_array(l.product, l.amount, l.pinned_period_start, l.pinned_amount)), '[]')
     FROM spend_limits l WHERE l.customer_id = c.id),
    (SELECT COALESCE(json_agg(json_build_array(m.id, m.yearly_credit, m.terms, m.starts_at, m.expires_at,
                                               m.created_at)), '[]')
     FROM commitments m WHERE m.customer_id = c.id),
    (SELECT COALESCE(json_agg(json_build_array(e.commitment_id, e.invoice_id, e.kind, e.amount, e.at)), '[]')
     FROM credit_entries e WHERE e.customer_id = c.id))
    ORDER BY c.id)::text
FROM c";

/// One customer of [`SQLITE_DUE`]'s document: its columns, then its usage, caps, commitments and credit movements.
type DueDoc = (
    String,
    String,
    i64,
    Vec<AddonSince>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Vec<(String, i64, i64)>,
    Vec<(String, i64, Option<i64>, Option<i64>)>,
    Vec<(String, String, String, i64, i64, i64)>,
    Vec<(String, String, String, String, i64)>,
);

fn sorted<T>(items: impl IntoIterator<Item = T>, order: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Vec<T> {
    let mut items: Vec<T> = items.into_iter().collect();
    items.sort_by(order);
    items
}

/// Reads the document of [`SQLITE_DUE`] / [`POSTGRES_DUE`].
fn parse_due(doc: &str) -> StoreResult<Vec<Due>> {
    let rows: Vec<DueDoc> = serde_json::from_str(doc).map_err(|e| corrupt("invoice batch", e))?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                name,
                billing_anchor,
                addons,
                created_at,
                updated_at,
                open_from,
                open_until,
                usage,
                limits,
                commitments,
                credits,
            )| {
                let commitments = sorted(
                    commitments.into_iter().map(
                        |(cid, yearly_credit, terms, starts_at, expires_at, created_at)| CommitmentRow {
                            id: cid,
                            customer_id: id.clone(),
                            yearly_credit,
                            terms,
                            starts_at,
                            expires_at,
                            created_at,
                        },
                    ),
                    |a: &CommitmentRow, b: &CommitmentRow| {
                        (a.starts_at, a.created_at, &a.id).cmp(&(b.starts_at, b.created_at, &b.id))
                    },
                );
                Due {
                    customer: CustomerRow {
                        addons,
                        id,
                        name,
                        billing_anchor,
                        created_at,
                        updated_at,
                        open_from: open_from.unwrap_or(billing_anchor),
                        open_until,
                    },
                    totals: sorted(
                        usage.into_iter().map(|(meter, events_micros, reported_micros)| MeterTotal {
                            meter,
                            events_micros,
                            reported_micros,
                        }),
                        |a: &MeterTotal, b: &MeterTotal| a.meter.cmp(&b.meter),
                    ),
                    limits: sorted(
                        limits.into_iter().map(|(product, amount, start, pinned)| LimitRow {
                            product,
                            amount,
                            pinned: start.zip(pinned),
                        }),
                        |a: &LimitRow, b: &LimitRow| a.product.cmp(&b.product),
                    ),
                    commitments,
                    credits: credits
                        .into_iter()
                        .map(|(commitment_id, invoice_id, kind, amount, at)| CreditEntry {
                            commitment_id,
                            invoice_id,
                            kind,
                            amount,
                            at,
                        })
                        .collect(),
                }
            },
        )
        .collect())
}

fn customer_row<R: Row>(r: &R) -> StoreResult<CustomerRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let addons: String = r.try_get("addons")?;
    let billing_anchor: i64 = r.try_get("billing_anchor")?;
    Ok(CustomerRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        billing_anchor,
        addons: serde_json::from_str(&addons).map_err(|e| corrupt("customer add-ons", e))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        open_from: r.try_get::<Option<i64>, _>("open_from")?.unwrap_or(billing_anchor),
        open_until: r.try_get("open_until")?,
    })
}

/// `n` parameters in parentheses, numbered from `first + 1`. SQLite: plain `?` (positional): sqlx-sqlite resolves
/// `$N` names by a search per parameter, quadratic in a 3,500-parameter statement (measured: 24,000 rows/s with
/// `$N`, 146,000 with `?`). PostgreSQL: `$N`.
fn sqlite_params(_first: usize, n: usize) -> String {
    let mut s = String::with_capacity(3 * n + 2);
    s.push('(');
    for i in 0..n {
        s.push_str(if i == 0 { "?" } else { ", ?" });
    }
    s.push(')');
    s
}

fn postgres_params(first: usize, n: usize) -> String {
    let list: Vec<String> = (first + 1..=first + n).map(|p| format!("${p}")).collect();
    format!("({})", list.join(", "))
}

fn commitment_row<R: Row>(r: &R) -> StoreResult<CommitmentRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(CommitmentRow {
        id: r.try_get("id")?,
        customer_id: r.try_get("customer_id")?,
        yearly_credit: r.try_get("yearly_credit")?,
        terms: r.try_get("terms")?,
        starts_at: r.try_get("starts_at")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
    })
}

fn credit_row<R: Row>(r: &R) -> StoreResult<CreditEntry>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(CreditEntry {
        commitment_id: r.try_get("commitment_id")?,
        invoice_id: r.try_get("invoice_id")?,
        kind: r.try_get("kind")?,
        amount: r.try_get("amount")?,
        at: r.try_get("at")?,
    })
}

fn invoice_row<R: Row>(r: &R) -> StoreResult<InvoiceRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(InvoiceRow {
        id: r.try_get("id")?,
        customer_id: r.try_get("customer_id")?,
        period_start: r.try_get("period_start")?,
        period_end: r.try_get("period_end")?,
        status: r.try_get("status")?,
        number: r.try_get("number")?,
        price_book_version: r.try_get("price_book_version")?,
        currency: r.try_get("currency")?,
        request: r.try_get("request")?,
        bill: r.try_get("bill")?,
        total: r.try_get("total")?,
        credit_applied: r.try_get("credit_applied")?,
        amount_due: r.try_get("amount_due")?,
        run_id: r.try_get("run_id")?,
        created_at: r.try_get("created_at")?,
        issued_at: r.try_get("issued_at")?,
        paid_at: r.try_get("paid_at")?,
        voided_at: r.try_get("voided_at")?,
    })
}

fn run_row<R: Row>(r: &R, failures: Vec<RunFailure>) -> StoreResult<RunRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let issue: i64 = r.try_get("issue")?;
    Ok(RunRow {
        id: r.try_get("id")?,
        as_of: r.try_get("as_of")?,
        issue: issue != 0,
        status: r.try_get("status")?,
        eligible: r.try_get("eligible")?,
        invoiced: r.try_get("invoiced")?,
        created_at: r.try_get("created_at")?,
        finished_at: r.try_get("finished_at")?,
        failures,
    })
}

sql_store!(
    SqliteStore, sqlx::SqlitePool, sqlx::Sqlite, "sqlite", SQLITE_MIGRATIONS, sqlite_params,
    begin_write: "BEGIN IMMEDIATE", share_lock: "", update_lock: "", lock_first: false,
    due_query: SQLITE_DUE, claim_query: None::<&str>
);
sql_store!(
    PgStore, sqlx::PgPool, sqlx::Postgres, "postgres", POSTGRES_MIGRATIONS, postgres_params,
    begin_write: "BEGIN", share_lock: " FOR SHARE",
    update_lock: " FOR UPDATE", lock_first: true, due_query: POSTGRES_DUE,
    claim_query: Some(POSTGRES_CLAIM)
);
