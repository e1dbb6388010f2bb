//! `/v1/customers/{id}/commitments` (buying one) and `/v1/customers/{id}/credits` (the credit ledger).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::auth::CustomerScope;
use super::error::{ApiError, ApiResult};
use super::extract::{decimal_field, json_body, parse_instant, AtQuery, Body, Q};
use super::state::AppState;
use super::views::{Commitment, Credits, Movement};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCommitment {
    yearly_credit: Value,
    #[serde(default)]
    start: Option<String>,
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
    Ok((StatusCode::CREATED, Json(Commitment::of(&row, &terms)?)).into_response())
}

pub(super) async fn credits(
    State(state): State<AppState>,
    CustomerScope { id, .. }: CustomerScope,
    Q(q): Q<AtQuery>,
) -> ApiResult<Response> {
    let at = q.instant_or(state.service.now())?;
    let customer = state.service.customer(&id).await?;
    let (commitments, ledger) = state.service.ledger(&customer, at).await?;
    let commitments = commitments
        .iter()
        .map(|c| {
            let terms: billing_core::CommitmentTerms =
                serde_json::from_str(&c.terms).map_err(|e| ApiError::internal(&e))?;
            Commitment::of(c, &terms)
        })
        .collect::<ApiResult<_>>()?;
    let entries = ledger.entries.iter().map(Movement::of).collect();
    Ok(Json(Credits { at, balance: ledger.balance, commitments, customer_id: &id, entries }).into_response())
}
