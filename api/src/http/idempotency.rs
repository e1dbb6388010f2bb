//! `Idempotency-Key` on every POST, as Stripe does it: the same key and body within 24 hours replays the stored
//! response; another body → 409 `idempotency_conflict`; while the first is running → 409 `idempotency_in_progress`.
//! A key is scoped to its credential, method and path. Secrets are never stored: a handler whose answer holds one
//! says which fields with `ShownOnce`, and a replay shows them null.
//!
//! It is a route layer inside [`super::auth::guard`]: a request the guard refuses (401, 403) never reaches it, so
//! no credential-less request writes a row. A request the handler refuses (400, 404, 405, 413, 415, 422) or fails
//! (5xx) releases its claim: only a request that ran keeps its record, and a refused one is evaluated afresh when
//! retried. Records older than a day ([`crate::store::IDEMPOTENCY_KEEP_MICROS`]) are expired when claimed again
//! and purged by [`purge_expired`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::ApiError;
use super::state::AppState;
use crate::app::Service;
use crate::secret::{hash_secret, hex, sha256_hex};
use crate::store::Idempotent;

/// The fields of an answer that hold a secret shown once (a new API key, a portal link holding its token): a
/// handler puts it in its response's extensions; the answer kept for replays has them null.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShownOnce(pub(super) &'static [&'static str]);

/// Marks the secret fields of `response` (see [`ShownOnce`]).
pub(super) fn shown_once(mut response: Response, fields: &'static [&'static str]) -> Response {
    response.extensions_mut().insert(ShownOnce(fields));
    response
}

/// The one POST that writes nothing and whose answer is too large to keep: a key on it is ignored.
const READ_ONLY_POST: &str = "/v1/price-books/preview";

/// The middleware: claim the key, run the request, store its answer (or release the claim).
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Billing-page forms are not API calls: a browser sends no key, and each form carries its session's token. A
    // price preview writes nothing, so there is nothing to do once; and its answer (every customer) is not kept.
    if request.method() != Method::POST
        || request.extensions().get::<super::auth::Portal>().is_some()
        || request.uri().path() == READ_ONLY_POST
    {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned)
    else {
        return next.run(request).await;
    };
    if key.is_empty() || key.len() > 255 {
        return ApiError::invalid(vec![billing_core::Issue::new(
            "Idempotency-Key",
            "must be 1–255 characters",
        )])
        .into_response();
    }
    let credential =
        request.headers().get(header::AUTHORIZATION).map(|v| hex(&hash_secret(v.to_str().unwrap_or(""))));
    let scope = format!("{}|POST|{}", credential.unwrap_or_default(), request.uri().path());
    let (parts, body) = request.into_parts();
    // Read within the body limit: `DefaultBodyLimit` only tells extractors, and this runs before them.
    let Ok(bytes) = axum::body::to_bytes(body, state.max_body).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is too large")
            .into_response();
    };
    let service = &state.service;
    match service.claim_idempotent(&scope, &key, &sha256_hex(&bytes)).await {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(Idempotent::Conflict) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                "this Idempotency-Key was used with another request body",
            )
            .into_response()
        }
        Ok(Idempotent::InProgress) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still running",
            )
            .into_response()
        }
        Ok(Idempotent::Replay { status, body }) => return replay(status, body),
        Ok(Idempotent::Claimed) => {}
    }
    let response = next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await;
    let status = response.status();
    if status.is_server_error() || ApiError::is_refusal(status) {
        if let Err(e) = service.release_idempotent(&scope, &key).await {
            tracing::error!(error = %e, "cannot release an idempotency key");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let stored = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) => {
            let secrets = parts.extensions.get::<ShownOnce>().map_or(&[][..], |s| s.0);
            for field in secrets {
                if let Some(secret) = v.get_mut(*field) {
                    *secret = Value::Null;
                }
            }
            v.to_string()
        }
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    if let Err(e) = service.finish_idempotent(&scope, &key, i64::from(status.as_u16()), &stored).await {
        tracing::error!(error = %e, "cannot store an idempotent response");
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// The stored answer of a key, again.
fn replay(status: i64, body: String) -> Response {
    let status =
        u16::try_from(status).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Purges the records older than a day every `every`, until the process ends: the table holds at most a day of
/// keys. Safe with several instances on one database: each purge is one `DELETE … WHERE created_at < …`, and two
/// purges at once delete each row once.
pub fn purge_expired(service: Arc<Service>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match service.purge_idempotent().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "expired idempotency keys purged"),
                Err(e) => tracing::warn!(error = %e, "cannot purge expired idempotency keys"),
            }
        }
    })
}
