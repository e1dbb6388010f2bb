//! Benchmark of webhooks: what 3 subscribed endpoints cost ingestion and invoice runs, against none, side by side
//! in one run; and how many deliveries a second `tally serve` makes to a fast local receiver. Prints numbers;
//! asserts none (the target is in issue 23 and BENCHMARKS.md).
//!
//! `cargo bench -p api --bench webhooks` (PostgreSQL too when `TALLY_BENCH_POSTGRES_URL` or
//! `TALLY_TEST_POSTGRES_URL` names a database to create bench databases from).
//!
//! Each round is a fresh database and a fresh release `tally serve` on loopback, with 0 or 3 endpoints (one `*`, one
//! `invoice.created`, one `invoice.issued`) at a receiver in this process that answers 200 at once:
//!
//! 1. **Invoice run**: 5,000 customers (written through the store), `POST /v1/invoice-runs` with `issue` → invoices
//!    per second until the run completes. With endpoints, the run's 10,001 events become 20,001 deliveries, sent while
//!    the run goes on.
//! 2. **Ingestion**, right after the run (with endpoints, while its deliveries are still being sent): 8 clients × 25
//!    batches × 1,000 new events over keep-alive connections → events stored per second.
//! 3. **Deliveries**: from the run's start until the receiver has every delivery → deliveries per second.
//!
//! Rounds alternate none / 3 endpoints, three of each; the medians are printed side by side.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::store::{self, CustomerRow};
use serde_json::{json, Value};

const TOKEN: &str = "bench-admin";
const CUSTOMERS: usize = 5_000;
const CLIENTS: usize = 8;
const BATCHES: usize = 25;
const BATCH: usize = 1_000;
const ROUNDS: usize = 3;

struct Server {
    child: std::process::Child,
    url: String,
}

