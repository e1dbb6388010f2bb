//! What is sold: the price book, parsed from JSON and validated once.
//!
//! The wire format (documented in the README) is read into private `Wire*` structs that reject unknown fields,
//! then validated into [`PriceBook`], collecting *every* problem with its JSON path. After that, the rest of the
//! crate works only with validated types. A price book serializes back to the same wire format, in canonical form
//! (amounts in major units, tiers explicit), and parses back to an equal book.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};

use crate::charge::{ChargeModel, Package, PackageRounding, Tier, TierSchedule};
use crate::error::{clip_path, clip_quoted, echo, Error, Issue, Report, Result};
use crate::money::Currency;
use crate::quantity::Quantity;
use crate::wire::{BookNum, Num, UpTo};

/// The price book tally ships with: the public price list of a product-analytics platform (14 metered products,
/// 6 metered add-ons, 3 flat platform add-ons, commitment brackets, spend-limit rules).
pub const DEFAULT_PRICE_BOOK_JSON: &str = include_str!("../price-books/default.json");

/// A validated, versioned price list in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceBook {
    currency: Currency,
    version: Option<String>,
    effective_from: Option<DateTime<Utc>>,
    description: Option<String>,
    products: Vec<Product>,
    platform_addons: Vec<PlatformAddon>,
    commitment: Option<CommitmentOffer>,
    spend_limits: SpendLimitRules,
    /// Every meter some product or add-on is priced on, sorted and without duplicates (derived).
    meters: Vec<Arc<str>>,
    /// Every key of the book (unique across it), sorted, with what it names (derived): a lookup by key is a
    /// binary search, whatever the size of the book.
    keys: Vec<(Arc<str>, Named)>,
}

/// What a key of the book names: a product, an add-on of a product, or a platform add-on (by position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Named {
    Product(usize),
    Addon(usize, usize),
    Platform(usize),
}

/// A metered product and the add-ons billed beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// What is metered and how it is priced.
    pub metered: Metered,
    /// Add-ons charged on their own meters, in book order.
    pub addons: Vec<Addon>,
}

/// An add-on of a product, billed on its own meter in addition to the product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addon {
    /// What is metered and how it is priced.
    pub metered: Metered,
    /// Optional add-ons are billed only when chosen; the others whenever their product is.
    pub optional: bool,
}

/// The common part of products and add-ons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metered {
    /// Stable identifier (`product_analytics`).
    pub key: Arc<str>,
    /// Display name.
    pub name: Arc<str>,
    /// Singular unit name (`event`).
    pub unit: Arc<str>,
    /// The meter whose quantity is priced (`events`).
    pub meter: Arc<str>,
    /// Free text.
    pub description: Option<String>,
    /// How a quantity is priced.
    pub charge: ChargeModel,
    /// Position of `meter` in [`PriceBook::meters`] (set when the book is validated), so pricing finds a meter's
    /// usage by index instead of by name.
    meter_index: usize,
}

impl Metered {
    /// Position of this charge's meter in [`PriceBook::meters`].
    pub fn meter_index(&self) -> usize {
        self.meter_index
    }
}

/// A flat monthly add-on of the whole platform, prorated by the second when added mid-period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformAddon {
    /// Stable identifier (`boost`).
    pub key: Arc<str>,
    /// Display name.
    pub name: Arc<str>,
    /// Free text.
    pub description: Option<String>,
    /// Price of a whole period.
    pub monthly_price: Decimal,
}

/// The self-selected commitment on offer: a yearly prepaid credit whose size picks a discount bracket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentOffer {
    /// The smallest yearly credit accepted.
    pub minimum_credit: Decimal,
    /// Brackets by credit, strictly increasing.
    pub brackets: Vec<Bracket>,
    /// Months over which the credit is released (and after which it expires).
    pub term_months: u32,
}

/// One commitment bracket: a credit of at least `credit_from` earns `discount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bracket {
    /// Smallest credit of the bracket.
    pub credit_from: Decimal,
    /// Discount rate, `0 ≤ discount < 1`.
    pub discount: Decimal,
}

