//! billing-core: tally's pure, decimal-exact pricing engine.
//!
//! One computation runs everything tally does: metered usage + a price book → priced lines → adjustments → a
//! total. This crate is that computation, with no I/O, no clock and no floats, so the server, the `tally` CLI and
//! the browser (compiled to wasm) all run the very same code, and an estimate equals its invoice to the cent.
//!
//! # Reading order
//!
//! * [`error`]: the one [`Error`] type; validation reports every [`Issue`] with its JSON path.
//! * [`exact`]: decimal arithmetic that fails instead of rounding (rust_decimal's `checked_*` round silently).
//! * [`money`]: [`Currency`] and its minor unit, the named [`Rounding`] strategies, [`Amount`] (exact + rounded).
//! * [`quantity`] and [`wire`]: bounded [`Quantity`]s, and decimals read from JSON integers or strings only.
//! * [`charge`]: the charge models ([`ChargeModel`]: per unit, graduated, volume, package) and [`TierSchedule`].
//! * [`catalog`]: the [`PriceBook`], parsed and validated once.
//! * [`period`]: half-open [`BillingPeriod`]s and exact [`Proration`].
//! * [`advice`]: the yearly credit that makes a monthly estimate cheapest ([`commitment_advice`]).
//! * [`commitment`]: the self-selected yearly credit ([`CommitmentTerms`]), its release schedule, paying from it.
//! * [`spend_limit`]: per-product [`SpendLimit`]s, the usage they admit, and alert thresholds.
//! * [`projection`]: month-end usage and when a limit will be reached.
//! * [`request`] and [`bill`]: the [`QuoteRequest`], and [`compute`], the one pipeline that produces a [`Bill`].
//! * [`stored`]: the compact, lossless form an invoice keeps its bill in.
//!
//! # Example
//!
//! ```
//! use billing_core::{compute, PriceBook, QuoteRequest};
//! let book = PriceBook::default_book()?;
//! let request = QuoteRequest::from_json(r#"{"usage": {"events": 2000000, "identified_events": 2000000}}"#)?;
//! let bill = compute(&book, &request)?;
//! assert_eq!(bill.total.to_string(), "248.00");
//! # Ok::<(), billing_core::Error>(())
//! ```
#![deny(missing_docs)]
#![deny(clippy::float_arithmetic, clippy::float_cmp, clippy::cast_precision_loss)]
#![forbid(unsafe_code)]

pub mod advice;
pub mod bill;

pub mod catalog;
pub mod charge;
pub mod commitment;
pub mod error;
pub mod exact;
pub mod money;
pub mod period;
pub mod projection;
pub mod quantity;
pub mod request;
pub mod spend_limit;
pub mod stored;
#[cfg(test)]
mod testing;
pub mod wire;

pub use advice::{commitment_advice, twelve_month_cost, AdviceOption, CommitmentAdvice};
pub use bill::{compute, Bill, CommitmentSummary, LimitSummary, Line, LineKind, MeterAdmission, Stage};
pub use catalog::{
    Addon, Bracket, CommitmentOffer, Metered, PlatformAddon, PriceBook, Product, SpendLimitRules,
};
pub use charge::{ChargeBreakdown, ChargeModel, Package, PackageRounding, Slice, Slices, Tier, TierSchedule};
pub use commitment::{apply_credit, release_schedule, CommitmentTerms, CreditApplication};
pub use error::{Error, Issue, Result};
pub use money::{Amount, Currency, Rounding};
pub use period::{BillingPeriod, Proration};
pub use projection::{
    cap_outlook, limit_forecast, project_month_end, project_request, CapOutlook, LimitForecast,
};
pub use quantity::Quantity;
pub use request::{AddonChoice, CommitmentChoice, QuoteRequest};
pub use spend_limit::{
    billable_usage, thresholds_crossed, thresholds_reached, Admission, LimitState, SpendLimit,
};
