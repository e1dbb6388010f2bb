//! Charge models: how a quantity of one meter becomes an exact amount.
//!
//! Tier semantics (pricing-semantics.md §2, and billing-core/DESIGN.md):
//! * `up_to` is the cumulative, **inclusive** upper bound of a tier; the last tier is open-ended.
//! * Graduated: each unit is priced by the tier it falls in. Volume: every unit is priced at the tier the total
//!   reaches (the first tier whose `up_to ≥ q`).
//! * A tier's flat amount is charged once when the quantity enters the tier, and **the first tier's flat amount is
//!   charged at zero quantity** (as Lago and OpenMeter do): a subscribed product costs at least that.
//! * Nothing here rounds. Amounts are exact; rounding happens once per invoice line, in the pipeline.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Issue, Result};
use std::borrow::Cow;

use crate::exact;
use crate::money::{Currency, Rounding};
use crate::quantity::Quantity;

/// How a product or add-on is priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeModel {
    /// One price per unit.
    PerUnit {
        /// The price of one unit, in major units (may be fractions of a cent).
        unit_amount: Decimal,
    },
    /// Each unit priced by the tier it falls in.
    Graduated(TierSchedule),
    /// Every unit priced at the tier the total quantity reaches.
    Volume(TierSchedule),
    /// A price per block of units, partial blocks rounded up or down.
    Package(Package),
}

/// One tier as written in a price book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Inclusive cumulative upper bound; `None` for the open-ended last tier.
    pub up_to: Option<Decimal>,
    /// Price of each unit in this tier, in major units.
    pub unit_amount: Decimal,
    /// Charged once when the quantity enters this tier (the first tier's at zero quantity).
    pub flat_amount: Decimal,
}

/// A validated tier table: bounds strictly increasing and non-negative, only the last tier open, amounts
/// non-negative. Cumulative totals are precomputed so pricing a quantity is one search, one multiplication and
/// one addition, whatever the number of tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierSchedule {
    rows: Vec<Row>,
    /// The closed bounds as integers, when every bound is whole: whole quantities then find their tier by integer
    /// comparison instead of `Decimal` comparison.
    whole_bounds: Option<Vec<i128>>,
    /// The schedule in scaled integers, when its bounds are whole and its amounts fit: whole quantities are then
    /// priced in `i128`, the very same values in far fewer cycles (see [`Fixed`]).
    fixed: Option<Fixed>,
    /// The slice each closed tier contributes when a quantity passes beyond it, computed once and borrowed by
    /// every price (a line's breakdown copies none of them); rounded for `rounded_for`.
    whole: Vec<Slice>,
    /// The currency whose minor unit the whole-tier slices are rounded to, once set by the price book.
    rounded_for: Option<Currency>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    tier: Tier,
    /// Exclusive lower bound: the previous tier's `up_to`, or 0.
    start: Decimal,
    /// Graduated price of all earlier tiers, flat amounts included.
    before: Decimal,
}

/// A tier schedule in scaled integers: every amount times `10^scale`, every bound a whole number.
///
/// A graduated price is `before + flat + (q − start) × unit`; with whole `q` that is integer arithmetic, done here in
/// `i128` with checked operations and turned into a `Decimal` with the same scale. Any overflow (or a quantity with
/// decimals) falls back to the `Decimal` path, so results never differ, only their cost.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fixed {
    scale: u32,
    rows: Vec<FixedRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FixedRow {
    start: i128,
    unit: i128,
    flat: i128,
    before: i128,
}

impl Fixed {
    /// Amounts need at most this many decimal places for the integer path (10^4 · 10^18 per unit times 10^12
    /// units stays far inside an `i128`, and the checked operations guard the rest).
    const MAX_SCALE: u32 = 18;

