//! The customer's billing page: `GET /billing/sessions/{token}` (opens a portal link: the session cookie, then
//! `/billing`), `GET /billing` (pricing-ui's billing app, server-rendered and hydrated by its own bundle,
//! `billing_ui`), `POST /billing/limits` (the cap form, a plain form post answered with a redirect: the page works
//! without JavaScript) and `GET /billing/invoices/{id}` (the session's own invoices, printable HTML or CSV).
//!
//! Who may call these is in the signatures: [`Portal`] (a live session's cookie) and [`PortalForm`] (a session's form
//! carrying its CSRF token, from this site). Every number comes from the use-cases: the page shows the usage view.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use billing_core::{Bill, PriceBook};
use chrono::{DateTime, NaiveDate, Utc};
use pricing_ui::billing::{
    period_words, AlertData, BillingData, ChangeData, CommitmentData, InvoiceData, MeterDays, PeriodChoice,
    ProductData, TierRow, Totals,
};
use pricing_ui::format::{grouped, unit_price};
use pricing_ui::shell::{billing_shell, script_json, BillingInput};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::auth::{Portal, PortalForm, PORTAL_COOKIE};
use super::error::{ApiError, ApiResult};
use super::extract::{Id, Q};
use super::state::AppState;
use crate::app::{BillingOverview, Failure};
use crate::store::CredentialKind;

/// `GET /billing/sessions/{token}`: a live link becomes the session's cookie and a redirect to `/billing` (the token
/// leaves the address bar); any other token gets the same page saying the link cannot be used.
pub(super) async fn open_link(State(state): State<AppState>, Id(token): Id) -> ApiResult<Response> {
    let Some(opened) = state.service.open_portal_link(&token).await? else {
        return Ok(super::render::link_unusable().into_response());
    };
    let secure = state.public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
    let cookie = format!(
        "{PORTAL_COOKIE}={}; Path=/billing; Max-Age={}; HttpOnly; SameSite=Lax{}",
        opened.secret,
        crate::app::ABSOLUTE_MICROS / 1_000_000,
        if secure { "; Secure" } else { "" }
    );
    let mut response = see_other("/billing");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    // The token is in this address: it is not sent on as a referrer.
    response.headers_mut().insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    Ok(response)
}

/// A 303 to `to`, with a small HTML body for clients that show it.
fn see_other(to: &str) -> Response {
    let body = format!("<!doctype html><title>Redirecting</title><a href=\"{to}\">Continue</a>");
    let mut response =
        (StatusCode::SEE_OTHER, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    no_store(response)
}

/// A page of one customer's billing is never cached, and never framed (its forms change caps).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("content-security-policy", HeaderValue::from_static("frame-ancestors 'none'"));
    response
}

#[derive(Debug, Deserialize)]
pub(super) struct BillingQuery {
    period: Option<String>,
    saved: Option<String>,
}

/// `GET /billing`.
pub(super) async fn billing_page(
    State(state): State<AppState>,
    portal: Portal,
    Q(q): Q<BillingQuery>,
    request: Request,
) -> ApiResult<Response> {
    let now = state.service.now();
    let (at, mut notice) = match q.period.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => (now, None),
        Some(p) => match NaiveDate::parse_from_str(p, "%Y-%m-%d") {
            Ok(d) => (d.and_hms_opt(12, 0, 0).map_or(now, |t| t.and_utc()), None),
            Err(_) => {
                (now, Some("That period is not a date such as 2026-11-01: showing the open one.".to_owned()))
            }
        },
    };
    if let Some(product) = q.saved.as_deref() {
        let book = state.service.book_at(now);
        let name =
            book.product(product).map_or_else(|| "the product".to_owned(), |p| p.metered.name.to_string());
        notice = Some(format!("Saved the cap on {name}."));
    }
    // A date before the first period shows the first (the use-case's rule); one after now, the open period.
    let overview = state.service.billing_overview(&portal.customer_id, at.min(now)).await?;
    render(&state, &portal, overview, notice, StatusCode::OK, request).await
}

