//! The customer's billing page: portal sessions (as Stripe's billing-portal sessions), the history of cap changes,
//! and usage per day.
//!
//! A session starts as a link holding a single-use token (valid [`LINK_TTL_MICROS`]); opening it makes a browser
//! session for that one customer, held in a cookie whose secret, like the link's token, is stored only as its
//! SHA-256. The session ends after [`IDLE_MICROS`] without use, [`ABSOLUTE_MICROS`] after opening, when the admin
//! revokes it, or when the customer's key is rotated. Its CSRF token is derived from the cookie's secret, so it
//! needs no storage and a page can only carry it if it was rendered for that session.

use std::collections::BTreeMap;

use billing_core::{BillingPeriod, Quantity};
use subtle::ConstantTimeEq;

use super::service::{from_micros, Failure, Outcome, Service};
use crate::secret::{hash_secret, hex, new_id, new_secret, sha256_hex};
use crate::store::{CredentialKind, CustomerRow, LimitChange, PortalSessionRow};
use crate::time::{micros, MICROS_PER_DAY};

/// How long a portal link may be opened: 15 minutes.
pub const LINK_TTL_MICROS: i64 = 15 * 60 * 1_000_000;
/// A session ends after an hour without use.
pub const IDLE_MICROS: i64 = 60 * 60 * 1_000_000;
/// A session ends 12 hours after its link was opened, used or not.
pub const ABSOLUTE_MICROS: i64 = 12 * 60 * 60 * 1_000_000;

/// A new portal session and its link's token (shown once: only its hash is stored).
#[derive(Debug)]
pub struct NewPortalSession {
    /// The session.
    pub session: PortalSessionRow,
    /// The single-use token its link holds.
    pub token: String,
}

/// A live session and the secret its cookie holds (once, when the link is opened).
#[derive(Debug)]
pub struct OpenedSession {
    /// The session.
    pub session: PortalSessionRow,
    /// The cookie's secret.
    pub secret: String,
}

/// The CSRF token of the session whose cookie holds `secret`: every state-changing form of the page carries it.
pub fn csrf_token(secret: &str) -> String {
    sha256_hex(format!("tally-portal-csrf:{secret}").as_bytes())
}

/// Whether `given` is the CSRF token of the session whose cookie holds `secret` (in constant time).
pub fn csrf_matches(secret: &str, given: &str) -> bool {
    bool::from(csrf_token(secret).as_bytes().ct_eq(given.as_bytes()))
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::Internal(e.to_string())
}

impl Service {
    /// A new portal session for a customer, made by the admin or the customer's key (`by`).
    ///
    /// # Errors
    /// `NotFound` for an unknown customer.
    pub async fn create_portal_session(
        &self,
        customer_id: &str,
        by: CredentialKind,
    ) -> Outcome<NewPortalSession> {
        self.customer(customer_id).await?;
        let now = micros(self.now());
        let token = new_secret("pl_").map_err(internal)?;
        let session = PortalSessionRow {
            id: new_id("ps_").map_err(internal)?,
            customer_id: customer_id.to_owned(),
            link_expires_at: now + LINK_TTL_MICROS,
            opened_at: None,
            last_seen_at: None,
            expires_at: None,
            revoked_at: None,
            created_by: by.as_str().to_owned(),
            created_at: now,
        };
        self.store.insert_portal_session(&session, &hex(&hash_secret(&token))).await?;
        Ok(NewPortalSession { session, token })
    }

    /// Opens a portal link: the session and its cookie's secret, or `None` when the token names no link that may
    /// be opened now (unknown, used, expired or revoked: the caller is told no more than that).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn open_portal_link(&self, token: &str) -> Outcome<Option<OpenedSession>> {
        if token.is_empty() || token.len() > 256 {
            return Ok(None);
        }
        let now = micros(self.now());
        let secret = new_secret("pc_").map_err(internal)?;
        let session = self
            .store
            .open_portal_link(
                &hex(&hash_secret(token)),
                &hex(&hash_secret(&secret)),
                now,
                now + ABSOLUTE_MICROS,
            )
            .await?;
        Ok(session.map(|session| OpenedSession { session, secret }))
    }

    /// The live session of a cookie's secret, or `None`.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn portal_session(&self, secret: &str) -> Outcome<Option<PortalSessionRow>> {
        if secret.is_empty() || secret.len() > 256 {
            return Ok(None);
        }
        let now = micros(self.now());
        Ok(self.store.portal_session(&hex(&hash_secret(secret)), now, IDLE_MICROS).await?)
    }

    /// Ends a portal session (once; revoking it again answers it as it is).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn revoke_portal_session(&self, id: &str) -> Outcome<PortalSessionRow> {
        let now = micros(self.now());
        self.store.revoke_portal_session(id, now).await?.ok_or(Failure::NotFound("portal session"))
    }

    /// A customer's cap changes, newest first: `limit` of them before the change `before` (a cursor from the last
    /// page).
    ///
    /// # Errors
    /// `NotFound` for an unknown customer.
    pub async fn limit_history(
        &self,
        customer_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Outcome<Vec<LimitChange>> {
        self.customer(customer_id).await?;
        Ok(self.store.limit_changes(customer_id, before, limit).await?)
    }

    /// A customer's usage events of a period per meter and UTC day: for each meter, the quantity of every day of the
    /// period (days without events are zero), in day order.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn daily_usage(
        &self,
        customer: &CustomerRow,
        period: BillingPeriod,
    ) -> Outcome<BTreeMap<String, Vec<(chrono::DateTime<chrono::Utc>, Quantity)>>> {
        let start = micros(period.start());
        let end = micros(period.end());
        let first = start - start.rem_euclid(MICROS_PER_DAY);
        let days: Vec<i64> = (0..).map(|i| first + i * MICROS_PER_DAY).take_while(|d| *d < end).collect();
        let mut out: BTreeMap<String, Vec<(chrono::DateTime<chrono::Utc>, Quantity)>> = BTreeMap::new();
        for row in self.store.usage_daily(&customer.id, start).await? {
            let series = match out.entry(row.meter) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let zero = Quantity::new(rust_decimal::Decimal::ZERO).map_err(internal)?;
                    let mut series = Vec::with_capacity(days.len());
                    for d in &days {
                        series.push((super::service::instant(*d)?, zero));
                    }
                    e.insert(series)
                }
            };
            if let Ok(i) = days.binary_search(&row.day) {
                series[i].1 = from_micros(row.events_micros)?;
            }
        }
        Ok(out)
    }
}
