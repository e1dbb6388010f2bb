//! `tally quote` and `tally price-book` as a user runs them: arguments, files, stdin, output formats, exit codes.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use e2e::{tally, TempFile};

const TWO_MILLION_IDENTIFIED: &str = r#"{"usage": {"events": 2000000, "identified_events": 2000000}}"#;

#[test]
fn a_quote_reads_the_request_from_stdin_by_default_and_prints_json() {
    let run = tally(&["quote"], TWO_MILLION_IDENTIFIED);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let bill = run.json();
    assert_eq!(bill["currency"], "USD");
    assert_eq!(bill["total"], "248.00");
    assert_eq!(bill["subtotal"], "248.00");
    assert_eq!(bill["price_book_version"], "2026-07");
    let line = &bill["lines"][1];
    assert_eq!(line["key"], "enhanced_persons");
    assert_eq!(line["kind"], "addon");
    assert_eq!(line["quantity"], "2000000");
    assert_eq!(line["exact_amount"], "198");
    assert_eq!(line["amount"], "198.00");
    assert_eq!(line["tiers"][1]["unit_amount"], "0.000198");
    assert_eq!(line["tiers"][1]["units"], "1000000");
}

#[test]
fn a_quote_reads_a_request_file_or_dash() {
    let file = TempFile::new("request.json", TWO_MILLION_IDENTIFIED);
    let run = tally(&["quote", file.arg()], "");
    assert_eq!(run.json()["total"], "248.00");
    let run = tally(&["quote", "-"], TWO_MILLION_IDENTIFIED);
    assert_eq!(run.json()["total"], "248.00");
}

#[test]
fn amounts_travel_as_decimal_strings() {
    let run = tally(&["quote"], r#"{"usage": {"events": "10000000"}}"#);
    let bill = run.json();
    assert!(bill["total"].is_string() && bill["lines"][0]["exact_amount"].is_string());
    assert_eq!(bill["lines"][0]["exact_amount"], "324.4");
}

#[test]
fn the_table_format_shows_lines_tiers_and_totals() {
    let run =
        tally(&["quote", "--format", "table"], r#"{"usage": {"events": 10000000}, "addons": ["boost"]}"#);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &run.stdout;
    assert!(out.contains("Product analytics"), "{out}");
    assert!(out.contains("10,000,000 events"), "{out}");
    assert!(out.contains("tier 3: 2,000,000 – 15,000,000"), "{out}");
    assert!(out.contains("274.40"), "{out}");
    let total = out.lines().find(|l| l.trim_start().starts_with("Total")).unwrap();
    assert!(total.trim_end().ends_with("574.40"), "{total}");
}

#[test]
fn a_custom_price_book_can_be_given() {
    let book = TempFile::new(
        "book.json",
        r#"{"currency": "JPY", "products": [{"key": "api", "name": "API", "unit": "call", "meter": "calls",
            "tiers_mode": "volume", "tiers": [{"up_to": 100, "unit_amount": "3"}, {"up_to": "inf", "unit_amount": "2"}]}]}"#,
    );
    let run = tally(&["quote", "--price-book", book.arg()], r#"{"usage": {"calls": 150}}"#);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.json()["total"], "300", "yen have no minor unit");
}