    fn new(rows: &[Row]) -> Option<Fixed> {
        let amounts = || rows.iter().flat_map(|r| [r.tier.unit_amount, r.tier.flat_amount, r.before]);
        let scale = amounts().map(|v| v.normalize().scale()).max()?;
        if scale > Self::MAX_SCALE {
            return None;
        }
        let scaled = |v: Decimal| {
            let v = v.normalize();
            v.mantissa().checked_mul(10_i128.checked_pow(scale - v.scale())?)
        };
        let rows = rows
            .iter()
            .map(|r| {
                let start = r.start.normalize();
                Some(FixedRow {
                    start: (start.scale() == 0).then(|| start.mantissa())?,
                    unit: scaled(r.tier.unit_amount)?,
                    flat: scaled(r.tier.flat_amount)?,
                    before: scaled(r.before)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Fixed { scale, rows })
    }

    /// `(units in the tier, partial = flat + units × unit, total = before + partial)` for a whole `q` in tier `i`.
    fn graduated(&self, q: Decimal, i: usize) -> Option<(Decimal, Decimal, Decimal)> {
        if q.scale() != 0 {
            return None;
        }
        let r = &self.rows[i];
        let units = q.mantissa().checked_sub(r.start)?;
        let partial = units.checked_mul(r.unit)?.checked_add(r.flat)?;
        let total = partial.checked_add(r.before)?;
        let dec = |v: i128, scale: u32| Decimal::try_from_i128_with_scale(v, scale).ok();
        Some((dec(units, 0)?, dec(partial, self.scale)?, dec(total, self.scale)?))
    }
}

/// Block pricing: `ceil(q / size)` (or `floor`) blocks at `amount` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Units in one block; positive.
    pub size: Decimal,
    /// Price of one block, in major units.
    pub amount: Decimal,
    /// Whether a partial block is billed as a whole one.
    pub round: PackageRounding,
}

/// How a partial package is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageRounding {
    /// A partial block is billed as a whole block.
    Up,
    /// A partial block is free.
    Down,
}

/// The exact price of a quantity, with the tier slices that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeBreakdown<'a> {
    /// One slice per tier reached (graduated), the tier applied (volume), or the single price (per unit, package).
    pub slices: Slices<'a>,
    /// Σ slice amounts, exact.
    pub exact: Decimal,
}

/// The tier slices of one price, in tier order: the whole tiers passed through (borrowed from the tier schedule,
/// which computed them once) followed by the tier the quantity reached. Never empty. Serializes as a JSON array
/// of [`Slice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slices<'a> {
    whole: Cow<'a, [Slice]>,
    last: Slice,
}

impl Slices<'_> {
    /// A single slice.
    pub fn one(slice: Slice) -> Slices<'static> {
        Slices { whole: Cow::Borrowed(&[]), last: slice }
    }

    /// Slices from their parts: the whole tiers passed through, then the tier reached.
    pub fn from_parts(whole: Vec<Slice>, last: Slice) -> Slices<'static> {
        Slices { whole: Cow::Owned(whole), last }
    }

    /// The slices, in tier order.
    pub fn iter(&self) -> impl Iterator<Item = &Slice> + '_ {
        self.whole.iter().chain(std::iter::once(&self.last))
    }

    /// How many slices (at least one).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.whole.len() + 1
    }

    /// The slice of the tier the quantity reached.
    pub fn last(&self) -> &Slice {
        &self.last
    }

    /// The same slices, owned (to outlive the price book).
    pub fn into_owned(self) -> Slices<'static> {
        Slices { whole: Cow::Owned(self.whole.into_owned()), last: self.last }
    }
}

impl Serialize for Slices<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Slices<'_> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut all = Vec::<Slice>::deserialize(d)?;
        let last =
            all.pop().ok_or_else(|| serde::de::Error::invalid_length(0, &"at least one tier slice"))?;
        Ok(Slices { whole: Cow::Owned(all), last })
    }
}

/// `slices` with their display amounts rounded to `currency`.
fn rounded(slices: &[Slice], currency: Currency) -> Vec<Slice> {
    slices
        .iter()
        .map(|s| Slice { amount: currency.round(s.exact_amount, Rounding::HalfAwayFromZero), ..*s })
        .collect()
}

