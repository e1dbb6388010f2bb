//! The bodies the API answers with, one `Serialize` type each, whose schemas `/openapi.json` documents (the
//! schemathesis run in `scripts/fuzz-api` checks every answer against them).
//!
//! Fields are declared in alphabetical order: the order these bodies always had (they were built as JSON maps,
//! which serde_json keeps sorted), so a client that compares bodies byte for byte sees no change. Instants are RFC
//! 3339 text, decimals strings.

use std::collections::BTreeMap;

use billing_core::{Bill, BillingPeriod, LimitSummary, Quantity};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use crate::app::{instant, LedgerEntry, RunCounts, Version};
use crate::store::{AlertRow, CommitmentRow, CustomerRow, LimitRow, RunRow};

use crate::app::written_at as written;

/// A stored instant (microseconds) as the API writes it.
pub(super) fn rfc3339(micros: i64) -> ApiResult<String> {
    Ok(written(instant(micros).map_err(ApiError::from)?))
}

fn rfc3339_opt(micros: Option<i64>) -> ApiResult<Option<String>> {
    micros.map(rfc3339).transpose()
}

/// `GET /healthz`.
#[derive(Debug, Serialize)]
pub(super) struct Health {
    /// `ok` or `unavailable`.
    pub(super) status: &'static str,
}

/// A page of a list: `next_cursor` is null on the last page.
#[derive(Debug, Serialize)]
pub(super) struct Page<T> {
    pub(super) data: Vec<T>,
    pub(super) next_cursor: Option<String>,
}

/// A published price-book version.
#[derive(Debug, Serialize)]
pub(super) struct PriceBookVersion {
    currency: &'static str,
    in_force_at: String,
    version: Option<String>,
}

impl PriceBookVersion {
    pub(super) fn of(v: &Version) -> PriceBookVersion {
        PriceBookVersion {
            currency: v.book.currency().code(),
            in_force_at: written(v.in_force_at),
            version: v.book.version().map(str::to_owned),
        }
    }
}

/// A customer.
#[derive(Debug, Serialize)]
pub(super) struct Customer {
    /// The platform add-ons switched on now.
    addons: Vec<String>,
    billing_anchor: String,
    created_at: String,
    id: String,
    name: String,
    updated_at: String,
}

impl Customer {
    pub(super) fn of(c: &CustomerRow) -> ApiResult<Customer> {
        Ok(Customer {
            addons: c.addons.iter().filter(|a| a.until.is_none()).map(|a| a.key.clone()).collect(),
            billing_anchor: rfc3339(c.billing_anchor)?,
            created_at: rfc3339(c.created_at)?,
            id: c.id.clone(),
            name: c.name.clone(),
            updated_at: rfc3339(c.updated_at)?,
        })
    }
}

/// A created customer, with its key (shown once: null when a creation is answered again).
#[derive(Debug, Serialize)]
pub(super) struct CreatedCustomer {
    pub(super) api_key: Option<String>,
    pub(super) customer: Customer,
}

/// A new key of a customer, shown once.
#[derive(Debug, Serialize)]
pub(super) struct NewApiKey {
    pub(super) api_key: String,
    pub(super) customer_id: String,
}

/// What a batch of usage did.
#[derive(Debug, Serialize)]
pub(super) struct Ingested<R> {
    pub(super) accepted: usize,
    pub(super) duplicates: usize,
    pub(super) rejected: Vec<R>,
}

/// A period: `[start, end)`.
#[derive(Debug, Serialize)]
pub(super) struct Period<T> {
    end: T,
    start: T,
}

impl Period<DateTime<Utc>> {
    fn of(p: BillingPeriod) -> Self {
        Period { end: p.end(), start: p.start() }
    }
}

/// A cap of the usage view: billing-core's summary, and when the cap was and will be reached.
#[derive(Debug, Serialize)]
pub(super) struct Cap<'a> {
    #[serde(flatten)]
    limit: &'a LimitSummary,
    cap_reached_at: Option<String>,
    projected_cap_at: Option<String>,
}

