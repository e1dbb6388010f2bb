//! The HTTP API: the router, assembled from one module per resource, and what every route shares.
//!
//! A request passes, in order: the request log, the body limit, routing, [`auth::guard`] (the route's access from
//! the table in [`openapi`]), [`idempotency`] (POST with an `Idempotency-Key`), then a thin handler that takes its
//! caller as a typed argument ([`auth::Admin`], [`auth::CustomerScope`], [`auth::Authenticated`]), parses the
//! body into the use-case's terms, calls [`crate::app`], and presents the result. Every error leaves through
//! [`ApiError`] as `{"error": {"code", "message", "details"}}` with the right status; nothing answers 500 for bad
//! input.

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

mod assets;
pub mod auth;
mod billing;
mod credits;
mod customers;
pub mod error;
mod extract;
pub mod idempotency;
mod invoices;
mod limits;
pub mod openapi;
pub mod page;
mod portal;
mod price_books;
mod quotes;
pub mod render;
pub mod routes;
mod state;
mod usage;
mod views;
mod webhooks;

pub use assets::Assets;
pub use error::{ApiError, ApiResult, Detail};
pub use state::{AppState, Seller};
pub use usage::MAX_BATCH;

/// The router, with its middleware: request logs, the body limit, access, idempotency keys.
pub fn router(state: AppState, max_body: usize) -> Router {
    // Leptos (the pricing page) spawns on a global executor: tokio's. An error only says it was set already.
    let _ = any_spawner::Executor::init_tokio();
    let one_endpoint =
        get(webhooks::get_endpoint).patch(webhooks::change_endpoint).delete(webhooks::delete_endpoint);
    let mut router = Router::new()
        // The pricing page (HTML, compressed: it is the one large response a browser waits for).
        .route("/", get(page::page).layer(tower_http::compression::CompressionLayer::new()))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/v1/price-book", get(price_books::price_book))
        .route("/v1/price-books", get(price_books::price_books).post(price_books::publish_price_book))
        .route("/v1/price-books/preview", post(price_books::preview_price_book))
        .route("/v1/quotes", post(quotes::quote))
        .route("/v1/commitment-advice", post(quotes::commitment_advice))
        .route("/v1/customers", get(customers::list_customers).post(customers::create_customer))
        .route("/v1/customers/{id}", get(customers::get_customer).patch(customers::update_customer))
        .route("/v1/customers/{id}/api-keys", post(customers::new_api_key))
        .route("/v1/customers/{id}/usage", get(usage::usage_view))
        .route("/v1/customers/{id}/limits", get(limits::get_limits).put(limits::put_limits))
        .route("/v1/customers/{id}/alerts", get(limits::alerts))
        .route("/v1/usage", post(usage::ingest))
        .route("/v1/customers/{id}/commitments", post(credits::create_commitment))
        .route("/v1/customers/{id}/credits", get(credits::credits))
        .route("/v1/invoice-runs", post(invoices::create_run))
        .route("/v1/invoice-runs/{id}", get(invoices::get_run))
        .route("/v1/invoices", get(invoices::list_invoices))
        .route("/v1/invoices/{id}", get(invoices::get_invoice))
        .route("/v1/invoices/{id}/issue", post(invoices::issue_invoice))
        .route("/v1/invoices/{id}/pay", post(invoices::pay_invoice))
        .route("/v1/invoices/{id}/void", post(invoices::void_invoice))
        .route("/v1/customers/{id}/portal-sessions", post(portal::create_portal_session))
        .route("/v1/portal-sessions/{id}/revoke", post(portal::revoke_portal_session))
        .route("/v1/customers/{id}/limits/history", get(portal::limit_history))
        .route("/v1/events", get(webhooks::events))
        .route("/v1/events/{id}", get(webhooks::event))
        .route("/v1/webhook-endpoints", get(webhooks::list_endpoints).post(webhooks::create_endpoint))
        .route("/v1/webhook-endpoints/{id}", one_endpoint)
        .route("/v1/webhook-endpoints/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/v1/webhook-endpoints/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhook-deliveries/{id}/retry", post(webhooks::retry_delivery))
        .route("/billing/sessions/{id}", get(billing::open_link))
        .route("/billing", get(billing::billing_page).layer(tower_http::compression::CompressionLayer::new()))
        .route("/billing/limits", post(billing::save_cap))
        .route("/billing/invoices/{id}", get(billing::invoice))
        // Inside out: who may call (the table), then the Idempotency-Key, then the handler.
        .route_layer(middleware::from_fn_with_state(state.clone(), idempotency::idempotency))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::guard));
    if let Some(site) = &state.assets.site {
        // The wasm bundle, precompressed by scripts/build-ui (gzip; brotli too when it had the tool); revalidated
        // on every load, as its names carry no hash.
        let files = tower_http::services::ServeDir::new(site.join("pkg"))
            .precompressed_gzip()
            .precompressed_br()
            .fallback(axum::handler::HandlerWithoutStateExt::into_service(not_found));
        router = router.nest(
            "/pkg",
            Router::new().fallback_service(files).layer(middleware::map_response(revalidate_assets)),
        );
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Static files (`/pkg/…`) are revalidated on every load: their names stay the same from one build to the next.
async fn revalidate_assets(mut response: Response) -> Response {
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.service.ping().await {
        Ok(()) => Json(views::Health { status: "ok" }).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(views::Health { status: "unavailable" })).into_response()
        }
    }
}

async fn openapi() -> Json<&'static Value> {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(openapi::document))
}

/// One log line per request: method, path, status, latency. Never headers (keys are secrets), nor a portal link's
/// token (a secret in the path).
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = match request.uri().path() {
        p if p.starts_with("/billing/sessions/") => "/billing/sessions/…".to_owned(),
        p => p.to_owned(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX), "request");
    response
}
