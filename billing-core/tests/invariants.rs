//! The promises billing-core makes for any input, checked over random price books and random requests: every
//! charge model (graduated, volume, package, per unit), a currency with cents and one without (USD, JPY), flat
//! fees (the first tier's included), add-ons on their own meter or on their product's, optional add-ons, platform
//! add-ons with sub-cent prices, spend caps and commitments.
//!
//! (a) a cap is a maximum on money; (b) more usage never costs less (outside volume tables); (c) every line is its
//! exact amount rounded, and the sums hold; (d) proration matches exact rational arithmetic; (e) a request lists
//! every independent problem it has; (f) no input panics.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use billing_core::{compute, Bill, Error, LineKind, PriceBook, QuoteRequest, Stage};
use proptest::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------------------------
// Random price books.

fn unit_amount() -> impl Strategy<Value = Decimal> {
    // 0 to 10,000 with up to 8 decimal places.
    (0_i64..1_000_000_000_000, 0_u32..=8).prop_map(|(m, s)| Decimal::new(m % 10_i64.pow(4 + s), s))
}

fn flat_amount() -> impl Strategy<Value = Decimal> {
    prop_oneof![2 => Just(Decimal::ZERO), 1 => (0_i64..10_000_000, 0_u32..=3).prop_map(|(c, s)| Decimal::new(c, s))]
}

fn tiers(volume: bool) -> impl Strategy<Value = Value> {
    prop::collection::vec((1_i64..20_000_000, unit_amount(), flat_amount()), 1..5).prop_map(move |rows| {
        let mut bound = 0_i64;
        let last = rows.len() - 1;
        let tiers: Vec<Value> = rows
            .into_iter()
            .enumerate()
            .map(|(i, (width, unit, flat))| {
                bound += width;
                json!({"up_to": if i < last { json!(bound) } else { Value::Null },
                       "unit_amount": unit.to_string(), "flat_amount": flat.to_string()})
            })
            .collect();
        json!({"tiers_mode": if volume { "volume" } else { "graduated" }, "tiers": tiers})
    })
}

/// A price of any model; volume tables only when `volume` (their price can fall as usage grows).
fn price(volume: bool) -> BoxedStrategy<Value> {
    let mut models = vec![
        (3, tiers(false).boxed()),
        (1, unit_amount().prop_map(|u| json!({"unit_amount": u.to_string()})).boxed()),
        (
            1,
            (1_u64..10_000, unit_amount(), any::<bool>())
                .prop_map(|(size, amount, up)| {
                    json!({"package": {"size": size, "amount": amount.to_string(), "round": if up { "up" } else { "down" }}})
                })
                .boxed(),
        ),
    ];
    if volume {
        models.push((2, tiers(true).boxed()));
    }
    prop::strategy::Union::new_weighted(models).boxed()
}

/// A random valid price book as wire JSON.
fn book(volume: bool) -> impl Strategy<Value = Value> {
    let addon = (price(volume), any::<bool>(), any::<bool>());
    (
        prop::sample::select(vec!["USD", "JPY"]),
        prop::collection::vec((price(volume), prop::collection::vec(addon, 0..3)), 1..4),
        prop::collection::vec((0_i64..100_000_000, 0_u32..=4), 0..3),
    )
        .prop_map(|(currency, products, platform)| {
            let products: Vec<Value> = products
                .into_iter()
                .enumerate()
                .map(|(i, (price, addons))| {
                    let mut p = json!({"key": format!("p{i}"), "name": format!("Product {i}"), "unit": "unit", "meter": format!("m{i}")});
                    p.as_object_mut().unwrap().extend(price.as_object().unwrap().clone());
                    let addons: Vec<Value> = addons
                        .into_iter()
                        .enumerate()
                        .map(|(j, (price, optional, own_meter))| {
                            let meter = if own_meter { format!("m{i}_{j}") } else { format!("m{i}") };
                            let mut a = json!({"key": format!("p{i}_a{j}"), "name": format!("Add-on {i}.{j}"), "unit": "unit",
                                               "meter": meter, "optional": optional});
                            a.as_object_mut().unwrap().extend(price.as_object().unwrap().clone());
                            a
                        })
                        .collect();
                    if !addons.is_empty() {
                        p["addons"] = json!(addons);
                    }
                    p
                })
                .collect();
            let platform: Vec<Value> = platform
                .into_iter()
                .enumerate()
                .map(|(i, (m, s))| json!({"key": format!("flat{i}"), "name": format!("Flat {i}"), "monthly_price": Decimal::new(m, s).to_string()}))
                .collect();
            json!({"currency": currency, "version": "random", "products": products, "platform_addons": platform,
                   "commitment": {"minimum_credit": "1000", "brackets": [
                       {"credit_from": "1000", "discount": "0.1"}, {"credit_from": "5000", "discount": "0.2"},
                       {"credit_from": "20000", "discount": "0.35"}]}})
        })
}

