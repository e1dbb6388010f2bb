//! The core's invariants, case by case, through the real `tally quote`: each case is one a hostile user found
//! broken, with the figure the contract now gives. The properties that generalise them run over random
//! books in `billing-core/tests/invariants.rs`.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use e2e::{tally, Run, TempFile};
use serde_json::Value;

#[track_caller]
fn quote(request: &str) -> Value {
    let run = tally(&["quote"], request);
    assert_eq!(run.code, Some(0), "{request}: {}", run.stderr);
    run.json()
}

#[track_caller]
fn quote_with(book: &str, request: &str) -> Value {
    let book = TempFile::new("book.json", book);
    let run = tally(&["quote", "--price-book", book.arg()], request);
    assert_eq!(run.code, Some(0), "{request}: {}", run.stderr);
    run.json()
}

#[track_caller]
fn refused(run: &Run) -> &str {
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(run.stdout.is_empty());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    &run.stderr
}

fn lines_of<'a>(bill: &'a Value, kind: &str) -> Vec<&'a Value> {
    bill["lines"].as_array().unwrap().iter().filter(|l| l["kind"] == kind).collect()
}

// 1. A spend cap is a maximum on money.

#[test]
fn a_reached_cap_bills_exactly_the_cap_not_the_whole_units_below_it() {
    // 3 PRs free, then $15 each: 9 PRs cost $90 and a 10th $105. The cap bills $100, not $90.
    let bill = quote(r#"{"usage": {"inbox_prs": 100}, "limits": {"inbox": "100"}}"#);
    assert_eq!(bill["total"], "100.00");
    let limit = &bill["spend_limits"][0];
    assert_eq!(limit["reached"], true);
    assert_eq!(limit["list_amount"], "100.00");
    assert_eq!(limit["meters"][0]["billable"], "9", "the usage the cap pays for is information");
    assert_eq!(limit["meters"][0]["dropped"], "91");
}

#[test]
fn a_commitment_never_raises_a_capped_bill() {
    let bill = quote(
        r#"{"usage": {"inbox_prs": 100}, "limits": {"inbox": "100"}, "commitment": {"yearly_credit": "25000"}}"#,
    );
    assert_eq!(bill["total"], "100.00", "was 96.00: the discount admitted more whole PRs");
    assert_eq!(bill["subtotal"], "125.00", "$100 after 20 % off is $125 of list usage");
    assert_eq!(bill["spend_limits"][0]["net_exact_amount"], "100");
}

#[test]
fn more_usage_under_a_cap_on_two_meters_never_costs_less() {
    for ingested in ["314", "663"] {
        let bill = quote(&format!(
            r#"{{"usage": {{"logs_gb_ingested": "{ingested}", "logs_gb_retained_30d": "3.73227"}}, "limits": {{"logs": "41"}}}}"#
        ));
        assert_eq!(bill["total"], "41.00", "{ingested} GB");
    }
}

#[test]
fn a_cap_that_is_not_reached_changes_nothing_even_on_a_volume_table() {
    let book = r#"{"currency": "JPY", "products": [{"key": "vol", "name": "Vol", "unit": "unit", "meter": "vol_u",
        "tiers_mode": "volume", "tiers": [{"up_to": 1000, "unit_amount": "1"}, {"up_to": null, "unit_amount": "0.35"}]}]}"#;
    let bill = quote_with(book, r#"{"usage": {"vol_u": 1001}, "limits": {"vol": "400"}}"#);
    assert_eq!(bill["total"], "350", "1,001 units at ¥0.35 cost ¥350, under the ¥400 cap");
    assert!(lines_of(&bill, "spend_limit").is_empty(), "no positive spend-limit line");
    assert_eq!(bill["spend_limits"][0]["reached"], false);
    assert_eq!(bill["spend_limits"][0]["meters"][0]["dropped"], "0");
}

#[test]
fn the_published_cap_with_a_discount_still_bills_200() {
    // PostHog: a $200 limit with 20 % off buys $250 of list usage.
    let bill = quote(
        r#"{"usage": {"recordings": 1000000}, "limits": {"session_replay": "200"}, "commitment": {"yearly_credit": "25000"}}"#,
    );
    assert_eq!(bill["subtotal"], "250.00");
    assert_eq!(bill["total"], "200.00");
}

// 2. Every line adds up to itself.

#[test]
fn a_spend_limit_line_is_its_exact_amount_rounded() {
    let bill = quote(
        r#"{"usage": {"logs_gb_ingested": "314", "logs_gb_retained_30d": "3.73227"}, "limits": {"logs": "41"}}"#,
    );
    let line = lines_of(&bill, "spend_limit")[0];
    assert_eq!(line["amount"], "-33.79");
    assert_eq!(line["exact_amount"], "-33.79", "was -33.933798 beside an amount of -33.94");
}

// 3. A product is on the bill only when one of its meters is in the usage.

