//! Benchmark of `tally serve`: the release binary on loopback, driven by real clients, beside the raw rate of the
//! same database measured in the same run. Prints numbers; asserts none (targets live in the issue and
//! BENCHMARKS.md).
//!
//! `cargo bench -p api --bench service` (PostgreSQL too when `TALLY_BENCH_POSTGRES_URL` or
//! `TALLY_TEST_POSTGRES_URL` names a database to create bench databases from; `wrk` for the quote load, installed
//! with apt when missing).
//!
//! 1. **Ingestion**: 8 client threads, each posting 25 batches of 1,000 new events (and every 5th batch again, to
//!    exercise the dedupe path), over keep-alive connections, bodies serialized before the clock starts → events
//!    stored per second. Beside it, the raw rate:
//!    the same events through the `Store` directly (8 tasks, batches of 1,000), no HTTP, no JSON.
//! 2. **Quotes**: `wrk` with 2 threads and 32 connections, 10 s of `POST /v1/quotes` → requests/s, p50, p99.
//! 3. **Usage view** of a customer with 1,000,000 stored events (written through the store): 1,000 sequential
//!    `GET /v1/customers/{id}/usage` → p50, p99.
//! 4. **The billing page** of a customer with 1,000,000 events spread over the period so far, a cap reached:
//!    200 sequential `GET /billing` (server render, uncompressed) → p50, p99, bytes; and the daily chart's read, as
//!    kept at ingestion (`usage_daily`) and as it would be computed from the stored events (`GROUP BY` day).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::store::{self, NewEvent};
use serde_json::{json, Value};

