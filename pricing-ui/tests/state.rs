//! The page's state and its evaluation, over random states: the estimate is `compute` of the very request
//! `POST /v1/quotes` would get, a bad field is reported and left out (never an error page), and a URL query
//! reproduces the state it was written from.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use billing_core::{compute, PriceBook, QuoteRequest};
use pricing_ui::state::{evaluate, Field, PageState};
use proptest::prelude::*;

fn book() -> PriceBook {
    PriceBook::default_book().unwrap()
}

/// Typed text: good numbers (with separators people type), and junk.
fn typed() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0_u64..10_000_000_000).prop_map(|n| n.to_string()),
        1 => (0_u64..10_000_000).prop_map(|n| format!("{n}.{}", n % 1000)),
        1 => (1_000_u64..10_000_000).prop_map(|n| {
            let s = n.to_string();
            let cut = s.len() - 3;
            format!("{},{}", &s[..cut], &s[cut..])
        }),
        1 => prop::sample::select(vec!["", "-5", "abc", "1e5", "0.0000001", "99999999999999999", "½", "12 345"]).prop_map(str::to_owned),
    ]
}

fn state() -> impl Strategy<Value = PageState> {
    let book = book();
    let meters: Vec<String> = book.meters().iter().map(|m| m.to_string()).collect();
    let products: Vec<String> = book.products().iter().map(|p| p.metered.key.to_string()).collect();
    let mut addons: Vec<String> = book.platform_addons().iter().map(|a| a.key.to_string()).collect();
    addons.extend(
        book.products()
            .iter()
            .flat_map(|p| p.addons.iter().filter(|a| a.optional).map(|a| a.metered.key.to_string())),
    );
    addons.push("not_an_addon".into());
    (
        prop::collection::btree_map(prop::sample::select(meters), typed(), 0..6),
        prop::collection::btree_set(prop::sample::select(addons), 0..3),
        prop::collection::btree_map(
            prop::sample::select(products),
            prop_oneof![(0_u32..60_000).prop_map(|n| n.to_string()), typed()],
            0..3,
        ),
        prop_oneof![3 => Just(String::new()), 2 => (3_000_u32..200_000).prop_map(|n| n.to_string()), 1 => typed()],
    )
        .prop_map(|(usage, addons, limits, commitment)| PageState { usage, addons, limits, commitment })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// (a) What the page shows is `compute` of the request it sends: parsed by `QuoteRequest::from_json_for`, as
    /// the API parses it. Every field it leaves out has a message; every field it keeps is in the request.
    #[test]
    fn the_estimate_is_the_quote_of_the_request(state in state()) {
        let book = book();
        let eval = evaluate(&book, &state);
        prop_assert!(!eval.errors.contains_key(&Field::Request), "{:?}", eval.errors);
        let request = QuoteRequest::from_json_for(&book, &eval.request.to_string()).unwrap();
        let bill = compute(&book, &request).unwrap();
        prop_assert_eq!(eval.bill.as_ref().unwrap().total, bill.total);
        prop_assert_eq!(serde_json::to_value(eval.bill.as_ref().unwrap()).unwrap(), serde_json::to_value(&bill).unwrap());
        // Left out ⇔ refused: the good fields all made it into the request.
        for meter in state.usage.keys() {
            let kept = eval.request["usage"].get(meter).is_some();
            let refused = eval.errors.contains_key(&Field::Usage(meter.clone()));
            let empty = pricing_ui::state::clean_number(&state.usage[meter]).is_empty();
            prop_assert!(kept ^ (refused || empty), "{meter}: kept {kept}, refused {refused}");
        }
        for product in state.limits.keys() {
            let kept = eval.request["limits"].get(product).is_some();
            let refused = eval.errors.contains_key(&Field::Limit(product.clone()));
            let empty = pricing_ui::state::clean_number(&state.limits[product]).is_empty();
            prop_assert!(kept ^ (refused || empty), "{product}");
        }
    }

    /// (b) The URL round-trips: a state written as a query and read back is the same state (empty values aside).
    #[test]
    fn a_query_reproduces_its_state(state in state()) {
        let book = book();
        let query = state.to_query();
        let back = PageState::from_query(&book, &query);
        let trimmed = |s: &PageState| PageState {
            usage: s.usage.iter().filter(|(_, v)| !v.trim().is_empty()).map(|(k, v)| (k.clone(), v.trim().to_owned())).collect(),
            addons: s.addons.clone(),
            limits: s.limits.iter().filter(|(_, v)| !v.trim().is_empty()).map(|(k, v)| (k.clone(), v.trim().to_owned())).collect(),
            commitment: s.commitment.trim().to_owned(),
        };
        prop_assert_eq!(trimmed(&back), trimmed(&state));
        prop_assert_eq!(evaluate(&book, &back).bill, evaluate(&book, &state).bill);
    }

    /// (c) Any query at all — random bytes, escapes, repeated and unknown keys — reads into a state that prices.
    #[test]
    fn any_query_reads_and_prices(query in "[a-z_.=&%0-9A-F+ -]{0,200}") {
        let book = book();
        let eval = evaluate(&book, &PageState::from_query(&book, &query));
        prop_assert!(eval.bill.is_some());
    }
}

