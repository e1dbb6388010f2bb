//! The one pipeline: (price book, usage, choices, period) → a bill whose every cent is a line.
//!
//! The same function prices the public pricing page's estimate, `tally quote`, and the invoice of a closed period,
//! so an estimate and an invoice for the same inputs cannot disagree. The order (DESIGN.md, "The pipeline"):
//!
//! 1. **Charges.** For each product that is quoted, in book order: its line, then its add-ons' lines, each priced
//!    exactly at the offered quantity and rounded once, half away from zero, to the minor unit.
//! 2. **Spend limits.** A cap is a maximum on money: a capped product's net amount (its rounded lines and its
//!    add-ons', after the commitment discount) becomes `min(net, cap)`; a `spend_limit` line, never positive, is the
//!    difference. A cap that is not reached changes nothing. The usage the cap pays for is reported per meter as
//!    information; it never changes the money.
//! 3. **Platform add-ons**, each a line at the monthly price, and a `proration` line when added mid-period (the
//!    prorated price rounded once; the proration line is the difference).
//! 4. **Subtotal** = Σ rounded lines so far.
//! 5. **Commitment discount** (estimate view): `−discount × subtotal`, rounded. **Total** = subtotal + discount.
//! 6. **Prepaid credit** (invoice view, when a credit balance is given, instead of step 5): `−min(balance, total)`.
//!    **Amount due** = total + credit.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::catalog::{Metered, PlatformAddon, PriceBook, Product};
use crate::charge::ChargeModel;
use crate::charge::Slices;
use crate::commitment::{apply_credit, CommitmentTerms};
use crate::error::{echo, Error, Issue, Report, Result};
use crate::exact;
use crate::money::{self, round_to, Amount, Currency, Rounding};
use crate::period::BillingPeriod;
use crate::quantity::Quantity;
use crate::request::QuoteRequest;
use crate::spend_limit::{billable_usage, thresholds_reached, LimitState, SpendLimit};

/// An instant, UTC.
type Instant = chrono::DateTime<chrono::Utc>;

/// A priced bill: a quote of hypothetical usage or an invoice of measured usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bill<'book> {
    /// Currency of every amount.
    pub currency: Currency,
    /// Version of the price book used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_book_version: Option<String>,
    /// The period billed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<BillingPeriod>,
    /// Every line, in pipeline order.
    pub lines: Vec<Line<'book>>,
    /// Σ rounded charge-stage lines (usage, spend limits, platform add-ons, proration): the list price.
    pub subtotal: Decimal,
    /// Σ discount lines (zero or negative).
    pub discount: Decimal,
    /// `subtotal + discount`: what the period costs.
    pub total: Decimal,
    /// Σ prepaid-credit lines (zero or negative).
    pub credit_applied: Decimal,
    /// `total + credit_applied`: what remains to be paid.
    pub amount_due: Decimal,
    /// The commitment chosen, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<CommitmentSummary>,
    /// One entry per limited product.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spend_limits: Vec<LimitSummary>,
}

impl Bill<'_> {
    /// The same bill, owning its text instead of borrowing it from the price book (to keep it after the book).
    pub fn into_owned(self) -> Bill<'static> {
        Bill {
            currency: self.currency,
            price_book_version: self.price_book_version,
            period: self.period,
            lines: self.lines.into_iter().map(Line::into_owned).collect(),
            subtotal: self.subtotal,
            discount: self.discount,
            total: self.total,
            credit_applied: self.credit_applied,
            amount_due: self.amount_due,
            commitment: self.commitment,
            spend_limits: self.spend_limits,
        }
    }
}

impl Line<'_> {
    /// The same line, owning its text.
    pub fn into_owned(self) -> Line<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Line {
            key: own(self.key),
            name: own(self.name),
            kind: self.kind,
            product: self.product.map(own),
            meter: self.meter.map(own),
            quantity: self.quantity,
            unit: self.unit.map(own),
            exact_amount: self.exact_amount,
            amount: self.amount,
            tiers: self.tiers.map(Slices::into_owned),
            note: self.note,
        }
    }
}