/// The part of a price that one tier contributes: the `tiers` of an invoice line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slice {
    /// 1-based tier number.
    pub tier: usize,
    /// Exclusive lower bound of the tier.
    #[serde(serialize_with = "crate::wire::normalized")]
    pub from: Decimal,
    /// Inclusive upper bound of the tier, `None` when open-ended.
    #[serde(serialize_with = "crate::wire::normalized_option")]
    pub up_to: Option<Decimal>,
    /// Metered units priced in this slice.
    #[serde(serialize_with = "crate::wire::normalized")]
    pub units: Decimal,
    /// Price per unit (per package for the package model).
    #[serde(serialize_with = "crate::wire::normalized")]
    pub unit_amount: Decimal,
    /// Flat amount charged for entering the tier.
    #[serde(serialize_with = "crate::wire::normalized")]
    pub flat_amount: Decimal,
    /// Packages billed, for the package model only.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::wire::normalized_option"
    )]
    pub packages: Option<Decimal>,
    /// `flat_amount + units × unit_amount` (or `packages × unit_amount`), exact.
    #[serde(serialize_with = "crate::wire::normalized")]
    pub exact_amount: Decimal,
    /// The exact amount rounded half away from zero to the currency's minor unit, for display: a line is
    /// rounded from its exact total, not from these.
    pub amount: Decimal,
}

