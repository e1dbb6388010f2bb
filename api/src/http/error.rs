//! The one error of the API: every failure leaves as `{"error": {"code", "message", "details"}}` with the right
//! status. `From<Failure>` is the only place a use-case's failure becomes a status; nothing answers 500 for bad
//! input.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::app::Failure;

/// The body of every error: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: ErrorDetail,
}

/// An error: a stable code, a sentence, and (for validation) every problem; `details` is left out when empty.
#[derive(Debug, Serialize)]
struct ErrorDetail {
    code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<Detail>,
    message: String,
}

/// One problem in an error's `details`.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    /// What is wrong.
    pub message: String,
    /// JSON path of the field at fault.
    pub path: String,
}

/// The one error of the API: a status, a stable code, a message, and (for validation) every problem.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<Detail>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Vec::new() }
    }

    pub(crate) fn invalid(issues: Vec<billing_core::Issue>) -> Self {
        let n = issues.len();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: format!("the request is not valid ({n} problem{})", if n == 1 { "" } else { "s" }),
            details: issues.into_iter().map(|i| Detail { path: i.path, message: i.message }).collect(),
        }
    }

    /// A validation error's problems, to be listed with others.
    pub(crate) fn into_issues(self) -> Vec<billing_core::Issue> {
        self.details.into_iter().map(|d| billing_core::Issue::new(d.path, d.message)).collect()
    }

    /// Whether the request was refused before it could change anything: its credential (401, 403), what it names
    /// (404), its method (405) or its body (400, 413, 415, 422). Such a request is evaluated afresh when retried,
    /// so no idempotency record is kept for it.
    pub(crate) fn is_refusal(status: StatusCode) -> bool {
        matches!(status.as_u16(), 400 | 401 | 403 | 404 | 405 | 413 | 415 | 422)
    }

    pub(crate) fn unauthorized() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required")
    }

    pub(crate) fn forbidden() -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this credential may not do that")
    }

    pub(crate) fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Invalid(issues) => ApiError::invalid(issues),
            Failure::NotFound(what) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
            }
            Failure::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            Failure::Closed(m) => ApiError::new(StatusCode::CONFLICT, "period_closed", m),
            Failure::InvalidState(m) => ApiError::new(StatusCode::CONFLICT, "invalid_state", m),
            // Inputs are bounded at the edge, so an overflow is an amount no real book reaches: still the
            // caller's input, answered 422, never a 500.
            Failure::Overflow(e) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "amount_out_of_range", e.to_string())
            }
            Failure::Store(e) => ApiError::internal(&e),
            Failure::Internal(m) => ApiError::internal(&m),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = ErrorBody {
            error: ErrorDetail { code: self.code, details: self.details, message: self.message },
        };
        (self.status, Json(error)).into_response()
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
