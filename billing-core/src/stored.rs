//! The stored form of a bill: every number of the bill, with the price list's own words left to the price book.
//!
//! An invoice keeps its bill for years, and a bill is mostly description: each usage line repeats its product's
//! name, meter and unit, each tier slice repeats its tier's bounds and prices, and a graduated price repeats the
//! very same whole-tier slices on every bill that passes those tiers. All of that is the price book's, and the
//! price-book version an invoice names never changes. So the stored form keeps every number the bill computed
//! (quantities, units per slice, exact and rounded amounts, sums, the commitment and spend-limit summaries) and
//! leaves out only what is *identical* to the book — as Stripe's invoice line items point at their `price` instead
//! of copying it. On the example book it is a fifth of the bill's JSON for usage alone (4,421 → 909 bytes), about a
//! third with a commitment, a cap and prepaid credit (5,555 → 1,896).
//!
//! It is lossless by construction: a field is left out only when the book's value is bit-for-bit the bill's
//! (value and scale), and [`decode`] puts the book's value back; anything else (a line the book does not describe,
//! a slice priced off its tier) is stored whole. `decode(encode(bill))` serializes to the same bytes as `bill`
//! (the property `the_stored_form_reads_back_as_the_same_bill` checks it over random books and requests).
//!
//! # Format, version 1
//!
//! A JSON object: `{"v": 1, "currency", "version", "period", "lines": [...], "sums": [subtotal, discount, total,
//! credit_applied, amount_due], "commitment", "spend_limits"}`; decimals are strings with their scale (`"0.00"`).
//! A line is `[key, kind, quantity, exact_amount, amount, tiers, note]`, followed by `[name, product, meter, unit]`
//! when those differ from the book's for `(key, kind)`. A tier slice is one of: the tier number alone (the book's
//! whole-tier slice), `[tier, units, exact_amount, amount]` (plus `packages` for the package model; bounds and
//! prices from the book's tier), or the slice object as the bill's JSON has it. An object without `v` is a bill's
//! full JSON, as invoices were stored before this form, and reads as it is.

use std::borrow::Cow;
use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::bill::{Bill, CommitmentSummary, LimitSummary, Line, LineKind};
use crate::catalog::PriceBook;
use crate::charge::{ChargeModel, Slice, Slices};
use crate::money::Currency;
use crate::period::BillingPeriod;
use crate::quantity::Quantity;

/// The version [`encode`] writes.
pub const VERSION: u64 = 1;

/// What the book says of a line: `(name, product, meter, unit)` and the charge model pricing it.
type Template<'b> = (&'b str, Option<&'b str>, Option<&'b str>, Option<&'b str>, Option<&'b ChargeModel>);

fn template<'b>(book: &'b PriceBook, key: &str, kind: LineKind) -> Option<Template<'b>> {
    match kind {
        LineKind::Product | LineKind::Addon => book.products().iter().find_map(|p| {
            p.charges().find(|(m, _)| &*m.key == key).map(|(m, _)| {
                (&*m.name, Some(&*p.metered.key), Some(&*m.meter), Some(&*m.unit), Some(&m.charge))
            })
        }),
        LineKind::PlatformAddon => {
            book.platform_addons().iter().find(|a| &*a.key == key).map(|a| (&*a.name, None, None, None, None))
        }
        _ => None,
    }
}

/// Bit-for-bit: the same value *and* scale (and sign), so the JSON of one is the JSON of the other.
fn same(a: Decimal, b: Decimal) -> bool {
    a.serialize() == b.serialize()
}

fn same_opt(a: Option<Decimal>, b: Option<Decimal>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn same_slice(a: &Slice, b: &Slice) -> bool {
    a.tier == b.tier
        && same(a.from, b.from)
        && same_opt(a.up_to, b.up_to)
        && same(a.units, b.units)
        && same(a.unit_amount, b.unit_amount)
        && same(a.flat_amount, b.flat_amount)
        && same_opt(a.packages, b.packages)
        && same(a.exact_amount, b.exact_amount)
        && same(a.amount, b.amount)
}

fn described_by(s: &Slice, terms: Option<(Decimal, Option<Decimal>, Decimal, Decimal)>) -> bool {
    terms.is_some_and(|(from, up_to, unit, flat)| {
        same(s.from, from)
            && same_opt(s.up_to, up_to)
            && same(s.unit_amount, unit)
            && same(s.flat_amount, flat)
    })
}

fn json_str(out: &mut String, s: &str) {
    // Writing JSON into a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn dec(out: &mut String, d: Decimal) {
    out.push('"');
    out.push_str(crate::wire::DecimalText::new(d).as_str());
    out.push('"');
}

fn json_of<T: serde::Serialize>(out: &mut String, value: &T) -> Result<(), String> {
    out.push_str(&serde_json::to_string(value).map_err(|e| e.to_string())?);
    Ok(())
}

/// The stored form of `bill`, priced against `book`.
///
/// # Errors
/// Only if a part of the bill cannot be serialized (never, for a bill `compute` made).
pub fn encode(bill: &Bill<'_>, book: &PriceBook) -> Result<String, String> {
    let mut out = String::with_capacity(1024);
    let _ = write!(out, "{{\"v\":{VERSION},\"currency\":\"{}\",\"version\":", bill.currency.code());
    match &bill.price_book_version {
        Some(v) => json_str(&mut out, v),
        None => out.push_str("null"),
    }
    out.push_str(",\"period\":");
    json_of(&mut out, &bill.period)?;
    out.push_str(",\"lines\":[");
    for (i, line) in bill.lines.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_line(&mut out, line, book)?;
    }
    out.push_str("],\"sums\":[");
    for (i, d) in [bill.subtotal, bill.discount, bill.total, bill.credit_applied, bill.amount_due]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        dec(&mut out, d);
    }
    out.push_str("],\"commitment\":");
    json_of(&mut out, &bill.commitment)?;
    out.push_str(",\"spend_limits\":");
    json_of(&mut out, &bill.spend_limits)?;
    out.push('}');
    Ok(out)
}

