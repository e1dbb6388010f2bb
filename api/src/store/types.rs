//! The row types the store reads and writes: exact (integer micro-units, microseconds, decimal text), never a float.
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A stored price-book version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBook {
    /// Its version label (unique).
    pub version: String,
    /// From when it prices periods (micros).
    pub in_force_at: i64,
    /// Canonical JSON.
    pub body: String,
}

/// A platform or optional add-on a customer has, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonSince {
    /// The add-on key.
    pub key: String,
    /// When it was switched on (micros).
    pub since: i64,
    /// When it was switched off (micros): kept while a period it was on in is not invoiced yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// A stored customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    /// Caller-chosen id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Start of the first billing period (micros).
    pub billing_anchor: i64,
    /// Add-ons chosen.
    pub addons: Vec<AddonSince>,
    /// Created (micros).
    pub created_at: i64,
    /// Last changed (micros).
    pub updated_at: i64,
    /// Start of the first period without an invoice (micros): every period before it is closed.
    pub open_from: i64,
    /// End of that period (micros); `None` only for a customer stored before invoicing existed, until the service
    /// sets it at start.
    pub open_until: Option<i64>,
}

/// A usage event to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Its customer.
    pub customer_id: String,
    /// The sender's id, unique per customer forever.
    pub event_id: String,
    /// The meter.
    pub meter: String,
    /// Quantity in micro-units.
    pub quantity_micros: i64,
    /// When it happened (micros).
    pub occurred_at: i64,
    /// Start of the billing period it falls in (micros).
    pub period_start: i64,
}

/// An absolute usage report: within a period the highest value wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    /// Its customer.
    pub customer_id: String,
    /// The meter.
    pub meter: String,
    /// Value in micro-units.
    pub value_micros: i64,
    /// Start of the billing period it falls in (micros).
    pub period_start: i64,
}

/// A period's usage of one meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterTotal {
    /// The meter.
    pub meter: String,
    /// Σ stored events (micro-units).
    pub events_micros: i64,
    /// The highest absolute report (micro-units), 0 when none.
    pub reported_micros: i64,
}

/// A spend cap in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRow {
    /// Product key.
    pub product: String,
    /// Whole currency units.
    pub amount: i64,
    /// When a lowered cap is pinned for its current period: that period's start, and the pinned cap.
    pub pinned: Option<(i64, i64)>,
}

/// An alert recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    /// Period start (micros).
    pub period_start: i64,
    /// Product key.
    pub product: String,
    /// The threshold, a decimal string (`0.8`).
    pub threshold: String,
    /// When ingestion detected it (micros).
    pub detected_at: i64,
}

/// What storing one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Newly stored (and added to its period's total).
    Stored,
    /// Its `(customer, id)` was already stored, by an earlier or a concurrent call: not counted again.
    Duplicate,
    /// Its period is already invoiced: refused, not stored.
    Closed,
}

/// A commitment bought: a yearly credit and its terms, as billing-core computed them at purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentRow {
    /// Its id.
    pub id: String,
    /// Its customer.
    pub customer_id: String,
    /// Face value (decimal text).
    pub yearly_credit: String,
    /// billing-core's `CommitmentTerms`, as JSON.
    pub terms: String,
    /// When the term starts (micros): the first release.
    pub starts_at: i64,
    /// When all of its credit expires (micros).
    pub expires_at: i64,
    /// Bought (micros).
    pub created_at: i64,
}

/// What an invoice did to a commitment's credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditEntry {
    /// The commitment whose credit moved.
    pub commitment_id: String,
    /// The invoice that moved it.
    pub invoice_id: String,
    /// `consumption` (negative amount) or `void_return` (positive).
    pub kind: String,
    /// Signed decimal text.
    pub amount: String,
    /// When (micros).
    pub at: i64,
}

/// A stored invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRow {
    /// Its id.
    pub id: String,
    /// Its customer.
    pub customer_id: String,
    /// The period invoiced (micros).
    pub period_start: i64,
    /// Its end (micros, exclusive).
    pub period_end: i64,
    /// `draft`, `issued`, `paid` or `void`.
    pub status: String,
    /// Given at issue.
    pub number: Option<String>,
    /// The price-book version that priced it.
    pub price_book_version: String,
    /// ISO code.
    pub currency: String,
    /// The quote request it was computed from (JSON).
    pub request: String,
    /// The bill (JSON).
    pub bill: String,
    /// The bill's total (decimal text).
    pub total: String,
    /// Credit applied (decimal text, zero or negative).
    pub credit_applied: String,
    /// What remains to be paid (decimal text).
    pub amount_due: String,
    /// The run that made it.
    pub run_id: Option<String>,
    /// Made (micros).
    pub created_at: i64,
    /// Issued (micros).
    pub issued_at: Option<i64>,
    /// Paid (micros).
    pub paid_at: Option<i64>,
    /// Voided (micros).
    pub voided_at: Option<i64>,
}

