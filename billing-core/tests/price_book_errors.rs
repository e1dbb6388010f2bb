//! Every error path of price-book validation: each case breaks a valid book one way (or several) and lists the
//! exact issues reported, paths included. Validation reports every problem at once, not just the first.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use billing_core::{Error, PriceBook};
use serde_json::{json, Value};

fn valid() -> Value {
    json!({
        "currency": "USD",
        "products": [{
            "key": "api", "name": "API", "unit": "call", "meter": "calls",
            "tiers": [{"up_to": 1000, "unit_amount": "0"}, {"up_to": null, "unit_amount": "0.001"}],
            "addons": [{"key": "logs", "name": "Logs", "unit": "GB", "meter": "gb", "unit_amount": "0.5", "optional": true}]
        }],
        "platform_addons": [{"key": "boost", "name": "Boost", "monthly_price": "250"}],
        "commitment": {"minimum_credit": "1000", "brackets": [{"credit_from": "1000", "discount": "0.1"}]},
        "spend_limits": {"min": "0", "max": "50000", "alert_thresholds": ["0.8", "1"]}
    })
}

/// Applies `change` to a valid book and returns the issues, as `path: message` strings.
#[track_caller]
fn issues(change: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut book = valid();
    change(&mut book);
    match PriceBook::from_json(&book.to_string()) {
        Ok(_) => panic!("expected the book to be rejected: {book}"),
        Err(Error::InvalidPriceBook(issues)) => issues.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("expected InvalidPriceBook, got {other:?}"),
    }
}

