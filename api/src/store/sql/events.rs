//! Writes whose outcome a race decides in the database: usage in bulk (events in multi-row inserts of 500,
//! duplicates decided by the primary key, a closed period refused in the same transaction; absolute reports) and
//! the claim of an idempotency key.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::Row;

use crate::store::backend::Backend;
use crate::store::contract::{Idempotent, IDEMPOTENCY_KEEP_MICROS};
use crate::store::error::{corrupt, StoreResult};
use crate::store::sql::{SqlStore, EVENTS_PER_STATEMENT, IN_LIST};
use crate::store::types::{AlertRow, EventOutcome, NewEvent, NewReport};
use crate::store::webhooks::{closed_period_events, NewOutboxEvent, Refused};
use crate::time::MICROS_PER_DAY;

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
    /// The start of the open period of each customer named, read under a shared lock (PostgreSQL) or the
    /// write lock (SQLite): an invoice run cannot close one of these periods until the caller commits.
    pub(super) async fn open_from<'a>(
        tx: &mut sqlx::Transaction<'static, B::Db>,
        customers: impl Iterator<Item = &'a str>,
    ) -> StoreResult<HashMap<String, i64>> {
        let mut ids: Vec<&str> = customers.collect();
        ids.sort_unstable();
        ids.dedup();
        let mut open = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IN_LIST) {
            let sql = format!(
                "SELECT id, open_from, billing_anchor FROM customers WHERE id IN {} ORDER BY id{}",
                B::params(0, chunk.len()),
                B::SHARE_LOCK
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for r in query.fetch_all(&mut **tx).await? {
                let from: Option<i64> = r.get("open_from");
                open.insert(r.get("id"), from.unwrap_or_else(|| r.get("billing_anchor")));
            }
        }
        Ok(open)
    }

    pub(super) async fn write_events(&self, events: &[NewEvent], now: i64) -> StoreResult<Vec<EventOutcome>> {
        let mut outcome = vec![EventOutcome::Duplicate; events.len()];
        let mut totals: BTreeMap<(&str, i64, &str), i64> = BTreeMap::new();
        let mut daily: BTreeMap<(&str, i64, &str, i64), i64> = BTreeMap::new();
        // SQLite: a deferred BEGIN, because the first statement is the INSERT, which takes the write lock as
        // it starts (SQLite retries that with a fresh snapshot while the transaction has read nothing), so
        // everything it and later statements read is current. Measured: 8 concurrent writers store ~25 %
        // more events a second than with BEGIN IMMEDIATE (BENCHMARKS.md).
        let mut tx = self.pool.begin_with(if B::LOCK_FIRST { B::BEGIN_WRITE } else { "BEGIN" }).await?;
        // PostgreSQL reads each customer's open period first, under a shared lock (an invoice run closing
        // one waits for this transaction, and this one for it). SQLite holds the write lock from BEGIN, so
        // the INSERT itself reads the open period, current, and skips events of closed ones: no extra
        // statement unless some event was not stored.
        let mut open_from = if B::LOCK_FIRST {
            Some(Self::open_from(&mut tx, events.iter().map(|e| e.customer_id.as_str())).await?)
        } else {
            None
        };
        let candidates: Vec<(usize, &NewEvent)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| open_from.as_ref().is_none_or(|open| is_open(open, e)))
            .collect();
        for chunk in candidates.chunks(EVENTS_PER_STATEMENT) {
            let sums = Sums { totals: &mut totals, daily: &mut daily };
            Self::insert_event_chunk(&mut tx, chunk, now, &mut outcome, sums).await?;
        }
        // Events not stored: a duplicate, or refused when its period is invoiced — unless its id was stored
        // before the period closed (a retry), which is a duplicate still.
        let unstored: Vec<usize> =
            (0..events.len()).filter(|i| outcome[*i] != EventOutcome::Stored).collect();
        if !unstored.is_empty() {
            if open_from.is_none() {
                let customers = unstored.iter().map(|i| events[*i].customer_id.as_str());
                open_from = Some(Self::open_from(&mut tx, customers).await?);
            }
            let open = open_from.unwrap_or_default();
            for index in unstored.into_iter().filter(|i| !is_open(&open, &events[*i])) {
                let e = &events[index];
                let known =
                    sqlx::query("SELECT 1 AS one FROM usage_events WHERE customer_id = $1 AND event_id = $2")
                        .bind(&e.customer_id)
                        .bind(&e.event_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if known.is_none() {
                    outcome[index] = EventOutcome::Closed;
                }
            }
        }
        Self::add_totals(&mut tx, &totals).await?;
        Self::add_daily(&mut tx, &daily).await?;
        let refused: Vec<Refused<'_>> = events
            .iter()
            .zip(&outcome)
            .filter(|(_, o)| **o == EventOutcome::Closed)
            .map(|(e, _)| {
                (e.customer_id.as_str(), e.period_start, e.meter.as_str(), Some(e.event_id.as_str()))
            })
            .collect();
        if !refused.is_empty() {
            let notices =
                closed_period_events(&refused, "events", now).map_err(|e| corrupt("randomness", e))?;
            Self::put_events(&mut tx, &notices).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Adds the stored events' sums to their period totals: one multi-row upsert per [`IN_LIST`] rows, in key
    /// order (concurrent writers lock rows in one order, so they never deadlock).
    async fn add_totals(
        tx: &mut sqlx::Transaction<'static, B::Db>,
        totals: &BTreeMap<(&str, i64, &str), i64>,
    ) -> StoreResult<()> {
        let rows: Vec<_> = totals.iter().collect();
        for chunk in rows.chunks(IN_LIST) {
            let values: Vec<String> = (0..chunk.len()).map(|i| B::params(i * 4, 4)).collect();
            let sql = format!(
                "INSERT INTO usage_totals (customer_id, period_start, meter, events_micros) VALUES {}
                 ON CONFLICT (customer_id, period_start, meter)
                 DO UPDATE SET events_micros = usage_totals.events_micros + excluded.events_micros",
                values.join(",")
            );
            let mut query = sqlx::query(&sql);
            for ((customer, period_start, meter), micros) in chunk {
                query = query.bind(*customer).bind(*period_start).bind(*meter).bind(**micros);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Adds the stored events' sums to their days (`usage_daily`), as [`Self::add_totals`] does to their periods.
    async fn add_daily(
        tx: &mut sqlx::Transaction<'static, B::Db>,
        daily: &BTreeMap<(&str, i64, &str, i64), i64>,
    ) -> StoreResult<()> {
        let rows: Vec<_> = daily.iter().collect();
        for chunk in rows.chunks(IN_LIST) {
            let values: Vec<String> = (0..chunk.len()).map(|i| B::params(i * 5, 5)).collect();
            let sql = format!(
                "INSERT INTO usage_daily (customer_id, period_start, meter, day, events_micros) VALUES {}
                 ON CONFLICT (customer_id, period_start, meter, day)
                 DO UPDATE SET events_micros = usage_daily.events_micros + excluded.events_micros",
                values.join(",")
            );
            let mut query = sqlx::query(&sql);
            for ((customer, period_start, meter, day), micros) in chunk {
                query = query.bind(*customer).bind(*period_start).bind(*meter).bind(*day).bind(**micros);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// One multi-row insert of events (the backend's statement): marks those stored and adds them to the sums.
    async fn insert_event_chunk<'e>(
        tx: &mut sqlx::Transaction<'static, B::Db>,
        chunk: &[(usize, &'e NewEvent)],
        now: i64,
        outcome: &mut [EventOutcome],
        sums: Sums<'_, 'e>,
    ) -> StoreResult<()> {
        let rows: Vec<String> = (0..chunk.len()).map(|i| B::params(i * 7, 7)).collect();
        let sql = B::insert_events(&rows.join(","));
        let mut query = sqlx::query(&sql);
        for (_, e) in chunk {
            query = query
                .bind(&e.customer_id)
                .bind(&e.event_id)
                .bind(&e.meter)
                .bind(e.quantity_micros)
                .bind(e.occurred_at)
                .bind(e.period_start)
                .bind(now);
        }
        let returned: Vec<(String, String)> = query
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .map(|r| (r.get("customer_id"), r.get("event_id")))
            .collect();
        let inserted: HashSet<(&str, &str)> =
            returned.iter().map(|(c, e)| (c.as_str(), e.as_str())).collect();
        // The first event of a chunk with a returned id is the one stored; a repeat is a duplicate.
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        for (index, e) in chunk {
            let key = (e.customer_id.as_str(), e.event_id.as_str());
            if inserted.contains(&key) && seen.insert(key) {
                outcome[*index] = EventOutcome::Stored;
                let total = sums.totals.entry((&e.customer_id, e.period_start, &e.meter)).or_default();
                *total =
                    total.checked_add(e.quantity_micros).ok_or_else(|| corrupt("usage total", "overflow"))?;
                let day = e.occurred_at - e.occurred_at.rem_euclid(MICROS_PER_DAY);
                let total = sums.daily.entry((&e.customer_id, e.period_start, &e.meter, day)).or_default();
                *total =
                    total.checked_add(e.quantity_micros).ok_or_else(|| corrupt("usage total", "overflow"))?;
            }
        }
        Ok(())
    }

    pub(super) async fn write_alert(
        &self,
        customer_id: &str,
        a: &AlertRow,
        events: &[NewOutboxEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin_with(B::BEGIN_WRITE).await?;
        let done = sqlx::query(
            "INSERT INTO alerts (customer_id, period_start, product, threshold, detected_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id, period_start, product, threshold) DO NOTHING",
        )
        .bind(customer_id)
        .bind(a.period_start)
        .bind(&a.product)
        .bind(&a.threshold)
        .bind(a.detected_at)
        .execute(&mut *tx)
        .await?;
        let new = B::rows_affected(&done) == 1;
        if new {
            Self::put_events(&mut tx, events).await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    pub(super) async fn write_reports(&self, reports: &[NewReport], now: i64) -> StoreResult<Vec<bool>> {
        let mut tx = self.pool.begin_with(B::BEGIN_WRITE).await?;
        let open_from = Self::open_from(&mut tx, reports.iter().map(|r| r.customer_id.as_str())).await?;
        let mut stored = Vec::with_capacity(reports.len());
        for r in reports {
            let open = open_from.get(r.customer_id.as_str()).is_none_or(|o| r.period_start >= *o);
            stored.push(open);
            if !open {
                continue;
            }
            sqlx::query(
                "INSERT INTO usage_totals (customer_id, period_start, meter, reported_micros) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (customer_id, period_start, meter) DO UPDATE SET reported_micros =
                   CASE WHEN excluded.reported_micros > usage_totals.reported_micros
                        THEN excluded.reported_micros ELSE usage_totals.reported_micros END",
            )
            .bind(&r.customer_id)
            .bind(r.period_start)
            .bind(&r.meter)
            .bind(r.value_micros)
            .execute(&mut *tx)
            .await?;
        }
        let refused: Vec<Refused<'_>> = reports
            .iter()
            .zip(&stored)
            .filter(|(_, open)| !**open)
            .map(|(r, _)| (r.customer_id.as_str(), r.period_start, r.meter.as_str(), None))
            .collect();
        if !refused.is_empty() {
            let notices =
                closed_period_events(&refused, "reports", now).map_err(|e| corrupt("randomness", e))?;
            Self::put_events(&mut tx, &notices).await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    pub(super) async fn write_claim(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: i64,
    ) -> StoreResult<Idempotent> {
        // Keys older than a day are forgotten first, so the same key can be used again after a day.
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at < $3")
            .bind(scope)
            .bind(key)
            .bind(now - IDEMPOTENCY_KEEP_MICROS)
            .execute(&self.pool)
            .await?;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if B::rows_affected(&claimed) == 1 {
            return Ok(Idempotent::Claimed);
        }
        let row = sqlx::query(
            "SELECT request_hash, status, body FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // Released between the two statements: the caller may simply retry.
            return Ok(Idempotent::InProgress);
        };
        let hash: String = row.get("request_hash");
        let status: Option<i64> = row.get("status");
        let body: Option<String> = row.get("body");
        Ok(match (hash == request_hash, status, body) {
            (false, _, _) => Idempotent::Conflict,
            (true, Some(status), Some(body)) => Idempotent::Replay { status, body },
            (true, _, _) => Idempotent::InProgress,
        })
    }
}

/// What a batch's stored events add up to: per customer, period and meter, and per day too.
struct Sums<'s, 'e> {
    totals: &'s mut BTreeMap<(&'e str, i64, &'e str), i64>,
    daily: &'s mut BTreeMap<(&'e str, i64, &'e str, i64), i64>,
}

/// Whether an event's period is still open, given each customer's open period start (unknown customers: open).
fn is_open(open: &HashMap<String, i64>, e: &NewEvent) -> bool {
    open.get(e.customer_id.as_str()).is_none_or(|o| e.period_start >= *o)
}
