//! Spend caps set by the admin or the customer: a cap lowered below what the period already bills is pinned there.

use billing_core::Rounding;
use rust_decimal::Decimal;

use super::service::{invalid, Failure, Outcome, Service};
use crate::store::{AlertRow, CredentialKind, CustomerRow, LimitRow};
use crate::time::micros;

impl Service {
    /// Sets and removes caps (each change recorded with the kind of credential `by` which it was made), after the problems the caller already found (`issues`), reporting them all together.
    /// A cap lowered below what the current period already bills is pinned at that amount
    /// (rounded up to whole units) for this period, and applies in full from the next.
    ///
    /// # Errors
    /// `Invalid` (unknown product, a cap outside the book's rules), `NotFound`.
    pub async fn set_limits(
        &self,
        customer: &CustomerRow,
        changes: Vec<(String, Option<Decimal>)>,
        mut issues: Vec<billing_core::Issue>,
        by: CredentialKind,
    ) -> Outcome<()> {
        let now = self.now();
        let book = self.book_at(now);
        let mut valid = Vec::new();
        for (product, amount) in changes {
            let path = format!("limits.{}", billing_core::error::echo(&product));
            if book.product(&product).is_none() {
                issues.push(billing_core::Issue::new(
                    path,
                    format!("no product `{}` in the price book", billing_core::error::echo(&product)),
                ));
                continue;
            }
            match amount {
                None => valid.push((product, None)),
                Some(a) => match billing_core::SpendLimit::new(a, book.spend_limits()) {
                    Err(m) => issues.push(billing_core::Issue::new(path, m)),
                    Ok(limit) => {
                        let whole =
                            i64::try_from(limit.amount().trunc()).map_err(|_| invalid(&path, "too large"))?;
                        valid.push((product, Some(whole)));
                    }
                },
            }
        }
        if !issues.is_empty() {
            return Err(Failure::Invalid(issues));
        }
        // What this period bills now, per product, to pin a lowered cap.
        let period = Self::period_of(customer, now).ok();
        let current = match period {
            Some(p) => Some(self.bill_for(customer, &self.store.limits(&customer.id).await?, p).await?.2),
            None => None,
        };
        let mut rows = Vec::new();
        for (product, amount) in valid {
            let row = amount.map(|amount| {
                let billed = current.as_ref().and_then(|bill| {
                    let list = billing_core::exact::sum(
                        bill.lines
                            .iter()
                            .filter(|l| l.product.as_deref() == Some(&product))
                            .map(|l| l.amount),
                        "current bill",
                    )
                    .ok()?;
                    let factor =
                        bill.commitment.as_ref().map_or(Decimal::ONE, |c| Decimal::ONE - c.discount_rate);
                    let net = billing_core::exact::mul(list, factor, "current bill").ok()?;
                    i64::try_from(book.currency().round(net, Rounding::HalfAwayFromZero).ceil()).ok()
                });
                let pinned = match (period, billed) {
                    (Some(p), Some(billed)) if billed > amount => Some((micros(p.start()), billed)),
                    _ => None,
                };
                LimitRow { product: product.clone(), amount, pinned }
            });
            rows.push((product, row));
        }
        self.store.set_limits(&customer.id, &rows, micros(now), by).await?;
        Ok(())
    }

    /// A customer's caps.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn limits(&self, customer_id: &str) -> Outcome<Vec<LimitRow>> {
        Ok(self.store.limits(customer_id).await?)
    }

    /// The alert thresholds a customer's caps reached.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn alerts(&self, customer_id: &str) -> Outcome<Vec<AlertRow>> {
        Ok(self.store.alerts(customer_id).await?)
    }
}
