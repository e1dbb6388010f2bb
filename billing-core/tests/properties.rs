//! Invariants of the pricing engine, checked with proptest over money-sized inputs.
//!
//! The strategies are domain strategies (tier tables with strictly increasing bounds, unit prices from a
//! hundred-millionth of a unit to thousands, quantities up to ten billion), not arbitrary `Decimal`s: the
//! properties are about prices people set, and arbitrary 96-bit mantissas would mostly test overflow errors.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use billing_core::{
    billable_usage, compute, Bill, ChargeModel, PriceBook, Quantity, QuoteRequest, SpendLimit,
    SpendLimitRules, Stage, Tier, TierSchedule,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn unit_amount() -> impl Strategy<Value = Decimal> {
    // 0 to 10,000 with up to 8 decimal places: $0.00000001 per event up to $10,000 per seat.
    (0_i64..1_000_000_000_000, 0_u32..=8).prop_map(|(m, s)| Decimal::new(m % 10_i64.pow(4 + s), s))
}

fn flat_amount() -> impl Strategy<Value = Decimal> {
    prop_oneof![3 => Just(Decimal::ZERO), 1 => (0_i64..10_000_000).prop_map(|c| Decimal::new(c, 2))]
}

fn tiers() -> impl Strategy<Value = Vec<Tier>> {
    prop::collection::vec((1_i64..50_000_000, unit_amount(), flat_amount()), 1..7).prop_map(|rows| {
        let mut bound = 0_i64;
        let last = rows.len() - 1;
        rows.into_iter()
            .enumerate()
            .map(|(i, (width, unit_amount, flat_amount))| {
                bound += width;
                Tier { up_to: (i < last).then(|| Decimal::from(bound)), unit_amount, flat_amount }
            })
            .collect()
    })
}

fn quantity() -> impl Strategy<Value = Quantity> {
    prop_oneof![
        4 => (0_i64..10_000_000_000).prop_map(Decimal::from),
        1 => (0_i64..10_000_000_000, 0_u32..=3).prop_map(|(m, s)| Decimal::new(m, s)),
    ]
    .prop_map(|d| Quantity::new(d).unwrap())
}

fn q(n: Decimal) -> Quantity {
    Quantity::new(n).unwrap()
}

fn limit(amount: i64) -> SpendLimit {
    SpendLimit::new(Decimal::from(amount), &SpendLimitRules::default()).unwrap()
}

/// Every meter of the default book, for requests against it.
const METERS: [&str; 19] = [
    "events",
    "identified_events",
    "recordings",
    "mobile_recordings",
    "cdp_trigger_events",
    "batch_export_rows",
    "feature_flag_requests",
    "survey_responses",
    "rows_synced",
    "exceptions",
    "llm_events",
    "logs_gb_ingested",
    "logs_gb_retained_30d",
    "ai_credits",
    "replay_vision_credits",
    "inbox_prs",
    "desktop_credits",
    "workflow_emails",
    "workflow_dispatches",
];

const PRODUCTS: [&str; 6] =
    ["product_analytics", "session_replay", "inbox", "logs", "surveys", "feature_flags"];

/// A request against the default book: usage on a random subset of meters, add-ons, limits, a commitment.
fn request(with_limits: bool, with_commitment: bool) -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(
            prop::sample::select(METERS.to_vec()),
            0_u64..3_000_000_000,
            0..=METERS.len(),
        ),
        prop::sample::subsequence(vec!["group_analytics", "boost", "scale", "enterprise"], 0..=4),
        prop::collection::btree_map(prop::sample::select(PRODUCTS.to_vec()), 0_u64..=50_000, 0..4),
        3333_u64..200_000,
    )
        .prop_map(move |(usage, addons, limits, credit)| {
            let mut r = json!({"usage": usage, "addons": addons});
            if with_limits {
                r["limits"] = json!(limits);
            }
            if with_commitment {
                r["commitment"] = json!({"yearly_credit": credit});
            }
            r
        })
}

fn price<'b>(book: &'b PriceBook, request: &Value) -> Bill<'b> {
    compute(book, &QuoteRequest::from_json(&request.to_string()).unwrap()).unwrap()
}

fn stage_sum(bill: &Bill<'_>, stage: Stage) -> Decimal {
    bill.lines.iter().filter(|l| l.kind.stage() == stage).map(|l| l.amount).sum()
}

