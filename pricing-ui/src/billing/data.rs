//! What the billing page shows, as the server read it: the page's data, which travels in the page as JSON for the
//! client to hydrate from.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The id of the `<script type="application/json">` element carrying the page's [`BillingData`].
pub const DATA_ELEMENT_ID: &str = "tally-billing";

/// Everything the billing page shows, read by the server for one customer and period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingData {
    /// The customer's name.
    pub customer: String,
    /// The session's CSRF token, carried by every form.
    pub csrf: String,
    /// When the page was read (the pace of usage is measured to this instant).
    pub now: DateTime<Utc>,
    /// The period shown: its start.
    pub period_start: DateTime<Utc>,
    /// Its end (exclusive).
    pub period_end: DateTime<Utc>,
    /// The periods the picker offers, newest first.
    pub periods: Vec<PeriodChoice>,
    /// Whether the period shown is the open one (caps can change what it bills).
    pub current: bool,
    /// The period's quote request so far (usage, add-ons, caps, commitment), as JSON.
    pub request: String,
    /// The bill so far.
    pub so_far: Totals,
    /// The bill at the period's end at the current pace.
    pub projected: Totals,
    /// Prepaid credit available now.
    pub credit_balance: Option<Decimal>,
    /// The commitment in force.
    pub commitment: Option<CommitmentData>,
    /// Per product with usage or a cap.
    pub products: Vec<ProductData>,
    /// Alerts crossed this period.
    pub alerts: Vec<AlertData>,
    /// The customer's invoices, newest first.
    pub invoices: Vec<InvoiceData>,
    /// Cap changes, newest first.
    pub history: Vec<ChangeData>,
    /// A message after an action (saved, or why not).
    pub notice: Option<String>,
}

/// A period of the picker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodChoice {
    /// `YYYY-MM-DD` of its start (the query value).
    pub value: String,
    /// Its dates in words.
    pub label: String,
    /// Whether it is the one shown.
    pub selected: bool,
}

/// A bill's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Sum of the lines.
    pub subtotal: Decimal,
    /// The commitment's discount.
    pub discount: Decimal,
    /// After discount.
    pub total: Decimal,
    /// Paid from prepaid credit.
    pub credit_applied: Decimal,
    /// Left to pay.
    pub amount_due: Decimal,
}

/// The commitment in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentData {
    /// The yearly credit bought.
    pub yearly_credit: Decimal,
    /// Its bracket's discount (a share).
    pub discount_rate: Decimal,
    /// Monthly releases still to come.
    pub releases_left: u32,
    /// When its credit expires.
    pub expires_at: DateTime<Utc>,
}

/// One product of the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductData {
    /// Product key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Its meter and unit (singular).
    pub meter: String,
    /// Singular unit.
    pub unit: String,
    /// Usage so far of its own meter.
    pub usage: Decimal,
    /// The free allowance of its own meter.
    pub free: Option<Decimal>,
    /// Amount so far (list, its lines and its add-ons').
    pub amount: Decimal,
    /// Amount at the period's end at the current pace.
    pub projected_amount: Decimal,
    /// How the amount is calculated: one row per tier slice.
    pub tiers: Vec<TierRow>,
    /// Usage per day of the period, per meter of the product.
    pub daily: Vec<MeterDays>,
    /// The cap in force (whole units, after discount).
    pub cap: Option<Decimal>,
    /// When a lowered cap keeps this period at an amount: that amount.
    pub pinned: Option<Decimal>,
    /// When the cap was reached this period.
    pub reached_at: Option<DateTime<Utc>>,
    /// When the projection reaches it.
    pub projected_at: Option<DateTime<Utc>>,
    /// Usage dropped so far, per meter (meter, unit, quantity).
    pub dropped: Vec<(String, String, Decimal)>,
}

/// A tier slice of the calculation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRow {
    /// The line (product or add-on) it belongs to.
    pub line: String,
    /// `tier 2 (1,000,001 – 2,000,000)`.
    pub tier: String,
    /// `1,000,000 events × $0.0000343`.
    pub units: String,
    /// Its amount, exact.
    pub amount: Decimal,
}

/// One meter's usage per day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterDays {
    /// The meter.
    pub meter: String,
    /// Its unit (singular).
    pub unit: String,
    /// Each day's start and quantity, in order.
    pub days: Vec<(DateTime<Utc>, Decimal)>,
}

/// An alert crossed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertData {
    /// Product name.
    pub product: String,
    /// Share of the cap.
    pub threshold: Decimal,
    /// When.
    pub at: DateTime<Utc>,
}

/// An invoice of the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceData {
    /// Its id (for the links).
    pub id: String,
    /// Its number, once issued.
    pub number: Option<String>,
    /// Its period in words.
    pub period: String,
    /// Total.
    pub total: Decimal,
    /// Amount due.
    pub amount_due: Decimal,
    /// draft, issued, paid, void.
    pub status: String,
}

/// A change of a cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeData {
    /// Product name.
    pub product: String,
    /// Before (`None`: no cap).
    pub old: Option<Decimal>,
    /// After.
    pub new: Option<Decimal>,
    /// When.
    pub at: DateTime<Utc>,
    /// `admin`, `api_key`, `portal`.
    pub by: String,
}