/// What a request can name in a book.
struct Names {
    meters: Vec<String>,
    products: Vec<String>,
    choices: Vec<String>,
}

fn names(book: &PriceBook) -> Names {
    Names {
        meters: book.meters().iter().map(ToString::to_string).collect(),
        products: book.products().iter().map(|p| p.metered.key.to_string()).collect(),
        choices: book
            .products()
            .iter()
            .flat_map(|p| &p.addons)
            .filter(|a| a.optional)
            .map(|a| a.metered.key.to_string())
            .chain(book.platform_addons().iter().map(|a| a.key.to_string()))
            .collect(),
    }
}

fn quantity() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (0_u64..2_000_000_000).prop_map(|n| json!(n)),
        1 => (0_i64..2_000_000_000, 1_u32..=3).prop_map(|(m, s)| json!(Decimal::new(m, s).to_string())),
        1 => (0_u64..1_000).prop_map(|n| json!(n)),
    ]
}

/// A random valid request against `book`: usage on some meters, chosen add-ons, caps, maybe a commitment.
fn request(book: &PriceBook, caps: bool, commitment: bool) -> impl Strategy<Value = Value> {
    let n = names(book);
    let meters = n.meters.clone();
    (
        prop::collection::btree_map(prop::sample::select(meters.clone()), quantity(), 0..=meters.len()),
        prop::sample::subsequence(n.choices.clone(), 0..=n.choices.len()),
        prop::collection::btree_map(
            prop::sample::select(n.products.clone()),
            0_u64..3_000,
            0..=n.products.len(),
        ),
        prop::option::weighted(0.6, 1000_u64..40_000),
    )
        .prop_map(move |(usage, addons, limits, credit)| {
            let mut r = json!({"usage": usage, "addons": addons});
            if caps {
                r["limits"] =
                    Value::Object(limits.into_iter().map(|(k, v)| (k, json!(v.to_string()))).collect());
            }
            if let (true, Some(c)) = (commitment, credit) {
                r["commitment"] = json!({"yearly_credit": c.to_string()});
            }
            r
        })
}

fn book_and_request(volume: bool, caps: bool, commitment: bool) -> impl Strategy<Value = (PriceBook, Value)> {
    book(volume).prop_flat_map(move |json| {
        let book = PriceBook::from_json(&json.to_string()).unwrap();
        let request = request(&book, caps, commitment);
        (Just(book), request)
    })
}

fn price_it<'b>(book: &'b PriceBook, request: &Value) -> Bill<'b> {
    let request = QuoteRequest::from_json_for(book, &request.to_string()).unwrap();
    compute(book, &request).unwrap()
}

fn round(book: &PriceBook, d: Decimal) -> Decimal {
    d.round_dp_with_strategy(book.currency().exponent(), RoundingStrategy::MidpointAwayFromZero)
}

fn minor_unit(book: &PriceBook) -> Decimal {
    Decimal::new(1, book.currency().exponent())
}

/// Σ the billed amounts of a product's group: its lines, its add-ons' and its spend-limit line.
fn group_amount(bill: &Bill<'_>, product: &str) -> Decimal {
    bill.lines.iter().filter(|l| l.product.as_deref() == Some(product)).map(|l| l.amount).sum()
}

