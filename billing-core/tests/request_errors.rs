//! Every error path of a request checked against a price book: each case lists the exact issues reported.
//! (Malformed JSON and field types are covered by the CLI tests; here the request parses but breaks a rule.)

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use billing_core::{compute, Error, PriceBook, QuoteRequest};

#[track_caller]
fn issues(book: &PriceBook, request: &str) -> Vec<String> {
    match compute(book, &QuoteRequest::from_json(request).unwrap()) {
        Err(Error::InvalidRequest(issues)) => issues.iter().map(ToString::to_string).collect(),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

const NOVEMBER: &str = r#""period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}"#;

#[test]
fn add_ons_are_checked() {
    let book = PriceBook::default_book().unwrap();
    assert_eq!(
        issues(&book, r#"{"usage": {}, "addons": ["boost", "boost"]}"#),
        ["addons[1]: `boost` is chosen twice"]
    );
    assert_eq!(
        issues(
            &book,
            &format!(
                r#"{{"usage": {{}}, "addons": [{{"key": "group_analytics", "from": "2026-11-02T00:00:00Z"}}], {NOVEMBER}}}"#
            )
        ),
        ["addons[0]: only platform add-ons are prorated; metered add-ons bill usage"]
    );
    assert_eq!(
        issues(&book, &format!(r#"{{"usage": {{}}, "addons": [{{"key": "boost", "from": "2026-12-01T00:00:00Z"}}], {NOVEMBER}}}"#)),
        ["addons[0].from: 2026-12-01 00:00:00 UTC is outside the period [2026-11-01 00:00:00 UTC, 2026-12-01 00:00:00 UTC)"]
    );
}

#[test]
fn credit_balances_are_whole_minor_units() {
    let book = PriceBook::default_book().unwrap();
    assert_eq!(
        issues(&book, r#"{"usage": {}, "credit_balance": "10.005"}"#),
        ["credit_balance: must be whole minor units of USD"]
    );
}

#[test]
fn a_commitment_needs_a_book_that_offers_one() {
    let book = PriceBook::from_json(
        r#"{"currency": "USD", "products": [{"key": "a", "name": "A", "unit": "u", "meter": "m", "unit_amount": "1"}]}"#,
    )
    .unwrap();
    assert_eq!(
        issues(&book, r#"{"usage": {"m": 1}, "commitment": {"yearly_credit": "5000"}}"#),
        ["commitment: this price book offers no commitment"]
    );
}

#[test]
fn a_period_must_end_after_it_starts() {
    let err = QuoteRequest::from_json(
        r#"{"usage": {}, "period": {"start": "2026-12-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("period: period end (2026-11-01 00:00:00 UTC) must be after its start"), "{err}");
}