/// What a customer may set as a per-product spend limit, and when they are warned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendLimitRules {
    /// Smallest limit, whole currency units.
    pub min: Decimal,
    /// Largest limit, whole currency units; `None` for no maximum.
    pub max: Option<Decimal>,
    /// Shares of the limit at which alerts are sent, strictly increasing, in `(0, 1]`.
    pub alert_thresholds: Vec<Decimal>,
}

impl Default for SpendLimitRules {
    fn default() -> Self {
        SpendLimitRules {
            min: Decimal::ZERO,
            max: None,
            alert_thresholds: vec![Decimal::new(8, 1), Decimal::ONE],
        }
    }
}

impl PriceBook {
    /// Parses and validates a price book from JSON text.
    ///
    /// # Errors
    /// [`Error::InvalidPriceBook`] with every problem found, each with its JSON path. A document that is not JSON
    /// of the right shape (a syntax error, a wrong type, an unknown or repeated field) yields one issue, at the
    /// first such problem; a text over [`crate::wire::MAX_INPUT_BYTES`] is refused unparsed.
    ///
    /// # Examples
    /// ```
    /// use billing_core::PriceBook;
    /// let book = PriceBook::from_json(r#"{"currency": "EUR", "products": [
    ///     {"key": "api", "name": "API", "unit": "request", "meter": "requests", "unit_amount": "0.001"}]}"#)?;
    /// assert_eq!(book.products().len(), 1);
    /// assert!(PriceBook::from_json(r#"{"currency": "EUR", "products": [], "colour": "red"}"#).is_err());
    /// # Ok::<(), billing_core::Error>(())
    /// ```
    pub fn from_json(text: &str) -> Result<PriceBook> {
        if let Some(m) = crate::wire::too_large("price book", text.len()) {
            return Err(Error::InvalidPriceBook(vec![Issue::new("", m)]));
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let wire: WireBook = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            Error::InvalidPriceBook(vec![Issue::new(
                clip_path(e.path().to_string().trim_start_matches('.')),
                clip_quoted(&e.inner().to_string()),
            )])
        })?;
        wire.validate().map_err(Error::InvalidPriceBook)
    }

    /// The price book tally ships with ([`DEFAULT_PRICE_BOOK_JSON`]).
    ///
    /// # Errors
    /// Never in practice: a test guards that the shipped book is valid.
    pub fn default_book() -> Result<PriceBook> {
        PriceBook::from_json(DEFAULT_PRICE_BOOK_JSON)
    }

    /// The currency of every amount in the book.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The version label, if any.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// When this version takes effect; an invoice uses the version in force at the start of its period.
    pub fn effective_from(&self) -> Option<DateTime<Utc>> {
        self.effective_from
    }

    /// Metered products, in book order.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// Flat platform add-ons.
    pub fn platform_addons(&self) -> &[PlatformAddon] {
        &self.platform_addons
    }

    /// The commitment on offer, if any.
    pub fn commitment(&self) -> Option<&CommitmentOffer> {
        self.commitment.as_ref()
    }

    /// Spend-limit rules.
    pub fn spend_limits(&self) -> &SpendLimitRules {
        &self.spend_limits
    }

    /// A product by key.
    pub fn product(&self, key: &str) -> Option<&Product> {
        match self.named(key)? {
            Named::Product(i) => self.products.get(i),
            _ => None,
        }
    }

    /// An add-on of some product, by key.
    pub fn addon(&self, key: &str) -> Option<&Addon> {
        match self.named(key)? {
            Named::Addon(i, j) => self.products.get(i)?.addons.get(j),
            _ => None,
        }
    }

    /// A platform add-on, by key.
    pub fn platform_addon(&self, key: &str) -> Option<&PlatformAddon> {
        self.platform_addons.get(self.platform_addon_position(key)?)
    }

    /// A platform add-on's position in [`PriceBook::platform_addons`] (the order bills list them in), by key.
    pub fn platform_addon_position(&self, key: &str) -> Option<usize> {
        match self.named(key)? {
            Named::Platform(i) => Some(i),
            _ => None,
        }
    }

    fn named(&self, key: &str) -> Option<Named> {
        let at = self.keys.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(self.keys[at].1)
    }

    /// Whether some product or add-on is metered by `meter`.
    pub fn has_meter(&self, meter: &str) -> bool {
        self.meters.binary_search_by(|m| (**m).cmp(meter)).is_ok()
    }

    /// Every meter of the book, sorted.
    pub fn meters(&self) -> &[Arc<str>] {
        &self.meters
    }

    /// The version of `books` in force at `at`: the latest `effective_from` not after `at` (a book without one is
    /// in force from the beginning of time).
    pub fn in_force_at(books: &[PriceBook], at: DateTime<Utc>) -> Option<&PriceBook> {
        books
            .iter()
            .filter(|b| b.effective_from.is_none_or(|from| from <= at))
            .max_by_key(|b| b.effective_from)
    }
}

