//! The price preview (`POST /v1/price-books/preview`), in process, against oracles: for random price books (every
//! charge model, USD and JPY, flat fees, platform and optional add-ons, caps, commitments) and random customers, a
//! customer's draft total is what `POST /v1/quotes` answers for the invoice's stored request once the draft is in
//! force; the book in force as the draft moves nobody; the deltas sum to the revenue's delta, to the cent. And a
//! preview writes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{code, on_every_backend, rows, App, ADMIN};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn d(v: &Value) -> Decimal {
    v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}")).parse().unwrap()
}

// -------------------------------------------------------------------------------------------------------------
// Random price books: three products on meters m0, m1, m2; an optional add-on of p0 on its own meter; a platform
// add-on; commitment brackets; cap bounds.

fn unit_amount() -> impl Strategy<Value = Decimal> {
    (0_i64..100_000_000, 0_u32..=7).prop_map(|(m, s)| Decimal::new(m % 10_i64.pow(3 + s), s))
}

fn tiers(mode: &'static str) -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (1_i64..2_000_000, unit_amount(), prop_oneof![3 => Just(0_i64), 1 => 0_i64..5_000]),
        1..4,
    )
    .prop_map(move |rows| {
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
        json!({"tiers_mode": mode, "tiers": tiers})
    })
}

/// A price of every model: graduated, volume, package, per unit.
fn price() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => tiers("graduated").boxed(),
        2 => tiers("volume").boxed(),
        1 => (1_u64..10_000, unit_amount(), any::<bool>())
            .prop_map(|(size, amount, up)| json!({"package": {"size": size, "amount": amount.to_string(), "round": if up { "up" } else { "down" }}}))
            .boxed(),
        1 => unit_amount().prop_map(|u| json!({"unit_amount": u.to_string()})).boxed(),
    ]
    .boxed()
}

fn book(currency: &'static str, version: &'static str) -> impl Strategy<Value = Value> {
    (prop::collection::vec(price(), 4), 0_i64..50_000, 100_i64..20_000).prop_map(move |(prices, flat, max_cap)| {
        let mut products: Vec<Value> = (0..3)
            .map(|i| {
                let mut p = json!({"key": format!("p{i}"), "name": format!("Product {i}"), "unit": "unit", "meter": format!("m{i}")});
                p.as_object_mut().unwrap().extend(prices[i].as_object().unwrap().clone());
                p
            })
            .collect();
        let mut addon = json!({"key": "p0_extra", "name": "Extra", "unit": "unit", "meter": "m0_extra", "optional": true});
        addon.as_object_mut().unwrap().extend(prices[3].as_object().unwrap().clone());
        products[0]["addons"] = json!([addon]);
        json!({"currency": currency, "version": version, "products": products,
               "platform_addons": [{"key": "flat0", "name": "Flat", "monthly_price": Decimal::new(flat, 2).to_string()}],
               "commitment": {"minimum_credit": "1000", "brackets": [
                   {"credit_from": "1000", "discount": "0.1"}, {"credit_from": "5000", "discount": "0.25"}]},
               "spend_limits": {"min": "0", "max": max_cap.to_string(), "alert_thresholds": ["0.8", "1.0"]}})
    })
}

/// A customer: usage per meter (absent or a quantity), a cap on a product, a commitment, add-ons.
#[derive(Debug, Clone)]
struct Customer {
    usage: [Option<u64>; 4],
    cap: Option<(usize, u64)>,
    commitment: Option<u64>,
    flat: bool,
    extra: bool,
}