/// Which invoices to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceFilter {
    /// Only this customer's.
    pub customer_id: Option<String>,
    /// Only the period starting then (micros).
    pub period_start: Option<i64>,
    /// Only in this status.
    pub status: Option<String>,
}

/// A lifecycle step of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceAction {
    /// draft → issued, with the next number.
    Issue,
    /// issued → paid.
    Pay,
    /// draft or issued → void; consumed credit returns to the ledger.
    Void,
}

/// What a lifecycle step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Done: the invoice as it is now.
    Done(Box<InvoiceRow>),
    /// No invoice by that id.
    NotFound,
    /// Not allowed from the invoice's status (which is given).
    InvalidState(String),
}

/// An invoice run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// Its id.
    pub id: String,
    /// Periods that ended at or before this instant are invoiced (micros).
    pub as_of: i64,
    /// Whether its invoices are issued at once.
    pub issue: bool,
    /// `running` or `completed`.
    pub status: String,
    /// Customer periods that ended by `as_of`, counted when the run was created.
    pub eligible: i64,
    /// Invoices this run made.
    pub invoiced: i64,
    /// Created (micros).
    pub created_at: i64,
    /// Completed (micros).
    pub finished_at: Option<i64>,
    /// The periods it could not invoice, and why.
    pub failures: Vec<RunFailure>,
}

/// A period a run could not invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    /// The customer.
    pub customer_id: String,
    /// Its period (micros).
    pub period_start: i64,
    /// Why.
    pub reason: String,
}

/// What an invoice run needs to price a customer's next period: read in the transaction that invoices it.
#[derive(Debug, Clone)]
pub struct Due {
    /// The customer; its period to invoice is `[open_from, open_until)`.
    pub customer: CustomerRow,
    /// Its usage in that period.
    pub totals: Vec<MeterTotal>,
    /// Its caps.
    pub limits: Vec<LimitRow>,
    /// Its commitments.
    pub commitments: Vec<CommitmentRow>,
    /// Its credit movements so far.
    pub credits: Vec<CreditEntry>,
}

/// An invoice priced for a [`Due`] period, ready to store: the invoice (status `draft`, or `issued` without its
/// number: the store numbers it), the credit it consumes, and the customer's next open period.
#[derive(Debug, Clone)]
pub struct PricedInvoice {
    /// The invoice.
    pub invoice: InvoiceRow,
    /// Credit consumed (negative amounts).
    pub consumption: Vec<CreditEntry>,
    /// The next open period: `(open_from, open_until)`.
    pub next: (i64, i64),
}

/// Prices a due period, or says why it cannot. Shared with the blocking thread that prices a chunk while the
/// database works on the one before.
pub type PriceFn = Arc<dyn Fn(&Due) -> Result<PricedInvoice, PricingError> + Send + Sync>;

/// Why a customer's due period could not be priced. The run records its sentence (`Display`) as that customer's
/// failure and goes on with the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// The customer's open period does not start where its billing anchor puts a period start (micros).
    #[error("the open period start {0} is not a period start")]
    NotAPeriodStart(i64),
    /// The period's request or bill breaks a rule of the price book, or an amount is out of range: the sentence.
    #[error("{0}")]
    Rejected(String),
    /// Something the customer's data cannot cause: no randomness for an id, a bill that cannot be encoded.
    #[error("{0}")]
    Internal(String),
}

/// What one batch of a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchDone {
    /// Customers claimed.
    pub claimed: usize,
    /// Invoices stored.
    pub invoiced: usize,
    /// Periods that failed (recorded on the run).
    pub failed: usize,
}

/// Where an invoice run's workers claim next: the highest customer id claimed so far in the current pass over the
/// customers (in id order), shared by the workers of one process. A worker claims after it, so workers take
/// successive customers instead of each scanning past the ones the others have claimed (with a cursor of its own,
/// each of N workers read every customer row: N passes' worth of claims). Moved on as each chunk is claimed, before
/// its invoices commit: a batch that then fails leaves its customers to the next pass.
#[derive(Debug, Default)]
pub struct ClaimCursor {
    at: std::sync::Mutex<String>,
}

