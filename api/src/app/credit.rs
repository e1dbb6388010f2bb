//! Commitments and their credit ledger: releases and expiries derived from the terms bought, consumption and
//! returns stored; what credit a period may use (soonest to expire first).

use billing_core::{BillingPeriod, CommitmentTerms};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::service::{instant, invalid, Failure, Outcome, Service};
use crate::secret::new_id;
use crate::store::{CommitmentRow, CreditEntry, CustomerRow};
use crate::time::micros;

/// One line of a customer's credit ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// When it takes effect.
    pub at: DateTime<Utc>,
    /// `release`, `consumption`, `void_return` or `expiry`.
    pub kind: &'static str,
    /// Signed amount.
    pub amount: Decimal,
    /// The commitment whose credit moved.
    pub commitment_id: String,
    /// The invoice that moved it (consumption and returns).
    pub invoice_id: Option<String>,
}

/// A customer's credit: every movement up to an instant, and the balance then.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// Oldest first.
    pub entries: Vec<LedgerEntry>,
    /// Σ entries: the credit available then.
    pub balance: Decimal,
}

pub(super) fn parse_terms(c: &CommitmentRow) -> Result<CommitmentTerms, String> {
    serde_json::from_str(&c.terms).map_err(|e| format!("commitment {}: stored terms unreadable: {e}", c.id))
}

pub(super) fn parse_amount(text: &str) -> Result<Decimal, String> {
    text.parse::<Decimal>().map_err(|e| format!("stored credit amount `{text}` unreadable: {e}"))
}

/// Σ of a commitment's stored movements up to `at` (consumption negative, returns positive).
pub(super) fn moved(c: &CommitmentRow, credits: &[CreditEntry], at: i64) -> Result<Decimal, String> {
    credits.iter().filter(|e| e.commitment_id == c.id && e.at <= at).try_fold(Decimal::ZERO, |sum, e| {
        sum.checked_add(parse_amount(&e.amount)?).ok_or_else(|| "credit total out of range".to_owned())
    })
}

/// The credit each commitment has available at `at`: released by then, less what invoices used, nothing once
/// expired (pricing-semantics §5). Ordered by expiry, the order credit is used in.
pub fn available_credit(
    commitments: &[CommitmentRow],
    credits: &[CreditEntry],
    at: DateTime<Utc>,
) -> Result<Vec<(String, Decimal)>, String> {
    let mut out = Vec::new();
    let mut by_expiry: Vec<&CommitmentRow> = commitments.iter().collect();
    by_expiry.sort_by_key(|c| (c.expires_at, c.starts_at));
    for c in by_expiry {
        let terms = parse_terms(c)?;
        let used = -moved(c, credits, micros(at))?;
        let available = terms.available_at(instant(c.starts_at).map_err(|_| "bad instant")?, at, used)?;
        if available > Decimal::ZERO {
            out.push((c.id.clone(), available));
        }
    }
    Ok(out)
}

/// The commitment whose terms price a period (its discount sets what a cap buys): the latest one whose term
/// overlaps the period.
pub(super) fn commitment_for(commitments: &[CommitmentRow], period: BillingPeriod) -> Option<&CommitmentRow> {
    commitments
        .iter()
        .filter(|c| c.starts_at < micros(period.end()) && c.expires_at > micros(period.start()))
        .max_by_key(|c| (c.starts_at, c.created_at))
}

/// Splits the credit an invoice used over the commitments it was available from, soonest to expire first.
pub(super) fn allocate(applied: Decimal, available: &[(String, Decimal)]) -> Vec<(String, Decimal)> {
    let mut left = applied;
    let mut out = Vec::new();
    for (id, amount) in available {
        if left <= Decimal::ZERO {
            break;
        }
        let take = left.min(*amount);
        out.push((id.clone(), take));
        left -= take;
    }
    out
}

/// A decimal's text, as `Display` writes it (billing-core's faster equivalent).
pub(super) fn text(d: Decimal) -> String {
    billing_core::wire::DecimalText::new(d).as_str().to_owned()
}

