//! What the page says about a product beyond its bill line: its free allowance, what a spend cap buys (billing-
//! core's limit inversion), and its cost curve (SVG drawn from the tier schedule).

use std::collections::BTreeSet;

use billing_core::{billable_usage, ChargeModel, Metered, PriceBook, Product, Quantity, SpendLimit};
use rust_decimal::Decimal;

use crate::scale::Scale;

/// The usage every period includes for free: the first tier, when it charges nothing.
pub fn free_allowance(metered: &Metered) -> Option<Decimal> {
    match &metered.charge {
        ChargeModel::Graduated(t) | ChargeModel::Volume(t) => {
            let first = t.tiers().next()?;
            (first.unit_amount.is_zero() && first.flat_amount.is_zero()).then_some(first.up_to).flatten()
        }
        ChargeModel::PerUnit { .. } | ChargeModel::Package(_) => None,
    }
}

/// The charges of a product on its own meter: the product and the add-ons billed on the same meter (the optional
/// ones when chosen).
fn own_meter_charges<'a>(product: &'a Product, chosen: &BTreeSet<String>) -> Vec<&'a ChargeModel> {
    let meter = &product.metered.meter;
    std::iter::once(&product.metered.charge)
        .chain(
            product
                .addons
                .iter()
                .filter(|a| a.metered.meter == *meter && (!a.optional || chosen.contains(&*a.metered.key)))
                .map(|a| &a.metered.charge),
        )
        .collect()
}

/// How much of the product's own meter a cap of `limit` (after the discount `net_factor`) pays for each month:
/// `Some(units)` where the cap stops usage, `None` when the cap is never reached (it pays for every unit up to
/// the largest quantity). From billing-core's `billable_usage`, the same inversion that drops usage on invoices.
///
/// # Errors
/// A message when the limit is outside the book's rules or the search overflows.
pub fn cap_buys(
    book: &PriceBook,
    product: &Product,
    chosen: &BTreeSet<String>,
    limit: Decimal,
    net_factor: Decimal,
) -> Result<Option<Decimal>, String> {
    let limit = SpendLimit::new(limit, book.spend_limits())?;
    let charges: Vec<(&ChargeModel, usize)> =
        own_meter_charges(product, chosen).into_iter().map(|c| (c, 0)).collect();
    let most = Quantity::new(Quantity::MAX)?;
    let admission = billable_usage(&charges, &[most], net_factor, limit).map_err(|e| e.to_string())?;
    Ok(admission.reached.then(|| admission.billable[0].value()))
}

/// A product's cost curve, in an SVG view box 1000 wide and [`HEIGHT`] high: cost at list price against usage on
/// the slider's scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Curve {
    /// The path (`M x y L x y …`).
    pub path: String,
    /// Tier boundaries: x, and the boundary.
    pub boundaries: Vec<(i64, Decimal)>,
    /// The cost at the right edge of the chart (the scale of y).
    pub top_cost: Decimal,
    charges: Vec<ChargeModel>,
}

/// Height of the curve's view box.
pub const HEIGHT: i64 = 200;

impl Curve {
    /// The curve of `product`'s own meter (with the add-ons on that meter that are always billed), on `scale`.
    pub fn new(product: &Product, scale: &Scale) -> Curve {
        let charges: Vec<ChargeModel> =
            own_meter_charges(product, &BTreeSet::new()).into_iter().cloned().collect();
        let points: Vec<Decimal> = scale.stops().iter().map(|q| cost_of(&charges, *q)).collect();
        let top_cost = points.iter().copied().max().unwrap_or(Decimal::ZERO).max(Decimal::ONE);
        let max = scale.max_position().max(1);
        let mut path = String::new();
        for (i, c) in points.iter().enumerate() {
            let x = i64::try_from(i * 1000 / max).unwrap_or(1000);
            let y = y_of(*c, top_cost);
            path.push_str(if i == 0 { "M" } else { " L" });
            path.push_str(&format!("{x} {y}"));
        }
        let boundaries = tier_bounds(&product.metered.charge)
            .into_iter()
            .filter(|b| *b <= scale.quantity(scale.max_position()))
            .map(|b| (scale.permille(b), b))
            .collect();
        Curve { path, boundaries, top_cost, charges }
    }

    /// The point of usage `q`: (x, y), clamped to the chart.
    pub fn point(&self, scale: &Scale, q: Decimal) -> (i64, i64) {
        (scale.permille(q), y_of(cost_of(&self.charges, q.min(Quantity::MAX)), self.top_cost))
    }

    /// The y of a cost (clamped to the chart).
    pub fn y(&self, cost: Decimal) -> i64 {
        y_of(cost, self.top_cost)
    }
}

/// The list price of `q` under `charges` (zero for a quantity the core refuses or cannot price).
fn cost_of(charges: &[ChargeModel], q: Decimal) -> Decimal {
    Quantity::new(q)
        .ok()
        .and_then(|q| charges.iter().map(|c| c.amount(q).ok()).sum::<Option<Decimal>>())
        .unwrap_or(Decimal::ZERO)
}

/// The closed tiers' upper bounds.
pub fn tier_bounds(charge: &ChargeModel) -> Vec<Decimal> {
    match charge {
        ChargeModel::Graduated(t) | ChargeModel::Volume(t) => t.tiers().filter_map(|t| t.up_to).collect(),
        ChargeModel::PerUnit { .. } | ChargeModel::Package(_) => Vec::new(),
    }
}

fn y_of(cost: Decimal, top: Decimal) -> i64 {
    let scaled = (cost.min(top) * Decimal::from(HEIGHT - 10) / top).round();
    HEIGHT - 4 - i64::try_from(scaled).unwrap_or(0)
}
