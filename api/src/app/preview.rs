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

/// What a page of customers adds to the whole (summed exactly).
#[derive(Debug, Default)]
struct Totals {
    current: Decimal,
    draft: Decimal,
    /// Current totals of the unpriceable customers billed in the draft's currency.
    unpriceable: Decimal,
    more: usize,
    less: usize,
    same: usize,
    caps_changed: usize,
    /// Per product: current, draft, customers whose amount moved.
    by_product: BTreeMap<String, (Decimal, Decimal, usize)>,
}

fn add(a: Decimal, b: Decimal) -> Outcome<Decimal> {
    Ok(billing_core::exact::add(a, b, "preview revenue")?)
}

impl Totals {
    fn merge(&mut self, other: Totals) -> Outcome<()> {
        self.current = add(self.current, other.current)?;
        self.draft = add(self.draft, other.draft)?;
        self.unpriceable = add(self.unpriceable, other.unpriceable)?;
        self.more += other.more;
        self.less += other.less;
        self.same += other.same;
        self.caps_changed += other.caps_changed;
        for (key, (current, draft, moved)) in other.by_product {
            let entry = self.by_product.entry(key).or_default();
            *entry = (add(entry.0, current)?, add(entry.1, draft)?, entry.2 + moved);
        }
        Ok(())
    }
}

/// A page of customers as reported, with what it adds to the whole: built on the pricing thread that priced it, so
/// only the sums are left to do once every page is in.
#[derive(Debug, Default)]
pub(super) struct Page {
    customers: Vec<CustomerPreview>,
    /// Per priced customer: its delta and its index in `customers`.
    deltas: Vec<(Decimal, usize)>,
    percents: Vec<Decimal>,
    totals: Totals,
}

/// A page of repriced customers (by customer id), presented in the draft's `currency`.
///
/// # Errors
/// `Overflow` when a sum cannot be computed exactly.
pub(super) fn page(repriced: Vec<Repriced>, currency: Currency) -> Outcome<Page> {
    let mut out = Page { customers: Vec::with_capacity(repriced.len()), ..Page::default() };
    let t = &mut out.totals;
    for r in repriced {
        let (preview, delta, percent) = present(&r, currency);
        match (&r.outcome, delta) {
            (Ok(moved), Some(delta)) => {
                match delta.cmp(&Decimal::ZERO) {
                    std::cmp::Ordering::Greater => t.more += 1,
                    std::cmp::Ordering::Less => t.less += 1,
                    std::cmp::Ordering::Equal => t.same += 1,
                }
                t.current = add(t.current, r.current_total)?;
                t.draft = add(t.draft, moved.draft_total)?;
                out.deltas.push((delta, out.customers.len()));
                out.percents.extend(percent);
                t.caps_changed +=
                    usize::from(moved.products.values().any(|a| a.cap.is_some_and(|c| c.current != c.draft)));
                for (key, a) in &moved.products {
                    // Looked up before inserting: the key is copied once per page, not once per customer.
                    if !t.by_product.contains_key(key) {
                        t.by_product.insert(key.clone(), Default::default());
                    }
                    let Some(entry) = t.by_product.get_mut(key) else { continue };
                    *entry = (
                        add(entry.0, a.current)?,
                        add(entry.1, a.draft)?,
                        entry.2 + usize::from(a.current != a.draft),
                    );
                }
            }
            _ if r.currency == currency => t.unpriceable = add(t.unpriceable, r.current_total)?,
            _ => {}
        }
        out.customers.push(preview);
    }
    Ok(out)
}

/// The report of the pages (in customer order), in the draft's `currency`, with the `top` movers each way.
///
/// # Errors
/// `Overflow` when a sum cannot be computed exactly.
pub(super) fn report(
    pages: Vec<Page>,
    currency: Currency,
    period: Span,
    price_book_version: Versions,
    top: usize,
) -> Outcome<Preview> {
    let mut customers = Vec::with_capacity(pages.iter().map(|p| p.customers.len()).sum());
    let (mut deltas, mut percents, mut t) = (Vec::new(), Vec::new(), Totals::default());
    for page in pages {
        let offset = customers.len();
        deltas.extend(page.deltas.into_iter().map(|(d, i)| (d, i + offset)));
        percents.extend(page.percents);
        customers.extend(page.customers);
        t.merge(page.totals)?;
    }
    percents.sort_unstable();
    // Largest movers first; ties by customer id (the list's order).
    let pick = |mut movers: Vec<(Decimal, usize)>, larger_first: bool| -> Vec<CustomerPreview> {
        movers.sort_by(|a, b| if larger_first { b.0.cmp(&a.0) } else { a.0.cmp(&b.0) }.then(a.1.cmp(&b.1)));
        movers.into_iter().take(top).map(|(_, i)| customers[i].clone()).collect()
    };
    let top_increases = pick(deltas.iter().copied().filter(|(d, _)| *d > Decimal::ZERO).collect(), true);
    let top_decreases = pick(deltas.iter().copied().filter(|(d, _)| *d < Decimal::ZERO).collect(), false);
    let summary = Summary {
        customers: customers.len(),
        current_revenue: at_minor(currency, t.current),
        draft_revenue: at_minor(currency, t.draft),
        delta: at_minor(currency, billing_core::exact::sub(t.draft, t.current, "preview revenue")?),
        more: t.more,
        less: t.less,
        same: t.same,
        unpriceable: customers.len() - t.more - t.less - t.same,
        unpriceable_revenue: at_minor(currency, t.unpriceable),
        delta_percent_percentiles: Percentiles {
            p10: percentile(&percents, 10),
            p50: percentile(&percents, 50),
            p90: percentile(&percents, 90),
        },
        caps_changed_outcome: t.caps_changed,
        by_product: t
            .by_product
            .into_iter()
            .map(|(product, (current, draft, moved))| {
                Ok(ProductChange {
                    product,
                    current: at_minor(currency, current),
                    draft: at_minor(currency, draft),
                    delta: at_minor(currency, billing_core::exact::sub(draft, current, "preview revenue")?),
                    customers_moved: moved,
                })
            })
            .collect::<Outcome<_>>()?,
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
