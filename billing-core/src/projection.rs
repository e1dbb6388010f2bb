//! Month-end projection of usage, and when a spend limit will be reached at the current rate.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::bill::{compute, LimitSummary};
use crate::catalog::PriceBook;
use crate::error::{Error, Result};
use crate::exact;
use crate::money::{round_to, Rounding};
use crate::period::BillingPeriod;
use crate::quantity::Quantity;
use crate::request::QuoteRequest;
use crate::spend_limit::Admission;

/// Usage seen in the first hours of a period is too little to extrapolate from; PostHog leaves it as is for the
/// first 6 hours, and so do we.
pub const MIN_HOURS_TO_PROJECT: i64 = 6;

/// Projects month-end usage from usage so far: `usage × seconds in period ÷ seconds elapsed`, rounded half away
/// from zero to the decimal places of `usage` (whole units for whole-unit meters). Within the first
/// [`MIN_HOURS_TO_PROJECT`] hours, and after the period, the usage is returned as is.
///
/// # Errors
/// [`Error::Overflow`] when the projection exceeds [`Quantity::MAX`].
///
/// # Examples
/// ```
/// use billing_core::{project_month_end, BillingPeriod, Quantity};
/// use chrono::{TimeZone, Utc};
/// use rust_decimal::Decimal;
/// let period = BillingPeriod::new(
///     Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
///     Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
/// ).unwrap();
/// let now = Utc.with_ymd_and_hms(2026, 11, 11, 0, 0, 0).unwrap();
/// let so_far = Quantity::new(Decimal::from(1_000_000)).unwrap();
/// assert_eq!(project_month_end(so_far, period, now)?.value(), Decimal::from(3_000_000));
/// # Ok::<(), billing_core::Error>(())
/// ```
pub fn project_month_end(usage: Quantity, period: BillingPeriod, now: DateTime<Utc>) -> Result<Quantity> {
    let elapsed = (now - period.start()).num_seconds();
    if elapsed < MIN_HOURS_TO_PROJECT * 3600 || now >= period.end() {
        return Ok(usage);
    }
    let scaled = exact::mul(usage.value(), Decimal::from(period.seconds()), "projection")?;
    let projected =
        scaled.checked_div(Decimal::from(elapsed)).ok_or(Error::Overflow { context: "projection" })?;
    let projected = round_to(projected, usage.value().scale(), Rounding::HalfAwayFromZero);
    Quantity::new(projected).map_err(|_| Error::Overflow { context: "projection" })
}

/// When a spend limit will stop usage, at the rate seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "at", rename_all = "snake_case")]
pub enum LimitForecast {
    /// The projected usage stays within the limit.
    NotThisPeriod,
    /// Usage is already being dropped.
    AlreadyReached,
    /// The first usage to be dropped is expected at this instant.
    At(DateTime<Utc>),
}

/// Turns the [`Admission`] of the *projected* month-end usage into the moment the limit will be reached, assuming
/// usage accrues at a constant rate from the start of the period (the assumption behind the projection).
///
/// The first dropped grid point is `(k + 1) / K` of the projected usage, reached at that share of the period,
/// rounded down to the second.
pub fn limit_forecast(admission: &Admission, period: BillingPeriod, now: DateTime<Utc>) -> LimitForecast {
    if !admission.reached {
        return LimitForecast::NotThisPeriod;
    }
    let Some((k, total)) = admission.steps else {
        return LimitForecast::AlreadyReached;
    };
    let seconds = i128::from(period.seconds()) * (k + 1) / total;
    let at = period.start() + Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX));
    if at <= now {
        LimitForecast::AlreadyReached
    } else {
        LimitForecast::At(at)
    }
}

/// What a product's spend cap does over a period at the pace seen so far: whether it already binds, when the
/// month-end projection makes it bind, and the product's usage at the period's end (offered, billable, dropped per
/// meter). The usage view of the API and the customer's billing page both ask this one function, so the page's
/// prediction for a cap being typed is the API's answer once it is saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapOutlook {
    /// The cap already binds on the usage so far.
    pub reached: bool,
    /// The first whole second at which usage growing at the pace so far makes the cap bind; `None` when it binds
    /// already, or not before the period ends.
    pub projected_at: Option<DateTime<Utc>>,
    /// The product's cap at the period's end, at this pace (`None` when the request does not cap the product).
    pub at_period_end: Option<LimitSummary>,
}

