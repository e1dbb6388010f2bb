//! `/v1/customers`: creating (with a first key, shown once), listing, reading, changing customers; new keys.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{Admin, CustomerScope};
use super::error::{ApiError, ApiResult};
use super::extract::{json_body, parse_instant, Body, Id, PageQuery, Q};
use super::idempotency::shown_once;
use super::state::AppState;
use super::views::{CreatedCustomer, Customer, NewApiKey, Page};
use crate::app::Created;

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

pub(super) async fn create_customer(
    State(state): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
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
                issues.extend(e.into_issues());
                None
            }
        },
    };
    if !issues.is_empty() {
        return Err(ApiError::invalid(issues));
    }
    let created = state.service.create_customer(&new.id, &new.name, anchor, &new.addons).await?;
    Ok(match created {
        Created::New { customer, api_key } => {
            let body = CreatedCustomer { api_key: Some(api_key), customer: Customer::of(&customer)? };
            shown_once((StatusCode::CREATED, Json(body)).into_response(), &["api_key"])
        }
        // A retried creation answers the customer again, without its key (shown once).
        Created::Again(customer) => {
            (StatusCode::OK, Json(CreatedCustomer { api_key: None, customer: Customer::of(&customer)? }))
                .into_response()
        }
    })
}

pub(super) async fn list_customers(
    State(state): State<AppState>,
    _: Admin,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<Customer>>> {
    let limit = q.limit()?;
    let rows = state.service.customers(q.cursor.as_deref(), i64::try_from(limit + 1).unwrap_or(501)).await?;
    let more = rows.len() > limit;
    let data = rows.iter().take(limit).map(Customer::of).collect::<ApiResult<_>>()?;
    let next = more.then(|| rows[limit - 1].id.clone());
    Ok(Json(Page { data, next_cursor: next }))
}

pub(super) async fn get_customer(
    State(state): State<AppState>,
    CustomerScope { id, .. }: CustomerScope,
) -> ApiResult<Json<Customer>> {
    Ok(Json(Customer::of(&state.service.customer(&id).await?)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerChanges {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    addons: Option<Vec<String>>,
}

pub(super) async fn update_customer(
    State(state): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    Id(id): Id,
    Body(body): Body,
) -> ApiResult<Json<Customer>> {
    let changes: CustomerChanges = json_body(&headers, &body)?;
    if changes.name.as_ref().is_some_and(|n| n.trim().is_empty() || n.len() > 256) {
        return Err(ApiError::invalid(vec![billing_core::Issue::new("name", "must be 1–256 characters")]));
    }
    let row = state.service.update_customer(&id, changes.name, changes.addons).await?;
    Ok(Json(Customer::of(&row)?))
}

pub(super) async fn new_api_key(State(state): State<AppState>, _: Admin, Id(id): Id) -> ApiResult<Response> {
    let key = state.service.new_api_key(&id).await?;
    let body = NewApiKey { api_key: key, customer_id: id };
    Ok(shown_once((StatusCode::CREATED, Json(body)).into_response(), &["api_key"]))
}
