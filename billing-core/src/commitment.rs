//! The self-selected commitment: a yearly prepaid credit whose size picks a discount bracket.
//!
//! Price paid = credit × (1 − discount). The credit is released in equal monthly parts over the term (12 months),
//! released credit rolls over, and all of it expires at the end of the term. Invoices are priced at list and paid
//! from the credit available; the remainder is billed (pricing-semantics.md §5).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::catalog::CommitmentOffer;
use crate::error::Result;
use crate::exact;
use crate::money::{round_to, Currency, Rounding};
use crate::period::add_months_clamped;

/// The terms a chosen yearly credit earns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentTerms {
    /// Face value of the credit.
    pub yearly_credit: Decimal,
    /// Discount rate of the bracket the credit falls in.
    pub discount: Decimal,
    /// `1 − discount`.
    pub net_factor: Decimal,
    /// What the customer pays for the credit, exactly: `credit × (1 − discount)`.
    pub exact_price: Decimal,
    /// What the customer pays, rounded half away from zero to the minor unit.
    pub price: Decimal,
    /// The credit released at the start of each month of the term; sums exactly to the credit.
    pub monthly_release: Vec<Decimal>,
}

impl CommitmentTerms {
    /// Looks up the bracket of `yearly_credit` and computes the price and the release schedule.
    ///
    /// # Errors
    /// A message when the credit is below the offer's minimum, or too large to compute exactly.
    ///
    /// # Examples
    /// ```
    /// use billing_core::{CommitmentTerms, PriceBook};
    /// use rust_decimal::Decimal;
    /// let book = PriceBook::default_book()?;
    /// let terms = CommitmentTerms::select(book.commitment().unwrap(), book.currency(), Decimal::from(3333)).unwrap();
    /// assert_eq!(terms.price.to_string(), "2999.70");
    /// assert_eq!(terms.discount.to_string(), "0.10");
    /// # Ok::<(), billing_core::Error>(())
    /// ```
    pub fn select(
        offer: &CommitmentOffer,
        currency: Currency,
        yearly_credit: Decimal,
    ) -> Result<Self, String> {
        if yearly_credit < offer.minimum_credit {
            return Err(format!("must be at least the minimum credit of {}", offer.minimum_credit));
        }
        if currency.round(yearly_credit, Rounding::HalfAwayFromZero) != yearly_credit {
            return Err(format!("must be a whole number of minor units of {currency}"));
        }
        let discount = offer.bracket_for(yearly_credit).map_or(Decimal::ZERO, |b| b.discount);
        let net_factor = exact::sub(Decimal::ONE, discount, "commitment price").map_err(|e| e.to_string())?;
        let exact_price =
            exact::mul(yearly_credit, net_factor, "commitment price").map_err(|e| e.to_string())?;
        Ok(CommitmentTerms {
            yearly_credit,
            discount,
            net_factor,
            exact_price,
            price: currency.round(exact_price, Rounding::HalfAwayFromZero),
            monthly_release: release_schedule(currency, yearly_credit, offer.term_months)
                .map_err(|e| e.to_string())?,
        })
    }

    /// `1 − discount`: what one list dollar of usage effectively costs.
    pub fn net_factor(&self) -> Decimal {
        self.net_factor
    }

    /// The release instants and amounts for a purchase at `purchased_at`: month `i` (from 0) is released at
    /// `purchased_at + i months` (day clamped to the month's end).
    ///
    /// # Errors
    /// A message when the dates are out of range.
    pub fn releases(&self, purchased_at: DateTime<Utc>) -> Result<Vec<(DateTime<Utc>, Decimal)>, String> {
        (0..)
            .zip(&self.monthly_release)
            .map(|(i, amount)| Ok((add_months_clamped(purchased_at, i)?, *amount)))
            .collect()
    }

    /// When the whole credit expires: the end of the term.
    ///
    /// # Errors
    /// A message when the date is out of range.
    pub fn expires_at(&self, purchased_at: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        let months = u32::try_from(self.monthly_release.len()).map_err(|e| e.to_string())?;
        add_months_clamped(purchased_at, months)
    }

    /// Credit available at `at`: everything released by then, minus what was already `used`; nothing once the
    /// term has ended (unused credit expires).
    ///
    /// # Errors
    /// A message when the dates are out of range.
    pub fn available_at(
        &self,
        purchased_at: DateTime<Utc>,
        at: DateTime<Utc>,
        used: Decimal,
    ) -> Result<Decimal, String> {
        if at >= self.expires_at(purchased_at)? || at < purchased_at {
            return Ok(Decimal::ZERO);
        }
        let released = exact::sum(
            self.releases(purchased_at)?
                .into_iter()
                .filter(|(when, _)| *when <= at)
                .map(|(_, amount)| amount),
            "released credit",
        )
        .map_err(|e| e.to_string())?;
        Ok(exact::sub(released, used, "available credit").map_err(|e| e.to_string())?.max(Decimal::ZERO))
    }
}

