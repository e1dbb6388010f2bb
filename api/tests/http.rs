//! Every route of `tally serve`, every auth rule and every error path, in process (`oneshot`) on a fresh SQLite file.

#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

mod common;

use axum::http::{Method, StatusCode};
use billing_core::{compute, PriceBook, QuoteRequest};
use common::{code, App, ADMIN};
use serde_json::{json, Value};

fn event(id: &str, customer: &str, meter: &str, quantity: Value, timestamp: &str) -> Value {
    json!({"id": id, "customer_id": customer, "meter": meter, "quantity": quantity, "timestamp": timestamp})
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let app = App::new().await;
    assert_eq!(app.get("/healthz", None).await, (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = app.get("/v1/nope", None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = app.call(Method::DELETE, "/v1/quotes", None, None).await;
    assert_eq!((status, code(&body)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
}

#[tokio::test]
async fn health_is_503_when_the_database_does_not_answer() {
    let app = App::new().await;
    app.state.service.close().await;
    assert_eq!(
        app.get("/healthz", None).await,
        (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "unavailable"}))
    );
}

#[tokio::test]
async fn quotes_are_the_cli_s_bills() {
    let app = App::new().await;
    let request = json!({"usage": {"events": 12000000, "recordings": 40000, "inbox_prs": 40}, "addons": ["boost"],
                         "limits": {"inbox": "300"}, "commitment": {"yearly_credit": "25000"}});
    let (status, body) = app.post("/v1/quotes", None, request.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let book = PriceBook::default_book().unwrap();
    let bill = compute(&book, &QuoteRequest::from_json(&request.to_string()).unwrap()).unwrap();
    assert_eq!(body, serde_json::to_value(&bill).unwrap(), "the same JSON as `tally quote`");
}

#[tokio::test]
async fn commitment_advice_is_billing_core_s_and_refuses_bad_estimates() {
    let app = App::new().await;
    let (status, body) = app.post("/v1/commitment-advice", None, json!({"monthly_estimate": "2000"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let book = PriceBook::default_book().unwrap();
    let advice =
        billing_core::commitment_advice(book.commitment().unwrap(), book.currency(), 2000.into()).unwrap();
    assert_eq!(body, serde_json::to_value(&advice).unwrap());
    assert_eq!(body["best"]["yearly_credit"], "25000");
    assert_eq!(body["best"]["twelve_month_cost"], "20000.00");
    assert_eq!(body["no_commitment"]["twelve_month_cost"], "24000");
    // An integer is a decimal too; zero advises no commitment.
    let (status, body) = app.post("/v1/commitment-advice", None, json!({"monthly_estimate": 0})).await;
    assert_eq!((status, &body["best"]["yearly_credit"]), (StatusCode::OK, &Value::Null), "{body}");
    for bad in [
        json!({"monthly_estimate": "-1"}),
        json!({"monthly_estimate": "0.001"}),
        json!({"monthly_estimate": 12.5}),
        json!({"monthly_estimate": -3}),
        json!({"monthly_estimate": "1e3"}),
        json!({}),
        json!({"monthly_estimate": "1", "x": 1}),
        json!({"monthly_estimate": "99999999999999999999999999999"}),
    ] {
        let (status, body) = app.post("/v1/commitment-advice", None, bad.clone()).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{bad}: {body}"
        );
    }
    let (status, body) = app.raw(Method::POST, "/v1/commitment-advice", None, Some("{".into()), &[]).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "malformed_json"));
}

#[tokio::test]
async fn bad_quotes_get_the_right_status_and_every_problem() {
    let app = App::new().await;
    let (status, body) = app
        .post(
            "/v1/quotes",
            None,
            json!({"usage": {"events": -1, "nope": 5}, "commitment": {"yearly_credit": "-5"}}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    let paths: Vec<&str> =
        body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    let (status, body) = app.raw(Method::POST, "/v1/quotes", None, Some("{\"usage\": ".into()), &[]).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "malformed_json"));
    let (status, body) =
        app.raw(Method::POST, "/v1/quotes", None, Some("{}".into()), &[("content-type", "text/plain")]).await;
    assert_eq!((status, code(&body)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
    let big = format!("{{\"usage\": {{}}}}{}", " ".repeat(1_048_576));
    let (status, body) = app.raw(Method::POST, "/v1/quotes", None, Some(big), &[]).await;
    assert_eq!((status, code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    let huge = format!("{{\"usage\": {{}}}}{}", " ".repeat(6 * 1024 * 1024));
    let (status, body) = app.raw(Method::POST, "/v1/quotes", None, Some(huge.clone()), &[]).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        "over the 5 MB body limit"
    );
    // With an Idempotency-Key the body is read by the idempotency layer first: still within the limit.
    let (status, body) =
        app.raw(Method::POST, "/v1/usage", Some(ADMIN), Some(huge), &[("idempotency-key", "big")]).await;
    assert_eq!((status, code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
}

/// Every JSON body is an object. serde's derived structs would also read an array as their fields in order
/// (`["zed", "Zed"]` created a customer), and a top-level null, string or number is no request either: each route
/// refuses them all with a 422 at the body's root, and stores nothing.
#[tokio::test]
async fn bodies_that_are_not_objects_are_refused_and_store_nothing() {
    let app = App::new().await;
    app.customer("acme").await;
    let routes = [
        (Method::POST, "/v1/customers", json!(["zed", "Zed"])),
        (Method::PATCH, "/v1/customers/acme", json!(["Renamed"])),
        (Method::POST, "/v1/customers/acme/commitments", json!(["25000"])),
        (Method::POST, "/v1/commitment-advice", json!(["2000"])),
        (Method::POST, "/v1/invoice-runs", json!(["2026-11-20T00:00:00Z", true])),
        (Method::POST, "/v1/quotes", json!([{"events": 1}])),
        (Method::POST, "/v1/usage", json!([])),
        (Method::PUT, "/v1/customers/acme/limits", json!([["inbox", "100"]])),
        (Method::POST, "/v1/price-books", json!([])),
    ];
    for (method, path, array) in routes {
        for body in [array, json!(null), json!("{}"), json!(1), json!(true)] {
            let (status, answer) = app.call(method.clone(), path, Some(ADMIN), Some(body.clone())).await;
            assert_eq!(
                (status, code(&answer), answer["error"]["details"][0]["path"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", Some("")),
                "{method} {path} {body}: {answer}"
            );
        }
    }
    assert_eq!(app.get("/v1/customers/zed", Some(ADMIN)).await.0, StatusCode::NOT_FOUND);
    let (_, acme) = app.get("/v1/customers/acme", Some(ADMIN)).await;
    assert_eq!(acme["name"], "acme", "not renamed");
    let (_, credits) = app.get("/v1/customers/acme/credits", Some(ADMIN)).await;
    assert_eq!(credits["commitments"], json!([]), "{credits}");
    let (_, invoices) = app.get("/v1/invoices", Some(ADMIN)).await;
    assert_eq!(invoices["data"], json!([]), "no run invoiced anything");
    let (_, limits) = app.get("/v1/customers/acme/limits", Some(ADMIN)).await;
    assert!(!limits.to_string().contains("inbox"), "{limits}");
    let (_, books) = app.get("/v1/price-books", Some(ADMIN)).await;
    assert_eq!(books["data"].as_array().map(Vec::len), Some(1), "{books}");
}

#[tokio::test]
async fn price_books_are_versioned_and_only_the_admin_publishes() {
    let app = App::new().await;
    let (status, current) = app.get("/v1/price-book", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(current["version"], "2026-07");
    let (_, list) = app.get("/v1/price-books", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["data"][0]["in_force_at"], "2026-07-01T00:00:00Z",
        "the first version is in force from its effective_from"
    );

    let mut next = current.clone();
    next["version"] = json!("2027-01");
    next["products"][0]["tiers"][1]["unit_amount"] = json!("0.00004");
    let publish = json!({"price_book": next, "in_force_at": "2026-12-01T00:00:00Z"});
    let key = app.customer("acme").await;
    assert_eq!(app.post("/v1/price-books", None, publish.clone()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.post("/v1/price-books", Some(&key), publish.clone()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.post("/v1/price-books", Some("wrong"), publish.clone()).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = app.post("/v1/price-books", Some(ADMIN), publish.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.post("/v1/price-books", Some(ADMIN), publish).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "conflict"));

    // Still November: the old version prices; from December the new one.
    assert_eq!(app.get("/v1/price-book", None).await.1["version"], "2026-07");
    app.set_now("2026-12-02T00:00:00Z");
    assert_eq!(app.get("/v1/price-book", None).await.1["version"], "2027-01");
    let (_, bill) = app.post("/v1/quotes", None, json!({"usage": {"events": 2000000}})).await;
    assert_eq!(bill["total"], "40.00");

    let mut broken = current;
    broken["version"] = json!("broken");
    broken["products"][0]["tiers"][1]["up_to"] = json!(5);
    broken["currency"] = json!("XXX");
    let (status, body) = app.post("/v1/price-books", Some(ADMIN), json!({"price_book": broken})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> =
        body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert!(
        paths.contains(&"price_book.currency") && paths.contains(&"price_book.products[0].tiers[1].up_to"),
        "{paths:?}"
    );
}

#[tokio::test]
async fn customers_are_created_once_and_keys_read_only_their_own() {
    let app = App::new().await;
    let new = json!({"id": "acme", "name": "Acme Inc", "billing_anchor": "2026-11-05T00:00:00Z", "addons": ["boost"]});
    let (status, body) = app.post("/v1/customers", Some(ADMIN), new.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["api_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tk_") && key.len() > 40);
    assert_eq!(body["customer"]["addons"], json!(["boost"]));
    let (status, replay) = app.post("/v1/customers", Some(ADMIN), new.clone()).await;
    assert_eq!(
        (status, &replay["api_key"]),
        (StatusCode::OK, &Value::Null),
        "a replayed creation does not show the key again"
    );
    let mut other = new.clone();
    other["name"] = json!("Someone else");
    assert_eq!(code(&app.post("/v1/customers", Some(ADMIN), other).await.1), "conflict");

    let (status, body) = app
        .post(
            "/v1/customers",
            Some(ADMIN),
            json!({"id": "no spaces!", "name": "", "billing_anchor": "soon", "addons": ["nope"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"].as_array().unwrap().len(), 3, "{body}");
    let (status, body) =
        app.post("/v1/customers", Some(ADMIN), json!({"id": "x", "name": "X", "addons": ["nope"]})).await;
    assert_eq!(
        (status, body["error"]["details"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("addons[0]"))
    );
    assert_eq!(
        app.post("/v1/customers", Some(ADMIN), json!({"id": "x", "name": "X", "colour": 1})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.post("/v1/customers", Some(&key), json!({"id": "y", "name": "Y"})).await.0,
        StatusCode::FORBIDDEN
    );

    let beta = app.customer("beta").await;
    assert_eq!(app.get("/v1/customers/acme", Some(&key)).await.0, StatusCode::OK);
    assert_eq!(app.get("/v1/customers/acme", Some(&beta)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/v1/customers/acme", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/v1/customers/ghost", Some(ADMIN)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/customers", Some(&key)).await.0, StatusCode::FORBIDDEN);

    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/customers/acme",
            Some(ADMIN),
            Some(json!({"name": "Acme", "addons": ["group_analytics"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["addons"], json!(["group_analytics"]));
    assert_eq!(
        app.call(Method::PATCH, "/v1/customers/acme", Some(&key), Some(json!({"name": "Mine"}))).await.0,
        StatusCode::FORBIDDEN
    );

    // A new key revokes the old one.
    let (status, body) = app.post("/v1/customers/acme/api-keys", Some(ADMIN), json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let fresh = body["api_key"].as_str().unwrap();
    assert_eq!(app.get("/v1/customers/acme", Some(&key)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/v1/customers/acme", Some(fresh)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn lists_page_with_a_cursor() {
    let app = App::new().await;
    for i in 0..5 {
        app.customer(&format!("c{i}")).await;
    }
    let (_, first) = app.get("/v1/customers?limit=2", Some(ADMIN)).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = app.get(&format!("/v1/customers?limit=2&cursor={cursor}"), Some(ADMIN)).await;
    assert_eq!(second["data"][0]["id"], "c2");
    let (_, last) = app.get("/v1/customers?limit=2&cursor=c3", Some(ADMIN)).await;
    assert_eq!((last["data"].as_array().unwrap().len(), &last["next_cursor"]), (1, &Value::Null));
    for bad in ["0", "501", "x"] {
        assert_eq!(
            app.get(&format!("/v1/customers?limit={bad}"), Some(ADMIN)).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}

#[tokio::test]
async fn usage_is_deduplicated_and_every_bad_event_is_listed() {
    let app = App::new().await;
    let key = app.customer("acme").await;
    let t = "2026-11-10T10:00:00Z";
    let batch = json!({"events": [
        event("e1", "acme", "events", json!(1000), t),
        event("e1", "acme", "events", json!(1000), t),
        event("e2", "acme", "events", json!("2.5"), t),
        event("e3", "ghost", "events", json!(1), t),
        event("e4", "acme", "bananas", json!(1), t),
        event("e5", "acme", "events", json!(-1), t),
        event("e6", "acme", "events", json!("+1"), t),
        event("e7", "acme", "events", json!(1), "2026-11-20T12:06:00Z"),
        event("e8", "acme", "events", json!(1), "2026-10-31T23:59:59Z"),
        event("e9", "acme", "events", json!(1), "yesterday"),
        json!("not an event"),
    ]});
    let (status, body) = app.post("/v1/usage", Some(ADMIN), batch.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["accepted"].as_u64(), body["duplicates"].as_u64()), (Some(2), Some(1)));
    let codes: Vec<(u64, &str)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            (3, "unknown_customer"),
            (4, "unknown_meter"),
            (5, "invalid_quantity"),
            (6, "invalid_quantity"),
            (7, "in_the_future"),
            (8, "before_first_period"),
            (9, "invalid_timestamp"),
            (10, "invalid_entry")
        ]
    );
    // The same batch again: nothing new.
    let (_, again) = app
        .post("/v1/usage", Some(&key), json!({"events": [event("e1", "acme", "events", json!(1000), t)]}))
        .await;
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(1)));
    let (_, view) = app.get("/v1/customers/acme/usage", Some(&key)).await;
    assert_eq!(view["usage"]["events"], "1002.5");

    // Not a batch; too large a batch; another customer's event with a customer key (nothing stored).
    assert_eq!(
        app.post("/v1/usage", Some(ADMIN), json!({"events": 5})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(app.post("/v1/usage", Some(ADMIN), json!([1])).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let many: Vec<Value> =
        (0..10_001).map(|i| event(&format!("m{i}"), "acme", "events", json!(1), t)).collect();
    assert_eq!(
        app.post("/v1/usage", Some(ADMIN), json!({"events": many})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    app.customer("beta").await;
    let mixed = json!({"events": [event("x1", "acme", "events", json!(1), t), event("x2", "beta", "events", json!(1), t)]});
    let (status, body) = app.post("/v1/usage", Some(&key), mixed).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(
        app.get("/v1/customers/acme/usage", Some(&key)).await.1["usage"]["events"],
        "1002.5",
        "nothing of a refused batch is stored"
    );
    assert_eq!(app.post("/v1/usage", None, json!({"events": []})).await.0, StatusCode::UNAUTHORIZED);
    // An entry naming no customer is rejected alone, not the batch.
    let (status, body) = app
        .post(
            "/v1/usage",
            Some(&key),
            json!({"events": [{"id": "n1", "meter": "events", "quantity": 1, "timestamp": t}]}),
        )
        .await;
    assert_eq!(
        (status, body["rejected"][0]["code"].as_str()),
        (StatusCode::OK, Some("invalid_entry")),
        "{body}"
    );
}

#[tokio::test]
async fn absolute_reports_keep_the_highest_value_and_add_to_events() {
    let app = App::new().await;
    let key = app.customer("acme").await;
    let report = |v: Value| json!({"reports": [{"customer_id": "acme", "meter": "rows_synced", "value": v, "as_of": "2026-11-10T00:00:00Z"}]});
    for v in [json!(500), json!(900), json!(700)] {
        assert_eq!(app.post("/v1/usage", Some(&key), report(v)).await.0, StatusCode::OK);
    }
    app.post(
        "/v1/usage",
        Some(&key),
        json!({"events": [event("r1", "acme", "rows_synced", json!(100), "2026-11-11T00:00:00Z")]}),
    )
    .await;
    let (_, view) = app.get("/v1/customers/acme/usage", Some(&key)).await;
    assert_eq!(view["usage"]["rows_synced"], "1000");
}

#[tokio::test]
async fn the_usage_view_bills_what_a_quote_bills_and_a_cap_drops_usage() {
    let app = App::new().await;
    let key = app.customer("acme").await;
    let (status, limits) = app
        .call(
            Method::PUT,
            "/v1/customers/acme/limits",
            Some(&key),
            Some(json!({"inbox": "100", "session_replay": 200})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{limits}");
    assert_eq!(limits, json!({"inbox": "100", "session_replay": "200"}));
    let events: Vec<Value> = (0..30)
        .map(|i| {
            event(
                &format!("pr{i}"),
                "acme",
                "inbox_prs",
                json!(1),
                &format!("2026-11-{:02}T08:00:00Z", 2 + i % 15),
            )
        })
        .collect();
    app.post("/v1/usage", Some(&key), json!({"events": events})).await;
    app.post(
        "/v1/usage",
        Some(&key),
        json!({"events": [event("ev", "acme", "events", json!(3000000), "2026-11-03T00:00:00Z")]}),
    )
    .await;

    let (status, view) = app.get("/v1/customers/acme/usage?at=2026-11-15T00:00:00Z", Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["period"], json!({"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}));
    let quote = json!({"usage": view["usage"], "limits": {"inbox": "100", "session_replay": "200"},
                       "period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}});
    let (_, bill) = app.post("/v1/quotes", None, quote).await;
    assert_eq!(view["bill"], bill, "the usage view's bill is the quote of the same usage and caps");
    let inbox = view["caps"].as_array().unwrap().iter().find(|c| c["product"] == "inbox").unwrap();
    assert_eq!(inbox["list_amount"], "100.00", "the cap caps the bill so far");
    assert_eq!(
        inbox["meters"][0]["dropped"], "21",
        "30 PRs: 3 free, 6 × $15 = $90 billable, the rest dropped"
    );
    assert_eq!(inbox["reached"], true);
    // Two PRs a day from the 2nd: the 10th (the first past the cap's $100: 3 free + 7 × $15 = $105) came on the 6th.
    assert_eq!(inbox["cap_reached_at"], "2026-11-06T08:00:00Z", "{inbox}");
    let replay = view["caps"].as_array().unwrap().iter().find(|c| c["product"] == "session_replay").unwrap();
    assert_eq!(
        (&replay["reached"], &replay["meters"]),
        (&json!(false), &json!([])),
        "no usage of session replay"
    );

    let (_, alerts) = app.get("/v1/customers/acme/alerts", Some(&key)).await;
    let thresholds: Vec<&str> =
        alerts["data"].as_array().unwrap().iter().map(|a| a["threshold"].as_str().unwrap()).collect();
    assert_eq!(thresholds, ["0.8", "1.0"], "each threshold once, spelled as the book spells it");
    app.post(
        "/v1/usage",
        Some(&key),
        json!({"events": [event("pr99", "acme", "inbox_prs", json!(1), "2026-11-16T00:00:00Z")]}),
    )
    .await;
    assert_eq!(app.get("/v1/customers/acme/alerts", Some(&key)).await.1["data"].as_array().unwrap().len(), 2);

    let (status, body) = app
        .call(
            Method::PUT,
            "/v1/customers/acme/limits",
            Some(&key),
            Some(json!({"ghost": "5", "inbox": "1.5", "logs": true})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"].as_array().unwrap().len(), 3, "{body}");
    let (_, limits) = app
        .call(Method::PUT, "/v1/customers/acme/limits", Some(ADMIN), Some(json!({"session_replay": null})))
        .await;
    assert_eq!(limits, json!({"inbox": "100"}), "null removes, absent keys stay");
    let beta = app.customer("beta").await;
    assert_eq!(
        app.call(Method::PUT, "/v1/customers/acme/limits", Some(&beta), Some(json!({}))).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.get("/v1/customers/acme/usage", Some(&beta)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/v1/customers/acme/alerts", Some(&beta)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/v1/customers/acme/usage?at=2026-10-01T00:00:00Z", Some(&key)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn a_cap_lowered_below_this_period_s_bill_applies_from_the_next() {
    let app = App::new().await;
    let key = app.customer("acme").await;
    let events: Vec<Value> = (0..20)
        .map(|i| event(&format!("pr{i}"), "acme", "inbox_prs", json!(1), "2026-11-05T00:00:00Z"))
        .collect();
    app.post("/v1/usage", Some(&key), json!({"events": events})).await;
    // 20 PRs: 17 × $15 = $255 billed so far. A $100 cap now keeps $255 as this period's cap.
    app.call(Method::PUT, "/v1/customers/acme/limits", Some(&key), Some(json!({"inbox": "100"}))).await;
    let (_, now) = app.get("/v1/customers/acme/usage", Some(&key)).await;
    assert_eq!(now["bill"]["total"], "255.00");
    assert_eq!(now["caps"][0]["limit"], "255");
    app.set_now("2026-12-02T00:00:00Z");
    let (_, next) = app.get("/v1/customers/acme/usage", Some(&key)).await;
    assert_eq!(next["caps"][0]["limit"], "100");
}

#[tokio::test]
async fn idempotency_keys_replay_conflict_and_are_scoped() {
    let app = App::new().await;
    let body = json!({"id": "acme", "name": "Acme"}).to_string();
    let auth = [("idempotency-key", "k1")];
    let (first_status, first) =
        app.raw(Method::POST, "/v1/customers", Some(ADMIN), Some(body.clone()), &auth).await;
    assert_eq!(first_status, StatusCode::CREATED);
    let (status, replay) = app.raw(Method::POST, "/v1/customers", Some(ADMIN), Some(body), &auth).await;
    assert_eq!(status, StatusCode::CREATED, "the stored response is replayed");
    assert_eq!(replay["customer"], first["customer"]);
    assert_eq!(replay["api_key"], Value::Null, "a secret is never stored for replay");
    let other = json!({"id": "beta", "name": "Beta"}).to_string();
    let (status, conflict) = app.raw(Method::POST, "/v1/customers", Some(ADMIN), Some(other), &auth).await;
    assert_eq!((status, code(&conflict)), (StatusCode::CONFLICT, "idempotency_conflict"));
    // Another path with the same key is another scope.
    let (status, _) =
        app.raw(Method::POST, "/v1/quotes", None, Some(json!({"usage": {}}).to_string()), &auth).await;
    assert_eq!(status, StatusCode::OK);
    // A usage batch replayed with its key answers the first answer, not "duplicates".
    let key = [("idempotency-key", "batch-1")];
    let batch =
        json!({"events": [event("u1", "acme", "events", json!(1), "2026-11-10T00:00:00Z")]}).to_string();
    let (_, a) = app.raw(Method::POST, "/v1/usage", Some(ADMIN), Some(batch.clone()), &key).await;
    let (_, b) = app.raw(Method::POST, "/v1/usage", Some(ADMIN), Some(batch), &key).await;
    assert_eq!((a["accepted"].as_u64(), &a,), (Some(1), &b));
}
