//! How amounts and quantities read on the page: `$1,234.56`, `2,000,000`, `2M`. Formatting only: every amount
//! shown was computed (and rounded, where the rules say) by billing-core.

use billing_core::Currency;
use rust_decimal::Decimal;

/// The sign people read before an amount of `currency`.
pub fn symbol(currency: Currency) -> &'static str {
    match currency.code() {
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "JPY" => "¥",
        "CAD" => "CA$",
        "AUD" => "A$",
        "CHF" => "CHF\u{a0}",
        _ => "",
    }
}

/// An amount at the currency's minor unit, grouped by thousands: `$1,234.56`, `−$5.00`, `¥1,200`, `KWD 1.250`.
/// The amount is shown with exactly the currency's decimal places (padded, never rounded here: billing-core rounds).
pub fn money(currency: Currency, amount: Decimal) -> String {
    let negative = amount.is_sign_negative() && !amount.is_zero();
    let mut abs = amount.abs();
    abs.rescale(currency.exponent().max(abs.scale()));
    let sign = if negative { "−" } else { "" };
    let sym = symbol(currency);
    let body = grouped(abs);
    if sym.is_empty() {
        format!("{sign}{}\u{a0}{body}", currency.code())
    } else {
        format!("{sign}{sym}{body}")
    }
}

/// A unit price at full precision (`$0.0000343`), never rounded: that is what the book charges per unit.
pub fn unit_price(currency: Currency, amount: Decimal) -> String {
    let mut value = amount.normalize();
    if value.scale() < currency.exponent() {
        value.rescale(currency.exponent());
    }
    let sym = symbol(currency);
    if sym.is_empty() {
        format!("{}\u{a0}{}", currency.code(), grouped(value))
    } else {
        format!("{sym}{}", grouped(value))
    }
}

/// A decimal with its integer part grouped by thousands: `2,000,000`, `1,234.5`.
pub fn grouped(value: Decimal) -> String {
    let text = value.abs().to_string();
    let (int, frac) = text.split_once('.').map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::with_capacity(text.len() + text.len() / 3 + 1);
    if value.is_sign_negative() && !value.is_zero() {
        out.push('−');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// A quantity as a short mark: `0`, `500`, `1K`, `2.5M`, `10B`, `1T` (one decimal at most, cut, not rounded up,
/// so a mark never claims more than it is).
pub fn compact(value: Decimal) -> String {
    let units = [
        (Decimal::from(1_000_000_000_000_i64), "T"),
        (Decimal::from(1_000_000_000), "B"),
        (Decimal::from(1_000_000), "M"),
        (Decimal::from(1_000), "K"),
    ];
    for (size, suffix) in units {
        if value >= size {
            let tenths = (value * Decimal::TEN / size).trunc();
            let shown = (tenths / Decimal::TEN).normalize();
            return format!("{shown}{suffix}");
        }
    }
    value.normalize().to_string()
}

/// A share as a percentage: `0.2` → `20 %`, `0.125` → `12.5 %`.
pub fn percent(share: Decimal) -> String {
    format!("{}\u{a0}%", (share * Decimal::ONE_HUNDRED).normalize())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn amounts_read_as_people_write_them() {
        let usd = Currency::USD;
        assert_eq!(money(usd, d("1234.56")), "$1,234.56");
        assert_eq!(money(usd, d("0")), "$0.00");
        assert_eq!(money(usd, d("248")), "$248.00");
        assert_eq!(money(usd, d("-5.5")), "−$5.50");
        assert_eq!(money(usd, d("1000000")), "$1,000,000.00");
        assert_eq!(money(Currency::from_code("JPY").unwrap(), d("1200")), "¥1,200");
        assert_eq!(money(Currency::from_code("KWD").unwrap(), d("1.25")), "KWD\u{a0}1.250");
        assert_eq!(unit_price(usd, d("0.0000343")), "$0.0000343");
        assert_eq!(unit_price(usd, d("15")), "$15.00");
    }

    #[test]
    fn quantities_group_and_compact() {
        assert_eq!(grouped(d("2000000")), "2,000,000");
        assert_eq!(grouped(d("123")), "123");
        assert_eq!(grouped(d("1234.5")), "1,234.5");
        assert_eq!(compact(d("0")), "0");
        assert_eq!(compact(d("999")), "999");
        assert_eq!(compact(d("1000")), "1K");
        assert_eq!(compact(d("2500000")), "2.5M");
        assert_eq!(compact(d("1999999")), "1.9M");
        assert_eq!(compact(d("10000000000")), "10B");
        assert_eq!(percent(d("0.20")), "20\u{a0}%");
    }
}
