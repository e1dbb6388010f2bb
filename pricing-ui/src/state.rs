//! The page's state and what it costs: the state is the quote request's own words, kept as typed (so a bad value
//! stays in its box with a message beside it), read from and written to the URL's query; the evaluation is
//! billing-core's `QuoteRequest::from_json_for` + `compute` of it — the very same calls as `POST /v1/quotes`.
//!
//! Query parameters: one per meter key (`events=2000000`), `addon=<key>` repeated, `limit.<product>=<amount>`,
//! `commitment=<yearly credit>`. Anything else (a tracking parameter, say) is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use billing_core::{compute, Bill, Error, PriceBook, QuoteRequest};
use serde_json::{json, Map, Value};

/// What a visitor chose, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageState {
    /// Usage per meter key, as typed.
    pub usage: BTreeMap<String, String>,
    /// Chosen optional and platform add-ons.
    pub addons: BTreeSet<String>,
    /// Spend cap per product key, as typed.
    pub limits: BTreeMap<String, String>,
    /// The yearly credit, as typed (empty: no commitment).
    pub commitment: String,
}

/// Where a value of the state lives: the key of its input, its query parameter, and its error message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// A meter's usage.
    Usage(String),
    /// An add-on choice.
    Addon(String),
    /// A product's spend cap.
    Limit(String),
    /// The commitment.
    Commitment,
    /// The request as a whole (an amount too large to compute).
    Request,
}

impl PageState {
    /// Reads the state from a URL query (with or without its `?`). Unknown parameters are ignored; a later value
    /// of a parameter replaces an earlier one (but `addon` repeats).
    pub fn from_query(book: &PriceBook, query: &str) -> PageState {
        let mut state = PageState::default();
        for pair in query.trim_start_matches('?').split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (key, value) = (decode(key), decode(value));
            if key == "addon" {
                if !value.is_empty() {
                    state.addons.insert(value);
                }
            } else if key == "commitment" {
                state.commitment = value;
            } else if let Some(product) = key.strip_prefix("limit.") {
                if book.product(product).is_some() {
                    state.limits.insert(product.to_owned(), value);
                }
            } else if book.has_meter(&key) {
                state.usage.insert(key, value);
            }
        }
        state
    }

    /// The query that reproduces this state (meters, then `addon`s, then caps, then the commitment; empty values
    /// left out).
    pub fn to_query(&self) -> String {
        let mut out = String::new();
        let mut push = |key: &str, value: &str| {
            if !value.trim().is_empty() {
                if !out.is_empty() {
                    out.push('&');
                }
                let _ = write!(out, "{}={}", encode(key), encode(value.trim()));
            }
        };
        for (meter, value) in &self.usage {
            push(meter, value);
        }
        for addon in &self.addons {
            push("addon", addon);
        }
        for (product, value) in &self.limits {
            push(&format!("limit.{product}"), value);
        }
        push("commitment", &self.commitment);
        out
    }

    /// The quote request's JSON for this state, leaving out the fields in `skip` (those found invalid).
    pub fn request_json(&self, skip: &BTreeSet<Field>) -> Value {
        let mut usage = Map::new();
        for (meter, raw) in &self.usage {
            let value = clean_number(raw);
            if !value.is_empty() && !skip.contains(&Field::Usage(meter.clone())) {
                usage.insert(meter.clone(), Value::String(value));
            }
        }
        let mut request = json!({ "usage": usage });
        let addons: Vec<Value> = self
            .addons
            .iter()
            .filter(|a| !skip.contains(&Field::Addon((*a).clone())))
            .map(|a| Value::String(a.clone()))
            .collect();
        if !addons.is_empty() {
            request["addons"] = Value::Array(addons);
        }
        let mut limits = Map::new();
        for (product, raw) in &self.limits {
            let value = clean_number(raw);
            if !value.is_empty() && !skip.contains(&Field::Limit(product.clone())) {
                limits.insert(product.clone(), Value::String(value));
            }
        }
        if !limits.is_empty() {
            request["limits"] = Value::Object(limits);
        }
        let credit = clean_number(&self.commitment);
        if !credit.is_empty() && !skip.contains(&Field::Commitment) {
            request["commitment"] = json!({ "yearly_credit": credit });
        }
        request
    }

    /// Which field a problem reported at `path` (billing-core's JSON path in the request) belongs to.
    fn field_of(&self, path: &str, request: &Value) -> Field {
        if let Some(meter) = path.strip_prefix("usage.") {
            return Field::Usage(meter.to_owned());
        }
        if let Some(product) = path.strip_prefix("limits.") {
            return Field::Limit(product.to_owned());
        }
        if path.starts_with("commitment") {
            return Field::Commitment;
        }
        if let Some(index) = path.strip_prefix("addons[").and_then(|r| r.strip_suffix(']')) {
            if let Some(key) = index.parse::<usize>().ok().and_then(|i| request["addons"][i].as_str()) {
                return Field::Addon(key.to_owned());
            }
        }
        Field::Request
    }
}