/// The month-end projection.
#[derive(Debug, Serialize)]
pub(super) struct Projected<'a> {
    bill: &'a Bill<'static>,
    usage: &'a BTreeMap<String, Quantity>,
}

/// `GET /v1/customers/{id}/usage`.
#[derive(Debug, Serialize)]
pub(super) struct UsageView<'a> {
    bill: &'a Bill<'static>,
    caps: Vec<Cap<'a>>,
    customer_id: &'a str,
    period: Period<DateTime<Utc>>,
    projected: Projected<'a>,
    usage: &'a BTreeMap<String, Quantity>,
}

impl<'a> UsageView<'a> {
    pub(super) fn of(customer_id: &'a str, view: &'a crate::app::UsageView) -> Self {
        let show = |t: Option<DateTime<Utc>>| t.map(written);
        let caps = view
            .bill
            .spend_limits
            .iter()
            .map(|limit| {
                let (reached, projected) =
                    view.caps.iter().find(|c| c.0 == limit.product).map_or((None, None), |c| (c.1, c.2));
                Cap { limit, cap_reached_at: show(reached), projected_cap_at: show(projected) }
            })
            .collect();
        UsageView {
            bill: &view.bill,
            caps,
            customer_id,
            period: Period::of(view.period),
            projected: Projected { bill: &view.projected_bill, usage: &view.projected_usage },
            usage: &view.usage,
        }
    }
}

/// A customer's caps: product → whole amount (a string).
pub(super) fn limits(rows: Vec<LimitRow>) -> BTreeMap<String, String> {
    rows.into_iter().map(|l| (l.product, l.amount.to_string())).collect()
}

/// An alert threshold a cap reached.
#[derive(Debug, Serialize)]
pub(super) struct Alert {
    detected_at: String,
    period_start: String,
    product: String,
    threshold: String,
}

impl Alert {
    pub(super) fn of(a: &AlertRow) -> ApiResult<Alert> {
        Ok(Alert {
            detected_at: rfc3339(a.detected_at)?,
            period_start: rfc3339(a.period_start)?,
            product: a.product.clone(),
            threshold: a.threshold.clone(),
        })
    }
}

/// One monthly release of a commitment's credit.
#[derive(Debug, Serialize)]
pub(super) struct Release {
    amount: Decimal,
    at: DateTime<Utc>,
}

/// A commitment bought.
#[derive(Debug, Serialize)]
pub(super) struct Commitment {
    customer_id: String,
    discount_rate: Decimal,
    exact_price: Decimal,
    expires_at: String,
    id: String,
    price: Decimal,
    releases: Vec<Release>,
    start: String,
    yearly_credit: Decimal,
}

impl Commitment {
    pub(super) fn of(c: &CommitmentRow, terms: &billing_core::CommitmentTerms) -> ApiResult<Commitment> {
        let releases = terms
            .releases(instant(c.starts_at)?)
            .map_err(|m| ApiError::internal(&m))?
            .into_iter()
            .map(|(at, amount)| Release { amount, at })
            .collect();
        Ok(Commitment {
            customer_id: c.customer_id.clone(),
            discount_rate: terms.discount,
            exact_price: terms.exact_price,
            expires_at: rfc3339(c.expires_at)?,
            id: c.id.clone(),
            price: terms.price,
            releases,
            start: rfc3339(c.starts_at)?,
            yearly_credit: terms.yearly_credit,
        })
    }
}

/// One movement of the credit ledger.
#[derive(Debug, Serialize)]
pub(super) struct Movement<'a> {
    amount: Decimal,
    at: DateTime<Utc>,
    commitment_id: &'a str,
    invoice_id: Option<&'a str>,
    kind: &'static str,
}