#[test]
fn bad_requests_exit_2_with_one_line_naming_the_field() {
    let cases = [
        (r#"{"usage": {"events": -5}}"#, "usage.events"),
        (r#"{"usage": {"events": 1.5}}"#, "usage.events"),
        (r#"{"usage": {"bananas": 5}}"#, "usage.bananas"),
        (r#"{"usage": {}, "limits": {"product_analytics": "200.5"}}"#, "limits.product_analytics"),
        (r#"{"usage": {}, "limits": {"product_analytics": "60000"}}"#, "limits.product_analytics"),
        (r#"{"usage": {}, "commitment": {"yearly_credit": "1000"}}"#, "commitment.yearly_credit"),
        (r#"{"usage": {}, "addons": ["enhanced_persons"]}"#, "addons[0]"),
        (r#"{"usage": {}, "addons": ["nope"]}"#, "addons[0]"),
        (r#"{"usage": {}, "colour": "red"}"#, "colour"),
        (r#"{"usage": {"events": 1}"#, "EOF"),
        (r#"{}"#, "usage"),
    ];
    for (request, field) in cases {
        let run = tally(&["quote"], request);
        assert_eq!(run.code, Some(2), "{request}: {}", run.stdout);
        assert!(run.stdout.is_empty(), "{request}");
        assert_eq!(run.stderr.lines().count(), 1, "{request}: {}", run.stderr);
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
        assert!(run.stderr.contains(field), "{request}: expected `{field}` in {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

#[test]
fn every_problem_of_a_request_is_reported_at_once() {
    let run = tally(&["quote"], r#"{"usage": {"bananas": 1}, "limits": {"nope": "5"}, "addons": ["x"]}"#);
    assert_eq!(run.code, Some(2));
    for field in ["usage.bananas", "limits.nope", "addons[0]"] {
        assert!(run.stderr.contains(field), "{field} missing from {}", run.stderr);
    }
}

#[test]
fn unreadable_files_and_invalid_price_books_exit_2() {
    let run = tally(&["quote", "/nonexistent/request.json"], "");
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("cannot read request file"), "{}", run.stderr);
    let book = TempFile::new(
        "bad.json",
        r#"{"currency": "USD", "products": [{"key": "a", "name": "A", "unit": "u",
        "meter": "m", "tiers": [{"up_to": 10, "unit_amount": "1"}, {"up_to": 5, "unit_amount": "1"}]}]}"#,
    );
    let run = tally(&["quote", "--price-book", book.arg()], r#"{"usage": {"m": 1}}"#);
    assert_eq!(run.code, Some(2));
    assert_eq!(run.stderr.lines().count(), 1);
    assert!(run.stderr.contains("products[0].tiers[1].up_to"), "{}", run.stderr);
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let run = tally(&["quote", "--format", "xml"], "{}");
    assert_eq!(run.code, Some(2));
    let run = tally(&["frobnicate"], "");
    assert_eq!(run.code, Some(2));
    let run = tally(&["quote", "--help"], "");
    assert_eq!(run.code, Some(0));
    assert!(run.stdout.contains("--price-book"), "{}", run.stdout);
}

#[test]
fn the_built_in_price_book_prints_in_canonical_form_and_reads_back() {
    let run = tally(&["price-book"], "");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let book = run.json();
    assert_eq!(book["products"].as_array().unwrap().len(), 14);
    let file = TempFile::new("canonical.json", &run.stdout);
    let again = tally(&["price-book", "--price-book", file.arg()], "");
    assert_eq!(again.stdout, run.stdout, "canonical form is a fixed point");
}

/// A database that cannot be reached is said at once, as a sentence naming where and why — not after the pool's
/// 30 s of silent retries as "pool timed out".
#[test]
fn a_database_that_cannot_be_reached_is_named_with_its_cause() {
    let dir = TempFile::new("not-a-dir", "");
    let unopenable = format!("sqlite://{}/tally.db", dir.arg());
    let cases = [
        (
            "postgres://postgres@127.0.0.1:1/x",
            "cannot connect to PostgreSQL at 127.0.0.1:1 (database x): connection refused",
        ),
        (unopenable.as_str(), "cannot connect to the SQLite database"),
    ];
    e2e::tally_path(); // built before the clock starts
    for (url, said) in cases {
        let started = std::time::Instant::now();
        let run = tally(&["migrate", "--database", url], "");
        assert_eq!(run.code, Some(2), "{url}: {}", run.stderr);
        assert!(run.stderr.contains(said), "{url}: {}", run.stderr);
        assert!(!run.stderr.contains("timed out") && !run.stderr.contains("Error {"), "{}", run.stderr);
        // Not a speed target: the old behaviour waited out a 30 s pool timeout; 5 s is the connect limit.
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{url}: {:?}", started.elapsed());
    }
    if let Ok(url) = std::env::var("TALLY_TEST_POSTGRES_URL") {
        let missing =
            format!("{}/tally_no_such_database", url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b));
        let run = tally(&["migrate", "--database", &missing], "");
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        assert!(run.stderr.contains("no such database"), "{}", run.stderr);
    }
}
