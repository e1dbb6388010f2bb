//! The HTTP API: routes, the one error shape, authentication, idempotency keys, request logs.
//!
//! Handlers are thin: they authenticate, parse the body into the service's terms, call a use-case of
//! [`crate::service`], and present the result. Every error leaves through [`ApiError`] as
//! `{"error": {"code", "message", "details"}}` with the right status; nothing answers 500 for bad input.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use billing_core::{PriceBook, Quantity};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::service::{self, Batch, Failure, Service};
use crate::store::{CustomerRow, Idempotent, NewEvent, NewReport};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The use-cases.
    pub service: Arc<Service>,
    /// SHA-256 of the admin token.
    pub admin_hash: [u8; 32],
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// How invoice runs started over HTTP work, and the prefix of invoice numbers.
    pub run_settings: crate::invoicing::RunSettings,
    /// The pricing page's wasm bundle, when there is one.
    pub assets: Arc<crate::page::Assets>,
}

/// The most events or reports in one `POST /v1/usage`.
pub const MAX_BATCH: usize = 10_000;

/// The router, with its middleware: request logs, idempotency keys, the body limit.
pub fn router(state: AppState, max_body: usize) -> Router {
    // Leptos (the pricing page) spawns on a global executor: tokio's. An error only says it was set already.
    let _ = any_spawner::Executor::init_tokio();
    let mut router = Router::new()
        // The pricing page (HTML, compressed: it is the one large response a browser waits for).
        .route("/", get(crate::page::page).layer(tower_http::compression::CompressionLayer::new()))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/v1/price-book", get(price_book))
        .route("/v1/price-books", get(price_books).post(publish_price_book))
        .route("/v1/quotes", post(quote))
        .route("/v1/commitment-advice", post(commitment_advice))
        .route("/v1/customers", get(list_customers).post(create_customer))
        .route("/v1/customers/{id}", get(get_customer).patch(update_customer))
        .route("/v1/customers/{id}/api-keys", post(new_api_key))
        .route("/v1/customers/{id}/usage", get(usage_view))
        .route("/v1/customers/{id}/limits", get(get_limits).put(put_limits))
        .route("/v1/customers/{id}/alerts", get(alerts))
        .route("/v1/usage", post(ingest))
        .route("/v1/customers/{id}/commitments", post(create_commitment))
        .route("/v1/customers/{id}/credits", get(credits))
        .route("/v1/invoice-runs", post(create_run))
        .route("/v1/invoice-runs/{id}", get(get_run))
        .route("/v1/invoices", get(list_invoices))
        .route("/v1/invoices/{id}", get(get_invoice))
        .route("/v1/invoices/{id}/issue", post(issue_invoice))
        .route("/v1/invoices/{id}/pay", post(pay_invoice))
        .route("/v1/invoices/{id}/void", post(void_invoice));
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
        .layer(middleware::from_fn_with_state(state.clone(), idempotency))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------------------------
// Errors.

/// One problem in an error's `details`.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    /// JSON path of the field at fault.
    pub path: String,
    /// What is wrong.
    pub message: String,
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

    fn invalid(issues: Vec<billing_core::Issue>) -> Self {
        let n = issues.len();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: format!("the request is not valid ({n} problem{})", if n == 1 { "" } else { "s" }),
            details: issues.into_iter().map(|i| Detail { path: i.path, message: i.message }).collect(),
        }
    }

    fn unauthorized() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required")
    }

    fn forbidden() -> Self {
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
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.details.is_empty() {
            error["details"] = json!(self.details);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

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

// ---------------------------------------------------------------------------------------------------------------
// Authentication.

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin token.
    Admin,
    /// A customer's key.
    Customer(String),
}

/// SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A secret as hex text.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A new random secret: a prefix and 32 random bytes in hex.
///
/// # Errors
/// When the operating system has no randomness to give.
pub fn new_secret(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0_u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

async fn caller(state: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(ApiError::unauthorized)?;
    let hash = hash_secret(token);
    if bool::from(hash.ct_eq(&state.admin_hash)) {
        return Ok(Caller::Admin);
    }
    // A key is found by its hash: the lookup never sees the key, and a guess reveals nothing by its timing.
    match state.service.store().key_owner(&hex(&hash)).await? {
        Some(customer) => Ok(Caller::Customer(customer)),
        None => Err(ApiError::unauthorized()),
    }
}

async fn admin(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    match caller(state, headers).await? {
        Caller::Admin => Ok(()),
        Caller::Customer(_) => Err(ApiError::forbidden()),
    }
}

/// The admin, or the customer `id` itself.
async fn admin_or_own(state: &AppState, headers: &HeaderMap, id: &str) -> ApiResult<Caller> {
    let who = caller(state, headers).await?;
    match &who {
        Caller::Customer(own) if own != id => Err(ApiError::forbidden()),
        _ => Ok(who),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Bodies, queries, pages.

/// A request body, read within the body limit; over it, 413 in the API's error shape.
#[derive(Debug)]
pub struct Body(pub Bytes);

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
pub struct Id(pub String);

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
fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> ApiResult<T> {
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
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn json_value(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    check_json_type(headers)?;
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()))
}

fn check_json_type(headers: &HeaderMap) -> ApiResult<()> {
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
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl PageQuery {
    fn limit(&self) -> ApiResult<usize> {
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
}

/// The query string as `T`, with axum's parser (serde_urlencoded); a query it cannot read is 422 in the API's shape.
#[derive(Debug)]
pub struct Q<T>(pub T);

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
fn page<T: Serialize>(items: Vec<T>, q: &PageQuery) -> ApiResult<Value> {
    let limit = q.limit()?;
    let start = match &q.cursor {
        None => 0,
        Some(c) => c.parse::<usize>().map_err(|_| {
            ApiError::invalid(vec![billing_core::Issue::new("cursor", "is not a cursor this list gave")])
        })?,
    };
    let end = (start + limit).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    let data: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    Ok(json!({"data": data, "next_cursor": next}))
}

fn rfc3339(micros: i64) -> ApiResult<String> {
    Ok(service::instant(micros).map_err(ApiError::from)?.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn parse_instant(path: &str, value: &str) -> ApiResult<DateTime<Utc>> {
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

// ---------------------------------------------------------------------------------------------------------------
// Health, price books, quotes.

async fn healthz(State(state): State<AppState>) -> Response {
    match state.service.store().ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable"}))).into_response()
        }
    }
}

async fn openapi() -> Json<&'static Value> {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(crate::openapi::document))
}

async fn price_book(State(state): State<AppState>) -> ApiResult<Response> {
    let book = state.service.book_at(state.service.now());
    Ok(Json(&*book).into_response())
}

fn version_json(v: &service::Version) -> Value {
    json!({"version": v.book.version(), "in_force_at": v.in_force_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
           "currency": v.book.currency().code()})
}

async fn price_books(State(state): State<AppState>, Q(q): Q<PageQuery>) -> ApiResult<Json<Value>> {
    let versions: Vec<Value> = state.service.versions().iter().map(|v| version_json(v)).collect();
    Ok(Json(page(versions, &q)?))
}

async fn publish_price_book(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    admin(&state, &headers).await?;
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
    Ok((StatusCode::CREATED, Json(version_json(&version))).into_response())
}

async fn quote(State(state): State<AppState>, headers: HeaderMap, Body(body): Body) -> ApiResult<Response> {
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
async fn commitment_advice(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let request: AdviceRequest = json_body(&headers, &body)?;
    let estimate = decimal_field("monthly_estimate", &request.monthly_estimate)?;
    let advice = state.service.commitment_advice(estimate)?;
    Ok(Json(serde_json::to_value(&advice).map_err(|e| ApiError::internal(&e))?))
}

// ---------------------------------------------------------------------------------------------------------------
// Customers.

fn customer_json(c: &CustomerRow) -> ApiResult<Value> {
    Ok(json!({
        "id": c.id,
        "name": c.name,
        "billing_anchor": rfc3339(c.billing_anchor)?,
        "addons": c.addons.iter().filter(|a| a.until.is_none()).map(|a| a.key.clone()).collect::<Vec<_>>(),
        "created_at": rfc3339(c.created_at)?,
        "updated_at": rfc3339(c.updated_at)?,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCustomer {
    id: String,
    name: String,
    #[serde(default)]
    billing_anchor: Option<String>,
    #[serde(default)]
    addons: Vec<String>,
}

fn check_id(id: &str) -> Result<(), billing_core::Issue> {
    let ok = (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(billing_core::Issue::new(
            "id",
            format!("`{}` must be 1–64 characters of A-Z a-z 0-9 _ . -", billing_core::error::echo(id)),
        ))
    }
}

async fn create_customer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    admin(&state, &headers).await?;
    let new: NewCustomer = json_body(&headers, &body)?;
    let mut issues = Vec::new();
    if let Err(i) = check_id(&new.id) {
        issues.push(i);
    }
    if new.name.trim().is_empty() || new.name.len() > 256 {
        issues.push(billing_core::Issue::new("name", "must be 1–256 characters"));
    }
    let anchor = match &new.billing_anchor {
        None => None,
        Some(a) => match parse_instant("billing_anchor", a) {
            Ok(t) => Some(t),
            Err(e) => {
                issues.extend(e.details.into_iter().map(|d| billing_core::Issue::new(d.path, d.message)));
                None
            }
        },
    };
    if !issues.is_empty() {
        return Err(ApiError::invalid(issues));
    }
    // A replayed creation (same id, same fields) answers the customer again, without its key (shown once).
    if let Some(existing) = state.service.store().customer(&new.id).await? {
        let same = existing.name == new.name
            && existing.addons.iter().filter(|a| a.until.is_none()).map(|a| &a.key).eq(new.addons.iter())
            && anchor.is_none_or(|a| service::micros(a) == existing.billing_anchor);
        if same {
            return Ok((
                StatusCode::OK,
                Json(json!({"customer": customer_json(&existing)?, "api_key": null})),
            )
                .into_response());
        }
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("customer `{}` already exists", new.id),
        ));
    }
    let key = new_secret("tk_").map_err(|e| ApiError::internal(&e))?;
    let row = state
        .service
        .create_customer(&new.id, &new.name, anchor, &new.addons, &hex(&hash_secret(&key)))
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"customer": customer_json(&row)?, "api_key": key}))).into_response())
}

async fn list_customers(
    State(state): State<AppState>,
    headers: HeaderMap,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Value>> {
    admin(&state, &headers).await?;
    let limit = q.limit()?;
    let rows = state
        .service
        .store()
        .customers(q.cursor.as_deref(), i64::try_from(limit + 1).unwrap_or(501))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let more = rows.len() > limit;
    let data: Vec<Value> = rows.iter().take(limit).map(customer_json).collect::<ApiResult<_>>()?;
    let next = more.then(|| rows[limit - 1].id.clone());
    Ok(Json(json!({"data": data, "next_cursor": next})))
}

async fn get_customer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    admin_or_own(&state, &headers, &id).await?;
    Ok(Json(customer_json(&state.service.customer(&id).await?)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerChanges {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    addons: Option<Vec<String>>,
}

async fn update_customer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    admin(&state, &headers).await?;
    let changes: CustomerChanges = json_body(&headers, &body)?;
    if changes.name.as_ref().is_some_and(|n| n.trim().is_empty() || n.len() > 256) {
        return Err(ApiError::invalid(vec![billing_core::Issue::new("name", "must be 1–256 characters")]));
    }
    let row = state.service.update_customer(&id, changes.name, changes.addons).await?;
    Ok(Json(customer_json(&row)?))
}

async fn new_api_key(State(state): State<AppState>, headers: HeaderMap, Id(id): Id) -> ApiResult<Response> {
    admin(&state, &headers).await?;
    state.service.customer(&id).await?;
    let key = new_secret("tk_").map_err(|e| ApiError::internal(&e))?;
    state
        .service
        .store()
        .rotate_key(&id, &hex(&hash_secret(&key)), service::micros(state.service.now()))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok((StatusCode::CREATED, Json(json!({"customer_id": id, "api_key": key}))).into_response())
}

// ---------------------------------------------------------------------------------------------------------------
// Usage.

/// A rejected entry of a batch.
#[derive(Debug, Serialize)]
struct Rejected {
    index: usize,
    code: &'static str,
    message: String,
}

fn quantity_of(value: Option<&Value>) -> Result<Quantity, String> {
    let d =
        match value {
            Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Decimal::from(u),
                (None, Some(i)) => Decimal::from(i),
                _ => return Err(
                    "a JSON number with a fraction is read as a binary float: write it as a decimal string"
                        .into(),
                ),
            },
            Some(Value::String(s)) => billing_core::wire::parse_decimal(s)?,
            Some(other) => return Err(format!("expected an integer or a decimal string, found {other}")),
            None => return Err("is required".into()),
        };
    Quantity::new(d)
}

fn text<'a>(entry: &'a Value, field: &str) -> Result<&'a str, String> {
    match entry.get(field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(s),
        Some(Value::String(_)) => Err(format!("`{field}` must be 1–256 characters")),
        Some(_) => Err(format!("`{field}` must be a string")),
        None => Err(format!("`{field}` is required")),
    }
}

async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let who = caller(&state, &headers).await?;
    let value = json_value(&headers, &body)?;
    let (kind, entries) = match &value {
        Value::Object(o) if o.len() == 1 => match o.iter().next() {
            Some((k, Value::Array(a))) if k == "events" || k == "reports" => (k.clone(), a),
            _ => return Err(batch_shape()),
        },
        _ => return Err(batch_shape()),
    };
    if entries.len() > MAX_BATCH {
        return Err(ApiError::invalid(vec![billing_core::Issue::new(
            kind.as_str(),
            format!("at most {MAX_BATCH} entries a batch (got {})", entries.len()),
        )]));
    }
    // A customer key sends its own usage only: one foreign entry refuses the whole batch.
    if let Caller::Customer(own) = &who {
        // (An entry without a customer id names no other customer: it is rejected on its own, below.)
        let foreign = |e: &Value| e.get("customer_id").and_then(Value::as_str).is_some_and(|c| c != own);
        if entries.iter().any(foreign) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a customer key may only send its own customer's usage",
            ));
        }
    }
    let now = state.service.now();
    let mut customers: BTreeMap<String, Option<CustomerRow>> = BTreeMap::new();
    let mut periods: BTreeMap<String, (billing_core::BillingPeriod, Arc<PriceBook>)> = BTreeMap::new();
    let mut rejected = Vec::new();
    let mut batch = Batch::default();
    for (index, entry) in entries.iter().enumerate() {
        let reject = |code: &'static str, message: String| Rejected { index, code, message };
        let checked: Result<(), Rejected> = async {
            if !entry.is_object() {
                return Err(reject("invalid_entry", "expected an object".into()));
            }
            let customer_id = text(entry, "customer_id").map_err(|m| reject("invalid_entry", m))?;
            if !customers.contains_key(customer_id) {
                let row = state
                    .service
                    .store()
                    .customer(customer_id)
                    .await
                    .map_err(|e| reject("internal", e.to_string()))?;
                customers.insert(customer_id.to_owned(), row);
            }
            let Some(Some(customer)) = customers.get(customer_id) else {
                return Err(reject(
                    "unknown_customer",
                    format!("no customer `{}`", billing_core::error::echo(customer_id)),
                ));
            };
            let meter = text(entry, "meter").map_err(|m| reject("invalid_entry", m))?;
            let (time_field, qty_field) =
                if kind == "events" { ("timestamp", "quantity") } else { ("as_of", "value") };
            let at = text(entry, time_field).map_err(|m| reject("invalid_timestamp", m))?;
            let at = at.parse::<DateTime<Utc>>().map_err(|_| {
                reject(
                    "invalid_timestamp",
                    format!("`{}` is not an RFC 3339 instant", billing_core::error::echo(at)),
                )
            })?;
            if at > now + chrono::Duration::minutes(5) {
                return Err(reject(
                    "in_the_future",
                    format!("{at} is more than 5 minutes ahead of the server's clock"),
                ));
            }
            // The period and its price book, computed once per customer and period of the batch, not per event.
            let cached = periods.get(&customer.id).filter(|(p, _)| p.contains(at)).cloned();
            let (period, book) = match cached {
                Some(hit) => hit,
                None => {
                    let period = Service::period_of(customer, at).map_err(|_| {
                        reject(
                            "before_first_period",
                            format!("{at} is before the customer's first billing period"),
                        )
                    })?;
                    let hit = (period, state.service.book_at(period.start()));
                    periods.insert(customer.id.clone(), hit.clone());
                    hit
                }
            };
            if !book.has_meter(meter) {
                return Err(reject(
                    "unknown_meter",
                    format!("no product or add-on is metered by `{}`", billing_core::error::echo(meter)),
                ));
            }
            let quantity = quantity_of(entry.get(qty_field))
                .map_err(|m| reject("invalid_quantity", format!("`{qty_field}`: {m}")))?;
            let micros = service::quantity_micros(quantity)
                .map_err(|_| reject("invalid_quantity", "out of range".into()))?;
            if kind == "events" {
                let id = text(entry, "id").map_err(|m| reject("invalid_entry", m))?;
                batch.events.push((
                    index,
                    NewEvent {
                        customer_id: customer.id.clone(),
                        event_id: id.to_owned(),
                        meter: meter.to_owned(),
                        quantity_micros: micros,
                        occurred_at: service::micros(at),
                        period_start: service::micros(period.start()),
                    },
                ));
            } else {
                batch.reports.push((
                    index,
                    NewReport {
                        customer_id: customer.id.clone(),
                        meter: meter.to_owned(),
                        value_micros: micros,
                        period_start: service::micros(period.start()),
                    },
                ));
            }
            Ok(())
        }
        .await;
        if let Err(r) = checked {
            if r.code == "internal" {
                return Err(ApiError::internal(&r.message));
            }
            rejected.push(r);
        }
    }
    let done = state.service.ingest(&batch).await?;
    for index in done.closed {
        rejected.push(Rejected {
            index,
            code: "period_closed",
            message: "its billing period is already invoiced".into(),
        });
    }
    rejected.sort_by_key(|r| r.index);
    Ok(Json(json!({"accepted": done.accepted, "duplicates": done.duplicates, "rejected": rejected})))
}

