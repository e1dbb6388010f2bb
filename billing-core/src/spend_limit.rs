//! Spend limits: a per-product cap on what a period can cost, the usage it admits, and the alerts it raises.
//!
//! A limit covers a product together with its add-ons and applies **after** the commitment discount: with 20 % off,
//! a $200 limit admits $250 of list-price usage. Usage past the limit is dropped, never billed (pricing-semantics
//! §4). Which usage is dropped is decided by inverting the group's prices, exactly, by a search over the
//! quantity grid that never divides (see [`billable_usage`]).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::catalog::SpendLimitRules;
use crate::charge::ChargeModel;
use crate::error::{Error, Result};
use crate::exact;
use crate::quantity::Quantity;

/// A validated spend limit: whole currency units within the price book's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendLimit(Decimal);

impl SpendLimit {
    /// Validates a limit against the book's rules.
    ///
    /// # Errors
    /// A message when the limit is not whole or outside `[min, max]`.
    pub fn new(amount: Decimal, rules: &SpendLimitRules) -> Result<SpendLimit, String> {
        if !amount.fract().is_zero() {
            return Err(format!("must be a whole amount (got {amount})"));
        }
        let max = rules.max.map_or_else(String::new, |m| format!(" and at most {m}"));
        if amount < rules.min || rules.max.is_some_and(|m| amount > m) {
            return Err(format!("must be at least {}{max} (got {amount})", rules.min));
        }
        Ok(SpendLimit(amount.normalize()))
    }

    /// The amount.
    pub fn amount(self) -> Decimal {
        self.0
    }
}

/// What a limit admits of the offered usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Billable quantity per meter, in the order given.
    pub billable: Vec<Quantity>,
    /// Whether any usage is dropped (the limit is reached).
    pub reached: bool,
    /// `(k, K)`: the billable usage is the grid point `k` of `K` along the offered usage (`None` when nothing is
    /// dropped). The first dropped grid point is `k + 1`; at a constant rate it is reached at `(k + 1) / K` of the
    /// time the offered usage takes.
    pub steps: Option<(i128, i128)>,
}

/// One charge of a limited group: its model and the index of its meter in the offered quantities.
pub type GroupCharge<'a> = (&'a ChargeModel, usize);

/// The usage a limit admits when `offered[m]` units arrive on each meter of a product group.
///
/// Usage is assumed to arrive on all of the group's meters at proportional rates (as a projection assumes), so the
/// billable usage is the largest point `q(k)` along the offered usage with `net_factor × Σ price(q(k)) ≤ limit`.
/// The grid is that of the largest meter at its own decimal places (one unit for whole-unit meters): `q_M(k) = k`
/// steps, and every other meter `q_m(k) = ⌊k·U_m / K⌋` of its steps, in `i128`, so no division ever rounds. The
/// search is a bisection over `k` (about 60 exact pricings at most), valid because the price used is the monotone
/// [`ChargeModel::peak_amount`]. For a single meter this is the exact inversion of its tiers: the billable quantity
/// prices within the limit and one more unit would not.
///
/// # Errors
/// [`Error::Overflow`] when an amount does not fit.
pub fn billable_usage(
    charges: &[GroupCharge<'_>],
    offered: &[Quantity],
    net_factor: Decimal,
    limit: SpendLimit,
) -> Result<Admission> {
    let admits = |q: &[Quantity]| -> Result<bool> {
        let mut list = Decimal::ZERO;
        for (charge, m) in charges {
            list = exact::add(list, charge.peak_amount(q[*m])?, "spend limit")?;
        }
        Ok(exact::mul(list, net_factor, "spend limit")? <= limit.amount())
    };
    if admits(offered)? {
        return Ok(Admission { billable: offered.to_vec(), reached: false, steps: None });
    }
    let zero = vec![Quantity::ZERO; offered.len()];
    // The largest meter sets the grid; an all-zero offer whose fixed fees already exceed the limit admits nothing.
    let Some(largest) =
        (0..offered.len()).filter(|m| !offered[*m].value().is_zero()).max_by_key(|m| offered[*m])
    else {
        return Ok(Admission { billable: zero, reached: true, steps: None });
    };
    let scaled: Vec<(i128, u32)> =
        offered.iter().map(|q| (q.value().mantissa(), q.value().scale())).collect();
    let total = scaled[largest].0;
    let at = |k: i128| -> Result<Vec<Quantity>> {
        scaled
            .iter()
            .map(|&(units, scale)| {
                // k · units ≤ 10^18 · 10^18: fits an i128 (Quantity's bounds guarantee it).
                let steps =
                    k.checked_mul(units).ok_or(Error::Overflow { context: "spend limit search" })? / total;
                let value = Decimal::try_from_i128_with_scale(steps, scale)
                    .map_err(|_| Error::Overflow { context: "spend limit search" })?;
                Quantity::new(value).map_err(|_| Error::Overflow { context: "spend limit search" })
            })
            .collect()
    };
    if !admits(&zero)? {
        return Ok(Admission { billable: zero, reached: true, steps: Some((0, total)) });
    }
    // Invariant: q(lo) is admitted, q(hi) is not.
    let (mut lo, mut hi) = (0_i128, total);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if admits(&at(mid)?)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(Admission { billable: at(lo)?, reached: true, steps: Some((lo, total)) })
}

/// Where a product stands against its limit, for alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitState {
    /// What the product's usage costs after the discount, exact.
    pub net_amount: Decimal,
    /// Whether usage is being dropped.
    pub dropping: bool,
}