impl<'a> Movement<'a> {
    pub(super) fn of(e: &'a LedgerEntry) -> Self {
        Movement {
            amount: e.amount,
            at: e.at,
            commitment_id: &e.commitment_id,
            invoice_id: e.invoice_id.as_deref(),
            kind: e.kind,
        }
    }
}

/// `GET /v1/customers/{id}/credits`.
#[derive(Debug, Serialize)]
pub(super) struct Credits<'a> {
    pub(super) at: DateTime<Utc>,
    pub(super) balance: Decimal,
    pub(super) commitments: Vec<Commitment>,
    pub(super) customer_id: &'a str,
    pub(super) entries: Vec<Movement<'a>>,
}

/// A customer an invoice run could not invoice, and why.
#[derive(Debug, Serialize)]
pub(super) struct RunFailure {
    customer_id: String,
    period_start: String,
    reason: String,
}

/// An invoice run's counts.
#[derive(Debug, Serialize)]
pub(super) struct Counts {
    already_invoiced: i64,
    eligible: i64,
    failed: i64,
    invoiced: i64,
}

/// An invoice run.
#[derive(Debug, Serialize)]
pub(super) struct Run {
    as_of: String,
    counts: Counts,
    created_at: String,
    failures: Vec<RunFailure>,
    finished_at: Option<String>,
    id: String,
    issue: bool,
    seconds: Option<Decimal>,
    status: String,
}

impl Run {
    pub(super) fn of(run: &RunRow) -> ApiResult<Run> {
        let counts = RunCounts::of(run);
        let failures = run
            .failures
            .iter()
            .map(|f| {
                Ok(RunFailure {
                    customer_id: f.customer_id.clone(),
                    period_start: rfc3339(f.period_start)?,
                    reason: f.reason.clone(),
                })
            })
            .collect::<ApiResult<_>>()?;
        Ok(Run {
            as_of: rfc3339(run.as_of)?,
            counts: Counts {
                already_invoiced: counts.already_invoiced,
                eligible: counts.eligible,
                failed: counts.failed,
                invoiced: counts.invoiced,
            },
            created_at: rfc3339(run.created_at)?,
            failures,
            finished_at: rfc3339_opt(run.finished_at)?,
            id: run.id.clone(),
            issue: run.issue,
            seconds: run.finished_at.map(|f| Decimal::new(f - run.created_at, 6).normalize()),
            status: run.status.clone(),
        })
    }
}

/// An invoice: the document the service gives out (also the data of invoice events).
pub(super) use crate::app::InvoiceDocument as Invoice;

/// A billing-portal session. `url` (holding the link's single-use token) is given once, at creation.
#[derive(Debug, Serialize)]
pub(super) struct PortalSession {
    created_at: String,
    created_by: String,
    customer_id: String,
    /// The link's expiry until it is opened; then the session's absolute expiry.
    expires_at: String,
    id: String,
    opened_at: Option<String>,
    revoked_at: Option<String>,
    url: Option<String>,
}

impl PortalSession {
    pub(super) fn of(s: &crate::store::PortalSessionRow, url: Option<String>) -> ApiResult<PortalSession> {
        Ok(PortalSession {
            created_at: rfc3339(s.created_at)?,
            created_by: s.created_by.clone(),
            customer_id: s.customer_id.clone(),
            expires_at: rfc3339(s.expires_at.unwrap_or(s.link_expires_at))?,
            id: s.id.clone(),
            opened_at: rfc3339_opt(s.opened_at)?,
            revoked_at: rfc3339_opt(s.revoked_at)?,
            url,
        })
    }
}

/// A change of a spend cap (`old`/`new` null: no cap).
#[derive(Debug, Serialize)]
pub(super) struct LimitChange {
    by: String,
    changed_at: String,
    new: Option<String>,
    old: Option<String>,
    product: String,
}