fn batch_shape() -> ApiError {
    ApiError::invalid(vec![billing_core::Issue::new(
        "",
        "expected {\"events\": [...]} or {\"reports\": [...]}",
    )])
}

#[derive(Debug, Deserialize)]
struct AtQuery {
    at: Option<String>,
}

async fn usage_view(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
    Q(q): Q<AtQuery>,
) -> ApiResult<Json<Value>> {
    admin_or_own(&state, &headers, &id).await?;
    let at = match &q.at {
        None => state.service.now(),
        Some(a) => parse_instant("at", a)?,
    };
    let customer = state.service.customer(&id).await?;
    let view = state.service.usage_view(&customer, at).await?;
    let caps: Vec<Value> = view
        .bill
        .spend_limits
        .iter()
        .map(|l| {
            let mut v = json!(l);
            let (reached, projected) =
                view.caps.iter().find(|c| c.0 == l.product).map_or((None, None), |c| (c.1, c.2));
            let show =
                |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            v["cap_reached_at"] = json!(show(reached));
            v["projected_cap_at"] = json!(show(projected));
            v
        })
        .collect();
    let period = json!({"start": view.period.start(), "end": view.period.end()});
    Ok(Json(json!({
        "customer_id": id,
        "period": period,
        "usage": view.usage,
        "bill": view.bill,
        "projected": {"usage": view.projected_usage, "bill": view.projected_bill},
        "caps": caps,
    })))
}