/// One line of a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line<'book> {
    /// Product, add-on or platform add-on key; for adjustments, the key they adjust (or `commitment`, `credit`).
    pub key: Cow<'book, str>,
    /// Display name.
    pub name: Cow<'book, str>,
    /// What kind of line this is.
    pub kind: LineKind,
    /// The product group the line belongs to (product and add-on lines, and their spend-limit line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<Cow<'book, str>>,
    /// The meter priced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<Cow<'book, str>>,
    /// Quantity priced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Quantity>,
    /// Unit of the quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Cow<'book, str>>,
    /// The exact amount, never rounded.
    #[serde(serialize_with = "crate::wire::normalized")]
    pub exact_amount: Decimal,
    /// The billed amount, at the currency's minor unit.
    pub amount: Decimal,
    /// How the amount is made: one entry per tier reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Slices<'book>>,
    /// An explanation for adjustment lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Usage of a product.
    Product,
    /// Usage of an add-on.
    Addon,
    /// A flat platform add-on.
    PlatformAddon,
    /// The unused part of a platform add-on added mid-period (negative).
    Proration,
    /// Usage dropped by a spend limit (negative).
    SpendLimit,
    /// The commitment discount (negative).
    CommitmentDiscount,
    /// Prepaid credit applied (negative).
    PrepaidCredit,
}

/// Where a line kind counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// In the subtotal.
    Charge,
    /// Between subtotal and total.
    Discount,
    /// Between total and amount due.
    Credit,
}

impl LineKind {
    /// Which sum this kind of line belongs to.
    pub fn stage(self) -> Stage {
        match self {
            LineKind::Product
            | LineKind::Addon
            | LineKind::PlatformAddon
            | LineKind::Proration
            | LineKind::SpendLimit => Stage::Charge,
            LineKind::CommitmentDiscount => Stage::Discount,
            LineKind::PrepaidCredit => Stage::Credit,
        }
    }
}

/// The commitment chosen and what it means for this bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitmentSummary {
    /// Face value of the yearly credit.
    pub yearly_credit: Decimal,
    /// Discount rate of its bracket.
    pub discount_rate: Decimal,
    /// What the credit costs, rounded.
    pub price: Decimal,
    /// The credit released each month of the term.
    pub monthly_release: Vec<Decimal>,
    /// The month's list price (the subtotal).
    pub list_total: Decimal,
    /// The month's cost after the discount.
    pub effective_total: Decimal,
    /// How many months the credit covers at this month's list price, rounded down to a tenth (`None` when the
    /// month costs nothing).
    pub credit_lasts_months: Option<Decimal>,
}

/// A product's spend limit and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSummary {
    /// The product key.
    pub product: String,
    /// The limit, whole currency units, after discount.
    pub limit: Decimal,
    /// List amount billed for the product and its add-ons: the sum of their rounded lines and the spend-limit line.
    pub list_amount: Decimal,
    /// `list_amount × (1 − discount)`, exact: never more than the limit.
    #[serde(serialize_with = "crate::wire::normalized")]
    pub net_exact_amount: Decimal,
    /// Whether the cap binds (the product's net without it would exceed it): usage past it is dropped.
    pub reached: bool,
    /// Alert thresholds reached (shares of the limit).
    pub alerts: Vec<Decimal>,
    /// Per meter: offered, billable and dropped quantities (information; empty when the product has no usage in
    /// the request, and so no line on the bill).
    pub meters: Vec<MeterAdmission>,
}

/// What a limit did to one meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterAdmission {
    /// The meter.
    pub meter: String,
    /// Usage offered.
    pub offered: Quantity,
    /// Usage billed.
    pub billable: Quantity,
    /// Usage dropped (offered − billable).
    pub dropped: Quantity,
}