proptest! {
    #[test]
    fn graduated_price_is_monotone_in_quantity(t in tiers(), a in quantity(), b in quantity()) {
        let c = ChargeModel::Graduated(TierSchedule::new(t).unwrap());
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(c.amount(lo).unwrap() <= c.amount(hi).unwrap());
    }

    #[test]
    fn graduated_price_equals_a_naive_tier_walk(t in tiers(), n in quantity()) {
        // The reference: walk every tier in Decimal, no precomputed totals, no integer fast path.
        let mut expected = Decimal::ZERO;
        let mut start = Decimal::ZERO;
        for tier in &t {
            let end = tier.up_to.map_or(n.value(), |b| b.min(n.value()));
            expected += tier.flat_amount + (end - start) * tier.unit_amount;
            match tier.up_to {
                Some(b) if n.value() > b => start = b,
                _ => break,
            }
        }
        let c = ChargeModel::Graduated(TierSchedule::new(t).unwrap());
        prop_assert_eq!(c.amount(n).unwrap(), expected);
        prop_assert_eq!(c.price(n, billing_core::Currency::USD).unwrap().exact, expected);
    }

    #[test]
    fn rounding_to_the_cent_agrees_with_rust_decimal(m in any::<i64>(), scale in 0_u32..=20) {
        let x = Decimal::new(m, scale);
        let usd = billing_core::Currency::USD;
        let mut half = x.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let mut down = x.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero);
        for r in [&mut half, &mut down] {
            if r.is_zero() {
                r.set_sign_positive(true);
            }
        }
        prop_assert_eq!(usd.round(x, billing_core::Rounding::HalfAwayFromZero), half);
        prop_assert_eq!(usd.round(x, billing_core::Rounding::Down), down);
    }

    #[test]
    fn graduated_price_is_the_sum_of_its_tier_slices(t in tiers(), n in quantity()) {
        let c = ChargeModel::Graduated(TierSchedule::new(t).unwrap());
        let breakdown = c.price(n, billing_core::Currency::USD).unwrap();
        prop_assert_eq!(breakdown.slices.iter().map(|s| s.exact_amount).sum::<Decimal>(), breakdown.exact);
        prop_assert_eq!(breakdown.slices.iter().map(|s| s.units).sum::<Decimal>(), n.value());
        prop_assert_eq!(breakdown.exact, c.amount(n).unwrap());
    }

    #[test]
    fn one_tier_graduated_equals_volume_equals_per_unit(unit in unit_amount(), n in quantity()) {
        let one = || TierSchedule::new(vec![Tier { up_to: None, unit_amount: unit, flat_amount: Decimal::ZERO }]).unwrap();
        let graduated = ChargeModel::Graduated(one()).amount(n).unwrap();
        prop_assert_eq!(graduated, ChargeModel::Volume(one()).amount(n).unwrap());
        prop_assert_eq!(graduated, ChargeModel::PerUnit { unit_amount: unit }.amount(n).unwrap());
    }

    #[test]
    fn rounded_lines_add_up_to_subtotal_total_and_amount_due(
        r in request(true, true),
        balance in prop::option::of(0_u64..100_000),
    ) {
        let book = PriceBook::default_book().unwrap();
        let mut r = r;
        if let Some(b) = balance {
            r["credit_balance"] = json!(b);
        }
        let bill = price(&book, &r);
        prop_assert_eq!(stage_sum(&bill, Stage::Charge), bill.subtotal);
        prop_assert_eq!(bill.subtotal + stage_sum(&bill, Stage::Discount), bill.total);
        prop_assert_eq!(bill.total + stage_sum(&bill, Stage::Credit), bill.amount_due);
        prop_assert!(bill.amount_due >= Decimal::ZERO);
        for line in &bill.lines {
            prop_assert_eq!(line.amount.scale(), 2, "every amount is at the cent: {:?}", line);
        }
    }

    #[test]
    fn a_spend_limit_is_never_exceeded(r in request(true, false)) {
        let book = PriceBook::default_book().unwrap();
        let bill = price(&book, &r);
        for s in &bill.spend_limits {
            prop_assert!(s.net_exact_amount <= s.limit);
            // Without a discount, the group's rounded lines are the billed amount: never over the limit either.
            let group: Decimal = bill.lines.iter().filter(|l| l.product.as_deref() == Some(&s.product)).map(|l| l.amount).sum();
            prop_assert_eq!(group, s.list_amount);
            prop_assert!(group <= s.limit, "{} bills {} over its limit {}", s.product, group, s.limit);
        }
    }

    #[test]
    fn the_inverted_quantity_prices_within_the_limit_and_one_more_unit_does_not(
        t in tiers(),
        cap in 0_i64..200_000,
        offered in 0_i64..10_000_000_000,
        discount in prop::sample::select(vec!["0", "0.10", "0.20", "0.25", "0.35"]),
    ) {
        let c = ChargeModel::Graduated(TierSchedule::new(t).unwrap());
        let f = Decimal::ONE - discount.parse::<Decimal>().unwrap();
        let a = billable_usage(&[(&c, 0)], &[q(Decimal::from(offered))], f, limit(cap)).unwrap();
        let billable = a.billable[0].value();
        let within = |n: Decimal| c.amount(q(n)).unwrap() * f <= Decimal::from(cap);
        if a.reached {
            // Either the fixed fee alone is over the limit (nothing is billable), or the limit falls inside the usage.
            prop_assert!(billable < Decimal::from(offered));
            if within(Decimal::ZERO) {
                prop_assert!(within(billable));
                prop_assert!(!within(billable + Decimal::ONE));
            } else {
                prop_assert_eq!(billable, Decimal::ZERO);
            }
        } else {
            prop_assert_eq!(billable, Decimal::from(offered));
            prop_assert!(within(billable));
        }
    }

    #[test]
    fn a_commitment_never_raises_a_total(r in request(false, true)) {
        // Without limits the same usage is billed either way; with a limit, a discount admits more usage (the limit
        // applies after the discount), which is a different bill, covered by a_spend_limit_is_never_exceeded.
        let book = PriceBook::default_book().unwrap();
        let with = price(&book, &r);
        let mut without = r.clone();
        without.as_object_mut().unwrap().remove("commitment");
        let without = price(&book, &without);
        prop_assert!(with.total <= without.total);
        prop_assert_eq!(with.subtotal, without.subtotal);
    }

    #[test]
    fn quotes_survive_a_serde_round_trip(r in request(true, true)) {
        let book = PriceBook::default_book().unwrap();
        let bill = price(&book, &r);
        let json = serde_json::to_string(&bill).unwrap();
        let back: Bill<'static> = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &bill);
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }

    #[test]
    fn price_books_survive_a_serde_round_trip(book in price_book()) {
        let parsed = PriceBook::from_json(&book.to_string()).unwrap();
        let canonical = serde_json::to_string(&parsed).unwrap();
        let again = PriceBook::from_json(&canonical).unwrap();
        prop_assert_eq!(&again, &parsed);
        prop_assert_eq!(serde_json::to_string(&again).unwrap(), canonical);
    }

    #[test]
    fn zero_usage_prices_to_the_first_tiers_flat_amounts_only(book in price_book()) {
        let parsed = PriceBook::from_json(&book.to_string()).unwrap();
        let usage: serde_json::Map<String, Value> = parsed
            .products()
            .iter()
            .flat_map(|p| p.charges())
            .map(|(m, _)| (m.meter.to_string(), json!(0)))
            .collect();
        let bill = price(&parsed, &json!({"usage": usage}));
        let expected: Decimal = parsed
            .products()
            .iter()
            .flat_map(|p| p.charges().filter(|(_, optional)| !optional))
            .map(|(m, _)| parsed.currency().round(m.charge.minimum_amount(), billing_core::Rounding::HalfAwayFromZero))
            .sum();
        prop_assert_eq!(bill.total, expected);
    }
}

