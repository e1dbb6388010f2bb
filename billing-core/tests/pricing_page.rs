//! Every worked example published on the public pricing page (pricing-semantics.md §8), through `compute`.
//!
//! The cases live in `tests/published/figures.json` (see its README); the end-to-end suite checks the same file
//! through the `tally` binary.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use billing_core::{compute, Bill, LineKind, PriceBook, QuoteRequest};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use std::str::FromStr;

fn d(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().expect("figures are strings")).expect("a decimal")
}

/// The page rounds to whole dollars with JS `Math.round` (ties up); our cents rounded half up to dollars must match.
fn page_dollars(total: Decimal) -> Decimal {
    total.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
}

#[track_caller]
fn check(case: &Value, bill: &Bill<'_>) {
    let name = case["name"].as_str().unwrap_or_default();
    assert_eq!(bill.total, d(&case["total"]), "{name}: total");
    assert_eq!(
        bill.total.to_string(),
        case["total"].as_str().unwrap(),
        "{name}: total printed at the minor unit"
    );
    assert_eq!(page_dollars(bill.total), d(&case["page_dollars"]), "{name}: the page's whole-dollar figure");
    if let Some(subtotal) = case.get("subtotal") {
        assert_eq!(bill.subtotal, d(subtotal), "{name}: subtotal");
    }
    for (key, amount) in case.get("lines").and_then(Value::as_object).into_iter().flatten() {
        let line = bill
            .lines
            .iter()
            .find(|l| *l.key == **key && l.kind != LineKind::SpendLimit)
            .unwrap_or_else(|| panic!("{name}: no line {key}"));
        assert_eq!(line.amount, d(amount), "{name}: line {key}");
    }
    if let Some(price) = case.get("commitment_price") {
        assert_eq!(bill.commitment.as_ref().map(|c| c.price), Some(d(price)), "{name}: commitment price");
    }
    if let Some(limit) = case.get("spend_limit") {
        let summary = &bill.spend_limits[0];
        assert_eq!(summary.product, limit["product"].as_str().unwrap());
        assert_eq!(summary.list_amount, d(&limit["list_amount"]), "{name}: list amount within the limit");
        assert!(summary.net_exact_amount <= summary.limit, "{name}: the limit is never exceeded");
        for (meter, billable) in limit["billable"].as_object().unwrap() {
            let m = summary.meters.iter().find(|m| &m.meter == meter).unwrap();
            assert_eq!(m.billable.value(), d(billable), "{name}: billable {meter}");
        }
    }
}

#[test]
fn every_published_figure_is_reproduced_to_the_cent() {
    let book = PriceBook::default_book().unwrap();
    let cases: Vec<Value> = serde_json::from_str(include_str!("published/figures.json")).unwrap();
    assert!(cases.len() >= 15);
    for case in &cases {
        let request = QuoteRequest::from_json(&case["request"].to_string()).unwrap();
        let bill = compute(&book, &request).unwrap();
        check(case, &bill);
    }
}

#[test]
fn the_default_price_book_keeps_the_published_keys_and_meters() {
    let book = PriceBook::default_book().unwrap();
    let keys: Vec<(&str, &str)> =
        book.products().iter().map(|p| (&*p.metered.key, &*p.metered.meter)).collect();
    assert_eq!(keys.len(), 14);
    assert_eq!(keys[0], ("product_analytics", "events"));
    assert_eq!(keys[13], ("workflows_emails", "workflow_emails"));
    let addons: Vec<&str> = book.products().iter().flat_map(|p| &p.addons).map(|a| &*a.metered.key).collect();
    assert_eq!(
        addons,
        [
            "enhanced_persons",
            "group_analytics",
            "mobile_replay",
            "batch_exports",
            "logs_retention_30d",
            "workflows_destinations"
        ]
    );
    let platform: Vec<&str> = book.platform_addons().iter().map(|a| &*a.key).collect();
    assert_eq!(platform, ["boost", "scale", "enterprise"]);
    assert_eq!(book.commitment().unwrap().brackets.len(), 4);
    assert_eq!(book.spend_limits().max, Some(Decimal::from(50_000)));
}
