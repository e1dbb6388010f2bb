//! Benchmark of invoice runs: 100,000 customers × 5 metered products, invoiced by the same code `tally invoice run`
//! runs, beside the raw bulk-insert rate of the same invoice rows into the same database, measured in the same run
//! (the physical floor), and the pricing alone (no database). Prints numbers; asserts none (targets live in the
//! issue and BENCHMARKS.md).
//!
//! `cargo bench -p api --bench invoicing` (PostgreSQL too when `TALLY_BENCH_POSTGRES_URL` or
//! `TALLY_TEST_POSTGRES_URL` names a database to create bench databases from). `TALLY_BENCH_CUSTOMERS` changes the
//! number of customers, `TALLY_BENCH_PG_WORKERS` the PostgreSQL run's workers (4), `TALLY_BENCH_ROUNDS` how many
//! rounds of run-then-floors are measured on each database (3; each round starts from the populated state again,
//! and the medians are reported).

use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use api::app::RunSettings;
use api::app::Service;
use api::store::{self, AddonSince, CustomerRow, Due, InvoiceFilter, InvoiceRow, NewEvent, Store};
use api::time::FixedClock;
use billing_core::PriceBook;
use chrono::{DateTime, Utc};
use sqlx::Connection;

/// The allocator the `tally` binary runs with (src/main.rs), so the run measured is the run `tally invoice run` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const METERS: [&str; 5] =
    ["events", "recordings", "feature_flag_requests", "cdp_trigger_events", "survey_responses"];

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("instant")
}

fn per_second(n: usize, elapsed: Duration) -> u64 {
    let micros = elapsed.as_micros().max(1);
    u64::try_from(n as u128 * 1_000_000 / micros).unwrap_or(u64::MAX)
}

