//! Webhook deliveries: the workers' claims (leases), their attempts, the deliveries log and a retry by hand.

use sqlx::Row;

use crate::store::backend::Backend;
use crate::store::error::{corrupt, StoreResult};
use crate::store::sql::webhooks::{endpoint_row, ENDPOINT_COLUMNS, EVENT_COLUMNS};
use crate::store::sql::SqlStore;
use crate::store::webhooks::{
    AfterAttempt, AttemptRow, Attempted, ClaimLimits, ClaimedDelivery, DeliveryRow, NewOutboxEvent,
};

const DELIVERY_COLUMNS: &str = "seq, id, event_id, endpoint_id, state, attempts, next_attempt_at, created_at";

impl<B: Backend> SqlStore<B>
where
    for<'c> &'c mut <B::Db as sqlx::Database>::Connection: sqlx::Executor<'c, Database = B::Db>,
    for<'c> &'c sqlx::Pool<B::Db>: sqlx::Executor<'c, Database = B::Db>,
    for<'q> <B::Db as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, B::Db>,
    <B::Db as sqlx::Database>::Connection: sqlx::migrate::Migrate,
    for<'q> i64: sqlx::Encode<'q, B::Db> + sqlx::Decode<'q, B::Db> + sqlx::Type<B::Db>,
    for<'q> bool: sqlx::Encode<'q, B::Db> + sqlx::Decode<'q, B::Db> + sqlx::Type<B::Db>,
    for<'q> String: sqlx::Encode<'q, B::Db> + sqlx::Decode<'q, B::Db> + sqlx::Type<B::Db>,
    for<'q> &'q str: sqlx::Encode<'q, B::Db> + sqlx::Type<B::Db>,
    for<'q> Option<i64>: sqlx::Encode<'q, B::Db> + sqlx::Decode<'q, B::Db> + sqlx::Type<B::Db>,
    for<'q> Option<String>: sqlx::Encode<'q, B::Db> + sqlx::Decode<'q, B::Db> + sqlx::Type<B::Db>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, B::Db> + sqlx::Type<B::Db>,
    for<'s> &'s str: sqlx::ColumnIndex<<B::Db as sqlx::Database>::Row>,
    usize: sqlx::ColumnIndex<<B::Db as sqlx::Database>::Row>,
{
    /// Leases due deliveries of enabled endpoints (due first, then in event order) until `lease_until`, within
    /// `limits` (in all, and per endpoint counting those in flight), in one transaction: concurrent workers take
    /// different ones (PostgreSQL: `SKIP LOCKED`; SQLite: its write lock), and a delivery stays leased until its
    /// attempt is recorded or the lease runs out.
    pub(super) async fn write_lease(
        &self,
        now: i64,
        lease_until: i64,
        limits: &ClaimLimits,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // A plain read first: idle workers never take SQLite's write lock from ingestion.
        let any: Option<String> = sqlx::query_scalar(
            "SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $1
             AND (lease_until IS NULL OR lease_until < $1) LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let lease = crate::secret::new_id("lease_").map_err(|e| corrupt("randomness", e))?;
        let mut tx = self.pool.begin_with(B::BEGIN_WRITE).await?;
        let sql = format!(
            "SELECT d.id, d.endpoint_id FROM webhook_deliveries d WHERE d.state = 'pending' AND d.next_attempt_at <= $1
             AND (d.lease_until IS NULL OR d.lease_until < $1)
             AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = d.endpoint_id AND e.enabled = 1)
             ORDER BY d.next_attempt_at, d.event_seq LIMIT $2{}",
            B::SKIP_LOCKED
        );
        // Candidates, four times as many as wanted, taken in order while their endpoint has room.
        let candidates = i64::try_from(limits.total.saturating_mul(4).min(2_000)).unwrap_or(2_000);
        let rows = sqlx::query(&sql).bind(now).bind(candidates).fetch_all(&mut *tx).await?;
        let mut taken = limits.busy.clone();
        let mut ids: Vec<String> = Vec::new();
        for r in &rows {
            let endpoint: String = r.try_get("endpoint_id")?;
            let busy = taken.entry(endpoint).or_insert(0);
            if ids.len() < limits.total && *busy < limits.per_endpoint {
                *busy += 1;
                ids.push(r.try_get("id")?);
            }
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // (`$3, $4, …`, not the backend's list: SQLite's `?` after `$1, $2` would not number on from them.)
        let list: Vec<String> = (3..3 + ids.len()).map(|k| format!("${k}")).collect();
        let sql = format!(
            "UPDATE webhook_deliveries SET lease = $1, lease_until = $2 WHERE id IN ({})",
            list.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(lease.as_str()).bind(lease_until);
        for id in &ids {
            query = query.bind(id.as_str());
        }
        query.execute(&mut *tx).await?;
        let list = B::params(0, ids.len());
        tx.commit().await?;
        // Read after the commit: the lease holds them, and the write lock is not held for the read.
        let claimed = self.read_claimed(&ids, &list).await?;
        Ok(claimed
            .into_iter()
            .map(|mut c| {
                c.lease.clone_from(&lease);
                c
            })
            .collect())
    }

    /// The claimed deliveries with their event and endpoint.
    async fn read_claimed(&self, ids: &[String], list: &str) -> StoreResult<Vec<ClaimedDelivery>> {
        let sql = format!(
            "SELECT d.id AS delivery_id, d.attempts, d.manual, d.endpoint_id, {} FROM webhook_deliveries d
             JOIN outbox_events ev ON ev.id = d.event_id WHERE d.id IN {list} ORDER BY d.next_attempt_at, d.event_seq",
            EVENT_COLUMNS.split(", ").map(|c| format!("ev.{c}")).collect::<Vec<_>>().join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let endpoints: std::collections::BTreeSet<String> =
            rows.iter().map(|r| r.try_get("endpoint_id")).collect::<Result<_, _>>()?;
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id IN {}",
            B::params(0, endpoints.len())
        );
        let mut query = sqlx::query(&sql);
        for id in &endpoints {
            query = query.bind(id.as_str());
        }
        let endpoints =
            query.fetch_all(&self.pool).await?.iter().map(endpoint_row).collect::<Result<Vec<_>, _>>()?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            let endpoint_id: String = r.try_get("endpoint_id")?;
            let Some(endpoint) = endpoints.iter().find(|e| e.id == endpoint_id) else { continue };
            claimed.push(ClaimedDelivery {
                id: r.try_get("delivery_id")?,
                attempts: r.try_get("attempts")?,
                manual: r.try_get::<i64, _>("manual")? != 0,
                event: NewOutboxEvent {
                    id: r.try_get("id")?,
                    kind: r.try_get("type")?,
                    customer_id: r.try_get("customer_id")?,
                    invoice_id: r.try_get("invoice_id")?,
                    data: r.try_get("data")?,
                    created_at: r.try_get("created_at")?,
                },
                endpoint: endpoint.clone(),
                lease: String::new(),
            });
        }
        Ok(claimed)
    }

    /// Records attempts and what follows each, in one transaction (a worker's results, gathered: one write
    /// transaction for many attempts). Per attempt: the delivery's state moves only while the attempt's lease is still
    /// held; the endpoint's run of failures starts or ends; and when `disable` is given and the endpoint has been
    /// failing for at least its micros, the endpoint is disabled and its event stored. Endpoints are locked first, in
    /// id order, then deliveries: the order every waiting writer takes them in (two recorders, a deletion), so none
    /// deadlocks. Per attempt, whether its endpoint was disabled.
    pub(super) async fn write_attempts(&self, batch: &[Attempted]) -> StoreResult<Vec<bool>> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|a, b| {
            let key = |i: usize| (&batch[i].claimed.endpoint.id, &batch[i].claimed.id);
            key(*a).cmp(&key(*b))
        });
        let mut tx = self.pool.begin_with(B::BEGIN_WRITE).await?;
        // The endpoints first, in id order, as deleting one does (endpoint, then its deliveries): every transaction
        // that waits for both kinds of row takes them in that order, so none waits in a circle.
        let endpoints: std::collections::BTreeSet<&str> =
            batch.iter().map(|a| a.claimed.endpoint.id.as_str()).collect();
        if !B::UPDATE_LOCK.is_empty() {
            let sql = format!(
                "SELECT id FROM webhook_endpoints WHERE id IN {} ORDER BY id{}",
                B::params(0, endpoints.len()),
                B::UPDATE_LOCK
            );
            let mut query = sqlx::query(&sql);
            for id in &endpoints {
                query = query.bind(*id);
            }
            query.fetch_all(&mut *tx).await?;
        }
        let mut disabled = vec![false; batch.len()];
        for i in order {
            let a = &batch[i];
            disabled[i] =
                Self::record_one(&mut tx, &a.claimed, &a.attempt, a.after, a.disable.as_ref()).await?;
        }
        tx.commit().await?;
        Ok(disabled)
    }

    async fn record_one(
        tx: &mut sqlx::Transaction<'static, B::Db>,
        claimed: &ClaimedDelivery,
        attempt: &AttemptRow,
        after: AfterAttempt,
        disable: Option<&(i64, NewOutboxEvent)>,
    ) -> StoreResult<bool> {
        let sql = format!("SELECT attempts FROM webhook_deliveries WHERE id = $1{}", B::UPDATE_LOCK);
        let Some(attempts) =
            sqlx::query_scalar::<_, i64>(&sql).bind(claimed.id.as_str()).fetch_optional(&mut **tx).await?
        else {
            // (The endpoint was deleted meanwhile, and its pending deliveries with it.)
            return Ok(false);
        };
        let n = attempts + 1;
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, n, at, status, latency_micros, response, error, manual)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(claimed.id.as_str())
        .bind(n)
        .bind(attempt.at)
        .bind(attempt.status)
        .bind(attempt.latency_micros)
        .bind(attempt.response.as_str())
        .bind(attempt.error.as_deref())
        .bind(i64::from(attempt.manual))
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE webhook_deliveries SET attempts = $1 WHERE id = $2")
            .bind(n)
            .bind(claimed.id.as_str())
            .execute(&mut **tx)
            .await?;
        let (state, next) = match after {
            AfterAttempt::Succeeded => ("succeeded", None),
            AfterAttempt::RetryAt(at) => ("pending", Some(at)),
            AfterAttempt::Failed => ("failed", None),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, next_attempt_at = COALESCE($2, next_attempt_at), lease = NULL,
             lease_until = NULL, manual = 0 WHERE id = $3 AND lease = $4",
        )
        .bind(state)
        .bind(next)
        .bind(claimed.id.as_str())
        .bind(claimed.lease.as_str())
        .execute(&mut **tx)
        .await?;
        let succeeded = after == AfterAttempt::Succeeded;
        Self::endpoint_after(tx, claimed, attempt.at, succeeded, disable).await
    }

    /// The endpoint after an attempt: its run of failures ended (a success) or started; disabled, with its event,
    /// when `disable` is given and the run has lasted that many micros. Whether it was disabled.
    async fn endpoint_after(
        tx: &mut sqlx::Transaction<'static, B::Db>,
        claimed: &ClaimedDelivery,
        at: i64,
        succeeded: bool,
        disable: Option<&(i64, NewOutboxEvent)>,
    ) -> StoreResult<bool> {
        let endpoint = claimed.endpoint.id.as_str();
        if succeeded {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1")
                .bind(endpoint)
                .execute(&mut **tx)
                .await?;
        } else {
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) WHERE id = $2",
            )
            .bind(at)
            .bind(endpoint)
            .execute(&mut **tx)
            .await?;
        }
        let mut disabled = false;
        if let (false, Some((after_micros, event))) = (succeeded, disable) {
            let done = sqlx::query(
                "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = 'failing',
                 updated_at = CASE WHEN updated_at >= $1 THEN updated_at + 1 ELSE $1 END
                 WHERE id = $2 AND enabled = 1 AND failing_since <= $3",
            )
            .bind(at)
            .bind(claimed.endpoint.id.as_str())
            .bind(at - after_micros)
            .execute(&mut **tx)
            .await?;
            disabled = B::rows_affected(&done) == 1;
            if disabled {
                Self::put_events(tx, std::slice::from_ref(event)).await?;
            }
        }
        Ok(disabled)
    }

    /// Deliveries (with their attempts), newest first: of an endpoint before `before` (a `seq`), or one by id.
    pub(super) async fn read_deliveries(
        &self,
        endpoint_id: Option<&str>,
        id: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRow>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE ($1 IS NULL OR endpoint_id = $1)
             AND ($2 IS NULL OR id = $2) AND seq < $3 ORDER BY seq DESC LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(endpoint_id)
            .bind(id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<DeliveryRow> = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(DeliveryRow {
                seq: r.try_get("seq")?,
                id: r.try_get("id")?,
                event_id: r.try_get("event_id")?,
                endpoint_id: r.try_get("endpoint_id")?,
                state: r.try_get("state")?,
                attempts: r.try_get("attempts")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                created_at: r.try_get("created_at")?,
                attempt_log: Vec::new(),
            });
        }
        if out.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT delivery_id, n, at, status, latency_micros, response, error, manual FROM webhook_attempts
             WHERE delivery_id IN {} ORDER BY delivery_id, n",
            B::params(0, out.len())
        );
        let mut query = sqlx::query(&sql);
        for d in &out {
            query = query.bind(d.id.as_str());
        }
        for r in query.fetch_all(&self.pool).await? {
            let delivery: String = r.try_get("delivery_id")?;
            if let Some(d) = out.iter_mut().find(|d| d.id == delivery) {
                d.attempt_log.push(AttemptRow {
                    n: r.try_get("n")?,
                    at: r.try_get("at")?,
                    status: r.try_get("status")?,
                    latency_micros: r.try_get("latency_micros")?,
                    response: r.try_get("response")?,
                    error: r.try_get("error")?,
                    manual: r.try_get::<i64, _>("manual")? != 0,
                });
            }
        }
        Ok(out)
    }

    /// Makes a delivery due now, by hand (whatever its state); whether it exists.
    pub(super) async fn write_retry(&self, id: &str, now: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $1, manual = 1 WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(B::rows_affected(&done) == 1)
    }
}
