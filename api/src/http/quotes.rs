//! `/v1/quotes` and `/v1/commitment-advice`: billing-core under the version in force, for anyone.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::extract::{check_json_type, decimal_field, json_body, Body};
use super::state::AppState;
use crate::app::Failure;

pub(super) async fn quote(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    check_json_type(&headers)?;
    if billing_core::wire::too_large("request", body.len()).is_some() {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "a quote request is at most 1 MiB",
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", "the body is not UTF-8"))?;
    match state.service.quote_json(text) {
        Ok(json) => {
            Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response())
        }
        // The body is read once; only a problem at its root can be malformed JSON (400) rather than a bad request
        // (422), so only then is it parsed again to tell which.
        Err(Failure::Invalid(issues)) if issues.iter().any(|i| i.path.is_empty()) => {
            match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string())),
                Ok(_) => Err(ApiError::invalid(issues)),
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdviceRequest {
    monthly_estimate: Value,
}

/// `POST /v1/commitment-advice`: the yearly credit that makes `monthly_estimate` cheapest over twelve months,
/// beside no commitment (billing-core's `commitment_advice` under the version in force).
pub(super) async fn commitment_advice(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Json<billing_core::CommitmentAdvice>> {
    let request: AdviceRequest = json_body(&headers, &body)?;
    let estimate = decimal_field("monthly_estimate", &request.monthly_estimate)?;
    let advice = state.service.commitment_advice(estimate)?;
    Ok(Json(advice))
}
