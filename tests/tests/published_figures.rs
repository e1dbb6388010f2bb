//! The published pricing-page figures (pricing-semantics.md §8) come out of the real `tally quote` to the cent.
//! Same cases as billing-core's `pricing_page.rs`: billing-core/tests/published/figures.json.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use e2e::tally;
use serde_json::Value;

#[test]
fn every_published_figure_comes_out_of_tally_quote_to_the_cent() {
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("../../billing-core/tests/published/figures.json")).unwrap();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let run = tally(&["quote"], &case["request"].to_string());
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
        let bill = run.json();
        assert_eq!(bill["total"], case["total"], "{name}: total");
        if let Some(subtotal) = case.get("subtotal") {
            assert_eq!(&bill["subtotal"], subtotal, "{name}: subtotal");
        }
        for (key, amount) in case.get("lines").and_then(Value::as_object).into_iter().flatten() {
            let line = bill["lines"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| &l["key"] == key && l["kind"] != "spend_limit")
                .unwrap_or_else(|| panic!("{name}: no line {key}"));
            assert_eq!(&line["amount"], amount, "{name}: line {key}");
        }
        if let Some(price) = case.get("commitment_price") {
            assert_eq!(&bill["commitment"]["price"], price, "{name}: commitment price");
        }
        if let Some(limit) = case.get("spend_limit") {
            assert_eq!(bill["spend_limits"][0]["list_amount"], limit["list_amount"], "{name}");
        }
    }
}