// ---------------------------------------------------------------------------------------------------------------
// Caps and alerts.

async fn limits_json(state: &AppState, id: &str) -> ApiResult<Value> {
    let limits = state.service.store().limits(id).await?;
    Ok(Value::Object(limits.into_iter().map(|l| (l.product, json!(l.amount.to_string()))).collect()))
}

async fn get_limits(State(state): State<AppState>, headers: HeaderMap, Id(id): Id) -> ApiResult<Json<Value>> {
    admin_or_own(&state, &headers, &id).await?;
    state.service.customer(&id).await?;
    Ok(Json(limits_json(&state, &id).await?))
}

async fn put_limits(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    admin_or_own(&state, &headers, &id).await?;
    let value = json_value(&headers, &body)?;
    let Value::Object(entries) = value else {
        return Err(ApiError::invalid(vec![billing_core::Issue::new(
            "",
            "expected {\"<product>\": \"<whole amount>\" | null}",
        )]));
    };
    let customer = state.service.customer(&id).await?;
    let mut changes = Vec::new();
    let mut issues = Vec::new();
    for (product, v) in entries {
        let path = format!("limits.{}", billing_core::error::echo(&product));
        match v {
            Value::Null => changes.push((product, None)),
            Value::Number(n) if n.as_u64().is_some() => {
                changes.push((product, n.as_u64().map(Decimal::from)));
            }
            Value::String(s) => match billing_core::wire::parse_decimal(&s) {
                Ok(d) => changes.push((product, Some(d))),
                Err(m) => issues.push(billing_core::Issue::new(path, m)),
            },
            _ => issues.push(billing_core::Issue::new(
                path,
                "expected a whole amount as a string, or null to remove the cap",
            )),
        }
    }
    state.service.set_limits(&customer, changes, issues).await?;
    Ok(Json(limits_json(&state, &id).await?))
}