const TOKEN: &str = "bench-admin";
const CLIENTS: usize = 8;
const BATCHES: usize = 25;
const BATCH: usize = 1_000;

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(database: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
            .env("TALLY_ADMIN_TOKEN", TOKEN)
            .env("TALLY_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .expect("tally serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("tally listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(60)).expect("tally serve listens");
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Value {
    agent
        .post(url)
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(body)
        .expect("2xx")
        .into_json()
        .expect("json")
}

/// The 1st of this month, plus a second: safely inside every customer's current period.
fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m-01T00:00:01Z").to_string()
}

fn ingestion_over_http(database: &str) -> u64 {
    let server = Server::start(database);
    let agent = ureq::agent();
    post(&agent, &format!("{}/v1/customers", server.url), &json!({"id": "bench", "name": "Bench"}));
    let at = this_month();
    // Every body is serialized before the clock starts, as a load generator sends prepared requests: the time
    // measured is the server's, not the JSON building of clients that share its two cores.
    let bodies: Vec<Vec<String>> = (0..CLIENTS)
        .map(|c| {
            (0..BATCHES)
                .map(|b| {
                    let events: Vec<Value> = (0..BATCH)
                        .map(|i| json!({"id": format!("c{c}b{b}e{i}"), "customer_id": "bench", "meter": "events", "quantity": 1, "timestamp": at}))
                        .collect();
                    json!({"events": events}).to_string()
                })
                .collect()
        })
        .collect();
    let stored = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients: Vec<_> = bodies
        .into_iter()
        .map(|bodies| {
            let (url, stored) = (format!("{}/v1/usage", server.url), stored.clone());
            std::thread::spawn(move || {
                let agent = ureq::agent();
                let send = |body: &str| -> Value {
                    agent
                        .post(&url)
                        .set("Authorization", &format!("Bearer {TOKEN}"))
                        .set("Content-Type", "application/json")
                        .send_string(body)
                        .expect("2xx")
                        .into_json()
                        .expect("json")
                };
                for (b, body) in bodies.iter().enumerate() {
                    let answer = send(body);
                    stored.fetch_add(answer["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    if b % 5 == 0 {
                        assert_eq!(send(body)["duplicates"].as_u64(), Some(BATCH as u64));
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let elapsed = started.elapsed();
    let n = stored.load(Ordering::Relaxed);
    assert_eq!(n, (CLIENTS * BATCHES * BATCH) as u64);
    per_second(n, elapsed)
}

fn raw_store_rate(rt: &tokio::runtime::Runtime, database: &str) -> u64 {
    rt.block_on(async {
        let store = store::open(database).await.expect("store");
        store.migrate().await.expect("migrate");
        let started = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let store = store.clone();
                tokio::spawn(async move {
                    for b in 0..BATCHES {
                        let events: Vec<NewEvent> = (0..BATCH)
                            .map(|i| NewEvent {
                                customer_id: "raw".into(),
                                event_id: format!("c{c}b{b}e{i}"),
                                meter: "events".into(),
                                quantity_micros: 1_000_000,
                                occurred_at: 0,
                                period_start: 0,
                            })
                            .collect();
                        store.insert_events(&events, 0).await.expect("insert");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        let elapsed = started.elapsed();
        store.close().await;
        per_second((CLIENTS * BATCHES * BATCH) as u64, elapsed)
    })
}

/// `n` per second over `elapsed`, in integers (the workspace has no float arithmetic, benches included).
fn per_second(n: u64, elapsed: Duration) -> u64 {
    u64::try_from(u128::from(n) * 1_000_000 / elapsed.as_micros().max(1)).unwrap_or(u64::MAX)
}

fn quotes_under_wrk(url: &str) -> Option<String> {
    if Command::new("wrk").arg("--version").output().is_err() {
        let _ = Command::new("apt-get").args(["install", "-y", "-qq", "wrk"]).status();
    }
    let script = std::env::temp_dir().join("tally-bench-quote.lua");
    std::fs::write(
        &script,
        r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"usage": {"events": 12000000, "identified_events": 3000000, "recordings": 40000, "inbox_prs": 40}, "addons": ["group_analytics", "boost"], "limits": {"inbox": "300"}, "commitment": {"yearly_credit": "25000"}}'
"#,
    )
    .ok()?;
    let out = Command::new("wrk")
        .args(["-t2", "-c32", "-d10s", "--latency", "-s"])
        .arg(&script)
        .arg(format!("{url}/v1/quotes"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pick =
        |prefix: &str| text.lines().find(|l| l.trim_start().starts_with(prefix)).map(|l| l.trim().to_owned());
    Some(format!(
        "{} | {} | {} | {}",
        pick("Requests/sec:").unwrap_or_default(),
        pick("50%").unwrap_or_default(),
        pick("99%").unwrap_or_default(),
        pick("Non-2xx").unwrap_or_else(|| "all 2xx".into())
    ))
}

fn usage_view_latency(rt: &tokio::runtime::Runtime, database: &str) -> (Duration, Duration, u64) {
    let server = Server::start(database);
    let agent = ureq::agent();
    post(&agent, &format!("{}/v1/customers", server.url), &json!({"id": "big", "name": "Big"}));
    // 1,000,000 events written through the store (the usage view must not depend on how they came).
    let url = format!("{}/v1/customers/big/usage", server.url);
    let view: Value = agent
        .get(&url)
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .expect("view")
        .into_json()
        .expect("json");
    let period_start =
        chrono::DateTime::parse_from_rfc3339(view["period"]["start"].as_str().expect("period start"))
            .expect("an instant")
            .timestamp_micros();
    rt.block_on(async {
        let store = store::open(database).await.expect("store");
        for b in 0..1_000 {
            let events: Vec<NewEvent> = (0..1_000)
                .map(|i| NewEvent {
                    customer_id: "big".into(),
                    event_id: format!("b{b}e{i}"),
                    meter: if i % 2 == 0 { "events".into() } else { "recordings".into() },
                    quantity_micros: 1_000_000,
                    occurred_at: period_start + 1_000_000,
                    period_start,
                })
                .collect();
            store.insert_events(&events, 0).await.expect("insert");
        }
        store.close().await;
    });
    let mut times = Vec::with_capacity(1_000);
    let mut events = 0;
    for _ in 0..1_000 {
        let started = Instant::now();
        let view: Value = agent
            .get(&url)
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .expect("view")
            .into_json()
            .expect("json");
        times.push(started.elapsed());
        events = view["usage"]["events"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    }
    times.sort();
    (times[499], times[989], events)
}

fn main() {
    // `TALLY_BENCH_ONLY=billing` runs the billing page's part alone.
    if std::env::var("TALLY_BENCH_ONLY").is_ok_and(|o| o == "billing") {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let dir = std::env::temp_dir().join(format!("tally-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let page = billing_page_latency(&rt, &format!("sqlite://{}/billing.db?mode=rwc", dir.display()));
        println!(
            "billing page: p50 {:?}, p99 {:?}, {} bytes; daily read kept {:?}, computed {:?}",
            page.p50, page.p99, page.bytes, page.daily_kept, page.daily_computed
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = std::env::temp_dir().join(format!("tally-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let sqlite = |name: &str| format!("sqlite://{}/{name}.db?mode=rwc", dir.display());
    // `TALLY_BENCH_ONLY=ingestion` runs the SQLite ingestion part alone (for side-by-side runs of two codes).
    if std::env::var("TALLY_BENCH_ONLY").is_ok_and(|o| o == "ingestion") {
        let raw = raw_store_rate(&rt, &sqlite("raw"));
        let http = ingestion_over_http(&sqlite("http"));
        println!("  SQLite     raw store: {raw:>9} events/s   over HTTP: {http:>9} events/s");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    println!(
        "ingestion, {CLIENTS} clients × {BATCHES} batches × {BATCH} events (every 5th batch sent twice):"
    );
    let raw = raw_store_rate(&rt, &sqlite("raw"));
    let http = ingestion_over_http(&sqlite("http"));
    println!(
        "  SQLite     raw store: {raw:>9} events/s   over HTTP: {http:>9} events/s   HTTP/raw {}%",
        http * 100 / raw.max(1)
    );

    let pg_admin =
        std::env::var("TALLY_BENCH_POSTGRES_URL").or_else(|_| std::env::var("TALLY_TEST_POSTGRES_URL")).ok();
    let mut pg_dbs = Vec::new();
    if let Some(admin) = &pg_admin {
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
        let mut db = |name: &str| {
            let name = format!("tally_bench_{}_{name}", std::process::id());
            let _ = Command::new("psql")
                .args([admin.as_str(), "-qAtc", &format!("CREATE DATABASE {name}")])
                .status();
            pg_dbs.push(name.clone());
            format!("{base}/{name}")
        };
        let (raw_db, http_db) = (db("raw"), db("http"));
        let raw = raw_store_rate(&rt, &raw_db);
        let http = ingestion_over_http(&http_db);
        println!(
            "  PostgreSQL raw store: {raw:>9} events/s   over HTTP: {http:>9} events/s   HTTP/raw {}%",
            http * 100 / raw.max(1)
        );
    }

    let server = Server::start(&sqlite("quotes"));
    match quotes_under_wrk(&server.url) {
        Some(line) => println!("quotes (wrk -t2 -c32 -d10s): {line}"),
        None => println!("quotes: wrk is not available"),
    }
    drop(server);

    let (p50, p99, events) = usage_view_latency(&rt, &sqlite("view"));
    println!("usage view of a customer with {events} + {events} stored events (1,000 sequential GETs): p50 {p50:?}, p99 {p99:?}");

    let page = billing_page_latency(&rt, &sqlite("billing"));
    println!(
        "billing page, 1,000,000 events in the period, a cap reached (200 sequential GET /billing): p50 {:?}, p99 {:?}, {} bytes",
        page.p50, page.p99, page.bytes
    );
    println!(
        "  daily chart read (SQLite, 100 reads): kept at ingestion p50 {:?}; computed from the events p50 {:?}",
        page.daily_kept, page.daily_computed
    );

    if let Some(admin) = &pg_admin {
        for name in pg_dbs {
            let _ = Command::new("psql")
                .args([admin.as_str(), "-qAtc", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
                .status();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

struct PageTimes {
    p50: Duration,
    p99: Duration,
    bytes: usize,
    daily_kept: Duration,
    daily_computed: Duration,
}

/// The median of 100 runs of `query` on `database`.
fn median_query(rt: &tokio::runtime::Runtime, database: &str, query: &str, period_start: i64) -> Duration {
    rt.block_on(async {
        let (pool, _alive) = store::sqlite_pool(database).await.expect("pool");
        let mut times = Vec::with_capacity(100);
        for _ in 0..100 {
            let started = Instant::now();
            let rows: Vec<(String, i64, i64)> =
                sqlx::query_as(query).bind("big").bind(period_start).fetch_all(&pool).await.expect("query");
            assert!(!rows.is_empty());
            times.push(started.elapsed());
        }
        pool.close().await;
        times.sort();
        times[50]
    })
}

fn billing_page_latency(rt: &tokio::runtime::Runtime, database: &str) -> PageTimes {
    let server = Server::start(database);
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    post(&agent, &format!("{}/v1/customers", server.url), &json!({"id": "big", "name": "Big"}));
    let view: Value = agent
        .get(&format!("{}/v1/customers/big/usage", server.url))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .expect("view")
        .into_json()
        .expect("json");
    let start = chrono::DateTime::parse_from_rfc3339(view["period"]["start"].as_str().expect("period start"))
        .expect("an instant")
        .timestamp_micros();
    // The cap first: set after the usage, it would only pin this period at what it already bills.
    agent
        .put(&format!("{}/v1/customers/big/limits", server.url))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(json!({"session_replay": "50"}))
        .expect("cap");
    // Spread over the period so far (at least a day), one event a few seconds apart.
    let elapsed = (chrono::Utc::now().timestamp_micros() - start).max(86_400_000_000);
    rt.block_on(async {
        let store = store::open(database).await.expect("store");
        for b in 0..1_000_i64 {
            let events: Vec<NewEvent> = (0..1_000_i64)
                .map(|i| NewEvent {
                    customer_id: "big".into(),
                    event_id: format!("b{b}e{i}"),
                    meter: if i % 2 == 0 { "events".into() } else { "recordings".into() },
                    quantity_micros: 1_000_000,
                    occurred_at: start + (b * 1_000 + i) * (elapsed / 1_000_000),
                    period_start: start,
                })
                .collect();
            store.insert_events(&events, 0).await.expect("insert");
        }
        store.close().await;
    });
    let link = post(&agent, &format!("{}/v1/customers/big/portal-sessions", server.url), &json!({}));
    let opened = agent.get(link["url"].as_str().expect("url")).call().expect("303");
    let cookie = opened.header("set-cookie").expect("cookie").split(';').next().expect("pair").to_owned();
    let mut times = Vec::with_capacity(200);
    let mut bytes = 0;
    for _ in 0..200 {
        let started = Instant::now();
        let page = agent
            .get(&format!("{}/billing", server.url))
            .set("Cookie", &cookie)
            .call()
            .expect("page")
            .into_string()
            .expect("html");
        times.push(started.elapsed());
        assert!(page.contains("Cap reached on"), "the cap is reached");
        bytes = page.len();
    }
    drop(server);
    times.sort();
    let daily_kept = median_query(
        rt,
        database,
        "SELECT meter, day, events_micros FROM usage_daily WHERE customer_id = $1 AND period_start = $2
         ORDER BY meter, day",
        start,
    );
    let daily_computed = median_query(
        rt,
        database,
        "SELECT meter, (occurred_at / 86400000000) * 86400000000 AS day, SUM(quantity_micros) FROM usage_events
         WHERE customer_id = $1 AND period_start = $2 GROUP BY meter, day ORDER BY meter, day",
        start,
    );
    PageTimes { p50: times[99], p99: times[197], bytes, daily_kept, daily_computed }
}
