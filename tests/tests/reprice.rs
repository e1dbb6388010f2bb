//! The price preview as the pricing team runs it: `tally reprice` (the real binary) on the database a live `tally
//! serve` keeps, on a fresh SQLite file and a fresh PostgreSQL database, while usage keeps arriving. Its JSON is
//! byte for byte the answer of `POST /v1/price-books/preview`; it writes nothing.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use e2e::{answer, databases, tally, tally_path, Server, TempFile};
use serde_json::{json, Value};

const ANCHOR: &str = "2026-09-01T00:00:00Z";
const AS_OF: &str = "2026-11-01T00:00:00Z";

fn id(i: usize) -> String {
    format!("cust{i:04}")
}

/// `n` customers with September and October usage on two products, every 7th capped; invoiced.
fn populate(server: &Server, n: usize) {
    for i in 0..n {
        let (status, body) = answer(
            server
                .admin("POST", "/v1/customers")
                .send_json(json!({"id": id(i), "name": id(i), "billing_anchor": ANCHOR})),
        );
        assert_eq!(status, 201, "{body}");
        if i % 7 == 0 {
            let limits = json!({"product_analytics": "40"});
            let (status, body) =
                answer(server.admin("PUT", &format!("/v1/customers/{}/limits", id(i))).send_json(limits));
            assert_eq!(status, 200, "{body}");
        }
    }
    let events: Vec<Value> = (0..n)
        .flat_map(|i| {
            ["2026-09-15T12:00:00Z", "2026-10-15T12:00:00Z"].into_iter().enumerate().flat_map(move |(m, at)| {
                [
                    json!({"id": format!("e{i}-{m}"), "customer_id": id(i), "meter": "events", "quantity": (i * 7919 + m) % 3_000_000, "timestamp": at}),
                    json!({"id": format!("r{i}-{m}"), "customer_id": id(i), "meter": "recordings", "quantity": (i * 31 + m) % 20_000, "timestamp": at}),
                ]
            })
        })
        .collect();
    for batch in events.chunks(5_000) {
        let (status, body) = answer(server.admin("POST", "/v1/usage").send_json(json!({"events": batch})));
        assert_eq!(status, 200, "{body}");
    }
    let run = Command::new(tally_path())
        .args(["invoice", "run", "--as-of", AS_OF, "--database", &server.database])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

/// The built-in book with product analytics' second tier 10 % dearer.
fn draft() -> Value {
    let mut book = tally(&["price-book"], "").json();
    book["version"] = json!("2027-01");
    book["products"][0]["tiers"][1]["unit_amount"] = json!("0.000055");
    book
}

fn reprice(args: &[&str]) -> std::process::Output {
    Command::new(tally_path()).arg("reprice").args(args).output().unwrap()
}

#[test]
fn tally_reprice_is_the_api_answer_byte_for_byte_beside_a_live_server() {
    for (database, _guard) in databases() {
        let server = Server::start(&database);
        populate(&server, 300);
        let draft = draft();
        let file = TempFile::new("draft.json", &draft.to_string());

        // Usage keeps arriving for the open period while the previews run: they read beside it.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (url, stop) = (server.url.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                let mut n = 0_usize;
                while !stop.load(Ordering::Relaxed) {
                    let events: Vec<Value> = (0..50)
                        .map(|k| json!({"id": format!("live-{n}-{k}"), "customer_id": id((n + k) % 300), "meter": "events", "quantity": 1000, "timestamp": "2026-11-02T00:00:00Z"}))
                        .collect();
                    let r = agent
                        .post(&format!("{url}/v1/usage"))
                        .set("Authorization", &format!("Bearer {}", e2e::ADMIN_TOKEN))
                        .send_json(json!({"events": events}));
                    assert!(r.is_ok(), "{r:?}");
                    n += 1;
                }
                n
            })
        };

        let mut api = String::new();
        server
            .admin("POST", "/v1/price-books/preview")
            .send_json(json!({"price_book": draft, "period": "2026-10"}))
            .unwrap()
            .into_reader()
            .read_to_string(&mut api)
            .unwrap();
        let cli = reprice(&[
            "--price-book",
            file.arg(),
            "--period",
            "2026-10",
            "--database",
            &database,
            "--format",
            "json",
        ]);
        assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
        assert_eq!(String::from_utf8(cli.stdout).unwrap(), api, "the CLI's JSON is the API's answer");
        // Without a month: the latest month invoiced, October.
        let latest = reprice(&["--price-book", file.arg(), "--database", &database, "--format", "json"]);
        assert_eq!(String::from_utf8(latest.stdout).unwrap(), api);
        stop.store(true, Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0, "usage arrived during the previews");

        let report: Value = serde_json::from_str(&api).unwrap();
        assert_eq!(report["summary"]["customers"], 300);
        assert_eq!(report["summary"]["unpriceable"], 0);
        assert!(report["summary"]["more"].as_u64().unwrap() > 0, "{}", report["summary"]);
        assert_eq!(report["period"], json!({"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}));

        // CSV: a header and a row per customer; the table: the summary and the movers.
        let csv = reprice(&[
            "--price-book",
            file.arg(),
            "--period",
            "2026-10",
            "--database",
            &database,
            "--format",
            "csv",
        ]);
        let csv = String::from_utf8(csv.stdout).unwrap();
        assert_eq!(csv.lines().count(), 301);
        assert!(
            csv.starts_with("customer_id,invoice_id,current_total,draft_total,delta,delta_percent,"),
            "{csv}"
        );
        let first = &report["customers"][0];
        assert!(
            csv.lines().nth(1).unwrap().starts_with(&format!(
                "{},{},{},{},{}",
                first["customer_id"].as_str().unwrap(),
                first["invoice_id"].as_str().unwrap(),
                first["current_total"].as_str().unwrap(),
                first["draft_total"].as_str().unwrap(),
                first["delta"].as_str().unwrap()
            )),
            "{csv}"
        );
        let table = reprice(&[
            "--price-book",
            file.arg(),
            "--period",
            "2026-10",
            "--database",
            &database,
            "--top",
            "3",
        ]);
        let table = String::from_utf8(table.stdout).unwrap();
        assert!(table.contains("customers      300 (pay more"), "{table}");
        assert!(table.contains("largest increases"), "{table}");
        assert_eq!(table.lines().filter(|l| l.starts_with("  cust0")).count(), 3, "--top 3: {table}");
    }
}

#[test]
fn bad_input_exits_2_with_every_problem_and_creates_nothing() {
    let dir = std::env::temp_dir().join(format!("tally-reprice-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = format!("sqlite://{}/missing.db", dir.display());
    let book = TempFile::new("draft.json", &draft().to_string());
    let out = reprice(&["--price-book", book.arg(), "--database", &missing]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.db"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("missing.db").exists(), "a preview creates no database");

    let mut bad = draft();
    bad["currency"] = json!("XYZ");
    bad["products"][1]["key"] = json!("");
    let bad = TempFile::new("bad.json", &bad.to_string());
    let out = reprice(&["--price-book", bad.arg(), "--database", &missing]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("currency") && stderr.contains("products[1].key"), "every problem: {stderr}");
    for args in [["--period", "2026-13"], ["--top", "1001"], ["--format", "xml"]] {
        let out = reprice(&[&["--price-book", book.arg(), "--database", &missing][..], &args[..]].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = reprice(&["--price-book", book.arg(), "--open", "--period", "2026-10"]);
    assert_eq!(out.status.code(), Some(2), "--open and --period exclude each other");
    let _ = std::fs::remove_dir_all(dir);
}