async fn alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Value>> {
    admin_or_own(&state, &headers, &id).await?;
    state.service.customer(&id).await?;
    let alerts = state.service.store().alerts(&id).await?;
    let items: Vec<Value> = alerts
        .iter()
        .map(|a| Ok(json!({"product": a.product, "period_start": rfc3339(a.period_start)?, "threshold": a.threshold, "detected_at": rfc3339(a.detected_at)?})))
        .collect::<ApiResult<_>>()?;
    Ok(Json(page(items, &q)?))
}

// ---------------------------------------------------------------------------------------------------------------
// Commitments and credit.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCommitment {
    yearly_credit: Value,
    #[serde(default)]
    start: Option<String>,
}

fn decimal_field(path: &str, value: &Value) -> ApiResult<Decimal> {
    let parsed = match value {
        Value::String(s) => billing_core::wire::parse_decimal(s),
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().map(Decimal::from).unwrap_or_default()),
        _ => Err("expected a decimal string such as \"25000\"".to_owned()),
    };
    parsed.map_err(|m| ApiError::invalid(vec![billing_core::Issue::new(path, m)]))
}

fn commitment_json(
    c: &crate::store::CommitmentRow,
    terms: &billing_core::CommitmentTerms,
) -> ApiResult<Value> {
    let start = service::instant(c.starts_at)?;
    let releases: Vec<Value> = terms
        .releases(start)
        .map_err(|m| ApiError::internal(&m))?
        .into_iter()
        .map(|(at, amount)| json!({"at": at, "amount": amount}))
        .collect();
    Ok(json!({
        "id": c.id,
        "customer_id": c.customer_id,
        "yearly_credit": terms.yearly_credit,
        "discount_rate": terms.discount,
        "price": terms.price,
        "exact_price": terms.exact_price,
        "start": rfc3339(c.starts_at)?,
        "expires_at": rfc3339(c.expires_at)?,
        "releases": releases,
    }))
}

