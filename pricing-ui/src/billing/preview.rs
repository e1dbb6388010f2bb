//! What a typed cap will do — what it buys and its effect at the current pace — and how dates, periods and
//! quantities read on the page.

use std::collections::BTreeSet;

use billing_core::wire::Num;
use billing_core::{cap_outlook, BillingPeriod, Currency, PriceBook, QuoteRequest, SpendLimit};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::data::{BillingData, ProductData};
use crate::explain::cap_buys;
use crate::format::{grouped, money};

/// A date in words: `1 December 2026`.
pub fn date(at: DateTime<Utc>) -> String {
    at.format("%-d %B %Y").to_string()
}

/// A period's dates in words: `1 – 30 November 2026` (the end shown inclusive: the day before the exclusive end).
pub fn period_words(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let last = end - chrono::Duration::days(1);
    if start.format("%Y-%m").to_string() == last.format("%Y-%m").to_string() {
        format!("{} – {}", start.format("%-d"), date(last))
    } else {
        format!("{} – {}", date(start), date(last))
    }
}

/// A unit in the plural when the quantity is not one: `1 event`, `2 events`, `0 events`.
pub fn units(quantity: Decimal, unit: &str) -> String {
    if quantity == Decimal::ONE {
        format!("1 {unit}")
    } else {
        format!("{} {unit}s", grouped(quantity.normalize()))
    }
}

/// The add-ons the period's request chose (what a cap buys depends on the optional ones billed on its meter).
pub(super) fn chosen_addons(book: &PriceBook, data: &BillingData) -> BTreeSet<String> {
    QuoteRequest::from_json_for(book, &data.request)
        .map(|r| r.addons.iter().map(|a| a.key().to_owned()).collect())
        .unwrap_or_default()
}

/// What a cap being typed will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapEffect {
    /// The field is empty: saving removes the cap.
    Removed,
    /// Not a cap the book allows: why.
    Invalid(String),
    /// Below what the period already bills: it applies from the next period; this one keeps its amount.
    FromNextPeriod,
    /// Reached already, at or above what the period bills: usage from now on is dropped.
    Binding,
    /// At the current pace, reached at this instant, dropping this usage (meter, quantity) by the period's end.
    Reaches(DateTime<Utc>, Vec<(String, Decimal)>),
    /// At the current pace, not reached this period.
    NotReached,
    /// The period has ended: a cap applies from the open period.
    PeriodOver,
}

impl CapEffect {
    /// One word for the kind of effect: `removed`, `invalid`, `next-period`, `reaches`, `not-reached`, `ended`.
    pub fn kind(&self) -> &'static str {
        match self {
            CapEffect::Removed => "removed",
            CapEffect::Invalid(_) => "invalid",
            CapEffect::FromNextPeriod => "next-period",
            CapEffect::Binding => "binding",
            CapEffect::Reaches(..) => "reaches",
            CapEffect::NotReached => "not-reached",
            CapEffect::PeriodOver => "ended",
        }
    }
}

/// A cap being typed: how much of the product's own meter it pays for a month (`None`: every unit), and its
/// effect at the current pace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapPreview {
    /// Units of the product's own meter the cap pays for each month, when it stops usage at all.
    pub buys: Option<Decimal>,
    /// Its effect this period.
    pub effect: CapEffect,
}