fn net_factor(bill: &Bill<'_>) -> Decimal {
    bill.commitment.as_ref().map_or(Decimal::ONE, |c| Decimal::ONE - c.discount_rate)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// (a) A capped product's net (after the commitment discount, rounded) never exceeds its cap nor its uncapped
    /// net, and is within one minor unit of the cap whenever the uncapped net exceeds it — exactly the cap without
    /// a discount. The spend-limit line is never positive.
    #[test]
    fn a_cap_is_a_maximum_on_money((book, r) in book_and_request(true, true, true)) {
        let bill = price_it(&book, &r);
        let f = net_factor(&bill);
        for line in bill.lines.iter().filter(|l| l.kind == LineKind::SpendLimit) {
            prop_assert!(line.amount <= Decimal::ZERO, "{:?}", line);
        }
        for summary in &bill.spend_limits {
            let product = summary.product.as_str();
            let cap = summary.limit;
            let mut uncapped_request = r.clone();
            uncapped_request["limits"].as_object_mut().unwrap().remove(product);
            let uncapped = price_it(&book, &uncapped_request);
            let (capped_list, uncapped_list) = (group_amount(&bill, product), group_amount(&uncapped, product));
            let (net, uncapped_net) = (round(&book, capped_list * f), round(&book, uncapped_list * f));
            prop_assert!(net <= cap, "{} nets {} over its cap {}", product, net, cap);
            prop_assert!(net <= uncapped_net, "{} nets {} with its cap, {} without", product, net, uncapped_net);
            prop_assert_eq!(summary.list_amount, capped_list);
            if uncapped_list * f > cap {
                prop_assert!(summary.reached);
                prop_assert!(cap - net <= minor_unit(&book), "{} nets {}, a cap of {}", product, net, cap);
                if f == Decimal::ONE {
                    prop_assert_eq!(capped_list, cap, "without a discount a reached cap bills exactly the cap");
                }
            } else {
                prop_assert!(!summary.reached);
                prop_assert_eq!(capped_list, uncapped_list, "a cap that is not reached changes nothing");
            }
        }
    }

    /// (g) The stored form of a bill (what an invoice keeps) reads back, against the same book, as a bill whose JSON
    /// is byte for byte the bill's JSON — with the invoice view's prepaid credit, a period, and platform add-ons
    /// added mid-period (proration lines) too — and is never larger than that JSON.
    #[test]
    fn the_stored_form_reads_back_as_the_same_bill(
        (book, mut r) in book_and_request(true, true, true),
        credit in prop::option::of(0_u64..60_000),
        mid_period in any::<bool>(),
    ) {
        r["period"] = json!({"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"});
        if let (Some(c), true) = (credit, r.get("commitment").is_some()) {
            r["credit_balance"] = json!(c.to_string());
        }
        if mid_period {
            for addon in r["addons"].as_array_mut().unwrap() {
                if addon.as_str().is_some_and(|k| k.starts_with("flat")) {
                    *addon = json!({"key": addon.clone(), "from": "2026-11-10T07:00:00Z"});
                }
            }
        }
        let bill = price_it(&book, &r);
        let json = serde_json::to_string(&bill).unwrap();
        let stored = billing_core::stored::encode(&bill, &book).unwrap();
        let back = billing_core::stored::decode(&stored, &book).unwrap();
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), json.clone());
        prop_assert!(stored.len() <= json.len(), "{} bytes stored for {} of JSON", stored.len(), json.len());
        // The bill's full JSON (how invoices were stored before) reads as it is.
        let legacy = billing_core::stored::decode(&json, &book).unwrap();
        prop_assert_eq!(serde_json::to_string(&legacy).unwrap(), json);
    }

    /// (b) On books without volume tables, raising any meter's quantity (or adding a meter) never lowers the
    /// total, with or without caps and commitment.
    #[test]
    fn more_usage_never_costs_less(
        ((book, r), meter_pick, extra) in (book_and_request(false, true, true), any::<prop::sample::Index>(), quantity()),
    ) {
        let before = price_it(&book, &r);
        let meters = names(&book).meters;
        let meter = meter_pick.get(&meters);
        let mut more = r.clone();
        let current = more["usage"].get(meter).map_or(Decimal::ZERO, |q| match q {
            Value::String(s) => s.parse().unwrap(),
            other => Decimal::from(other.as_u64().unwrap()),
        });
        let extra: Decimal = match extra {
            Value::String(s) => s.parse().unwrap(),
            other => Decimal::from(other.as_u64().unwrap()),
        };
        more["usage"][meter] = json!((current + extra).normalize().to_string());
        let after = price_it(&book, &more);
        prop_assert!(after.total >= before.total, "{} more {} lowers the total from {} to {}", extra, meter, before.total, after.total);
        prop_assert!(after.subtotal >= before.subtotal);
    }

    /// (c) Every line's amount is its exact amount rounded half away from zero to the minor unit, and subtotal,
    /// total and amount due are the sums of their lines.
    #[test]
    fn every_line_adds_up_to_itself_and_the_sums_hold(
        (book, r) in book_and_request(true, true, true),
        balance in prop::option::of(0_u64..100_000),
        prorate in prop::option::of(0_i64..2_592_000),
    ) {
        let mut r = r;
        if let Some(b) = balance {
            r["credit_balance"] = json!(b);
        }
        if let Some(offset) = prorate {
            r["period"] = json!({"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"});
            let from = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap() + chrono::Duration::seconds(offset);
            let addons: Vec<Value> = r["addons"].as_array().unwrap().iter().map(|a| {
                let key = a.as_str().unwrap();
                if key.starts_with("flat") { json!({"key": key, "from": from.to_rfc3339()}) } else { a.clone() }
            }).collect();
            r["addons"] = json!(addons);
        }
        let bill = price_it(&book, &r);
        let e = book.currency().exponent();
        for line in &bill.lines {
            prop_assert_eq!(line.amount, round(&book, line.exact_amount), "{:?}", line);
            prop_assert_eq!(line.amount.scale(), e, "{:?}", line);
        }
        let sum = |stage| bill.lines.iter().filter(|l| l.kind.stage() == stage).map(|l| l.amount).sum::<Decimal>();
        prop_assert_eq!(sum(Stage::Charge), bill.subtotal);
        prop_assert_eq!(bill.subtotal + sum(Stage::Discount), bill.total);
        prop_assert_eq!(bill.total + sum(Stage::Credit), bill.amount_due);
        prop_assert!(bill.amount_due >= Decimal::ZERO);
        for amount in [bill.subtotal, bill.discount, bill.total, bill.credit_applied, bill.amount_due] {
            prop_assert_eq!(amount.scale(), e);
        }
    }

    /// (d) A platform add-on added at any instant of any calendar month from 2000 to 2100 is billed its price ×
    /// seconds remaining ÷ seconds in the month, rounded once half away from zero, as exact integer arithmetic says.
    #[test]
    fn proration_matches_exact_rational_arithmetic_in_every_month(
        book in book(false),
        month in 0_u32..(101 * 12),
        at in any::<prop::sample::Index>(),
        price in (0_i64..10_000_000_000, 0_u32..=6),
    ) {
        let mut book = book;
        let price = Decimal::new(price.0, price.1);
        book["platform_addons"] = json!([{"key": "boost", "name": "Boost", "monthly_price": price.to_string()}]);
        let book = PriceBook::from_json(&book.to_string()).unwrap();
        let start = chrono::NaiveDate::from_ymd_opt(2000 + i32::try_from(month / 12).unwrap(), month % 12 + 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
        let end = start.checked_add_months(chrono::Months::new(1)).unwrap();
        let of = (end - start).num_seconds();
        let from = start + chrono::Duration::seconds(offset(&at, of));
        check_proration(&book, price, start, end, from)?;
    }

    /// (d) The same for any period from one second to one year and any instant in it.
    #[test]
    fn proration_matches_exact_rational_arithmetic_in_any_period(
        start in 946_684_800_i64..4_102_444_800,
        length in prop_oneof![1_i64..100, 1_i64..=31_622_400],
        at in any::<prop::sample::Index>(),
        price in (0_i64..10_000_000_000, 0_u32..=6),
        currency in prop::sample::select(vec!["USD", "JPY", "KWD"]),
    ) {
        let price = Decimal::new(price.0, price.1);
        let book = PriceBook::from_json(&json!({"currency": currency, "products": [{"key": "a", "name": "A", "unit": "u", "meter": "m", "unit_amount": "1"}],
            "platform_addons": [{"key": "boost", "name": "Boost", "monthly_price": price.to_string()}]}).to_string()).unwrap();
        let start = chrono::DateTime::from_timestamp(start, 0).unwrap();
        let end = start + chrono::Duration::seconds(length);
        let from = start + chrono::Duration::seconds(offset(&at, length));
        check_proration(&book, price, start, end, from)?;
    }

    /// (e) A request that fails validation lists every independent problem it contains, each at its path.
    #[test]
    fn every_problem_is_listed(
        book in book(true),
        picks in prop::collection::vec((0_usize..PROBLEMS, any::<prop::sample::Index>()), 1..12),
    ) {
        let book = PriceBook::from_json(&book.to_string()).unwrap();
        let n = names(&book);
        let mut request = json!({"usage": {}});
        let mut expected = BTreeSet::new();
        let mut used = BTreeSet::new();
        for (kind, index) in picks {
            if let Some(path) = inject(&mut request, kind, index, &n, &mut used) {
                expected.insert(path);
            }
        }
        let found: BTreeSet<String> = match QuoteRequest::from_json_for(&book, &request.to_string()) {
            Err(Error::InvalidRequest(issues)) => issues.into_iter().map(|i| i.path).collect(),
            other => return Err(TestCaseError::fail(format!("{request}: expected invalid, got {other:?}"))),
        };
        prop_assert_eq!(found, expected, "{}", request);
    }

    /// (f) Arbitrary JSON in every field of a request, against a random book: an answer or an error, never a panic.
    #[test]
    fn no_request_panics(
        book in book(true),
        fields in prop::collection::vec((prop::sample::select(vec!["usage", "addons", "limits", "commitment", "credit_balance", "period", "other"]), any_json()), 0..6),
        usage in prop::collection::vec(("[a-z0-9_]{1,4}", any_json()), 0..4),
    ) {
        let book = PriceBook::from_json(&book.to_string()).unwrap();
        let mut request = Map::new();
        request.insert("usage".into(), Value::Object(usage.into_iter().collect()));
        for (field, value) in fields {
            request.insert(field.into(), value);
        }
        let text = Value::Object(request).to_string();
        if let Ok(r) = QuoteRequest::from_json_for(&book, &text) {
            let _ = compute(&book, &r);
        }
        let _ = QuoteRequest::from_json(&text);
    }

    /// (f) Arbitrary JSON in any field of a random book: a book or an error, never a panic.
    #[test]
    fn no_price_book_panics(book in book(true), path in prop::collection::vec(any::<prop::sample::Index>(), 1..6), value in any_json()) {
        let mut book = book;
        replace(&mut book, &path, value);
        if let Ok(book) = PriceBook::from_json(&book.to_string()) {
            let usage: Map<String, Value> = book.meters().iter().map(|m| (m.to_string(), json!("1000000000000"))).collect();
            let request = json!({"usage": usage, "limits": {"p0": "1"}});
            if let Ok(r) = QuoteRequest::from_json_for(&book, &request.to_string()) {
                let _ = compute(&book, &r);
            }
        }
    }
}