fn customer() -> impl Strategy<Value = Customer> {
    let quantity = prop_oneof![1 => Just(None), 1 => Just(Some(0)), 4 => (0_u64..6_000_000).prop_map(Some)];
    (
        [quantity.clone(), quantity.clone(), quantity.clone(), quantity],
        prop::option::weighted(0.4, (0_usize..3, 0_u64..5_000)),
        prop::option::weighted(0.25, prop_oneof![Just(1_000_u64), Just(6_000_u64)]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(usage, cap, commitment, flat, extra)| Customer {
            usage,
            cap,
            commitment,
            flat,
            extra,
        })
}

/// Customers anchored on 2026-11-01 with November usage under `current` (in force from October), invoiced.
async fn invoiced(app: &App, current: &Value, customers: &[Customer]) {
    let (status, body) = app
        .post(
            "/v1/price-books",
            Some(ADMIN),
            json!({"price_book": current, "in_force_at": "2026-10-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (i, c) in customers.iter().enumerate() {
        let id = format!("c{i:03}");
        let mut addons = Vec::new();
        if c.flat {
            addons.push("flat0");
        }
        if c.extra {
            addons.push("p0_extra");
        }
        let (status, body) = app
            .post(
                "/v1/customers",
                Some(ADMIN),
                json!({"id": id, "name": id, "billing_anchor": "2026-11-01T00:00:00Z", "addons": addons}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        if let Some((product, cap)) = c.cap {
            let limits = json!({ format!("p{product}"): cap.to_string() });
            let (status, body) =
                app.call(Method::PUT, &format!("/v1/customers/{id}/limits"), Some(ADMIN), Some(limits)).await;
            assert!(status == StatusCode::OK || status == StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
        if let Some(credit) = c.commitment {
            let body = json!({"yearly_credit": credit.to_string(), "start": "2026-11-01T00:00:00Z"});
            let (status, body) =
                app.post(&format!("/v1/customers/{id}/commitments"), Some(ADMIN), body).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let meters = ["m0", "m1", "m2", "m0_extra"];
        let events: Vec<Value> = c
            .usage
            .iter()
            .zip(meters)
            .filter_map(|(q, meter)| {
                q.map(|q| json!({"id": format!("{id}-{meter}"), "customer_id": id, "meter": meter, "quantity": q, "timestamp": "2026-11-05T10:00:00Z"}))
            })
            .collect();
        if !events.is_empty() {
            let (status, body) = app.post("/v1/usage", Some(ADMIN), json!({"events": events})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    app.set_now("2026-12-02T09:00:00Z");
    let done = app.run_invoices("2026-12-01T00:00:00Z", false).await;
    assert_eq!(done["counts"]["failed"], 0, "{done}");
}

async fn preview(app: &App, draft: &Value, period: &str) -> Value {
    let (status, body) = app
        .post(
            "/v1/price-books/preview",
            Some(ADMIN),
            json!({"price_book": draft, "period": period, "top": 1000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The sums of a report hold to the cent: revenue over the priceable customers, its delta the sum of theirs, and
/// the products' deltas sum to it too.
fn sums_hold(report: &Value) {
    let s = &report["summary"];
    let customers = report["customers"].as_array().unwrap();
    let priced: Vec<&Value> = customers.iter().filter(|c| c["problem"].is_null()).collect();
    let current: Decimal = priced.iter().map(|c| d(&c["current_total"])).sum();
    let draft: Decimal = priced.iter().map(|c| d(&c["draft_total"])).sum();
    let deltas: Decimal = priced.iter().map(|c| d(&c["delta"])).sum();
    assert_eq!(d(&s["current_revenue"]), current);
    assert_eq!(d(&s["draft_revenue"]), draft);
    assert_eq!(d(&s["delta"]), deltas);
    assert_eq!(d(&s["delta"]), draft - current);
    let by_product: Decimal = s["by_product"].as_array().unwrap().iter().map(|p| d(&p["delta"])).sum();
    assert_eq!(by_product, deltas, "the products' deltas sum to the revenue's");
    for c in &priced {
        assert_eq!(d(&c["draft_total"]) - d(&c["current_total"]), d(&c["delta"]));
    }
    let counted = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(counted("more") + counted("less") + counted("same"), priced.len() as u64);
    assert_eq!(counted("unpriceable"), (customers.len() - priced.len()) as u64);
    assert_eq!(counted("customers"), customers.len() as u64);
}

/// The oracle: every customer's draft total is `POST /v1/quotes` of its invoice's stored request with the draft in
/// force; an unpriceable one is refused by the quote too.
async fn quotes_agree(app: &App, draft: &Value, report: &Value) {
    let mut published = draft.clone();
    published["version"] = json!("published-draft");
    let (status, body) = app
        .post(
            "/v1/price-books",
            Some(ADMIN),
            json!({"price_book": published, "in_force_at": "2026-12-02T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.set_now("2026-12-02T10:00:00Z");
    for c in report["customers"].as_array().unwrap() {
        let (status, invoice) =
            app.get(&format!("/v1/invoices/{}", c["invoice_id"].as_str().unwrap()), Some(ADMIN)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(d(&c["current_total"]), d(&invoice["total"]), "current total as invoiced");
        let (status, quote) = app.post("/v1/quotes", None, invoice["request"].clone()).await;
        if c["problem"].is_null() {
            assert_eq!(status, StatusCode::OK, "{quote}");
            assert_eq!(
                c["draft_total"], quote["total"],
                "{}: the quote of {}",
                c["customer_id"], invoice["request"]
            );
        } else {
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{c} was quoted: {quote}");
            let first = quote["error"]["details"][0]["path"].as_str().unwrap_or("");
            let message = quote["error"]["details"][0]["message"].as_str().unwrap_or("");
            let expected = match first {
                p if p.starts_with("usage.") => "meter_removed",
                p if p.starts_with("limits.") && message.starts_with("no product") => "product_removed",
                p if p.starts_with("addons") => "addon_removed",
                p if p.starts_with("limits.") => "cap_out_of_bounds",
                p if p.starts_with("commitment") => "commitment_unavailable",
                _ => "unpriceable",
            };
            assert_eq!(c["problem"]["code"], expected, "{c} vs {quote}");
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn draft_totals_are_the_quotes_of_the_stored_requests(
        (current, draft) in prop_oneof![Just("USD"), Just("JPY")].prop_flat_map(|c| (book(c, "current"), book(c, "draft"))),
        customers in prop::collection::vec(customer(), 1..8),
        without_p2 in prop::bool::weighted(0.25),
    ) {
        let mut draft = draft;
        if without_p2 {
            // A meter removed: its customers cannot be priced (and the quote refuses them too).
            draft["products"].as_array_mut().unwrap().truncate(2);
        }
        runtime().block_on(async {
            let app = App::new().await;
            invoiced(&app, &current, &customers).await;

            // The book in force as the draft: nobody moves, to the cent.
            let same = preview(&app, &current, "2026-11").await;
            sums_hold(&same);
            for c in same["customers"].as_array().unwrap() {
                assert_eq!(c["problem"], Value::Null, "{c}");
                assert_eq!(d(&c["delta"]), Decimal::ZERO, "{c}");
                assert_eq!(c["products"], json!([]), "{c}");
            }
            assert_eq!(same["summary"]["same"].as_u64(), Some(customers.len() as u64));
            assert_eq!(d(&same["summary"]["delta"]), Decimal::ZERO);
            assert_eq!(same["summary"]["caps_changed_outcome"], 0);

            let report = preview(&app, &draft, "2026-11").await;
            sums_hold(&report);
            // Without a month: the latest month with invoices, the same report.
            let (status, default) = app.post("/v1/price-books/preview", Some(ADMIN), json!({"price_book": draft, "top": 1000})).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(default, report);
            quotes_agree(&app, &draft, &report).await;
        });
    }
}

// -------------------------------------------------------------------------------------------------------------
// Examples.

/// The default book with one change.
fn default_book(change: impl FnOnce(&mut Value)) -> Value {
    let mut book: Value = serde_json::to_value(billing_core::PriceBook::default_book().unwrap()).unwrap();
    book["version"] = json!("draft");
    change(&mut book);
    book
}

async fn usage(app: &App, customer: &str, meter: &str, quantity: u64) {
    let (status, body) = app
        .post(
            "/v1/usage",
            Some(ADMIN),
            json!({"events": [{"id": format!("{customer}-{meter}"), "customer_id": customer, "meter": meter, "quantity": quantity, "timestamp": "2026-11-05T10:00:00Z"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_preview_lists_who_pays_more_who_cannot_be_priced_and_writes_nothing() {
    on_every_backend(|app, url| async move {
        for id in ["acme", "globex", "initech", "umbrella"] {
            app.customer(id).await;
        }
        let (status, _) = app
            .call(Method::PUT, "/v1/customers/umbrella/limits", Some(ADMIN), Some(json!({"product_analytics": "1100"})))
            .await;
        assert_eq!(status, StatusCode::OK);
        usage(&app, "acme", "events", 1_500_000).await;
        usage(&app, "globex", "events", 12_000_000).await;
        usage(&app, "globex", "recordings", 20_000).await;
        usage(&app, "initech", "events", 900_000).await;
        usage(&app, "umbrella", "events", 40_000_000).await;
        app.set_now("2026-12-02T09:00:00Z");
        app.run_invoices("2026-12-01T00:00:00Z", false).await;
        let before = rows(&url).await;

        // Product analytics' second tier (1–2 million events) 10 % dearer: acme pays 5 % of 50.00 more, globex
        // 5.00 more; initech is in the free tier; umbrella's cap binds before and after.
        let raise = default_book(|b| b["products"][0]["tiers"][1]["unit_amount"] = json!("0.000055"));
        let report = preview(&app, &raise, "2026-11").await;
        sums_hold(&report);
        let by_id = |id: &str| report["customers"].as_array().unwrap().iter().find(|c| c["customer_id"] == id).unwrap().clone();
        assert_eq!((by_id("acme")["current_total"].clone(), by_id("acme")["draft_total"].clone()), (json!("25.00"), json!("27.50")));
        assert_eq!(by_id("acme")["delta_percent"], "10.00");
        assert_eq!(by_id("globex")["delta"], "5.00");
        assert_eq!(by_id("globex")["products"], json!([{"product": "product_analytics", "current": "393.00", "draft": "398.00", "delta": "5.00", "cap_binds": null}]));
        assert_eq!(by_id("initech")["delta"], "0.00");
        assert_eq!((by_id("umbrella")["current_total"].clone(), by_id("umbrella")["delta"].clone()), (json!("1100.00"), json!("0.00")));
        assert_eq!(report["summary"]["more"], 2);
        assert_eq!(report["summary"]["same"], 2);
        assert_eq!(report["top_increases"].as_array().unwrap().iter().map(|c| c["customer_id"].clone()).collect::<Vec<_>>(), [json!("globex"), json!("acme")]);
        assert_eq!(report["top_decreases"], json!([]));
        assert_eq!(report["price_book_version"], json!({"current": "2026-07", "draft": "draft"}));
        assert_eq!(report["period"], json!({"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}));

        // A draft without session replay: globex, who recorded, cannot be priced, and says why; a cheaper third
        // tier lets umbrella's cap stop binding: a cap changed the outcome.
        let removed = default_book(|b| {
            b["products"].as_array_mut().unwrap().retain(|p| p["key"] != "session_replay");
            b["products"][0]["tiers"][2]["unit_amount"] = json!("0.00001");
        });
        let report = preview(&app, &removed, "2026-11").await;
        sums_hold(&report);
        let globex = report["customers"].as_array().unwrap().iter().find(|c| c["customer_id"] == "globex").unwrap();
        assert_eq!(globex["problem"]["code"], "meter_removed");
        assert!(globex["problem"]["message"].as_str().unwrap().contains("recordings"), "{globex}");
        assert_eq!(globex["draft_total"], Value::Null);
        assert_eq!(report["summary"]["unpriceable"], 1);
        assert_eq!(report["summary"]["unpriceable_revenue"], globex["current_total"]);
        assert_eq!(report["summary"]["caps_changed_outcome"], 1);
        let umbrella = report["customers"].as_array().unwrap().iter().find(|c| c["customer_id"] == "umbrella").unwrap();
        assert_eq!(umbrella["products"][0]["cap_binds"], json!({"current": true, "draft": false}));
        assert_eq!(report["top_decreases"][0]["customer_id"], "umbrella");

        // The open periods (December): usage so far projected to the month's end, priced with the book in force
        // (what the usage view projects) and with the draft. Acme sent 300,000 events in its first 5 days and 9
        // hours: 1.2 million projected, 10 % dearer past the first million.
        let events = json!({"events": [{"id": "acme-dec", "customer_id": "acme", "meter": "events", "quantity": 300_000, "timestamp": "2026-12-01T10:00:00Z"}]});
        assert_eq!(rows(&url).await, before, "the previews wrote nothing");
        assert_eq!(app.post("/v1/usage", Some(ADMIN), events).await.0, StatusCode::OK);
        let before = rows(&url).await;
        app.set_now("2026-12-06T09:00:00Z");
        let open = preview(&app, &raise, "open").await;
        sums_hold(&open);
        assert_eq!(open["summary"]["customers"], 4);
        assert_eq!(open["period"], json!({"start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}));
        let (status, view) = app.get("/v1/customers/acme/usage", Some(ADMIN)).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        let acme = open["customers"].as_array().unwrap().iter().find(|c| c["customer_id"] == "acme").unwrap();
        assert_eq!(acme["current_total"], view["projected"]["bill"]["total"], "the usage view's projection");
        assert_eq!(acme["invoice_id"], Value::Null);
        assert!(d(&acme["delta"]) > Decimal::ZERO, "{acme}");
        assert_eq!(open["summary"]["more"], 1);

        // An Idempotency-Key changes nothing: a preview keeps nothing.
        let (status, _) = app
            .raw(Method::POST, "/v1/price-books/preview", Some(ADMIN), Some(json!({"price_book": raise}).to_string()), &[("idempotency-key", "k1")])
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(rows(&url).await, before, "a preview writes nothing");
    })
    .await;
}

#[tokio::test]
async fn a_bad_draft_or_request_is_refused_with_every_problem() {
    on_every_backend(|app, url| async move {
        let before = rows(&url).await;
        // No invoice yet: nothing to reprice without a month.
        let (status, body) = app
            .post("/v1/price-books/preview", Some(ADMIN), json!({"price_book": default_book(|_| {})}))
            .await;
        assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "invalid_state"), "{body}");
        let bad = default_book(|b| {
            b["currency"] = json!("XYZ");
            b["products"][0]["tiers"][0]["unit_amount"] = json!("-1");
            b["products"][1]["key"] = json!("");
        });
        let (status, body) =
            app.post("/v1/price-books/preview", Some(ADMIN), json!({"price_book": bad})).await;
        assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");
        let paths: Vec<&str> = body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "price_book.currency",
                "price_book.products[0].tiers[0].unit_amount",
                "price_book.products[1].key"
            ]
        );
        for (body, path) in [
            (json!({"price_book": default_book(|_| {}), "period": "2026-13"}), "period"),
            (json!({"price_book": default_book(|_| {}), "period": "november"}), "period"),
            (json!({"price_book": default_book(|_| {}), "period": 202611}), "period"),
            (json!({"price_book": default_book(|_| {}), "top": 1001}), "top"),
            (json!({"price_book": default_book(|_| {}), "top": -1}), "top"),
            (json!({"price_book": default_book(|_| {}), "extra": 1}), "extra"),
            (json!({"period": "open"}), "price_book"),
            (json!([1]), ""),
        ] {
            let (status, answer) = app.post("/v1/price-books/preview", Some(ADMIN), body.clone()).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {answer}");
            assert_eq!(answer["error"]["details"][0]["path"], path, "{body} → {answer}");
        }
        let key = app.customer("acme").await;
        let after_customer = rows(&url).await;
        let (status, _) = app
            .post("/v1/price-books/preview", Some(&key), json!({"price_book": default_book(|_| {})}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a customer key may not preview prices");
        let (status, _) =
            app.post("/v1/price-books/preview", None, json!({"price_book": default_book(|_| {})})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(rows(&url).await, after_customer);
        assert_ne!(before, after_customer);
    })
    .await;
}