/// The choices of a request, resolved against the book.
struct Plan<'b> {
    /// The request's usage by meter index ([`PriceBook::meters`]).
    usage: Vec<Option<Quantity>>,
    optional: Vec<&'b str>,
    /// Platform add-ons, with when they were added and removed during the period.
    platform: Vec<(&'b PlatformAddon, Option<Instant>, Option<Instant>)>,
    limits: BTreeMap<&'b str, SpendLimit>,
    terms: Option<CommitmentTerms>,
    credit_balance: Option<Decimal>,
}

/// Prices a request against a price book: the one pipeline behind quotes and invoices.
///
/// # Errors
/// [`Error::InvalidRequest`] listing every problem of the request against the book (unknown meters, add-ons or
/// products, limits outside the book's rules, a commitment below the minimum, proration without a period);
/// [`Error::Overflow`] when an amount is too large to compute exactly.
///
/// # Examples
/// ```
/// use billing_core::{compute, PriceBook, QuoteRequest};
/// let book = PriceBook::default_book()?;
/// let bill = compute(&book, &QuoteRequest::from_json(r#"{"usage": {"events": 10000000}}"#)?)?;
/// assert_eq!(bill.total.to_string(), "324.40");
/// # Ok::<(), billing_core::Error>(())
/// ```
pub fn compute<'book>(book: &'book PriceBook, request: &QuoteRequest) -> Result<Bill<'book>> {
    let mut issues = Report::default();
    let plan = resolve(book, request, &mut issues);
    if !issues.is_empty() {
        return Err(Error::InvalidRequest(issues.finish()));
    }
    let currency = book.currency();
    let net_factor = plan.terms.as_ref().map_or(Decimal::ONE, CommitmentTerms::net_factor);
    let mut lines = Vec::with_capacity(32);
    let mut spend_limits = Vec::new();
    // Reused from product to product: the group's distinct meters, their offered usage, and its charges.
    let mut meters: Vec<usize> = Vec::with_capacity(4);
    let mut offered: Vec<Quantity> = Vec::with_capacity(4);
    let mut group: Vec<(&ChargeModel, usize)> = Vec::with_capacity(4);

    for product in book.products() {
        let key = &product.metered.key;
        let limit = plan.limits.get(&**key);
        meters.clear();
        offered.clear();
        group.clear();
        // A product is on the bill when a meter of its charges (its own, its mandatory add-ons', its chosen optional
        // add-ons') is in the usage, even at 0. A limit or an add-on choice alone does not bring it in. One pass
        // gathers the group and decides; a second prices it.
        let mut quoted = false;
        for (m, optional) in product.charges() {
            if optional && !plan.optional.contains(&&*m.key) {
                continue;
            }
            let index = match meters.iter().position(|x| *x == m.meter_index()) {
                Some(index) => index,
                None => {
                    let used = plan.usage[m.meter_index()];
                    quoted |= used.is_some();
                    meters.push(m.meter_index());
                    offered.push(used.unwrap_or(Quantity::ZERO));
                    meters.len() - 1
                }
            };
            group.push((&m.charge, index));
        }
        if !quoted {
            if let Some(limit) = limit {
                spend_limits.push(unused_limit(book, key, *limit));
            }
            continue;
        }
        let first = lines.len();
        let charges = product.charges().filter(|(m, optional)| !optional || plan.optional.contains(&&*m.key));
        for (i, ((m, _), (_, index))) in charges.zip(&group).enumerate() {
            let kind = if i == 0 { LineKind::Product } else { LineKind::Addon };
            push_usage_line(&mut lines, currency, key, m, kind, offered[*index])?;
        }
        if let Some(limit) = limit {
            let (line, summary) =
                limit_group(book, product, *limit, net_factor, &lines[first..], &group, &meters, &offered)?;
            lines.extend(line);
            spend_limits.push(summary);
        }
    }

    for (addon, from, until) in &plan.platform {
        let full = Amount::round(currency, addon.monthly_price);
        lines.push(Line {
            key: Cow::Borrowed(&addon.key),
            name: Cow::Borrowed(&addon.name),
            kind: LineKind::PlatformAddon,
            product: None,
            meter: None,
            quantity: None,
            unit: None,
            exact_amount: full.exact,
            amount: full.rounded,
            tiers: None,
            note: None,
        });
        if let (true, Some(period)) = (from.is_some() || until.is_some(), request.period) {
            let proration = period.window(*from, *until).map_err(|m| request_issue("addons", m))?;
            let when = match (from, until) {
                (Some(f), Some(u)) => format!("added {f}, removed {u}"),
                (Some(f), None) => format!("added {f}"),
                (None, Some(u)) => format!("removed {u}"),
                (None, None) => String::new(),
            };
            if !proration.is_full() {
                // The add-on costs its price × seconds / period, rounded once; this adjustment of the rounded full
                // price makes it so, and is itself at the minor unit (its exact amount is its amount).
                let prorated = proration.apply_rounded(addon.monthly_price, currency)?;
                let adjustment = exact::sub(prorated, full.rounded, "proration")?;
                lines.push(Line {
                    key: Cow::Borrowed(&addon.key),
                    name: Cow::Owned(format!("{} proration", addon.name)),
                    kind: LineKind::Proration,
                    product: None,
                    meter: None,
                    quantity: None,
                    unit: None,
                    exact_amount: adjustment,
                    amount: adjustment,
                    tiers: None,
                    note: Some(format!(
                        "{when}: billed for {} of the period's {} seconds ({} × {} / {}, rounded once: {})",
                        proration.seconds,
                        proration.of,
                        addon.monthly_price.normalize(),
                        proration.seconds,
                        proration.of,
                        prorated
                    )),
                });
            }
        }
    }

    let subtotal = stage_sum(&lines, Stage::Charge)?;
    // Later stages only add lines after the earlier ones: each sum reads just the lines its stage added.
    let charged = lines.len();
    if let (Some(terms), None) = (&plan.terms, plan.credit_balance) {
        let discount = Amount::round(currency, -exact::mul(terms.discount, subtotal, "commitment discount")?);
        lines.push(Line {
            key: Cow::Borrowed("commitment"),
            name: Cow::Borrowed("Commitment discount"),
            kind: LineKind::CommitmentDiscount,
            product: None,
            meter: None,
            quantity: None,
            unit: None,
            exact_amount: discount.exact,
            amount: discount.rounded,
            tiers: None,
            note: Some(format!(
                "{} % off the list price for a yearly credit of {}",
                money::shift_decimal_point(terms.discount, 2)?.normalize(),
                terms.yearly_credit
            )),
        });
    }
    let discount = stage_sum(&lines[charged..], Stage::Discount)?;
    let discounted = lines.len();
    let total = exact::add(subtotal, discount, "total")?;
    if let Some(balance) = plan.credit_balance {
        let applied = apply_credit(total, balance)?.applied;
        let amount = currency.round(-applied, Rounding::HalfAwayFromZero);
        lines.push(Line {
            key: Cow::Borrowed("credit"),
            name: Cow::Borrowed("Prepaid credit"),
            kind: LineKind::PrepaidCredit,
            product: None,
            meter: None,
            quantity: None,
            unit: None,
            exact_amount: -applied,
            amount,
            tiers: None,
            note: Some(format!("paid from a credit balance of {balance}")),
        });
    }
    let credit_applied = stage_sum(&lines[discounted..], Stage::Credit)?;
    let amount_due = exact::add(total, credit_applied, "amount due")?;
    let commitment = match plan.terms {
        Some(terms) => Some(CommitmentSummary {
            effective_total: currency.round(
                exact::mul(subtotal, terms.net_factor(), "effective total")?,
                Rounding::HalfAwayFromZero,
            ),
            credit_lasts_months: (subtotal > Decimal::ZERO)
                .then(|| {
                    let tenths = exact::div_floor(
                        exact::mul(terms.yearly_credit, Decimal::TEN, "credit duration")?,
                        subtotal,
                        "credit duration",
                    )?;
                    Ok::<_, Error>(money::shift_decimal_point(tenths, -1)?.normalize())
                })
                .transpose()?,
            yearly_credit: terms.yearly_credit,
            discount_rate: terms.discount,
            price: terms.price,
            monthly_release: terms.monthly_release,
            list_total: subtotal,
        }),
        None => None,
    };
    let pad = |d: Decimal| round_to(d, currency.exponent(), Rounding::HalfAwayFromZero);
    Ok(Bill {
        currency,
        price_book_version: book.version().map(str::to_owned),
        period: request.period,
        lines,
        subtotal: pad(subtotal),
        discount: pad(discount),
        total: pad(total),
        credit_applied: pad(credit_applied),
        amount_due: pad(amount_due),
        commitment,
        spend_limits,
    })
}

