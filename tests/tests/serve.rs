//! `tally serve` as it runs in production: the real binary on a free port, on a fresh SQLite file and (when
//! `TALLY_TEST_POSTGRES_URL` is set) on a fresh PostgreSQL database, driven over real HTTP connections.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use e2e::{answer, databases, Server};
use serde_json::{json, Value};

/// Creates a customer anchored on the 1st of this month; returns its key.
fn customer(server: &Server, id: &str) -> String {
    let (status, body) =
        answer(server.admin("POST", "/v1/customers").send_json(json!({"id": id, "name": id})));
    assert_eq!(status, 201, "{body}");
    body["api_key"].as_str().unwrap().to_owned()
}

/// An instant inside the current period, safely in the past (the first second of this month).
fn this_month() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // Days since the epoch → civil date (Howard Hinnant's algorithm), to name the 1st of this month in UTC.
    let days = i64::try_from(now / 86_400).unwrap();
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year}-{month:02}-01T00:00:01Z")
}

fn events(prefix: &str, n: usize, customer: &str, meter: &str, at: &str) -> Vec<Value> {
    (0..n).map(|i| json!({"id": format!("{prefix}{i}"), "customer_id": customer, "meter": meter, "quantity": 1, "timestamp": at})).collect()
}

#[test]
fn eight_clients_posting_the_same_events_store_each_once() {
    for (database, _guard) in databases() {
        let server = Arc::new(Server::start(&database));
        let key = customer(&server, "acme");
        let all = Arc::new(events("e", 10_000, "acme", "events", &this_month()));
        let (accepted, duplicates) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let clients: Vec<_> = (0..8)
            .map(|c| {
                let (server, all, key, accepted, duplicates) =
                    (server.clone(), all.clone(), key.clone(), accepted.clone(), duplicates.clone());
                std::thread::spawn(move || {
                    // Each client sends the batches in its own order, so they collide everywhere.
                    for b in 0..10 {
                        let batch = &all[((b + c) % 10) * 1_000..((b + c) % 10 + 1) * 1_000];
                        let (status, body) = answer(
                            server.request("POST", "/v1/usage", &key).send_json(json!({"events": batch})),
                        );
                        assert_eq!(status, 200, "{body}");
                        accepted.fetch_add(body["accepted"].as_u64().unwrap(), Ordering::Relaxed);
                        duplicates.fetch_add(body["duplicates"].as_u64().unwrap(), Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 10_000, "{database}: every event stored once");
        assert_eq!(duplicates.load(Ordering::Relaxed), 70_000, "{database}");
        let (_, view) = answer(server.request("GET", "/v1/customers/acme/usage", &key).call());
        assert_eq!(view["usage"]["events"], "10000", "{database}");
    }
}

#[test]
fn a_cap_drops_usage_and_the_usage_view_bills_what_a_quote_bills() {
    for (database, _guard) in databases() {
        let server = Server::start(&database);
        let key = customer(&server, "acme");
        let (status, _) = answer(
            server.request("PUT", "/v1/customers/acme/limits", &key).send_json(json!({"inbox": "100"})),
        );
        assert_eq!(status, 200);
        let at = this_month();
        answer(
            server
                .request("POST", "/v1/usage", &key)
                .send_json(json!({"events": events("pr", 40, "acme", "inbox_prs", &at)})),
        );
        answer(
            server
                .request("POST", "/v1/usage", &key)
                .send_json(json!({"events": events("ev", 3, "acme", "events", &at)})),
        );
        let (status, view) = answer(server.request("GET", "/v1/customers/acme/usage", &key).call());
        assert_eq!(status, 200, "{view}");
        let cap = &view["caps"][0];
        assert_eq!(
            (&cap["product"], &cap["list_amount"], &cap["meters"][0]["dropped"]),
            (&json!("inbox"), &json!("100.00"), &json!("31")),
            "{database}: {cap}"
        );
        assert_eq!(cap["cap_reached_at"], json!(at), "{database}: all 40 PRs came at once");
        let quote = json!({"usage": view["usage"], "limits": {"inbox": "100"}, "period": view["period"]});
        let (_, bill) = answer(ureq::post(&format!("{}/v1/quotes", server.url)).send_json(quote));
        assert_eq!(view["bill"], bill, "{database}: the usage view's bill is the quote of the same usage");
        assert_eq!(bill["total"], "100.00");
    }
}

#[test]
fn sigterm_during_ingestion_loses_no_acknowledged_event() {
    for (database, _guard) in databases() {
        let mut server = Server::start(&database);
        let key = customer(&server, "acme");
        let (url, at) = (server.url.clone(), this_month());
        let acknowledged = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..4)
            .map(|c| {
                let (url, key, at, acknowledged, stop) =
                    (url.clone(), key.clone(), at.clone(), acknowledged.clone(), stop.clone());
                std::thread::spawn(move || {
                    let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(30)).build();
                    for b in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let batch = events(&format!("c{c}b{b}-"), 200, "acme", "events", &at);
                        match agent
                            .post(&format!("{url}/v1/usage"))
                            .set("Authorization", &format!("Bearer {key}"))
                            .send_json(json!({"events": batch}))
                        {
                            Ok(r) => {
                                let body: Value = r.into_json().unwrap();
                                acknowledged.fetch_add(body["accepted"].as_u64().unwrap(), Ordering::Relaxed);
                            }
                            Err(_) => break, // the server has stopped accepting
                        }
                    }
                })
            })
            .collect();
        while acknowledged.load(Ordering::Relaxed) < 4_000 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(server.terminate(), Some(0), "{database}: SIGTERM exits 0");
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.join().unwrap();
        }
        let acked = acknowledged.load(Ordering::Relaxed);
        let again = Server::start(&database);
        let (_, view) = answer(again.request("GET", "/v1/customers/acme/usage", &key).call());
        let stored: u64 = view["usage"]["events"].as_str().unwrap().parse().unwrap();
        assert!(stored >= acked, "{database}: {acked} events acknowledged, {stored} stored");
        assert_eq!(stored % 200, 0, "{database}: batches are stored whole or not at all");
    }
}

#[test]
fn a_fresh_key_cannot_read_another_customer() {
    for (database, _guard) in databases() {
        let server = Server::start(&database);
        customer(&server, "acme");
        let beta = customer(&server, "beta");
        assert_eq!(
            answer(server.request("GET", "/v1/customers/acme/usage", &beta).call()).0,
            403,
            "{database}"
        );
        assert_eq!(answer(server.request("GET", "/v1/customers/acme", &beta).call()).0, 403);
        assert_eq!(answer(server.request("GET", "/v1/customers/beta", &beta).call()).0, 200);
        assert_eq!(answer(server.request("GET", "/v1/customers", &beta).call()).0, 403);
        assert_eq!(
            answer(ureq::get(&format!("{}/healthz", server.url)).call()),
            (200, json!({"status": "ok"}))
        );
    }
}