/// An offset in `[0, n)` chosen by `at`.
fn offset(at: &prop::sample::Index, n: i64) -> i64 {
    i64::try_from(at.index(usize::try_from(n).unwrap())).unwrap()
}

#[track_caller]
fn check_proration(
    book: &PriceBook,
    price: Decimal,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    from: chrono::DateTime<chrono::Utc>,
) -> Result<(), TestCaseError> {
    let request = json!({"usage": {}, "addons": [{"key": "boost", "from": from.to_rfc3339()}],
                         "period": {"start": start.to_rfc3339(), "end": end.to_rfc3339()}});
    let bill = price_it(book, &request);
    let billed: Decimal = bill.lines.iter().filter(|l| l.key == "boost").map(|l| l.amount).sum();
    // The oracle: price = m / 10^s; minor units = round(m · remaining · 10^e / (10^s · of)), in i128.
    let e = book.currency().exponent();
    let (remaining, of) = (i128::from((end - from).num_seconds()), i128::from((end - start).num_seconds()));
    let numerator = price.mantissa() * remaining * 10_i128.pow(e);
    let denominator = 10_i128.pow(price.scale()) * of;
    let (q, r) = (numerator / denominator, numerator % denominator);
    let minor = if 2 * r >= denominator { q + 1 } else { q };
    let expected = Decimal::from_i128_with_scale(minor, e);
    prop_assert_eq!(billed, expected, "{} × {} / {} from {}", price, remaining, of, from);
    Ok(())
}