/// The alert thresholds (shares of the limit, e.g. 0.8 and 1.0) reached in `state`: a threshold `t` is reached
/// when something is billed and the net amount is at least `t × limit`; every threshold is reached once the cap
/// binds and usage is dropped (with a discount, a capped bill can stop a fraction of a cent short of the cap). So
/// a zero cap raises its alerts when usage is first dropped, not before anything happens.
pub fn thresholds_reached(thresholds: &[Decimal], limit: SpendLimit, state: LimitState) -> Vec<Decimal> {
    thresholds
        .iter()
        .copied()
        .filter(|t| {
            let at = exact::mul(*t, limit.amount(), "alert threshold").unwrap_or(Decimal::MAX);
            state.dropping || (state.net_amount > Decimal::ZERO && state.net_amount >= at)
        })
        .collect()
}

/// The thresholds a change of usage from `before` to `after` crosses: each alert is sent once per period, when its
/// threshold is first reached.
///
/// # Examples
/// ```
/// use billing_core::{thresholds_crossed, LimitState, SpendLimit, SpendLimitRules};
/// use rust_decimal::Decimal;
/// let rules = SpendLimitRules::default();
/// let limit = SpendLimit::new(Decimal::from(100), &rules).unwrap();
/// let before = LimitState { net_amount: Decimal::from(79), dropping: false };
/// let after = LimitState { net_amount: Decimal::from(85), dropping: false };
/// assert_eq!(thresholds_crossed(&rules.alert_thresholds, limit, before, after), vec![Decimal::new(8, 1)]);
/// ```
pub fn thresholds_crossed(
    thresholds: &[Decimal],
    limit: SpendLimit,
    before: LimitState,
    after: LimitState,
) -> Vec<Decimal> {
    let already = thresholds_reached(thresholds, limit, before);
    thresholds_reached(thresholds, limit, after).into_iter().filter(|t| !already.contains(t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charge::{Tier, TierSchedule};
    use crate::testing::{d, q};

    fn limit(s: &str) -> SpendLimit {
        SpendLimit::new(d(s), &SpendLimitRules::default()).unwrap()
    }

    fn inbox() -> ChargeModel {
        ChargeModel::Graduated(
            TierSchedule::new(vec![
                Tier { up_to: Some(d("3")), unit_amount: d("0"), flat_amount: d("0") },
                Tier { up_to: None, unit_amount: d("15"), flat_amount: d("0") },
            ])
            .unwrap(),
        )
    }

    #[test]
    fn usage_within_the_limit_is_all_billable() {
        let c = inbox();
        let a = billable_usage(&[(&c, 0)], &[q("9")], Decimal::ONE, limit("100")).unwrap();
        assert_eq!(a, Admission { billable: vec![q("9")], reached: false, steps: None });
    }

    #[test]
    fn the_limit_drops_the_first_unit_that_would_exceed_it() {
        let c = inbox();
        // 3 free, then $15 each: 9 PRs cost $90, a 10th would cost $105.
        let a = billable_usage(&[(&c, 0)], &[q("50")], Decimal::ONE, limit("100")).unwrap();
        assert_eq!(a.billable, vec![q("9")]);
        assert!(a.reached);
        assert_eq!(a.steps, Some((9, 50)));
    }

    #[test]
    fn the_limit_applies_after_the_discount() {
        let c = inbox();
        // With 20 % off a $100 limit admits $125 of list usage: 3 free + 8 × $15 = $120.
        let a = billable_usage(&[(&c, 0)], &[q("50")], d("0.8"), limit("100")).unwrap();
        assert_eq!(a.billable, vec![q("11")]);
    }

    #[test]
    fn several_meters_are_cut_at_the_same_point_of_their_usage() {
        let per_unit = ChargeModel::PerUnit { unit_amount: d("1") };
        let a = billable_usage(
            &[(&per_unit, 0), (&per_unit, 1)],
            &[q("100"), q("50")],
            Decimal::ONE,
            limit("30"),
        )
        .unwrap();
        assert_eq!(a.billable, vec![q("20"), q("10")]);
    }

    #[test]
    fn a_zero_limit_admits_nothing() {
        let c = inbox();
        let a = billable_usage(&[(&c, 0)], &[q("2")], Decimal::ONE, limit("0")).unwrap();
        assert_eq!(a.billable, vec![q("2")], "free usage costs nothing, so it stays within a zero limit");
        let per_unit = ChargeModel::PerUnit { unit_amount: d("0.01") };
        let a = billable_usage(&[(&per_unit, 0)], &[q("2")], Decimal::ONE, limit("0")).unwrap();
        assert_eq!(a.billable, vec![q("0")]);
    }

    #[test]
    fn limits_must_be_whole_and_within_the_rules() {
        let rules = SpendLimitRules { min: d("0"), max: Some(d("50000")), alert_thresholds: vec![] };
        assert!(SpendLimit::new(d("200"), &rules).is_ok());
        assert_eq!(SpendLimit::new(d("200.5"), &rules).unwrap_err(), "must be a whole amount (got 200.5)");
        assert_eq!(
            SpendLimit::new(d("50001"), &rules).unwrap_err(),
            "must be at least 0 and at most 50000 (got 50001)"
        );
        assert!(SpendLimit::new(d("-1"), &rules).is_err());
    }

    #[test]
    fn alerts_fire_once_when_their_threshold_is_crossed() {
        let rules = SpendLimitRules::default();
        let l = limit("100");
        let state = |n: &str, dropping| LimitState { net_amount: d(n), dropping };
        let t = &rules.alert_thresholds;
        assert_eq!(thresholds_crossed(t, l, state("0", false), state("79.99", false)), Vec::<Decimal>::new());
        assert_eq!(thresholds_crossed(t, l, state("0", false), state("80", false)), vec![d("0.8")]);
        assert_eq!(thresholds_crossed(t, l, state("0", false), state("100", false)), vec![d("0.8"), d("1")]);
        assert_eq!(thresholds_crossed(t, l, state("85", false), state("99", true)), vec![d("1")]);
        assert_eq!(thresholds_crossed(t, l, state("100", true), state("100", true)), Vec::<Decimal>::new());
        assert_eq!(thresholds_crossed(t, l, state("0", false), state("99.99", true)), vec![d("0.8"), d("1")]);
        let zero = limit("0");
        assert_eq!(
            thresholds_reached(t, zero, state("0", false)),
            Vec::<Decimal>::new(),
            "nothing happened yet"
        );
        assert_eq!(thresholds_reached(t, zero, state("0", true)), vec![d("0.8"), d("1")]);
    }
}
