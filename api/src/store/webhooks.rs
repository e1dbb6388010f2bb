//! The rows of events and their webhooks: the outbox, endpoints, deliveries and attempts.

use std::sync::Arc;

/// An event to store with the fact it reports (in the same transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEvent {
    /// `evt_…`.
    pub id: String,
    /// `spend_alert.crossed`, `invoice.created`, … (see `app::webhooks::EVENT_TYPES`).
    pub kind: String,
    /// The customer it concerns, if one.
    pub customer_id: Option<String>,
    /// Its JSON; `None` for an invoice event, whose data the dispatcher freezes from the invoice.
    pub data: Option<String>,
    /// The invoice of an invoice event.
    pub invoice_id: Option<String>,
    /// Made (micros).
    pub created_at: i64,
}

impl NewOutboxEvent {
    /// An event of an invoice's step, its data left to the dispatcher. Its id is the invoice's and the step's
    /// (`evt_in_….created`): each step happens once to an invoice, so the id is unique without drawing randomness
    /// for each of an invoice run's events.
    #[must_use]
    pub fn invoice(kind: &str, customer_id: &str, invoice_id: &str, at: i64) -> Self {
        let step = kind.strip_prefix("invoice.").unwrap_or(kind);
        NewOutboxEvent {
            id: format!("evt_{invoice_id}.{step}"),
            kind: kind.to_owned(),
            customer_id: Some(customer_id.to_owned()),
            data: None,
            invoice_id: Some(invoice_id.to_owned()),
            created_at: at,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Its place in the log (creation order, per database).
    pub seq: i64,
    /// The event as stored.
    pub event: NewOutboxEvent,
    /// Whether its deliveries are made (and its data frozen).
    pub dispatched: bool,
}

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this type.
    pub kind: Option<String>,
    /// Only this customer's.
    pub customer_id: Option<String>,
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    /// `we_…`.
    pub id: String,
    /// Where to send.
    pub url: String,
    /// A note.
    pub description: Option<String>,
    /// The types it receives (JSON array of strings; `*` for all).
    pub event_types: Vec<String>,
    /// Whether it receives anything.
    pub enabled: bool,
    /// The signing secret (`whsec_…`).
    pub secret: String,
    /// The secret before the last rotation, still signing until `previous_until`.
    pub previous_secret: Option<String>,
    /// Until when (micros).
    pub previous_until: Option<i64>,
    /// The first failure of the current run of failures (micros).
    pub failing_since: Option<i64>,
    /// Why tally disabled it, if it did.
    pub disabled_reason: Option<String>,
    /// Made (micros).
    pub created_at: i64,
    /// Last changed (micros).
    pub updated_at: i64,
}

impl EndpointRow {
    /// Whether it receives events of `kind`.
    #[must_use]
    pub fn subscribes(&self, kind: &str) -> bool {
        self.event_types.iter().any(|t| t == "*" || t == kind)
    }
}

/// One event to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// Its place in the log (creation order).
    pub seq: i64,
    /// `whd_…`.
    pub id: String,
    /// The event.
    pub event_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// `pending`, `succeeded` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (micros; meaningful while pending).
    pub next_attempt_at: i64,
    /// Made (micros).
    pub created_at: i64,
    /// Every attempt, first first.
    pub attempt_log: Vec<AttemptRow>,
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    /// 1, 2, …
    pub n: i64,
    /// Started (micros).
    pub at: i64,
    /// The answer's HTTP status; `None` when there was no answer.
    pub status: Option<i64>,
    /// How long it took (micros).
    pub latency_micros: i64,
    /// The first 1 KB of the answer's body.
    pub response: String,
    /// What went wrong without an answer (refused address, timeout, connection).
    pub error: Option<String>,
    /// Asked for by hand (`POST /v1/webhook-deliveries/{id}/retry`).
    pub manual: bool,
}

/// A delivery a worker holds (leased): what it must send, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub id: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// Whether this attempt was asked for by hand.
    pub manual: bool,
    /// The event (`data` frozen).
    pub event: NewOutboxEvent,
    /// The endpoint.
    pub endpoint: EndpointRow,
    /// The lease's token: the attempt is recorded only while it is still held.
    pub lease: String,
}

/// How many deliveries a claim may take: in all, and per endpoint counting those already in flight (so one slow or
/// dead endpoint cannot hold every slot of a worker).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimLimits {
    /// In all.
    pub total: usize,
    /// Per endpoint, in flight included.
    pub per_endpoint: usize,
    /// In flight now, by endpoint.
    pub busy: std::collections::BTreeMap<String, usize>,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    /// Delivered.
    Succeeded,
    /// Try again at (micros).
    RetryAt(i64),
    /// The schedule is over.
    Failed,
}

/// An attempt made, to record: the delivery as claimed, the attempt, what follows it, and (after a failure) the
/// event that disables its endpoint when the endpoint has been failing for at least that many micros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempted {
    /// The delivery, as leased.
    pub claimed: ClaimedDelivery,
    /// The attempt.
    pub attempt: AttemptRow,
    /// What follows.
    pub after: AfterAttempt,
    /// Disable the endpoint (with this event) when it has failed for this long.
    pub disable: Option<(i64, NewOutboxEvent)>,
}

/// Freezes an invoice event's data: the invoice as it was at the event (given the event and the invoice now).
pub type RenderFn =
    Arc<dyn Fn(&NewOutboxEvent, &crate::store::types::InvoiceRow) -> Result<String, String> + Send + Sync>;

/// One refused entry of a usage batch: its customer, period start (micros), meter and event id (events only).
pub(crate) type Refused<'a> = (&'a str, i64, &'a str, Option<&'a str>);

/// Event ids listed at most in a `usage.rejected_for_closed_period` event (its `count` says how many there were).
const REFUSED_IDS_LISTED: usize = 100;

/// The `usage.rejected_for_closed_period` events of a batch: one per customer with refused entries, written in the
/// batch's transaction. `kind` is `events` or `reports`.
pub(crate) fn closed_period_events(
    refused: &[Refused<'_>],
    kind: &str,
    now: i64,
) -> Result<Vec<NewOutboxEvent>, String> {
    let mut by_customer: std::collections::BTreeMap<&str, Vec<&Refused<'_>>> =
        std::collections::BTreeMap::new();
    for r in refused {
        by_customer.entry(r.0).or_default().push(r);
    }
    let instant = |m: i64| {
        chrono::DateTime::from_timestamp_micros(m)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_default()
    };
    let mut out = Vec::with_capacity(by_customer.len());
    for (customer, entries) in by_customer {
        let periods: std::collections::BTreeSet<i64> = entries.iter().map(|r| r.1).collect();
        let meters: std::collections::BTreeSet<&str> = entries.iter().map(|r| r.2).collect();
        let ids: Vec<&str> = entries.iter().filter_map(|r| r.3).take(REFUSED_IDS_LISTED).collect();
        let data = serde_json::json!({
            "customer_id": customer,
            "kind": kind,
            "count": entries.len(),
            "period_starts": periods.into_iter().map(instant).collect::<Vec<_>>(),
            "meters": meters,
            "event_ids": ids,
            "received_at": instant(now),
        });
        out.push(NewOutboxEvent {
            id: crate::secret::new_id("evt_")?,
            kind: "usage.rejected_for_closed_period".into(),
            customer_id: Some(customer.to_owned()),
            data: Some(data.to_string()),
            invoice_id: None,
            created_at: now,
        });
    }
    Ok(out)
}