async fn create_commitment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
    Body(body): Body,
) -> ApiResult<Response> {
    admin_or_own(&state, &headers, &id).await?;
    let new: NewCommitment = json_body(&headers, &body)?;
    let credit = decimal_field("yearly_credit", &new.yearly_credit)?;
    let start = new.start.as_deref().map(|s| parse_instant("start", s)).transpose()?;
    let customer = state.service.customer(&id).await?;
    let (row, terms) = state.service.buy_commitment(&customer, credit, start).await?;
    Ok((StatusCode::CREATED, Json(commitment_json(&row, &terms)?)).into_response())
}

async fn credits(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
    Q(q): Q<AtQuery>,
) -> ApiResult<Json<Value>> {
    admin_or_own(&state, &headers, &id).await?;
    let at = match &q.at {
        None => state.service.now(),
        Some(a) => parse_instant("at", a)?,
    };
    let customer = state.service.customer(&id).await?;
    let (commitments, ledger) = state.service.ledger(&customer, at).await?;
    let commitments: Vec<Value> = commitments
        .iter()
        .map(|c| {
            let terms: billing_core::CommitmentTerms =
                serde_json::from_str(&c.terms).map_err(|e| ApiError::internal(&e))?;
            commitment_json(c, &terms)
        })
        .collect::<ApiResult<_>>()?;
    let entries: Vec<Value> = ledger
        .entries
        .iter()
        .map(|e| {
            json!({"at": e.at, "kind": e.kind, "amount": e.amount, "commitment_id": e.commitment_id,
                   "invoice_id": e.invoice_id})
        })
        .collect();
    Ok(Json(json!({
        "customer_id": id,
        "at": at,
        "balance": ledger.balance,
        "commitments": commitments,
        "entries": entries,
    })))
}

