//! What is priced: usage and the customer's choices, as they arrive (a pricing-page state, a CLI request file, or
//! a closed period's measured usage in the service).
//!
//! A request is read in two stages, and every problem of both is reported at once: the text itself (JSON, field
//! names and types, the decimal grammar, quantities' bounds, duplicate keys), then the request against a price book
//! (unknown meters, add-ons and products, limits outside the book's rules, a credit below the minimum). The first
//! stage never stops at a problem: it reads on and keeps what is valid, so the second stage can check the rest.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::catalog::PriceBook;
use crate::error::{clip_quoted, echo, Error, Report, Result};
use crate::period::BillingPeriod;
use crate::quantity::Quantity;
use crate::wire::{too_large, Json, Num};

/// A request to price usage against a price book.
///
/// JSON shape (every field but `usage` optional):
/// `{"usage": {"events": 2000000}, "addons": ["group_analytics", "boost"], "limits": {"product_analytics": "200"},
///   "commitment": {"yearly_credit": "25000"}, "credit_balance": "500", "period": {"start": …, "end": …}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QuoteRequest {
    /// Quantity per meter for the period.
    pub usage: BTreeMap<String, Quantity>,
    /// Chosen optional add-ons and platform add-ons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addons: Vec<AddonChoice>,
    /// Spend limit per product key, in whole currency units.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Num>,
    /// A self-selected commitment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<CommitmentChoice>,
    /// Prepaid credit available to pay this bill. When given, the bill is settled as an invoice: priced at list and
    /// paid from credit (the commitment discount was already realized in the credit's price). When absent, a
    /// commitment shows as a discount line: what the month effectively costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_balance: Option<Num>,
    /// The billing period; needed only to prorate add-ons that start mid-period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<BillingPeriod>,
}

/// An add-on choice: its key, or its key and the part of the period it was on (a platform add-on is prorated to
/// it): added at `from`, removed at `until`, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AddonChoice {
    /// Chosen for the whole period.
    Key(String),
    /// Chosen for part of the period.
    Part {
        /// The add-on key.
        key: String,
        /// When it was added, if during the period.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<DateTime<Utc>>,
        /// When it was removed, if during the period.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<DateTime<Utc>>,
    },
}

impl AddonChoice {
    /// The add-on key.
    pub fn key(&self) -> &str {
        match self {
            AddonChoice::Key(key) | AddonChoice::Part { key, .. } => key,
        }
    }

    /// When it was added, if mid-period.
    pub fn from(&self) -> Option<DateTime<Utc>> {
        match self {
            AddonChoice::Key(_) => None,
            AddonChoice::Part { from, .. } => *from,
        }
    }

    /// When it was removed, if mid-period.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        match self {
            AddonChoice::Key(_) => None,
            AddonChoice::Part { until, .. } => *until,
        }
    }
}

/// A chosen commitment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CommitmentChoice {
    /// Face value of the yearly prepaid credit.
    pub yearly_credit: Num,
}

impl QuoteRequest {
    /// Parses a request from JSON text, reporting every problem of the text itself.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] listing every field at fault (a wrong type, an unknown or repeated field or key, a
    /// decimal string outside the grammar `digits[.digits]`, a JSON float, a negative or too precise quantity),
    /// or the one JSON syntax error, or a text over [`crate::wire::MAX_INPUT_BYTES`].
    ///
    /// # Examples
    /// ```
    /// use billing_core::QuoteRequest;
    /// let req = QuoteRequest::from_json(r#"{"usage": {"events": 2000000}}"#)?;
    /// assert_eq!(req.usage["events"].to_string(), "2000000");
    /// let err = QuoteRequest::from_json(r#"{"usage": {"events": -1, "rows": "5.", "rows": 5}}"#).unwrap_err();
    /// let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
    /// assert_eq!(paths, ["usage.rows", "usage.events"]);
    /// # Ok::<(), billing_core::Error>(())
    /// ```
    pub fn from_json(text: &str) -> Result<QuoteRequest> {
        let (request, report) = read(text);
        if report.is_empty() {
            Ok(request)
        } else {
            Err(Error::InvalidRequest(report.finish()))
        }
    }

