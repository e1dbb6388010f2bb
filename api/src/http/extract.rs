//! What handlers read from a request: the body (within the limit), the path's id, the query, JSON bodies (always
//! an object), pages of lists, instants.

use axum::body::Bytes;
use axum::extract::{Path, Request};
use axum::http::{header, HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::views::Page;

/// A request body, read within the body limit; over it, 413 in the API's error shape.
#[derive(Debug)]
pub(super) struct Body(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is larger than the server accepts",
            )),
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", e.body_text())),
        }
    }
}

/// The `{id}` of a path. Any rejection (an id that is not UTF-8 once decoded…) answers in the API's error shape:
/// such an id cannot name a customer, so 404.
#[derive(Debug)]
pub(super) struct Id(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Id(id)),
            Err(_) => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")),
        }
    }
}

/// The body as JSON of type `T`: 415 without a JSON content type, 400 when it is not JSON, 422 when it is JSON
/// of the wrong shape (naming the field). The body must be an object: serde's derived structs would also read a
/// JSON array as their fields in order (`["acme", "Acme Inc"]` as a customer), a form no route documents.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> ApiResult<T> {
    let value = json_value(headers, body)?;
    if !value.is_object() {
        return Err(ApiError::invalid(vec![billing_core::Issue::new(
            "",
            format!("expected an object, found {}", json_kind(&value)),
        )]));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        ApiError::invalid(vec![billing_core::Issue::new(
            billing_core::error::echo(e.path().to_string().trim_start_matches('.')),
            billing_core::error::echo(&e.inner().to_string()),
        )])
    })
}

/// What a JSON value is, for messages (`found an array`).
pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn json_value(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    check_json_type(headers)?;
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()))
}

pub(super) fn check_json_type(headers: &HeaderMap) -> ApiResult<()> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send `Content-Type: application/json`",
        ))
    }
}

/// `?limit=&cursor=` of every list route.
#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    pub(super) limit: Option<String>,
    pub(super) cursor: Option<String>,
}

impl PageQuery {
    pub(super) fn limit(&self) -> ApiResult<usize> {
        match &self.limit {
            None => Ok(50),
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=500).contains(&n) => Ok(n),
                _ => Err(ApiError::invalid(vec![billing_core::Issue::new(
                    "limit",
                    "must be an integer from 1 to 500",
                )])),
            },
        }
    }

    /// The cursor of a list paged newest first by sequence number: the `seq` the previous page ended at.
    pub(super) fn before(&self) -> ApiResult<Option<i64>> {
        self.cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>().map_err(|_| {
                    ApiError::invalid(vec![billing_core::Issue::new(
                        "cursor",
                        "is not a cursor this list gave",
                    )])
                })
            })
            .transpose()
    }
}

/// A page of a list paged newest first by sequence number, from the rows read for it (`limit` + 1 asked for: one
/// more than fits says there is a next page, which starts after the last row shown).
pub(super) fn page_before<R, T: Serialize>(
    rows: &[R],
    limit: usize,
    seq: impl Fn(&R) -> i64,
    view: impl Fn(&R) -> ApiResult<T>,
) -> ApiResult<Page<T>> {
    let next_cursor =
        (rows.len() > limit).then(|| rows.get(limit.saturating_sub(1)).map(|r| seq(r).to_string())).flatten();
    let data = rows.iter().take(limit).map(view).collect::<ApiResult<_>>()?;
    Ok(Page { data, next_cursor })
}

/// The query string as `T`, with axum's parser (serde_urlencoded); a query it cannot read is 422 in the API's shape.
#[derive(Debug)]
pub(super) struct Q<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(q)) => Ok(Q(q)),
            Err(e) => Err(ApiError::invalid(vec![billing_core::Issue::new(
                "query",
                billing_core::error::echo(&e.body_text()),
            )])),
        }
    }
}

/// A page of a list already in memory, by offset cursor.
pub(super) fn page<T: Serialize>(items: Vec<T>, q: &PageQuery) -> ApiResult<Page<T>> {
    let limit = q.limit()?;
    let start = match &q.cursor {
        None => 0,
        Some(c) => c.parse::<usize>().map_err(|_| {
            ApiError::invalid(vec![billing_core::Issue::new("cursor", "is not a cursor this list gave")])
        })?,
    };
    let end = (start + limit).min(items.len());
    let next_cursor = (end < items.len()).then(|| end.to_string());
    let data: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    Ok(Page { data, next_cursor })
}

pub(super) fn parse_instant(path: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    value.parse::<DateTime<Utc>>().map_err(|_| {
        ApiError::invalid(vec![billing_core::Issue::new(
            path,
            format!(
                "`{}` is not an RFC 3339 instant such as \"2026-11-01T00:00:00Z\"",
                billing_core::error::echo(value)
            ),
        )])
    })
}

/// `?at=` of the views of a moment.
#[derive(Debug, Deserialize)]
pub(super) struct AtQuery {
    pub(super) at: Option<String>,
}

impl AtQuery {
    /// The instant asked for, or `now` when none is: 422 for one that is not RFC 3339.
    pub(super) fn instant_or(&self, now: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
        self.at.as_deref().map_or(Ok(now), |a| parse_instant("at", a))
    }
}

/// A decimal field of a body: a decimal string, or a JSON integer (never a float: its binary value is not the
/// decimal written).
pub(super) fn decimal_field(path: &str, value: &Value) -> ApiResult<Decimal> {
    let parsed = match value {
        Value::String(s) => billing_core::wire::parse_decimal(s),
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().map(Decimal::from).unwrap_or_default()),
        _ => Err("expected a decimal string such as \"25000\"".to_owned()),
    };
    parsed.map_err(|m| ApiError::invalid(vec![billing_core::Issue::new(path, m)]))
}