impl LimitChange {
    pub(super) fn of(c: &crate::store::LimitChange) -> ApiResult<LimitChange> {
        Ok(LimitChange {
            by: c.by.clone(),
            changed_at: rfc3339(c.changed_at)?,
            new: c.new.map(|n| n.to_string()),
            old: c.old.map(|o| o.to_string()),
            product: c.product.clone(),
        })
    }
}

/// A webhook endpoint. `secret` is given once: at creation and at each rotation.
#[derive(Debug, Serialize)]
pub(super) struct Endpoint {
    created_at: String,
    description: Option<String>,
    disabled_reason: Option<String>,
    enabled: bool,
    event_types: Vec<String>,
    id: String,
    /// Until when the secret before the last rotation still signs beside the current one.
    previous_secret_until: Option<String>,
    secret: Option<String>,
    updated_at: String,
    url: String,
}

impl Endpoint {
    pub(super) fn of(e: &crate::store::EndpointRow, show_secret: bool) -> ApiResult<Endpoint> {
        Ok(Endpoint {
            created_at: rfc3339(e.created_at)?,
            description: e.description.clone(),
            disabled_reason: e.disabled_reason.clone(),
            enabled: e.enabled,
            event_types: e.event_types.clone(),
            id: e.id.clone(),
            previous_secret_until: rfc3339_opt(e.previous_until)?,
            secret: show_secret.then(|| e.secret.clone()),
            updated_at: rfc3339(e.updated_at)?,
            url: e.url.clone(),
        })
    }
}

/// An event: `data` as delivered.
#[derive(Debug, Serialize)]
pub(super) struct Event {
    created_at: String,
    customer_id: Option<String>,
    data: serde_json::Value,
    id: String,
    #[serde(rename = "type")]
    kind: String,
}

impl Event {
    pub(super) fn of(e: &crate::store::OutboxEvent) -> ApiResult<Event> {
        let data = serde_json::from_str(e.event.data.as_deref().unwrap_or("null"))
            .map_err(|x| ApiError::internal(&x))?;
        Ok(Event {
            created_at: rfc3339(e.event.created_at)?,
            customer_id: e.event.customer_id.clone(),
            data,
            id: e.event.id.clone(),
            kind: e.event.kind.clone(),
        })
    }
}

/// An attempt to deliver.
#[derive(Debug, Serialize)]
pub(super) struct Attempt {
    at: String,
    error: Option<String>,
    latency_ms: i64,
    manual: bool,
    n: i64,
    response: String,
    status: Option<i64>,
}

/// One event to one endpoint, with every attempt.
#[derive(Debug, Serialize)]
pub(super) struct Delivery {
    attempts: Vec<Attempt>,
    created_at: String,
    endpoint_id: String,
    event_id: String,
    id: String,
    /// When the next attempt is due (pending deliveries only).
    next_attempt_at: Option<String>,
    state: String,
}

impl Delivery {
    pub(super) fn of(d: &crate::store::DeliveryRow) -> ApiResult<Delivery> {
        let attempts = d
            .attempt_log
            .iter()
            .map(|a| {
                Ok(Attempt {
                    at: rfc3339(a.at)?,
                    error: a.error.clone(),
                    latency_ms: a.latency_micros / 1000,
                    manual: a.manual,
                    n: a.n,
                    response: a.response.clone(),
                    status: a.status,
                })
            })
            .collect::<ApiResult<_>>()?;
        Ok(Delivery {
            attempts,
            created_at: rfc3339(d.created_at)?,
            endpoint_id: d.endpoint_id.clone(),
            event_id: d.event_id.clone(),
            id: d.id.clone(),
            next_attempt_at: (d.state == "pending").then(|| rfc3339(d.next_attempt_at)).transpose()?,
            state: d.state.clone(),
        })
    }
}

/// A deleted resource.
#[derive(Debug, Serialize)]
pub(super) struct Deleted {
    pub(super) deleted: bool,
    pub(super) id: String,
}
