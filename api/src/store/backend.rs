//! What differs between the two databases, as a small trait: [`Backend`]. Everything else — every query of the
//! store — is written once, in `sql.rs`, generic over it.
//!
//! Of the store's statements, these differ between the backends (the rest, about 60, are the same text for both):
//! - how a write transaction begins: `BEGIN IMMEDIATE` on SQLite (the write lock up front, so two writers never
//!   deadlock on an upgrade), `BEGIN` on PostgreSQL (row locks taken by the statements);
//! - two lock clauses: `FOR SHARE` when ingestion reads a customer's open period, `FOR UPDATE` when an invoice
//!   changes state (SQLite has neither: its write lock covers both);
//! - placeholder lists of variable length (`?, ?, …` on SQLite, `$n, $n+1, …` on PostgreSQL) in `IN (…)` lists and
//!   multi-row inserts;
//! - the claim of a batch of due customers and the read of what pricing needs: one statement under SQLite's write
//!   lock; two on PostgreSQL, `FOR UPDATE SKIP LOCKED` first, then a read whose snapshot sees every row the locks
//!   waited for (`due.rs` holds both texts);
//! - the claims webhook workers share (undispatched events, due deliveries): `FOR UPDATE SKIP LOCKED` on PostgreSQL,
//!   so instances take different rows; nothing on SQLite, one process under its write lock;
//! - the bulk insert of events: on PostgreSQL the open periods are read under a shared lock before the insert, on
//!   SQLite the write lock taken by `BEGIN IMMEDIATE` already orders it (`lock_first`);
//! - the migrations (each database's own DDL, compiled in).

use crate::store::due::{POSTGRES_CLAIM, POSTGRES_DUE, SQLITE_DUE};
use crate::store::migrations::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
use crate::store::preview::{POSTGRES_INVOICED_REQUESTS, SQLITE_INVOICED_REQUESTS};

/// A database tally stores to, and what its statements need that the other's do not.
pub trait Backend: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// sqlx's database.
    type Db: sqlx::Database;
    /// `sqlite` or `postgres`.
    const NAME: &'static str;
    /// The migrations: version, description, SQL.
    const MIGRATIONS: &'static [(i64, &'static str, &'static str)];
    /// The statement that begins a write transaction.
    const BEGIN_WRITE: &'static str;
    /// Appended to a read of customers that must not be closed by an invoice run before the caller commits.
    const SHARE_LOCK: &'static str;
    /// Appended to a read of a row the transaction will change.
    const UPDATE_LOCK: &'static str;
    /// Whether a batch of events reads its customers' open periods under a shared lock before inserting (PostgreSQL),
    /// rather than relying on the transaction's write lock (SQLite).
    const LOCK_FIRST: bool;
    /// The read of a chunk of due customers as one JSON document (SQLite: it also claims them; PostgreSQL: the
    /// claimed ids are in its `{ids}` list).
    const DUE_QUERY: &'static str;
    /// The claim of a chunk of due customers, when it is a statement of its own (PostgreSQL).
    const CLAIM_QUERY: Option<&'static str>;
    /// A price preview's read of a page of customers and their invoices of a month: a plain join on SQLite, a
    /// `LATERAL` subquery on PostgreSQL, whose generic plan would otherwise hash the whole month for every page.
    const INVOICED_REQUESTS: &'static str;
    /// The end of a claim of rows that concurrent workers share (webhook deliveries, undispatched events): `FOR
    /// UPDATE SKIP LOCKED` on PostgreSQL, so each takes different rows; nothing on SQLite, whose writer holds the
    /// database's write lock from `BEGIN IMMEDIATE`.
    const SKIP_LOCKED: &'static str;
    /// The multi-row insert of events whose `VALUES` lists are `rows` (7 columns each): it returns the (customer,
    /// event) ids it stored; a duplicate id is skipped. On SQLite it also skips events of a closed period, read in
    /// the same statement under the write lock; on PostgreSQL those were filtered out before, under a shared lock.
    fn insert_events(rows: &str) -> String;
    /// A parenthesized list of `n` placeholders, the first numbered `first + 1`.
    fn params(first: usize, n: usize) -> String;
    /// How many rows a statement changed.
    fn rows_affected(done: &<Self::Db as sqlx::Database>::QueryResult) -> u64;
    /// Arguments built for no statement in particular (on the pricing thread), for a statement that lives shorter:
    /// the identity, which the compiler accepts only where it knows the concrete type's variance.
    fn arguments<'q>(
        args: <Self::Db as sqlx::Database>::Arguments<'static>,
    ) -> <Self::Db as sqlx::Database>::Arguments<'q>;
}

