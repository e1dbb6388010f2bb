//! `/v1/invoice-runs` and `/v1/invoices`: starting and following runs, reading invoices (JSON, CSV, HTML), the
//! lifecycle.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Admin, Authenticated, Caller};
use super::error::{ApiError, ApiResult};
use super::extract::*;
use super::AppState;
use crate::app::*;

fn run_json(run: &crate::store::RunRow) -> ApiResult<Value> {
    let counts = crate::app::RunCounts::of(run);
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

pub(super) async fn create_run(
    State(state): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
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

pub(super) async fn get_run(
    State(state): State<AppState>,
    _: Admin,
    _headers: HeaderMap,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let run = state.service.run(&id).await?;
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
pub(super) struct InvoiceQuery {
    limit: Option<String>,
    cursor: Option<String>,
    customer_id: Option<String>,
    period_start: Option<String>,
    status: Option<String>,
}

pub(super) async fn list_invoices(
    State(state): State<AppState>,
    Authenticated(who): Authenticated,
    _headers: HeaderMap,
    Q(q): Q<InvoiceQuery>,
) -> ApiResult<Json<Value>> {
    let page = PageQuery { limit: q.limit.clone(), cursor: q.cursor.clone() };
    let limit = page.limit()?;
    let mut filter = crate::store::InvoiceFilter {
        customer_id: q.customer_id.clone(),
        period_start: q
            .period_start
            .as_deref()
            .map(|p| parse_instant("period_start", p))
            .transpose()?
            .map(crate::time::micros),
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
    let rows =
        state.service.invoices(&filter, q.cursor.as_deref(), i64::try_from(limit + 1).unwrap_or(501)).await?;
    let more = rows.len() > limit;
    let data: Vec<Value> =
        rows.iter().take(limit).map(|i| invoice_json(&state.service, i)).collect::<ApiResult<_>>()?;
    let next = more.then(|| rows[limit - 1].id.clone());
    Ok(Json(json!({"data": data, "next_cursor": next})))
}

pub(super) async fn get_invoice(
    State(state): State<AppState>,
    Authenticated(who): Authenticated,
    headers: HeaderMap,
    Id(id): Id,
) -> ApiResult<Response> {
    let own = match &who {
        Caller::Admin => None,
        Caller::Customer(own) => Some(own.as_str()),
    };
    let invoice = state.service.invoice(&id, own).await?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let bill = state.service.invoice_bill(&invoice)?;
    if accept.contains("text/csv") {
        let csv = super::render::invoice_csv(&invoice, &bill);
        return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], csv)
            .into_response());
    }
    if accept.contains("text/html") {
        let html = super::render::invoice_html(&invoice, &bill);
        return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], html)
            .into_response());
    }
    Ok(Json(invoice_json(&state.service, &invoice)?).into_response())
}

async fn lifecycle(
    state: &AppState,
    _: Admin,
    id: &str,
    action: crate::store::InvoiceAction,
) -> ApiResult<Json<Value>> {
    let invoice = state.service.transition(id, action, &state.run_settings.prefix).await?;
    Ok(Json(invoice_json(&state.service, &invoice)?))
}

pub(super) async fn issue_invoice(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    lifecycle(&state, admin, &id, crate::store::InvoiceAction::Issue).await
}

pub(super) async fn pay_invoice(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    lifecycle(&state, admin, &id, crate::store::InvoiceAction::Pay).await
}

pub(super) async fn void_invoice(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    lifecycle(&state, admin, &id, crate::store::InvoiceAction::Void).await
}
