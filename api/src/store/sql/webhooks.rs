//! Events and their webhooks: the outbox written inside other writes' transactions, endpoints, the dispatcher that
//! turns events into deliveries, and the workers' claims and attempts.

use sqlx::Row;

use crate::store::backend::Backend;
use crate::store::error::{corrupt, StoreResult};
use crate::store::rows::invoice_row;
use crate::store::sql::{SqlStore, INVOICE_COLUMNS};
use crate::store::webhooks::{EndpointRow, EventFilter, NewOutboxEvent, OutboxEvent, RenderFn};

pub(super) const EVENT_COLUMNS: &str = "seq, id, type, customer_id, invoice_id, data, created_at, dispatched";
pub(super) const ENDPOINT_COLUMNS: &str =
    "id, url, description, event_types, enabled, secret, previous_secret, \
    previous_until, failing_since, disabled_reason, created_at, updated_at";
/// Events a dispatch takes at once.
pub(super) const EVENTS_PER_DISPATCH: usize = 500;

fn event_row<R: Row>(r: &R) -> StoreResult<OutboxEvent>
where
    for<'s> &'s str: sqlx::ColumnIndex<R>,
    for<'q> i64: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> String: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> Option<String>: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    Ok(OutboxEvent {
        seq: r.try_get("seq")?,
        event: NewOutboxEvent {
            id: r.try_get("id")?,
            kind: r.try_get("type")?,
            customer_id: r.try_get("customer_id")?,
            invoice_id: r.try_get("invoice_id")?,
            data: r.try_get("data")?,
            created_at: r.try_get("created_at")?,
        },
        dispatched: r.try_get::<i64, _>("dispatched")? != 0,
    })
}