#[test]
fn a_limit_or_an_add_on_choice_alone_does_not_bill_a_product() {
    let bill = quote(
        r#"{"usage": {"events": 0}, "limits": {"session_replay": "100"}, "addons": ["group_analytics"]}"#,
    );
    let products: Vec<&str> =
        bill["lines"].as_array().unwrap().iter().filter_map(|l| l["product"].as_str()).collect();
    assert!(!products.contains(&"session_replay"), "{products:?}");
    assert_eq!(bill["total"], "0.00");
    let limit = &bill["spend_limits"][0];
    assert_eq!(
        (&limit["product"], &limit["list_amount"]),
        (&Value::from("session_replay"), &Value::from("0.00"))
    );
    assert_eq!(limit["meters"], Value::Array(vec![]), "no usage");

    let book = r#"{"currency": "USD", "products": [
        {"key": "a", "name": "A", "unit": "u", "meter": "a_u", "unit_amount": "1"},
        {"key": "b", "name": "B", "unit": "u", "meter": "b_u", "tiers": [{"up_to": null, "unit_amount": "1", "flat_amount": "99"}],
         "addons": [{"key": "b_extra", "name": "B extra", "unit": "u", "meter": "b_x", "optional": true, "unit_amount": "1"}]}],
        "platform_addons": [{"key": "boost", "name": "Boost", "monthly_price": "10"}]}"#;
    let bill =
        quote_with(book, r#"{"usage": {"a_u": 1}, "limits": {"b": "50"}, "addons": ["b_extra", "boost"]}"#);
    assert_eq!(bill["total"], "11.00", "A's unit and the platform add-on; B's $99 base fee is not charged");
}

// 4. Proration never fails on valid input.

#[test]
fn proration_from_the_last_day_of_march() {
    let bill = quote(
        r#"{"usage": {"events": 0}, "period": {"start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"},
            "addons": [{"key": "boost", "from": "2026-03-31T00:00:00Z"}]}"#,
    );
    // Boost is $250 a month: 86,400 of March's 2,678,400 seconds → 250 × 86400 / 2678400 = 8.0645… → 8.06.
    assert_eq!(bill["total"], "8.06");
    let proration = lines_of(&bill, "proration")[0];
    assert_eq!(proration["amount"], "-241.94");
    assert_eq!(proration["exact_amount"], "-241.94");
}

// 5. Every problem in one report.

#[test]
fn problems_of_the_text_and_of_the_request_against_the_book_are_reported_together() {
    let run =
        tally(&["quote"], r#"{"usage": {"events": -1, "nope": 5}, "commitment": {"yearly_credit": "-5"}}"#);
    let err = refused(&run);
    for field in ["usage.events", "usage.nope", "commitment.yearly_credit"] {
        assert!(err.contains(field), "{field} missing from {err}");
    }
}

#[test]
fn a_repeated_key_is_an_error_not_the_last_value() {
    let run = tally(&["quote"], r#"{"usage": {"events": 1, "events": 5000000}}"#);
    assert!(refused(&run).contains("usage.events: is given more than once"), "{}", run.stderr);
    let run = tally(&["quote"], r#"{"usage": {}, "limits": {"inbox": "5", "inbox": "6"}}"#);
    assert!(refused(&run).contains("limits.inbox: is given more than once"), "{}", run.stderr);
}

// 6. Bounded input.

#[test]
fn input_over_one_mebibyte_is_refused_unparsed() {
    let padding = " ".repeat(1_048_576);
    let big = format!(r#"{{"usage": {{"events": 1}}}}{padding}"#);
    for run in [tally(&["quote"], &big), {
        let file = TempFile::new("big.json", &big);
        tally(&["quote", file.arg()], "")
    }] {
        assert!(refused(&run).contains("larger than 1048576 bytes"), "{}", run.stderr);
    }
    let book = TempFile::new("book.json", &format!(r#"{{"currency": "USD", "products": []}}{padding}"#));
    let run = tally(&["quote", "--price-book", book.arg()], r#"{"usage": {}}"#);
    assert!(refused(&run).contains("price book is larger than 1048576 bytes"), "{}", run.stderr);
    // Exactly the limit is read.
    let exact = r#"{"usage": {"events": 1}}"#;
    let fits = format!("{exact}{}", " ".repeat(1_048_576 - exact.len()));
    assert_eq!(tally(&["quote"], &fits).code, Some(0));
}

#[test]
fn an_error_lists_fifty_problems_and_counts_the_rest() {
    let addons: Vec<String> = (0..120).map(|i| format!("\"x{i}\"")).collect();
    let run = tally(&["quote"], &format!(r#"{{"usage": {{}}, "addons": [{}]}}"#, addons.join(",")));
    let err = refused(&run);
    assert_eq!(err.matches("unknown add-on").count(), 50, "{err}");
    assert!(err.trim_end().ends_with("… and 70 more"), "{err}");
}

#[test]
fn names_echoed_in_errors_are_cut_to_64_characters() {
    let name = "m".repeat(10_000);
    let run = tally(
        &["quote"],
        &format!(r#"{{"usage": {{"{name}": 1}}, "addons": ["{name}"], "colour{name}": 1}}"#),
    );
    let err = refused(&run);
    let cut = format!("{}…", "m".repeat(64));
    assert!(err.contains(&format!("usage.{cut}")), "{err}");
    assert!(!err.contains(&"m".repeat(65)), "a name is echoed whole");
    assert!(err.len() < 2_000, "{} bytes", err.len());
}

// 7. One grammar for quantities and amounts.

#[test]
fn decimal_strings_are_digits_with_an_optional_fraction() {
    for bad in ["+5", "-0", "5.", ".5", " 5", "5 ", "1e3", "1,000", "0x1"] {
        for request in [
            format!(r#"{{"usage": {{"events": "{bad}"}}}}"#),
            format!(r#"{{"usage": {{}}, "limits": {{"inbox": "{bad}"}}}}"#),
            format!(r#"{{"usage": {{}}, "commitment": {{"yearly_credit": "{bad}"}}}}"#),
            format!(r#"{{"usage": {{}}, "credit_balance": "{bad}"}}"#),
        ] {
            let run = tally(&["quote"], &request);
            assert!(
                refused(&run)
                    .contains("is not a decimal number: write digits with an optional fractional part"),
                "{request}: {}",
                run.stderr
            );
        }
    }
    assert_eq!(quote(r#"{"usage": {"events": "2000000.0", "recordings": 15000}}"#)["total"], "100.00");
}