/// Applies a product's spend limit to its group of lines (product and add-ons, already priced and rounded at the
/// offered usage): the `spend_limit` line when the cap binds, and the limit's summary.
///
/// The cap is a maximum on money (pricing-semantics §4): the group's net amount (its rounded lines after the
/// commitment discount) becomes `min(net, cap)`. In list terms the group is billed
/// `min(G, ⌊cap / (1 − discount)⌋)`, where `G` is the sum of its rounded lines and `⌊⌋` rounds down to the minor
/// unit, so the net never exceeds the cap and falls short of it by less than one minor unit. The line is the
/// difference, never positive, and at the minor unit (its exact amount is its amount). Which usage the cap pays
/// for (billable and dropped per meter) is information, from [`billable_usage`]; it never changes the money.
#[allow(clippy::too_many_arguments)]
fn limit_group<'book>(
    book: &'book PriceBook,
    product: &'book Product,
    limit: SpendLimit,
    net_factor: Decimal,
    group_lines: &[Line<'book>],
    group: &[(&ChargeModel, usize)],
    meters: &[usize],
    offered: &[Quantity],
) -> Result<(Option<Line<'book>>, LimitSummary)> {
    let currency = book.currency();
    let key: &'book str = &product.metered.key;
    let rounded_group = exact::sum(group_lines.iter().map(|l| l.amount), "spend limit")?;
    let binds = exact::mul(rounded_group, net_factor, "spend limit")? > limit.amount();
    let (billed, line, billable) = if binds {
        let billed = cap_in_list_terms(limit, net_factor, currency)?.min(rounded_group);
        let adjustment = exact::sub(billed, rounded_group, "spend limit")?;
        let line = Line {
            key: Cow::Borrowed(key),
            name: Cow::Owned(format!("{} spend limit", product.metered.name)),
            kind: LineKind::SpendLimit,
            product: Some(Cow::Borrowed(key)),
            meter: None,
            quantity: None,
            unit: None,
            exact_amount: adjustment,
            amount: adjustment,
            tiers: None,
            note: Some(format!(
                "limit {} {}: usage past it is dropped, not billed",
                limit.amount(),
                currency
            )),
        };
        (billed, Some(line), billable_usage(group, offered, net_factor, limit)?.billable)
    } else {
        (rounded_group, None, offered.to_vec())
    };
    let net_exact = exact::mul(billed, net_factor, "spend limit")?;
    let summary = LimitSummary {
        product: key.to_string(),
        limit: limit.amount(),
        list_amount: billed,
        net_exact_amount: net_exact,
        reached: binds,
        alerts: thresholds_reached(
            &book.spend_limits().alert_thresholds,
            limit,
            LimitState { net_amount: net_exact, dropping: binds },
        ),
        meters: meters
            .iter()
            .zip(offered.iter().zip(&billable))
            .map(|(meter, (o, b))| {
                Ok(MeterAdmission {
                    meter: book.meters()[*meter].to_string(),
                    offered: *o,
                    billable: *b,
                    dropped: Quantity::new(exact::sub(o.value(), b.value(), "dropped usage")?)
                        .map_err(|_| Error::Overflow { context: "dropped usage" })?,
                })
            })
            .collect::<Result<_>>()?,
    };
    Ok((line, summary))
}

