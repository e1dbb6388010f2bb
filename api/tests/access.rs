//! Who may call what, and what a refused request leaves behind — on SQLite and on PostgreSQL (when
//! `TALLY_TEST_POSTGRES_URL` is set, as `scripts/test` does; unreachable then is a failure, never a skip).
//!
//! - Every route of the table (`OPERATIONS`, the one `/openapi.json` documents) is probed with no credential, a
//!   wrong one, another customer's key, the customer's own key and the admin token; each answer is checked against
//!   the route's `Access` in the table.
//! - 10,000 anonymous or wrongly authenticated POSTs, each with its own `Idempotency-Key`, then requests refused
//!   with 400, 403, 404, 413, 415 and 422 by valid credentials: not one row is written in any table.
//! - Idempotency records: replayed within 24 hours, purged after.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use api::http::openapi::{Access, OPERATIONS};
use axum::http::{Method, StatusCode};
use common::{on_every_backend, rows, ADMIN};
use serde_json::{json, Value};

/// The credentials a route is probed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    Wrong,
    OtherCustomer,
    OwnCustomer,
    Admin,
}

/// What the table says `who` gets from a route of `access`: `Some(status)` refused, `None` let through.
fn expected(access: Access, who: Who) -> Option<StatusCode> {
    match (access, who) {
        (Access::Public, _) => None,
        // The billing page takes a session cookie, never a bearer token: every token is no session.
        (Access::Portal, _) | (_, Who::Nobody | Who::Wrong) => Some(StatusCode::UNAUTHORIZED),
        (_, Who::Admin) => None,
        (Access::Admin, Who::OtherCustomer | Who::OwnCustomer) => Some(StatusCode::FORBIDDEN),
        (Access::AdminOrOwn, Who::OtherCustomer) => Some(StatusCode::FORBIDDEN),
        (Access::AdminOrOwn, Who::OwnCustomer) | (Access::AdminOrKey, _) => None,
    }
}

fn method(op: &api::http::openapi::Operation) -> Method {
    op.method.to_uppercase().parse().unwrap()
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_table_says() {
    on_every_backend(|app, _| async move {
        let mut own = app.customer("acme").await;
        let other = app.customer("zed").await;
        for op in OPERATIONS {
            let path = op.path.replace("{id}", "acme");
            let body = matches!(op.method, "post" | "put" | "patch").then(|| json!({}));
            for who in [Who::Nobody, Who::Wrong, Who::OtherCustomer, Who::OwnCustomer, Who::Admin] {
                let token = match who {
                    Who::Nobody => None,
                    Who::Wrong => Some("tk_not-a-key"),
                    Who::OtherCustomer => Some(other.as_str()),
                    Who::OwnCustomer => Some(own.as_str()),
                    Who::Admin => Some(ADMIN),
                };
                let (status, answer) = app.call(method(op), &path, token, body.clone()).await;
                let rotated = answer["api_key"].as_str().filter(|_| op.path.ends_with("/api-keys"));
                let context = format!("{} {} as {who:?}: {status} {answer}", op.method, op.path);
                match expected(op.access, who) {
                    Some(refused) => {
                        assert_eq!(status, refused, "{context}");
                        if op.access == Access::Portal {
                            // A page for the person at the browser, not an API error.
                            let page = answer.as_str().unwrap_or_default();
                            assert!(page.contains("billing session has ended"), "{context}");
                            continue;
                        }
                        let code =
                            if refused == StatusCode::UNAUTHORIZED { "unauthorized" } else { "forbidden" };
                        assert_eq!(answer["error"]["code"], code, "{context}");
                    }
                    None => assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{context}"
                    ),
                }
                // A new key revokes the customer's previous ones: the probes go on with the new one.
                if let Some(key) = rotated {
                    own = key.to_owned();
                }
            }
        }
    })
    .await;
}

/// A body that would be valid for each writing route: refusals here come from the credential alone.
fn plausible_body(path: &str, i: usize) -> Value {
    match path {
        "/v1/customers" => json!({"id": format!("c{i}"), "name": "A"}),
        "/v1/usage" => json!({"events": [{"id": format!("e{i}"), "customer_id": "acme", "meter": "events",
                                         "quantity": 1, "timestamp": "2026-11-20T11:00:00Z"}]}),
        "/v1/customers/{id}/limits" => json!({"product_analytics": "100"}),
        "/v1/customers/{id}/commitments" => json!({"yearly_credit": "25000"}),
        "/v1/customers/{id}" => json!({"name": "B"}),
        "/v1/price-books" => json!({"price_book": {}}),
        _ => json!({}),
    }
}

