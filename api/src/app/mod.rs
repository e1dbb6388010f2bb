//! The use-cases: load what the store holds, ask billing-core what it costs, store what happened.
//!
//! Handlers (`http`) parse and present; this layer owns the rules of the service (periods, caps in force, what an
//! event may be, who may see what) and never computes a price itself: every amount comes from
//! [`billing_core::compute`]. One [`Service`], its use-cases in one file each, in dependency order: `credit`
//! (commitments and the ledger) → `period` (the request of a period) → `usage` (the usage view) → `ingest`,
//! `limits`, `portal` (the customer's billing page); `customers`, `quotes`, `runs` (invoice runs), `lifecycle` (draft → issued → paid | void);
//! `documents` (an invoice as given out), `webhooks` (events, endpoints) → `delivery` (sending them);
//! `reprice` (a draft price book tried on every customer) → `preview` (its report).

mod access;
mod billing;
mod credit;
mod customers;
mod delivery;
mod documents;
mod ingest;
mod lifecycle;
mod limits;
mod period;
mod portal;
mod preview;
mod quotes;
mod reprice;
mod runs;
mod service;
mod usage;
mod webhooks;

pub use billing::{credit_balance, BillingOverview};
pub use credit::{available_credit, Ledger, LedgerEntry};
pub use customers::Created;
pub use delivery::{after_failure, body_of, scaled_micros, DISABLE_AFTER_SECONDS, SCHEDULE_SECONDS};
pub use documents::{written, written_at, InvoiceDocument, PeriodText};
pub use ingest::{Entry, EntryKind, Ingested, Rejected};
pub use period::period_request;
pub use portal::{
    csrf_matches, csrf_token, NewPortalSession, OpenedSession, ABSOLUTE_MICROS, IDLE_MICROS, LINK_TTL_MICROS,
};
pub use preview::{
    CapBinds, CustomerPreview, Percentiles, Preview, Problem, ProductChange, ProductMove, Span, Summary,
    Versions,
};
pub use reprice::{PreviewPeriod, PreviewProgress, DEFAULT_TOP, MAX_TOP};
pub use runs::{RunCounts, RunSettings, DEFAULT_PREFIX};
pub use service::{from_micros, instant, invalid, quantity_micros, Failure, Outcome, Service, Version};
pub use usage::{CapTimes, UsageView};
pub use webhooks::{EndpointChange, NewEndpoint, WebhookSettings, EVENT_TYPES, ROTATION_OVERLAP_MICROS};