// ---------------------------------------------------------------------------------------------------------------
// Invoice runs and invoices.

fn run_json(run: &crate::store::RunRow) -> ApiResult<Value> {
    let counts = crate::invoicing::RunCounts::of(run);
    let failures: Vec<Value> = run
        .failures
        .iter()
        .map(|f| Ok(json!({"customer_id": f.customer_id, "period_start": rfc3339(f.period_start)?, "reason": f.reason})))
        .collect::<ApiResult<_>>()?;
    Ok(json!({
        "id": run.id,
        "as_of": rfc3339(run.as_of)?,
        "issue": run.issue,
        "status": run.status,
        "counts": {"eligible": counts.eligible, "invoiced": counts.invoiced,
                   "already_invoiced": counts.already_invoiced, "failed": counts.failed},
        "failures": failures,
        "created_at": rfc3339(run.created_at)?,
        "finished_at": run.finished_at.map(rfc3339).transpose()?,
        "seconds": run.finished_at.map(|f| Decimal::new(f - run.created_at, 6).normalize()),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRun {
    #[serde(default)]
    as_of: Option<String>,
    #[serde(default)]
    issue: bool,
}

async fn create_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    admin(&state, &headers).await?;
    let new: NewRun = json_body(&headers, &body)?;
    let as_of = match &new.as_of {
        None => state.service.now(),
        Some(a) => parse_instant("as_of", a)?,
    };
    let (run, _) = state.service.open_run(as_of, new.issue).await?;
    let (service, settings, background) = (state.service.clone(), state.run_settings.clone(), run.clone());
    tokio::spawn(async move {
        if let Err(e) = service.work_run(&background, &settings, Arc::new(|_| {})).await {
            tracing::error!(run = %background.id, error = ?e, "invoice run stopped");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(run_json(&run)?)).into_response())
}

async fn get_run(State(state): State<AppState>, headers: HeaderMap, Id(id): Id) -> ApiResult<Json<Value>> {
    admin(&state, &headers).await?;
    let run = state.service.store().run(&id).await?.ok_or(Failure::NotFound("invoice run"))?;
    Ok(Json(run_json(&run)?))
}

fn invoice_json(service: &Service, i: &crate::store::InvoiceRow) -> ApiResult<Value> {
    let parse = |text: &str| serde_json::from_str::<Value>(text).map_err(|e| ApiError::internal(&e));
    Ok(json!({
        "id": i.id,
        "number": i.number,
        "customer_id": i.customer_id,
        "period": {"start": rfc3339(i.period_start)?, "end": rfc3339(i.period_end)?},
        "status": i.status,
        "price_book_version": i.price_book_version,
        "currency": i.currency,
        "request": parse(&i.request)?,
        "bill": service.invoice_bill(i)?,
        "total": i.total,
        "credit_applied": i.credit_applied,
        "amount_due": i.amount_due,
        "run_id": i.run_id,
        "created_at": rfc3339(i.created_at)?,
        "issued_at": i.issued_at.map(rfc3339).transpose()?,
        "paid_at": i.paid_at.map(rfc3339).transpose()?,
        "voided_at": i.voided_at.map(rfc3339).transpose()?,
    }))
}

#[derive(Debug, Deserialize)]
struct InvoiceQuery {
    limit: Option<String>,
    cursor: Option<String>,
    customer_id: Option<String>,
    period_start: Option<String>,
    status: Option<String>,
}

async fn list_invoices(
    State(state): State<AppState>,
    headers: HeaderMap,
    Q(q): Q<InvoiceQuery>,
) -> ApiResult<Json<Value>> {
    let who = caller(&state, &headers).await?;
    let page = PageQuery { limit: q.limit.clone(), cursor: q.cursor.clone() };
    let limit = page.limit()?;
    let mut filter = crate::store::InvoiceFilter {
        customer_id: q.customer_id.clone(),
        period_start: q
            .period_start
            .as_deref()
            .map(|p| parse_instant("period_start", p))
            .transpose()?
            .map(service::micros),
        status: q.status.clone(),
    };
    if let Some(s) = &filter.status {
        if !["draft", "issued", "paid", "void"].contains(&s.as_str()) {
            return Err(ApiError::invalid(vec![billing_core::Issue::new(
                "status",
                "must be one of draft, issued, paid, void",
            )]));
        }
    }
    // A customer key sees its own invoices only.
    if let Caller::Customer(own) = who {
        if filter.customer_id.as_ref().is_some_and(|c| *c != own) {
            return Err(ApiError::forbidden());
        }
        filter.customer_id = Some(own);
    }
    let rows = state
        .service
        .store()
        .invoices(&filter, q.cursor.as_deref(), i64::try_from(limit + 1).unwrap_or(501))
        .await?;
    let more = rows.len() > limit;
    let data: Vec<Value> =
        rows.iter().take(limit).map(|i| invoice_json(&state.service, i)).collect::<ApiResult<_>>()?;
    let next = more.then(|| rows[limit - 1].id.clone());
    Ok(Json(json!({"data": data, "next_cursor": next})))
}

async fn get_invoice(State(state): State<AppState>, headers: HeaderMap, Id(id): Id) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let invoice = state.service.store().invoice(&id).await?.ok_or(Failure::NotFound("invoice"))?;
    if let Caller::Customer(own) = who {
        if own != invoice.customer_id {
            // Another customer's invoice is not there for this key.
            return Err(Failure::NotFound("invoice").into());
        }
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let bill = state.service.invoice_bill(&invoice)?;
    if accept.contains("text/csv") {
        let csv = crate::render::invoice_csv(&invoice, &bill);
        return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], csv)
            .into_response());
    }
    if accept.contains("text/html") {
        let html = crate::render::invoice_html(&invoice, &bill);
        return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], html)
            .into_response());
    }
    Ok(Json(invoice_json(&state.service, &invoice)?).into_response())
}