/// Splits `credit` into `months` parts in minor units that sum exactly to it, none differing by more than one
/// minor unit: part `i` is `⌊credit·i/months⌋ − ⌊credit·(i−1)/months⌋`, rounding down to the minor unit
/// (cumulative floor allocation, so no cent is created or lost).
///
/// # Errors
/// [`crate::Error::Overflow`] when the credit is too large.
pub fn release_schedule(currency: Currency, credit: Decimal, months: u32) -> Result<Vec<Decimal>> {
    let mut parts = Vec::with_capacity(months as usize);
    let mut released = Decimal::ZERO;
    for i in 1..=months {
        let cumulative = if i == months {
            credit
        } else {
            let share = exact::mul(credit, Decimal::from(i), "credit release")?
                .checked_div(Decimal::from(months))
                .ok_or(crate::Error::Overflow { context: "credit release" })?;
            round_to(share, currency.exponent(), Rounding::Down)
        };
        parts.push(exact::sub(cumulative, released, "credit release")?);
        released = cumulative;
    }
    Ok(parts)
}

/// The result of paying an invoice total from prepaid credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditApplication {
    /// Credit used (non-negative): `min(available, total)`.
    pub applied: Decimal,
    /// What remains to be paid.
    pub amount_due: Decimal,
    /// Credit left afterwards.
    pub remaining: Decimal,
}

/// Pays `total` (rounded) from `available` credit.
///
/// # Errors
/// [`crate::Error::Overflow`] when the amounts cannot be subtracted exactly.
pub fn apply_credit(total: Decimal, available: Decimal) -> Result<CreditApplication> {
    let applied = total.min(available).max(Decimal::ZERO);
    Ok(CreditApplication {
        applied,
        amount_due: exact::sub(total, applied, "credit application")?,
        remaining: exact::sub(available, applied, "credit application")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PriceBook;
    use crate::period::utc_midnight;
    use crate::testing::d;

    fn terms(credit: &str) -> Result<CommitmentTerms, String> {
        let book = PriceBook::default_book().unwrap();
        CommitmentTerms::select(book.commitment().unwrap(), book.currency(), d(credit))
    }

    #[test]
    fn the_credit_picks_its_bracket() {
        assert_eq!(terms("3333").unwrap().discount, d("0.10"));
        assert_eq!(terms("24999.99").unwrap().discount, d("0.10"));
        assert_eq!(terms("25000").unwrap().discount, d("0.20"));
        assert_eq!(terms("80000").unwrap().discount, d("0.25"));
        assert_eq!(terms("153847").unwrap().discount, d("0.35"));
        assert_eq!(terms("153847").unwrap().price, d("100000.55"));
    }

    #[test]
    fn a_credit_below_the_minimum_is_refused() {
        assert_eq!(terms("3332.99").unwrap_err(), "must be at least the minimum credit of 3333");
        assert!(terms("5000.001").is_err());
    }

    #[test]
    fn releases_sum_exactly_to_the_credit() {
        let t = terms("25000").unwrap();
        assert_eq!(t.monthly_release.len(), 12);
        assert_eq!(t.monthly_release.iter().sum::<Decimal>(), d("25000"));
        assert_eq!(t.monthly_release[0], d("2083.33"));
        assert_eq!(t.monthly_release[2], d("2083.34"));
        let t = terms("3333").unwrap();
        assert!(t.monthly_release.iter().all(|p| *p == d("277.75")));
    }

    #[test]
    fn available_credit_rolls_over_and_expires() {
        let t = terms("3333").unwrap();
        let bought = utc_midnight(2026, 1, 31).unwrap();
        assert_eq!(t.available_at(bought, bought, Decimal::ZERO).unwrap(), d("277.75"));
        // Feb 28 is the clamped second release.
        assert_eq!(
            t.available_at(bought, utc_midnight(2026, 2, 28).unwrap(), d("100")).unwrap(),
            d("455.50")
        );
        assert_eq!(
            t.available_at(bought, utc_midnight(2027, 1, 30).unwrap(), Decimal::ZERO).unwrap(),
            d("3333")
        );
        assert_eq!(
            t.available_at(bought, utc_midnight(2027, 1, 31).unwrap(), Decimal::ZERO).unwrap(),
            d("0")
        );
    }

    #[test]
    fn credit_pays_what_it_can_and_the_rest_is_due() {
        assert_eq!(
            apply_credit(d("500.00"), d("277.75")).unwrap(),
            CreditApplication { applied: d("277.75"), amount_due: d("222.25"), remaining: d("0") }
        );
        assert_eq!(
            apply_credit(d("100.00"), d("277.75")).unwrap(),
            CreditApplication { applied: d("100.00"), amount_due: d("0"), remaining: d("177.75") }
        );
    }
}