/// The preview of `typed` as `product`'s cap, on the period's request so far: billing-core's limit inversion for
/// what it buys, and `cap_outlook` (the usage view's own projection) for when it binds and what it drops.
pub fn preview_cap(book: &PriceBook, data: &BillingData, product: &str, typed: &str) -> CapPreview {
    let typed = typed.trim().replace(',', "");
    let typed = typed.trim_start_matches('$');
    if typed.is_empty() {
        return CapPreview { buys: None, effect: CapEffect::Removed };
    }
    let invalid = |m: String| CapPreview { buys: None, effect: CapEffect::Invalid(m) };
    let amount = match billing_core::wire::parse_decimal(typed) {
        Ok(a) => a,
        Err(m) => return invalid(m),
    };
    if let Err(m) = SpendLimit::new(amount, book.spend_limits()) {
        return invalid(m);
    }
    let Some(p) = book.product(product) else { return invalid(format!("no product `{product}`")) };
    let mut request = match QuoteRequest::from_json_for(book, &data.request) {
        Ok(r) => r,
        Err(e) => return invalid(e.to_string()),
    };
    let chosen: BTreeSet<String> = request.addons.iter().map(|a| a.key().to_owned()).collect();
    let factor = Decimal::ONE - data.commitment.as_ref().map_or(Decimal::ZERO, |c| c.discount_rate);
    let buys = cap_buys(book, p, &chosen, amount, factor).ok().flatten();
    if !data.current {
        return CapPreview { buys, effect: CapEffect::PeriodOver };
    }
    request.limits.insert(product.to_owned(), Num(amount));
    let period = match BillingPeriod::new(data.period_start, data.period_end) {
        Ok(p) => p,
        Err(m) => return invalid(m),
    };
    // The API's rule: a cap below what the period bills now (after the discount, rounded up to whole units) is
    // pinned at that amount for this period and applies in full from the next.
    let billed = data.products.iter().find(|p| p.key == product).and_then(|p| {
        let net = billing_core::exact::mul(p.amount, factor, "billed").ok()?;
        Some(book.currency().round(net, billing_core::Rounding::HalfAwayFromZero).ceil())
    });
    let effect = match cap_outlook(book, &request, period, data.now, product) {
        Err(e) => CapEffect::Invalid(e.to_string()),
        Ok(_) if billed.is_some_and(|b| b > amount) => CapEffect::FromNextPeriod,
        Ok(o) if o.reached => CapEffect::Binding,
        Ok(o) => match o.projected_at {
            None => CapEffect::NotReached,
            Some(at) => {
                let dropped = o
                    .at_period_end
                    .map(|l| l.meters.iter().map(|m| (m.meter.clone(), m.dropped.value())).collect())
                    .unwrap_or_default();
                CapEffect::Reaches(at, dropped)
            }
        },
    };
    CapPreview { buys, effect }
}

/// The words of a preview for `product` (whose own meter counts in `unit`).
pub fn preview_words(currency: Currency, product: &ProductData, typed: &str, preview: &CapPreview) -> String {
    let amount = typed.trim().replace(',', "");
    let amount = amount.trim_start_matches('$');
    let cap = amount.parse::<Decimal>().map(|a| money(currency, a)).unwrap_or_default();
    let buys = match preview.buys {
        Some(units_bought) => format!(
            "A {cap} cap stops {} at {} a month. ",
            product.name,
            units(units_bought.floor(), &product.unit)
        ),
        None => String::new(),
    };
    let effect = match &preview.effect {
        CapEffect::Removed if product.cap.is_none() => {
            return "No cap: type an amount to see what it would stop, and when.".to_owned();
        }
        CapEffect::Removed => return format!("Saving removes the cap on {}: all its usage is billed.", product.name),
        CapEffect::Invalid(m) => return m.clone(),
        CapEffect::PeriodOver => "This period has ended; a cap applies to the open period.".to_owned(),
        CapEffect::FromNextPeriod => format!(
            "This period already bills more than {cap}: the new cap applies in full from the next period, and this \
             period keeps its current amount (usage from now on is dropped)."
        ),
        CapEffect::Binding => "It is reached: usage from now on is dropped until the period ends.".to_owned(),
        CapEffect::NotReached => "At your current pace it will not be reached this period.".to_owned(),
        CapEffect::Reaches(at, dropped) => {
            let dropped: Vec<String> = dropped
                .iter()
                .filter(|(_, q)| !q.is_zero())
                .map(|(meter, q)| {
                    let unit = product.daily.iter().find(|d| d.meter == *meter).map_or(meter.as_str(), |d| &d.unit);
                    units(*q, unit)
                })
                .collect();
            let dropped = if dropped.is_empty() { "no usage".to_owned() } else { dropped.join(" and ") };
            format!(
                "At your current pace it will be reached on {} and drop about {dropped} by the end of the period.",
                date(*at)
            )
        }
    };
    format!("{buys}{effect}")
}
