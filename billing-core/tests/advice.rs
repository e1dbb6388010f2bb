//! Commitment advice (`commitment_advice`): the yearly credit it recommends is the cheapest of *every* credit, for
//! random offers (brackets, discounts, minimums) in currencies with 0, 2 and 3 decimal places; examples from the
//! built-in price book prove the rule once.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use billing_core::{
    commitment_advice, twelve_month_cost, Bracket, CommitmentOffer, Currency, Error, PriceBook,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn book_offer() -> (CommitmentOffer, Currency) {
    let book = PriceBook::default_book().unwrap();
    (book.commitment().unwrap().clone(), book.currency())
}

#[test]
fn the_next_bracket_can_cost_less_than_buying_what_you_use() {
    let (offer, usd) = book_offer();
    // $2,000/month: $24,000 a year. $24,000 at 10 % costs $21,600; $25,000 at 20 % costs $20,000.
    let advice = commitment_advice(&offer, usd, d("2000")).unwrap();
    assert_eq!(advice.yearly_usage, d("24000"));
    let credits: Vec<_> = advice.options.iter().map(|o| o.yearly_credit).collect();
    assert_eq!(credits, [None, Some(d("24000")), Some(d("25000")), Some(d("80000")), Some(d("153847"))]);
    assert_eq!(advice.options[1].twelve_month_cost, d("21600.00"));
    assert_eq!(advice.best.yearly_credit, Some(d("25000")));
    assert_eq!(advice.best.discount_rate, d("0.20"));
    assert_eq!(advice.best.price, d("20000.00"));
    assert_eq!(advice.best.unused_credit, d("1000"));
    assert_eq!(advice.best.saving, d("4000.00"));
}

#[test]
fn buying_exactly_the_years_usage_when_no_bracket_is_near() {
    let (offer, usd) = book_offer();
    // $1,000/month: $12,000 at 10 % = $10,800; $25,000 at 20 % = $20,000.
    let advice = commitment_advice(&offer, usd, d("1000")).unwrap();
    assert_eq!(advice.best.yearly_credit, Some(d("12000")));
    assert_eq!(advice.best.twelve_month_cost, d("10800.00"));
    assert_eq!(advice.best.billed_past_credit, Decimal::ZERO);
}

#[test]
fn a_small_estimate_is_best_without_commitment() {
    let (offer, usd) = book_offer();
    for estimate in ["0", "0.01", "100", "249.97"] {
        let advice = commitment_advice(&offer, usd, d(estimate)).unwrap();
        assert_eq!(advice.best, advice.no_commitment, "{estimate}");
        assert_eq!(advice.best.yearly_credit, None);
    }
    // $250/month = $3,000 a year: the $3,333 minimum at 10 % costs $2,999.70, 30 cents less.
    let advice = commitment_advice(&offer, usd, d("250")).unwrap();
    assert_eq!(advice.best.yearly_credit, Some(d("3333")));
    assert_eq!(advice.best.twelve_month_cost, d("2999.70"));
    assert_eq!(advice.best.saving, d("0.30"));
}

#[test]
fn bad_estimates_are_refused_with_their_path() {
    let (offer, usd) = book_offer();
    for bad in ["-1", "0.001", "12.345"] {
        let err = commitment_advice(&offer, usd, d(bad)).unwrap_err();
        assert!(matches!(&err, Error::InvalidRequest(i) if i[0].path == "monthly_estimate"), "{bad}: {err}");
    }
    let err = commitment_advice(&offer, usd, Decimal::MAX).unwrap_err();
    assert!(matches!(err, Error::Overflow { .. }), "{err}");
}

/// A random offer: a minimum, 1–5 increasing brackets with increasing discounts below 1, credits in whole minor
/// units of `exponent` (and sometimes not: a bracket start the currency cannot express is no option).
fn offer(exponent: u32) -> impl Strategy<Value = CommitmentOffer> {
    (1_i64..50_000, prop::collection::vec((1_i64..100_000, 1_i64..30), 1..6)).prop_map(move |(min, rows)| {
        let minimum_credit = Decimal::new(min, exponent);
        let mut from = minimum_credit;
        let mut discount = Decimal::ZERO;
        let brackets = rows
            .into_iter()
            .enumerate()
            .map(|(i, (gap, step))| {
                if i > 0 {
                    from += Decimal::new(gap, exponent);
                }
                discount = (discount + Decimal::new(step, 2)).min(d("0.99"));
                Bracket { credit_from: from, discount }
            })
            .collect();
        CommitmentOffer { minimum_credit, brackets, term_months: 12 }
    })
}