impl Service {
    /// Buys a commitment for a customer: the terms from the price book in force at its start.
    ///
    /// # Errors
    /// `Invalid` (a credit below the minimum, no commitment offer, a start before the first period), `Conflict`
    /// (`period_closed`: a start in an invoiced period).
    pub async fn buy_commitment(
        &self,
        customer: &CustomerRow,
        yearly_credit: Decimal,
        start: Option<DateTime<Utc>>,
    ) -> Outcome<(CommitmentRow, CommitmentTerms)> {
        let now = self.now();
        let start = match start {
            Some(s) => s,
            None => Service::period_of(customer, now)?.start(),
        };
        Service::period_of(customer, start)
            .map_err(|_| invalid("start", "is before the customer's first period"))?;
        if micros(start) < customer.open_from {
            return Err(Failure::Closed("the commitment would start in a period already invoiced".into()));
        }
        let book = self.book_at(start);
        let Some(offer) = book.commitment() else {
            return Err(invalid("yearly_credit", "the price book offers no commitment"));
        };
        let terms = CommitmentTerms::select(offer, book.currency(), yearly_credit)
            .map_err(|m| invalid("yearly_credit", m))?;
        let expires = terms.expires_at(start).map_err(|m| invalid("start", m))?;
        let row = CommitmentRow {
            id: new_id("cm_").map_err(|m| invalid("id", m))?,
            customer_id: customer.id.clone(),
            yearly_credit: yearly_credit.to_string(),
            terms: serde_json::to_string(&terms).map_err(|e| invalid("terms", e.to_string()))?,
            starts_at: micros(start),
            expires_at: micros(expires),
            created_at: micros(now),
        };
        self.store.insert_commitment(&row).await?;
        Ok((row, terms))
    }

    /// A customer's credit ledger at `at`: releases, consumption, returns and expiries up to then, and the balance.
    ///
    /// # Errors
    /// Storage errors, unreadable stored terms.
    pub async fn ledger(
        &self,
        customer: &CustomerRow,
        at: DateTime<Utc>,
    ) -> Outcome<(Vec<CommitmentRow>, Ledger)> {
        let commitments = self.store.commitments(&customer.id).await?;
        let credits = self.store.credit_entries(&customer.id).await?;
        let corrupt = |m: String| Failure::Store(crate::store::StoreError::Corrupt(m));
        let mut entries = Vec::new();
        for c in &commitments {
            let terms = parse_terms(c).map_err(corrupt)?;
            let start = instant(c.starts_at)?;
            let mut released = Decimal::ZERO;
            for (when, amount) in terms.releases(start).map_err(corrupt)? {
                if when <= at && when < instant(c.expires_at)? {
                    released += amount;
                    entries.push(LedgerEntry {
                        at: when,
                        kind: "release",
                        amount,
                        commitment_id: c.id.clone(),
                        invoice_id: None,
                    });
                }
            }
            for e in credits.iter().filter(|e| e.commitment_id == c.id && e.at <= micros(at)) {
                entries.push(LedgerEntry {
                    at: instant(e.at)?,
                    kind: if e.kind == "consumption" { "consumption" } else { "void_return" },
                    amount: parse_amount(&e.amount).map_err(corrupt)?,
                    commitment_id: c.id.clone(),
                    invoice_id: Some(e.invoice_id.clone()),
                });
            }
            // Whatever is left at the end of the term expires with it.
            if micros(at) >= c.expires_at {
                let left = released + moved(c, &credits, micros(at)).map_err(corrupt)?;
                if left != Decimal::ZERO {
                    entries.push(LedgerEntry {
                        at: instant(c.expires_at)?,
                        kind: "expiry",
                        amount: -left,
                        commitment_id: c.id.clone(),
                        invoice_id: None,
                    });
                }
            }
        }
        entries.sort_by(|a, b| a.at.cmp(&b.at).then(a.commitment_id.cmp(&b.commitment_id)));
        let balance = entries.iter().map(|e| e.amount).sum();
        Ok((commitments, Ledger { entries, balance }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn d(s: &str) -> Decimal {
        s.parse().unwrap_or_default()
    }

    #[test]
    pub(super) fn credit_is_used_soonest_to_expire_first_and_never_more_than_applied() {
        let available = vec![("a".to_owned(), d("100")), ("b".to_owned(), d("50"))];
        assert_eq!(allocate(d("120.50"), &available), vec![("a".into(), d("100")), ("b".into(), d("20.50"))]);
        assert_eq!(allocate(d("30"), &available), vec![("a".into(), d("30"))]);
        assert!(allocate(Decimal::ZERO, &available).is_empty());
    }
}
