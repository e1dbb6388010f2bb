//! Billing periods and proration. Time is always passed in; nothing here reads a clock.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::Currency;

/// A billing period, half-open: `[start, end)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawPeriod")]
pub struct BillingPeriod {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeriod {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl TryFrom<RawPeriod> for BillingPeriod {
    type Error = String;
    fn try_from(raw: RawPeriod) -> Result<Self, String> {
        BillingPeriod::new(raw.start, raw.end)
    }
}

impl BillingPeriod {
    /// A period from `start` (included) to `end` (excluded).
    ///
    /// # Errors
    /// A message when `end` is not after `start`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<BillingPeriod, String> {
        if end <= start {
            return Err(format!("period end ({end}) must be after its start ({start})"));
        }
        Ok(BillingPeriod { start, end })
    }

    /// The monthly period anchored on `anchor` (the subscription start) that contains `at`.
    ///
    /// Periods start on the anchor's day of the month; an anchor on the 29th–31st is clamped to the last day of
    /// shorter months, and each period is computed from the anchor (not from the previous period), so a 31st anchor
    /// returns to the 31st after February.
    ///
    /// # Errors
    /// A message when `at` is before `anchor` or the dates are out of chrono's range.
    ///
    /// # Examples
    /// ```
    /// use billing_core::BillingPeriod;
    /// use chrono::{TimeZone, Utc};
    /// let anchor = Utc.with_ymd_and_hms(2026, 1, 31, 0, 0, 0).unwrap();
    /// let at = Utc.with_ymd_and_hms(2026, 2, 15, 0, 0, 0).unwrap();
    /// let p = BillingPeriod::monthly(anchor, at)?;
    /// assert_eq!(p.start(), Utc.with_ymd_and_hms(2026, 1, 31, 0, 0, 0).unwrap());
    /// assert_eq!(p.end(), Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap());
    /// # Ok::<(), String>(())
    /// ```
    pub fn monthly(anchor: DateTime<Utc>, at: DateTime<Utc>) -> Result<BillingPeriod, String> {
        if at < anchor {
            return Err(format!("{at} is before the subscription start {anchor}"));
        }
        let months_between = (at.year() - anchor.year()) * 12 + at.month0() as i32 - anchor.month0() as i32;
        let mut n = u32::try_from(months_between.max(0)).map_err(|e| e.to_string())?;
        loop {
            let start = add_months_clamped(anchor, n)?;
            let end = add_months_clamped(anchor, n + 1)?;
            if at < start {
                n = n.checked_sub(1).ok_or("period before anchor")?;
            } else if at >= end {
                n += 1;
            } else {
                return BillingPeriod::new(start, end);
            }
        }
    }

    /// The first instant of the period.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// The first instant after the period.
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// Length in whole seconds.
    pub fn seconds(&self) -> i64 {
        (self.end - self.start).num_seconds()
    }

    /// Whether `at` lies in `[start, end)`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }

    /// The share of the period from `from` to its end, as an exact ratio of seconds.
    ///
    /// A start before the period counts as the whole period.
    ///
    /// # Errors
    /// A message when `from` is at or after the end of the period.
    pub fn remaining_from(&self, from: DateTime<Utc>) -> Result<Proration, String> {
        if from >= self.end {
            return Err(format!("{from} is not before the end of the period ({})", self.end));
        }
        let from = from.max(self.start);
        Ok(Proration { seconds: (self.end - from).num_seconds(), of: self.seconds() })
    }
}

impl BillingPeriod {
    /// The share of the period between `from` and `until` (each clamped to the period; absent, the period's own
    /// start or end), as an exact ratio of seconds.
    ///
    /// # Errors
    /// A message when nothing of the period is left between them.
    pub fn window(
        &self,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Proration, String> {
        let start = from.map_or(self.start, |f| f.max(self.start));
        let end = until.map_or(self.end, |u| u.min(self.end));
        if end <= start {
            return Err(format!(
                "[{start}, {end}) leaves nothing of the period [{}, {})",
                self.start, self.end
            ));
        }
        Ok(Proration { seconds: (end - start).num_seconds(), of: self.seconds() })
    }
}

/// `at` plus `months` calendar months, the day clamped to the target month's last day (Jan 31 + 1 → Feb 28).
///
/// # Errors
/// A message when the result is outside chrono's range.
pub fn add_months_clamped(at: DateTime<Utc>, months: u32) -> Result<DateTime<Utc>, String> {
    at.checked_add_months(Months::new(months))
        .ok_or_else(|| format!("{at} plus {months} months is out of range"))
}

/// A share of a period as an exact ratio of seconds (`seconds / of`). Never a float: Meteroid's floating-point proration is
/// the example not to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proration {
    /// Seconds billed.
    pub seconds: i64,
    /// Seconds in the whole period.
    pub of: i64,
}

impl Proration {
    /// The whole period.
    pub fn full() -> Proration {
        Proration { seconds: 1, of: 1 }
    }

