//! Events and webhook endpoints: what events there are, the endpoints that receive them (created, changed, deleted,
//! their secret rotated), the events log, the deliveries log and a delivery retried by hand. Sending is in
//! `delivery.rs`.

use chrono::{DateTime, Utc};

pub use super::service::WebhookSettings;
use super::service::{invalid, Failure, Outcome, Service};
use crate::store::{DeliveryRow, EndpointRow, EventFilter, NewOutboxEvent, OutboxEvent};
use crate::time::micros;

/// Every event type, in the order the README lists them.
pub const EVENT_TYPES: &[&str] = &[
    "spend_alert.crossed",
    "spend_cap.reached",
    "invoice.created",
    "invoice.issued",
    "invoice.paid",
    "invoice.voided",
    "invoice_run.completed",
    "usage.rejected_for_closed_period",
    "webhook_endpoint.disabled",
];

/// How long a rotated secret keeps signing beside the new one: a day.
pub const ROTATION_OVERLAP_MICROS: i64 = 24 * 60 * 60 * 1_000_000;

/// A new endpoint, as asked for.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// Where to send.
    pub url: String,
    /// What to send.
    pub event_types: Vec<String>,
    /// A note.
    pub description: Option<String>,
}

/// A change of an endpoint: each field given replaces the stored one.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    /// A new URL.
    pub url: Option<String>,
    /// New types.
    pub event_types: Option<Vec<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// A new note (`Some(None)` removes it).
    pub description: Option<Option<String>>,
}

