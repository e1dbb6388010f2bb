//! `/v1/price-book` and `/v1/price-books`: the version in force, the published versions, publishing one.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
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
    let value = json_value(&headers, &body)?;
    let Value::Object(mut fields) = value else {
        return Err(ApiError::invalid(vec![billing_core::Issue::new(
            "",
            "expected {\"price_book\": {...}, \"in_force_at\": \"<RFC 3339>\"}",
        )]));
    };
    let in_force_at = match fields.remove("in_force_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_instant("in_force_at", &s)?),
        Some(_) => {
            return Err(ApiError::invalid(vec![billing_core::Issue::new(
                "in_force_at",
                "expected an RFC 3339 instant",
            )]))
        }
    };
    let book = fields
        .remove("price_book")
        .ok_or_else(|| ApiError::invalid(vec![billing_core::Issue::new("price_book", "is required")]))?;
    if let Some(extra) = fields.keys().next() {
        return Err(ApiError::invalid(vec![billing_core::Issue::new(
            billing_core::error::echo(extra),
            "unknown field, expected `price_book`, `in_force_at`",
        )]));
    }
    let book = PriceBook::from_json(&book.to_string()).map_err(|e| {
        ApiError::invalid(
            e.issues()
                .iter()
                .map(|i| {
                    billing_core::Issue::new(
                        if i.path.is_empty() {
                            "price_book".to_owned()
                        } else {
                            format!("price_book.{}", i.path)
                        },
                        i.message.clone(),
                    )
                })
                .collect(),
        )
    })?;
    let version = state.service.publish(&book, in_force_at).await?;
    Ok((StatusCode::CREATED, Json(PriceBookVersion::of(&version))).into_response())
}
