//! Storage: one small trait, [`Store`], with one implementation for both databases, SQLite and PostgreSQL.
//!
//! Files: this one (the trait, opening a database), `types` (the rows), `rows` (reading them back), `due` (a batch
//! of due customers and its pipeline of chunks), `preview` (a price preview's read, per database), `migrations`,
//! `backend` (what differs between the databases: the [`Backend`] trait), `sql/` (every query, written once:
//! [`SqlStore`], generic over the backend).
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

mod backend;
mod contract;
mod due;
mod error;
mod migrations;
mod open;
mod preview;
mod rows;
mod sql;
mod types;
mod webhooks;

pub use backend::{Backend, Postgres, Sqlite};
pub use contract::{Idempotent, Store, IDEMPOTENCY_KEEP_MICROS};
pub use error::{StoreError, StoreResult};
pub use open::{open, sqlite_pool};
pub use sql::{PgStore, SqlStore, SqliteStore};
pub use types::*;
pub use webhooks::*;
