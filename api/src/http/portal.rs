//! The billing portal's API: `POST /v1/customers/{id}/portal-sessions` (a link to the customer's billing page),
//! `POST /v1/portal-sessions/{id}/revoke`, and `GET /v1/customers/{id}/limits/history` (who changed a cap, when).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::{Admin, CustomerScope};
use super::error::ApiResult;
use super::extract::{page_before, Id, PageQuery, Q};
use super::idempotency::shown_once;
use super::state::AppState;
use super::views::{LimitChange, Page, PortalSession};

/// The site's own address, as links to it are written: `--public-url`, else the request's `Host` over http.
pub(super) fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

pub(super) async fn create_portal_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    CustomerScope { id, caller }: CustomerScope,
) -> ApiResult<Response> {
    let created = state.service.create_portal_session(&id, caller.kind()).await?;
    let url = format!("{}/billing/sessions/{}", public_base(&state, &headers), created.token);
    let view = PortalSession::of(&created.session, Some(url))?;
    let response = (StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(view)).into_response();
    // The link holds its token: a credential, shown once.
    Ok(shown_once(response, &["url"]))
}

pub(super) async fn revoke_portal_session(
    State(state): State<AppState>,
    _: Admin,
    Id(id): Id,
) -> ApiResult<Json<PortalSession>> {
    let session = state.service.revoke_portal_session(&id).await?;
    Ok(Json(PortalSession::of(&session, None)?))
}

pub(super) async fn limit_history(
    State(state): State<AppState>,
    CustomerScope { id, .. }: CustomerScope,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<LimitChange>>> {
    let limit = q.limit()?;
    let rows = state.service.limit_history(&id, q.before()?, i64::try_from(limit + 1).unwrap_or(501)).await?;
    Ok(Json(page_before(&rows, limit, |c| c.seq, LimitChange::of)?))
}
