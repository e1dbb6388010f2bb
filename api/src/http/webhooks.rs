//! Events and webhooks: `GET /v1/events`, `/v1/webhook-endpoints` (create — the signing secret shown once —, list,
//! read, change, delete, rotate the secret), an endpoint's deliveries, and a delivery retried by hand. Admin only.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::Admin;
use super::error::ApiResult;
use super::extract::{json_body, page, page_before, Body, Id, PageQuery, Q};
use super::idempotency::shown_once;
use super::state::AppState;
use super::views::{Deleted, Delivery, Endpoint, Event, Page};
use crate::app::{EndpointChange, NewEndpoint};
use crate::store::EventFilter;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEndpointBody {
    url: String,
    event_types: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

/// A change: absent fields stay; `"description": null` removes the description.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub(super) async fn create_endpoint(
    State(state): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    let new: NewEndpointBody = json_body(&headers, &body)?;
    let endpoint = state
        .service
        .create_endpoint(NewEndpoint {
            url: new.url,
            event_types: new.event_types,
            description: new.description,
        })
        .await?;
    let response = (StatusCode::CREATED, Json(Endpoint::of(&endpoint, true)?)).into_response();
    Ok(shown_once(response, &["secret"]))
}

pub(super) async fn list_endpoints(
    State(state): State<AppState>,
    _: Admin,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<Endpoint>>> {
    let all = state.service.endpoints().await?;
    let views = all.iter().map(|e| Endpoint::of(e, false)).collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(page(views, &q)?))
}

pub(super) async fn get_endpoint(
    State(state): State<AppState>,
    _: Admin,
    Id(id): Id,
) -> ApiResult<Json<Endpoint>> {
    Ok(Json(Endpoint::of(&state.service.endpoint(&id).await?, false)?))
}

pub(super) async fn change_endpoint(
    State(state): State<AppState>,
    _: Admin,
    Id(id): Id,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Json<Endpoint>> {
    let change: ChangeBody = json_body(&headers, &body)?;
    let change = EndpointChange {
        url: change.url,
        event_types: change.event_types,
        enabled: change.enabled,
        description: change.description,
    };
    Ok(Json(Endpoint::of(&state.service.change_endpoint(&id, change).await?, false)?))
}

pub(super) async fn delete_endpoint(
    State(state): State<AppState>,
    _: Admin,
    Id(id): Id,
) -> ApiResult<Json<Deleted>> {
    state.service.delete_endpoint(&id).await?;
    Ok(Json(Deleted { deleted: true, id }))
}

pub(super) async fn rotate_secret(
    State(state): State<AppState>,
    _: Admin,
    Id(id): Id,
) -> ApiResult<Response> {
    let endpoint = state.service.rotate_endpoint_secret(&id).await?;
    Ok(shown_once(Json(Endpoint::of(&endpoint, true)?).into_response(), &["secret"]))
}

pub(super) async fn deliveries(
    State(state): State<AppState>,
    _: Admin,
    Id(id): Id,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<Delivery>>> {
    let limit = q.limit()?;
    let rows = state.service.deliveries(&id, q.before()?, i64::try_from(limit + 1).unwrap_or(501)).await?;
    Ok(Json(page_before(&rows, limit, |d| d.seq, Delivery::of)?))
}

pub(super) async fn retry_delivery(
    State(state): State<AppState>,
    _: Admin,
    Id(id): Id,
) -> ApiResult<Json<Delivery>> {
    Ok(Json(Delivery::of(&state.service.retry_delivery(&id).await?)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    customer_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub(super) async fn events(
    State(state): State<AppState>,
    _: Admin,
    Q(q): Q<EventsQuery>,
) -> ApiResult<Json<Page<Event>>> {
    let paging = PageQuery { limit: q.limit, cursor: q.cursor };
    let limit = paging.limit()?;
    let filter = EventFilter { kind: q.kind, customer_id: q.customer_id };
    let rows =
        state.service.events(&filter, paging.before()?, i64::try_from(limit + 1).unwrap_or(501)).await?;
    Ok(Json(page_before(&rows, limit, |e| e.seq, Event::of)?))
}

pub(super) async fn event(State(state): State<AppState>, _: Admin, Id(id): Id) -> ApiResult<Json<Event>> {
    Ok(Json(Event::of(&state.service.event(&id).await?)?))
}