fn encode_line(out: &mut String, line: &Line<'_>, book: &PriceBook) -> Result<(), String> {
    let t = template(book, &line.key, line.kind);
    out.push('[');
    json_str(out, &line.key);
    out.push(',');
    json_of(out, &line.kind)?;
    out.push(',');
    match line.quantity {
        Some(q) => dec(out, q.value()),
        None => out.push_str("null"),
    }
    out.push(',');
    dec(out, line.exact_amount);
    out.push(',');
    dec(out, line.amount);
    out.push(',');
    match &line.tiers {
        Some(slices) => {
            out.push('[');
            let model = t.and_then(|t| t.4);
            for (i, s) in slices.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_slice(out, s, model)?;
            }
            out.push(']');
        }
        None => out.push_str("null"),
    }
    out.push(',');
    json_of(out, &line.note)?;
    let labelled = t.is_some_and(|(name, product, meter, unit, _)| {
        *line.name == *name
            && line.product.as_deref() == product
            && line.meter.as_deref() == meter
            && line.unit.as_deref() == unit
    });
    if !labelled {
        out.push(',');
        json_of(out, &(&line.name, &line.product, &line.meter, &line.unit))?;
    }
    out.push(']');
    Ok(())
}

fn encode_slice(out: &mut String, s: &Slice, model: Option<&ChargeModel>) -> Result<(), String> {
    if model.and_then(|m| m.whole_slice(s.tier)).is_some_and(|w| same_slice(w, s)) {
        let _ = write!(out, "{}", s.tier);
    } else if described_by(s, model.and_then(|m| m.tier_terms(s.tier))) {
        let _ = write!(out, "[{},", s.tier);
        dec(out, s.units);
        out.push(',');
        dec(out, s.exact_amount);
        out.push(',');
        dec(out, s.amount);
        if let Some(p) = s.packages {
            out.push(',');
            dec(out, p);
        }
        out.push(']');
    } else {
        json_of(out, s)?;
    }
    Ok(())
}

/// Reads a stored bill back, with the descriptions it left out taken from `book` (the price-book version it
/// names). Also reads a bill's full JSON (the form invoices were stored in before this one).
///
/// # Errors
/// A message saying what is wrong with the text: not this format, or a part the book does not describe.
pub fn decode(text: &str, book: &PriceBook) -> Result<Bill<'static>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("stored bill is not JSON: {e}"))?;
    let Some(fields) = doc.as_object() else { return Err("stored bill is not a JSON object".into()) };
    if !fields.contains_key("v") {
        return serde_json::from_value::<Bill<'static>>(doc).map_err(|e| format!("stored bill: {e}"));
    }
    if fields.get("v").and_then(Value::as_u64) != Some(VERSION) {
        return Err(format!("stored bill of an unknown version {}", fields.get("v").unwrap_or(&Value::Null)));
    }
    let field = |name: &str| fields.get(name).cloned().unwrap_or(Value::Null);
    let currency: Currency =
        serde_json::from_value(field("currency")).map_err(|e| format!("stored bill currency: {e}"))?;
    let version: Option<String> =
        serde_json::from_value(field("version")).map_err(|e| format!("stored bill version: {e}"))?;
    let period: Option<BillingPeriod> =
        serde_json::from_value(field("period")).map_err(|e| format!("stored bill period: {e}"))?;
    let commitment: Option<CommitmentSummary> =
        serde_json::from_value(field("commitment")).map_err(|e| format!("stored bill commitment: {e}"))?;
    let spend_limits: Vec<LimitSummary> = serde_json::from_value(field("spend_limits"))
        .map_err(|e| format!("stored bill spend limits: {e}"))?;
    let lines = match fields.get("lines") {
        Some(Value::Array(lines)) => lines
            .iter()
            .enumerate()
            .map(|(i, l)| decode_line(l, book).map_err(|m| format!("line {i}: {m}")))
            .collect(),
        _ => Err("no lines".to_owned()),
    }
    .map_err(|m| format!("stored bill: {m}"))?;
    let sums: Vec<Decimal> = match fields.get("sums") {
        Some(Value::Array(s)) if s.len() == 5 => s.iter().map(number).collect::<Result<_, _>>(),
        _ => Err("sums are not five amounts".to_owned()),
    }
    .map_err(|m| format!("stored bill: {m}"))?;
    Ok(Bill {
        currency,
        price_book_version: version,
        period,
        lines,
        subtotal: sums[0],
        discount: sums[1],
        total: sums[2],
        credit_applied: sums[3],
        amount_due: sums[4],
        commitment,
        spend_limits,
    })
}