/// A random valid price book as wire JSON: every charge model, Stripe's minor-unit fields, add-ons.
fn price_book() -> impl Strategy<Value = Value> {
    let charge = prop_oneof![
        (tiers(), any::<bool>(), any::<bool>()).prop_map(|(t, volume, minor)| {
            let tiers: Vec<Value> = t
                .iter()
                .map(|t| {
                    let mut v = json!({"up_to": t.up_to.map(|b| json!(b.to_string().parse::<u64>().unwrap()))});
                    if minor {
                        v["unit_amount_decimal"] = json!((t.unit_amount * Decimal::ONE_HUNDRED).normalize().to_string());
                        v["flat_amount_decimal"] = json!((t.flat_amount * Decimal::ONE_HUNDRED).normalize().to_string());
                    } else {
                        v["unit_amount"] = json!(t.unit_amount.to_string());
                        v["flat_amount"] = json!(t.flat_amount.to_string());
                    }
                    v
                })
                .collect();
            json!({"tiers_mode": if volume { "volume" } else { "graduated" }, "tiers": tiers})
        }),
        unit_amount().prop_map(|u| json!({"unit_amount": u.to_string()})),
        (1_u64..10_000, unit_amount(), any::<bool>())
            .prop_map(|(size, amount, up)| json!({"package": {"size": size, "amount": amount.to_string(), "round": if up { "up" } else { "down" }}})),
    ];
    prop::collection::vec((charge.clone(), prop::option::of((charge, any::<bool>()))), 1..5).prop_map(|products| {
        let products: Vec<Value> = products
            .into_iter()
            .enumerate()
            .map(|(i, (price, addon))| {
                let mut p = json!({"key": format!("p{i}"), "name": format!("Product {i}"), "unit": "unit", "meter": format!("m{i}")});
                p.as_object_mut().unwrap().extend(price.as_object().unwrap().clone());
                if let Some((price, optional)) = addon {
                    let mut a = json!({"key": format!("a{i}"), "name": format!("Add-on {i}"), "unit": "unit", "meter": format!("am{i}"), "optional": optional});
                    a.as_object_mut().unwrap().extend(price.as_object().unwrap().clone());
                    p["addons"] = json!([a]);
                }
                p
            })
            .collect();
        json!({"currency": "USD", "version": "v1", "products": products,
               "platform_addons": [{"key": "boost", "name": "Boost", "monthly_price": "250"}],
               "commitment": {"minimum_credit": "1000", "brackets": [{"credit_from": "1000", "discount": "0.1"}]}})
    })
}
