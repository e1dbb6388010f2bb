//! Benchmark of the price preview: 100,000 customers (random UUID ids) × 5 metered products with two months of
//! invoices already stored, November's repriced with a draft by the same code `tally reprice` and `POST
//! /v1/price-books/preview` run, beside the floor measured in the same run: reading the same rows (the preview's own
//! paged read of the month's stored requests, with no pricing). Prints numbers; asserts none (the targets live in
//! the issue and BENCHMARKS.md).
//!
//! `cargo bench -p api --bench reprice` (PostgreSQL too when `TALLY_BENCH_POSTGRES_URL` or `TALLY_TEST_POSTGRES_URL`
//! names a database to create bench databases from). `TALLY_BENCH_CUSTOMERS` changes the number of customers,
//! `TALLY_BENCH_ROUNDS` the rounds (5; floor and preview alternate, medians reported).

use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use api::app::{PreviewPeriod, Service};
use api::store::{self, AddonSince, CustomerRow, LimitRow, NewEvent, Store};
use api::time::FixedClock;
use billing_core::PriceBook;
use chrono::{DateTime, NaiveDate, Utc};

/// The allocator the `tally` binary runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const METERS: [&str; 5] =
    ["events", "recordings", "feature_flag_requests", "cdp_trigger_events", "survey_responses"];

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("instant")
}

/// A random version-4 UUID's text (xorshift: no dependency, the same ids every run).
fn uuid(state: &mut u64) -> String {
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    };
    let (a, b) = (next(), next());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// Customers anchored on October 1st with usage on 5 meters in October and November, every 10th capped, every 4th