/// A decimal string, signed, its scale kept.
fn number(v: &Value) -> Result<Decimal, String> {
    match v {
        Value::String(s) => Decimal::from_str_exact(s).map_err(|e| format!("`{s}`: {e}")),
        other => Err(format!("{other} is not a decimal string")),
    }
}

fn text(v: &Value, what: &str) -> Result<String, String> {
    v.as_str().map(str::to_owned).ok_or_else(|| format!("{what} is not a string"))
}

fn opt_text(v: &Value, what: &str) -> Result<Option<Cow<'static, str>>, String> {
    match v {
        Value::Null => Ok(None),
        other => text(other, what).map(|s| Some(Cow::Owned(s))),
    }
}

fn decode_line(v: &Value, book: &PriceBook) -> Result<Line<'static>, String> {
    let Some(parts) = v.as_array().filter(|p| p.len() == 7 || p.len() == 8) else {
        return Err("not a line of 7 or 8 parts".into());
    };
    let key = text(&parts[0], "key")?;
    let kind: LineKind = serde_json::from_value(parts[1].clone()).map_err(|e| format!("kind: {e}"))?;
    let t = template(book, &key, kind);
    let quantity = match &parts[2] {
        Value::Null => None,
        q => Some(Quantity::new(number(q)?).map_err(|e| format!("quantity: {e}"))?),
    };
    let (name, product, meter, unit) = match (parts.get(7), t) {
        (Some(Value::Array(l)), _) if l.len() == 4 => (
            text(&l[0], "name")?,
            opt_text(&l[1], "product")?,
            opt_text(&l[2], "meter")?,
            opt_text(&l[3], "unit")?,
        ),
        (None, Some((name, product, meter, unit, _))) => {
            let own = |s: Option<&str>| s.map(|s| Cow::Owned(s.to_owned()));
            (name.to_owned(), own(product), own(meter), own(unit))
        }
        (None, None) => return Err(format!("the price book does not describe `{key}`")),
        _ => return Err("labels are not [name, product, meter, unit]".into()),
    };
    let tiers = match &parts[5] {
        Value::Null => None,
        Value::Array(slices) => {
            let model = t.and_then(|t| t.4);
            let mut all = slices
                .iter()
                .enumerate()
                .map(|(i, s)| decode_slice(s, model).map_err(|m| format!("slice {i}: {m}")))
                .collect::<Result<Vec<Slice>, String>>()?;
            let last = all.pop().ok_or("no tier slice")?;
            Some(Slices::from_parts(all, last))
        }
        _ => return Err("tiers are not a list".into()),
    };
    let note = match &parts[6] {
        Value::Null => None,
        n => Some(text(n, "note")?),
    };
    Ok(Line {
        key: Cow::Owned(key),
        name: Cow::Owned(name),
        kind,
        product,
        meter,
        quantity,
        unit,
        exact_amount: number(&parts[3])?,
        amount: number(&parts[4])?,
        tiers,
        note,
    })
}

fn decode_slice(v: &Value, model: Option<&ChargeModel>) -> Result<Slice, String> {
    let tier_of = |v: &Value| v.as_u64().and_then(|t| usize::try_from(t).ok()).ok_or("tier is not a number");
    match v {
        Value::Number(_) => {
            let tier = tier_of(v)?;
            model
                .and_then(|m| m.whole_slice(tier))
                .copied()
                .ok_or_else(|| format!("no whole slice of tier {tier}"))
        }
        Value::Array(p) if p.len() == 4 || p.len() == 5 => {
            let tier = tier_of(&p[0])?;
            let (from, up_to, unit_amount, flat_amount) = model
                .and_then(|m| m.tier_terms(tier))
                .ok_or_else(|| format!("no tier {tier} in the book"))?;
            Ok(Slice {
                tier,
                from,
                up_to,
                units: number(&p[1])?,
                unit_amount,
                flat_amount,
                packages: p.get(4).map(number).transpose()?,
                exact_amount: number(&p[2])?,
                amount: number(&p[3])?,
            })
        }
        Value::Object(_) => serde_json::from_value(v.clone()).map_err(|e| e.to_string()),
        _ => Err("not a tier slice".into()),
    }
}
