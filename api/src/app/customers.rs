//! Customers: creation with a first key, their add-ons (kept with when they were switched on and off), changes.

use chrono::{DateTime, Utc};

use super::service::{Failure, Outcome, Service};
use crate::secret::{hash_secret, hex, new_secret};
use crate::store::{AddonSince, CustomerRow};
use crate::time::{first_of_month, micros};

/// What a creation did.
#[derive(Debug)]
pub enum Created {
    /// A new customer, and its first key (shown once).
    New {
        /// The customer.
        customer: CustomerRow,
        /// Its key, in clear: nowhere else.
        api_key: String,
    },
    /// The same customer, created before: no key.
    Again(CustomerRow),
}

impl Service {
    /// Creates a customer with its first key, returned once (only its hash is stored). Creating a customer that
    /// exists with the same name, add-ons and anchor (a retried creation) answers it again, without a key.
    ///
    /// # Errors
    /// `Invalid` add-ons, `Conflict` when the id is taken by another customer.
    pub async fn create_customer(
        &self,
        id: &str,
        name: &str,
        anchor: Option<DateTime<Utc>>,
        addons: &[String],
    ) -> Outcome<Created> {
        if let Some(existing) = self.store.customer(id).await? {
            let same = existing.name == name
                && existing.addons.iter().filter(|a| a.until.is_none()).map(|a| &a.key).eq(addons.iter())
                && anchor.is_none_or(|a| micros(a) == existing.billing_anchor);
            if same {
                return Ok(Created::Again(existing));
            }
            return Err(Failure::Conflict(format!("customer `{id}` already exists")));
        }
        let now = self.now();
        let anchor = anchor.unwrap_or_else(|| first_of_month(now));
        let row = CustomerRow {
            id: id.to_owned(),
            name: name.to_owned(),
            billing_anchor: micros(anchor),
            addons: self.check_addons(addons, &[], micros(anchor), now)?,
            created_at: micros(now),
            updated_at: micros(now),
            open_from: micros(anchor),
            open_until: Some(micros(Self::period_of_anchor(anchor)?.end())),
        };
        let key = new_secret("tk_").map_err(|e| Failure::Internal(e.to_string()))?;
        if !self.store.insert_customer(&row, &hex(&hash_secret(&key))).await? {
            return Err(Failure::Conflict(format!("customer `{id}` already exists")));
        }
        Ok(Created::New { customer: row, api_key: key })
    }

    /// The add-on choices `keys` against the book in force, keeping the `since` of those already chosen. An add-on
    /// switched off keeps its entry, with `until` = now, while a period it was on in is not invoiced yet
    /// (`open_from`): that period bills it up to then. Switched on again in the same period, it resumes its entry.
    pub(super) fn check_addons(
        &self,
        keys: &[String],
        before: &[AddonSince],
        open_from: i64,
        now: DateTime<Utc>,
    ) -> Outcome<Vec<AddonSince>> {
        let book = self.book_at(now);
        let mut issues = Vec::new();
        let mut out: Vec<AddonSince> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let known = book.addon(key).is_some_and(|a| a.optional) || book.platform_addon(key).is_some();
            if !known {
                issues.push(billing_core::Issue::new(
                    format!("addons[{i}]"),
                    format!(
                        "`{}` is not an optional or platform add-on of the price book",
                        billing_core::error::echo(key)
                    ),
                ));
            } else if out.iter().any(|a| a.key == *key && a.until.is_none()) {
                issues.push(billing_core::Issue::new(
                    format!("addons[{i}]"),
                    format!("`{key}` is chosen twice"),
                ));
            } else {
                // Still on, or switched off in a period not invoiced yet (resumed: the gap is billed too, as one
                // add-on on for the whole span): its entry goes on.
                let resumed = before.iter().find(|a| a.key == *key && a.until.is_none_or(|u| u > open_from));
                let since = resumed.map_or(micros(now), |a| a.since);
                out.push(AddonSince { key: key.clone(), since, until: None });
            }
        }
        // Switched off now: kept, ended now, while a period it was on in is still to be invoiced.
        for a in before {
            let still_on = out.iter().any(|o| o.key == a.key);
            let ended = a.until.unwrap_or(micros(now));
            if !still_on && ended > open_from && a.since < ended {
                out.push(AddonSince { key: a.key.clone(), since: a.since, until: Some(ended) });
            }
        }
        if issues.is_empty() {
            Ok(out)
        } else {
            Err(Failure::Invalid(issues))
        }
    }

    /// A customer.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn customer(&self, id: &str) -> Outcome<CustomerRow> {
        self.store.customer(id).await?.ok_or(Failure::NotFound("customer"))
    }

    /// Changes a customer's name and add-ons.
    ///
    /// # Errors
    /// `NotFound`, or `Invalid` add-ons.
    pub async fn update_customer(
        &self,
        id: &str,
        name: Option<String>,
        addons: Option<Vec<String>>,
    ) -> Outcome<CustomerRow> {
        let mut row = self.customer(id).await?;
        let now = self.now();
        if let Some(name) = name {
            row.name = name;
        }
        if let Some(addons) = addons {
            row.addons = self.check_addons(&addons, &row.addons, row.open_from, now)?;
        }
        row.updated_at = micros(now);
        self.store.update_customer(&row).await?;
        Ok(row)
    }

    /// A page of customers after `cursor` (an id), at most `limit`.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn customers(&self, cursor: Option<&str>, limit: i64) -> Outcome<Vec<CustomerRow>> {
        Ok(self.store.customers(cursor, limit).await?)
    }
}
