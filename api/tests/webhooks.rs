//! Events and webhooks, in process: endpoints (secret shown once, rotation, the address rule, refusals that write
//! nothing), events written with their facts and only then (a refused or rolled-back write leaves none), invoice
//! events equal to the invoice as the API answered it at that moment, and delivery to a real receiver on loopback
//! (signatures, retries, the log, a retry by hand, a disabled endpoint, the address rule at delivery, an endpoint
//! disabled after failing for 5 (scaled) days).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::server::Settings;
use axum::http::{Method, StatusCode};
use common::{code, on_every_backend, rows, sqlite, App, ADMIN};
use serde_json::{json, Value};

async fn events(app: &App, query: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/v1/events?limit=500{query}"), Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn endpoints_have_a_secret_shown_once_and_refusals_write_nothing() {
    on_every_backend(|app, url| async move {
        let new = json!({"url": "https://hooks.example.com/tally", "event_types": ["invoice.created", "*", "invoice.created"]});
        let headers = [("idempotency-key", "ep-1")];
        let (status, created) = app
            .raw(Method::POST, "/v1/webhook-endpoints", Some(ADMIN), Some(new.to_string()), &headers)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let secret = created["secret"].as_str().unwrap();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(created["event_types"], json!(["invoice.created", "*"]), "each type once");
        assert_eq!(api::signature::key(secret).unwrap().len(), 32);
        let id = created["id"].as_str().unwrap().to_owned();
        // A replay answers the endpoint again without its secret; reads never show it.
        let (status, again) = app
            .raw(Method::POST, "/v1/webhook-endpoints", Some(ADMIN), Some(new.to_string()), &headers)
            .await;
        assert_eq!(
            (status, &again["id"], &again["secret"]),
            (StatusCode::CREATED, &created["id"], &Value::Null)
        );
        let (_, read) = app.get(&format!("/v1/webhook-endpoints/{id}"), Some(ADMIN)).await;
        assert_eq!(read["secret"], Value::Null);
        let (_, list) = app.get("/v1/webhook-endpoints", Some(ADMIN)).await;
        assert_eq!(list["data"].as_array().unwrap().len(), 1);
        // Changes; a rotation gives a new secret once, the old one signing for 24 hours more.
        let (status, changed) = app
            .call(
                Method::PATCH,
                &format!("/v1/webhook-endpoints/{id}"),
                Some(ADMIN),
                Some(json!({"enabled": false, "description": "ops"})),
            )
            .await;
        assert_eq!(
            (status, &changed["enabled"], &changed["description"]),
            (StatusCode::OK, &json!(false), &json!("ops"))
        );
        let (_, rotated) =
            app.post(&format!("/v1/webhook-endpoints/{id}/rotate-secret"), Some(ADMIN), json!({})).await;
        assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
        assert_ne!(rotated["secret"], created["secret"]);
        assert_eq!(rotated["previous_secret_until"], "2026-11-21T12:00:00Z");
        // Refusals: every one leaves every table as it was.
        let before = rows(&url).await;
        let refused = [
            json!({"url": "http://10.0.0.8/hook", "event_types": ["*"]}),
            json!({"url": "http://127.0.0.1:9/hook", "event_types": ["*"]}),
            json!({"url": "http://[::1]/hook", "event_types": ["*"]}),
            json!({"url": "http://169.254.169.254/latest", "event_types": ["*"]}),
            json!({"url": "https://192.168.1.20/hook", "event_types": ["*"]}),
            json!({"url": "http://[::ffff:10.1.1.1]/hook", "event_types": ["*"]}),
            json!({"url": "ftp://hooks.example.com/", "event_types": ["*"]}),
            json!({"url": "https://user:pw@hooks.example.com/", "event_types": ["*"]}),
            json!({"url": "https://hooks.example.com/", "event_types": []}),
            json!({"url": "https://hooks.example.com/", "event_types": ["invoice.deleted"]}),
            json!({"url": "https://hooks.example.com/", "event_types": ["*"], "secret": "mine"}),
        ];
        for body in refused {
            let (status, answer) = app.post("/v1/webhook-endpoints", Some(ADMIN), body.clone()).await;
            assert!(status.is_client_error(), "{body} → {status} {answer}");
            assert_eq!(code(&answer), "validation_failed", "{body}");
        }
        let (status, _) = app
            .call(
                Method::PATCH,
                &format!("/v1/webhook-endpoints/{id}"),
                Some(ADMIN),
                Some(json!({"url": "http://172.16.0.1/"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, _) = app
            .post("/v1/webhook-endpoints", None, json!({"url": "https://a.example/", "event_types": ["*"]}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(rows(&url).await, before);
        let (status, deleted) =
            app.call(Method::DELETE, &format!("/v1/webhook-endpoints/{id}"), Some(ADMIN), None).await;
        assert_eq!((status, &deleted["deleted"]), (StatusCode::OK, &json!(true)));
        let (status, _) = app.get(&format!("/v1/webhook-endpoints/{id}"), Some(ADMIN)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn every_fact_has_its_event_and_a_refused_or_rolled_back_write_has_none() {
    on_every_backend(|app, _| async move {
        app.customer("acme").await;
        app.customer("zeta").await;
        let (status, _) = app.call(Method::PUT, "/v1/customers/acme/limits", Some(ADMIN), Some(json!({"product_analytics": "20"}))).await;
        assert_eq!(status, StatusCode::OK);
        // Usage past the cap: two alerts (80 %, 100 %) and the cap reached; the same batch again adds nothing.
        let batch = json!({"events": [{"id": "u1", "customer_id": "acme", "meter": "events", "quantity": "9000000", "timestamp": "2026-11-10T08:00:00Z"}]});
        for _ in 0..2 {
            let (status, _) = app.post("/v1/usage", Some(ADMIN), batch.clone()).await;
            assert_eq!(status, StatusCode::OK);
        }
        let all = events(&app, "").await;
        assert_eq!(types(&all), ["spend_cap.reached", "spend_alert.crossed", "spend_alert.crossed"]);
        let reached = &all[0]["data"];
        assert_eq!((&reached["product"], &reached["cap"], &reached["customer_id"]), (&json!("product_analytics"), &json!("20"), &json!("acme")));
        assert_eq!(reached["reached_at"], "2026-11-10T08:00:00Z");
        let thresholds: Vec<&str> = all[1..].iter().map(|e| e["data"]["threshold"].as_str().unwrap()).collect();
        assert_eq!(thresholds.iter().collect::<std::collections::BTreeSet<_>>().len(), 2, "{thresholds:?}");
        assert_eq!(all[1]["data"]["amount"], "20.00");
        // A refused batch (malformed) writes no event.
        let (status, _) = app.raw(Method::POST, "/v1/usage", Some(ADMIN), Some("{\"events\": [".into()), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(events(&app, "").await.len(), 3);
        // An invoice run: each invoice created, then the run completed with its counts.
        app.set_now("2026-12-02T00:00:00Z");
        let run = app.run_invoices("2026-12-01T00:00:00Z", false).await;
        let invoice_events = events(&app, "&type=invoice.created").await;
        assert_eq!(invoice_events.len(), 2);
        let acme = events(&app, "&type=invoice.created&customer_id=acme").await;
        let invoice_id = acme[0]["data"]["id"].as_str().unwrap().to_owned();
        let (_, draft) = app.get(&format!("/v1/invoices/{invoice_id}"), Some(ADMIN)).await;
        assert_eq!(acme[0]["data"], draft, "invoice.created carries the invoice as GET answered it");
        let completed = events(&app, "&type=invoice_run.completed").await;
        assert_eq!(completed.len(), 1);
        assert_eq!((&completed[0]["data"]["id"], &completed[0]["data"]["invoiced"]), (&run["id"], &json!(2)));
        // Each lifecycle step has its event, carrying the invoice as it was then; a refused step none.
        let (status, _) = app.post(&format!("/v1/invoices/{invoice_id}/pay"), Some(ADMIN), json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (_, issued) = app.post(&format!("/v1/invoices/{invoice_id}/issue"), Some(ADMIN), json!({})).await;
        let (_, paid) = app.post(&format!("/v1/invoices/{invoice_id}/pay"), Some(ADMIN), json!({})).await;
        let (status, _) = app.post(&format!("/v1/invoices/{invoice_id}/pay"), Some(ADMIN), json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(events(&app, "&type=invoice.issued").await[0]["data"], issued);
        let paid_events = events(&app, "&type=invoice.paid").await;
        assert_eq!(paid_events.len(), 1);
        assert_eq!(paid_events[0]["data"], paid);
        assert_eq!(events(&app, "&type=invoice.created&customer_id=acme").await[0]["data"], draft);
        // Usage sent into the invoiced period is refused, and reported once per customer and batch.
        let late = json!({"events": [
            {"id": "l1", "customer_id": "acme", "meter": "events", "quantity": 5, "timestamp": "2026-11-30T23:00:00Z"},
            {"id": "l2", "customer_id": "acme", "meter": "events", "quantity": 5, "timestamp": "2026-11-30T23:30:00Z"},
            {"id": "l3", "customer_id": "zeta", "meter": "events", "quantity": 5, "timestamp": "2026-11-30T23:30:00Z"}]});
        let (_, answer) = app.post("/v1/usage", Some(ADMIN), late).await;
        assert_eq!(answer["rejected"].as_array().unwrap().len(), 3);
        let refused = events(&app, "&type=usage.rejected_for_closed_period").await;
        assert_eq!(refused.len(), 2);
        let acme_refused = refused.iter().find(|e| e["customer_id"] == "acme").unwrap();
        assert_eq!((&acme_refused["data"]["count"], &acme_refused["data"]["event_ids"]), (&json!(2), &json!(["l1", "l2"])));
        // Paging newest first, by cursor; one event by id.
        let (_, first) = app.get("/v1/events?limit=2", Some(ADMIN)).await;
        let cursor = first["next_cursor"].as_str().unwrap();
        let (_, second) = app.get(&format!("/v1/events?limit=2&cursor={cursor}"), Some(ADMIN)).await;
        let all = events(&app, "").await;
        assert_eq!(first["data"][0], all[0]);
        assert_eq!(second["data"][0], all[2]);
        let (status, one) = app.get(&format!("/v1/events/{}", all[5]["id"].as_str().unwrap()), Some(ADMIN)).await;
        assert_eq!((status, &one), (StatusCode::OK, &all[5]));
        let (status, _) = app.get("/v1/events", Some(&app.customer("someone").await)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    })
    .await;
}

/// What a test receiver saw: per path, every request's headers and body, in order.
type Seen = Arc<Mutex<Vec<(String, axum::http::HeaderMap, String)>>>;

/// A receiver on 127.0.0.1: answers 500 to the first request for each webhook-id on `/flaky`, 500 always on
/// `/down`, 200 after 10 seconds on `/hang` (past the 2-second timeout), 200 otherwise.
async fn receiver() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let before = {
                    let mut seen = sink.lock().unwrap();
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let before = seen
                        .iter()
                        .filter(|(p, h, _)| {
                            *p == uri.path() && h.get("webhook-id").is_some_and(|v| v == id.as_str())
                        })
                        .count();
                    seen.push((uri.path().to_owned(), headers, body));
                    before
                };
                match uri.path() {
                    "/down" => (StatusCode::INTERNAL_SERVER_ERROR, "down"),
                    "/flaky" if before == 0 => (StatusCode::INTERNAL_SERVER_ERROR, "not yet"),
                    "/hang" => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        (StatusCode::OK, "too late")
                    }
                    _ => (StatusCode::OK, "thanks"),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

/// An app whose deliveries run (workers started), its clock following real time.
async fn delivering(allow_private: bool) -> App {
    let (store, dir) = sqlite().await;
    let webhooks = api::app::WebhookSettings {
        allow_private,
        retry_scale: rust_decimal::Decimal::new(1, 6),
        timeout: Duration::from_secs(2),
        poll: Duration::from_millis(20),
        ..api::app::WebhookSettings::default()
    };
    let settings = Settings { admin_token: Some(ADMIN.into()), webhooks, ..Settings::default() };
    let app = App::with(store, dir, settings).await;
    tick(&app);
    tokio::spawn(app.state.service.clone().deliver_webhooks());
    app
}

fn tick(app: &App) {
    app.set_now(&chrono::Utc::now().to_rfc3339());
}

async fn endpoint(app: &App, url: &str, types: Value) -> (String, String) {
    let (status, body) =
        app.post("/v1/webhook-endpoints", Some(ADMIN), json!({"url": url, "event_types": types})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
}

/// Waits (the clock following real time) until `done` holds, for at most 20 seconds.
async fn until(app: &App, what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1000 {
        tick(app);
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn deliveries_are_signed_retried_logged_and_never_sent_to_a_disabled_endpoint() {
    let app = delivering(true).await;
    let (port, seen) = receiver().await;
    let (flaky, secret) =
        endpoint(&app, &format!("http://127.0.0.1:{port}/flaky"), json!(["invoice.created"])).await;
    let (off, _) = endpoint(&app, &format!("http://127.0.0.1:{port}/off"), json!(["*"])).await;
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("/v1/webhook-endpoints/{off}"),
            Some(ADMIN),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.customer("acme").await;
    app.run_invoices("2026-12-01T00:00:00Z", false).await;
    let log = format!("/v1/webhook-endpoints/{flaky}/deliveries");
    until(&app, "the delivery to succeed", async || {
        app.get(&log, Some(ADMIN)).await.1["data"][0]["state"] == "succeeded"
    })
    .await;
    let (_, deliveries) = app.get(&log, Some(ADMIN)).await;
    let delivery = &deliveries["data"][0];
    let statuses: Vec<&Value> =
        delivery["attempts"].as_array().unwrap().iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [&json!(500), &json!(200)], "{delivery}");
    assert_eq!(delivery["attempts"][0]["response"], "not yet");
    // Both requests: the same id, signed (verified here with the signature module against the secret shown once),
    // the body {type, timestamp, data} with the event's data.
    let requests: Vec<_> = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "the disabled endpoint got nothing");
    let event_id = delivery["event_id"].as_str().unwrap();
    let (_, event) = app.get(&format!("/v1/events/{event_id}"), Some(ADMIN)).await;
    for (path, headers, body) in &requests {
        assert_eq!(path, "/flaky");
        let header = |k: &str| headers.get(k).unwrap().to_str().unwrap().to_owned();
        assert_eq!(header("webhook-id"), event_id);
        let timestamp = header("webhook-timestamp");
        let now = chrono::Utc::now().timestamp();
        api::signature::verify(
            &secret,
            event_id,
            &timestamp,
            &header("webhook-signature"),
            body.as_bytes(),
            now,
        )
        .unwrap();
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            (&body["type"], &body["timestamp"], &body["data"]),
            (&event["type"], &event["created_at"], &event["data"])
        );
    }
    // A retry by hand sends it again at once, recorded as manual.
    let delivery_id = delivery["id"].as_str().unwrap();
    let (status, _) =
        app.post(&format!("/v1/webhook-deliveries/{delivery_id}/retry"), Some(ADMIN), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    until(&app, "the manual attempt", async || {
        app.get(&log, Some(ADMIN)).await.1["data"][0]["attempts"].as_array().unwrap().len() == 3
    })
    .await;
    let (_, deliveries) = app.get(&log, Some(ADMIN)).await;
    assert_eq!(deliveries["data"][0]["attempts"][2]["manual"], true);
    assert_eq!(seen.lock().unwrap().len(), 3);
    let (_, off_log) = app.get(&format!("/v1/webhook-endpoints/{off}/deliveries"), Some(ADMIN)).await;
    assert_eq!(off_log["data"], json!([]));
    let (status, body) = app.post("/v1/webhook-deliveries/whd_none/retry", Some(ADMIN), json!({})).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn without_the_flag_a_name_resolving_to_loopback_is_refused_at_delivery() {
    let app = delivering(false).await;
    let (port, seen) = receiver().await;
    let (id, _) =
        endpoint(&app, &format!("http://localhost:{port}/hook"), json!(["invoice_run.completed"])).await;
    app.customer("acme").await;
    app.run_invoices("2026-12-01T00:00:00Z", false).await;
    let log = format!("/v1/webhook-endpoints/{id}/deliveries");
    until(&app, "a refused attempt", async || {
        !app.get(&log, Some(ADMIN)).await.1["data"][0]["attempts"].as_array().is_none_or(Vec::is_empty)
    })
    .await;
    let (_, deliveries) = app.get(&log, Some(ADMIN)).await;
    let attempt = &deliveries["data"][0]["attempts"][0];
    assert_eq!(attempt["status"], Value::Null);
    assert!(attempt["error"].as_str().unwrap().contains("refused: localhost resolves to"), "{attempt}");
    assert!(seen.lock().unwrap().is_empty(), "no request reached the loopback receiver");
}

#[tokio::test]
async fn an_endpoint_failing_for_five_scaled_days_is_disabled_and_says_so() {
    // Scale 10⁻⁶: 5 days are 0.43 s. Events keep coming (a late event each 50 ms) and every attempt fails.
    let app = delivering(true).await;
    let (port, _) = receiver().await;
    let (id, _) =
        endpoint(&app, &format!("http://127.0.0.1:{port}/down"), json!(["usage.rejected_for_closed_period"]))
            .await;
    app.customer("acme").await;
    app.run_invoices("2026-12-01T00:00:00Z", false).await;
    let mut n = 0;
    until(&app, "the endpoint to be disabled", async || {
        n += 1;
        let late = json!({"events": [{"id": format!("late-{n}"), "customer_id": "acme", "meter": "events", "quantity": 1, "timestamp": "2026-11-30T23:00:00Z"}]});
        app.post("/v1/usage", Some(ADMIN), late).await;
        app.get(&format!("/v1/webhook-endpoints/{id}"), Some(ADMIN)).await.1["enabled"] == false
    })
    .await;
    let (_, endpoint) = app.get(&format!("/v1/webhook-endpoints/{id}"), Some(ADMIN)).await;
    assert_eq!(endpoint["disabled_reason"], "failing");
    let disabled = events(&app, "&type=webhook_endpoint.disabled").await;
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["data"]["id"], id.as_str());
    // Enabled again, it starts afresh.
    let (_, enabled) = app
        .call(
            Method::PATCH,
            &format!("/v1/webhook-endpoints/{id}"),
            Some(ADMIN),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!((&enabled["enabled"], &enabled["disabled_reason"]), (&json!(true), &Value::Null));
}

#[tokio::test]
async fn a_hanging_endpoint_holds_at_most_half_the_slots_and_the_others_are_served() {
    // 40 events to two endpoints; one hangs past the timeout. It holds at most half of the 32 slots, so every
    // delivery to the other succeeds before the first attempt to the hanging one has even timed out (2 s). Without
    // the per-endpoint share, its attempts would fill every slot a finished delivery frees, and the last deliveries
    // to the healthy endpoint would wait for those timeouts.
    let app = delivering(true).await;
    let (port, seen) = receiver().await;
    let (hang, _) =
        endpoint(&app, &format!("http://127.0.0.1:{port}/hang"), json!(["invoice.created"])).await;
    let (fast, _) =
        endpoint(&app, &format!("http://127.0.0.1:{port}/fast"), json!(["invoice.created"])).await;
    for i in 0..40 {
        app.customer(&format!("c{i:02}")).await;
    }
    app.run_invoices("2026-12-01T00:00:00Z", false).await;
    let log = |id: &str| format!("/v1/webhook-endpoints/{id}/deliveries?limit=100");
    until(&app, "the healthy endpoint's 40 deliveries", async || {
        let (_, page) = app.get(&log(&fast), Some(ADMIN)).await;
        page["data"].as_array().unwrap().iter().filter(|d| d["state"] == "succeeded").count() == 40
    })
    .await;
    let (_, hung) = app.get(&log(&hang), Some(ADMIN)).await;
    let recorded: usize =
        hung["data"].as_array().unwrap().iter().map(|d| d["attempts"].as_array().unwrap().len()).sum();
    assert_eq!(recorded, 0, "no attempt to the hanging endpoint had ended yet");
    let in_flight = seen.lock().unwrap().iter().filter(|(p, _, _)| p == "/hang").count();
    assert_eq!(in_flight, 16, "the hanging endpoint holds half the slots, no more");
}