impl Product {
    /// The product's own line followed by its add-ons, as `(metered, optional)` pairs.
    pub fn charges(&self) -> impl Iterator<Item = (&Metered, bool)> + '_ {
        std::iter::once((&self.metered, false)).chain(self.addons.iter().map(|a| (&a.metered, a.optional)))
    }
}

impl CommitmentOffer {
    /// The bracket a yearly credit falls in: the last whose `credit_from ≤ credit`.
    pub fn bracket_for(&self, credit: Decimal) -> Option<&Bracket> {
        self.brackets.iter().rev().find(|b| b.credit_from <= credit)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Wire format.

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBook {
    currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    effective_from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    products: Vec<WireCharge>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    platform_addons: Vec<WirePlatformAddon>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commitment: Option<WireCommitment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spend_limits: Option<WireSpendLimits>,
}

/// A product or an add-on (they share fields; `addons` is for products, `optional` for add-ons).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCharge {
    key: String,
    name: String,
    unit: String,
    meter: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tiers_mode: Option<TiersMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tiers: Option<Vec<WireTier>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit_amount: Option<BookNum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit_amount_decimal: Option<BookNum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    package: Option<WirePackage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    optional: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    addons: Option<Vec<WireCharge>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TiersMode {
    Graduated,
    Volume,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTier {
    up_to: UpTo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit_amount: Option<BookNum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit_amount_decimal: Option<BookNum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flat_amount: Option<BookNum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flat_amount_decimal: Option<BookNum>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePackage {
    size: BookNum,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    amount: Option<BookNum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    amount_decimal: Option<BookNum>,
    #[serde(default = "default_round")]
    round: PackageRounding,
}

fn default_round() -> PackageRounding {
    PackageRounding::Up
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePlatformAddon {
    key: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    monthly_price: BookNum,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCommitment {
    minimum_credit: BookNum,
    brackets: Vec<WireBracket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    term_months: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBracket {
    credit_from: BookNum,
    discount: BookNum,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSpendLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<BookNum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<BookNum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alert_thresholds: Option<Vec<BookNum>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(crate::wire::DecimalText::new(self.0.normalize()).as_str())
    }
}

/// A book's numbers are written as they were given, scale included (`0.20` stays `0.20`): bills echo some of them
/// (a bracket's discount, an alert threshold), so a book and its canonical form must price to identical JSON.
impl Serialize for BookNum {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.0 {
            Ok(d) => s.serialize_str(crate::wire::DecimalText::new(*d).as_str()),
            Err(m) => Err(serde::ser::Error::custom(m)),
        }
    }
}

impl Serialize for UpTo {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.0 {
            Err(m) => Err(serde::ser::Error::custom(m)),
            Ok(None) => s.serialize_none(),
            Ok(Some(d)) => match u64::try_from(d.normalize()) {
                Ok(whole) if d.fract().is_zero() => s.serialize_u64(whole),
                _ => s.serialize_str(crate::wire::DecimalText::new(d.normalize()).as_str()),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Validation.

/// Collects a price book's issues (at most [`crate::error::MAX_ISSUES`], then a count).
type Issues = Report;

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' || c == '.')
}

impl WireBook {
    fn validate(self) -> std::result::Result<PriceBook, Vec<Issue>> {
        let mut issues = Report::default();
        let currency = match Currency::from_code(&self.currency) {
            Ok(c) => Some(c),
            Err(m) => {
                issues.push("currency", m);
                None
            }
        };
        // An unknown currency fails the book anyway; USD stands in so the rest can still be checked.
        let book_currency = currency.unwrap_or(Currency::USD);
        if self.products.is_empty() {
            issues.push("products", "must list at least one product");
        }
        let mut keys = Keys::new();
        let mut products = Vec::with_capacity(self.products.len());
        for (i, p) in self.products.into_iter().enumerate() {
            let path = format!("products[{i}]");
            if p.optional.is_some() {
                issues.push(format!("{path}.optional"), "only add-ons can be optional");
            }
            // The product before its add-ons: issues come in document order, and a duplicate key blames the later one.
            let metered = p.to_metered(&path, book_currency, &mut keys, &mut issues);
            let mut addons = Vec::new();
            for (j, a) in p.addons.iter().flatten().enumerate() {
                let apath = format!("{path}.addons[{j}]");
                if a.addons.is_some() {
                    issues.push(format!("{apath}.addons"), "add-ons cannot have add-ons");
                }
                if let Some(metered) = a.to_metered(&apath, book_currency, &mut keys, &mut issues) {
                    addons.push(Addon { metered, optional: a.optional.unwrap_or(false) });
                }
            }
            if let Some(metered) = metered {
                products.push(Product { metered, addons });
            }
        }
        let mut platform_addons = Vec::new();
        for (i, a) in self.platform_addons.into_iter().enumerate() {
            let path = format!("platform_addons[{i}]");
            check_key(&a.key, &path, &mut keys, &mut issues);
            if a.name.trim().is_empty() {
                issues.push(format!("{path}.name"), "must not be empty");
            }
            let price =
                value(&a.monthly_price, &format!("{path}.monthly_price"), &mut issues).unwrap_or_default();
            check_amount(price, &format!("{path}.monthly_price"), &mut issues);
            platform_addons.push(PlatformAddon {
                key: a.key.into(),
                name: a.name.into(),
                description: a.description,
                monthly_price: price,
            });
        }
        let commitment = self.commitment.map(|c| c.validate(&mut issues));
        let spend_limits =
            self.spend_limits.map_or_else(SpendLimitRules::default, |s| s.validate(&mut issues));
        if let Some(v) = &self.version {
            if v.trim().is_empty() {
                issues.push("version", "must not be empty when given");
            }
        }
        match currency {
            Some(currency) if issues.is_empty() => Ok(PriceBook {
                meters: index_meters(&mut products),
                keys: index_keys(&products, &platform_addons),
                currency,
                version: self.version,
                effective_from: self.effective_from,
                description: self.description,
                products,
                platform_addons,
                commitment,
                spend_limits,
            }),
            _ => Err(issues.finish()),
        }
    }
}

/// Every key of the book, sorted, with what it names.
fn index_keys(products: &[Product], platform: &[PlatformAddon]) -> Vec<(Arc<str>, Named)> {
    let mut index = Vec::new();
    for (i, p) in products.iter().enumerate() {
        index.push((p.metered.key.clone(), Named::Product(i)));
        for (j, a) in p.addons.iter().enumerate() {
            index.push((a.metered.key.clone(), Named::Addon(i, j)));
        }
    }
    for (i, a) in platform.iter().enumerate() {
        index.push((a.key.clone(), Named::Platform(i)));
    }
    index.sort();
    index
}

/// The book's meters, sorted and without duplicates; sets each charge's `meter_index` into that list.
fn index_meters(products: &mut [Product]) -> Vec<Arc<str>> {
    let mut meters: Vec<Arc<str>> =
        products.iter().flat_map(Product::charges).map(|(m, _)| m.meter.clone()).collect();
    meters.sort();
    meters.dedup();
    for product in products.iter_mut() {
        let charges =
            std::iter::once(&mut product.metered).chain(product.addons.iter_mut().map(|a| &mut a.metered));
        for m in charges {
            // Every meter is in the list: it was built from these very charges.
            m.meter_index = meters.binary_search(&m.meter).unwrap_or_default();
        }
    }
    meters
}

/// The keys seen so far, each with the path of the entry that took it.
type Keys = std::collections::BTreeMap<String, String>;

fn check_key(key: &str, path: &str, keys: &mut Keys, issues: &mut Issues) {
    if !is_identifier(key) {
        issues.push(
            format!("{path}.key"),
            format!("`{}` must be 1–64 characters of a-z, 0-9, `_`, `-` or `.`", echo(key)),
        );
    } else if let Some(first) = keys.get(key) {
        issues.push(format!("{path}.key"), format!("`{key}` is already used by {first}"));
    } else {
        keys.insert(key.to_owned(), path.to_owned());
    }
}

/// The value of a decimal field, or `None` after reporting why it is not one.
fn value(n: &BookNum, path: &str, issues: &mut Issues) -> Option<Decimal> {
    match &n.0 {
        Ok(d) => Some(*d),
        Err(m) => {
            issues.push(path, m.as_str());
            None
        }
    }
}

fn check_amount(amount: Decimal, path: &str, issues: &mut Issues) {
    if amount.is_sign_negative() && !amount.is_zero() {
        issues.push(path, "must not be negative");
    }
}

/// Exactly one of a major-unit field and its Stripe minor-unit twin (`unit_amount` / `unit_amount_decimal`).
/// Returns the amount in major units, `None` when neither is given.
fn major_or_minor(
    major: Option<&BookNum>,
    minor: Option<&BookNum>,
    names: (&str, &str),
    path: &str,
    exponent: u32,
    issues: &mut Issues,
) -> Option<Decimal> {
    match (major, minor) {
        (Some(_), Some(_)) => {
            issues.push(
                format!("{path}.{}", names.0),
                format!("give either {} or {}, not both", names.0, names.1),
            );
            None
        }
        (Some(m), None) => value(m, &format!("{path}.{}", names.0), issues),
        (None, Some(minor)) => {
            // Minor units (cents) to major units: a shift of the decimal point, exact.
            let mut v = value(minor, &format!("{path}.{}", names.1), issues)?;
            if v.scale() + exponent > 28 {
                issues.push(format!("{path}.{}", names.1), "has too many decimal places");
                return None;
            }
            v.set_scale(v.scale() + exponent).ok()?;
            Some(v)
        }
        (None, None) => None,
    }
}

impl WireCharge {
    fn to_metered(
        &self,
        path: &str,
        currency: Currency,
        keys: &mut Keys,
        issues: &mut Issues,
    ) -> Option<Metered> {
        let before = issues.count();
        check_key(&self.key, path, keys, issues);
        if self.name.trim().is_empty() {
            issues.push(format!("{path}.name"), "must not be empty");
        }
        if self.unit.trim().is_empty() {
            issues.push(format!("{path}.unit"), "must not be empty");
        }
        if !is_identifier(&self.meter) {
            issues.push(
                format!("{path}.meter"),
                format!("`{}` must be 1–64 characters of a-z, 0-9, `_`, `-` or `.`", echo(&self.meter)),
            );
        }
        let charge = self.charge_model(path, currency, issues);
        (issues.count() == before).then_some(()).and(charge).map(|charge| Metered {
            key: self.key.as_str().into(),
            name: self.name.as_str().into(),
            unit: self.unit.as_str().into(),
            meter: self.meter.as_str().into(),
            description: self.description.clone(),
            charge,
            meter_index: 0,
        })
    }

    fn charge_model(&self, path: &str, currency: Currency, issues: &mut Issues) -> Option<ChargeModel> {
        let exponent = currency.exponent();
        let given = [
            self.tiers.is_some(),
            self.unit_amount.is_some() || self.unit_amount_decimal.is_some(),
            self.package.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            issues.push(
                path,
                "must have exactly one price: `tiers`, `unit_amount` (or `unit_amount_decimal`) or `package`",
            );
            return None;
        }
        if self.tiers_mode.is_some() && self.tiers.is_none() {
            issues.push(format!("{path}.tiers_mode"), "only applies with `tiers`");
        }
        if let Some(tiers) = &self.tiers {
            let mut parsed = Vec::with_capacity(tiers.len());
            // A bound that is not a number leaves nothing to check the table's order against.
            let mut unreadable_bound = false;
            for (i, t) in tiers.iter().enumerate() {
                let tpath = format!("{path}.tiers[{i}]");
                let unit = major_or_minor(
                    t.unit_amount.as_ref(),
                    t.unit_amount_decimal.as_ref(),
                    ("unit_amount", "unit_amount_decimal"),
                    &tpath,
                    exponent,
                    issues,
                );
                let flat = major_or_minor(
                    t.flat_amount.as_ref(),
                    t.flat_amount_decimal.as_ref(),
                    ("flat_amount", "flat_amount_decimal"),
                    &tpath,
                    exponent,
                    issues,
                );
                let given = [&t.unit_amount, &t.unit_amount_decimal, &t.flat_amount, &t.flat_amount_decimal];
                if given.iter().all(|f| f.is_none()) {
                    issues.push(&tpath, "must have a unit amount or a flat amount");
                }
                let up_to = match &t.up_to.0 {
                    Ok(up_to) => *up_to,
                    Err(m) => {
                        issues.push(format!("{tpath}.up_to"), m);
                        unreadable_bound = true;
                        None
                    }
                };
                parsed.push(Tier {
                    up_to,
                    unit_amount: unit.unwrap_or(Decimal::ZERO),
                    flat_amount: flat.unwrap_or(Decimal::ZERO),
                });
            }
            if unreadable_bound {
                return None;
            }
            return match TierSchedule::new(parsed) {
                Ok(mut schedule) => {
                    schedule.round_full_slices(currency);
                    Some(match self.tiers_mode.unwrap_or(TiersMode::Graduated) {
                        TiersMode::Graduated => ChargeModel::Graduated(schedule),
                        TiersMode::Volume => ChargeModel::Volume(schedule),
                    })
                }
                Err(found) => {
                    for issue in found {
                        issues.push(format!("{path}.tiers{}", issue.path), issue.message);
                    }
                    None
                }
            };
        }
        if let Some(p) = &self.package {
            let ppath = format!("{path}.package");
            let amount = major_or_minor(
                p.amount.as_ref(),
                p.amount_decimal.as_ref(),
                ("amount", "amount_decimal"),
                &ppath,
                exponent,
                issues,
            );
            let Some(amount) = amount else {
                if p.amount.is_none() && p.amount_decimal.is_none() {
                    issues.push(&ppath, "must have an `amount` (or `amount_decimal`)");
                }
                return None;
            };
            check_amount(amount, &format!("{ppath}.amount"), issues);
            let size = value(&p.size, &format!("{ppath}.size"), issues)?;
            if size <= Decimal::ZERO {
                issues.push(format!("{ppath}.size"), "must be greater than 0");
            } else if let Err(m) = Quantity::new(size) {
                issues.push(format!("{ppath}.size"), m);
            }
            return Some(ChargeModel::Package(Package { size, amount, round: p.round }));
        }
        let unit = major_or_minor(
            self.unit_amount.as_ref(),
            self.unit_amount_decimal.as_ref(),
            ("unit_amount", "unit_amount_decimal"),
            path,
            exponent,
            issues,
        )?;
        check_amount(unit, &format!("{path}.unit_amount"), issues);
        Some(ChargeModel::PerUnit { unit_amount: unit })
    }
}

impl WireCommitment {
    fn validate(self, issues: &mut Issues) -> CommitmentOffer {
        let given = value(&self.minimum_credit, "commitment.minimum_credit", issues);
        let minimum_credit = given.unwrap_or(Decimal::ONE);
        if given.is_some_and(|m| m <= Decimal::ZERO) {
            issues.push("commitment.minimum_credit", "must be greater than 0");
        }
        if self.brackets.is_empty() {
            issues.push("commitment.brackets", "must list at least one bracket");
        }
        let mut brackets = Vec::with_capacity(self.brackets.len());
        for (i, b) in self.brackets.iter().enumerate() {
            let path = format!("commitment.brackets[{i}]");
            let (Some(credit_from), Some(discount)) = (
                value(&b.credit_from, &format!("{path}.credit_from"), issues),
                value(&b.discount, &format!("{path}.discount"), issues),
            ) else {
                continue;
            };
            if discount.is_sign_negative() || discount >= Decimal::ONE {
                issues
                    .push(format!("{path}.discount"), "must be at least 0 and less than 1 (0.10 means 10 %)");
            }
            if let Some(prev) = brackets.last().map(|p: &Bracket| p.credit_from) {
                if credit_from <= prev {
                    issues.push(
                        format!("{path}.credit_from"),
                        format!("must be greater than the previous bracket's credit_from ({prev})"),
                    );
                }
            }
            brackets.push(Bracket { credit_from, discount });
        }
        if let (Some(first), true) = (brackets.first(), minimum_credit > Decimal::ZERO) {
            if minimum_credit < first.credit_from {
                issues.push(
                    "commitment.minimum_credit",
                    format!(
                        "must be at least the first bracket's credit_from ({}): a smaller credit would have no bracket",
                        first.credit_from
                    ),
                );
            }
        }
        let term_months = self.term_months.unwrap_or(12);
        if !(1..=120).contains(&term_months) {
            issues.push("commitment.term_months", "must be between 1 and 120");
        }
        CommitmentOffer { minimum_credit, brackets, term_months }
    }
}

impl WireSpendLimits {
    fn validate(self, issues: &mut Issues) -> SpendLimitRules {
        let defaults = SpendLimitRules::default();
        let min = self
            .min
            .map_or(Some(defaults.min), |n| value(&n, "spend_limits.min", issues))
            .unwrap_or_default();
        let max = self.max.and_then(|n| value(&n, "spend_limits.max", issues));
        if min.is_sign_negative() && !min.is_zero() || !min.fract().is_zero() {
            issues.push("spend_limits.min", "must be a whole, non-negative amount");
        }
        if let Some(max) = max {
            if max < min || !max.fract().is_zero() {
                issues.push("spend_limits.max", "must be a whole amount not below `min`");
            }
        }
        let alert_thresholds = match self.alert_thresholds {
            None => defaults.alert_thresholds,
            Some(given) => {
                let mut thresholds: Vec<Decimal> = Vec::with_capacity(given.len());
                for (i, n) in given.iter().enumerate() {
                    let path = format!("spend_limits.alert_thresholds[{i}]");
                    let Some(t) = value(n, &path, issues) else { continue };
                    if t <= Decimal::ZERO || t > Decimal::ONE {
                        issues.push(path, "must be greater than 0 and at most 1");
                    } else if thresholds.last().is_some_and(|prev| t <= *prev) {
                        issues.push(path, "thresholds must be strictly increasing");
                    }
                    thresholds.push(t);
                }
                thresholds
            }
        };
        SpendLimitRules { min, max, alert_thresholds }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Back to the wire, in canonical form.

impl Serialize for PriceBook {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_wire().serialize(s)
    }
}

impl<'de> Deserialize<'de> for PriceBook {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let wire = WireBook::deserialize(d)?;
        wire.validate().map_err(|issues| serde::de::Error::custom(Error::InvalidPriceBook(issues)))
    }
}

impl PriceBook {
    fn to_wire(&self) -> WireBook {
        WireBook {
            currency: self.currency.code().to_owned(),
            version: self.version.clone(),
            effective_from: self.effective_from,
            description: self.description.clone(),
            products: self
                .products
                .iter()
                .map(|p| WireCharge {
                    addons: (!p.addons.is_empty()).then(|| {
                        p.addons
                            .iter()
                            .map(|a| WireCharge { optional: Some(a.optional), ..a.metered.to_wire() })
                            .collect()
                    }),
                    ..p.metered.to_wire()
                })
                .collect(),
            platform_addons: self
                .platform_addons
                .iter()
                .map(|a| WirePlatformAddon {
                    key: a.key.to_string(),
                    name: a.name.to_string(),
                    description: a.description.clone(),
                    monthly_price: BookNum::ok(a.monthly_price),
                })
                .collect(),
            commitment: self.commitment.as_ref().map(|c| WireCommitment {
                minimum_credit: BookNum::ok(c.minimum_credit),
                brackets: c
                    .brackets
                    .iter()
                    .map(|b| WireBracket {
                        credit_from: BookNum::ok(b.credit_from),
                        discount: BookNum::ok(b.discount),
                    })
                    .collect(),
                term_months: Some(c.term_months),
                description: None,
            }),
            spend_limits: Some(WireSpendLimits {
                min: Some(BookNum::ok(self.spend_limits.min)),
                max: self.spend_limits.max.map(BookNum::ok),
                alert_thresholds: Some(
                    self.spend_limits.alert_thresholds.iter().copied().map(BookNum::ok).collect(),
                ),
                description: None,
            }),
        }
    }
}

impl Metered {
    fn to_wire(&self) -> WireCharge {
        let mut w = WireCharge {
            key: self.key.to_string(),
            name: self.name.to_string(),
            unit: self.unit.to_string(),
            meter: self.meter.to_string(),
            description: self.description.clone(),
            ..WireCharge::default()
        };
        let tiers = |t: &TierSchedule| {
            t.tiers()
                .map(|t| WireTier {
                    up_to: UpTo(Ok(t.up_to)),
                    unit_amount: Some(BookNum::ok(t.unit_amount)),
                    unit_amount_decimal: None,
                    flat_amount: (!t.flat_amount.is_zero()).then_some(BookNum::ok(t.flat_amount)),
                    flat_amount_decimal: None,
                })
                .collect()
        };
        match &self.charge {
            ChargeModel::PerUnit { unit_amount } => w.unit_amount = Some(BookNum::ok(*unit_amount)),
            ChargeModel::Graduated(t) => w.tiers = Some(tiers(t)),
            ChargeModel::Volume(t) => {
                w.tiers_mode = Some(TiersMode::Volume);
                w.tiers = Some(tiers(t));
            }
            ChargeModel::Package(p) => {
                w.package = Some(WirePackage {
                    size: BookNum::ok(p.size),
                    amount: Some(BookNum::ok(p.amount)),
                    amount_decimal: None,
                    round: p.round,
                });
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period::utc_midnight;

    fn book(effective_from: Option<&str>) -> PriceBook {
        let from = effective_from.map(|f| format!(r#""effective_from": "{f}","#)).unwrap_or_default();
        PriceBook::from_json(&format!(
            r#"{{"currency": "USD", {from} "products": [{{"key": "a", "name": "A", "unit": "u", "meter": "m", "unit_amount": "1"}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn keys_are_found_by_what_they_name() {
        let book = PriceBook::default_book().unwrap();
        assert_eq!(book.product("session_replay").map(|p| &*p.metered.meter), Some("recordings"));
        assert!(book.product("group_analytics").is_none(), "an add-on is not a product");
        assert_eq!(book.addon("group_analytics").map(|a| a.optional), Some(true));
        assert!(book.addon("boost").is_none());
        assert_eq!(book.platform_addon_position("boost"), Some(0));
        assert!(book.platform_addon("session_replay").is_none());
        assert!(book.product("zzz").is_none() && book.addon("").is_none());
        for (i, p) in book.products().iter().enumerate() {
            assert!(std::ptr::eq(book.product(&p.metered.key).unwrap(), &book.products()[i]));
        }
    }

    #[test]
    fn the_version_in_force_is_the_latest_that_has_started() {
        let books = [book(None), book(Some("2026-07-01T00:00:00Z")), book(Some("2027-01-01T00:00:00Z"))];
        let at = |y, m, d| {
            PriceBook::in_force_at(&books, utc_midnight(y, m, d).unwrap()).unwrap().effective_from()
        };
        assert_eq!(at(2026, 6, 30), None);
        assert_eq!(at(2026, 7, 1), Some(utc_midnight(2026, 7, 1).unwrap()));
        assert_eq!(at(2026, 12, 31), Some(utc_midnight(2026, 7, 1).unwrap()));
        assert_eq!(at(2027, 1, 1), Some(utc_midnight(2027, 1, 1).unwrap()));
        assert!(PriceBook::in_force_at(&books[1..], utc_midnight(2026, 1, 1).unwrap()).is_none());
    }

    #[test]
    fn every_charge_knows_the_index_of_its_meter() {
        let book = PriceBook::default_book().unwrap();
        for (m, _) in book.products().iter().flat_map(Product::charges) {
            assert_eq!(&*book.meters()[m.meter_index()], &*m.meter);
        }
        assert_eq!(book.meters().len(), 19, "identified_events is shared by two add-ons");
    }
}
