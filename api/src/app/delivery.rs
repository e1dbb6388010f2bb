//! Webhook delivery, inside `tally serve`: a dispatcher turns new events into deliveries (one per subscribed
//! endpoint), and workers send due deliveries, signed as Standard Webhooks says, retrying on a schedule.
//!
//! At least once: a delivery is leased while its attempt runs (longer than an attempt can take) and its outcome is
//! recorded after; a process killed in between leaves the lease to run out, and the delivery is sent again — with
//! the same `webhook-id`, so receivers deduplicate. Several instances share the work through their claims (`FOR
//! UPDATE SKIP LOCKED` on PostgreSQL). Nothing here runs on a request's path: ingestion, quotes and invoice runs
//! only write their events, in their own transactions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use rust_decimal::Decimal;
use serde_json::json;

use super::documents::{written, written_at};
use super::service::{Outcome, Service};
use super::webhooks::{new_event, WebhookSettings};
use tokio::sync::OwnedSemaphorePermit;

use crate::store::{AfterAttempt, AttemptRow, Attempted, ClaimLimits, ClaimedDelivery, RenderFn};
use crate::time::micros;

/// The delays before each attempt after the first failure: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
/// (seconds). After the last, the delivery is failed.
pub const SCHEDULE_SECONDS: [i64; 8] = [0, 5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
/// An endpoint failing for this long without a success is disabled: five days (seconds).
pub const DISABLE_AFTER_SECONDS: i64 = 5 * 24 * 60 * 60;

/// `seconds` × the retry scale, in microseconds, with ±10 % jitter drawn from `jitter` (0..=200 ↦ −10 %..+10 %).
#[must_use]
pub fn scaled_micros(seconds: i64, scale: Decimal, jitter: u16) -> i64 {
    let factor = Decimal::from(900 + i64::from(jitter.min(200))) / Decimal::from(1000);
    // (A scale past what `tally serve` accepts saturates instead of overflowing.)
    Decimal::from(seconds)
        .checked_mul(Decimal::from(1_000_000))
        .and_then(|m| m.checked_mul(scale))
        .and_then(|m| m.checked_mul(factor))
        .and_then(|m| i64::try_from(m.trunc()).ok())
        .unwrap_or(i64::MAX)
}

/// What follows a failed attempt `n` (1-based) made at `now`.
#[must_use]
pub fn after_failure(n: i64, now: i64, scale: Decimal, jitter: u16) -> AfterAttempt {
    match usize::try_from(n).ok().and_then(|n| SCHEDULE_SECONDS.get(n)) {
        Some(delay) => AfterAttempt::RetryAt(now.saturating_add(scaled_micros(*delay, scale, jitter))),
        None => AfterAttempt::Failed,
    }
}

fn jitter() -> u16 {
    let mut b = [0_u8; 2];
    let _ = getrandom::getrandom(&mut b);
    u16::from_le_bytes(b) % 201
}

/// The body delivered: `{"type", "timestamp", "data"}`, the data as frozen.
#[must_use]
pub fn body_of(event: &crate::store::NewOutboxEvent) -> String {
    let timestamp = written(event.created_at).unwrap_or_default();
    format!(
        "{{\"type\":{},\"timestamp\":{},\"data\":{}}}",
        json!(event.kind),
        json!(timestamp),
        event.data.as_deref().unwrap_or("null")
    )
}

impl Service {
    /// Runs the dispatcher, the workers and the recorder of their attempts until the task is dropped (`tally serve`
    /// aborts it on shutdown; an attempt cut short, or made and not yet recorded, is sent again when its lease runs
    /// out).
    pub async fn deliver_webhooks(self: Arc<Self>) {
        let (done, results) = tokio::sync::mpsc::unbounded_channel();
        tokio::join!(Arc::clone(&self).send_due(done), self.record(results));
    }

    /// Dispatches new events and sends due deliveries, at most `concurrency` at once and half of that to one
    /// endpoint (a dead endpoint holding attempts until their timeout leaves the other half to the others); each
    /// attempt's result goes to the recorder with its slot, so an attempt counts as in flight until it is recorded.
    async fn send_due(self: Arc<Self>, done: Results) {
        let settings = self.webhooks.clone();
        let permits = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
        let busy: Busy = Arc::default();
        let render: RenderFn = {
            let service = Arc::clone(&self);
            Arc::new(move |event, invoice| {
                service.render_invoice_event(&event.kind, invoice).map_err(|e| e.to_string())
            })
        };
        let mut idle = settings.poll;
        loop {
            let now = micros(self.now());
            let dispatched = match self.store.dispatch_events(now, &render).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("webhook dispatch failed (tried again shortly): {e}");
                    0
                }
            };
            let free = permits.available_permits();
            let mut claimed = 0;
            if free > 0 {
                let lease_until = now + lease_micros(&settings);
                let limits = ClaimLimits {
                    total: free,
                    per_endpoint: (settings.concurrency / 2).max(1),
                    busy: busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
                };
                match self.store.claim_deliveries(now, lease_until, &limits).await {
                    Ok(batch) => {
                        claimed = batch.len();
                        for delivery in batch {
                            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
                            let slot = Slot::take(permit, &busy, &delivery.endpoint.id);
                            let (service, done) = (Arc::clone(&self), done.clone());
                            tokio::spawn(async move {
                                match service.attempt(delivery).await {
                                    Ok(attempted) => {
                                        let _ = done.send((attempted, slot));
                                    }
                                    Err(e) => tracing::warn!("webhook attempt not made: {e}"),
                                }
                            });
                        }
                    }
                    Err(e) => tracing::warn!("webhook claim failed (tried again shortly): {e}"),
                }
            }
            if dispatched > 0 || claimed > 0 {
                idle = settings.poll;
            }
            if dispatched == 0 && claimed == 0 {
                // Idle: look again after `poll`, then less often, up to five times `poll` (0.2 s → 1 s).
                tokio::time::sleep(idle).await;
                idle = (idle * 2).min(settings.poll * 5);
            } else if permits.available_permits() == 0 {
                let _ = tokio::time::timeout(settings.poll, permits.acquire()).await;
            }
        }
    }

    /// Records attempts as they finish, many per transaction (on SQLite, one write transaction per attempt took
    /// the database's write lock thousands of times a second, from ingestion). A batch that cannot be recorded is
    /// logged: its deliveries' leases run out and they are sent again.
    async fn record(&self, mut results: tokio::sync::mpsc::UnboundedReceiver<(Attempted, Slot)>) {
        let mut batch = Vec::new();
        while results.recv_many(&mut batch, RECORDED_AT_ONCE).await > 0 {
            let attempts: Vec<Attempted> = batch.iter().map(|(a, _)| a.clone()).collect();
            match self.store.record_attempts(&attempts).await {
                Ok(disabled) => {
                    for (a, _) in attempts.iter().zip(disabled).filter(|(_, d)| *d) {
                        tracing::warn!(
                            "webhook endpoint {} disabled: failing for 5 days",
                            a.claimed.endpoint.id
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "{} webhook attempts not recorded (sent again later): {e}",
                        attempts.len()
                    );
                }
            }
            batch.clear();
        }
    }

    /// Sends one leased delivery: the attempt and what follows it, to record.
    async fn attempt(&self, claimed: ClaimedDelivery) -> Outcome<Attempted> {
        let settings = &self.webhooks;
        let started = self.now();
        let at = micros(started);
        let body = body_of(&claimed.event);
        let timestamp = started.timestamp();
        let mut signatures = Vec::new();
        let previous = claimed.endpoint.previous_secret.iter();
        for secret in std::iter::once(&claimed.endpoint.secret)
            .chain(previous.filter(|_| claimed.endpoint.previous_until.is_some_and(|u| u > at)))
        {
            let key = crate::signature::key(secret).map_err(super::service::Failure::Internal)?;
            signatures.push(crate::signature::sign(&key, &claimed.event.id, timestamp, body.as_bytes()));
        }
        let headers = [
            ("webhook-id", claimed.event.id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signatures.join(" ")),
        ];
        let clock = std::time::Instant::now();
        let sent = crate::outbound::post(
            &claimed.endpoint.url,
            &headers,
            Bytes::from(body),
            settings.timeout,
            settings.allow_private,
        )
        .await;
        let latency_micros = i64::try_from(clock.elapsed().as_micros()).unwrap_or(i64::MAX);
        let (status, response, error) = match sent {
            Ok(answer) => (Some(i64::from(answer.status)), answer.body, None),
            Err(failed) => (None, String::new(), Some(failed.to_string())),
        };
        let n = claimed.attempts + 1;
        let attempt = AttemptRow { n, at, status, latency_micros, response, error, manual: claimed.manual };
        if status.is_some_and(|s| (200..300).contains(&s)) {
            return Ok(Attempted { claimed, attempt, after: AfterAttempt::Succeeded, disable: None });
        }
        let now = self.now();
        let data = json!({
            "id": claimed.endpoint.id,
            "url": claimed.endpoint.url,
            "reason": "failing",
            "disabled_at": written_at(now),
        });
        let disable = (
            scaled_micros(DISABLE_AFTER_SECONDS, settings.retry_scale, 100),
            new_event("webhook_endpoint.disabled", None, &data, now)?,
        );
        let after = after_failure(n, micros(now), settings.retry_scale, jitter());
        Ok(Attempted { claimed, attempt, after, disable: Some(disable) })
    }
}