/// `POST /billing/limits`: `product`, `limit` (a whole amount; empty removes the cap) and the session's `csrf`, by
/// the rules and code of `PUT /v1/customers/{id}/limits`. Saved: a redirect to the page; refused: the page again,
/// 422, saying why (nothing written).
pub(super) async fn save_cap(
    State(state): State<AppState>,
    PortalForm { portal, fields }: PortalForm,
) -> ApiResult<Response> {
    let field = |name: &str| {
        let mut values = fields.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim());
        match (values.next(), values.next()) {
            (Some(v), None) => Some(v.to_owned()),
            _ => None,
        }
    };
    let mut issues = Vec::new();
    let product = field("product").unwrap_or_default();
    let change = match field("limit") {
        None => {
            issues.push(billing_core::Issue::new("limit", "the form needs exactly one `limit`"));
            None
        }
        Some(l) if l.is_empty() => None,
        Some(l) => match billing_core::wire::parse_decimal(&l.replace(',', "")) {
            Ok(d) => Some(d),
            Err(m) => {
                issues.push(billing_core::Issue::new(
                    format!("limits.{}", billing_core::error::echo(&product)),
                    m,
                ));
                None
            }
        },
    };
    let customer = state.service.customer(&portal.customer_id).await?;
    let outcome = state
        .service
        .set_limits(&customer, vec![(product.clone(), change)], issues, CredentialKind::Portal)
        .await;
    match outcome {
        Ok(()) => Ok(see_other(&format!("/billing?saved={}", encode(&product)))),
        Err(Failure::Invalid(issues)) => {
            let words: Vec<String> = issues.iter().map(|i| i.message.clone()).collect();
            let notice = Some(format!("The cap was not saved: {}", words.join("; ")));
            let overview = state.service.billing_overview(&portal.customer_id, state.service.now()).await?;
            let request =
                Request::builder().uri("/billing").body(Body::empty()).map_err(|e| ApiError::internal(&e))?;
            render(&state, &portal, overview, notice, StatusCode::UNPROCESSABLE_ENTITY, request).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Deserialize)]
pub(super) struct InvoiceQuery {
    format: Option<String>,
}

/// `GET /billing/invoices/{id}`: one of the session's customer's invoices; another customer's is not there (404).
pub(super) async fn invoice(
    State(state): State<AppState>,
    portal: Portal,
    Id(id): Id,
    Q(q): Q<InvoiceQuery>,
) -> ApiResult<Response> {
    let invoice = state.service.invoice(&id, Some(&portal.customer_id)).await?;
    let bill = state.service.invoice_bill(&invoice)?;
    let customer = state.service.customer(&portal.customer_id).await?;
    let response = match q.format.as_deref().unwrap_or("html") {
        "csv" => {
            ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], super::render::invoice_csv(&invoice, &bill))
                .into_response()
        }
        "html" => {
            let html = super::render::invoice_html(&invoice, &bill, &customer.name, &state.seller);
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
        }
        _ => {
            return Err(ApiError::invalid(vec![billing_core::Issue::new(
                "format",
                "expected `html` or `csv`",
            )]));
        }
    };
    Ok(no_store(response))
}

/// Renders the page of `overview` for the session.
async fn render(
    state: &AppState,
    portal: &Portal,
    overview: BillingOverview,
    notice: Option<String>,
    status: StatusCode,
    request: Request,
) -> ApiResult<Response> {
    let book = state.service.book_at(overview.view.period.start());
    let json = serde_json::to_string(&*book).map_err(|e| ApiError::internal(&e))?;
    let data = billing_data(&book, &overview, portal.csrf(), notice)?;
    let input = BillingInput {
        book,
        book_json: Arc::from(script_json(&json)),
        data: Arc::new(data),
        options: state.assets.billing_options().cloned(),
    };
    let render = leptos_axum::render_app_to_stream_with_context(|| {}, move || billing_shell(input.clone()));
    let mut response = render(request).await.into_response();
    *response.status_mut() = status;
    Ok(no_store(response))
}

