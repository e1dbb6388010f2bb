//! `tally quote --format table`: the same bill as the JSON output, aligned for people.

use std::fmt::Write as _;

use billing_core::{Bill, LineKind, Stage};
use rust_decimal::Decimal;

const WIDTH: usize = 96;

/// Renders a bill as an aligned table: every line with its tiers, then subtotal, discount, total, credit and
/// amount due, then the commitment and spend-limit summaries.
pub fn render(bill: &Bill<'_>) -> String {
    let mut out = String::new();
    let version =
        bill.price_book_version.as_deref().map(|v| format!(" · price book {v}")).unwrap_or_default();
    let _ = writeln!(out, "tally quote · {}{version}", bill.currency);
    if let Some(p) = bill.period {
        let _ = writeln!(out, "period {} – {}", p.start().to_rfc3339(), p.end().to_rfc3339());
    }
    out.push('\n');
    charges(&mut out, bill);
    let _ = writeln!(out, "  {}", "-".repeat(WIDTH - 2));
    row(&mut out, "  Subtotal", "", bill.subtotal);
    adjustments(&mut out, bill, Stage::Discount);
    row(&mut out, "  Total", "", bill.total);
    if bill.lines.iter().any(|l| l.kind.stage() == Stage::Credit) {
        adjustments(&mut out, bill, Stage::Credit);
        row(&mut out, "  Amount due", "", bill.amount_due);
    }
    commitment_and_limits(&mut out, bill);
    out
}

/// The charge lines, each with its tier slices and note.
fn charges(out: &mut String, bill: &Bill<'_>) {
    for line in bill.lines.iter().filter(|l| l.kind.stage() == Stage::Charge) {
        let quantity = match (&line.quantity, &line.unit) {
            (Some(q), Some(unit)) => format!("{} {}", group(q.value()), plural(unit, q.value())),
            _ => String::new(),
        };
        let indent = if line.kind == LineKind::Addon { "    + " } else { "  " };
        row(out, &format!("{indent}{}", line.name), &quantity, line.amount);
        for t in line.tiers.iter().flat_map(billing_core::Slices::iter) {
            let range = match t.up_to {
                Some(up_to) => format!("{} – {}", group(t.from), group(up_to)),
                None => format!("over {}", group(t.from)),
            };
            let priced = match t.packages {
                Some(p) => format!("{} packages × {}", group(p), t.unit_amount.normalize()),
                None if t.flat_amount.is_zero() => {
                    format!("{} × {}", group(t.units), t.unit_amount.normalize())
                }
                None => format!(
                    "{} × {} + {}",
                    group(t.units),
                    t.unit_amount.normalize(),
                    t.flat_amount.normalize()
                ),
            };
            let pad = if line.kind == LineKind::Addon { "          " } else { "      " };
            row(out, &format!("{pad}tier {}: {range}", t.tier), &priced, t.amount);
        }
        if let Some(note) = &line.note {
            let _ = writeln!(out, "      {note}");
        }
    }
}

/// What the commitment buys, and each spend limit with what it admits of each meter.
fn commitment_and_limits(out: &mut String, bill: &Bill<'_>) {
    if let Some(c) = &bill.commitment {
        let term = Decimal::from(c.monthly_release.len());
        let lasts = match c.credit_lasts_months {
            None => "indefinitely (unused credit expires after the term)".to_owned(),
            Some(m) if m > term => {
                format!("{m} months, more than its {term}-month term (unused credit expires)")
            }
            Some(m) => format!("{m} months"),
        };
        let _ = write!(
            out,
            "\nCommitment: yearly credit {} at {} % off costs {}; {} released each month; at this month's list \
             price of {} the credit lasts {lasts}; effective monthly cost {}\n",
            group(c.yearly_credit),
            percent(c.discount_rate),
            group(c.price),
            group(c.monthly_release.first().copied().unwrap_or_default()),
            group(c.list_total),
            group(c.effective_total),
        );
    }
    for s in &bill.spend_limits {
        let alerts: Vec<String> = s.alerts.iter().map(|a| format!("{} %", percent(*a))).collect();
        let state = if s.reached { "reached" } else { "not reached" };
        let alerts =
            if alerts.is_empty() { String::new() } else { format!("; alerts {}", alerts.join(", ")) };
        let _ = writeln!(
            out,
            "\nSpend limit {} of {} {}: {state}{alerts}",
            s.product,
            group(s.limit),
            bill.currency
        );
        for m in &s.meters {
            let _ = writeln!(
                out,
                "  {}: {} offered, {} billable, {} dropped",
                m.meter,
                group(m.offered.value()),
                group(m.billable.value()),
                group(m.dropped.value())
            );
        }
    }
}

fn adjustments(out: &mut String, bill: &Bill<'_>, stage: Stage) {
    for line in bill.lines.iter().filter(|l| l.kind.stage() == stage) {
        row(out, &format!("  {}", line.name), "", line.amount);
        if let Some(note) = &line.note {
            let _ = writeln!(out, "      {note}");
        }
    }
}

/// `event` → `events` for any quantity but one; unit names in capitals (GB, PR) stay as they are.
fn plural(unit: &str, quantity: Decimal) -> String {
    let regular = unit.ends_with(|c: char| c.is_ascii_lowercase() && c != 's');
    if quantity != Decimal::ONE && regular {
        format!("{unit}s")
    } else {
        unit.to_owned()
    }
}

fn row(out: &mut String, label: &str, quantity: &str, amount: Decimal) {
    let _ = writeln!(out, "{label:<48}{quantity:>32}{:>16}", group(amount));
}

/// A rate as a percentage (0.20 → 20), by the core's exact decimal-point shift.
fn percent(rate: Decimal) -> Decimal {
    billing_core::money::shift_decimal_point(rate, 2).unwrap_or(rate).normalize()
}

/// A decimal with thousands separators in its integer part: 7118.40 → 7,118.40.
pub fn group(value: Decimal) -> String {
    let text = value.to_string();
    let (sign, digits) = text.strip_prefix('-').map_or(("", text.as_str()), |rest| ("-", rest));
    let (int, frac) = digits.split_once('.').map_or((digits, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn thousands_are_grouped() {
        let g = |s: &str| group(Decimal::from_str(s).unwrap());
        assert_eq!(g("7118.40"), "7,118.40");
        assert_eq!(g("-1234567"), "-1,234,567");
        assert_eq!(g("999"), "999");
        assert_eq!(g("0.00005"), "0.00005");
    }
}