/// `request` with its usage grown at the pace seen between the period's start and `now` until `until`: what the
/// usage will be at `until` (as [`project_month_end`] projects to the period's end).
///
/// # Errors
/// [`Error::Overflow`] when a projection exceeds [`Quantity::MAX`].
pub fn project_request(
    request: &QuoteRequest,
    period: BillingPeriod,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<QuoteRequest> {
    let mut r = request.clone();
    if now > period.start() && until > now {
        let window = BillingPeriod::new(period.start(), until)
            .map_err(|_| Error::Overflow { context: "projection window" })?;
        for q in r.usage.values_mut() {
            *q = project_month_end(*q, window, now)?;
        }
    }
    Ok(r)
}

/// The [`CapOutlook`] of `product` for the usage so far in `request` (its `limits` hold the cap in question).
///
/// # Errors
/// As [`compute`]: the request cannot be priced with `book`.
pub fn cap_outlook(
    book: &PriceBook,
    request: &QuoteRequest,
    period: BillingPeriod,
    now: DateTime<Utc>,
    product: &str,
) -> Result<CapOutlook> {
    let binds = |bill: &crate::Bill<'_>| bill.spend_limits.iter().any(|l| l.product == product && l.reached);
    let reached = binds(&compute(book, request)?);
    let end = compute(book, &project_request(request, period, now, period.end())?)?;
    let at_period_end = end.spend_limits.iter().find(|l| l.product == product).cloned();
    let projected_at = if reached || !binds(&end) || now >= period.end() {
        None
    } else {
        // A bisection over the rest of the period in whole seconds since its start, each step one quote: the
        // answer is the first second at which the usage projected to it makes the cap bind.
        let at = |s: i64| period.start() + Duration::seconds(s);
        let (mut lo, mut hi) = ((now.max(period.start()) - period.start()).num_seconds(), period.seconds());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if binds(&compute(book, &project_request(request, period, now, at(mid))?)?) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(at(hi))
    };
    Ok(CapOutlook { reached, projected_at, at_period_end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period::utc_midnight;
    use chrono::TimeZone;

    fn november() -> BillingPeriod {
        BillingPeriod::new(utc_midnight(2026, 11, 1).unwrap(), utc_midnight(2026, 12, 1).unwrap()).unwrap()
    }

    fn q(n: i64) -> Quantity {
        Quantity::new(Decimal::from(n)).unwrap()
    }

    #[test]
    fn usage_is_left_as_is_in_the_first_six_hours() {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 5, 59, 59).unwrap();
        assert_eq!(project_month_end(q(1000), november(), at).unwrap(), q(1000));
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 6, 0, 0).unwrap();
        assert_eq!(project_month_end(q(1000), november(), at).unwrap(), q(120_000));
    }

    #[test]
    fn projections_round_half_away_from_zero_to_whole_units() {
        // 7 units in 7 days of a 30-day month: 30 exactly; 1 unit in 7 days: 4.2857… → 4.
        let at = utc_midnight(2026, 11, 8).unwrap();
        assert_eq!(project_month_end(q(7), november(), at).unwrap(), q(30));
        assert_eq!(project_month_end(q(1), november(), at).unwrap(), q(4));
    }

    #[test]
    fn the_forecast_places_the_first_dropped_unit_in_time() {
        let admission = Admission { billable: vec![q(9)], reached: true, steps: Some((9, 30)) };
        // The 10th of 30 projected units arrives a third of the way through the month.
        let now = utc_midnight(2026, 11, 2).unwrap();
        assert_eq!(
            limit_forecast(&admission, november(), now),
            LimitForecast::At(utc_midnight(2026, 11, 11).unwrap())
        );
        let later = utc_midnight(2026, 11, 20).unwrap();
        assert_eq!(limit_forecast(&admission, november(), later), LimitForecast::AlreadyReached);
        let within = Admission { billable: vec![q(9)], reached: false, steps: None };
        assert_eq!(limit_forecast(&within, november(), now), LimitForecast::NotThisPeriod);
    }
}
