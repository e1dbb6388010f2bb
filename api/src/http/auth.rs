//! Who may call a route, said twice and checked against each other:
//!
//! - by the router: every route's [`Access`] comes from [`super::routes::OPERATIONS`], the table `/openapi.json`
//!   documents; [`guard`] runs after routing and refuses a caller the table does not allow (401/403) before
//!   anything else happens, idempotency keys included;
//! - by the handler's signature: a handler takes [`Admin`], [`CustomerScope`] or [`Authenticated`] as an argument,
//!   so a route cannot compile without saying who may call it. The extractors read the caller the guard found
//!   (one key lookup a request) and check their own rule again.
//!
//! A test probes every route of the table with no credential, a wrong one, another customer's key, the customer's
//! own key and the admin token, and checks each answer against the table.

use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::{ApiError, ApiResult};
use super::routes::Access;
use super::state::AppState;
use crate::secret::{hash_secret, hex};
use crate::store::CredentialKind;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin token.
    Admin,
    /// A customer's key.
    Customer(String),
}

impl Caller {
    /// The kind of credential, as a change records it.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Caller::Admin => CredentialKind::Admin,
            Caller::Customer(_) => CredentialKind::ApiKey,
        }
    }
}

/// The bearer token of a request, when it has one of a plausible size.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
}

/// The caller a request's credential names: 401 without one, or with one that is neither the admin token nor a key.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    let hash = hash_secret(token);
    if bool::from(hash.ct_eq(&state.admin_hash)) {
        return Ok(Caller::Admin);
    }
    // A key is found by its hash: the lookup never sees the key, and a guess reveals nothing by its timing.
    match state.service.key_owner(&hex(&hash)).await? {
        Some(customer) => Ok(Caller::Customer(customer)),
        None => Err(ApiError::unauthorized()),
    }
}

/// Whether `caller` may call a route of `access` whose path names customer `id` (for [`Access::AdminOrOwn`]).
fn allows(access: Access, caller: &Caller, id: Option<&str>) -> bool {
    match (access, caller) {
        (_, Caller::Admin) | (Access::Public | Access::AdminOrKey, Caller::Customer(_)) => true,
        (Access::Admin, Caller::Customer(_)) | (Access::Portal, Caller::Customer(_)) => false,
        (Access::AdminOrOwn, Caller::Customer(own)) => id == Some(own.as_str()),
    }
}

/// The access of the route `method path` (a router pattern such as `/v1/customers/{id}`), from the table.
pub fn access_of(method: &Method, path: &str) -> Option<Access> {
    super::routes::OPERATIONS
        .iter()
        .find(|op| op.path == path && method.as_str().eq_ignore_ascii_case(op.method))
        .map(|op| op.access)
}

/// The router's check (a route layer: it runs after routing, before the handler and its idempotency key): the
/// route's [`Access`] from the table, the caller authenticated once and left in the request's extensions for the
/// handler's extractor.
pub async fn guard(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let path_has_id = matched.as_ref().is_some_and(|m| m.as_str().contains("{id}"));
    let Some(access) = matched.and_then(|m| access_of(request.method(), m.as_str())) else {
        // A method the route does not take: its 405 comes from the router.
        return next.run(request).await;
    };
    if access == Access::Public {
        return next.run(request).await;
    }
    if access == Access::Portal {
        // The billing page: a session cookie, never a bearer token.
        let (mut parts, body) = request.into_parts();
        match portal(&state, &parts.headers).await {
            Ok(session) => parts.extensions.insert(session),
            Err(refused) => return refused,
        };
        return next.run(Request::from_parts(parts, body)).await;
    }
    let (mut parts, body) = request.into_parts();
    // The id a path names, read first (as the handlers' `Id` always was): a path whose id cannot be read names
    // nothing, 404, whoever asks.
    let id = if path_has_id {
        match path_id(&mut parts, &state).await {
            Ok(id) => Some(id),
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let caller = match authenticate(&state, &parts.headers).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    if !allows(access, &caller, id.as_deref()) {
        return ApiError::forbidden().into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

/// The `{id}` of a path, percent-decoded, as the handlers' `Id` reads it: 404 when it cannot be read (not UTF-8
/// once decoded…), since such an id names nothing.
async fn path_id(parts: &mut Parts, state: &AppState) -> ApiResult<String> {
    use axum::extract::FromRequestParts;
    match Path::<String>::from_request_parts(parts, state).await {
        Ok(Path(id)) => Ok(id),
        Err(_) => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")),
    }
}

/// The caller the guard found, or (a route the table does not guard) the request's own credential.
async fn caller_of(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
    if let Some(caller) = parts.extensions.get::<Caller>() {
        return Ok(caller.clone());
    }
    let caller = authenticate(state, &parts.headers).await?;
    parts.extensions.insert(caller.clone());
    Ok(caller)
}

/// The admin token, and only it: a handler that takes `Admin` answers anyone else 401 or 403.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl axum::extract::FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match caller_of(parts, state).await? {
            Caller::Admin => Ok(Admin),
            Caller::Customer(_) => Err(ApiError::forbidden()),
        }
    }
}

/// Any valid credential, the admin's or a customer's key: the use-case scopes what a key sees to its own customer.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl axum::extract::FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        caller_of(parts, state).await.map(Authenticated)
    }
}

