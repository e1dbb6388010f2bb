//! What the customer's billing page shows, read in one use-case: the usage view of a period with its daily usage,
//! the caps in force, the period's alerts, the invoices, the cap changes and the credit.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::credit::Ledger;
use super::service::{instant, Outcome, Service};
use super::usage::UsageView;
use crate::store::{AlertRow, CommitmentRow, CustomerRow, InvoiceFilter, InvoiceRow, LimitChange, LimitRow};
use crate::time::micros;

/// How many invoices and cap changes the page lists (the newest).
pub(super) const PAGE_LIST: i64 = 24;

/// Everything the billing page of one customer and period shows.
#[derive(Debug)]
pub struct BillingOverview {
    /// The customer.
    pub customer: CustomerRow,
    /// The period's usage view (the API's `GET /v1/customers/{id}/usage`).
    pub view: UsageView,
    /// Per meter, the quantity of each day of the period.
    pub daily: std::collections::BTreeMap<String, Vec<(DateTime<Utc>, billing_core::Quantity)>>,
    /// The caps in force.
    pub limits: Vec<LimitRow>,
    /// The alerts of the period.
    pub alerts: Vec<AlertRow>,
    /// The newest invoices.
    pub invoices: Vec<InvoiceRow>,
    /// The newest cap changes.
    pub history: Vec<LimitChange>,
    /// Commitments and the credit ledger now.
    pub credit: (Vec<CommitmentRow>, Ledger),
    /// The starts of the periods from the customer's first to the open one, newest first.
    pub periods: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Whether the period shown contains now.
    pub current: bool,
    /// When it was read.
    pub now: DateTime<Utc>,
}

impl Service {
    /// The billing page's reading of `customer_id`'s period containing `at` (its first period when `at` is before
    /// it).
    ///
    /// # Errors
    /// `NotFound`; storage errors.
    pub async fn billing_overview(&self, customer_id: &str, at: DateTime<Utc>) -> Outcome<BillingOverview> {
        let customer = self.customer(customer_id).await?;
        // A customer whose first period has not begun sees that period.
        let first = instant(customer.billing_anchor)?;
        let now = self.now();
        let at = at.max(first);
        let view = self.usage_view(&customer, at).await?;
        let period = view.period;
        let daily = self.daily_usage(&customer, period).await?;
        let limits = self.store.limits(&customer.id).await?;
        let start = micros(period.start());
        let alerts =
            self.store.alerts(&customer.id).await?.into_iter().filter(|a| a.period_start == start).collect();
        let mut invoices = Vec::new();
        let filter =
            InvoiceFilter { customer_id: Some(customer.id.clone()), period_start: None, status: None };
        // Invoices page by id (creation order): read them all, keep the newest.
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.invoices(&filter, cursor.as_deref(), 500).await?;
            let done = page.len() < 500;
            cursor = page.last().map(|i| i.id.clone());
            invoices.extend(page);
            if done {
                break;
            }
        }
        invoices.sort_by_key(|i| std::cmp::Reverse(i.period_start));
        invoices.truncate(usize::try_from(PAGE_LIST).unwrap_or(24));
        let history = self.store.limit_changes(&customer.id, None, PAGE_LIST).await?;
        let credit = self.ledger(&customer, now).await?;
        let mut periods = Vec::new();
        let mut p = Self::period_of(&customer, now.max(first))?;
        while periods.len() < 36 {
            periods.push((p.start(), p.end()));
            if p.start() <= first {
                break;
            }
            p = Self::period_of(&customer, p.start() - chrono::Duration::seconds(1))?;
        }
        let current = period.start() <= now && now < period.end();
        Ok(BillingOverview {
            customer,
            view,
            daily,
            limits,
            alerts,
            invoices,
            history,
            credit,
            periods,
            current,
            now,
        })
    }
}

/// The credit a ledger holds now, when the customer has a commitment.
pub fn credit_balance(overview: &BillingOverview) -> Option<Decimal> {
    (!overview.credit.0.is_empty()).then_some(overview.credit.1.balance)
}
