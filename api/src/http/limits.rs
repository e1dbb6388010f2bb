//! `/v1/customers/{id}/limits` (spend caps) and `/v1/customers/{id}/alerts` (the thresholds they reached).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use rust_decimal::Decimal;
use serde_json::Value;

use super::auth::CustomerScope;
use super::error::{ApiError, ApiResult};
use super::extract::{json_value, page, Body, PageQuery, Q};
use super::state::AppState;
use super::views::{limits, Alert, Page};

pub(super) async fn get_limits(
    State(state): State<AppState>,
    CustomerScope { id, .. }: CustomerScope,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    state.service.customer(&id).await?;
    Ok(Json(limits(state.service.limits(&id).await?)))
}

pub(super) async fn put_limits(
    State(state): State<AppState>,
    headers: HeaderMap,
    CustomerScope { id, caller }: CustomerScope,
    Body(body): Body,
) -> ApiResult<Json<BTreeMap<String, String>>> {
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
    state.service.set_limits(&customer, changes, issues, caller.kind()).await?;
    Ok(Json(limits(state.service.limits(&id).await?)))
}

pub(super) async fn alerts(
    State(state): State<AppState>,
    CustomerScope { id, .. }: CustomerScope,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<Alert>>> {
    state.service.customer(&id).await?;
    let alerts = state.service.alerts(&id).await?;
    let items: Vec<Alert> = alerts.iter().map(Alert::of).collect::<ApiResult<_>>()?;
    Ok(Json(page(items, &q)?))
}
