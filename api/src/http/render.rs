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
fn field(text: &str) -> String {
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

/// The invoice as a printable HTML page.
pub fn invoice_html(invoice: &InvoiceRow, bill: &Bill<'_>) -> String {
    let currency = bill.currency.code();
    let title = invoice.number.clone().unwrap_or_else(|| format!("Draft {}", invoice.id));
    let mut rows = String::new();
    for line in &bill.lines {
        let quantity = match (line.quantity, line.unit.as_deref()) {
            (Some(q), Some(u)) => format!("{q} {u}"),
            (Some(q), None) => q.to_string(),
            _ => String::new(),
        };
        let _ = write!(
            rows,
            "<tr class=\"line\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&line.name),
            esc(&quantity),
            esc(&line.amount.to_string())
        );
        for s in line.tiers.iter().flat_map(|t| t.iter()) {
            let range = match s.up_to {
                Some(u) => format!("{} – {}", s.from.normalize(), u.normalize()),
                None => format!("over {}", s.from.normalize()),
            };
            let _ = write!(
                rows,
                "<tr class=\"tier\"><td>tier {}: {}</td><td class=\"num\">{} × {}</td><td class=\"num\">{}</td></tr>",
                s.tier,
                esc(&range),
                s.units.normalize(),
                s.unit_amount.normalize(),
                s.exact_amount.normalize()
            );
        }
        if let Some(note) = &line.note {
            let _ = write!(rows, "<tr class=\"note\"><td colspan=\"3\">{}</td></tr>", esc(note));
        }
    }
    let mut totals = String::new();
    for (label, amount) in [
        ("Subtotal", bill.subtotal),
        ("Discount", bill.discount),
        ("Total", bill.total),
        ("Prepaid credit", bill.credit_applied),
        ("Amount due", bill.amount_due),
    ] {
        let _ = write!(
            totals,
            "<tr><th colspan=\"2\">{label}</th><td class=\"num\">{} {}</td></tr>",
            esc(&amount.to_string()),
            currency
        );
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Invoice {title}</title>\
         <style>body{{font:14px/1.5 system-ui,sans-serif;max-width:50rem;margin:2rem auto;color:#111}}\
         table{{width:100%;border-collapse:collapse}}td,th{{padding:.25rem .5rem;text-align:left}}\
         .num{{text-align:right;font-variant-numeric:tabular-nums}}.line td{{border-top:1px solid #ddd;font-weight:600}}\
         .tier td,.note td{{color:#555;font-size:.9em}}@media print{{body{{margin:0}}}}</style></head><body>\
         <h1>Invoice {title}</h1><p>Customer <strong>{customer}</strong> · status {status}<br>\
         Period {start} to {end} · price book {version} · {currency}</p>\
         <table><thead><tr><th>Line</th><th class=\"num\">Quantity</th><th class=\"num\">Amount</th></tr></thead>\
         <tbody>{rows}</tbody><tfoot>{totals}</tfoot></table></body></html>",
        title = esc(&title),
        customer = esc(&invoice.customer_id),
        status = esc(&invoice.status),
        start = instant(invoice.period_start),
        end = instant(invoice.period_end),
        version = esc(&invoice.price_book_version),
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