pub(super) fn endpoint_row<R: Row>(r: &R) -> StoreResult<EndpointRow>
where
    for<'s> &'s str: sqlx::ColumnIndex<R>,
    for<'q> i64: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> Option<i64>: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> String: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> Option<String>: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    let types: String = r.try_get("event_types")?;
    Ok(EndpointRow {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        description: r.try_get("description")?,
        event_types: serde_json::from_str(&types).map_err(|e| corrupt("event types", e))?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        secret: r.try_get("secret")?,
        previous_secret: r.try_get("previous_secret")?,
        previous_until: r.try_get("previous_until")?,
        failing_since: r.try_get("failing_since")?,
        disabled_reason: r.try_get("disabled_reason")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

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
    /// Stores events inside the transaction of the fact they report: one multi-row insert per 500.
    pub(super) async fn put_events(
        tx: &mut sqlx::Transaction<'static, B::Db>,
        events: &[NewOutboxEvent],
    ) -> StoreResult<()> {
        for chunk in events.chunks(500) {
            let rows: Vec<String> = (0..chunk.len()).map(|i| B::params(i * 6, 6)).collect();
            let sql = format!(
                "INSERT INTO outbox_events (id, type, customer_id, invoice_id, data, created_at) VALUES {}",
                rows.join(",")
            );
            let mut query = sqlx::query(&sql);
            for e in chunk {
                query = query
                    .bind(e.id.as_str())
                    .bind(e.kind.as_str())
                    .bind(e.customer_id.as_deref())
                    .bind(e.invoice_id.as_deref())
                    .bind(e.data.as_deref())
                    .bind(e.created_at);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub(super) async fn read_events(
        &self,
        filter: &EventFilter,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<OutboxEvent>> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM outbox_events WHERE seq < $1");
        let mut n = 1;
        for (set, column) in [(filter.kind.is_some(), "type"), (filter.customer_id.is_some(), "customer_id")]
        {
            if set {
                n += 1;
                sql.push_str(&format!(" AND {column} = ${n}"));
            }
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", n + 1));
        let mut query = sqlx::query(&sql).bind(before.unwrap_or(i64::MAX));
        for value in [&filter.kind, &filter.customer_id].into_iter().flatten() {
            query = query.bind(value.as_str());
        }
        query.bind(limit).fetch_all(&self.pool).await?.iter().map(event_row).collect()
    }

    pub(super) async fn read_event(&self, id: &str) -> StoreResult<Option<OutboxEvent>> {
        let row = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM outbox_events WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event_row).transpose()
    }

    pub(super) async fn write_endpoint(&self, e: &EndpointRow, replaces: Option<i64>) -> StoreResult<bool> {
        let types = serde_json::to_string(&e.event_types).map_err(|x| corrupt("event types", x))?;
        let Some(read_at) = replaces else {
            let sql = format!(
                "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES {} ON CONFLICT (id) DO NOTHING",
                B::params(0, 12)
            );
            let done = sqlx::query(&sql)
                .bind(e.id.as_str())
                .bind(e.url.as_str())
                .bind(e.description.as_deref())
                .bind(types)
                .bind(i64::from(e.enabled))
                .bind(e.secret.as_str())
                .bind(e.previous_secret.as_deref())
                .bind(e.previous_until)
                .bind(e.failing_since)
                .bind(e.disabled_reason.as_deref())
                .bind(e.created_at)
                .bind(e.updated_at)
                .execute(&self.pool)
                .await?;
            return Ok(B::rows_affected(&done) == 1);
        };
        // Only the row as it was read (its `updated_at`): a change made meanwhile — another admin's, or the worker
        // disabling it — is never overwritten. The run of failures is the workers'; a change clears it (when
        // `failing_since` is given as NULL: re-enabling) but never writes an old value back.
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, event_types = $3, enabled = $4, secret = $5,
             previous_secret = $6, previous_until = $7, disabled_reason = $8, updated_at = $9,
             failing_since = CASE WHEN $10 = 1 THEN NULL ELSE failing_since END
             WHERE id = $11 AND updated_at = $12",
        )
        .bind(e.url.as_str())
        .bind(e.description.as_deref())
        .bind(types)
        .bind(i64::from(e.enabled))
        .bind(e.secret.as_str())
        .bind(e.previous_secret.as_deref())
        .bind(e.previous_until)
        .bind(e.disabled_reason.as_deref())
        .bind(e.updated_at)
        .bind(i64::from(e.failing_since.is_none()))
        .bind(e.id.as_str())
        .bind(read_at)
        .execute(&self.pool)
        .await?;
        Ok(B::rows_affected(&done) == 1)
    }

    pub(super) async fn read_endpoints(&self, id: Option<&str>) -> StoreResult<Vec<EndpointRow>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE $1 IS NULL OR id = $1 ORDER BY id"
        );
        let rows = sqlx::query(&sql).bind(id).fetch_all(&self.pool).await?;
        rows.iter().map(endpoint_row).collect()
    }

    pub(super) async fn remove_endpoint(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin_with(B::BEGIN_WRITE).await?;
        let done =
            sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'pending'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(B::rows_affected(&done) == 1)
    }

    /// The dispatcher: up to [`EVENTS_PER_DISPATCH`] undispatched events, oldest first (claimed: concurrent
    /// dispatchers take different events), each frozen (an invoice event's data rendered from its invoice) and
    /// given one delivery per enabled endpoint that subscribes to its type and existed when it was made. One
    /// transaction; how many events it dispatched.
    pub(super) async fn write_dispatch(&self, now: i64, render: &RenderFn) -> StoreResult<usize> {
        // Read and freeze outside any transaction (a plain read finds nothing when idle; rendering invoices takes
        // time no write lock should be held for), then dispatch what is still undispatched under the lock.
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM outbox_events WHERE dispatched = 0 ORDER BY seq LIMIT $1");
        let limit = i64::try_from(EVENTS_PER_DISPATCH).unwrap_or(i64::MAX);
        let mut events: Vec<OutboxEvent> = sqlx::query(&sql)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_row)
            .collect::<Result<_, _>>()?;
        if events.is_empty() {
            return Ok(0);
        }
        let mut frozen = Vec::new();
        for e in events.iter_mut().filter(|e| e.event.data.is_none()) {
            e.event.data = Some(self.freeze(&e.event, render).await?);
            frozen.push(e.seq);
        }
        let mut tx = self.pool.begin_with(B::BEGIN_WRITE).await?;
        // (Integers read from the database, not input: safe to write into the statement.)
        let seqs: Vec<String> = events.iter().map(|e| e.seq.to_string()).collect();
        let held: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT seq FROM outbox_events WHERE dispatched = 0 AND seq IN ({}) ORDER BY seq{}",
            seqs.join(","),
            B::SKIP_LOCKED
        ))
        .fetch_all(&mut *tx)
        .await?;
        events.retain(|e| held.contains(&e.seq));
        if events.is_empty() {
            return Ok(0);
        }
        let endpoints: Vec<EndpointRow> =
            sqlx::query(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE enabled = 1"))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(endpoint_row)
                .collect::<Result<_, _>>()?;
        let mut deliveries: Vec<(String, &OutboxEvent, &EndpointRow)> = Vec::new();
        for e in &events {
            if frozen.contains(&e.seq) {
                sqlx::query("UPDATE outbox_events SET data = $1 WHERE seq = $2")
                    .bind(e.event.data.as_deref())
                    .bind(e.seq)
                    .execute(&mut *tx)
                    .await?;
            }
            for endpoint in
                endpoints.iter().filter(|p| p.subscribes(&e.event.kind) && p.created_at <= e.event.created_at)
            {
                deliveries.push((
                    crate::secret::new_id("whd_").map_err(|x| corrupt("randomness", x))?,
                    e,
                    endpoint,
                ));
            }
        }
        for chunk in deliveries.chunks(500) {
            let rows: Vec<String> = (0..chunk.len()).map(|i| B::params(i * 7, 7)).collect();
            let sql = format!(
                "INSERT INTO webhook_deliveries (id, event_id, event_seq, endpoint_id, state, next_attempt_at, \
                 created_at) VALUES {} ON CONFLICT (event_id, endpoint_id) DO NOTHING",
                rows.join(",")
            );
            let mut query = sqlx::query(&sql);
            for (id, e, endpoint) in chunk {
                query = query
                    .bind(id.as_str())
                    .bind(e.event.id.as_str())
                    .bind(e.seq)
                    .bind(endpoint.id.as_str())
                    .bind("pending")
                    .bind(now)
                    .bind(now);
            }
            query.execute(&mut *tx).await?;
        }
        let seqs: Vec<String> = events.iter().map(|e| e.seq.to_string()).collect();
        sqlx::query(&format!("UPDATE outbox_events SET dispatched = 1 WHERE seq IN ({})", seqs.join(",")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(events.len())
    }

    /// An invoice event's data: its invoice as it was at the event.
    async fn freeze(&self, event: &NewOutboxEvent, render: &RenderFn) -> StoreResult<String> {
        let id = event.invoice_id.as_deref().unwrap_or_default();
        let row = sqlx::query(&format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| corrupt("event", format!("{}: no invoice {id}", event.id)))?;
        render(event, &invoice_row(&row)?).map_err(|e| corrupt("event", e))
    }
}
