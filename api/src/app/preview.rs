//! A price preview's report: what a draft price book does to every customer, and to the whole (the body of `POST
//! /v1/price-books/preview` and of `tally reprice --format json`, one type so the two cannot differ).
//!
//! Amounts are decimal strings at the currency's minor unit. Revenue, its delta and the counts of customers paying
//! more, less or the same are over the customers the draft can price; the others are listed with the reason
//! (`problem`), and their current total is summed apart (`unpriceable_revenue`), so the revenue delta is exactly the
//! sum of the customers' deltas. `delta_percent` is `delta / current_total × 100` rounded half away from zero to 2
//! places (`null` when the current total is zero and the draft's is not); its percentiles are nearest-rank.

use std::collections::BTreeMap;

use billing_core::{Currency, Rounding};
use rust_decimal::Decimal;
use serde::Serialize;

use super::service::Outcome;

/// A preview's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// The periods repriced: a calendar month's bounds (the invoices whose period starts in it), or for the open
    /// periods, from the earliest start to the latest end.
    pub period: Span,
    /// The price-book versions compared.
    pub price_book_version: Versions,
    /// The draft's currency: every amount of the summary.
    pub currency: String,
    /// The whole.
    pub summary: Summary,
    /// Every customer, by id.
    pub customers: Vec<CustomerPreview>,
    /// The largest increases, largest first.
    pub top_increases: Vec<CustomerPreview>,
    /// The largest decreases, largest first.
    pub top_decreases: Vec<CustomerPreview>,
}

/// From when to when (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    /// Start.
    pub start: String,
    /// End (exclusive).
    pub end: String,
}

/// The versions compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Versions {
    /// The version(s) that priced the current totals (comma-separated, oldest first, when the customers' periods
    /// were priced by several).
    pub current: Option<String>,
    /// The draft's `version`, when it has one.
    pub draft: Option<String>,
}

/// The whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Customers repriced (priceable or not).
    pub customers: usize,
    /// Σ current totals of the priceable customers.
    pub current_revenue: String,
    /// Σ draft totals.
    pub draft_revenue: String,
    /// `draft_revenue − current_revenue` = Σ deltas.
    pub delta: String,
    /// Customers who would pay more.
    pub more: usize,
    /// Less.
    pub less: usize,
    /// The same.
    pub same: usize,
    /// Customers the draft cannot price.
    pub unpriceable: usize,
    /// Σ their current totals (in the draft's currency; those billed in another are counted, not summed).
    pub unpriceable_revenue: String,
    /// The distribution of `delta_percent`.
    pub delta_percent_percentiles: Percentiles,
    /// Customers for whom a cap binds under one book and not under the other.
    pub caps_changed_outcome: usize,
    /// Per product (and platform add-on), by key.
    pub by_product: Vec<ProductChange>,
}

/// Nearest-rank percentiles (`null` without a customer that has a `delta_percent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// 10th.
    pub p10: Option<String>,
    /// Median.
    pub p50: Option<String>,
    /// 90th.
    pub p90: Option<String>,
}

/// A product's change over the priceable customers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductChange {
    /// Product, or platform add-on, key.
    pub product: String,
    /// Σ its current amounts (its lines, its add-ons' and its spend-limit line).
    pub current: String,
    /// Σ under the draft.
    pub draft: String,
    /// `draft − current`.
    pub delta: String,
    /// Customers whose amount for it moved.
    pub customers_moved: usize,
}

/// One customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerPreview {
    /// The customer.
    pub customer_id: String,
    /// The invoice repriced (`null` for an open period).
    pub invoice_id: Option<String>,
    /// Its total as invoiced (`total`, before credit), or for an open period at its month-end projection.
    pub current_total: String,
    /// Under the draft (`null` when unpriceable).
    pub draft_total: Option<String>,
    /// `draft_total − current_total`.
    pub delta: Option<String>,
    /// `delta / current_total × 100`, 2 places.
    pub delta_percent: Option<String>,
    /// The products whose amount moved or whose cap binds differently.
    pub products: Vec<ProductMove>,
    /// Why the draft cannot price this customer.
    pub problem: Option<Problem>,
}

/// A product that moved for one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductMove {
    /// Product, or platform add-on, key.
    pub product: String,
    /// Its current amount.
    pub current: String,
    /// Under the draft.
    pub draft: String,
    /// `draft − current`.
    pub delta: String,
    /// Whether its cap binds (usage past it dropped) now and under the draft; `null` without a cap.
    pub cap_binds: Option<CapBinds>,
}

/// Whether a product's cap binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CapBinds {
    /// Under the current book.
    pub current: bool,
    /// Under the draft.
    pub draft: bool,
}