impl TierSchedule {
    /// Validates a tier table and precomputes its cumulative totals.
    ///
    /// # Errors
    /// Every problem found, each with a path relative to the table (`[1].up_to`): an empty table, bounds that are
    /// negative, not strictly increasing, open before the last tier, or a closed last tier; negative amounts;
    /// bounds too precise to be quantities; totals too large to compute exactly.
    ///
    /// # Examples
    /// ```
    /// use billing_core::{Quantity, Tier, TierSchedule};
    /// use rust_decimal::Decimal;
    /// let tiers = TierSchedule::new(vec![
    ///     Tier { up_to: Some(Decimal::from(1000)), unit_amount: Decimal::ZERO, flat_amount: Decimal::ZERO },
    ///     Tier { up_to: None, unit_amount: Decimal::new(5, 2), flat_amount: Decimal::ZERO },
    /// ]).map_err(|issues| issues[0].to_string())?;
    /// let q = Quantity::new(Decimal::from(1100))?;
    /// assert_eq!(tiers.graduated_amount(q).map_err(|e| e.to_string())?, Decimal::from(5));
    /// # Ok::<(), String>(())
    /// ```
    pub fn new(tiers: Vec<Tier>) -> std::result::Result<TierSchedule, Vec<Issue>> {
        let mut issues = Vec::new();
        if tiers.is_empty() {
            issues.push(Issue::new("", "must have at least one tier"));
        }
        let last = tiers.len().saturating_sub(1);
        let mut prev: Option<Decimal> = None;
        for (i, t) in tiers.iter().enumerate() {
            let at = |field: &str| format!("[{i}].{field}");
            match t.up_to {
                None if i != last => {
                    issues.push(Issue::new(at("up_to"), "only the last tier may be open-ended"));
                }
                Some(_) if i == last => {
                    issues
                        .push(Issue::new(at("up_to"), "the last tier must be open-ended (null or \"inf\")"));
                }
                Some(b) => {
                    if let Err(m) = Quantity::new(b) {
                        issues.push(Issue::new(at("up_to"), m));
                    } else if i == 0 && b.is_zero() {
                        issues.push(Issue::new(at("up_to"), "must be greater than 0"));
                    }
                    if let Some(p) = prev {
                        if b <= p {
                            issues.push(Issue::new(
                                at("up_to"),
                                format!("must be greater than the previous tier's up_to ({p}); tiers must be strictly increasing"),
                            ));
                        }
                    }
                    prev = Some(b);
                }
                None => {}
            }
            if t.unit_amount.is_sign_negative() && !t.unit_amount.is_zero() {
                issues.push(Issue::new(at("unit_amount"), "must not be negative"));
            }
            if t.flat_amount.is_sign_negative() && !t.flat_amount.is_zero() {
                issues.push(Issue::new(at("flat_amount"), "must not be negative"));
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Self::precompute(tiers).map_err(|e| vec![Issue::new("", e.to_string())])
    }

    fn precompute(tiers: Vec<Tier>) -> Result<TierSchedule> {
        let mut rows = Vec::with_capacity(tiers.len());
        let mut whole = Vec::with_capacity(tiers.len());
        let (mut start, mut before) = (Decimal::ZERO, Decimal::ZERO);
        for tier in tiers {
            let row = Row { tier, start, before };
            if let Some(up_to) = tier.up_to {
                // A closed tier: its whole slice (flat + every unit), and the running total after it.
                let units = exact::sub(up_to, start, "tier width")?;
                let full = exact::add(
                    tier.flat_amount,
                    exact::mul(units, tier.unit_amount, "tier total")?,
                    "tier total",
                )?;
                // Rounded for real once the book's currency is known (round_full_slices).
                whole.push(row.slice(rows.len(), units, full, Currency::USD));
                start = up_to;
                before = exact::add(before, full, "cumulative tier total")?;
            }
            rows.push(row);
        }
        let whole_bounds = rows
            .iter()
            .filter_map(|r| r.tier.up_to)
            .map(|b| (b.scale() == 0).then(|| b.mantissa()))
            .collect::<Option<Vec<i128>>>();
        let fixed = whole_bounds.as_ref().and_then(|_| Fixed::new(&rows));
        Ok(TierSchedule { rows, whole_bounds, fixed, whole, rounded_for: None })
    }

    /// The tiers as given.
    pub fn tiers(&self) -> impl ExactSizeIterator<Item = &Tier> + '_ {
        self.rows.iter().map(|r| &r.tier)
    }

    /// Index of the tier a total quantity falls in: the first whose inclusive `up_to ≥ q`.
    fn tier_index(&self, q: Decimal) -> usize {
        // Tables are short (≤ 10 tiers in practice), so a linear scan beats a binary search here. The closed
        // tiers come first; a quantity beyond all of them is in the open last tier.
        let closed = self.rows.len() - 1;
        match &self.whole_bounds {
            Some(bounds) if q.scale() == 0 => {
                let q = q.mantissa();
                bounds.iter().position(|b| q <= *b).unwrap_or(closed)
            }
            _ => self.rows.iter().position(|r| r.tier.up_to.is_none_or(|b| q <= b)).unwrap_or(closed),
        }
    }

    /// Graduated price of `q`, exact.
    ///
    /// # Errors
    /// [`crate::Error::Overflow`] when the exact amount does not fit.
    pub fn graduated_amount(&self, q: Quantity) -> Result<Decimal> {
        let q = q.value();
        let i = self.tier_index(q);
        if let Some((_, _, total)) = self.fixed.as_ref().and_then(|f| f.graduated(q, i)) {
            return Ok(total);
        }
        let row = &self.rows[i];
        let units = exact::sub(q, row.start, "graduated price")?;
        let partial = exact::mul(units, row.tier.unit_amount, "graduated price")?;
        exact::add(
            exact::add(row.before, row.tier.flat_amount, "graduated price")?,
            partial,
            "graduated price",
        )
    }

    fn graduated(&self, q: Quantity, currency: Currency) -> Result<ChargeBreakdown<'_>> {
        let q = q.value();
        let last = self.tier_index(q);
        // Every tier before the last one reached is taken whole: its slice was computed with the schedule.
        let whole = if self.rounded_for == Some(currency) {
            Cow::Borrowed(&self.whole[..last])
        } else {
            Cow::Owned(rounded(&self.whole[..last], currency))
        };
        let row = &self.rows[last];
        let (units, partial, exact) = match self.fixed.as_ref().and_then(|f| f.graduated(q, last)) {
            Some(parts) => parts,
            None => {
                let units = exact::sub(q, row.start, "tier slice")?;
                let partial = exact::add(
                    row.tier.flat_amount,
                    exact::mul(units, row.tier.unit_amount, "tier slice")?,
                    "tier slice",
                )?;
                (units, partial, exact::add(row.before, partial, "graduated price")?)
            }
        };
        let slices = Slices { whole, last: row.slice(last, units, partial, currency) };
        Ok(ChargeBreakdown { slices, exact })
    }