#[track_caller]
fn single(change: impl FnOnce(&mut Value)) -> String {
    let found = issues(change);
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

#[test]
fn the_valid_book_is_valid() {
    PriceBook::from_json(&valid().to_string()).unwrap();
}

#[test]
fn malformed_json_names_the_position() {
    let err = PriceBook::from_json("{\"currency\": \"USD\", ").unwrap_err().to_string();
    assert!(err.starts_with("invalid price book: ") && err.contains("line 1"), "{err}");
}

#[test]
fn unknown_fields_are_errors_not_ignored() {
    assert!(single(|b| b["colour"] = json!("red")).starts_with("colour: unknown field `colour`"));
    let s = single(|b| b["products"][0]["tiers"][0]["note"] = json!("x"));
    assert!(s.starts_with("products[0].tiers[0].note: unknown field `note`"), "{s}");
    let s = single(|b| b["products"][0]["addons"][0]["price"] = json!("1"));
    assert!(s.starts_with("products[0].addons[0].price: unknown field `price`"), "{s}");
}

#[test]
fn names_from_the_book_are_echoed_cut_to_64_characters() {
    let long = "k".repeat(5_000);
    let s = single(|b| b[long.as_str()] = json!(1));
    assert!(s.starts_with(&format!("{}…: unknown field `{}…`", "k".repeat(64), "k".repeat(64))), "{s}");
    assert!(s.len() < 400, "{} bytes", s.len());
    let s = single(|b| b["products"][0]["key"] = json!(long));
    assert!(s.contains(&format!("`{}…` must be 1–64 characters", "k".repeat(64))), "{s}");
    let s = single(|b| b["currency"] = json!(long));
    assert!(s.starts_with(&format!("currency: unknown currency `{}…`", "k".repeat(64))), "{s}");
}

#[test]
fn wrong_types_and_json_floats_name_the_field() {
    let s = single(|b| b["products"][0]["tiers"][1]["unit_amount"] = json!(0.001));
    assert!(s.starts_with("products[0].tiers[1].unit_amount: a JSON number with a fraction, an exponent or more than 19 digits is read as a binary float"), "{s}");
    assert!(s.contains("write it as a decimal string"), "{s}");
    let s = single(|b| b["products"][0]["tiers"][0]["up_to"] = json!("lots"));
    assert!(s.starts_with("products[0].tiers[0].up_to: `lots` is not a decimal number"), "{s}");
    let s = single(|b| b["products"][0]["name"] = json!(5));
    assert!(s.starts_with("products[0].name: invalid type: integer `5`, expected a string"), "{s}");
    let s = single(|b| {
        b.as_object_mut().unwrap().remove("products");
    });
    assert!(s.contains("missing field `products`"), "{s}");
    let s = single(|b| b["effective_from"] = json!("tomorrow"));
    assert!(s.starts_with("effective_from: "), "{s}");
}

#[test]
fn book_level_problems() {
    assert_eq!(
        single(|b| b["currency"] = json!("XYZ")),
        "currency: unknown currency `XYZ` (known: USD, EUR, GBP, CHF, CAD, AUD, JPY, KWD)"
    );
    assert_eq!(single(|b| b["products"] = json!([])), "products: must list at least one product");
    assert_eq!(single(|b| b["version"] = json!(" ")), "version: must not be empty when given");
}

#[test]
fn a_duplicate_key_is_reported_where_it_is_repeated() {
    assert_eq!(
        single(|b| b["products"][0]["addons"][0]["key"] = json!("api")),
        "products[0].addons[0].key: `api` is already used by products[0]"
    );
}

#[test]
fn keys_meters_and_names() {
    assert_eq!(
        single(|b| b["products"][0]["key"] = json!("Bad Key")),
        "products[0].key: `Bad Key` must be 1–64 characters of a-z, 0-9, `_`, `-` or `.`"
    );
    assert_eq!(
        single(|b| b["platform_addons"][0]["key"] = json!("logs")),
        "platform_addons[0].key: `logs` is already used by products[0].addons[0]"
    );
    assert_eq!(
        single(|b| b["products"][0]["meter"] = json!("")),
        "products[0].meter: `` must be 1–64 characters of a-z, 0-9, `_`, `-` or `.`"
    );
    assert_eq!(
        issues(|b| {
            b["products"][0]["name"] = json!("");
            b["products"][0]["unit"] = json!(" ");
            b["platform_addons"][0]["name"] = json!("");
        }),
        [
            "products[0].name: must not be empty",
            "products[0].unit: must not be empty",
            "platform_addons[0].name: must not be empty"
        ]
    );
}

#[test]
fn a_charge_has_exactly_one_price() {
    let both = "products[0]: must have exactly one price: `tiers`, `unit_amount` (or `unit_amount_decimal`) or `package`";
    assert_eq!(single(|b| b["products"][0]["unit_amount"] = json!("1")), both);
    assert_eq!(
        single(|b| {
            b["products"][0].as_object_mut().unwrap().remove("tiers");
        }),
        both
    );
    assert_eq!(
        single(|b| b["products"][0]["addons"][0]["unit_amount_decimal"] = json!("50")),
        "products[0].addons[0].unit_amount: give either unit_amount or unit_amount_decimal, not both"
    );
    assert_eq!(
        single(|b| b["products"][0]["addons"][0]["tiers_mode"] = json!("volume")),
        "products[0].addons[0].tiers_mode: only applies with `tiers`"
    );
    let s = single(|b| b["products"][0]["tiers_mode"] = json!("stairstep"));
    assert!(s.starts_with("products[0].tiers_mode: unknown variant `stairstep`"), "{s}");
}

#[test]
fn tier_tables_report_every_problem() {
    let found = issues(|b| {
        b["products"][0]["tiers"] = json!([
            {"up_to": 0, "unit_amount": "1"},
            {"up_to": -5, "unit_amount": -1, "flat_amount": -2},
            {"up_to": null, "unit_amount": "1"},
            {"up_to": "10.0000001", "unit_amount_decimal": "1", "unit_amount": "0.01"},
            {"up_to": 20, "flat_amount": "1", "flat_amount_decimal": "100"},
            {"up_to": 30}
        ]);
    });
    assert_eq!(
        found,
        [
            "products[0].tiers[3].unit_amount: give either unit_amount or unit_amount_decimal, not both",
            "products[0].tiers[4].flat_amount: give either flat_amount or flat_amount_decimal, not both",
            "products[0].tiers[5]: must have a unit amount or a flat amount",
            "products[0].tiers[0].up_to: must be greater than 0",
            "products[0].tiers[1].up_to: must not be negative (got -5)",
            "products[0].tiers[1].up_to: must be greater than the previous tier's up_to (0); tiers must be strictly increasing",
            "products[0].tiers[1].unit_amount: must not be negative",
            "products[0].tiers[1].flat_amount: must not be negative",
            "products[0].tiers[2].up_to: only the last tier may be open-ended",
            "products[0].tiers[3].up_to: must have at most 6 decimal places (got 10.0000001)",
            "products[0].tiers[5].up_to: the last tier must be open-ended (null or \"inf\")",
        ]
    );
    assert_eq!(
        single(|b| b["products"][0]["tiers"] = json!([])),
        "products[0].tiers: must have at least one tier"
    );
}

#[test]
fn per_unit_prices_and_minor_units() {
    assert_eq!(
        single(|b| b["products"][0]["addons"][0]["unit_amount"] = json!(-1)),
        "products[0].addons[0].unit_amount: must not be negative"
    );
    assert_eq!(
        single(|b| b["products"][0]["addons"][0]["unit_amount"] = json!("-0.5")),
        "products[0].addons[0].unit_amount: `-0.5` is not a decimal number: write digits with an optional fractional part, such as \"12\" or \"0.00005\""
    );
    assert_eq!(
        single(|b| {
            b["products"][0]["addons"][0].as_object_mut().unwrap().remove("unit_amount");
            b["products"][0]["addons"][0]["unit_amount_decimal"] = json!("0.000000000000000000000000001");
        }),
        "products[0].addons[0].unit_amount_decimal: has too many decimal places"
    );
}

#[test]
fn packages() {
    let package = |p: Value| {
        move |b: &mut Value| {
            b["products"][0].as_object_mut().unwrap().remove("tiers");
            b["products"][0]["package"] = p;
        }
    };
    assert_eq!(
        single(package(json!({"size": 0, "amount": "5"}))),
        "products[0].package.size: must be greater than 0"
    );
    assert_eq!(
        single(package(json!({"size": 10}))),
        "products[0].package: must have an `amount` (or `amount_decimal`)"
    );
    assert_eq!(
        single(package(json!({"size": 10, "amount": -5}))),
        "products[0].package.amount: must not be negative"
    );
    assert_eq!(
        single(package(json!({"size": "0.0000001", "amount": "5"}))),
        "products[0].package.size: must have at most 6 decimal places (got 0.0000001)"
    );
    let s = single(package(json!({"size": 10, "amount": "5", "round": "sideways"})));
    assert!(s.starts_with("products[0].package.round: unknown variant `sideways`"), "{s}");
}

#[test]
fn add_ons_and_platform_add_ons() {
    assert_eq!(
        single(|b| b["products"][0]["optional"] = json!(true)),
        "products[0].optional: only add-ons can be optional"
    );
    assert_eq!(
        single(|b| b["products"][0]["addons"][0]["addons"] = json!([])),
        "products[0].addons[0].addons: add-ons cannot have add-ons"
    );
    assert_eq!(
        single(|b| b["platform_addons"][0]["monthly_price"] = json!(-1)),
        "platform_addons[0].monthly_price: must not be negative"
    );
}

#[test]
fn commitment_offers() {
    let found = issues(|b| {
        b["commitment"] = json!({"minimum_credit": "0", "term_months": 0, "brackets": [
            {"credit_from": "1000", "discount": "1"},
            {"credit_from": "1000", "discount": "-0.1"},
            {"credit_from": "+2000", "discount": "0.2"}
        ]});
    });
    assert_eq!(
        found,
        [
            "commitment.minimum_credit: must be greater than 0",
            "commitment.brackets[0].discount: must be at least 0 and less than 1 (0.10 means 10 %)",
            "commitment.brackets[1].discount: `-0.1` is not a decimal number: write digits with an optional fractional part, such as \"12\" or \"0.00005\"",
            "commitment.brackets[2].credit_from: `+2000` is not a decimal number: write digits with an optional fractional part, such as \"12\" or \"0.00005\"",
            "commitment.term_months: must be between 1 and 120",
        ]
    );
    assert_eq!(
        single(|b| b["commitment"]["brackets"] = json!([])),
        "commitment.brackets: must list at least one bracket"
    );
    assert_eq!(
        single(|b| b["commitment"]["minimum_credit"] = json!("999.99")),
        "commitment.minimum_credit: must be at least the first bracket's credit_from (1000): a smaller credit would \
         have no bracket"
    );
}

#[test]
fn spend_limit_rules() {
    let found = issues(|b| {
        b["spend_limits"] =
            json!({"min": -1, "max": "10.5", "alert_thresholds": ["0.9", "0.8", "1.5", "0", ".5"]});
    });
    assert_eq!(
        found,
        [
            "spend_limits.min: must be a whole, non-negative amount",
            "spend_limits.max: must be a whole amount not below `min`",
            "spend_limits.alert_thresholds[1]: thresholds must be strictly increasing",
            "spend_limits.alert_thresholds[2]: must be greater than 0 and at most 1",
            "spend_limits.alert_thresholds[3]: must be greater than 0 and at most 1",
            "spend_limits.alert_thresholds[4]: `.5` is not a decimal number: write digits with an optional fractional part, such as \"12\" or \"0.00005\"",
        ]
    );
}

#[test]
fn problems_across_the_whole_book_are_reported_together() {
    let found = issues(|b| {
        b["currency"] = json!("usd");
        b["products"][0]["tiers"][1]["up_to"] = json!(500);
        b["platform_addons"][0]["monthly_price"] = json!("-250");
        b["commitment"]["brackets"][0]["discount"] = json!("2");
        b["spend_limits"]["max"] = json!("5.");
    });
    assert_eq!(found.len(), 5, "{found:?}");
}

#[test]
fn amounts_too_large_to_compute_exactly_are_rejected_not_rounded() {
    let s = single(|b| {
        b["products"][0]["tiers"] = json!([
            {"up_to": 1000000000000_u64, "unit_amount": "79228162514264.337593543950335"},
            {"up_to": null, "unit_amount": "1"}
        ]);
    });
    assert!(s.contains("amount out of range while computing tier total"), "{s}");
}