fn currency() -> impl Strategy<Value = Currency> {
    prop_oneof![Just("USD"), Just("JPY"), Just("KWD")].prop_map(|c| Currency::from_code(c).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// (a) The advice is the minimum over every credit: it costs no more than no commitment, nor than any of 200
    /// random credits (whole minor units, from the minimum to well past the last bracket and the year's usage).
    #[test]
    fn the_advice_is_the_cheapest_credit_of_all(
        (currency, offer, estimate, probes) in currency().prop_flat_map(|c| {
            (Just(c), offer(c.exponent()), 0_i64..2_000_000, prop::collection::vec(0_i64..1_000_000_000, 200))
        })
    ) {
        let estimate = Decimal::new(estimate, currency.exponent());
        let advice = commitment_advice(&offer, currency, estimate).unwrap();
        prop_assert!(advice.best.twelve_month_cost <= advice.no_commitment.twelve_month_cost);
        prop_assert!(advice.best.saving >= Decimal::ZERO);
        let top = offer.brackets.last().unwrap().credit_from.max(advice.yearly_usage) * Decimal::from(2);
        for p in probes {
            let credit = offer.minimum_credit + Decimal::new(p, currency.exponent()) % (top + Decimal::ONE);
            if let Ok(option) = twelve_month_cost(&offer, currency, advice.yearly_usage, credit).unwrap() {
                prop_assert!(advice.best.twelve_month_cost <= option.twelve_month_cost,
                    "credit {} costs {} < advised {:?} at {}", credit, option.twelve_month_cost,
                    advice.best.yearly_credit, advice.best.twelve_month_cost);
            }
        }
    }

    /// (b) Every option's figures hold together: cost = price + usage past the credit, usage past the credit and
    /// unused credit are the two sides of |U − C|, the price is the credit at its bracket's discount, rounded.
    #[test]
    fn every_option_adds_up(
        (currency, offer, estimate) in currency().prop_flat_map(|c| (Just(c), offer(c.exponent()), 0_i64..5_000_000))
    ) {
        let estimate = Decimal::new(estimate, currency.exponent());
        let advice = commitment_advice(&offer, currency, estimate).unwrap();
        prop_assert_eq!(advice.yearly_usage, estimate * Decimal::from(12));
        prop_assert_eq!(&advice.options[0], &advice.no_commitment);
        prop_assert!(advice.options.contains(&advice.best));
        for o in &advice.options {
            prop_assert_eq!(o.twelve_month_cost, o.price + o.billed_past_credit);
            prop_assert_eq!(o.saving, advice.yearly_usage - o.twelve_month_cost);
            let credit = o.yearly_credit.unwrap_or(Decimal::ZERO);
            prop_assert_eq!(o.billed_past_credit - o.unused_credit, advice.yearly_usage - credit);
            prop_assert!(o.billed_past_credit.min(o.unused_credit).is_zero());
            if let Some(c) = o.yearly_credit {
                let bracket = offer.brackets.iter().rev().find(|b| b.credit_from <= c).map_or(Decimal::ZERO, |b| b.discount);
                prop_assert_eq!(o.discount_rate, bracket);
                prop_assert_eq!(o.price, currency.round(c * (Decimal::ONE - bracket), billing_core::Rounding::HalfAwayFromZero));
            }
        }
    }

    /// (c) Exhaustively, for small sums in a currency without minor units: no whole credit at all is cheaper.
    #[test]
    fn no_credit_at_all_is_cheaper_exhaustively(offer in offer(0).prop_map(|mut o| {
        // Small sums so that every credit can be tried.
        o.minimum_credit = o.minimum_credit % Decimal::from(300) + Decimal::ONE;
        let mut from = o.minimum_credit;
        for (i, b) in o.brackets.iter_mut().enumerate() {
            if i > 0 { from += b.credit_from % Decimal::from(400) + Decimal::ONE; }
            b.credit_from = from;
        }
        o
    }), estimate in 0_i64..200) {
        let jpy = Currency::from_code("JPY").unwrap();
        let advice = commitment_advice(&offer, jpy, Decimal::from(estimate)).unwrap();
        let last = offer.brackets.last().unwrap().credit_from.max(advice.yearly_usage);
        let mut credit = offer.minimum_credit;
        while credit <= last + Decimal::from(50) {
            let option = twelve_month_cost(&offer, jpy, advice.yearly_usage, credit).unwrap().unwrap();
            prop_assert!(advice.best.twelve_month_cost <= option.twelve_month_cost, "credit {}", credit);
            credit += Decimal::ONE;
        }
    }
}