/// with the boost add-on; October and November invoiced by the invoice run.
async fn populate(store: &Arc<dyn Store>, service: &Arc<Service>, clock: &FixedClock, customers: usize) {
    let anchor = at("2026-10-01T00:00:00Z").timestamp_micros();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let ids: Vec<String> = (0..customers).map(|_| uuid(&mut seed)).collect();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (store, ids) = (store.clone(), ids.clone());
            tokio::spawn(async move {
                for i in (t..ids.len()).step_by(8) {
                    let row = CustomerRow {
                        id: ids[i].clone(),
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
                        open_until: Some(at("2026-11-01T00:00:00Z").timestamp_micros()),
                    };
                    store.insert_customer(&row, &format!("hash{i}")).await.expect("customer");
                    if i % 10 == 0 {
                        let cap = LimitRow { product: "product_analytics".into(), amount: 100, pinned: None };
                        store
                            .set_limits(
                                &ids[i],
                                &[(cap.product.clone(), Some(cap))],
                                anchor,
                                store::CredentialKind::Admin,
                            )
                            .await
                            .expect("cap");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    for (month, (start, as_of)) in
        [("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"), ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")]
            .into_iter()
            .enumerate()
    {
        let period = at(start).timestamp_micros();
        let events: Vec<NewEvent> = ids
            .iter()
            .enumerate()
            .flat_map(|(i, id)| {
                METERS.iter().enumerate().map(move |(m, meter)| NewEvent {
                    customer_id: id.clone(),
                    event_id: format!("e{month}-{m}"),
                    meter: (*meter).to_owned(),
                    quantity_micros: i64::try_from((i * 7919 + m * 104_729 + month * 77) % 3_000_000 + 1)
                        .unwrap_or(1)
                        * 1_000_000,
                    occurred_at: period + 3_600_000_000,
                    period_start: period,
                })
            })
            .collect();
        for chunk in events.chunks(5_000) {
            store.insert_events(chunk, period).await.expect("events");
        }
        *clock.0.write().expect("clock") = at(as_of) + chrono::Duration::hours(1);
        let (run, _) = service.open_run(at(as_of), false).await.expect("run");
        let done = service
            .work_run(&run, &api::app::RunSettings::default(), Arc::new(|_| {}))
            .await
            .expect("invoiced");
        assert_eq!(usize::try_from(done.invoiced).unwrap_or(0), customers, "every customer invoiced");
    }
}

/// The floor: every page of November's stored requests read, as the preview reads them, and nothing else.
async fn read_only(store: &Arc<dyn Store>) -> (Duration, usize) {
    let (from, until) =
        (at("2026-11-01T00:00:00Z").timestamp_micros(), at("2026-12-01T00:00:00Z").timestamp_micros());
    let started = Instant::now();
    let mut after = String::new();
    let mut rows = 0;
    loop {
        let page = store.invoiced_requests(from, until, &after, 1_000).await.expect("read");
        let Some(last) = page.last else { break };
        rows += page.requests.len();
        after = last;
    }
    (started.elapsed(), rows)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

fn per_second(n: usize, elapsed: Duration) -> u64 {
    u64::try_from(n as u128 * 1_000_000 / elapsed.as_micros().max(1)).unwrap_or(u64::MAX)
}

async fn bench(database: &str, label: &str, customers: usize) {
    let store = store::open(database).await.expect("open");
    store.migrate().await.expect("migrate");
    let clock = Arc::new(FixedClock(RwLock::new(at("2026-10-01T00:00:00Z"))));
    let book = PriceBook::default_book().expect("book");
    let service = Arc::new(Service::start(store.clone(), clock.clone(), &book).await.expect("service"));
    let started = Instant::now();
    populate(&store, &service, &clock, customers).await;
    println!(
        "{label}: {customers} customers × {} meters, 2 months invoiced (populated in {:.1?})",
        METERS.len(),
        started.elapsed()
    );
    let mut draft = serde_json::to_value(&book).expect("book");
    draft["version"] = serde_json::json!("draft");
    draft["products"][0]["tiers"][1]["unit_amount"] = serde_json::json!("0.000055");
    let draft = Arc::new(PriceBook::from_json(&draft.to_string()).expect("draft"));
    let november = PreviewPeriod::Month(NaiveDate::from_ymd_opt(2026, 11, 1));

    let rounds: usize =
        std::env::var("TALLY_BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(5).max(1);
    let (mut floors, mut previews, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (floor, rows) = read_only(&store).await;
        let started = Instant::now();
        let preview =
            service.reprice(draft.clone(), november, 10, Arc::new(|_, _| {})).await.expect("preview");
        // End to end: the answer's bytes too, as the API and `tally reprice --format json` write them.
        let body = serde_json::to_vec(&preview).expect("json");
        let elapsed = started.elapsed();
        assert_eq!(preview.summary.customers, customers);
        assert_eq!(rows, customers);
        println!(
            "  round {round}: preview {elapsed:.2?} = {} customers/s; floor (reading the same {rows} rows) {floor:.2?} = {} rows/s; \
             preview / floor {}% (more {}, same {}, revenue delta {}; {} MB of JSON)",
            per_second(customers, elapsed),
            per_second(rows, floor),
            floor.as_micros() * 100 / elapsed.as_micros().max(1),
            preview.summary.more,
            preview.summary.same,
            preview.summary.delta,
            body.len() / 1_000_000
        );
        ratios.push(Duration::from_micros(
            u64::try_from(floor.as_micros() * 100 / elapsed.as_micros().max(1)).unwrap_or(0),
        ));
        floors.push(floor);
        previews.push(elapsed);
    }
    let (floor, preview) = (median(floors), median(previews));
    println!(
        "  median of {rounds} rounds: preview {preview:.2?} ({} customers/s), floor {floor:.2?} ({} rows/s); preview / floor {}%",
        per_second(customers, preview),
        per_second(customers, floor),
        median(ratios).as_micros()
    );
    let started = Instant::now();
    let open =
        service.reprice(draft.clone(), PreviewPeriod::Open, 10, Arc::new(|_, _| {})).await.expect("open");
    println!(
        "  open periods (December, no usage yet): {} customers in {:.2?}",
        open.summary.customers,
        started.elapsed()
    );
    store.close().await;
}

fn main() {
    let customers: usize =
        std::env::var("TALLY_BENCH_CUSTOMERS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = std::env::temp_dir().join(format!("tally-bench-reprice-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let sqlite = format!("sqlite://{}/reprice.db?mode=rwc", dir.display());
    rt.block_on(bench(&sqlite, "SQLite", customers));
    if let Ok(admin) =
        std::env::var("TALLY_BENCH_POSTGRES_URL").or_else(|_| std::env::var("TALLY_TEST_POSTGRES_URL"))
    {
        let name = format!("tally_bench_reprice_{}", std::process::id());
        let _ =
            Command::new("psql").args([admin.as_str(), "-qAtc", &format!("CREATE DATABASE {name}")]).status();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
        rt.block_on(bench(&format!("{base}/{name}"), "PostgreSQL", customers));
        let _ = Command::new("psql")
            .args([admin.as_str(), "-qAtc", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
            .status();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
