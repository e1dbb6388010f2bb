//! Webhooks end to end: the real `tally serve` delivering to a real receiver on loopback (`tests/webhooks/
//! receiver.py`), which verifies every request with the `standardwebhooks` package from PyPI — an implementation of
//! the specification that is not tally's — and fails half of them, hanging some past tally's timeout.
//!
//! - 10,000 events to 3 endpoints: every event reaches every endpoint subscribed to it, every signature verifies,
//!   no attempt is sent twice at once, every request the receiver saw is an attempt tally recorded;
//! - SIGKILL of `tally serve` while the receiver is handling a delivery, then a restart: nothing is lost, the
//!   delivery cut short is sent again, with its id and its body unchanged;
//! - two instances on one PostgreSQL: the work is shared, no attempt is made twice at once, all is delivered;
//! - `tally webhook verify` exits 0, 1 or 2 on a message signed by the Python implementation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{answer, databases, tally, Server};
use serde_json::{json, Value};

/// The receiver, killed on drop.
struct Receiver {
    child: Child,
    url: String,
}

impl Receiver {
    fn start(args: &[&str]) -> Receiver {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/webhooks/receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("receiver: {line}"));
        Receiver { child, url: format!("http://127.0.0.1:{port}") }
    }

    fn stats(&self) -> Value {
        ureq::get(&format!("{}/stats", self.url)).call().unwrap().into_json().unwrap()
    }

    fn secret(&self, name: &str, secret: &str) {
        ureq::post(&format!("{}/secrets", self.url)).send_json(json!({name: secret})).unwrap();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The flags of every server here: private addresses allowed (the receiver is on 127.0.0.1), a 1-second timeout,
/// the retry schedule scaled by 0.001 (5 min → 0.3 s; a message failing 4 times is retried after 7.2 s).
const FLAGS: &[&str] = &["--webhook-allow-private", "--webhook-timeout", "1"];
const ENV: &[(&str, &str)] = &[("TALLY_WEBHOOK_RETRY_SCALE", "0.001")];

/// Registers an endpoint at the receiver's `/hook/<name>` and gives the receiver its secret.
fn endpoint(server: &Server, receiver: &Receiver, name: &str, types: &[&str]) -> String {
    let (status, body) = answer(
        server
            .admin("POST", "/v1/webhook-endpoints")
            .send_json(json!({"url": format!("{}/hook/{name}", receiver.url), "event_types": types})),
    );
    assert_eq!(status, 201, "{body}");
    receiver.secret(name, body["secret"].as_str().unwrap());
    body["id"].as_str().unwrap().to_owned()
}

/// `n` customers anchored on 2026-11-01 (8 clients at once), then one invoice run for November.
fn customers_and_a_run(server: &Arc<Server>, n: usize, issue: bool) {
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let server = server.clone();
            std::thread::spawn(move || {
                for i in (c..n).step_by(8) {
                    let id = format!("c{i:05}");
                    let (status, body) =
                        answer(server.admin("POST", "/v1/customers").send_json(
                            json!({"id": id, "name": id, "billing_anchor": "2026-11-01T00:00:00Z"}),
                        ));
                    assert_eq!(status, 201, "{body}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let (status, run) = answer(
        server
            .admin("POST", "/v1/invoice-runs")
            .send_json(json!({"as_of": "2026-12-01T00:00:00Z", "issue": issue})),
    );
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap();
    wait("the invoice run", Duration::from_secs(120), || {
        answer(server.admin("GET", &format!("/v1/invoice-runs/{id}")).call()).1["status"] == "completed"
    });
}

/// The one endpoint's id.
fn endpoint_id(server: &Server) -> String {
    let (_, list) = answer(server.admin("GET", "/v1/webhook-endpoints").call());
    list["data"][0]["id"].as_str().unwrap().to_owned()
}

/// Every event's id, by type.
fn event_ids(server: &Server) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/events?limit=500".to_owned(),
            Some(c) => format!("/v1/events?limit=500&cursor={c}"),
        };
        let (status, page) = answer(server.admin("GET", &path).call());
        assert_eq!(status, 200, "{page}");
        for e in page["data"].as_array().unwrap() {
            out.push((e["type"].as_str().unwrap().to_owned(), e["id"].as_str().unwrap().to_owned()));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

fn expected(events: &[(String, String)], types: &[&str]) -> BTreeSet<String> {
    events
        .iter()
        .filter(|(t, _)| types.contains(&"*") || types.contains(&t.as_str()))
        .map(|(_, id)| id.clone())
        .collect()
}

fn delivered(stats: &Value, name: &str) -> BTreeSet<String> {
    stats[name]["delivered"]
        .as_array()
        .map_or_else(BTreeSet::new, |a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Attempts tally recorded for an endpoint (its deliveries log, every page).
fn attempts_recorded(server: &Server, endpoint: &str) -> (usize, usize) {
    let (mut attempts, mut succeeded) = (0, 0);
    let mut cursor: Option<String> = None;
    loop {
        let base = format!("/v1/webhook-endpoints/{endpoint}/deliveries?limit=500");
        let path = cursor.as_ref().map_or(base.clone(), |c| format!("{base}&cursor={c}"));
        let (_, page) = answer(server.admin("GET", &path).call());
        for d in page["data"].as_array().unwrap() {
            attempts += d["attempts"].as_array().unwrap().len();
            succeeded += usize::from(d["state"] == "succeeded");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (attempts, succeeded),
        }
    }
}

fn check_clean(stats: &Value, name: &str) {
    let s = &stats[name];
    assert_eq!(s["bad_signature"], 0, "signatures that did not verify: {}", s["errors"]);
    assert_eq!(s["overlaps"], 0, "an attempt was sent while another of the same message was in flight");
    assert_eq!(s["same_body"], true, "a message was sent again with another body");
}

#[test]
fn ten_thousand_events_reach_three_endpoints_through_a_flaky_receiver() {
    let (database, _guard) = databases().remove(0);
    let receiver = Receiver::start(&["--fail-rate", "0.5", "--hang-rate", "0.01", "--hang-seconds", "2"]);
    let server = Arc::new(Server::start_with(&database, FLAGS, ENV));
    let subscriptions: [(&str, &[&str]); 3] = [
        ("all", &["*"]),
        ("created", &["invoice.created"]),
        ("issued", &["invoice.issued", "invoice_run.completed"]),
    ];
    let ids: Vec<String> =
        subscriptions.iter().map(|(name, types)| endpoint(&server, &receiver, name, types)).collect();
    // 5,000 customers, one invoice each, created and issued: 10,000 invoice events and the run's.
    customers_and_a_run(&server, 5_000, true);
    let events = event_ids(&server);
    assert_eq!(events.len(), 10_001);
    wait("every event at every subscribed endpoint", Duration::from_secs(300), || {
        let stats = receiver.stats();
        subscriptions
            .iter()
            .all(|(name, types)| delivered(&stats, name).is_superset(&expected(&events, types)))
    });
    let stats = receiver.stats();
    for ((name, types), id) in subscriptions.iter().zip(&ids) {
        check_clean(&stats, name);
        let want = expected(&events, types);
        assert_eq!(delivered(&stats, name), want, "{name}: delivered exactly the subscribed events");
        let (attempts, succeeded) = attempts_recorded(&server, id);
        assert_eq!(succeeded, want.len(), "{name}: the log says every delivery succeeded");
        let requests = usize::try_from(stats[name]["requests"].as_u64().unwrap()).unwrap();
        assert!(requests <= attempts, "{name}: {requests} requests seen, {attempts} attempts recorded");
        assert!(stats[name]["refused"].as_u64().unwrap() > 1000, "the receiver failed many: {}", stats[name]);
        eprintln!(
            "{name}: {} events, {requests} requests, {attempts} attempts recorded, {} hangs",
            want.len(),
            stats[name]["hangs"]
        );
    }
}

#[test]
fn a_server_killed_mid_delivery_loses_nothing_and_resends_with_the_same_id() {
    let (database, _guard) = databases().remove(0);
    // Every answer takes 200 ms, and the kill comes while the receiver is handling a request: at least one delivery
    // is received and never recorded (a kill can also catch requests still in the receiver's accept queue, under
    // load: those were never read, and their resend is their first arrival).
    let receiver = Receiver::start(&["--fail-rate", "0", "--hang-rate", "0", "--slow", "0.2"]);
    let mut server = Arc::new(Server::start_with(&database, FLAGS, ENV));
    endpoint(&server, &receiver, "hook", &["invoice.created"]);
    customers_and_a_run(&server, 2_000, false);
    let events = event_ids(&server);
    let want = expected(&events, &["invoice.created"]);
    assert_eq!(want.len(), 2_000);
    wait("some deliveries, and one being handled", Duration::from_secs(120), || {
        let stats = receiver.stats();
        delivered(&stats, "hook").len() >= 300 && stats["hook"]["in_flight"].as_u64().unwrap_or(0) > 0
    });
    Arc::get_mut(&mut server).unwrap().kill();
    let before = delivered(&receiver.stats(), "hook").len();
    assert!(before < want.len(), "killed mid-way: {before} of {} delivered", want.len());
    // Restarted on the same database: the killed process's leases run out (12 s with a 1 s timeout) and its
    // deliveries are sent again.
    let server = Server::start_with(&database, FLAGS, ENV);
    let hook = endpoint_id(&server);
    wait("every delivery recorded as succeeded after the restart", Duration::from_secs(120), || {
        attempts_recorded(&server, &hook).1 == want.len()
    });
    let stats = receiver.stats();
    assert!(delivered(&stats, "hook").is_superset(&want), "nothing lost");
    check_clean(&stats, "hook");
    // The attempts in flight at the kill were received but never recorded: sent again, with the same id (the
    // receiver keys them by it) and the same body (`check_clean`).
    let sent_again =
        stats["hook"]["per_id"].as_object().unwrap().values().filter(|n| n.as_u64().unwrap() > 1).count();
    assert!(sent_again >= 1, "a delivery the receiver was handling at the kill was not sent again");
    eprintln!(
        "killed after {before} deliveries; {sent_again} messages were sent again, each with its id and body"
    );
    drop(server);
}

#[test]
fn two_instances_on_one_postgresql_share_the_deliveries() {
    let Some((database, _guard)) = databases().into_iter().nth(1) else {
        eprintln!("no PostgreSQL (TALLY_TEST_POSTGRES_URL): skipped");
        return;
    };
    let receiver = Receiver::start(&["--fail-rate", "0.3", "--hang-rate", "0.01", "--hang-seconds", "2"]);
    let first = Arc::new(Server::start_with(&database, FLAGS, ENV));
    let second = Server::start_with(&database, FLAGS, ENV);
    let id = endpoint(&first, &receiver, "both", &["*"]);
    customers_and_a_run(&first, 2_000, true);
    let events = event_ids(&second);
    let want = expected(&events, &["*"]);
    assert_eq!(want.len(), 4_001);
    wait("every event", Duration::from_secs(240), || delivered(&receiver.stats(), "both").is_superset(&want));
    let stats = receiver.stats();
    check_clean(&stats, "both");
    let (attempts, succeeded) = attempts_recorded(&second, &id);
    assert_eq!(succeeded, want.len());
    let requests = usize::try_from(stats["both"]["requests"].as_u64().unwrap()).unwrap();
    assert!(requests <= attempts, "{requests} requests seen, {attempts} attempts recorded");
}

#[test]
fn webhook_verify_exits_0_1_or_2_on_a_message_signed_by_another_implementation() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = r#"{"type":"invoice.paid","timestamp":"2026-12-05T00:00:00Z","data":{"id":"in_1"}}"#;
    let now = chrono::Utc::now().timestamp().to_string();
    let old = (chrono::Utc::now().timestamp() - 600).to_string();
    // Signed by the standardwebhooks package, not by tally.
    let sign = |ts: &str| {
        let signed = Command::new("python3")
            .args([
                "-c",
                "import sys, datetime; from standardwebhooks.webhooks import Webhook; \
                 print(Webhook(sys.argv[1]).sign(sys.argv[2], datetime.datetime.fromtimestamp(int(sys.argv[3]), datetime.timezone.utc), sys.argv[4]))",
                secret,
                "evt_1",
                ts,
                body,
            ])
            .output()
            .unwrap();
        assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
        String::from_utf8(signed.stdout).unwrap().trim().to_owned()
    };
    let signature = sign(&now);
    let verify = |id: &str, ts: &str, sig: &str, body: &str| {
        tally(
            &[
                "webhook",
                "verify",
                "--secret",
                secret,
                "--id",
                id,
                "--timestamp",
                ts,
                "--signature",
                sig,
                "-",
            ],
            body,
        )
    };
    let ok = verify("evt_1", &now, &signature, body);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    let tampered = verify("evt_1", &now, &signature, &body.replace("in_1", "in_2"));
    assert_eq!(tampered.code, Some(1));
    assert!(
        tampered.stderr.contains("no signature matches") && tampered.stderr.lines().count() == 1,
        "{}",
        tampered.stderr
    );
    let other_id = verify("evt_2", &now, &signature, body);
    assert_eq!(other_id.code, Some(1));
    let moved = verify("evt_1", &old, &signature, body);
    assert_eq!(moved.code, Some(1), "a signature of another timestamp does not match");
    let stale = verify("evt_1", &old, &sign(&old), body);
    assert_eq!(stale.code, Some(1));
    assert!(stale.stderr.contains("seconds from now"), "{}", stale.stderr);
    let bad = verify("evt_1", "yesterday", &signature, body);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    let bad = verify("evt_1", &now, "not-a-signature", body);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
}