fn totals(bill: &Bill<'_>) -> Totals {
    Totals {
        subtotal: bill.subtotal,
        discount: bill.discount,
        total: bill.total,
        credit_applied: bill.credit_applied,
        amount_due: bill.amount_due,
    }
}

/// The amount of a product's lines (its add-ons' included).
fn group_amount(bill: &Bill<'_>, product: &str) -> Decimal {
    bill.lines.iter().filter(|l| l.product.as_deref() == Some(product)).map(|l| l.amount).sum()
}

/// The unit a meter counts in, from the book.
fn unit_of(book: &PriceBook, meter: &str) -> String {
    book.products()
        .iter()
        .flat_map(|p| std::iter::once(&p.metered).chain(p.addons.iter().map(|a| &a.metered)))
        .find(|m| &*m.meter == meter)
        .map_or_else(|| "unit".to_owned(), |m| m.unit.to_string())
}

fn tier_rows(book: &PriceBook, bill: &Bill<'_>, product: &str) -> Vec<TierRow> {
    let currency = book.currency();
    let mut rows = Vec::new();
    for line in bill.lines.iter().filter(|l| l.product.as_deref() == Some(product)) {
        let unit = line.unit.as_deref().unwrap_or("unit");
        for s in line.tiers.iter().flat_map(|t| t.iter()) {
            let range = match s.up_to {
                Some(up) => format!("{} – {}", grouped(s.from), grouped(up)),
                None => format!("over {}", grouped(s.from)),
            };
            rows.push(TierRow {
                line: line.name.to_string(),
                tier: format!("tier {} ({range})", s.tier),
                units: format!(
                    "{} × {}",
                    pricing_ui::billing::units(s.units, unit),
                    unit_price(currency, s.unit_amount)
                ),
                amount: s.amount,
            });
        }
    }
    rows
}

fn product_data(book: &PriceBook, o: &BillingOverview, product: &billing_core::Product) -> ProductData {
    let key = product.metered.key.to_string();
    let view = &o.view;
    let period_start = crate::time::micros(view.period.start());
    let meters: Vec<String> = std::iter::once(product.metered.meter.to_string())
        .chain(product.addons.iter().map(|a| a.metered.meter.to_string()))
        .fold(Vec::new(), |mut seen, m| {
            if !seen.contains(&m) {
                seen.push(m);
            }
            seen
        });
    let daily = meters
        .iter()
        .filter_map(|m| {
            o.daily.get(m).map(|days| MeterDays {
                meter: m.clone(),
                unit: unit_of(book, m),
                days: days.iter().map(|(d, q)| (*d, q.value())).collect(),
            })
        })
        .collect();
    let limit = o.limits.iter().find(|l| l.product == key);
    let caps = view.caps.iter().find(|(p, _, _)| *p == key);
    let dropped = view
        .bill
        .spend_limits
        .iter()
        .filter(|l| l.product == key)
        .flat_map(|l| l.meters.iter())
        .filter(|m| !m.dropped.value().is_zero())
        .map(|m| (m.meter.clone(), unit_of(book, &m.meter), m.dropped.value()))
        .collect();
    ProductData {
        key: key.clone(),
        name: product.metered.name.to_string(),
        meter: product.metered.meter.to_string(),
        unit: product.metered.unit.to_string(),
        usage: view.usage.get(&*product.metered.meter).map_or(Decimal::ZERO, |q| q.value()),
        free: pricing_ui::explain::free_allowance(&product.metered),
        amount: group_amount(&view.bill, &key),
        projected_amount: group_amount(&view.projected_bill, &key),
        tiers: tier_rows(book, &view.bill, &key),
        daily,
        cap: limit.map(|l| Decimal::from(l.amount)),
        pinned: limit
            .and_then(|l| l.pinned)
            .filter(|(s, _)| *s == period_start)
            .map(|(_, a)| Decimal::from(a)),
        reached_at: caps.and_then(|c| c.1),
        projected_at: caps.and_then(|c| c.2),
        dropped,
    }
}