    /// Rounds the precomputed whole-tier slices to a currency's minor unit once, so pricing never rounds them
    /// again. Called by the price book, which knows its currency.
    pub(crate) fn round_full_slices(&mut self, currency: Currency) {
        self.whole = rounded(&self.whole, currency);
        self.rounded_for = Some(currency);
    }

    /// Volume price of `q`, exact: every unit at the rate of the tier the total reaches.
    ///
    /// # Errors
    /// [`crate::Error::Overflow`] when the exact amount does not fit.
    pub fn volume_amount(&self, q: Quantity) -> Result<Decimal> {
        let row = &self.rows[self.tier_index(q.value())];
        let units = exact::mul(q.value(), row.tier.unit_amount, "volume price")?;
        exact::add(row.tier.flat_amount, units, "volume price")
    }

    fn volume(&self, q: Quantity, currency: Currency) -> Result<ChargeBreakdown<'static>> {
        let i = self.tier_index(q.value());
        let exact = self.volume_amount(q)?;
        Ok(ChargeBreakdown { slices: Slices::one(self.rows[i].slice(i, q.value(), exact, currency)), exact })
    }

    /// The highest volume price of any quantity up to `q`.
    ///
    /// A volume price can fall when the total enters a cheaper tier (100 units at $1 cost more than 101 at $0.50).
    /// A spend limit is reached the *first* time the price crosses it, so limits search this monotone envelope.
    fn volume_peak(&self, q: Quantity) -> Result<Decimal> {
        let q = q.value();
        let last = self.tier_index(q);
        let mut peak = Decimal::ZERO;
        for row in &self.rows[..=last] {
            let top = match row.tier.up_to {
                Some(b) if b < q => b,
                _ => q,
            };
            let amount = exact::add(
                row.tier.flat_amount,
                exact::mul(top, row.tier.unit_amount, "volume price")?,
                "volume price",
            )?;
            peak = peak.max(amount);
        }
        Ok(peak)
    }
}

impl Row {
    fn slice(&self, index: usize, units: Decimal, exact: Decimal, currency: Currency) -> Slice {
        Slice {
            tier: index + 1,
            from: self.start,
            up_to: self.tier.up_to,
            units,
            unit_amount: self.tier.unit_amount,
            flat_amount: self.tier.flat_amount,
            packages: None,
            exact_amount: exact,
            amount: currency.round(exact, Rounding::HalfAwayFromZero),
        }
    }
}

impl Package {
    /// The number of blocks billed for `q`.
    fn blocks(&self, q: Quantity) -> Result<Decimal> {
        match self.round {
            PackageRounding::Up => exact::div_ceil(q.value(), self.size, "package count"),
            PackageRounding::Down => exact::div_floor(q.value(), self.size, "package count"),
        }
    }
}

