//! `/v1/usage` (ingestion) and `/v1/customers/{id}/usage` (the usage view of a period).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use billing_core::Quantity;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use super::auth::{Authenticated, Caller, CustomerScope};
use super::error::{ApiError, ApiResult};
use super::extract::{json_value, AtQuery, Body, Q};
use super::state::AppState;
use super::views::{Ingested, UsageView};
use crate::app::{Entry, EntryKind, Rejected};

/// The most events or reports in one `POST /v1/usage`.
pub const MAX_BATCH: usize = 10_000;

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

/// `POST /v1/usage`: a batch of events or reports. The HTTP layer reads each entry's fields; the rules (its
/// customer, meter, period, the clock's skew) are [`Service::ingest_entries`]'.
pub(super) async fn ingest(
    State(state): State<AppState>,
    Authenticated(who): Authenticated,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Json<Ingested<Rejected>>> {
    let value = json_value(&headers, &body)?;
    let (kind, name, entries) = match &value {
        Value::Object(o) if o.len() == 1 => match o.iter().next() {
            Some((k, Value::Array(a))) if k == "events" => (EntryKind::Events, k, a),
            Some((k, Value::Array(a))) if k == "reports" => (EntryKind::Reports, k, a),
            _ => return Err(batch_shape()),
        },
        _ => return Err(batch_shape()),
    };
    if entries.len() > MAX_BATCH {
        return Err(ApiError::invalid(vec![billing_core::Issue::new(
            name.as_str(),
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
    let read = entries.iter().enumerate().map(|(index, entry)| read_entry(kind, index, entry)).collect();
    let (done, rejected) = state.service.ingest_entries(kind, read).await?;
    Ok(Json(Ingested { accepted: done.accepted, duplicates: done.duplicates, rejected }))
}

/// One entry's fields as JSON gives them; what each means is the use-case's to judge.
fn read_entry(kind: EntryKind, index: usize, entry: &Value) -> Result<Entry<'_>, Rejected> {
    if !entry.is_object() {
        return Err(Rejected { index, code: "invalid_entry", message: "expected an object".into() });
    }
    let (time_field, qty_field) =
        if kind == EntryKind::Events { ("timestamp", "quantity") } else { ("as_of", "value") };
    let at = text(entry, time_field).and_then(|at| {
        at.parse::<DateTime<Utc>>()
            .map_err(|_| format!("`{}` is not an RFC 3339 instant", billing_core::error::echo(at)))
    });
    Ok(Entry {
        index,
        customer_id: text(entry, "customer_id"),
        meter: text(entry, "meter"),
        at,
        quantity: quantity_of(entry.get(qty_field)),
        event_id: text(entry, "id"),
    })
}

fn batch_shape() -> ApiError {
    ApiError::invalid(vec![billing_core::Issue::new(
        "",
        "expected {\"events\": [...]} or {\"reports\": [...]}",
    )])
}

pub(super) async fn usage_view(
    State(state): State<AppState>,
    CustomerScope { id, .. }: CustomerScope,
    Q(q): Q<AtQuery>,
) -> ApiResult<Response> {
    let at = q.instant_or(state.service.now())?;
    let customer = state.service.customer(&id).await?;
    let view = state.service.usage_view(&customer, at).await?;
    Ok(Json(UsageView::of(&id, &view)).into_response())
}