/// Why a customer cannot be priced by the draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `meter_removed`, `addon_removed`, `product_removed`, `cap_out_of_bounds`, `commitment_unavailable`,
    /// `currency_changed`, `overflow`, `unpriceable` (another refusal of the request), or `current_unpriced` (the
    /// current total could not be reproduced: a stored request or version that no longer reads).
    pub code: &'static str,
    /// Every problem, with its path in the request.
    pub message: String,
}

/// One customer repriced, before presentation: exact amounts.
#[derive(Debug, Clone)]
pub(super) struct Repriced {
    pub(super) customer_id: String,
    pub(super) invoice_id: Option<String>,
    /// The currency of the current total.
    pub(super) currency: Currency,
    pub(super) current_total: Decimal,
    pub(super) outcome: Result<Moved, Problem>,
}

/// A customer the draft prices.
#[derive(Debug, Clone)]
pub(super) struct Moved {
    pub(super) draft_total: Decimal,
    /// Every product on either bill, by key: current amount, draft amount, cap binding under each.
    pub(super) products: BTreeMap<String, Amounts>,
}

/// A product's amounts on both bills.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Amounts {
    pub(super) current: Decimal,
    pub(super) draft: Decimal,
    /// Whether its cap binds under each book, when it has one.
    pub(super) cap: Option<CapBinds>,
}

impl Amounts {
    fn moved(&self) -> bool {
        self.current != self.draft || self.cap.is_some_and(|c| c.current != c.draft)
    }
}

/// An amount at the currency's minor unit (amounts on bills are already there: this only writes the places).
pub(super) fn at_minor(currency: Currency, amount: Decimal) -> String {
    currency.round(amount, Rounding::HalfAwayFromZero).to_string()
}

fn delta_percent(currency: Currency, current: Decimal, delta: Decimal) -> Option<Decimal> {
    if delta.is_zero() {
        return Some(Decimal::new(0, 2));
    }
    let current = u64::try_from(currency.to_minor_units(current).ok()?).ok().filter(|c| *c > 0)?;
    let delta = Decimal::from(currency.to_minor_units(delta).ok()?);
    billing_core::exact::mul_div_round(delta, 100, current, 2, "delta percent").ok()
}

/// The nearest-rank `p`th percentile of sorted values.
fn percentile(sorted: &[Decimal], p: usize) -> Option<String> {
    let n = sorted.len();
    let rank = (p * n).div_ceil(100).max(1);
    sorted.get(rank - 1).map(ToString::to_string)
}

/// One customer as reported, with its delta (when priced).
fn present(r: &Repriced, draft_currency: Currency) -> (CustomerPreview, Option<Decimal>, Option<Decimal>) {
    let mut out = CustomerPreview {
        customer_id: r.customer_id.clone(),
        invoice_id: r.invoice_id.clone(),
        current_total: at_minor(r.currency, r.current_total),
        draft_total: None,
        delta: None,
        delta_percent: None,
        products: Vec::new(),
        problem: None,
    };
    match &r.outcome {
        Err(problem) => {
            out.problem = Some(problem.clone());
            (out, None, None)
        }
        Ok(moved) => {
            let delta = moved.draft_total - r.current_total;
            let percent = delta_percent(draft_currency, r.current_total, delta);
            out.draft_total = Some(at_minor(draft_currency, moved.draft_total));
            out.delta = Some(at_minor(draft_currency, delta));
            out.delta_percent = percent.map(|p| p.to_string());
            out.products = moved
                .products
                .iter()
                .filter(|(_, a)| a.moved())
                .map(|(key, a)| ProductMove {
                    product: key.clone(),
                    current: at_minor(draft_currency, a.current),
                    draft: at_minor(draft_currency, a.draft),
                    delta: at_minor(draft_currency, a.draft - a.current),
                    cap_binds: a.cap,
                })
                .collect();
            (out, Some(delta), percent)
        }
    }
}