/// The customer in the path (`/v1/customers/{id}/…`), called by the admin or by that customer's own key: 404 when
/// the path's id cannot be read, 401 without a valid credential, 403 for another customer's key.
#[derive(Debug, Clone)]
pub struct CustomerScope {
    /// The customer the path names (not yet known to exist: the use-case answers 404).
    pub id: String,
    /// Who is calling.
    pub caller: Caller,
}

impl axum::extract::FromRequestParts<AppState> for CustomerScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let id = path_id(parts, state).await?;
        let caller = caller_of(parts, state).await?;
        if !allows(Access::AdminOrOwn, &caller, Some(&id)) {
            return Err(ApiError::forbidden());
        }
        Ok(CustomerScope { id, caller })
    }
}

/// The cookie holding a billing-portal session's secret (HttpOnly, SameSite=Lax, Path=/billing).
pub const PORTAL_COOKIE: &str = "tally_portal";

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A live billing-portal session: the customer's billing page, for that one customer. A handler of the page takes
/// it as an argument; without a live session the page answers 401 with a page saying the session has ended.
#[derive(Debug, Clone)]
pub struct Portal {
    /// The one customer the session may see and change.
    pub customer_id: String,
    /// The session's id.
    pub session_id: String,
    secret: String,
}

impl Portal {
    /// The session's CSRF token, for the page's forms.
    pub fn csrf(&self) -> String {
        crate::app::csrf_token(&self.secret)
    }

    /// Whether a form's token is the session's.
    pub fn csrf_matches(&self, given: &str) -> bool {
        crate::app::csrf_matches(&self.secret, given)
    }
}

/// The session of a request's cookie, or the answer refusing it.
async fn portal(state: &AppState, headers: &HeaderMap) -> Result<Portal, Response> {
    let ended = || super::render::session_ended().into_response();
    let Some(secret) = cookie(headers, PORTAL_COOKIE) else { return Err(ended()) };
    match state.service.portal_session(secret).await {
        Ok(Some(session)) => {
            Ok(Portal { customer_id: session.customer_id, session_id: session.id, secret: secret.to_owned() })
        }
        Ok(None) => Err(ended()),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

impl axum::extract::FromRequestParts<AppState> for Portal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(session) = parts.extensions.get::<Portal>() {
            return Ok(session.clone());
        }
        let session = portal(state, &parts.headers).await?;
        parts.extensions.insert(session.clone());
        Ok(session)
    }
}

/// A form posted by the billing page: its session ([`Portal`]), its fields, and proof that the page sent it. A
/// cross-site post is refused three ways: the cookie is `SameSite=Lax` (a browser does not send it with another
/// site's POST), the `Origin` (and `Sec-Fetch-Site`) must be this site's, and the form must carry the session's
/// CSRF token (`csrf`), which only a page rendered for the session holds. Refused: 403, nothing written.
#[derive(Debug)]
pub struct PortalForm {
    /// The session that posted it.
    pub portal: Portal,
    /// The form's fields other than `csrf`, in order.
    pub fields: Vec<(String, String)>,
}

/// Whether a request's `Origin` and `Sec-Fetch-Site`, when given, say it comes from this site: the `Host` it was
/// sent to, or the site's public address (`--public-url`, for a server behind a proxy that rewrites `Host`).
fn same_site(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| v == "cross-site") {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let public = public_url.map(|u| u.trim_end_matches('/'));
    if public.is_some_and(|p| p.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

impl axum::extract::FromRequest<AppState> for PortalForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let portal =
            <Portal as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, state)
                .await?;
        let refused = || {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "this form did not come from your billing page",
            )
            .into_response()
        };
        if !same_site(&parts.headers, state.public_url.as_deref()) {
            return Err(refused());
        }
        let form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !form {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected application/x-www-form-urlencoded",
            )
            .into_response());
        }
        let bytes = axum::body::to_bytes(body, state.max_body).await.map_err(|_| {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the form is too large")
                .into_response()
        })?;
        let mut fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_form", "the form cannot be read")
                .into_response()
        })?;
        let csrf: Vec<String> = fields.iter().filter(|(k, _)| k == "csrf").map(|(_, v)| v.clone()).collect();
        if csrf.len() != 1 || !portal.csrf_matches(&csrf[0]) {
            return Err(refused());
        }
        fields.retain(|(k, _)| k != "csrf");
        Ok(PortalForm { portal, fields })
    }
}
