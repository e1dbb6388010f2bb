//! The customer's billing page over HTTP, in process, on SQLite and PostgreSQL: portal links (single use, 15
//! minutes, never naming anything), the session cookie (HttpOnly, SameSite, idle and absolute expiry, revoked by the
//! admin or by a key rotation), the cap form without JavaScript (CSRF token, same-site check, nothing written when
//! refused), the history of cap changes with the credential kind of each, and a session seeing its customer only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use common::{on_every_backend, rows, App, ADMIN};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// A form refused: its body, its headers, the cookie it was sent with, and the status it gets.
type Refusal<'a> = (String, Vec<(&'a str, &'a str)>, Option<&'a str>, StatusCode);

/// A browser's request: method, path, cookie, form body, extra headers → status, headers, body text.
async fn browse(
    app: &App,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(path).header("host", "tally.test");
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, format!("other=1; tally_portal={c}"));
    }
    if form.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(form.map_or_else(Body::empty, |f| Body::from(f.to_owned()))).unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
}

/// A new portal link for `customer`, made with `token`: its path (`/billing/sessions/…`) and the session's id.
async fn link(app: &App, customer: &str, token: &str) -> (String, String) {
    let (status, body) =
        app.post(&format!("/v1/customers/{customer}/portal-sessions"), Some(token), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = body["url"].as_str().unwrap();
    let path = url.strip_prefix("http://tally.test").unwrap_or(url);
    let path = path.find("/billing/").map_or(path, |i| &path[i..]).to_owned();
    (path, body["id"].as_str().unwrap().to_owned())
}

/// Opens a link as a browser: the cookie it sets.
async fn open(app: &App, path: &str) -> String {
    let (status, headers, body) = browse(app, Method::GET, path, None, None, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[header::LOCATION], "/billing", "the token leaves the address bar");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/billing", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "served over http: {cookie}");
    cookie.split(';').next().unwrap().strip_prefix("tally_portal=").unwrap().to_owned()
}

/// The CSRF token the page's forms carry.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("the page has a csrf input")
        + "name=\"csrf\" value=\"".len();
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

async fn limits(app: &App, customer: &str) -> Value {
    app.get(&format!("/v1/customers/{customer}/limits"), Some(ADMIN)).await.1
}

#[tokio::test]
async fn a_link_opens_once_into_a_session_for_its_customer_only() {
    on_every_backend(|app, url| async move {
        let own = app.customer("acme").await;
        let other = app.customer("zed").await;
        // Made by the admin or the customer's own key; another customer's key may not.
        let (status, _) = app.post("/v1/customers/acme/portal-sessions", Some(&other), json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app.post("/v1/customers/ghost/portal-sessions", Some(ADMIN), json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = app.post("/v1/customers/acme/portal-sessions", Some(&own), json!({})).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["customer_id"], "acme");
        assert_eq!(body["created_by"], "api_key");
        assert_eq!(body["expires_at"], "2026-11-20T12:15:00Z", "valid 15 minutes");
        let (path, _) = link(&app, "acme", ADMIN).await;
        let cookie = open(&app, &path).await;
        // Used: the same page as forged or expired, naming nothing.
        let before = rows(&url).await;
        for dead in
            [path.clone(), "/billing/sessions/pl_forged".to_owned(), "/billing/sessions/%FF".to_owned()]
        {
            let (status, headers, body) = browse(&app, Method::GET, &dead, None, None, &[]).await;
            assert!(status == StatusCode::GONE || status == StatusCode::NOT_FOUND, "{dead}: {status}");
            assert!(headers.get(header::SET_COOKIE).is_none());
            assert!(!body.contains("acme") && !body.contains("zed"), "{body}");
        }
        let (expired, _) = link(&app, "acme", ADMIN).await;
        app.set_now("2026-11-20T12:15:00Z");
        let (status, _, body) = browse(&app, Method::GET, &expired, None, None, &[]).await;
        assert_eq!(status, StatusCode::GONE);
        assert!(body.contains("can no longer be used"));
        let after_links = rows(&url).await;
        assert_eq!(
            after_links["portal_sessions"],
            before["portal_sessions"] + 1,
            "only the new link was written"
        );
        // The page: the customer's, with a CSRF token; no cache, no frames.
        let (status, headers, page) = browse(&app, Method::GET, "/billing", Some(&cookie), None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("Billing for acme"));
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(csrf(&page).len(), 64);
        // Another customer's invoice is not there for the session.
        app.post(
            "/v1/usage",
            Some(ADMIN),
            json!({"events": [{"id": "z1", "customer_id": "zed", "meter": "events",
            "quantity": 2000000, "timestamp": "2026-11-10T00:00:00Z"}]}),
        )
        .await;
        app.set_now("2026-12-02T00:00:00Z");
        app.run_invoices("2026-12-01T00:00:00Z", false).await;
        let (_, list) = app.get("/v1/invoices?customer_id=zed", Some(ADMIN)).await;
        let zed_invoice = list["data"][0]["id"].as_str().unwrap().to_owned();
        let (_, list) = app.get("/v1/invoices?customer_id=acme", Some(ADMIN)).await;
        let acme_invoice = list["data"][0]["id"].as_str().unwrap().to_owned();
        // Twelve days on, the first session has ended: a new one.
        let (status, _, _) = browse(&app, Method::GET, "/billing", Some(&cookie), None, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (path, _) = link(&app, "acme", ADMIN).await;
        let cookie = open(&app, &path).await;
        let (status, _, _) =
            browse(&app, Method::GET, &format!("/billing/invoices/{zed_invoice}"), Some(&cookie), None, &[])
                .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, headers, html) =
            browse(&app, Method::GET, &format!("/billing/invoices/{acme_invoice}"), Some(&cookie), None, &[])
                .await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        assert!(html.contains("Bill to") && html.contains("1 – 30 November 2026"), "{html}");
        let (status, headers, csv) = browse(
            &app,
            Method::GET,
            &format!("/billing/invoices/{acme_invoice}?format=csv"),
            Some(&cookie),
            None,
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
        assert!(csv.starts_with("invoice_id,"));
    })
    .await;
}

#[tokio::test]
async fn the_cap_form_saves_by_the_api_rules_and_refuses_cross_site_posts_writing_nothing() {
    on_every_backend(|app, url| async move {
        let key = app.customer("acme").await;
        let (path, session) = link(&app, "acme", ADMIN).await;
        let cookie = open(&app, &path).await;
        let (_, _, page) = browse(&app, Method::GET, "/billing", Some(&cookie), None, &[]).await;
        let token = csrf(&page);
        let same = [("origin", "http://tally.test")];
        // Saved: a redirect to the page, which says so; the cap is the API's.
        let form = format!("csrf={token}&product=session_replay&limit=200");
        let (status, headers, _) =
            browse(&app, Method::POST, "/billing/limits", Some(&cookie), Some(&form), &same).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/billing?saved=session_replay");
        assert_eq!(limits(&app, "acme").await, json!({"session_replay": "200"}));
        let (_, _, page) =
            browse(&app, Method::GET, "/billing?saved=session_replay", Some(&cookie), None, &[]).await;
        assert!(page.contains("Saved the cap on Session replay"), "the page says it was saved");
        // Refused, each writing nothing: no token, a wrong one, another site's origin, a cross-site fetch, no
        // session, a form the API's rules refuse.
        let before = rows(&url).await;
        let refusals: Vec<Refusal<'_>> = vec![
            ("product=session_replay&limit=5".into(), same.to_vec(), Some(&cookie), StatusCode::FORBIDDEN),
            (
                format!("csrf={}&product=session_replay&limit=5", "0".repeat(64)),
                same.to_vec(),
                Some(&cookie),
                StatusCode::FORBIDDEN,
            ),
            (
                format!("csrf={token}&csrf={token}&product=session_replay&limit=5"),
                same.to_vec(),
                Some(&cookie),
                StatusCode::FORBIDDEN,
            ),
            (
                format!("csrf={token}&product=session_replay&limit=5"),
                vec![("origin", "https://evil.test")],
                Some(&cookie),
                StatusCode::FORBIDDEN,
            ),
            (
                format!("csrf={token}&product=session_replay&limit=5"),
                vec![("origin", "null")],
                Some(&cookie),
                StatusCode::FORBIDDEN,
            ),
            (
                format!("csrf={token}&product=session_replay&limit=5"),
                vec![("sec-fetch-site", "cross-site")],
                Some(&cookie),
                StatusCode::FORBIDDEN,
            ),
            (
                format!("csrf={token}&product=session_replay&limit=5"),
                same.to_vec(),
                None,
                StatusCode::UNAUTHORIZED,
            ),
            (
                format!("csrf={token}&product=session_replay&limit=5"),
                same.to_vec(),
                Some("pc_forged"),
                StatusCode::UNAUTHORIZED,
            ),
            (
                format!("csrf={token}&product=no_such_product&limit=5"),
                same.to_vec(),
                Some(&cookie),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                format!("csrf={token}&product=session_replay&limit=-5"),
                same.to_vec(),
                Some(&cookie),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                format!("csrf={token}&product=session_replay&limit=1e9"),
                same.to_vec(),
                Some(&cookie),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                format!("csrf={token}&product=session_replay"),
                same.to_vec(),
                Some(&cookie),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ];
        for (form, headers, cookie, expected) in &refusals {
            let (status, _, body) =
                browse(&app, Method::POST, "/billing/limits", *cookie, Some(form), headers).await;
            assert_eq!(status, *expected, "{form} {headers:?}: {body}");
            if *expected == StatusCode::UNPROCESSABLE_ENTITY {
                assert!(body.contains("The cap was not saved"), "the page says why: {form}");
            }
        }
        assert_eq!(rows(&url).await, before, "no refused form wrote anything");
        assert_eq!(limits(&app, "acme").await, json!({"session_replay": "200"}));
        // JSON, not a form: 415.
        let (status, _, _) = browse(
            &app,
            Method::POST,
            "/billing/limits",
            Some(&cookie),
            None,
            &[("content-type", "application/json"), ("origin", "http://tally.test")],
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // Removing is one action: an empty limit. Then the API's key and the admin change it too.
        let form = format!("csrf={token}&product=session_replay&limit=");
        let (status, _, _) =
            browse(&app, Method::POST, "/billing/limits", Some(&cookie), Some(&form), &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(limits(&app, "acme").await, json!({}));
        let put = |token: String, body: Value| {
            let app = &app;
            async move { app.call(Method::PUT, "/v1/customers/acme/limits", Some(&token), Some(body)).await }
        };
        assert_eq!(put(key.clone(), json!({"product_analytics": "100"})).await.0, StatusCode::OK);
        assert_eq!(put(ADMIN.to_owned(), json!({"product_analytics": "150"})).await.0, StatusCode::OK);
        let (status, history) = app.get("/v1/customers/acme/limits/history?limit=2", Some(&key)).await;
        assert_eq!(status, StatusCode::OK);
        let changes = |page: &Value| -> Vec<(String, Value, Value, String)> {
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["product"].as_str().unwrap().to_owned(),
                        c["old"].clone(),
                        c["new"].clone(),
                        c["by"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        assert_eq!(
            changes(&history),
            [
                ("product_analytics".to_owned(), json!("100"), json!("150"), "admin".to_owned()),
                ("product_analytics".to_owned(), json!(null), json!("100"), "api_key".to_owned()),
            ]
        );
        let cursor = history["next_cursor"].as_str().unwrap();
        let (_, rest) =
            app.get(&format!("/v1/customers/acme/limits/history?limit=2&cursor={cursor}"), Some(&key)).await;
        assert_eq!(
            changes(&rest),
            [
                ("session_replay".to_owned(), json!("200"), json!(null), "portal".to_owned()),
                ("session_replay".to_owned(), json!(null), json!("200"), "portal".to_owned()),
            ]
        );
        assert_eq!(rest["next_cursor"], Value::Null);
        let (_, _, page) = browse(&app, Method::GET, "/billing", Some(&cookie), None, &[]).await;
        assert!(page.contains("id=\"history\""), "the page lists the changes");
        assert_eq!(page.matches("this page").count(), 2, "two changes made on the page");
        // The session ends: revoked by the admin.
        let (status, revoked) =
            app.post(&format!("/v1/portal-sessions/{session}/revoke"), Some(ADMIN), json!({})).await;
        assert_eq!(status, StatusCode::OK);
        assert!(revoked["revoked_at"].is_string());
        let (status, _, page) = browse(&app, Method::GET, "/billing", Some(&cookie), None, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(page.contains("billing session has ended"));
        let (status, _) =
            app.post(&format!("/v1/portal-sessions/{session}/revoke"), Some(&key), json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "the admin's alone");
    })
    .await;
}

#[tokio::test]
async fn a_session_ends_after_an_hour_idle_after_twelve_hours_and_when_the_key_rotates() {
    on_every_backend(|app, _| async move {
        app.customer("acme").await;
        let page = |cookie: String| {
            let app = &app;
            async move { browse(app, Method::GET, "/billing", Some(&cookie), None, &[]).await.0 }
        };
        // Used every 50 minutes: alive; then 12 hours after opening, ended.
        let (path, _) = link(&app, "acme", ADMIN).await;
        let cookie = open(&app, &path).await;
        for step in 1..=14 {
            let minutes = step * 50;
            app.set_now(
                &(common::at("2026-11-20T12:00:00Z") + chrono::Duration::minutes(minutes)).to_rfc3339(),
            );
            let expected = if minutes < 12 * 60 { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
            assert_eq!(page(cookie.clone()).await, expected, "at +{minutes} min");
        }
        // An hour without use: ended.
        app.set_now("2026-11-21T12:00:00Z");
        let (path, _) = link(&app, "acme", ADMIN).await;
        let cookie = open(&app, &path).await;
        app.set_now("2026-11-21T12:59:00Z");
        assert_eq!(page(cookie.clone()).await, StatusCode::OK);
        app.set_now("2026-11-21T14:00:00Z");
        assert_eq!(page(cookie).await, StatusCode::UNAUTHORIZED);
        // A new key ends every session.
        let (path, _) = link(&app, "acme", ADMIN).await;
        let cookie = open(&app, &path).await;
        assert_eq!(page(cookie.clone()).await, StatusCode::OK);
        let (status, _) = app.post("/v1/customers/acme/api-keys", Some(ADMIN), json!({})).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(page(cookie).await, StatusCode::UNAUTHORIZED);
    })
    .await;
}

/// Sends one usage event of customer `acme`.
async fn send_event(app: &App, id: &str, meter: &str, quantity: &str, at: &str) {
    let event =
        json!({"id": id, "customer_id": "acme", "meter": meter, "quantity": quantity, "timestamp": at});
    let (status, body) = app.post("/v1/usage", Some(ADMIN), json!({"events": [event]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The billing page's data, as the server put it in the page for the client.
fn page_data(page: &str) -> pricing_ui::billing::BillingData {
    let marker = format!("id=\"{}\">", pricing_ui::billing::DATA_ELEMENT_ID);
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("the page carries its data: {}", &page[..page.len().min(3000)]))
        + marker.len();
    let end = at + page[at..].find("</script>").unwrap();
    serde_json::from_str(&page[at..end]).unwrap()
}

/// The usage a period's bill drops per meter of a product, from a bill's JSON.
fn dropped_in(bill: &Value, product: &str) -> Vec<(String, rust_decimal::Decimal)> {
    bill["spend_limits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["product"] == product)
        .flat_map(|l| l["meters"].as_array().unwrap().iter())
        .map(|m| (m["meter"].as_str().unwrap().to_owned(), m["dropped"].as_str().unwrap().parse().unwrap()))
        .collect()
}

/// The page's prediction for a cap, made before saving, is what happens: random paces and caps (seeded by proptest,
/// replayable). With the clock pinned, the prediction (from the data the page was rendered with, by billing-core's
/// `cap_outlook`, the code the browser runs) equals the usage view's answer once the cap is saved — the instant the
/// cap will be reached (`projected_cap_at`) and the usage dropped by the period's end — and, once the projected usage
/// is sent, the usage the period's bill drops.
#[test]
fn the_cap_consequences_shown_before_saving_are_what_happens() {
    use pricing_ui::billing::{preview_cap, CapEffect};
    use proptest::prelude::*;
    let book = billing_core::PriceBook::default_book().unwrap();
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { cases: 32, ..ProptestConfig::default() });
    let products = ["session_replay", "product_analytics", "feature_flags", "surveys"];
    // The cap: a share (0–150 %) of what the product is projected to cost, so every effect comes up.
    let strategy = (0..products.len(), 1_u64..=3_000_000, 0_u32..=150, 1_u32..=28, 0_u32..=86_399);
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    runner
        .run(&strategy, |(which, usage, share, day, second)| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let app = App::new().await;
                app.customer("acme").await;
                let product = book.product(products[which]).unwrap();
                let meter = product.metered.meter.to_string();
                let now = common::at("2026-11-01T00:00:00Z")
                    + chrono::Duration::days(i64::from(day))
                    + chrono::Duration::seconds(i64::from(second));
                app.set_now(&now.to_rfc3339());
                send_event(&app, "so-far", &meter, &usage.to_string(), &now.to_rfc3339()).await;
                let (path, _) = link(&app, "acme", ADMIN).await;
                let cookie = open(&app, &path).await;
                let (_, _, page) = browse(&app, Method::GET, "/billing", Some(&cookie), None, &[]).await;
                let data = page_data(&page);
                let key = product.metered.key.to_string();
                let projected = data.products.iter().find(|p| p.key == key).unwrap().projected_amount;
                let cap = (projected * rust_decimal::Decimal::from(share)
                    / rust_decimal::Decimal::ONE_HUNDRED)
                    .floor()
                    .min(rust_decimal::Decimal::from(50_000)); // the book's largest cap
                let preview = preview_cap(&book, &data, &key, &cap.to_string());
                let (_, before) = app.get("/v1/customers/acme/usage", Some(ADMIN)).await;
                // Saved through the page's form.
                let form = format!("csrf={}&product={key}&limit={cap}", csrf(&page));
                let (status, _, body) =
                    browse(&app, Method::POST, "/billing/limits", Some(&cookie), Some(&form), &[]).await;
                assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
                let (_, view) = app.get("/v1/customers/acme/usage", Some(ADMIN)).await;
                let cap_view =
                    view["caps"].as_array().unwrap().iter().find(|c| c["product"] == key.as_str()).cloned();
                let context = format!("{key} usage {usage} cap {cap} at {now}: {:?}", preview.effect);
                seen.lock().unwrap().insert(preview.effect.kind());
                match &preview.effect {
                    CapEffect::FromNextPeriod => {
                        // Pinned for this period: the API keeps this period's amount; the cap is in force.
                        let (_, limits) = app.get("/v1/customers/acme/limits", Some(ADMIN)).await;
                        assert_eq!(limits[&key], cap.to_string(), "{context}");
                        assert_eq!(view["bill"]["total"], before["bill"]["total"], "{context}");
                        assert!(cap_view.is_some(), "{context}");
                    }
                    CapEffect::Binding => {
                        // At what the period bills: in force now, binding.
                        assert_eq!(cap_view.as_ref().unwrap()["reached"], true, "{context}");
                        assert_eq!(view["bill"]["total"], before["bill"]["total"], "{context}");
                    }
                    CapEffect::NotReached => {
                        let c = cap_view.expect("a capped product has a cap entry");
                        assert_eq!(c["reached"], false, "{context}");
                        assert_eq!(c["projected_cap_at"], Value::Null, "{context}");
                        assert!(
                            dropped_in(&view["projected"]["bill"], &key).iter().all(|(_, q)| q.is_zero()),
                            "{context}"
                        );
                    }
                    CapEffect::Reaches(at, dropped) => {
                        let c = cap_view.expect("a capped product has a cap entry");
                        assert_eq!(
                            c["projected_cap_at"],
                            json!(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                            "{context}"
                        );
                        let projected = dropped_in(&view["projected"]["bill"], &key);
                        let predicted: Vec<_> = dropped.iter().map(|(m, q)| (m.clone(), *q)).collect();
                        assert_eq!(projected, predicted, "{context}");
                        // The projected usage sent: the period's bill drops what was predicted.
                        let projected_usage: rust_decimal::Decimal =
                            view["projected"]["usage"][&meter].as_str().unwrap().parse().unwrap();
                        let extra = projected_usage - rust_decimal::Decimal::from(usage);
                        if !extra.is_zero() {
                            send_event(&app, "the-rest", &meter, &extra.to_string(), &now.to_rfc3339()).await;
                        }
                        let (_, after) = app.get("/v1/customers/acme/usage", Some(ADMIN)).await;
                        assert_eq!(dropped_in(&after["bill"], &key), predicted, "{context}");
                    }
                    other => panic!("a valid cap in the open period: {other:?} ({context})"),
                }
            });
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner().unwrap();
    for kind in ["next-period", "reaches", "not-reached"] {
        assert!(seen.contains(kind), "the cases never showed `{kind}`: {seen:?}");
    }
}

/// The bill the page shows for a period is the invoice the period gets.
#[tokio::test]
async fn the_page_shows_the_bill_the_invoice_will_have() {
    on_every_backend(|app, _| async move {
        app.customer("acme").await;
        app.call(Method::PUT, "/v1/customers/acme/limits", Some(ADMIN), Some(json!({"session_replay": "50"}))).await;
        let (status, body) = app.post("/v1/usage", Some(ADMIN), json!({"events": [
            {"id": "1", "customer_id": "acme", "meter": "recordings", "quantity": 40000, "timestamp": "2026-11-10T00:00:00Z"},
            {"id": "2", "customer_id": "acme", "meter": "events", "quantity": 3000000, "timestamp": "2026-11-12T00:00:00Z"}]})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        app.set_now("2026-11-30T23:00:00Z");
        let (path, _) = link(&app, "acme", ADMIN).await;
        let cookie = open(&app, &path).await;
        let (status, _, page) = browse(&app, Method::GET, "/billing", Some(&cookie), None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page_data(&page);
        let (_, view) = app.get("/v1/customers/acme/usage", Some(ADMIN)).await;
        assert_eq!(data.so_far.total.to_string(), view["bill"]["total"].as_str().unwrap());
        assert!(page.contains("Cap reached on 10 November 2026"), "the day the cap was reached");
        assert!(page.contains("dropped since"), "and what was dropped");
        app.set_now("2026-12-01T01:00:00Z");
        app.run_invoices("2026-12-01T00:00:00Z", false).await;
        let (_, list) = app.get("/v1/invoices?customer_id=acme", Some(ADMIN)).await;
        assert_eq!(list["data"][0]["total"].as_str().unwrap(), data.so_far.total.to_string(), "the invoice is the page's bill");
        // The past period, picked on the page, shows the invoice's bill (a new session: two hours idle ended it).
        let (path, _) = link(&app, "acme", ADMIN).await;
        let cookie = open(&app, &path).await;
        let (_, _, page) = browse(&app, Method::GET, "/billing?period=2026-11-01", Some(&cookie), None, &[]).await;
        assert_eq!(page_data(&page).so_far.total, data.so_far.total);
    })
    .await;
}

/// A portal link is a credential: an `Idempotency-Key` replay of its creation answers the session with `url` null, as
/// a replayed key creation answers `api_key` null.
#[tokio::test]
async fn a_replayed_link_creation_does_not_show_the_link_again() {
    let app = App::new().await;
    app.customer("acme").await;
    let headers = [("idempotency-key", "link-1")];
    let (status, first) = app
        .raw(Method::POST, "/v1/customers/acme/portal-sessions", Some(ADMIN), Some("{}".into()), &headers)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(first["url"].as_str().unwrap().contains("/billing/sessions/pl_"));
    let (status, again) = app
        .raw(Method::POST, "/v1/customers/acme/portal-sessions", Some(ADMIN), Some("{}".into()), &headers)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again["id"], first["id"], "the same session");
    assert_eq!(again["url"], Value::Null, "its link is not shown twice");
}

/// Behind a proxy that rewrites `Host`, the page's own origin is the public URL's: its forms are accepted, another
/// site's are not.
#[tokio::test]
async fn behind_a_proxy_the_public_url_is_this_site() {
    let (store, dir) = common::sqlite().await;
    let settings = api::server::Settings {
        admin_token: Some(ADMIN.into()),
        public_url: Some("https://billing.example.com".into()),
        ..api::server::Settings::default()
    };
    let app = App::with(store, dir, settings).await;
    app.customer("acme").await;
    let (status, body) = app.post("/v1/customers/acme/portal-sessions", Some(ADMIN), json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let url = body["url"].as_str().unwrap();
    assert!(url.starts_with("https://billing.example.com/billing/sessions/"), "{url}");
    let path = &url["https://billing.example.com".len()..];
    let (status, headers, _) = browse(&app, Method::GET, path, None, None, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "https: a Secure cookie: {cookie}");
    let secret = cookie.split(';').next().unwrap().strip_prefix("tally_portal=").unwrap().to_owned();
    let (_, _, page) = browse(&app, Method::GET, "/billing", Some(&secret), None, &[]).await;
    let form = format!("csrf={}&product=logs&limit=10", csrf(&page));
    for (origin, expected) in [
        ("https://evil.example.com", StatusCode::FORBIDDEN),
        ("https://billing.example.com", StatusCode::SEE_OTHER),
    ] {
        let (status, _, _) =
            browse(&app, Method::POST, "/billing/limits", Some(&secret), Some(&form), &[("origin", origin)])
                .await;
        assert_eq!(status, expected, "{origin}");
    }
}