/// The most list amount a cap pays for: `cap / (1 − discount)` rounded **down** to the minor unit, so that its net
/// never exceeds the cap. Exact: an integer division of scaled decimals.
fn cap_in_list_terms(limit: SpendLimit, net_factor: Decimal, currency: Currency) -> Result<Decimal> {
    let minor = money::shift_decimal_point(limit.amount(), i32::try_from(currency.exponent()).unwrap_or(0))?;
    let units = exact::div_floor(minor, net_factor, "spend limit")?;
    money::shift_decimal_point(units, -i32::try_from(currency.exponent()).unwrap_or(0))
        .map(|d| round_to(d, currency.exponent(), Rounding::Down))
}

/// The summary of a limit on a product that has no usage in the request: nothing billed, nothing dropped.
fn unused_limit(book: &PriceBook, product: &str, limit: SpendLimit) -> LimitSummary {
    LimitSummary {
        product: product.to_owned(),
        limit: limit.amount(),
        list_amount: round_to(Decimal::ZERO, book.currency().exponent(), Rounding::HalfAwayFromZero),
        net_exact_amount: Decimal::ZERO,
        reached: false,
        alerts: Vec::new(),
        meters: Vec::new(),
    }
}

fn stage_sum(lines: &[Line<'_>], stage: Stage) -> Result<Decimal> {
    exact::sum(lines.iter().filter(|l| l.kind.stage() == stage).map(|l| l.amount), "subtotal")
}

fn request_issue(path: &str, message: String) -> Error {
    Error::InvalidRequest(vec![Issue::new(path, message)])
}

/// Prices one usage line and pushes it (built in place: a line is a few hundred bytes, not worth moving around).
fn push_usage_line<'book>(
    lines: &mut Vec<Line<'book>>,
    currency: Currency,
    product: &'book str,
    m: &'book Metered,
    kind: LineKind,
    q: Quantity,
) -> Result<()> {
    let breakdown = m.charge.price(q, currency)?;
    let amount = Amount::round(currency, breakdown.exact);
    lines.push(Line {
        key: Cow::Borrowed(&m.key),
        name: Cow::Borrowed(&m.name),
        kind,
        product: Some(Cow::Borrowed(product)),
        meter: Some(Cow::Borrowed(&m.meter)),
        quantity: Some(q),
        unit: Some(Cow::Borrowed(&m.unit)),
        exact_amount: amount.exact,
        amount: amount.rounded,
        tiers: Some(breakdown.slices),
        note: None,
    });
    Ok(())
}