async fn lifecycle(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    action: crate::store::InvoiceAction,
) -> ApiResult<Json<Value>> {
    admin(state, headers).await?;
    let invoice = state.service.transition(id, action, &state.run_settings.prefix).await?;
    Ok(Json(invoice_json(&state.service, &invoice)?))
}

async fn issue_invoice(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    lifecycle(&state, &headers, &id, crate::store::InvoiceAction::Issue).await
}

async fn pay_invoice(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    lifecycle(&state, &headers, &id, crate::store::InvoiceAction::Pay).await
}

async fn void_invoice(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    lifecycle(&state, &headers, &id, crate::store::InvoiceAction::Void).await
}

// ---------------------------------------------------------------------------------------------------------------
// Middleware.

/// One log line per request: method, path, status, latency. Never headers (keys are secrets).
async fn log_request(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX), "request");
    response
}

/// `Idempotency-Key` on every POST, as Stripe does it: the same key and body within 24 hours replays the stored
/// response; another body → 409 `idempotency_conflict`; while the first is running → 409 `idempotency_in_progress`.
/// A key is scoped to its credential, method and path. Secrets (`api_key`) are never stored: a replay shows null.
async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
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
    let bytes = match axum::body::to_bytes(body, state.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is too large")
                .into_response()
        }
    };
    let request_hash = hex(&Sha256::digest(&bytes));
    let store = state.service.store().clone();
    let now = service::micros(state.service.now());
    match store.claim_idempotent(&scope, &key, &request_hash, now).await {
        Err(e) => return ApiError::internal(&e).into_response(),
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
        Ok(Idempotent::Replay { status, body }) => {
            let status = u16::try_from(status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            return response;
        }
        Ok(Idempotent::Claimed) => {}
    }
    let response = next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await;
    let status = response.status();
    if status.is_server_error() {
        let _ = store.release_idempotent(&scope, &key).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let stored = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) => {
            if let Some(secret) = v.get_mut("api_key") {
                *secret = Value::Null;
            }
            v.to_string()
        }
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    if let Err(e) = store.finish_idempotent(&scope, &key, i64::from(status.as_u16()), &stored).await {
        tracing::error!(error = %e, "cannot store an idempotent response");
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}
