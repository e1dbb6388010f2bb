//! What is priced: usage and the customer's choices, as they arrive (a pricing-page state, a CLI request file, or
//! a closed period's measured usage in the service).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Issue, Result};
use crate::period::BillingPeriod;
use crate::quantity::Quantity;
use crate::wire::Num;

/// A request to price usage against a price book.
///
/// JSON shape (every field but `usage` optional):
/// `{"usage": {"events": 2000000}, "addons": ["group_analytics", "boost"], "limits": {"product_analytics": "200"},
///   "commitment": {"yearly_credit": "25000"}, "credit_balance": "500", "period": {"start": …, "end": …}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// Quantity per meter for the period.
    pub usage: BTreeMap<String, Quantity>,
    /// Chosen optional add-ons and platform add-ons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addons: Vec<AddonChoice>,
    /// Spend limit per product key, in whole currency units.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Num>,
    /// A self-selected commitment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<CommitmentChoice>,
    /// Prepaid credit available to pay this bill. When given, the bill is settled as an invoice: priced at list and
    /// paid from credit (the commitment discount was already realized in the credit's price). When absent, a
    /// commitment shows as a discount line: what the month effectively costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_balance: Option<Num>,
    /// The billing period; needed only to prorate add-ons that start mid-period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<BillingPeriod>,
}

/// An add-on choice: its key, or its key and the instant it was added (prorated from there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, expecting = "an add-on key, or {\"key\": …, \"from\": <RFC 3339 instant>}")]
pub enum AddonChoice {
    /// Chosen for the whole period.
    Key(String),
    /// Chosen from an instant in the period.
    From {
        /// The add-on key.
        key: String,
        /// When it was added.
        from: DateTime<Utc>,
    },
}

impl AddonChoice {
    /// The add-on key.
    pub fn key(&self) -> &str {
        match self {
            AddonChoice::Key(key) | AddonChoice::From { key, .. } => key,
        }
    }

    /// When it was added, if mid-period.
    pub fn from(&self) -> Option<DateTime<Utc>> {
        match self {
            AddonChoice::Key(_) => None,
            AddonChoice::From { from, .. } => Some(*from),
        }
    }
}

/// A chosen commitment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitmentChoice {
    /// Face value of the yearly prepaid credit.
    pub yearly_credit: Num,
}

impl QuoteRequest {
    /// Parses a request from JSON text.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] naming the field at fault (JSON syntax, a wrong type, an unknown field, a
    /// negative or too precise quantity, a JSON float where a decimal string is needed).
    ///
    /// # Examples
    /// ```
    /// use billing_core::QuoteRequest;
    /// let req = QuoteRequest::from_json(r#"{"usage": {"events": 2000000}}"#)?;
    /// assert_eq!(req.usage["events"].to_string(), "2000000");
    /// let err = QuoteRequest::from_json(r#"{"usage": {"events": -1}}"#).unwrap_err();
    /// assert!(err.to_string().contains("usage.events"));
    /// # Ok::<(), billing_core::Error>(())
    /// ```
    pub fn from_json(text: &str) -> Result<QuoteRequest> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            Error::InvalidRequest(vec![Issue::new(
                e.path().to_string().trim_start_matches('.'),
                e.inner().to_string(),
            )])
        })
    }
}
