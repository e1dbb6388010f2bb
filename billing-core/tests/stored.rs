//! The stored form of a bill on the example price book: what it leaves to the book, how small it is, and that a
//! stored form read against a book that does not describe it is refused, never guessed.

#![allow(clippy::unwrap_used)]

use billing_core::stored::{decode, encode};
use billing_core::{compute, PriceBook, QuoteRequest};

fn bill_json(book: &PriceBook, request: &str) -> (String, String) {
    let bill = compute(book, &QuoteRequest::from_json_for(book, request).unwrap()).unwrap();
    (serde_json::to_string(&bill).unwrap(), encode(&bill, book).unwrap())
}

const REQUEST: &str = r#"{"usage": {"events": "1234567", "recordings": "56789", "feature_flag_requests": "2345678",
    "cdp_trigger_events": "345678", "survey_responses": "4567"}, "addons": ["boost"],
    "limits": {"session_replay": "100"}, "commitment": {"yearly_credit": "25000"}, "credit_balance": "300",
    "period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}}"#;

#[test]
fn an_invoice_bill_is_stored_in_about_a_third_of_its_json_and_reads_back_exactly() {
    let book = PriceBook::default_book().unwrap();
    let (json, stored) = bill_json(&book, REQUEST);
    let back = serde_json::to_string(&decode(&stored, &book).unwrap()).unwrap();
    assert_eq!(back, json);
    assert!(
        stored.len() * 100 <= json.len() * 35,
        "{} bytes stored for {} of JSON: {stored}",
        stored.len(),
        json.len()
    );
    // Usage alone (most invoices): a quarter.
    let usage_only = r#"{"usage": {"events": "1234567", "recordings": "56789", "feature_flag_requests": "2345678",
        "cdp_trigger_events": "345678", "survey_responses": "4567"}}"#;
    let (json, stored) = bill_json(&book, usage_only);
    assert_eq!(serde_json::to_string(&decode(&stored, &book).unwrap()).unwrap(), json);
    assert!(
        stored.len() * 4 <= json.len(),
        "{} bytes stored for {} of JSON: {stored}",
        stored.len(),
        json.len()
    );
    // The book's words are not repeated: no product name, no tier bound object.
    assert!(!stored.contains("Session replay\""), "{stored}");
    assert!(!stored.contains("\"up_to\""), "{stored}");
    // Every number the bill computed is there.
    assert!(stored.contains("\"1234567\"") && stored.contains("\"234567\""), "{stored}");
}

#[test]
fn a_stored_bill_read_against_a_book_without_its_products_is_refused() {
    let book = PriceBook::default_book().unwrap();
    let (_, stored) = bill_json(&book, REQUEST);
    let other = PriceBook::from_json(
        r#"{"currency": "USD", "version": "other", "products": [{"key": "x", "name": "X", "unit": "unit",
            "meter": "x", "unit_amount": "1"}]}"#,
    )
    .unwrap();
    let err = decode(&stored, &other).unwrap_err();
    assert!(err.contains("does not describe `product_analytics`"), "{err}");
}

#[test]
fn malformed_stored_bills_are_refused_with_a_reason() {
    let book = PriceBook::default_book().unwrap();
    for bad in [
        "",
        "[]",
        "{\"v\": 2}",
        "{\"v\": 1, \"currency\": \"USD\", \"lines\": 3, \"sums\": []}",
        "{\"v\": 1, \"currency\": \"USD\", \"lines\": [[\"product_analytics\", \"product\", \"-1\", \"0\", \"0\", null, null]], \"sums\": [\"0\",\"0\",\"0\",\"0\",\"0\"], \"spend_limits\": []}",
        "{\"v\": 1, \"currency\": \"USD\", \"lines\": [[\"product_analytics\", \"product\", \"1\", \"0\", \"0\", [99], null]], \"sums\": [\"0\",\"0\",\"0\",\"0\",\"0\"], \"spend_limits\": []}",
        "{\"v\": 1, \"currency\": \"USD\", \"lines\": [], \"sums\": [\"0\",\"x\",\"0\",\"0\",\"0\"], \"spend_limits\": []}",
    ] {
        assert!(decode(bad, &book).is_err(), "{bad}");
    }
}