#[test]
fn a_query_in_the_request_s_own_words() {
    let book = book();
    let state = PageState::from_query(
        &book,
        "?events=2000000&recordings=150000&addon=boost&addon=group_analytics&limit.session_replay=200&commitment=25000&utm_source=x&limit.nope=5",
    );
    assert_eq!(state.usage.len(), 2);
    assert_eq!(state.addons, BTreeSet::from(["boost".to_owned(), "group_analytics".to_owned()]));
    assert_eq!(state.limits.len(), 1, "a cap on an unknown product is no state");
    assert_eq!(state.commitment, "25000");
    assert_eq!(
        state.to_query(),
        "events=2000000&recordings=150000&addon=boost&addon=group_analytics&limit.session_replay=200&commitment=25000"
    );
    // Percent-escapes and `+` decode; broken escapes stay as typed (and are then refused beside their input).
    let state = PageState::from_query(&book, "events=2%2C000%2C000&recordings=1+000&logs_gb_ingested=%ZZ");
    let eval = evaluate(&book, &state);
    assert_eq!(eval.request["usage"]["events"], "2000000");
    assert_eq!(eval.request["usage"]["recordings"], "1000");
    assert!(eval.error(&Field::Usage("logs_gb_ingested".into())).is_some());
}

#[test]
fn a_hostile_query_with_hundreds_of_bad_fields_still_prices_the_good_ones() {
    let book = book();
    let mut query: Vec<String> = (0..300).map(|i| format!("addon=nope{i}")).collect();
    query.push("events=2000000&identified_events=2000000".into());
    let eval = evaluate(&book, &PageState::from_query(&book, &query.join("&")));
    assert_eq!(eval.bill.unwrap().total.to_string(), "248.00");
    assert_eq!(eval.errors.len(), 300);
    assert!(
        eval.errors.keys().all(|f| !pricing_ui::state::has_input(&book, f)),
        "shown in the general message"
    );
    // Past what the rounds allow, the page says so instead of pricing a request it cannot check.
    let query: Vec<String> = (0..1000).map(|i| format!("addon=nope{i}")).collect();
    let eval = evaluate(&book, &PageState::from_query(&book, &query.join("&")));
    assert!(eval.error(&Field::Request).is_some());
}

#[test]
fn the_published_example_on_the_page() {
    let book = book();
    let eval = evaluate(&book, &PageState::from_query(&book, "events=2000000&identified_events=2000000"));
    assert_eq!(eval.bill.unwrap().total.to_string(), "248.00");
}