#[tokio::test]
async fn refused_requests_write_nothing_in_any_table() {
    on_every_backend(|app, url| async move {
        let own = app.customer("acme").await;
        let writes: Vec<_> =
            OPERATIONS.iter().filter(|op| op.method != "get" && op.access != Access::Public).collect();
        let before = rows(&url).await;
        // 10,000 anonymous or wrongly authenticated writes, each with a key of its own.
        for i in 0..10_000 {
            let op = writes[i % writes.len()];
            let path = op.path.replace("{id}", "acme");
            let body = plausible_body(op.path, i).to_string();
            let key = format!("anonymous-{i}");
            let mut headers = vec![("idempotency-key", key.as_str())];
            let wrong = format!("Bearer tk_guess-{i}");
            if i % 2 == 1 {
                headers.push(("authorization", wrong.as_str()));
            }
            let (status, answer) = app.raw(method(op), &path, None, Some(body), &headers).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {}: {answer}", op.method, op.path);
        }
        // Refusals of valid credentials: the wrong caller (403), nothing by that id (404), a bad body (400, 413,
        // 415, 422), each with a key of its own.
        let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(6 << 20));
        let refusals: Vec<(Method, &str, &str, String, &str, StatusCode)> = vec![
            (
                Method::POST,
                "/v1/customers",
                &own,
                json!({"id": "x", "name": "x"}).to_string(),
                "application/json",
                StatusCode::FORBIDDEN,
            ),
            (
                Method::POST,
                "/v1/customers/zed/commitments",
                &own,
                json!({"yearly_credit": "25000"}).to_string(),
                "application/json",
                StatusCode::FORBIDDEN,
            ),
            (
                Method::POST,
                "/v1/invoices/in_nope/issue",
                ADMIN,
                String::new(),
                "application/json",
                StatusCode::NOT_FOUND,
            ),
            (
                Method::POST,
                "/v1/customers/nope/commitments",
                ADMIN,
                json!({"yearly_credit": "25000"}).to_string(),
                "application/json",
                StatusCode::NOT_FOUND,
            ),
            (
                Method::POST,
                "/v1/customers",
                ADMIN,
                "{\"id\": ".into(),
                "application/json",
                StatusCode::BAD_REQUEST,
            ),
            (Method::POST, "/v1/customers", ADMIN, huge, "application/json", StatusCode::PAYLOAD_TOO_LARGE),
            (
                Method::POST,
                "/v1/customers",
                ADMIN,
                json!({"id": "y", "name": "y"}).to_string(),
                "text/plain",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                Method::POST,
                "/v1/customers",
                ADMIN,
                json!({"id": "", "name": ""}).to_string(),
                "application/json",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                Method::POST,
                "/v1/usage",
                &own,
                json!({"events": {}}).to_string(),
                "application/json",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                Method::POST,
                "/v1/customers/acme/commitments",
                &own,
                json!({"yearly_credit": "1"}).to_string(),
                "application/json",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ];
        for (i, (method, path, token, body, content_type, refused)) in refusals.into_iter().enumerate() {
            let key = format!("refused-{i}");
            let headers = [("idempotency-key", key.as_str()), ("content-type", content_type)];
            let (status, answer) = app.raw(method, path, Some(token), Some(body), &headers).await;
            assert_eq!(status, refused, "{path}: {answer}");
        }
        assert_eq!(rows(&url).await, before, "a refused request wrote a row");
        // A refused request keeps no record of its key: the same key, now with a valid body, runs.
        let headers = [("idempotency-key", "refused-7")];
        let valid = json!({"id": "late", "name": "Late"}).to_string();
        let (status, _) = app.raw(Method::POST, "/v1/customers", Some(ADMIN), Some(valid), &headers).await;
        assert_eq!(status, StatusCode::CREATED);
    })
    .await;
}

#[tokio::test]
async fn idempotency_records_replay_within_a_day_and_are_purged_after() {
    on_every_backend(|app, url| async move {
        let create = |key: &'static str| {
            let app = &app;
            async move {
                let body = json!({"id": "acme", "name": "Acme"}).to_string();
                app.raw(Method::POST, "/v1/customers", Some(ADMIN), Some(body), &[("idempotency-key", key)])
                    .await
            }
        };
        let (status, first) = create("k").await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        assert_eq!(rows(&url).await["idempotency_keys"], 1);
        // 23 hours later: replayed (201 again, the key shown once: null), and nothing to purge.
        app.set_now("2026-11-21T11:00:00Z");
        let (status, replay) = create("k").await;
        assert_eq!((status, &replay["customer"]), (StatusCode::CREATED, &first["customer"]));
        assert_eq!(replay["api_key"], Value::Null);
        assert_eq!(app.state.service.purge_idempotent().await.unwrap(), 0);
        // 25 hours later: purged; the same key runs the request afresh (the customer exists: 200).
        app.set_now("2026-11-21T13:00:00Z");
        assert_eq!(app.state.service.purge_idempotent().await.unwrap(), 1);
        assert_eq!(rows(&url).await["idempotency_keys"], 0);
        let (status, again) = create("k").await;
        assert_eq!(status, StatusCode::OK, "{again}");
    })
    .await;
}