/// How many kinds of independent problem [`inject`] knows.
const PROBLEMS: usize = 12;

/// Adds one problem of kind `kind` to `request` at a path not used yet, returning that path (or `None` when the
/// book offers nothing to break that way, or the path is taken).
fn inject(
    request: &mut Value,
    kind: usize,
    index: prop::sample::Index,
    n: &Names,
    used: &mut BTreeSet<String>,
) -> Option<String> {
    let meter = index.get(&n.meters).clone();
    let product = index.get(&n.products).clone();
    let addon = request.get("addons").and_then(Value::as_array).map_or(0, Vec::len);
    let path = match kind {
        0..=3 => format!("usage.{meter}"),
        4 => format!("usage.no_{meter}"),
        5 => format!("limits.{product}"),
        6 => format!("limits.no_{product}"),
        7 => "commitment.yearly_credit".into(),
        8 => "credit_balance".into(),
        9 => "colour".into(),
        10 => "period".into(),
        _ => format!("addons[{addon}]"),
    };
    if !used.insert(path.clone()) {
        return None;
    }
    let r = request;
    if kind == 5 || kind == 6 {
        r.as_object_mut().unwrap().entry("limits").or_insert(json!({}));
    }
    match kind {
        0 => r["usage"][&meter] = json!(-1),
        1 => r["usage"][&meter] = json!("+5"),
        2 => r["usage"][&meter] = json!(1.5),
        3 => r["usage"][&meter] = json!("0.0000001"),
        4 => r["usage"][format!("no_{meter}")] = json!(1),
        5 => r["limits"][&product] = json!("12.5"),
        6 => r["limits"][format!("no_{product}")] = json!("10"),
        7 => r["commitment"] = json!({"yearly_credit": "999"}),
        8 => r["credit_balance"] = json!("-3"),
        9 => r["colour"] = json!("red"),
        10 => r["period"] = json!({"start": "2026-12-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}),
        _ => {
            let mut addons = r.get("addons").cloned().unwrap_or(json!([]));
            addons.as_array_mut().unwrap().push(json!(format!("nope{addon}")));
            r["addons"] = addons;
        }
    }
    Some(path)
}

/// Any JSON value, a few levels deep, from plausible to absurd.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop::num::f64::NORMAL.prop_map(|f| json!(f)),
        "[0-9]{0,30}(\\.[0-9]{0,30})?".prop_map(Value::String),
        "\\PC{0,20}".prop_map(Value::String),
        Just(json!("79228162514264337593543950335")),
        Just(json!("2026-11-01T00:00:00Z")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the value at a random place of `doc` (chosen by `path`) with `new`.
fn replace(doc: &mut Value, path: &[prop::sample::Index], new: Value) {
    let Some((step, rest)) = path.split_first() else {
        *doc = new;
        return;
    };
    match doc {
        Value::Object(map) if !map.is_empty() => {
            let key = step.get(&map.keys().cloned().collect::<Vec<_>>()).clone();
            replace(map.get_mut(&key).unwrap(), rest, new);
        }
        Value::Array(items) if !items.is_empty() => {
            let i = step.index(items.len());
            replace(&mut items[i], rest, new);
        }
        other => *other = new,
    }
}
