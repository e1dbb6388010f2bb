//! `/v1/price-book` and `/v1/price-books`: the version in force, the published versions, publishing one, and
//! previewing a draft against every customer.

use axum::extract::State;
use std::sync::Arc;

use crate::app::{PreviewPeriod, DEFAULT_TOP, MAX_TOP};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use billing_core::PriceBook;
use serde_json::Value;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{json_value, page, parse_instant, Body, PageQuery, Q};
use super::state::AppState;
use super::views::{Page, PriceBookVersion};

pub(super) async fn price_book(State(state): State<AppState>) -> ApiResult<Response> {
    let book = state.service.book_at(state.service.now());
    Ok(Json(&*book).into_response())
}

pub(super) async fn price_books(
    State(state): State<AppState>,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<PriceBookVersion>>> {
    let versions: Vec<PriceBookVersion> =
        state.service.versions().iter().map(|v| PriceBookVersion::of(v)).collect();
    Ok(Json(page(versions, &q)?))
}

pub(super) async fn publish_price_book(
    State(state): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    let mut fields = object_of(&headers, &body, "{\"price_book\": {...}, \"in_force_at\": \"<RFC 3339>\"}")?;
    let in_force_at = match fields.remove("in_force_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_instant("in_force_at", &s)?),
        Some(_) => return Err(invalid("in_force_at", "expected an RFC 3339 instant")),
    };
    let book = draft_book(&mut fields, "`price_book`, `in_force_at`")?;
    let version = state.service.publish(&book, in_force_at).await?;
    Ok((StatusCode::CREATED, Json(PriceBookVersion::of(&version))).into_response())
}

/// `POST /v1/price-books/preview`: what a draft book would do to every customer (nothing is written).
pub(super) async fn preview_price_book(
    State(state): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    let mut fields =
        object_of(&headers, &body, "{\"price_book\": {...}, \"period\": \"YYYY-MM\" | \"open\"}")?;
    let period = match fields.remove("period") {
        None | Some(Value::Null) => PreviewPeriod::Month(None),
        Some(Value::String(s)) => PreviewPeriod::parse("period", &s)?,
        Some(_) => return Err(invalid("period", "expected a month `YYYY-MM` or `open`")),
    };
    let top = match fields.remove("top") {
        None | Some(Value::Null) => DEFAULT_TOP,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n <= MAX_TOP)
            .ok_or_else(|| invalid("top", format!("expected a whole number from 0 to {MAX_TOP}")))?,
        Some(_) => return Err(invalid("top", format!("expected a whole number from 0 to {MAX_TOP}"))),
    };
    let book = draft_book(&mut fields, "`price_book`, `period`, `top`")?;
    let preview = state.service.reprice(Arc::new(book), period, top, Arc::new(|_, _| {})).await?;
    let body = serde_json::to_vec(&preview).map_err(|e| ApiError::internal(&e))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn invalid(path: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(vec![billing_core::Issue::new(path, message)])
}

/// The body as a JSON object.
fn object_of(
    headers: &HeaderMap,
    body: &axum::body::Bytes,
    shape: &str,
) -> ApiResult<serde_json::Map<String, Value>> {
    match json_value(headers, body)? {
        Value::Object(fields) => Ok(fields),
        _ => Err(invalid("", format!("expected {shape}"))),
    }
}

/// The `price_book` field, read and validated as a price book (every problem, under `price_book.`), once every
/// other field has been taken: what is left is refused (`expected` names the fields).
fn draft_book(fields: &mut serde_json::Map<String, Value>, expected: &str) -> ApiResult<PriceBook> {
    let book = fields.remove("price_book").ok_or_else(|| invalid("price_book", "is required"))?;
    if let Some(extra) = fields.keys().next() {
        return Err(invalid(
            &billing_core::error::echo(extra),
            format!("unknown field, expected {expected}"),
        ));
    }
    PriceBook::from_json(&book.to_string()).map_err(|e| {
        ApiError::invalid(
            e.issues()
                .iter()
                .map(|i| {
                    let path = if i.path.is_empty() {
                        "price_book".to_owned()
                    } else {
                        format!("price_book.{}", i.path)
                    };
                    billing_core::Issue::new(path, i.message.clone())
                })
                .collect(),
        )
    })
}