/// SQLite, a file beside the service (the embedded default).
#[derive(Debug, Clone, Copy)]
pub struct Sqlite;

impl Backend for Sqlite {
    type Db = sqlx::Sqlite;
    const NAME: &'static str = "sqlite";
    const MIGRATIONS: &'static [(i64, &'static str, &'static str)] = SQLITE_MIGRATIONS;
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const SHARE_LOCK: &'static str = "";
    const UPDATE_LOCK: &'static str = "";
    const LOCK_FIRST: bool = false;
    const DUE_QUERY: &'static str = SQLITE_DUE;
    const CLAIM_QUERY: Option<&'static str> = None;
    const INVOICED_REQUESTS: &'static str = SQLITE_INVOICED_REQUESTS;
    const SKIP_LOCKED: &'static str = "";

    fn insert_events(rows: &str) -> String {
        format!(
            "INSERT INTO usage_events (customer_id, event_id, meter, quantity_micros, occurred_at, period_start, \
             received_at) \
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7 \
             FROM (VALUES {rows}) AS v LEFT JOIN customers c ON c.id = v.column1 \
             WHERE c.id IS NULL OR v.column6 >= COALESCE(c.open_from, c.billing_anchor) \
             ON CONFLICT (customer_id, event_id) DO NOTHING RETURNING customer_id, event_id"
        )
    }

    /// SQLite numbers `?` placeholders in order of appearance: the list needs no numbers.
    fn params(_first: usize, n: usize) -> String {
        let mut s = String::with_capacity(3 * n + 2);
        s.push('(');
        for i in 0..n {
            s.push_str(if i == 0 { "?" } else { ", ?" });
        }
        s.push(')');
        s
    }

    fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    fn arguments<'q>(args: sqlx::sqlite::SqliteArguments<'static>) -> sqlx::sqlite::SqliteArguments<'q> {
        args
    }
}

/// PostgreSQL, shared by several instances of the service.
#[derive(Debug, Clone, Copy)]
pub struct Postgres;

impl Backend for Postgres {
    type Db = sqlx::Postgres;
    const NAME: &'static str = "postgres";
    const MIGRATIONS: &'static [(i64, &'static str, &'static str)] = POSTGRES_MIGRATIONS;
    const BEGIN_WRITE: &'static str = "BEGIN";
    const SHARE_LOCK: &'static str = " FOR SHARE";
    const UPDATE_LOCK: &'static str = " FOR UPDATE";
    const LOCK_FIRST: bool = true;
    const DUE_QUERY: &'static str = POSTGRES_DUE;
    const CLAIM_QUERY: Option<&'static str> = Some(POSTGRES_CLAIM);
    const INVOICED_REQUESTS: &'static str = POSTGRES_INVOICED_REQUESTS;
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    fn insert_events(rows: &str) -> String {
        format!(
            "INSERT INTO usage_events (customer_id, event_id, meter, quantity_micros, occurred_at, period_start, \
             received_at) VALUES {rows} \
             ON CONFLICT (customer_id, event_id) DO NOTHING RETURNING customer_id, event_id"
        )
    }

    fn params(first: usize, n: usize) -> String {
        let list: Vec<String> = (first + 1..=first + n).map(|p| format!("${p}")).collect();
        format!("({})", list.join(", "))
    }

    fn rows_affected(done: &sqlx::postgres::PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn arguments<'q>(
        args: <sqlx::Postgres as sqlx::Database>::Arguments<'static>,
    ) -> <sqlx::Postgres as sqlx::Database>::Arguments<'q> {
        args
    }
}
