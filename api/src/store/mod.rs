//! Storage: one small trait, [`Store`], with one implementation for both databases, SQLite and PostgreSQL.
//!
//! Files: this one (the trait, opening a database), `types` (the rows), `rows` (reading them back), `due` (a batch
//! of due customers and its pipeline of chunks), `migrations`, `backend` (what differs between the databases: the
//! [`Backend`] trait), `sql/` (every query, written once: [`SqlStore`], generic over the backend).
//!
//! Every query is written once with `$1, $2, …` placeholders (PostgreSQL's; SQLite reads `$N` as numbered
//! parameters, bound in order of first appearance, which is why every query numbers them in order), and the sqlx
//! query API is the same for both pools: [`SqlStore`] runs them on either, and [`SqliteStore`] and [`PgStore`] are
//! its two instances. What differs — a handful of statements, listed in `backend.rs` with the reason for each — comes
//! from [`Backend`]. Queries are checked at run time, by the storage contract suite run against both databases
//! (`api/tests/store_contract.rs`), not by sqlx's compile-time macros (which bind one database per crate).
//!
//! Exact values only: quantities are integer micro-units (a `Quantity` has at most 6 decimal places and at most
//! 10¹² units, so 10¹⁸ micro-units fit a BIGINT), caps whole currency units, instants microseconds since the Unix
//! epoch, price books their canonical JSON text. Conversions to core types happen in `app`.

use std::sync::Arc;

use async_trait::async_trait;

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
        Ok(Arc::new(SqliteStore::new(pool, alive)))
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
        Ok(Arc::new(PgStore::new(pool, Arc::new(()))))
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

/// An invoice number: the prefix and at least six digits.
pub fn invoice_number(prefix: &str, n: i64) -> String {
    format!("{prefix}{n:06}")
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

mod backend;
mod types;

pub use types::*;
mod due;
mod migrations;
mod rows;

mod sql;

pub use backend::{Backend, Postgres, Sqlite};
pub use sql::SqlStore;

/// The store on SQLite.
pub type SqliteStore = SqlStore<Sqlite>;
/// The store on PostgreSQL.
pub type PgStore = SqlStore<Postgres>;