impl Service {
    /// Checks a URL: `http(s)://` with a host, and, unless private addresses are allowed, a host that is not an
    /// address in a private, loopback or link-local range. (Names are resolved, and checked, at each delivery.)
    fn check_url(&self, url: &str) -> Outcome<()> {
        let target = crate::outbound::parse_url(url).map_err(|m| invalid("url", m))?;
        if let Ok(ip) = target.host.parse::<std::net::IpAddr>() {
            if !self.webhooks.allow_private && !crate::outbound::is_public(ip) {
                return Err(invalid(
                    "url",
                    format!(
                        "{ip} is a private, loopback or link-local address: start tally with \
                         --webhook-allow-private to send webhooks to one"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_types(types: &[String]) -> Outcome<()> {
        if types.is_empty() || types.len() > EVENT_TYPES.len() + 1 {
            return Err(invalid("event_types", "must list 1 to 10 event types (or \"*\" for all)"));
        }
        for (i, t) in types.iter().enumerate() {
            if t != "*" && !EVENT_TYPES.contains(&t.as_str()) {
                return Err(invalid(
                    &format!("event_types[{i}]"),
                    format!(
                        "`{}` is not an event type ({})",
                        billing_core::error::echo(t),
                        EVENT_TYPES.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_description(description: Option<&str>) -> Outcome<()> {
        match description {
            Some(d) if d.chars().count() > 500 => {
                Err(invalid("description", "is longer than 500 characters"))
            }
            _ => Ok(()),
        }
    }

    /// Registers an endpoint with a new signing secret (answered once, here).
    ///
    /// # Errors
    /// `Invalid` for a URL, type or description breaking the rules.
    pub async fn create_endpoint(&self, new: NewEndpoint) -> Outcome<EndpointRow> {
        self.check_url(&new.url)?;
        Self::check_types(&new.event_types)?;
        Self::check_description(new.description.as_deref())?;
        let now = micros(self.now());
        let types = distinct(new.event_types);
        let endpoint = EndpointRow {
            id: crate::secret::new_id("we_").map_err(Failure::Internal)?,
            url: new.url,
            description: new.description,
            event_types: types,
            enabled: true,
            secret: crate::signature::new_secret().map_err(Failure::Internal)?,
            previous_secret: None,
            previous_until: None,
            failing_since: None,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        if !self.store.put_endpoint(&endpoint, None).await? {
            return Err(Failure::Conflict("an endpoint with that id exists".into()));
        }
        Ok(endpoint)
    }

    /// Every endpoint.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn endpoints(&self) -> Outcome<Vec<EndpointRow>> {
        Ok(self.store.endpoints(None).await?)
    }

    /// An endpoint.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn endpoint(&self, id: &str) -> Outcome<EndpointRow> {
        self.store.endpoints(Some(id)).await?.into_iter().next().ok_or(Failure::NotFound("webhook endpoint"))
    }

    /// Changes an endpoint. Enabling it again clears why it was disabled and its run of failures.
    ///
    /// # Errors
    /// `NotFound`; `Invalid` as for a new one; `Conflict` when it changed meanwhile (nothing is overwritten).
    pub async fn change_endpoint(&self, id: &str, change: EndpointChange) -> Outcome<EndpointRow> {
        let mut endpoint = self.endpoint(id).await?;
        let read_at = endpoint.updated_at;
        if let Some(url) = change.url {
            self.check_url(&url)?;
            endpoint.url = url;
        }
        if let Some(types) = change.event_types {
            Self::check_types(&types)?;
            endpoint.event_types = distinct(types);
        }
        if let Some(description) = change.description {
            Self::check_description(description.as_deref())?;
            endpoint.description = description;
        }
        if let Some(enabled) = change.enabled {
            if enabled && !endpoint.enabled {
                (endpoint.disabled_reason, endpoint.failing_since) = (None, None);
            }
            endpoint.enabled = enabled;
        }
        self.replace_endpoint(endpoint, read_at).await
    }

    /// Stores a changed endpoint over the one read at `read_at`, its `updated_at` moved on.
    ///
    /// # Errors
    /// `NotFound` when it is gone; `Conflict` when it changed since it was read.
    async fn replace_endpoint(&self, mut endpoint: EndpointRow, read_at: i64) -> Outcome<EndpointRow> {
        // Strictly later than the version read, so the next change can tell them apart.
        endpoint.updated_at = micros(self.now()).max(read_at + 1);
        if self.store.put_endpoint(&endpoint, Some(read_at)).await? {
            return Ok(endpoint);
        }
        self.endpoint(&endpoint.id).await?;
        Err(Failure::Conflict(
            "the endpoint changed while this change was made: read it again, then retry".into(),
        ))
    }

    /// A new signing secret (answered once, here); the old one keeps signing beside it for a day.
    ///
    /// # Errors
    /// `NotFound`; `Conflict` when it changed meanwhile.
    pub async fn rotate_endpoint_secret(&self, id: &str) -> Outcome<EndpointRow> {
        let mut endpoint = self.endpoint(id).await?;
        let read_at = endpoint.updated_at;
        let new = crate::signature::new_secret().map_err(Failure::Internal)?;
        endpoint.previous_secret = Some(std::mem::replace(&mut endpoint.secret, new));
        endpoint.previous_until = Some(micros(self.now()) + ROTATION_OVERLAP_MICROS);
        self.replace_endpoint(endpoint, read_at).await
    }

    /// Deletes an endpoint and its pending deliveries.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn delete_endpoint(&self, id: &str) -> Outcome<()> {
        if self.store.delete_endpoint(id).await? {
            Ok(())
        } else {
            Err(Failure::NotFound("webhook endpoint"))
        }
    }

    /// Events, newest first, each with its data (an invoice event not dispatched yet is rendered as the dispatcher
    /// will freeze it).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn events(
        &self,
        filter: &EventFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Outcome<Vec<OutboxEvent>> {
        let mut events = self.store.outbox_events(filter, before, limit).await?;
        for e in &mut events {
            self.fill_data(&mut e.event).await?;
        }
        Ok(events)
    }

    /// An event.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn event(&self, id: &str) -> Outcome<OutboxEvent> {
        let mut event = self.store.outbox_event(id).await?.ok_or(Failure::NotFound("event"))?;
        self.fill_data(&mut event.event).await?;
        Ok(event)
    }

    async fn fill_data(&self, event: &mut NewOutboxEvent) -> Outcome<()> {
        if let (None, Some(invoice)) = (&event.data, &event.invoice_id) {
            let row = self.store.invoice(invoice).await?.ok_or(Failure::NotFound("invoice"))?;
            event.data = Some(self.render_invoice_event(&event.kind, &row)?);
        }
        Ok(())
    }

    /// An invoice event's data: the invoice as it was at the event, as JSON text.
    ///
    /// # Errors
    /// As [`Service::invoice_document`].
    pub fn render_invoice_event(&self, kind: &str, invoice: &crate::store::InvoiceRow) -> Outcome<String> {
        let document = self.invoice_at_event(kind, invoice)?;
        serde_json::to_string(&document).map_err(|e| Failure::Internal(e.to_string()))
    }

    /// An endpoint's deliveries, newest first, with their attempts.
    ///
    /// # Errors
    /// `NotFound` for an unknown endpoint.
    pub async fn deliveries(
        &self,
        endpoint_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Outcome<Vec<DeliveryRow>> {
        self.endpoint(endpoint_id).await?;
        Ok(self.store.deliveries(Some(endpoint_id), None, before, limit).await?)
    }

    /// Makes a delivery due now (a worker sends it within moments, whatever its state was).
    ///
    /// # Errors
    /// `NotFound`; `InvalidState` when its endpoint is disabled.
    pub async fn retry_delivery(&self, id: &str) -> Outcome<DeliveryRow> {
        let delivery = self.store.deliveries(None, Some(id), None, 1).await?;
        let delivery = delivery.into_iter().next().ok_or(Failure::NotFound("webhook delivery"))?;
        if !self.endpoint(&delivery.endpoint_id).await?.enabled {
            return Err(Failure::InvalidState("its endpoint is disabled: enable it first".into()));
        }
        self.store.retry_delivery(id, micros(self.now())).await?;
        let delivery = self.store.deliveries(None, Some(id), None, 1).await?;
        delivery.into_iter().next().ok_or(Failure::NotFound("webhook delivery"))
    }
}

/// The types, each once, in the order first given.
fn distinct(mut types: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    types.retain(|t| seen.insert(t.clone()));
    types
}

/// A new event with its data.
///
/// # Errors
/// `Internal` when there is no randomness for its id.
pub(super) fn new_event(
    kind: &str,
    customer_id: Option<&str>,
    data: &serde_json::Value,
    at: DateTime<Utc>,
) -> Outcome<NewOutboxEvent> {
    Ok(NewOutboxEvent {
        id: crate::secret::new_id("evt_").map_err(Failure::Internal)?,
        kind: kind.to_owned(),
        customer_id: customer_id.map(str::to_owned),
        data: Some(data.to_string()),
        invoice_id: None,
        created_at: micros(at),
    })
}