    /// Parses a request and checks it against `book`: the problems of both stages, together.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] listing every problem (those of [`QuoteRequest::from_json`], then those against
    /// the book).
    ///
    /// # Examples
    /// ```
    /// use billing_core::{PriceBook, QuoteRequest};
    /// let book = PriceBook::default_book()?;
    /// let err = QuoteRequest::from_json_for(&book, r#"{"usage": {"events": -1, "nope": 5}}"#).unwrap_err();
    /// assert_eq!(err.issues().len(), 2);
    /// # Ok::<(), billing_core::Error>(())
    /// ```
    pub fn from_json_for(book: &PriceBook, text: &str) -> Result<QuoteRequest> {
        let (request, mut report) = read(text);
        crate::bill::check(book, &request, &mut report);
        if report.is_empty() {
            Ok(request)
        } else {
            Err(Error::InvalidRequest(report.finish()))
        }
    }
}

impl<'de> Deserialize<'de> for QuoteRequest {
    /// The same reading as [`QuoteRequest::from_json`], from any serde source.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let json = Json::deserialize(d)?;
        let mut report = Report::default();
        let request = walk(json, &mut report);
        if report.is_empty() {
            Ok(request)
        } else {
            Err(serde::de::Error::custom(Error::InvalidRequest(report.finish())))
        }
    }
}

/// Reads the text leniently: the valid parts of the request, and every problem found.
fn read(text: &str) -> (QuoteRequest, Report) {
    let mut report = Report::default();
    if let Some(m) = too_large("request", text.len()) {
        report.push("", m);
        return (QuoteRequest::default(), report);
    }
    match serde_json::from_str::<Json>(text) {
        Ok(json) => {
            let request = walk(json, &mut report);
            (request, report)
        }
        Err(e) => {
            report.push("", clip_quoted(&e.to_string()));
            (QuoteRequest::default(), report)
        }
    }
}

const FIELDS: &str = "`usage`, `addons`, `limits`, `commitment`, `credit_balance`, `period`";

/// The request in `json`, keeping every valid part and reporting every problem.
fn walk(json: Json, report: &mut Report) -> QuoteRequest {
    let mut request = QuoteRequest::default();
    let Some(fields) = object(json, "", report) else {
        return request;
    };
    let mut has_usage = false;
    for (name, value) in unique(fields, "", report) {
        match name.as_str() {
            "usage" => {
                has_usage = true;
                request.usage = map(value, "usage", report, quantity);
            }
            "addons" => request.addons = addons(value, report),
            "limits" => request.limits = map(value, "limits", report, |v| v.decimal().map(Num)),
            "commitment" => {
                if let Some(fields) = object(value, "commitment", report) {
                    let mut credit = None;
                    for (name, value) in unique(fields, "commitment", report) {
                        match name.as_str() {
                            "yearly_credit" => {
                                credit = field(&value, "commitment.yearly_credit", report, decimal);
                            }
                            other => unknown(report, "commitment", other, "`yearly_credit`"),
                        }
                    }
                    match credit {
                        Some(yearly_credit) => request.commitment = Some(CommitmentChoice { yearly_credit }),
                        None if !report.has_issue_at("commitment.yearly_credit") => {
                            report.push("commitment.yearly_credit", "is required");
                        }
                        None => {}
                    }
                }
            }
            "credit_balance" => request.credit_balance = field(&value, "credit_balance", report, decimal),
            "period" => request.period = period(value, report),
            other => unknown(report, "", other, FIELDS),
        }
    }
    if !has_usage {
        report.push("usage", "is required: the quantity per meter, e.g. {\"events\": 2000000}");
    }
    request
}

fn decimal(value: &Json) -> std::result::Result<Num, String> {
    value.decimal().map(Num)
}

fn quantity(value: &Json) -> std::result::Result<Quantity, String> {
    Quantity::new(value.decimal()?)
}

fn join(parent: &str, name: &str) -> String {
    let name = echo(name);
    if parent.is_empty() {
        name.into_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// The entries of an object, or a problem when `json` is not one.
fn object(json: Json, path: &str, report: &mut Report) -> Option<Vec<(String, Json)>> {
    match json {
        Json::Obj(entries) => Some(entries),
        other => {
            report.push(path, format!("expected an object, found {}", other.kind()));
            None
        }
    }
}

/// The entries of an object without repeated keys: a key given twice is a problem at its path, and neither of its
/// values is used (which one the sender meant is unknown).
fn unique(entries: Vec<(String, Json)>, path: &str, report: &mut Report) -> Vec<(String, Json)> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, _) in &entries {
        *count.entry(key.as_str()).or_default() += 1;
    }
    let repeated: BTreeSet<String> =
        count.into_iter().filter(|(_, n)| *n > 1).map(|(k, _)| k.to_owned()).collect();
    for key in &repeated {
        report.push(join(path, key), "is given more than once: give each key once");
    }
    entries.into_iter().filter(|(k, _)| !repeated.contains(k)).collect()
}