/// Attempts in flight, by endpoint.
type Busy = Arc<std::sync::Mutex<BTreeMap<String, usize>>>;

/// An attempt's place: a permit of the worker's concurrency and one of its endpoint's share, both given back when
/// the attempt is recorded (dropped).
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    busy: Busy,
    endpoint: String,
}

impl Slot {
    fn take(permit: OwnedSemaphorePermit, busy: &Busy, endpoint: &str) -> Slot {
        *busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(endpoint.to_owned())
            .or_insert(0) += 1;
        Slot { _permit: permit, busy: Arc::clone(busy), endpoint: endpoint.to_owned() }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = busy.get_mut(&self.endpoint) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                busy.remove(&self.endpoint);
            }
        }
    }
}

/// Attempts recorded per transaction, at most.
const RECORDED_AT_ONCE: usize = 256;

/// Where attempts go to be recorded, each with the permit that keeps it counted as in flight.
type Results = tokio::sync::mpsc::UnboundedSender<(Attempted, Slot)>;

/// How long a delivery stays leased: longer than an attempt can take (twice the timeout and ten seconds), so a
/// lease runs out only when its worker is gone.
fn lease_micros(settings: &WebhookSettings) -> i64 {
    let timeout = i64::try_from(settings.timeout.as_micros()).unwrap_or(i64::MAX / 4);
    timeout.saturating_mul(2).saturating_add(i64::try_from(Duration::from_secs(10).as_micros()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::{after_failure, scaled_micros, SCHEDULE_SECONDS};
    use crate::store::AfterAttempt;

    #[test]
    fn the_schedule_is_the_documented_one_scaled_and_jittered_within_ten_percent() {
        assert_eq!(SCHEDULE_SECONDS, [0, 5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]);
        assert_eq!(scaled_micros(300, Decimal::ONE, 100), 300_000_000);
        assert_eq!(scaled_micros(300, Decimal::new(1, 3), 100), 300_000);
        assert_eq!(scaled_micros(300, Decimal::ONE, 0), 270_000_000);
        assert_eq!(scaled_micros(300, Decimal::ONE, 200), 330_000_000);
        assert_eq!(after_failure(1, 0, Decimal::ONE, 100), AfterAttempt::RetryAt(5_000_000));
        assert_eq!(after_failure(7, 10, Decimal::ONE, 100), AfterAttempt::RetryAt(10 + 36_000_000_000));
        assert_eq!(after_failure(8, 0, Decimal::ONE, 100), AfterAttempt::Failed);
    }
}