fn instant(micros: i64) -> ApiResult<DateTime<Utc>> {
    crate::app::instant(micros).map_err(ApiError::from)
}

fn decimal(text: &str) -> ApiResult<Decimal> {
    text.parse::<Decimal>().map_err(|e| ApiError::internal(&e))
}

/// The page's data: the usage view's numbers and the rest of the overview, in the page's terms.
fn billing_data(
    book: &PriceBook,
    o: &BillingOverview,
    csrf: String,
    notice: Option<String>,
) -> ApiResult<BillingData> {
    let view = &o.view;
    let now = o.now;
    let commitment = o
        .credit
        .0
        .iter()
        .filter(|c| c.expires_at > crate::time::micros(now))
        .filter_map(|c| {
            let terms: billing_core::CommitmentTerms = serde_json::from_str(&c.terms).ok()?;
            let start = crate::app::instant(c.starts_at).ok()?;
            let left = terms.releases(start).ok()?.iter().filter(|(at, _)| *at > now).count();
            Some(CommitmentData {
                yearly_credit: terms.yearly_credit,
                discount_rate: terms.discount,
                releases_left: u32::try_from(left).unwrap_or(0),
                expires_at: crate::app::instant(c.expires_at).ok()?,
            })
        })
        .next_back();
    Ok(BillingData {
        customer: o.customer.name.clone(),
        csrf,
        now: o.now,
        period_start: view.period.start(),
        period_end: view.period.end(),
        periods: o
            .periods
            .iter()
            .map(|(s, e)| PeriodChoice {
                value: s.format("%Y-%m-%d").to_string(),
                label: period_words(*s, *e),
                selected: *s == view.period.start(),
            })
            .collect(),
        current: o.current,
        request: serde_json::to_string(&view.request).map_err(|e| ApiError::internal(&e))?,
        so_far: totals(&view.bill),
        projected: totals(&view.projected_bill),
        credit_balance: crate::app::credit_balance(o),
        commitment,
        products: book.products().iter().map(|p| product_data(book, o, p)).collect(),
        alerts: alerts_of(book, o)?,
        invoices: invoices_of(o)?,
        history: history_of(book, o)?,
        notice,
    })
}

/// A product's name in the book (its key when the book has no such product).
fn product_name(book: &PriceBook, key: &str) -> String {
    book.product(key).map_or_else(|| key.to_owned(), |p| p.metered.name.to_string())
}

fn alerts_of(book: &PriceBook, o: &BillingOverview) -> ApiResult<Vec<AlertData>> {
    o.alerts
        .iter()
        .map(|a| {
            Ok(AlertData {
                product: product_name(book, &a.product),
                threshold: decimal(&a.threshold)?,
                at: instant(a.detected_at)?,
            })
        })
        .collect()
}

fn invoices_of(o: &BillingOverview) -> ApiResult<Vec<InvoiceData>> {
    o.invoices
        .iter()
        .map(|i| {
            Ok(InvoiceData {
                id: i.id.clone(),
                number: i.number.clone(),
                period: period_words(instant(i.period_start)?, instant(i.period_end)?),
                total: decimal(&i.total)?,
                amount_due: decimal(&i.amount_due)?,
                status: i.status.clone(),
            })
        })
        .collect()
}

fn history_of(book: &PriceBook, o: &BillingOverview) -> ApiResult<Vec<ChangeData>> {
    o.history
        .iter()
        .map(|h| {
            Ok(ChangeData {
                product: product_name(book, &h.product),
                old: h.old.map(Decimal::from),
                new: h.new.map(Decimal::from),
                at: instant(h.changed_at)?,
                by: h.by.clone(),
            })
        })
        .collect()
}