fn unknown(report: &mut Report, parent: &str, name: &str, expected: &str) {
    report.push(join(parent, name), format!("unknown field, expected one of {expected}"));
}

fn field<T>(
    value: &Json,
    path: &str,
    report: &mut Report,
    read: impl Fn(&Json) -> std::result::Result<T, String>,
) -> Option<T> {
    read(value).map_err(|m| report.push(path, m)).ok()
}

/// An object of `key → T` (usage, limits), keeping its valid entries.
fn map<T>(
    value: Json,
    path: &str,
    report: &mut Report,
    read: impl Fn(&Json) -> std::result::Result<T, String>,
) -> BTreeMap<String, T> {
    let Some(entries) = object(value, path, report) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (key, value) in unique(entries, path, report) {
        let at = join(path, &key);
        if let Some(v) = field(&value, &at, report, &read) {
            out.insert(key, v);
        }
    }
    out
}

fn instant(value: &Json) -> std::result::Result<DateTime<Utc>, String> {
    match value {
        Json::Str(s) => s.parse::<DateTime<Utc>>().map_err(|_| {
            format!("`{}` is not an RFC 3339 instant such as \"2026-11-01T00:00:00Z\"", echo(s))
        }),
        other => Err(format!("expected an RFC 3339 instant as a string, found {}", other.kind())),
    }
}

fn addons(value: Json, report: &mut Report) -> Vec<AddonChoice> {
    let items = match value {
        Json::Arr(items) => items,
        other => {
            report.push("addons", format!("expected an array of add-on keys, found {}", other.kind()));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("addons[{i}]");
        match item {
            Json::Str(key) => out.push(AddonChoice::Key(key)),
            Json::Obj(entries) => {
                let (mut key, mut from, mut until) = (None, None, None);
                for (name, value) in unique(entries, &path, report) {
                    match name.as_str() {
                        "key" => match value {
                            Json::Str(k) => key = Some(k),
                            other => report.push(
                                format!("{path}.key"),
                                format!("expected an add-on key, found {}", other.kind()),
                            ),
                        },
                        "from" => from = field(&value, &format!("{path}.from"), report, instant),
                        "until" => until = field(&value, &format!("{path}.until"), report, instant),
                        other => unknown(report, &path, other, "`key`, `from`, `until`"),
                    }
                }
                let unread = report.has_issue_at(&format!("{path}.from"))
                    || report.has_issue_at(&format!("{path}.until"));
                match (key, from, until) {
                    (Some(key), None, None) if !unread => out.push(AddonChoice::Key(key)),
                    (Some(key), from, until) if !unread => out.push(AddonChoice::Part { key, from, until }),
                    (None, _, _) if !report.has_issue_at(&format!("{path}.key")) => {
                        report.push(format!("{path}.key"), "is required");
                    }
                    _ => {}
                }
            }
            other => report.push(
                path,
                format!(
                    "expected an add-on key, or {{\"key\": …, \"from\": <RFC 3339>, \"until\": <RFC 3339>}}, found {}",
                    other.kind()
                ),
            ),
        }
    }
    out
}

fn period(value: Json, report: &mut Report) -> Option<BillingPeriod> {
    let fields = object(value, "period", report)?;
    let (mut start, mut end) = (None, None);
    for (name, value) in unique(fields, "period", report) {
        match name.as_str() {
            "start" => start = field(&value, "period.start", report, instant),
            "end" => end = field(&value, "period.end", report, instant),
            other => unknown(report, "period", other, "`start`, `end`"),
        }
    }
    for (name, v) in [("start", start), ("end", end)] {
        let path = format!("period.{name}");
        if v.is_none() && !report.has_issue_at(&path) {
            report.push(path, "is required");
        }
    }
    match BillingPeriod::new(start?, end?) {
        Ok(p) => Some(p),
        Err(m) => {
            report.push("period", m);
            None
        }
    }
}