/// The add-ons a request may choose, for a message: at most ten named, the rest counted.
fn choices_of(book: &PriceBook) -> String {
    let all: Vec<&str> = book
        .products()
        .iter()
        .flat_map(|p| &p.addons)
        .filter(|a| a.optional)
        .map(|a| &*a.metered.key)
        .chain(book.platform_addons().iter().map(|a| &*a.key))
        .collect();
    match all.len() {
        0 => "this price book has none".to_owned(),
        n if n <= 10 => all.join(", "),
        n => format!("{}, … and {} more", all[..10].join(", "), n - 10),
    }
}

/// Checks a request against a price book, recording every problem in `report` (what [`compute`] would refuse).
pub(crate) fn check(book: &PriceBook, request: &QuoteRequest, report: &mut Report) {
    resolve(book, request, report);
}

/// Resolves a request against the book, recording every problem in `issues` (the plan is complete only when none
/// was recorded).
fn resolve<'b>(book: &'b PriceBook, request: &QuoteRequest, issues: &mut Report) -> Plan<'b> {
    // Both the request's meters and the book's are sorted: one merge pass checks them all.
    let mut usage = vec![None; book.meters().len()];
    let mut known = book.meters().iter().enumerate().peekable();
    for (meter, quantity) in &request.usage {
        while known.next_if(|(_, m)| &***m < meter.as_str()).is_some() {}
        match known.peek() {
            Some((i, m)) if &***m == meter.as_str() => usage[*i] = Some(*quantity),
            _ => issues.push(
                format!("usage.{}", echo(meter)),
                format!("no product or add-on is metered by `{}`", echo(meter)),
            ),
        }
    }
    let mut plan = Plan {
        usage,
        optional: Vec::new(),
        platform: Vec::new(),
        limits: BTreeMap::new(),
        terms: None,
        credit_balance: None,
    };
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut choices: Option<String> = None;
    for (i, choice) in request.addons.iter().enumerate() {
        let path = format!("addons[{i}]");
        let key = choice.key();
        if !seen.insert(key) {
            issues.push(&path, format!("`{}` is chosen twice", echo(key)));
            continue;
        }
        match (book.addon(key), book.platform_addon(key)) {
            (Some(a), _) if !a.optional => issues.push(
                &path,
                format!(
                    "`{key}` is not optional: it is billed with its product whenever that product is used"
                ),
            ),
            (Some(a), _) => {
                if choice.from().is_some() || choice.until().is_some() {
                    issues.push(&path, "only platform add-ons are prorated; metered add-ons bill usage");
                }
                plan.optional.push(&*a.metered.key);
            }
            (None, Some(p)) => {
                if let Some(from) = choice.from() {
                    match request.period {
                        None => issues.push(format!("{path}.from"), "needs the request's `period`"),
                        Some(period) if !period.contains(from) => issues.push(
                            format!("{path}.from"),
                            format!("{from} is outside the period [{}, {})", period.start(), period.end()),
                        ),
                        Some(_) => {}
                    }
                }
                if let Some(until) = choice.until() {
                    // Removed during the period: after its start, at its end at the latest.
                    match request.period {
                        None => issues.push(format!("{path}.until"), "needs the request's `period`"),
                        Some(period) if until <= period.start() || until > period.end() => issues.push(
                            format!("{path}.until"),
                            format!("{until} is outside the period ({}, {}]", period.start(), period.end()),
                        ),
                        Some(_) if choice.from().is_some_and(|from| until <= from) => {
                            issues.push(format!("{path}.until"), "must be after `from`");
                        }
                        Some(_) => {}
                    }
                }
                plan.platform.push((p, choice.from(), choice.until()));
            }
            (None, None) => issues.push(
                &path,
                format!(
                    "unknown add-on `{}` (choose from: {})",
                    echo(key),
                    choices.get_or_insert_with(|| choices_of(book))
                ),
            ),
        }
    }
    // Platform add-ons are billed in book order, whatever the order of the request.
    plan.platform.sort_by_key(|(p, _, _)| book.platform_addon_position(&p.key));
    for (product, amount) in &request.limits {
        let path = format!("limits.{}", echo(product));
        match book.product(product) {
            None => issues.push(&path, format!("no product `{}` in the price book", echo(product))),
            Some(p) => match SpendLimit::new(amount.0, book.spend_limits()) {
                Ok(limit) => {
                    plan.limits.insert(&*p.metered.key, limit);
                }
                Err(m) => issues.push(&path, m),
            },
        }
    }
    if let Some(choice) = &request.commitment {
        match book.commitment() {
            None => issues.push("commitment", "this price book offers no commitment"),
            Some(offer) => match CommitmentTerms::select(offer, book.currency(), choice.yearly_credit.0) {
                Ok(terms) => plan.terms = Some(terms),
                Err(m) => issues.push("commitment.yearly_credit", m),
            },
        }
    }
    if let Some(balance) = request.credit_balance {
        let b = balance.0;
        if b.is_sign_negative() && !b.is_zero() {
            issues.push("credit_balance", "must not be negative");
        } else if book.currency().round(b, Rounding::HalfAwayFromZero) != b {
            issues.push("credit_balance", format!("must be whole minor units of {}", book.currency()));
        } else {
            plan.credit_balance = Some(b);
        }
    }
    plan
}
