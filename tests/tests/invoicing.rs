//! Invoice runs as finance runs them: the real `tally invoice run` beside a real `tally serve`, on a fresh SQLite
//! file and on a fresh PostgreSQL database. A run killed with SIGKILL and started again, two runs at once, and three
//! worker processes on PostgreSQL all end with exactly one invoice per customer period, each the quote of its own
//! request.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{answer, databases, tally_path, Server};
use serde_json::{json, Value};

/// Customers are anchored on September 1st: their September and October periods have ended by November 1st.
const ANCHOR: &str = "2026-09-01T00:00:00Z";
const AS_OF: &str = "2026-11-01T00:00:00Z";
const MONTHS: [&str; 2] = ["2026-09-15T12:00:00Z", "2026-10-15T12:00:00Z"];

fn id(i: usize) -> String {
    format!("cust{i:05}")
}

/// Customer `i`'s events in month `m`: varied, so the invoices differ.
fn quantity(i: usize, m: usize) -> u64 {
    u64::try_from((i * 7 + m * 3) % 40).unwrap() * 250_000 + 1
}

/// Creates `n` customers (8 clients at once), every 10th with a $20 cap on product analytics, and sends each one's
/// usage for both months (batches of 10,000 events of many customers).
fn populate(server: &Arc<Server>, n: usize) {
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let server = server.clone();
            std::thread::spawn(move || {
                for i in (c..n).step_by(8) {
                    let (status, body) = answer(
                        server
                            .admin("POST", "/v1/customers")
                            .send_json(json!({"id": id(i), "name": id(i), "billing_anchor": ANCHOR})),
                    );
                    assert_eq!(status, 201, "{body}");
                    if i.is_multiple_of(10) {
                        let (status, body) = answer(
                            server
                                .admin("PUT", &format!("/v1/customers/{}/limits", id(i)))
                                .send_json(json!({"product_analytics": "20"})),
                        );
                        assert_eq!(status, 200, "{body}");
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let events: Vec<Value> = (0..n)
        .flat_map(|i| {
            MONTHS.iter().enumerate().map(move |(m, at)| {
                json!({"id": format!("{}-{m}", id(i)), "customer_id": id(i), "meter": "events", "quantity": quantity(i, m), "timestamp": at})
            })
        })
        .collect();
    for batch in events.chunks(10_000) {
        let (status, body) = answer(server.admin("POST", "/v1/usage").send_json(json!({"events": batch})));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"].as_u64().unwrap(), batch.len() as u64, "{}", body["rejected"]);
    }
}

fn invoice_run(database: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(tally_path());
    command.args(["invoice", "run", "--as-of", AS_OF, "--database", database]).args(extra);
    command.stdin(Stdio::null());
    command
}

/// Every invoice, through the API's pages.
fn all_invoices(server: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = answer(server.admin("GET", &format!("/v1/invoices?limit=500{cursor}")).call());
        assert_eq!(status, 200, "{page}");
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return out,
        }
    }
}

/// Exactly one invoice per customer period, and each is what `POST /v1/quotes` says of its own request, which
/// holds that customer's usage and cap.
fn check_exactly_once(server: &Server, n: usize) {
    let invoices = all_invoices(server);
    let periods: BTreeSet<(String, String)> = invoices
        .iter()
        .map(|i| {
            (i["customer_id"].as_str().unwrap().to_owned(), i["period"]["start"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(periods.len(), invoices.len(), "a customer period invoiced twice");
    assert_eq!(invoices.len(), n * MONTHS.len(), "a customer period left out");
    let mut quotes: BTreeMap<String, Value> = BTreeMap::new();
    for invoice in &invoices {
        let customer: usize = invoice["customer_id"].as_str().unwrap()[4..].parse().unwrap();
        let month = usize::from(invoice["period"]["start"] == "2026-10-01T00:00:00Z");
        let request = &invoice["request"];
        assert_eq!(request["usage"]["events"], quantity(customer, month).to_string(), "{}", invoice["id"]);
        assert_eq!(request["limits"].get("product_analytics").is_some(), customer.is_multiple_of(10));
        let key = request.to_string();
        if !quotes.contains_key(&key) {
            let (status, quote) = answer(server.request("POST", "/v1/quotes", "").send_json(request.clone()));
            assert_eq!(status, 200, "{quote}");
            quotes.insert(key.clone(), quote);
        }
        assert_eq!(invoice["bill"], quotes[&key], "{}", invoice["id"]);
        assert_eq!(invoice["total"], invoice["bill"]["total"]);
        if customer.is_multiple_of(10) {
            // The cap caps the invoice.
            let total: rust_decimal::Decimal = invoice["total"].as_str().unwrap().parse().unwrap();
            assert!(total <= rust_decimal::Decimal::from(20), "{}: {total}", invoice["id"]);
        }
    }
}

/// The summary line's counts: eligible, invoiced, already invoiced, failed.
fn summary(stdout: &str) -> [u64; 4] {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("invoice run "))
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    let number = |label: &str| -> u64 {
        let before = line.split(label).next().unwrap();
        before.trim_end().rsplit([' ', ',', ':']).next().unwrap().parse().unwrap()
    };
    [number(" eligible"), number(" invoiced,"), number(" already invoiced"), number(" failed")]
}

#[test]
fn a_run_killed_mid_way_and_run_again_invoices_every_period_once() {
    const N: usize = 20_000;
    for (database, _guard) in databases() {
        let server = Arc::new(Server::start(&database));
        populate(&server, N);

        // Start a run, and SIGKILL it as soon as it has committed some invoices but not all.
        let mut child =
            invoice_run(&database, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let started = Instant::now();
        loop {
            let (_, page) = answer(server.admin("GET", "/v1/invoices?limit=1").call());
            if !page["data"].as_array().unwrap().is_empty() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "the run made no invoice");
            assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let partial = all_invoices(&server).len();
        assert!(partial > 0 && partial < N * 2, "killed mid-run: {partial} of {} invoiced", N * 2);

        // Usage for a period already invoiced is refused, while the run is half done.
        let done = all_invoices(&server);
        let closed = &done[0];
        let (_, body) = answer(server.admin("POST", "/v1/usage").send_json(json!({"events": [{
            "id": "too-late", "customer_id": closed["customer_id"], "meter": "events", "quantity": 1,
            "timestamp": closed["period"]["start"]}]})));
        assert_eq!(body["rejected"][0]["code"], "period_closed", "{body}");

        // Again: it finishes the job, beside the running server.
        let again = invoice_run(&database, &[]).output().unwrap();
        let stdout = String::from_utf8_lossy(&again.stdout);
        assert_eq!(again.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&again.stderr));
        // The killed run is still open: the new process joins it and its counts are the run's, the killed
        // process's committed batches included.
        assert!(
            String::from_utf8_lossy(&again.stderr).starts_with("joined invoice run"),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert_eq!(summary(&stdout), [(N * 2) as u64, (N * 2) as u64, 0, 0], "{stdout}");
        check_exactly_once(&server, N);

        // And once more: nothing left to do.
        let third = invoice_run(&database, &[]).output().unwrap();
        assert_eq!(third.status.code(), Some(0));
        assert_eq!(summary(&String::from_utf8_lossy(&third.stdout)), [(N * 2) as u64, 0, (N * 2) as u64, 0]);

        // An issued invoice cannot be changed through any route.
        let id = done[0]["id"].as_str().unwrap();
        let (status, issued) = answer(server.admin("POST", &format!("/v1/invoices/{id}/issue")).call());
        assert_eq!(status, 200, "{issued}");
        for (method, path) in [("POST", "issue"), ("PUT", ""), ("PATCH", ""), ("DELETE", "")] {
            let path = if path.is_empty() {
                format!("/v1/invoices/{id}")
            } else {
                format!("/v1/invoices/{id}/{path}")
            };
            let (status, _) = answer(server.admin(method, &path).send_json(json!({"total": "0"})));
            assert!(status == 409 || status == 405, "{method} {path}: {status}");
        }
        let (_, after) = answer(server.admin("GET", &format!("/v1/invoices/{id}")).call());
        assert_eq!(after, issued);
    }
}

#[test]
fn concurrent_runs_and_worker_processes_share_the_work_without_a_duplicate() {
    const N: usize = 3_000;
    for (database, _guard) in databases() {
        let postgres = database.starts_with("postgres");
        let server = Arc::new(Server::start(&database));
        populate(&server, N);
        // Two runs at once (on PostgreSQL three processes, one with two workers), issuing as they go.
        let processes = if postgres { 3 } else { 2 };
        let children: Vec<_> = (0..processes)
            .map(|p| {
                let workers = if p == 0 { "2" } else { "1" };
                invoice_run(&database, &["--issue", "--workers", workers, "--batch", "100"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut invoiced = 0;
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
            let [eligible, _, _, failed] = summary(&stdout);
            assert_eq!((eligible, failed), ((N * 2) as u64, 0));
            invoiced += summary(&stdout)[1];
        }
        // The processes joined one run: the counts of the last to finish are the run's. What matters: every period
        // invoiced once, each number given once and none skipped.
        assert!(invoiced >= (N * 2) as u64);
        check_exactly_once(&server, N);
        let mut numbers: Vec<String> =
            all_invoices(&server).iter().map(|i| i["number"].as_str().unwrap().to_owned()).collect();
        numbers.sort();
        let expected: Vec<String> = (1..=N * 2).map(|i| format!("INV-{i:06}")).collect();
        assert_eq!(numbers, expected);
    }
}

#[test]
fn bad_input_exits_2_and_names_it() {
    let out = Command::new(tally_path()).args(["invoice", "run", "--as-of", "yesterday"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--as-of `yesterday`"));
    let out = Command::new(tally_path())
        .args(["invoice", "run", "--as-of", "2999-01-01T00:00:00Z", "--database", "sqlite::memory:"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("as_of"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(tally_path()).args(["invoice", "run", "--workers", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_commitment_pays_three_months_of_invoices_and_the_ledger_balances_to_the_cent() {
    use rust_decimal::Decimal;
    let d = |v: &Value| -> Decimal {
        v.as_str().unwrap_or_else(|| panic!("not a decimal: {v}")).parse().unwrap()
    };
    for (database, _guard) in databases() {
        let server = Server::start(&database);
        let (status, body) = answer(
            server
                .admin("POST", "/v1/customers")
                .send_json(json!({"id": "acme", "name": "Acme", "billing_anchor": "2026-08-01T00:00:00Z"})),
        );
        assert_eq!(status, 201, "{body}");
        let key = body["api_key"].as_str().unwrap().to_owned();
        let (status, bought) = answer(
            server
                .request("POST", "/v1/customers/acme/commitments", &key)
                .send_json(json!({"yearly_credit": "3333", "start": "2026-08-01T00:00:00Z"})),
        );
        assert_eq!(status, 201, "{bought}");
        assert_eq!(bought["price"], "2999.70");
        // August light, September heavy (past the credit released), October light.
        for (id, quantity, at) in [
            ("aug", 3_000_000, "2026-08-10T00:00:00Z"),
            ("sep", 25_000_000, "2026-09-10T00:00:00Z"),
            ("oct", 2_000_000, "2026-10-10T00:00:00Z"),
        ] {
            let (status, body) = answer(server.admin("POST", "/v1/usage").send_json(json!({"events": [
                {"id": id, "customer_id": "acme", "meter": "events", "quantity": quantity, "timestamp": at}]})));
            assert_eq!((status, body["accepted"].as_u64()), (200, Some(1)), "{body}");
        }
        let out = invoice_run(&database, &["--issue"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let (_, page) = answer(server.request("GET", "/v1/invoices", &key).call());
        let mut invoices = page["data"].as_array().unwrap().clone();
        invoices.sort_by_key(|i| i["period"]["start"].as_str().unwrap().to_owned());
        let starts: Vec<&str> = invoices.iter().map(|i| i["period"]["start"].as_str().unwrap()).collect();
        assert_eq!(starts, ["2026-08-01T00:00:00Z", "2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z"]);
        let release = Decimal::new(27775, 2);
        let mut used = Decimal::ZERO;
        for (month, invoice) in invoices.iter().enumerate() {
            let (total, credit, due) =
                (d(&invoice["total"]), d(&invoice["credit_applied"]), d(&invoice["amount_due"]));
            // Paid from the credit released by the period's last instant, less what earlier months used.
            let available = release * Decimal::from(month + 1) - used;
            assert_eq!(-credit, total.min(available), "month {month}");
            assert_eq!(due, total + credit);
            used -= credit;
            let (_, quote) =
                answer(server.request("POST", "/v1/quotes", "").send_json(invoice["request"].clone()));
            assert_eq!(quote, invoice["bill"]);
        }
        assert!(d(&invoices[1]["amount_due"]) > Decimal::ZERO, "September outran its credit");
        // The ledger now: a release at each month start of the term passed by today (the server's clock is the
        // real one), three consumptions, and a balance that is their sum to the cent; from the end of the term
        // (2027-08-01), what is left has expired.
        let (_, ledger) = answer(server.request("GET", "/v1/customers/acme/credits", &key).call());
        let entries = ledger["entries"].as_array().unwrap();
        let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        let (released, expired) = releases_by_now("2026-08-01T00:00:00Z", 12);
        assert_eq!(kinds.iter().filter(|k| **k == "release").count(), released, "{kinds:?}");
        assert_eq!(kinds.iter().filter(|k| **k == "consumption").count(), 3, "{kinds:?}");
        assert_eq!(kinds.contains(&"expiry"), expired, "{kinds:?}");
        let sum: Decimal = entries.iter().map(|e| d(&e["amount"])).sum();
        assert_eq!(d(&ledger["balance"]), sum);
        let left = if expired { Decimal::ZERO } else { release * Decimal::from(released) - used };
        assert_eq!(d(&ledger["balance"]), left);
    }
}

/// How many monthly releases of a term of `months` starting at `start` happened by now, and whether the term ended.
fn releases_by_now(start: &str, months: u32) -> (usize, bool) {
    use chrono::{DateTime, Months, Utc};
    let start: DateTime<Utc> = start.parse().unwrap();
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let now = DateTime::from_timestamp(i64::try_from(since_epoch.as_secs()).unwrap(), 0).unwrap();
    let at = |k: u32| start.checked_add_months(Months::new(k)).unwrap();
    ((0..months).filter(|k| at(*k) <= now).count(), at(months) <= now)
}
