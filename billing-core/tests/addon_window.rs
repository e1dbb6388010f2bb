//! A platform add-on on for part of a period: added (`from`), removed (`until`), or both, is billed its monthly
//! price × the seconds it was on / the period's seconds, rounded once.

#![allow(clippy::unwrap_used)]

use billing_core::{compute, PriceBook, QuoteRequest};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

const PERIOD: &str = r#""period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}"#;

fn boost_total(addon: &str) -> Result<Decimal, String> {
    let book = PriceBook::default_book().unwrap();
    let text = format!(r#"{{"usage": {{}}, "addons": [{addon}], {PERIOD}}}"#);
    let request = QuoteRequest::from_json_for(&book, &text).map_err(|e| e.to_string())?;
    Ok(compute(&book, &request).map_err(|e| e.to_string())?.total)
}

fn at(seconds: i64) -> String {
    let start: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
    (start + Duration::seconds(seconds)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn removed_mid_period_bills_up_to_the_removal() {
    // Boost is $250 a month; November has 30 days. Removed on the 16th at 00:00: 15 days = 125.00.
    assert_eq!(
        boost_total(r#"{"key": "boost", "until": "2026-11-16T00:00:00Z"}"#).unwrap(),
        Decimal::new(12500, 2)
    );
    // Added on the 11th, removed on the 21st: 10 days = 83.33.
    assert_eq!(
        boost_total(r#"{"key": "boost", "from": "2026-11-11T00:00:00Z", "until": "2026-11-21T00:00:00Z"}"#)
            .unwrap(),
        Decimal::new(8333, 2)
    );
    // On for the whole period either way.
    assert_eq!(
        boost_total(r#"{"key": "boost", "until": "2026-12-01T00:00:00Z"}"#).unwrap(),
        Decimal::new(25000, 2)
    );
    assert_eq!(boost_total(r#""boost""#).unwrap(), Decimal::new(25000, 2));
}

#[test]
fn a_window_outside_the_period_or_backwards_is_refused_with_its_path() {
    for (addon, path) in [
        (r#"{"key": "boost", "until": "2026-10-20T00:00:00Z"}"#, "addons[0].until"),
        (r#"{"key": "boost", "until": "2026-11-01T00:00:00Z"}"#, "addons[0].until"),
        (
            r#"{"key": "boost", "from": "2026-11-20T00:00:00Z", "until": "2026-11-10T00:00:00Z"}"#,
            "addons[0].until",
        ),
        (r#"{"key": "boost", "until": "soon"}"#, "addons[0].until"),
        (r#"{"key": "boost", "from": "2026-12-01T00:00:00Z"}"#, "addons[0].from"),
    ] {
        let err = boost_total(addon).unwrap_err();
        assert!(err.contains(path), "{addon}: {err}");
    }
    let book = PriceBook::default_book().unwrap();
    let text = r#"{"usage": {}, "addons": [{"key": "boost", "until": "2026-11-10T00:00:00Z"}]}"#;
    let err = QuoteRequest::from_json_for(&book, text).unwrap_err().to_string();
    assert!(err.contains("needs the request's `period`"), "{err}");
}

proptest! {
    /// Any window: billed exactly price × seconds / period, rounded once half away from zero, never more than the
    /// month; and two windows that split the period bill the month to within one cent.
    #[test]
    fn any_window_bills_its_share(a in 0_i64..2_592_000, b in 0_i64..2_592_000) {
        let (from, until) = (a.min(b), a.max(b).max(a.min(b) + 1));
        let total = boost_total(&format!(r#"{{"key": "boost", "from": "{}", "until": "{}"}}"#, at(from), at(until))).unwrap();
        let exact = Decimal::from(250) * Decimal::from(until - from) / Decimal::from(2_592_000);
        prop_assert_eq!(total, exact.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero));
        prop_assert!(total <= Decimal::from(250));
        let first = boost_total(&format!(r#"{{"key": "boost", "until": "{}"}}"#, at(until))).unwrap();
        let rest = boost_total(&format!(r#"{{"key": "boost", "from": "{}"}}"#, at(until))).unwrap();
        prop_assert!((first + rest - Decimal::from(250)).abs() <= Decimal::new(1, 2));
    }
}