/// What the state costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The request priced (the state without its invalid fields).
    pub request: Value,
    /// The bill: exactly what `POST /v1/quotes` answers for `request`; `None` only when nothing can be computed.
    pub bill: Option<Bill<'static>>,
    /// A message per invalid field; the estimate leaves those fields out.
    pub errors: BTreeMap<Field, String>,
}

impl Evaluation {
    /// The message for a field, if it is invalid.
    pub fn error(&self, field: &Field) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }
}

/// Prices the state against `book`: the request is read and checked by billing-core exactly as the API reads it;
/// a field it refuses gets its message and is left out, and the rest is priced.
pub fn evaluate(book: &PriceBook, state: &PageState) -> Evaluation {
    let mut errors = BTreeMap::new();
    let mut skip = BTreeSet::new();
    // Each round leaves out the fields of the previous one's problems; a field is never refused twice. An error
    // lists at most `MAX_ISSUES` problems (then "… and N more"), so a query with more bad fields than that takes
    // a few rounds; the bound keeps a hostile query's cost in check.
    for _ in 0..ROUNDS {
        let request = state.request_json(&skip);
        let outcome = QuoteRequest::from_json_for(book, &request.to_string())
            .and_then(|r| compute(book, &r).map(Bill::into_owned));
        match outcome {
            Ok(bill) => return Evaluation { request, bill: Some(bill), errors },
            Err(Error::InvalidRequest(issues)) => {
                let before = skip.len();
                for issue in issues {
                    if issue.path.is_empty() && issue.message.starts_with('…') {
                        continue; // "… and N more": the next round lists them
                    }
                    let field = state.field_of(&issue.path, &request);
                    errors.entry(field.clone()).or_insert_with(|| issue.message.clone());
                    skip.insert(field);
                }
                if skip.len() == before || skip.contains(&Field::Request) {
                    return Evaluation { request, bill: None, errors };
                }
            }
            Err(e @ Error::Overflow { .. }) | Err(e @ Error::InvalidPriceBook(_)) => {
                errors.insert(Field::Request, format!("{e}: lower some usage"));
                return Evaluation { request, bill: None, errors };
            }
        }
    }
    errors.insert(Field::Request, "too many invalid parameters".to_owned());
    Evaluation { request: state.request_json(&skip), bill: None, errors }
}

/// The most rounds of leaving out refused fields (each refuses up to 50).
const ROUNDS: usize = 8;

/// Whether a field has an input of its own on the page (its message shows beside it); the others' messages show
/// in the page's general message.
pub fn has_input(book: &PriceBook, field: &Field) -> bool {
    match field {
        Field::Usage(meter) => book.has_meter(meter),
        Field::Addon(key) => {
            book.platform_addon(key).is_some() || book.addon(key).is_some_and(|a| a.optional)
        }
        Field::Limit(product) => book.product(product).is_some(),
        Field::Commitment => book.commitment().is_some(),
        Field::Request => false,
    }
}

/// A number as typed, without the separators people type (`2,000,000`, `2 000 000`, `2_000_000`).
pub fn clean_number(raw: &str) -> String {
    raw.chars().filter(|c| !matches!(c, ',' | '_' | ' ' | '\u{a0}' | '\u{202f}')).collect()
}

/// Percent-decodes a query component (`+` is a space).
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Percent-encodes a query component: letters, digits and `-._~` stay as they are.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