/// 100,000 customers anchored on November 1st with usage on 5 meters in November, written through the store.
async fn populate(store: &Arc<dyn Store>, customers: usize) {
    let anchor = at("2026-11-01T00:00:00Z").timestamp_micros();
    let until = at("2026-12-01T00:00:00Z").timestamp_micros();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (t..customers).step_by(8) {
                    let row = CustomerRow {
                        id: format!("c{i:06}"),
                        name: format!("Customer {i}"),
                        billing_anchor: anchor,
                        addons: if i % 4 == 0 {
                            vec![AddonSince { key: "boost".into(), since: anchor, until: None }]
                        } else {
                            vec![]
                        },
                        created_at: anchor,
                        updated_at: anchor,
                        open_from: anchor,
                        open_until: Some(until),
                    };
                    store.insert_customer(&row, &format!("hash{i}")).await.expect("customer");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let events: Vec<NewEvent> = (0..customers)
        .flat_map(|i| {
            METERS.iter().enumerate().map(move |(m, meter)| NewEvent {
                customer_id: format!("c{i:06}"),
                event_id: format!("e{m}"),
                meter: (*meter).to_owned(),
                quantity_micros: i64::try_from((i * 7919 + m * 104_729) % 3_000_000 + 1).unwrap_or(1)
                    * 1_000_000,
                occurred_at: anchor + 3_600_000_000,
                period_start: anchor,
            })
        })
        .collect();
    for chunk in events.chunks(5_000) {
        store.insert_events(chunk, anchor).await.expect("events");
    }
}

/// Raw bulk insert of `rows` into a copy of the invoices table (its columns, keys, indexes and foreign key, as a
/// row written into `invoices` pays for them all): multi-row INSERTs of 200 rows, 500 rows per transaction, as the
/// run writes them, with no reads and no pricing. Without `foreign_key`, the copy's foreign key is not checked
/// (the floor as measured before 2026-12-03 on PostgreSQL, whose `LIKE … INCLUDING ALL` copies no foreign key).
async fn raw_insert(database: &str, rows: &[InvoiceRow], foreign_key: bool) -> Duration {
    const COLUMNS: &str =
        "id, customer_id, period_start, period_end, status, number, price_book_version, currency, \
        request, bill, total, credit_applied, amount_due, run_id, created_at, issued_at, paid_at, voided_at";
    macro_rules! go {
        ($conn:expr, $params:expr) => {{
            let mut conn = $conn;
            let started = Instant::now();
            for tx_rows in rows.chunks(500) {
                let mut tx = conn.begin().await.expect("begin");
                for chunk in tx_rows.chunks(200) {
                    let values: Vec<String> = (0..chunk.len()).map(|i| $params(i * 18)).collect();
                    let sql = format!("INSERT INTO raw_invoices ({COLUMNS}) VALUES {}", values.join(","));
                    let mut q = sqlx::query(&sql);
                    for r in chunk {
                        q = q
                            .bind(&r.id)
                            .bind(&r.customer_id)
                            .bind(r.period_start)
                            .bind(r.period_end)
                            .bind(&r.status)
                            .bind(&r.number)
                            .bind(&r.price_book_version)
                            .bind(&r.currency)
                            .bind(&r.request)
                            .bind(&r.bill)
                            .bind(&r.total)
                            .bind(&r.credit_applied)
                            .bind(&r.amount_due)
                            .bind(&r.run_id)
                            .bind(r.created_at)
                            .bind(r.issued_at)
                            .bind(r.paid_at)
                            .bind(r.voided_at);
                    }
                    q.execute(&mut *tx).await.expect("insert");
                }
                tx.commit().await.expect("commit");
            }
            started.elapsed()
        }};
    }
    if database.starts_with("sqlite") {
        // A connection configured as the store's (WAL, synchronous NORMAL, page cache), its pool checkpointing in the
        // background as the store's does: the same database, the same settings, only the run's work left out.
        let (pool, _alive) = store::sqlite_pool(database).await.expect("pool");
        let conn = pool.acquire().await.expect("connect").detach();
        // The same table: the invoices table's own definition, foreign key and indexes (its unique keys are what
        // makes a run exactly-once), renamed, as PostgreSQL's `LIKE invoices INCLUDING ALL` and its foreign keys.
        let mut conn = conn;
        if !foreign_key {
            sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut conn).await.expect("pragma");
        }
        sqlx::query("DROP TABLE IF EXISTS raw_invoices").execute(&mut conn).await.expect("drop");
        let ddl: Vec<String> = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'invoices' AND type IN ('table', 'index') AND sql IS NOT NULL
             ORDER BY type DESC",
        )
        .fetch_all(&mut conn)
        .await
        .expect("schema");
        let table = ddl[0].replacen("CREATE TABLE invoices", "CREATE TABLE raw_invoices", 1);
        sqlx::query(&table).execute(&mut conn).await.expect("table");
        for statement in &ddl[1..] {
            let renamed = statement
                .replacen("INDEX invoices_", "INDEX raw_invoices_", 1)
                .replace(" ON invoices ", " ON raw_invoices ");
            sqlx::query(&renamed).execute(&mut conn).await.expect("index");
        }
        go!(conn, |_| format!("({})", vec!["?"; 18].join(", ")))
    } else {
        let mut conn = sqlx::PgConnection::connect(database).await.expect("connect");
        for ddl in
            ["DROP TABLE IF EXISTS raw_invoices", "CREATE TABLE raw_invoices (LIKE invoices INCLUDING ALL)"]
        {
            sqlx::query(ddl).execute(&mut conn).await.expect("create");
        }
        if foreign_key {
            let keys: Vec<String> = sqlx::query_scalar(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint
                 WHERE conrelid = 'invoices'::regclass AND contype = 'f'",
            )
            .fetch_all(&mut conn)
            .await
            .expect("foreign keys");
            assert!(!keys.is_empty(), "invoices has its foreign key");
            for key in keys {
                sqlx::query(&format!("ALTER TABLE raw_invoices ADD {key}"))
                    .execute(&mut conn)
                    .await
                    .expect("foreign key");
            }
        }
        go!(conn, |p: usize| {
            format!("({})", (p + 1..=p + 18).map(|n| format!("${n}")).collect::<Vec<_>>().join(", "))
        })
    }
}

/// Writes every change so far into the database files (SQLite: the WAL into the database, then truncated;
/// PostgreSQL: a `CHECKPOINT`), so that what is measured next does not pay for what came before.
async fn settle(database: &str) {
    let url = database.split('?').next().unwrap_or(database);
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await.expect("checkpoint");
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query("CHECKPOINT").execute(&mut conn).await.expect("checkpoint");
    }
}

