//! Commitment advice: the yearly credit that makes a monthly estimate cheapest over a year.
//!
//! Buying a credit `C` of a bracket with discount `d` costs `price(C) = round(C × (1 − d))` up front; the year's
//! usage at list, `U = 12 × estimate`, is paid from the credit and whatever exceeds it is billed at list. So the
//! twelve months cost
//!
//! ```text
//! cost(C) = price(C) + max(0, U − C)        (no commitment: cost = U)
//! ```
//!
//! Within one bracket `cost` never rises as `C` grows towards `U` (each cent more of credit costs at most a cent
//! and saves one) and never falls past `U` (credit beyond the year's usage expires unused). So the minimum over
//! every credit is at one of a handful of points: `U` itself (raised to the offer's minimum), or the first credit
//! of a bracket above `U` — buying into the next bracket can cost less than buying exactly what you use. The
//! property tests check this against a brute-force search over random credits.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::catalog::CommitmentOffer;
use crate::commitment::CommitmentTerms;
use crate::error::{Error, Issue, Result};
use crate::exact;
use crate::money::{Currency, Rounding};

/// One way to pay for a year of the estimate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdviceOption {
    /// The yearly credit bought; `None` for no commitment.
    pub yearly_credit: Option<Decimal>,
    /// The bracket's discount rate (zero without a commitment).
    pub discount_rate: Decimal,
    /// What the credit costs up front, rounded (zero without a commitment).
    pub price: Decimal,
    /// The year's usage the credit does not cover, billed at list.
    pub billed_past_credit: Decimal,
    /// Credit left unused when the term ends (it expires).
    pub unused_credit: Decimal,
    /// `price + billed_past_credit`: what the twelve months cost.
    pub twelve_month_cost: Decimal,
    /// `no commitment − twelve_month_cost` (zero or positive for the best option).
    pub saving: Decimal,
}

/// The advice for one monthly estimate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentAdvice {
    /// The monthly estimate advised on (a bill total).
    pub monthly_estimate: Decimal,
    /// `12 × monthly_estimate`: the year's usage at list.
    pub yearly_usage: Decimal,
    /// Paying as you go.
    pub no_commitment: AdviceOption,
    /// The cheapest option: a credit, or no commitment when none saves anything. Ties go to no commitment, then
    /// to the smaller credit.
    pub best: AdviceOption,
    /// Every option compared (no commitment first, then credits ascending).
    pub options: Vec<AdviceOption>,
}

/// What buying `credit` costs for a year of `yearly_usage`.
///
/// # Errors
/// A message when the credit is not accepted by the offer; [`Error::Overflow`] when an amount does not fit.
pub fn twelve_month_cost(
    offer: &CommitmentOffer,
    currency: Currency,
    yearly_usage: Decimal,
    credit: Decimal,
) -> Result<std::result::Result<AdviceOption, String>> {
    let terms = match CommitmentTerms::select(offer, currency, credit) {
        Ok(terms) => terms,
        Err(message) => return Ok(Err(message)),
    };
    let past = exact::sub(yearly_usage, credit, "commitment advice")?.max(Decimal::ZERO);
    let unused = exact::sub(credit, yearly_usage, "commitment advice")?.max(Decimal::ZERO);
    let cost = exact::add(terms.price, past, "commitment advice")?;
    Ok(Ok(AdviceOption {
        yearly_credit: Some(credit),
        discount_rate: terms.discount,
        price: terms.price,
        billed_past_credit: past,
        unused_credit: unused,
        twelve_month_cost: cost,
        saving: exact::sub(yearly_usage, cost, "commitment advice")?,
    }))
}

/// The yearly credit that minimises the twelve-month cost of `monthly_estimate`, beside no commitment.
///
/// # Errors
/// [`Error::InvalidRequest`] (path `monthly_estimate`) when the estimate is negative or not a whole number of
/// minor units; [`Error::Overflow`] when it is too large to compute exactly.
///
/// # Examples
/// ```
/// use billing_core::{commitment_advice, PriceBook};
/// use rust_decimal::Decimal;
/// let book = PriceBook::default_book()?;
/// let offer = book.commitment().unwrap();
/// // $2,000 a month is $24,000 a year: the $25,000 credit (20 % off, $20,000) beats buying $24,000 at 10 % off.
/// let advice = commitment_advice(offer, book.currency(), Decimal::from(2000))?;
/// assert_eq!(advice.best.yearly_credit, Some(Decimal::from(25000)));
/// assert_eq!(advice.best.twelve_month_cost.to_string(), "20000.00");
/// assert_eq!(advice.no_commitment.twelve_month_cost, Decimal::from(24000));
/// # Ok::<(), billing_core::Error>(())
/// ```
pub fn commitment_advice(
    offer: &CommitmentOffer,
    currency: Currency,
    monthly_estimate: Decimal,
) -> Result<CommitmentAdvice> {
    let invalid = |message: &str| Error::InvalidRequest(vec![Issue::new("monthly_estimate", message)]);
    if monthly_estimate.is_sign_negative() && !monthly_estimate.is_zero() {
        return Err(invalid("must not be negative"));
    }
    if currency.round(monthly_estimate, Rounding::HalfAwayFromZero) != monthly_estimate {
        return Err(invalid(&format!("must be a whole number of minor units of {currency}")));
    }
    let yearly_usage = exact::mul(monthly_estimate, Decimal::from(12), "commitment advice")?;
    let none = AdviceOption {
        yearly_credit: None,
        discount_rate: Decimal::ZERO,
        price: Decimal::ZERO,
        billed_past_credit: yearly_usage,
        unused_credit: Decimal::ZERO,
        twelve_month_cost: yearly_usage,
        saving: Decimal::ZERO,
    };
    // The candidates: the year's usage (at least the minimum), and the first credit of every bracket above it.
    let first = yearly_usage.max(offer.minimum_credit);
    let mut credits = vec![first];
    credits.extend(offer.brackets.iter().map(|b| b.credit_from).filter(|c| *c > first));
    let mut options = vec![none.clone()];
    for credit in credits {
        // A bracket start the offer refuses (not whole minor units) is no option.
        if let Ok(option) = twelve_month_cost(offer, currency, yearly_usage, credit)? {
            options.push(option);
        }
    }
    let best = options
        .iter()
        // `min_by` keeps the first of equal minima: no commitment, then the smaller credit.
        .min_by(|a, b| a.twelve_month_cost.cmp(&b.twelve_month_cost))
        .cloned()
        .unwrap_or_else(|| none.clone());
    Ok(CommitmentAdvice { monthly_estimate, yearly_usage, no_commitment: none, best, options })
}
