//! `/v1/customers/{id}/commitments` (buying one) and `/v1/customers/{id}/credits` (the credit ledger).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::CustomerScope;
use super::error::{ApiError, ApiResult};
use super::extract::*;
use super::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCommitment {
    yearly_credit: Value,
    #[serde(default)]
    start: Option<String>,
}

fn commitment_json(
    c: &crate::store::CommitmentRow,
    terms: &billing_core::CommitmentTerms,
) -> ApiResult<Value> {
    let start = crate::app::instant(c.starts_at)?;
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

pub(super) async fn create_commitment(
    State(state): State<AppState>,
    headers: HeaderMap,
    CustomerScope { id, .. }: CustomerScope,
    Body(body): Body,
) -> ApiResult<Response> {
    let new: NewCommitment = json_body(&headers, &body)?;
    let credit = decimal_field("yearly_credit", &new.yearly_credit)?;
    let start = new.start.as_deref().map(|s| parse_instant("start", s)).transpose()?;
    let customer = state.service.customer(&id).await?;
    let (row, terms) = state.service.buy_commitment(&customer, credit, start).await?;
    Ok((StatusCode::CREATED, Json(commitment_json(&row, &terms)?)).into_response())
}

pub(super) async fn credits(
    State(state): State<AppState>,
    _headers: HeaderMap,
    CustomerScope { id, .. }: CustomerScope,
    Q(q): Q<AtQuery>,
) -> ApiResult<Json<Value>> {
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