/// Puts the database back as the population left it — no invoice, no run, every customer's first period open — then
/// compacts it (SQLite `VACUUM`; PostgreSQL `VACUUM FULL` of what a run writes, so the customers' rows carry no dead
/// versions) and checkpoints it: every round starts from the same state, the first included.
async fn reset(database: &str) {
    let anchor = at("2026-11-01T00:00:00Z").timestamp_micros();
    let until = at("2026-12-01T00:00:00Z").timestamp_micros();
    let url = database.split('?').next().unwrap_or(database);
    macro_rules! go {
        ($conn:expr, $empty:expr, $compact:expr) => {{
            let mut conn = $conn;
            for sql in $empty {
                sqlx::query(sql).execute(&mut conn).await.expect(sql);
            }
            sqlx::query("UPDATE customers SET open_from = $1, open_until = $2")
                .bind(anchor)
                .bind(until)
                .execute(&mut conn)
                .await
                .expect("reopen");
            for sql in $compact {
                sqlx::query(sql).execute(&mut conn).await.expect(sql);
            }
        }};
    }
    if url.starts_with("sqlite") {
        go!(
            sqlx::SqliteConnection::connect(url).await.expect("connect"),
            [
                "DROP TABLE IF EXISTS raw_invoices",
                "DELETE FROM credit_entries",
                "DELETE FROM invoices",
                "DELETE FROM invoice_run_failures",
                "DELETE FROM invoice_runs",
            ],
            ["VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"]
        );
    } else {
        go!(
            sqlx::PgConnection::connect(url).await.expect("connect"),
            [
                "DROP TABLE IF EXISTS raw_invoices",
                "TRUNCATE credit_entries, invoices, invoice_run_failures, invoice_runs",
            ],
            ["VACUUM FULL customers", "VACUUM FULL invoices", "VACUUM ANALYZE", "CHECKPOINT"]
        );
    }
}