impl ClaimCursor {
    fn lock(&self) -> std::sync::MutexGuard<'_, String> {
        // A worker that panicked while holding the lock left a String, which is always valid.
        self.at.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The id claims start after (empty: from the first customer).
    #[must_use]
    pub fn get(&self) -> String {
        self.lock().clone()
    }

    /// Where a claim that already reached `own` (a batch's own last claim) goes on from: the later of the two.
    pub(super) fn after(&self, own: &str) -> String {
        let at = self.lock();
        if at.as_str() > own {
            at.clone()
        } else {
            own.to_owned()
        }
    }

    /// Records a claim up to `last`; the cursor never moves back but by [`ClaimCursor::restart`].
    pub(super) fn advance(&self, last: &str) {
        let mut at = self.lock();
        if last > at.as_str() {
            last.clone_into(&mut at);
        }
    }

    /// Starts the next pass from the first customer, if the cursor is still at `seen` (where a batch that claimed
    /// nothing started): of several workers finding the end of a pass at once, one restarts it, and a worker that
    /// found the end late does not send the others back to the start of a pass they have already begun.
    /// Whether it restarted.
    pub fn restart(&self, seen: &str) -> bool {
        let mut at = self.lock();
        if at.as_str() == seen && !seen.is_empty() {
            at.clear();
            true
        } else {
            false
        }
    }
}

/// An invoice number: the prefix and at least six digits.
pub fn invoice_number(prefix: &str, n: i64) -> String {
    format!("{prefix}{n:06}")
}

/// The kind of credential a change was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// The admin token.
    Admin,
    /// A customer's API key.
    ApiKey,
    /// A billing-portal session (the customer's billing page).
    Portal,
}

impl CredentialKind {
    /// As stored and shown: `admin`, `api_key`, `portal`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Admin => "admin",
            CredentialKind::ApiKey => "api_key",
            CredentialKind::Portal => "portal",
        }
    }
}

/// A change of a spend cap: what it was and became (`None`: no cap), when, and by which kind of credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitChange {
    /// Its place in the order of changes (increasing).
    pub seq: i64,
    /// The product.
    pub product: String,
    /// The cap before (whole units).
    pub old: Option<i64>,
    /// The cap after (whole units).
    pub new: Option<i64>,
    /// When (micros).
    pub changed_at: i64,
    /// `admin`, `api_key` or `portal`.
    pub by: String,
}

/// A meter's usage events in one UTC day of a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsage {
    /// The meter.
    pub meter: String,
    /// The UTC midnight starting the day (micros).
    pub day: i64,
    /// The day's events' quantities, summed (micro-units).
    pub events_micros: i64,
}

/// A billing-portal session: a single-use link that becomes a browser session for one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSessionRow {
    /// Its id (`ps_…`).
    pub id: String,
    /// The one customer it may see.
    pub customer_id: String,
    /// Until when its link may be opened (micros).
    pub link_expires_at: i64,
    /// When its link was opened (micros): a link opens once.
    pub opened_at: Option<i64>,
    /// When the session was last used (micros): it ends after an hour idle.
    pub last_seen_at: Option<i64>,
    /// When the session ends whatever its use (micros): 12 hours after opening.
    pub expires_at: Option<i64>,
    /// When it was revoked (micros), by the admin or by a rotation of the customer's key.
    pub revoked_at: Option<i64>,
    /// `admin` or `api_key`.
    pub created_by: String,
    /// When it was created (micros).
    pub created_at: i64,
}

/// An invoice's stored request, as a price preview reprices it (`Store::invoiced_requests`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoicedRequest {
    /// Its customer.
    pub customer_id: String,
    /// The invoice.
    pub invoice_id: String,
    /// The period invoiced (micros).
    pub period_start: i64,
    /// Its end (micros, exclusive).
    pub period_end: i64,
    /// The price-book version that priced it.
    pub price_book_version: String,
    /// ISO code.
    pub currency: String,
    /// The quote request it was computed from (JSON).
    pub request: String,
    /// The bill's total (decimal text).
    pub total: String,
}

/// A page of customers and their invoices' stored requests (`Store::invoiced_requests`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoicedPage {
    /// The invoices, by customer and period.
    pub requests: Vec<InvoicedRequest>,
    /// How many customers the page looked at.
    pub customers: usize,
    /// The last of them (`None`: there was none, the end).
    pub last: Option<String>,
}