    /// Whether this is the whole period.
    pub fn is_full(&self) -> bool {
        self.seconds == self.of
    }

    /// `amount × seconds / of`, rounded once, half away from zero, to the currency's minor unit.
    ///
    /// Exact for every amount a `Decimal` holds and every period chrono can represent: the rational is formed and
    /// divided in 256-bit integers ([`crate::exact::mul_div_round`]), so nothing is cut to 28 significant digits
    /// before the one rounding, and nothing overflows on the way.
    ///
    /// # Errors
    /// [`crate::Error::Overflow`] only for a share outside `0 ≤ seconds ≤ of`, `of > 0` (never built here).
    pub fn apply_rounded(&self, amount: Decimal, currency: Currency) -> crate::Result<Decimal> {
        let overflow = crate::Error::Overflow { context: "proration" };
        let seconds = u64::try_from(self.seconds).map_err(|_| overflow.clone())?;
        let of = u64::try_from(self.of).map_err(|_| overflow.clone())?;
        if seconds > of {
            return Err(overflow);
        }
        crate::exact::mul_div_round(amount, seconds, of, currency.exponent(), "proration")
    }
}

/// Midnight UTC of a calendar date.
///
/// # Errors
/// A message when the date does not exist.
pub fn utc_midnight(year: i32, month: u32, day: u32) -> Result<DateTime<Utc>, String> {
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| Utc.from_utc_datetime(&dt))
        .ok_or_else(|| format!("{year}-{month:02}-{day:02} is not a date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        utc_midnight(y, m, d).unwrap()
    }

    #[test]
    fn periods_are_half_open() {
        let p = BillingPeriod::new(day(2026, 11, 1), day(2026, 12, 1)).unwrap();
        assert!(p.contains(day(2026, 11, 1)));
        assert!(!p.contains(day(2026, 12, 1)));
        assert_eq!(p.seconds(), 30 * 86_400);
        assert!(BillingPeriod::new(day(2026, 11, 1), day(2026, 11, 1)).is_err());
    }

    #[test]
    fn an_anchor_on_the_31st_clamps_and_comes_back() {
        let anchor = day(2026, 1, 31);
        let feb = BillingPeriod::monthly(anchor, day(2026, 3, 1)).unwrap();
        assert_eq!((feb.start(), feb.end()), (day(2026, 2, 28), day(2026, 3, 31)));
        let apr = BillingPeriod::monthly(anchor, day(2026, 4, 30)).unwrap();
        assert_eq!((apr.start(), apr.end()), (day(2026, 4, 30), day(2026, 5, 31)));
        let first = BillingPeriod::monthly(anchor, anchor).unwrap();
        assert_eq!(first.start(), anchor);
        assert!(BillingPeriod::monthly(anchor, day(2026, 1, 30)).is_err());
    }

    #[test]
    fn proration_is_by_the_second() {
        let p = BillingPeriod::new(day(2026, 11, 1), day(2026, 12, 1)).unwrap();
        let half = p.remaining_from(day(2026, 11, 16)).unwrap();
        assert_eq!(half, Proration { seconds: 15 * 86_400, of: 30 * 86_400 });
        assert_eq!(half.apply_rounded(Decimal::from(250), Currency::USD).unwrap().to_string(), "125.00");
        assert!(p.remaining_from(day(2026, 12, 1)).is_err());
        assert!(p.remaining_from(day(2026, 10, 1)).unwrap().is_full());
    }
}