/// What one round measured: the run, and the floors with and without the foreign key.
struct Round {
    run: Duration,
    floor: Duration,
    unchecked: Duration,
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

async fn bench(database: &str, label: &str, customers: usize, workers: usize) {
    let store = store::open(database).await.expect("open");
    store.migrate().await.expect("migrate");
    let clock = Arc::new(FixedClock(RwLock::new(at("2026-12-02T00:00:00Z"))));
    let book = PriceBook::default_book().expect("book");
    let service = Arc::new(Service::start(store.clone(), clock, &book).await.expect("service"));
    let started = Instant::now();
    populate(&store, customers).await;
    let populated = started.elapsed();
    println!("{label}: {customers} customers × {} meters (populated in {populated:.1?})", METERS.len());

    // Rounds: each puts the database back as the population left it, runs, then measures the floors right after, so a
    // round's run and floors see the machine in the same state (this machine's speed moves ±15 % from minute to
    // minute); the rounds' medians are the result. Both measurements of a round start from a checkpointed database:
    // the run does not pay for the population's pages, nor the floor for the run's.
    let rounds: usize =
        std::env::var("TALLY_BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(3).max(1);
    let mut measured = Vec::new();
    let mut rows = Vec::with_capacity(customers);
    let mut run = None;
    for round in 1..=rounds {
        reset(database).await;

        // The run, as `tally invoice run` does it.
        let started = Instant::now();
        let (opened, _) = service.open_run(at("2026-12-01T00:00:00Z"), false).await.expect("run");
        let counted = started.elapsed();
        let settings = RunSettings { workers, ..RunSettings::default() };
        let done = service.work_run(&opened, &settings, Arc::new(|_| {})).await.expect("work");
        let elapsed = started.elapsed();
        assert_eq!(usize::try_from(done.invoiced).unwrap_or(0), customers, "every customer invoiced");

        // The same rows, read back, bulk-inserted raw.
        rows.clear();
        let mut after: Option<String> = None;
        loop {
            let page =
                store.invoices(&InvoiceFilter::default(), after.as_deref(), 5_000).await.expect("read");
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            rows.extend(page);
        }
        let url = database.split('?').next().unwrap_or(database);
        settle(database).await;
        let floor = raw_insert(url, &rows, true).await;
        settle(database).await;
        let unchecked = raw_insert(url, &rows, false).await;
        let (rate, floor_rate, unchecked_rate) = (
            per_second(customers, elapsed),
            per_second(rows.len(), floor),
            per_second(rows.len(), unchecked),
        );
        println!(
            "  round {round}: run ({workers} worker{}) {elapsed:.2?} = {rate} invoices/s (counting eligible periods \
             {counted:.2?}); floor {floor:.2?} = {floor_rate} rows/s, without the foreign key {unchecked:.2?} = \
             {unchecked_rate} rows/s; run / floor {}% ({}% without the foreign key)",
            if workers == 1 { "" } else { "s" },
            u128::from(rate) * 100 / u128::from(floor_rate.max(1)),
            u128::from(rate) * 100 / u128::from(unchecked_rate.max(1)),
        );
        measured.push(Round { run: elapsed, floor, unchecked });
        run = Some(done);
    }
    let run = run.expect("at least one round");

    // Pricing alone: the same customers' periods, in memory.
    let dues: Vec<Due> = rows
        .iter()
        .take(20_000)
        .map(|r| {
            let request: serde_json::Value = serde_json::from_str(&r.request).expect("request");
            let totals = METERS
                .iter()
                .filter_map(|m| {
                    let q = request["usage"][m].as_str()?;
                    let micros =
                        q.parse::<rust_decimal::Decimal>().ok()? * rust_decimal::Decimal::from(1_000_000);
                    Some(store::MeterTotal {
                        meter: (*m).to_owned(),
                        events_micros: i64::try_from(micros.trunc().mantissa()).ok()?,
                        reported_micros: 0,
                    })
                })
                .collect();
            let anchor = r.period_start;
            Due {
                customer: CustomerRow {
                    id: r.customer_id.clone(),
                    name: String::new(),
                    billing_anchor: anchor,
                    addons: vec![],
                    created_at: anchor,
                    updated_at: anchor,
                    open_from: anchor,
                    open_until: Some(r.period_end),
                },
                totals,
                limits: vec![],
                commitments: vec![],
                credits: vec![],
            }
        })
        .collect();
    let started = Instant::now();
    for due in &dues {
        service.price_due(due, &run, 0).expect("priced");
    }
    let pricing = started.elapsed();

    let ratio = |of: &dyn Fn(&Round) -> Duration| {
        median(
            measured
                .iter()
                .map(|r| u64::try_from(of(r).as_micros() * 100 / r.run.as_micros().max(1)).unwrap_or(0))
                .collect(),
        )
    };
    let rate = median(measured.iter().map(|r| per_second(customers, r.run)).collect());
    let floor_rate = median(measured.iter().map(|r| per_second(rows.len(), r.floor)).collect());
    let unchecked_rate = median(measured.iter().map(|r| per_second(rows.len(), r.unchecked)).collect());
    println!(
        "  median of {} round{}: invoice run {rate} invoices/s; raw bulk insert of the same {} rows {floor_rate} rows/s, \
         without checking their foreign key {unchecked_rate} rows/s",
        measured.len(),
        if measured.len() == 1 { "" } else { "s" },
        rows.len()
    );
    println!(
        "  run / raw: {}% ({}% of the insert without the foreign key check): the median of the rounds' ratios",
        ratio(&|r| r.floor),
        ratio(&|r| r.unchecked)
    );
    println!(
        "  pricing alone (price_due, {} periods, no database): {} periods/s, {:.1?} per period",
        dues.len(),
        per_second(dues.len(), pricing),
        pricing / u32::try_from(dues.len().max(1)).unwrap_or(1)
    );
    store.close().await;
}

fn main() {
    let customers: usize =
        std::env::var("TALLY_BENCH_CUSTOMERS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = std::env::temp_dir().join(format!("tally-bench-inv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let sqlite = format!("sqlite://{}/invoices.db?mode=rwc", dir.display());
    rt.block_on(bench(&sqlite, "SQLite", customers, 1));
    if let Ok(admin) =
        std::env::var("TALLY_BENCH_POSTGRES_URL").or_else(|_| std::env::var("TALLY_TEST_POSTGRES_URL"))
    {
        let name = format!("tally_bench_inv_{}", std::process::id());
        let _ =
            Command::new("psql").args([admin.as_str(), "-qAtc", &format!("CREATE DATABASE {name}")]).status();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
        rt.block_on(bench(
            &format!("{base}/{name}"),
            "PostgreSQL",
            customers,
            std::env::var("TALLY_BENCH_PG_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(4),
        ));
        let _ = Command::new("psql")
            .args([admin.as_str(), "-qAtc", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
            .status();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