impl Server {
    fn start(database: &str) -> Server {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database", database, "--webhook-allow-private"])
            .env("TALLY_ADMIN_TOKEN", TOKEN)
            .env("TALLY_LOG", "warn")
            .stderr(std::process::Stdio::piped())
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

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let request = ureq::request(method, &format!("{}{path}", self.url))
            .set("Authorization", &format!("Bearer {TOKEN}"));
        let response = match body {
            Some(b) => request.send_json(b),
            None => request.call(),
        };
        response.expect("2xx").into_json().expect("json")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` per second over `elapsed`, in integers (no float arithmetic in the workspace, benches included).
fn per_second(n: u64, elapsed: Duration) -> u64 {
    u64::try_from(u128::from(n) * 1_000_000 / elapsed.as_micros().max(1)).unwrap_or(u64::MAX)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// A receiver answering 200 at once, counting requests.
fn receiver(rt: &tokio::runtime::Runtime) -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    rt.spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, count)
}

fn populate(rt: &tokio::runtime::Runtime, database: &str) {
    rt.block_on(async {
        let store = store::open(database).await.expect("store");
        store.migrate().await.expect("migrate");
        let anchor =
            chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z").expect("at").timestamp_micros();
        let until =
            chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").expect("at").timestamp_micros();
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in (t..CUSTOMERS).step_by(8) {
                        let row = CustomerRow {
                            id: format!("c{i:06}"),
                            name: format!("Customer {i}"),
                            billing_anchor: anchor,
                            addons: vec![],
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
        store.close().await;
    });
}

fn ingestion(server: &Server) -> u64 {
    server.call("POST", "/v1/customers", Some(&json!({"id": "bench", "name": "Bench"})));
    let at = chrono::Utc::now().format("%Y-%m-01T00:00:01Z").to_string();
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
    let started = Instant::now();
    let clients: Vec<_> = bodies
        .into_iter()
        .map(|bodies| {
            let url = format!("{}/v1/usage", server.url);
            std::thread::spawn(move || {
                let agent = ureq::agent();
                for body in &bodies {
                    agent
                        .post(&url)
                        .set("Authorization", &format!("Bearer {TOKEN}"))
                        .set("Content-Type", "application/json")
                        .send_string(body)
                        .expect("2xx");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    per_second((CLIENTS * BATCHES * BATCH) as u64, started.elapsed())
}

/// One round: (invoices/s, events/s, deliveries/s when there are endpoints).
fn round(
    rt: &tokio::runtime::Runtime,
    database: &str,
    endpoints: Option<(&str, &AtomicU64)>,
) -> (u64, u64, Option<u64>) {
    populate(rt, database);
    let server = Server::start(database);
    let before = endpoints.map(|(_, count)| count.load(Ordering::Relaxed));
    if let Some((url, _)) = endpoints {
        for types in [json!(["*"]), json!(["invoice.created"]), json!(["invoice.issued"])] {
            server.call(
                "POST",
                "/v1/webhook-endpoints",
                Some(&json!({"url": format!("{url}/hook"), "event_types": types})),
            );
        }
    }
    let started = Instant::now();
    let run = server.call(
        "POST",
        "/v1/invoice-runs",
        Some(&json!({"as_of": "2026-11-01T00:00:00Z", "issue": true})),
    );
    let id = run["id"].as_str().expect("run id").to_owned();
    while server.call("GET", &format!("/v1/invoice-runs/{id}"), None)["status"] != "completed" {
        std::thread::sleep(Duration::from_millis(5));
    }
    let invoices = per_second(CUSTOMERS as u64, started.elapsed());
    let events = ingestion(&server);
    let deliveries = endpoints.map(|(_, count)| {
        let want = (CUSTOMERS * 4 + 1) as u64;
        while count.load(Ordering::Relaxed) - before.unwrap_or(0) < want {
            std::thread::sleep(Duration::from_millis(5));
        }
        per_second(want, started.elapsed())
    });
    (invoices, events, deliveries)
}

fn compare(
    rt: &tokio::runtime::Runtime,
    label: &str,
    database: &dyn Fn(usize) -> String,
    receiver: (&str, &AtomicU64),
) {
    let (mut none, mut three) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new(), Vec::new()));
    for r in 0..ROUNDS {
        let (i, e, _) = round(rt, &database(2 * r), None);
        none.0.push(i);
        none.1.push(e);
        let (i, e, d) = round(rt, &database(2 * r + 1), Some(receiver));
        three.0.push(i);
        three.1.push(e);
        three.2.push(d.unwrap_or(0));
        println!(
            "  {label} round {}: invoices/s {} | {}   events/s {} | {}   deliveries/s {}",
            r + 1,
            none.0[r],
            three.0[r],
            none.1[r],
            three.1[r],
            three.2[r]
        );
    }
    println!(
        "  {label} median: invoice run {:>6} invoices/s (no endpoint) {:>6} (3 endpoints)   ingestion {:>7} events/s (no endpoint) {:>7} (3 endpoints)   deliveries {:>6}/s",
        median(none.0),
        median(three.0),
        median(none.1),
        median(three.1),
        median(three.2)
    );
}

fn main() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (url, count) = receiver(&rt);
    let dir = std::env::temp_dir().join(format!("tally-bench-webhooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    println!(
        "webhooks: {CUSTOMERS} customers invoiced and issued (10,001 events), then {CLIENTS} clients × {BATCHES} × {BATCH} events; \
         no endpoint | 3 endpoints (20,001 deliveries to a receiver answering at once)"
    );
    let sqlite = |n: usize| format!("sqlite://{}/w{n}.db?mode=rwc", dir.display());
    compare(&rt, "SQLite    ", &sqlite, (&url, &count));
    let pg_admin =
        std::env::var("TALLY_BENCH_POSTGRES_URL").or_else(|_| std::env::var("TALLY_TEST_POSTGRES_URL")).ok();
    if let Some(admin) = pg_admin {
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
        let names: Vec<String> =
            (0..2 * ROUNDS).map(|n| format!("tally_bench_wh_{}_{n}", std::process::id())).collect();
        for name in &names {
            let status = std::process::Command::new("psql")
                .args([admin.as_str(), "-qAtc", &format!("CREATE DATABASE {name}")])
                .status();
            assert!(status.is_ok_and(|s| s.success()), "cannot create {name}");
        }
        let pg = |n: usize| format!("{base}/{}", names[n]);
        compare(&rt, "PostgreSQL", &pg, (&url, &count));
        for name in &names {
            let _ = std::process::Command::new("psql")
                .args([admin.as_str(), "-qAtc", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
                .status();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
