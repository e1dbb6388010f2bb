//! `/v1/invoice-runs` and `/v1/invoices`: starting and following runs, reading invoices (JSON, CSV, HTML), the
//! lifecycle.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{Admin, Authenticated, Caller};
use super::error::{ApiError, ApiResult};
use super::extract::{json_body, parse_instant, Body, Id, PageQuery, Q};
use super::state::AppState;
use super::views::{Invoice, Page, Run};

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
    Ok((StatusCode::ACCEPTED, Json(Run::of(&run)?)).into_response())
}

pub(super) async fn get_run(State(state): State<AppState>, _: Admin, Id(id): Id) -> ApiResult<Json<Run>> {
    let run = state.service.run(&id).await?;
    Ok(Json(Run::of(&run)?))
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
    Q(q): Q<InvoiceQuery>,
) -> ApiResult<Json<Page<Invoice>>> {
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
    let data = rows
        .iter()
        .take(limit)
        .map(|i| state.service.invoice_document(i).map_err(ApiError::from))
        .collect::<ApiResult<_>>()?;
    let next = more.then(|| rows[limit - 1].id.clone());
    Ok(Json(Page { data, next_cursor: next }))
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
        let customer = state.service.customer(&invoice.customer_id).await?;
        let html = super::render::invoice_html(&invoice, &bill, &customer.name, &state.seller);
        return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], html)
            .into_response());
    }
    Ok(Json(state.service.invoice_document(&invoice)?).into_response())
}

async fn lifecycle(
    state: &AppState,
    _: Admin,
    id: &str,
    action: crate::store::InvoiceAction,
) -> ApiResult<Json<Invoice>> {
    let invoice = state.service.transition(id, action, &state.run_settings.prefix).await?;
    Ok(Json(state.service.invoice_document(&invoice)?))
}

pub(super) async fn issue_invoice(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id,
) -> ApiResult<Json<Invoice>> {
    lifecycle(&state, admin, &id, crate::store::InvoiceAction::Issue).await
}

pub(super) async fn pay_invoice(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id,
) -> ApiResult<Json<Invoice>> {
    lifecycle(&state, admin, &id, crate::store::InvoiceAction::Pay).await
}

pub(super) async fn void_invoice(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id,
) -> ApiResult<Json<Invoice>> {
    lifecycle(&state, admin, &id, crate::store::InvoiceAction::Void).await
}
