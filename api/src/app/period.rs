//! The request of a customer's period, as the invoice prices it: stored usage, the add-ons over the period, the
//! caps in force, the commitment and the credit available at the period's last instant.

use std::collections::BTreeMap;

use billing_core::{AddonChoice, BillingPeriod, CommitmentChoice, PriceBook, QuoteRequest};
use rust_decimal::Decimal;

use super::credit::available_credit;
use super::credit::commitment_for;
use super::service::{from_micros, instant, invalid, Outcome, Service};
use crate::store::{CustomerRow, Due, LimitRow};
use crate::time::micros;

/// The invoice view of a period: the request billing-core prices (usage, add-ons, caps, the commitment and the
/// credit available at the period's last instant), and the credit available per commitment.
pub fn period_request(
    service: &Service,
    book: &PriceBook,
    due: &Due,
    period: BillingPeriod,
) -> Outcome<(QuoteRequest, Vec<(String, Decimal)>)> {
    let Due { customer, totals, limits, commitments, credits } = due;
    let mut request = service.usage_request(book, customer, totals, limits, period)?;
    let last_instant = period.end() - chrono::Duration::microseconds(1);
    let available = available_credit(commitments, credits, last_instant).map_err(|m| invalid("credit", m))?;
    if let Some(c) = commitment_for(commitments, period) {
        let credit = c.yearly_credit.parse::<Decimal>().map_err(|e| invalid("commitment", e.to_string()))?;
        request.commitment = Some(CommitmentChoice { yearly_credit: billing_core::wire::Num(credit) });
        // Normalized: the request is stored as JSON and must price the same when read back.
        let balance =
            billing_core::exact::sum(available.iter().map(|(_, a)| *a), "credit balance")?.normalize();
        request.credit_balance = Some(billing_core::wire::Num(balance));
    }
    Ok((request, available))
}

/// The caps in force for `period`, from a customer's stored caps: a cap lowered during a period is pinned there.
fn caps_in_force(limits: &[LimitRow], period: BillingPeriod) -> BTreeMap<String, billing_core::wire::Num> {
    limits
        .iter()
        .map(|l| {
            let amount = match l.pinned {
                Some((start, pinned)) if start == micros(period.start()) => pinned,
                _ => l.amount,
            };
            (l.product.clone(), billing_core::wire::Num(Decimal::from(amount)))
        })
        .collect()
}

impl Service {
    /// The request of a customer's usage (`totals`) in `period`: add-ons over the period, caps in force.
    ///
    /// # Errors
    /// `Invalid` usage out of range.
    pub fn usage_request(
        &self,
        book: &PriceBook,
        customer: &CustomerRow,
        totals: &[crate::store::MeterTotal],
        limits: &[LimitRow],
        period: BillingPeriod,
    ) -> Outcome<QuoteRequest> {
        let mut usage = BTreeMap::new();
        for total in totals {
            if book.has_meter(&total.meter) {
                let sum = total
                    .events_micros
                    .checked_add(total.reported_micros)
                    .ok_or_else(|| invalid("usage", "the period's usage is out of range"))?;
                usage.insert(total.meter.clone(), from_micros(sum)?);
            }
        }
        Ok(QuoteRequest {
            usage,
            addons: self.addon_choices(customer, book, period)?,
            limits: caps_in_force(limits, period),
            period: Some(period),
            ..QuoteRequest::default()
        })
    }

    /// A customer's add-ons as a request for `period`: platform add-ons switched on or off during it are prorated
    /// to the part of the period they were on.
    pub(super) fn addon_choices(
        &self,
        customer: &CustomerRow,
        book: &PriceBook,
        period: BillingPeriod,
    ) -> Outcome<Vec<AddonChoice>> {
        let mut choices: Vec<AddonChoice> = Vec::new();
        for a in &customer.addons {
            let since = instant(a.since)?;
            let until = a.until.map(instant).transpose()?;
            if since >= period.end() || until.is_some_and(|u| u <= period.start() || u <= since) {
                continue;
            }
            if choices.iter().any(|c| c.key() == a.key) {
                continue;
            }
            let choice = if book.platform_addon(&a.key).is_some() {
                let from = (since > period.start()).then_some(since);
                let until = until.filter(|u| *u < period.end());
                if from.is_none() && until.is_none() {
                    AddonChoice::Key(a.key.clone())
                } else {
                    AddonChoice::Part { key: a.key.clone(), from, until }
                }
            } else if book.addon(&a.key).is_some() {
                AddonChoice::Key(a.key.clone())
            } else {
                continue;
            };
            choices.push(choice);
        }
        Ok(choices)
    }
}
