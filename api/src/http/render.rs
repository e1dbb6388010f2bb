//! An invoice as CSV (one row per line and per tier slice, for finance's spreadsheets) and as a printable HTML
//! page. Both are views of the stored bill: every amount is the bill's own decimal text, never recomputed.

use std::fmt::Write;

use billing_core::Bill;

use crate::store::InvoiceRow;

fn instant(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// A CSV field, quoted when it needs to be (RFC 4180). A field that a spreadsheet would read as a formula
/// (`=`, `+`, `-`, `@` first) is quoted with a leading apostrophe, except plain numbers.
pub fn field(text: &str) -> String {
    let number = text.parse::<rust_decimal::Decimal>().is_ok();
    let formula = !number && text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let text = if formula { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The invoice as CSV: a header, then per bill line one row, followed by one row per tier slice of that line.
pub fn invoice_csv(invoice: &InvoiceRow, bill: &Bill<'_>) -> String {
    let mut out = String::from(
        "invoice_id,number,customer_id,period_start,period_end,currency,row,line,kind,product,meter,quantity,unit,\
         tier,tier_from,tier_up_to,tier_units,unit_amount,flat_amount,amount\r\n",
    );
    let head = [
        invoice.id.clone(),
        invoice.number.clone().unwrap_or_default(),
        invoice.customer_id.clone(),
        instant(invoice.period_start),
        instant(invoice.period_end),
        bill.currency.code().to_owned(),
    ];
    let mut push = |cells: &[String]| {
        let row: Vec<String> = head.iter().chain(cells).map(|c| field(c)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    };
    for line in &bill.lines {
        let kind = serde_json::to_value(line.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let common = [
            line.key.to_string(),
            kind,
            line.product.as_deref().unwrap_or("").to_owned(),
            line.meter.as_deref().unwrap_or("").to_owned(),
            line.quantity.map(|q| q.to_string()).unwrap_or_default(),
            line.unit.as_deref().unwrap_or("").to_owned(),
        ];
        let mut row = vec!["line".to_owned()];
        row.extend(common.iter().cloned());
        row.extend(["", "", "", "", "", ""].map(str::to_owned));
        row.push(line.amount.to_string());
        push(&row);
        for slice in line.tiers.iter().flat_map(|t| t.iter()) {
            let mut row = vec!["tier".to_owned()];
            row.extend(common.iter().cloned());
            row.extend([
                slice.tier.to_string(),
                slice.from.normalize().to_string(),
                slice.up_to.map(|u| u.normalize().to_string()).unwrap_or_default(),
                slice.units.normalize().to_string(),
                slice.unit_amount.normalize().to_string(),
                slice.flat_amount.normalize().to_string(),
                slice.exact_amount.normalize().to_string(),
            ]);
            push(&row);
        }
    }
    for (label, amount) in [
        ("subtotal", bill.subtotal),
        ("discount", bill.discount),
        ("total", bill.total),
        ("credit_applied", bill.credit_applied),
        ("amount_due", bill.amount_due),
    ] {
        let mut row = vec![label.to_owned()];
        row.extend(std::iter::repeat_n(String::new(), 12));
        row.push(amount.to_string());
        push(&row);
    }
    out
}

/// Text for HTML: `&`, `<`, `>`, `"`, `'` escaped.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How long after issue an invoice is due: 30 days (Stripe's default `days_until_due`).
const DAYS_UNTIL_DUE: i64 = 30;

fn day_words(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).map(pricing_ui::billing::date).unwrap_or_default()
}

/// The rows of an invoice's lines: each line, its tier slices (units × unit price = amount) and its note.
fn line_rows(bill: &Bill<'_>) -> String {
    use pricing_ui::billing::units;
    use pricing_ui::format::{money, unit_price};
    let currency = bill.currency;
    let mut rows = String::new();
    for line in &bill.lines {
        let quantity = match (line.quantity, line.unit.as_deref()) {
            (Some(q), Some(u)) => units(q.value(), u),
            (Some(q), None) => pricing_ui::format::grouped(q.value()),
            _ => String::new(),
        };
        let _ = write!(
            rows,
            "<tr class=\"line\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&line.name),
            esc(&quantity),
            esc(&money(currency, line.amount))
        );
        let unit = line.unit.as_deref().unwrap_or("unit");
        for s in line.tiers.iter().flat_map(|t| t.iter()) {
            let range = match s.up_to {
                Some(u) => {
                    format!("{} – {}", pricing_ui::format::grouped(s.from), pricing_ui::format::grouped(u))
                }
                None => format!("over {}", pricing_ui::format::grouped(s.from)),
            };
            let flat = if s.flat_amount.is_zero() {
                String::new()
            } else {
                format!(" + {} flat", unit_price(currency, s.flat_amount))
            };
            let _ = write!(
                rows,
                "<tr class=\"tier\"><td>Tier {}: {}</td><td class=\"num\">{} × {}{}</td><td class=\"num\">{}</td></tr>",
                s.tier,
                esc(&range),
                esc(&units(s.units, unit)),
                esc(&unit_price(currency, s.unit_amount)),
                esc(&flat),
                esc(&money(currency, s.amount))
            );
        }
        if let Some(note) = &line.note {
            let _ = write!(rows, "<tr class=\"note\"><td colspan=\"3\">{}</td></tr>", esc(note));
        }
    }
    rows
}

/// The invoice as a printable HTML page: seller and customer, number, issue and due dates, the period in words,
/// quantities with separators and plural units, every amount at the currency's minor unit with its symbol, each
/// tier slice with its unit price; print styles fit a typical bill on one A4 or Letter page.
pub fn invoice_html(
    invoice: &InvoiceRow,
    bill: &Bill<'_>,
    customer: &str,
    seller: &super::state::Seller,
) -> String {
    use pricing_ui::billing::period_words;
    use pricing_ui::format::money;
    let currency = bill.currency;
    let title = invoice.number.clone().unwrap_or_else(|| format!("Draft {}", invoice.id));
    let rows = line_rows(bill);
    let mut totals = String::new();
    for (label, amount) in [
        ("Subtotal", bill.subtotal),
        ("Discount", bill.discount),
        ("Total", bill.total),
        ("Paid from prepaid credit", bill.credit_applied),
        ("Amount due", bill.amount_due),
    ] {
        let class = if label == "Amount due" { " class=\"due\"" } else { "" };
        let _ = write!(
            totals,
            "<tr{class}><th colspan=\"2\">{label}</th><td class=\"num\">{}</td></tr>",
            esc(&money(currency, amount))
        );
    }
    let issued = invoice.issued_at.unwrap_or(invoice.created_at);
    let due = issued + DAYS_UNTIL_DUE * crate::time::MICROS_PER_DAY;
    let period = match (
        chrono::DateTime::from_timestamp_micros(invoice.period_start),
        chrono::DateTime::from_timestamp_micros(invoice.period_end),
    ) {
        (Some(s), Some(e)) => period_words(s, e),
        _ => String::new(),
    };
    let address: String =
        seller.address.lines().map(|l| format!("<br>{}", esc(l))).collect::<Vec<_>>().join("");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>Invoice {title}</title>\
         <style>body{{font:14px/1.45 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;color:#111}}\
         header{{display:flex;justify-content:space-between;gap:2rem;flex-wrap:wrap}}h1{{margin:0 0 .25rem}}\
         .parties{{display:flex;gap:3rem;margin:1.5rem 0;flex-wrap:wrap}}.parties h2{{font-size:.8rem;\
         text-transform:uppercase;letter-spacing:.05em;color:#555;margin:0}}\
         table{{width:100%;border-collapse:collapse}}td,th{{padding:.2rem .5rem;text-align:left;vertical-align:top}}\
         .num{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}\
         .line td{{border-top:1px solid #ddd;font-weight:600}}.tier td,.note td{{color:#555;font-size:.9em}}\
         tfoot th,tfoot td{{border-top:1px solid #ddd}}.due th,.due td{{font-size:1.15em;font-weight:700}}\
         @page{{size:auto;margin:12mm}}@media print{{body{{margin:0;max-width:none;font-size:11px}}\
         tr{{break-inside:avoid}}}}</style></head><body>\
         <header><div><h1>Invoice {title}</h1><p>Status: {status}</p></div>\
         <dl><dt>Issued</dt><dd>{issued}</dd><dt>Due</dt><dd>{due}</dd><dt>Period</dt><dd>{period}</dd></dl></header>\
         <div class=\"parties\"><div><h2>From</h2><strong>{seller}</strong>{address}</div>\
         <div><h2>Bill to</h2><strong>{customer}</strong><br>Customer {customer_id}</div></div>\
         <table><thead><tr><th>Description</th><th class=\"num\">Quantity</th><th class=\"num\">Amount ({code})</th></tr></thead>\
         <tbody>{rows}</tbody><tfoot>{totals}</tfoot></table>\
         <p class=\"note\">Price book {version}. Usage past a spend cap is dropped, never billed.</p></body></html>",
        title = esc(&title),
        status = esc(&invoice.status),
        issued = day_words(issued),
        due = day_words(due),
        period = esc(&period),
        seller = esc(&seller.name),
        customer = esc(customer),
        customer_id = esc(&invoice.customer_id),
        code = currency.code(),
        version = esc(&invoice.price_book_version),
    )
}

/// The page a browser gets at `/billing` without a live session: 401, saying what to do.
pub fn session_ended() -> (axum::http::StatusCode, [(axum::http::HeaderName, &'static str); 2], String) {
    notice(
        axum::http::StatusCode::UNAUTHORIZED,
        "Your billing session has ended",
        "Sessions end after an hour without use, 12 hours after they start, or when your API key is rotated. \
         Ask for a new link to your billing page.",
    )
}

/// The page an unusable portal link gets: used, expired or unknown alike (410), naming nothing else.
pub fn link_unusable() -> (axum::http::StatusCode, [(axum::http::HeaderName, &'static str); 2], String) {
    notice(
        axum::http::StatusCode::GONE,
        "This link can no longer be used",
        "A billing link works once, within 15 minutes of being made. It has been used already or has expired. \
         Ask for a new link to your billing page.",
    )
}

fn notice(
    status: axum::http::StatusCode,
    title: &str,
    text: &str,
) -> (axum::http::StatusCode, [(axum::http::HeaderName, &'static str); 2], String) {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><meta name=\"color-scheme\" content=\"light dark\">\
         <title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;\
         padding:0 1rem}}</style></head><body><main><h1>{title}</h1><p>{text}</p></main></body></html>"
    );
    (
        status,
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-12.50"), "-12.50");
        assert_eq!(field("@cmd"), "'@cmd");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<script>&'\""), "&lt;script&gt;&amp;&#39;&quot;");
    }
}