/// The report of repriced customers (by customer id), in the draft's `currency`, with the `top` movers each way.
///
/// # Errors
/// `Overflow` when a sum cannot be computed exactly.
pub(super) fn report(
    repriced: &[Repriced],
    currency: Currency,
    period: Span,
    price_book_version: Versions,
    top: usize,
) -> Outcome<Preview> {
    let sum = |values: &mut dyn Iterator<Item = Decimal>| billing_core::exact::sum(values, "preview revenue");
    let mut customers = Vec::with_capacity(repriced.len());
    let mut deltas: Vec<(Decimal, usize)> = Vec::new();
    let mut percents = Vec::new();
    let (mut more, mut less, mut same, mut caps_changed) = (0, 0, 0, 0);
    let mut by_product: BTreeMap<&str, (Decimal, Decimal, usize)> = BTreeMap::new();
    for r in repriced {
        let (preview, delta, percent) = present(r, currency);
        if let (Some(delta), Ok(moved)) = (delta, &r.outcome) {
            match delta.cmp(&Decimal::ZERO) {
                std::cmp::Ordering::Greater => more += 1,
                std::cmp::Ordering::Less => less += 1,
                std::cmp::Ordering::Equal => same += 1,
            }
            deltas.push((delta, customers.len()));
            percents.extend(percent);
            caps_changed +=
                usize::from(moved.products.values().any(|a| a.cap.is_some_and(|c| c.current != c.draft)));
            for (key, a) in &moved.products {
                let entry = by_product.entry(key).or_default();
                entry.0 = billing_core::exact::add(entry.0, a.current, "preview revenue")?;
                entry.1 = billing_core::exact::add(entry.1, a.draft, "preview revenue")?;
                entry.2 += usize::from(a.current != a.draft);
            }
        }
        customers.push(preview);
    }
    let priced = || repriced.iter().filter(|r| r.outcome.is_ok());
    let current_revenue = sum(&mut priced().map(|r| r.current_total))?;
    let draft_revenue = sum(&mut priced().filter_map(|r| r.outcome.as_ref().ok().map(|m| m.draft_total)))?;
    let unpriceable_revenue = sum(&mut repriced
        .iter()
        .filter(|r| r.outcome.is_err() && r.currency == currency)
        .map(|r| r.current_total))?;
    percents.sort_unstable();
    // Largest movers first; ties by customer id (the list's order).
    deltas.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let pick = |it: &mut dyn Iterator<Item = &(Decimal, usize)>| -> Vec<CustomerPreview> {
        it.take(top).map(|(_, i)| customers[*i].clone()).collect()
    };
    let top_increases = pick(&mut deltas.iter().filter(|(d, _)| *d > Decimal::ZERO));
    let mut decreases: Vec<&(Decimal, usize)> = deltas.iter().filter(|(d, _)| *d < Decimal::ZERO).collect();
    decreases.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let top_decreases = pick(&mut decreases.into_iter());
    let summary = Summary {
        customers: repriced.len(),
        current_revenue: at_minor(currency, current_revenue),
        draft_revenue: at_minor(currency, draft_revenue),
        delta: at_minor(
            currency,
            billing_core::exact::sub(draft_revenue, current_revenue, "preview revenue")?,
        ),
        more,
        less,
        same,
        unpriceable: repriced.len() - more - less - same,
        unpriceable_revenue: at_minor(currency, unpriceable_revenue),
        delta_percent_percentiles: Percentiles {
            p10: percentile(&percents, 10),
            p50: percentile(&percents, 50),
            p90: percentile(&percents, 90),
        },
        caps_changed_outcome: caps_changed,
        by_product: by_product
            .into_iter()
            .map(|(key, (current, draft, moved))| ProductChange {
                product: key.to_owned(),
                current: at_minor(currency, current),
                draft: at_minor(currency, draft),
                delta: at_minor(currency, draft - current),
                customers_moved: moved,
            })
            .collect(),
    };
    Ok(Preview {
        period,
        price_book_version,
        currency: currency.code().to_owned(),
        summary,
        customers,
        top_increases,
        top_decreases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn percent_is_exact_and_rounded_half_away_from_zero() {
        let usd = Currency::USD;
        assert_eq!(delta_percent(usd, d("3.00"), d("1.00")), Some(d("33.33")));
        assert_eq!(delta_percent(usd, d("3.00"), d("-2.00")), Some(d("-66.67")));
        assert_eq!(delta_percent(usd, d("8.00"), d("0.01")), Some(d("0.13")), "0.125 rounds up");
        assert_eq!(
            delta_percent(usd, d("8.00"), d("-0.01")),
            Some(d("-0.13")),
            "−0.125 rounds away from zero"
        );
        assert_eq!(delta_percent(usd, d("0.00"), d("0.00")).map(|p| p.to_string()), Some("0.00".into()));
        assert_eq!(delta_percent(usd, d("0.00"), d("5.00")), None, "no percentage of nothing");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Decimal> = (1..=10).map(Decimal::from).collect();
        assert_eq!(percentile(&v, 10).as_deref(), Some("1"));
        assert_eq!(percentile(&v, 50).as_deref(), Some("5"));
        assert_eq!(percentile(&v, 90).as_deref(), Some("9"));
        assert_eq!(percentile(&v[..1], 10).as_deref(), Some("1"));
        assert_eq!(percentile(&[], 50), None);
    }
}