impl ChargeModel {
    /// The exact price of `q` with its tier slices, each slice also rounded to `currency`'s minor unit for display.
    ///
    /// # Errors
    /// [`crate::Error::Overflow`] when the exact amount does not fit in a `Decimal`.
    pub fn price(&self, q: Quantity, currency: Currency) -> Result<ChargeBreakdown<'_>> {
        match self {
            ChargeModel::PerUnit { unit_amount } => {
                let exact = exact::mul(q.value(), *unit_amount, "per-unit price")?;
                let slice = Slice {
                    tier: 1,
                    from: Decimal::ZERO,
                    up_to: None,
                    units: q.value(),
                    unit_amount: *unit_amount,
                    flat_amount: Decimal::ZERO,
                    packages: None,
                    exact_amount: exact,
                    amount: currency.round(exact, Rounding::HalfAwayFromZero),
                };
                Ok(ChargeBreakdown { slices: Slices::one(slice), exact })
            }
            ChargeModel::Graduated(t) => t.graduated(q, currency),
            ChargeModel::Volume(t) => t.volume(q, currency),
            ChargeModel::Package(p) => {
                let blocks = p.blocks(q)?;
                let exact = exact::mul(blocks, p.amount, "package price")?;
                let slice = Slice {
                    tier: 1,
                    from: Decimal::ZERO,
                    up_to: None,
                    units: q.value(),
                    unit_amount: p.amount,
                    flat_amount: Decimal::ZERO,
                    packages: Some(blocks),
                    exact_amount: exact,
                    amount: currency.round(exact, Rounding::HalfAwayFromZero),
                };
                Ok(ChargeBreakdown { slices: Slices::one(slice), exact })
            }
        }
    }

    /// The exact price of `q`, without building slices (the fast path used by searches).
    ///
    /// # Errors
    /// [`crate::Error::Overflow`] when the exact amount does not fit in a `Decimal`.
    pub fn amount(&self, q: Quantity) -> Result<Decimal> {
        match self {
            ChargeModel::PerUnit { unit_amount } => exact::mul(q.value(), *unit_amount, "per-unit price"),
            ChargeModel::Graduated(t) => t.graduated_amount(q),
            ChargeModel::Volume(t) => t.volume_amount(q),
            ChargeModel::Package(p) => exact::mul(p.blocks(q)?, p.amount, "package price"),
        }
    }

    /// The highest price of any quantity up to `q`: equal to [`ChargeModel::amount`] for every model but volume,
    /// whose price can drop when a cheaper tier is entered. Non-decreasing in `q`.
    ///
    /// # Errors
    /// [`crate::Error::Overflow`] when the exact amount does not fit in a `Decimal`.
    pub fn peak_amount(&self, q: Quantity) -> Result<Decimal> {
        match self {
            ChargeModel::Volume(t) => t.volume_peak(q),
            other => other.amount(q),
        }
    }

    /// How tier `tier` (1-based) is described on a slice: `(from, up_to, unit_amount, flat_amount)`, or `None` when
    /// the model has no such tier. The stored form of a bill ([`crate::stored`]) leaves these out of a slice that
    /// matches them.
    pub fn tier_terms(&self, tier: usize) -> Option<(Decimal, Option<Decimal>, Decimal, Decimal)> {
        match self {
            ChargeModel::PerUnit { unit_amount } => {
                (tier == 1).then_some((Decimal::ZERO, None, *unit_amount, Decimal::ZERO))
            }
            ChargeModel::Package(p) => (tier == 1).then_some((Decimal::ZERO, None, p.amount, Decimal::ZERO)),
            ChargeModel::Graduated(t) | ChargeModel::Volume(t) => {
                let row = t.rows.get(tier.checked_sub(1)?)?;
                Some((row.start, row.tier.up_to, row.tier.unit_amount, row.tier.flat_amount))
            }
        }
    }

    /// The slice a graduated price takes for tier `tier` (1-based) when the quantity passes beyond it, rounded to
    /// the price book's currency: every bill passing that tier carries this very slice.
    pub fn whole_slice(&self, tier: usize) -> Option<&Slice> {
        match self {
            ChargeModel::Graduated(t) if t.rounded_for.is_some() => t.whole.get(tier.checked_sub(1)?),
            _ => None,
        }
    }

    /// The price at zero quantity: the first tier's flat amount for tiered models, 0 otherwise.
    pub fn minimum_amount(&self) -> Decimal {
        match self {
            ChargeModel::Graduated(t) | ChargeModel::Volume(t) => t.rows[0].tier.flat_amount,
            ChargeModel::PerUnit { .. } | ChargeModel::Package(_) => Decimal::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{d, q};

    fn tier(up_to: Option<&str>, unit: &str, flat: &str) -> Tier {
        Tier { up_to: up_to.map(d), unit_amount: d(unit), flat_amount: d(flat) }
    }

    /// Stripe's documented graduated example: first 5 units $5 each, next 5 $4 each, then $3, plus flat fees.
    fn stripe_like() -> TierSchedule {
        TierSchedule::new(vec![tier(Some("5"), "5", "10"), tier(Some("10"), "4", "5"), tier(None, "3", "0")])
            .unwrap()
    }

    #[test]
    fn graduated_prices_each_unit_in_its_own_tier() {
        let t = ChargeModel::Graduated(stripe_like());
        // 5·5 + 10 + 5·4 + 5 + 2·3 = 66
        let b = t.price(q("12"), Currency::USD).unwrap();
        assert_eq!(b.exact, d("66"));
        assert_eq!(b.slices.len(), 3);
        assert_eq!(b.slices.iter().map(|s| s.exact_amount).sum::<Decimal>(), b.exact);
        assert_eq!(t.amount(q("12")).unwrap(), d("66"));
    }

    #[test]
    fn tier_bounds_are_inclusive() {
        let t = ChargeModel::Graduated(stripe_like());
        // Exactly 5 units stay in tier 1: the second tier's flat amount is not charged.
        assert_eq!(t.amount(q("5")).unwrap(), d("35"));
        assert_eq!(t.price(q("5"), Currency::USD).unwrap().slices.len(), 1);
        assert_eq!(t.amount(q("6")).unwrap(), d("44"));
    }

    #[test]
    fn first_tier_flat_amount_is_charged_at_zero_quantity() {
        let t = ChargeModel::Graduated(stripe_like());
        assert_eq!(t.amount(Quantity::ZERO).unwrap(), d("10"));
        assert_eq!(t.minimum_amount(), d("10"));
        let v = ChargeModel::Volume(stripe_like());
        assert_eq!(v.amount(Quantity::ZERO).unwrap(), d("10"));
    }

    #[test]
    fn volume_prices_every_unit_at_the_reached_tier() {
        let v = ChargeModel::Volume(stripe_like());
        assert_eq!(v.amount(q("12")).unwrap(), d("36"));
        assert_eq!(v.amount(q("10")).unwrap(), d("45"));
        assert_eq!(v.amount(q("5")).unwrap(), d("35"));
        let b = v.price(q("12"), Currency::USD).unwrap();
        assert_eq!(b.slices.len(), 1);
        assert_eq!(b.slices.last().tier, 3);
    }

    #[test]
    fn volume_peak_is_the_highest_price_so_far() {
        let v = ChargeModel::Volume(stripe_like());
        // 10 units cost 45, 11 units cost 33: the peak stays at 45.
        assert_eq!(v.amount(q("11")).unwrap(), d("33"));
        assert_eq!(v.peak_amount(q("11")).unwrap(), d("45"));
        assert_eq!(v.peak_amount(q("20")).unwrap(), d("60"));
    }

    #[test]
    fn package_rounds_partial_blocks_as_configured() {
        let up = ChargeModel::Package(Package { size: d("100"), amount: d("5"), round: PackageRounding::Up });
        let down =
            ChargeModel::Package(Package { size: d("100"), amount: d("5"), round: PackageRounding::Down });
        assert_eq!(up.amount(q("201")).unwrap(), d("15"));
        assert_eq!(down.amount(q("201")).unwrap(), d("10"));
        assert_eq!(up.amount(q("200")).unwrap(), d("10"));
        assert_eq!(up.price(q("201"), Currency::USD).unwrap().slices.last().packages, Some(d("3")));
        assert_eq!(up.amount(Quantity::ZERO).unwrap(), d("0"));
    }

    #[test]
    fn invalid_tables_report_every_problem() {
        let issues = TierSchedule::new(vec![
            tier(Some("10"), "-1", "0"),
            tier(Some("10"), "1", "-2"),
            tier(None, "1", "0"),
            tier(Some("5"), "1", "0"),
        ])
        .unwrap_err();
        let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "[0].unit_amount: must not be negative",
                "[1].up_to: must be greater than the previous tier's up_to (10); tiers must be strictly increasing",
                "[1].flat_amount: must not be negative",
                "[2].up_to: only the last tier may be open-ended",
                "[3].up_to: the last tier must be open-ended (null or \"inf\")",
            ]
        );
        assert_eq!(TierSchedule::new(vec![]).unwrap_err()[0].message, "must have at least one tier");
    }
}
