//! Opening a database from its URL: the pool, SQLite's settings and its checkpointer, and a first connection
//! whose failure says where and why.

use std::sync::Arc;

use crate::store::contract::Store;
use crate::store::error::{StoreError, StoreResult};
use crate::store::sql::{PgStore, SqliteStore};

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
