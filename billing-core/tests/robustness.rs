//! The core never panics on input: whatever a price book or a request says, `from_json` and `compute` answer
//! `Ok` or `Err`. Extreme but valid values (quantities at the maximum, prices that overflow 96 bits, huge credits)
//! must come back as `Error::Overflow` or a validation issue, never as a panic.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use billing_core::{compute, Error, PriceBook, QuoteRequest};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Decimal-looking text, from ordinary to absurd.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0_u64..1_000_000).prop_map(|n| n.to_string()),
        (0_u64..u64::MAX, 0_u32..30).prop_map(|(m, s)| {
            let digits = m.to_string();
            let s = (s as usize).min(digits.len());
            let (int, frac) = digits.split_at(digits.len() - s);
            if frac.is_empty() {
                int.to_owned()
            } else {
                format!("{}.{frac}", if int.is_empty() { "0" } else { int })
            }
        }),
        Just("79228162514264337593543950335".to_owned()),
        Just("1000000000000".to_owned()),
        Just("-1".to_owned()),
        Just("0.0000000000000000000000000001".to_owned()),
    ]
}

/// Any JSON value, shallow.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        number_text().prop_map(Value::String),
        "[a-z_]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the value at a random place of `doc` (chosen by `path`, a list of indices) with `new`.
fn mutate(doc: &mut Value, path: &[usize], new: Value) {
    let Some((step, rest)) = path.split_first() else {
        *doc = new;
        return;
    };
    match doc {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(step % map.len()).unwrap().clone();
            mutate(map.get_mut(&key).unwrap(), rest, new);
        }
        Value::Array(items) if !items.is_empty() => {
            let len = items.len();
            mutate(&mut items[step % len], rest, new);
        }
        other => *other = new,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_json_is_a_price_book_or_an_error(doc in json_value()) {
        let _ = PriceBook::from_json(&doc.to_string());
        let _ = QuoteRequest::from_json(&doc.to_string());
    }

    #[test]
    fn a_mutated_default_book_prices_or_fails_cleanly(
        path in prop::collection::vec(any::<usize>(), 1..6),
        new in json_value(),
        events in number_text(),
    ) {
        let mut book: Value = serde_json::from_str(billing_core::catalog::DEFAULT_PRICE_BOOK_JSON).unwrap();
        mutate(&mut book, &path, new);
        if let Ok(book) = PriceBook::from_json(&book.to_string()) {
            let request = json!({"usage": {"events": events, "identified_events": "1000000000000"},
                                 "limits": {"product_analytics": "50000"}});
            if let Ok(request) = QuoteRequest::from_json(&request.to_string()) {
                let _ = compute(&book, &request);
            }
        }
    }

    #[test]
    fn extreme_requests_price_or_fail_cleanly(
        usage in prop::collection::btree_map(
            prop::sample::select(vec!["events", "identified_events", "recordings", "inbox_prs", "logs_gb_ingested"]),
            number_text(),
            0..5,
        ),
        limit in number_text(),
        credit in number_text(),
        balance in number_text(),
    ) {
        let book = PriceBook::default_book().unwrap();
        let request = json!({"usage": usage, "addons": ["group_analytics", {"key": "boost", "from": "2026-11-30T23:59:59Z"}],
                             "limits": {"product_analytics": limit, "inbox": "1"},
                             "commitment": {"yearly_credit": credit}, "credit_balance": balance,
                             "period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}});
        match QuoteRequest::from_json(&request.to_string()).and_then(|r| compute(&book, &r)) {
            Ok(bill) => prop_assert!(bill.amount_due >= rust_decimal::Decimal::ZERO),
            Err(Error::InvalidRequest(issues)) => prop_assert!(!issues.is_empty()),
            Err(Error::Overflow { .. } | Error::InvalidPriceBook(_)) => {}
        }
    }
}

#[test]
fn a_price_too_large_to_compute_exactly_is_an_overflow_error() {
    let book = PriceBook::from_json(
        r#"{"currency": "USD", "products": [{"key": "a", "name": "A", "unit": "u", "meter": "m",
            "unit_amount": "79228162514264337593543950"}]}"#,
    )
    .unwrap();
    let request = QuoteRequest::from_json(r#"{"usage": {"m": "1000000000000"}}"#).unwrap();
    assert!(matches!(compute(&book, &request), Err(Error::Overflow { .. })));
}
