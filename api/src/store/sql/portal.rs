//! The customer's billing page: portal sessions (a single-use link, then a browser session), the history of cap
//! changes, usage per day, and when a running total was reached.

use sqlx::Row;

use super::SqlStore;
use crate::store::backend::Backend;
use crate::store::error::StoreResult;
use crate::store::types::{DailyUsage, LimitChange, PortalSessionRow};

const SESSION_COLUMNS: &str =
    "id, customer_id, link_expires_at, opened_at, last_seen_at, expires_at, revoked_at, \
    created_by, created_at";

/// A remembered answer of [`SqlStore::read_time_reached`]: the amount asked, the day it was reached in, the meter's
/// total through that day, and the answer. Usage is only ever added, and no quantity is negative, so while the total
/// through that day is the same no event has arrived on or before it, and the answer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reached {
    micros: i64,
    day: i64,
    through_day: i64,
    at: Option<i64>,
}

/// Remembered answers by (customer, period start, meter); emptied when it reaches [`REACHED_KEPT`] entries.
pub(crate) type ReachedCache = std::collections::HashMap<(String, i64, String), Reached>;

/// How many answers a store remembers.
const REACHED_KEPT: usize = 10_000;

/// How often a session's last use is written: a page load within a minute of the last write writes nothing.
const TOUCH_EVERY_MICROS: i64 = 60_000_000;

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
    pub(super) async fn write_portal_session(
        &self,
        s: &PortalSessionRow,
        link_hash: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO portal_sessions (id, customer_id, link_hash, link_expires_at, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id)
        .bind(&s.customer_id)
        .bind(link_hash)
        .bind(s.link_expires_at)
        .bind(&s.created_by)
        .bind(s.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn write_link_opened(
        &self,
        link_hash: &str,
        session_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<Option<PortalSessionRow>> {
        // One statement decides: of two browsers opening one link at once, one gets the session.
        let row = sqlx::query(&format!(
            "UPDATE portal_sessions SET session_hash = $1, opened_at = $2, last_seen_at = $2, expires_at = $3
             WHERE link_hash = $4 AND opened_at IS NULL AND revoked_at IS NULL AND link_expires_at > $2
             RETURNING {SESSION_COLUMNS}"
        ))
        .bind(session_hash)
        .bind(now)
        .bind(expires_at)
        .bind(link_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| session_row(&r)))
    }

    pub(super) async fn read_session(
        &self,
        session_hash: &str,
        now: i64,
        idle: i64,
    ) -> StoreResult<Option<PortalSessionRow>> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM portal_sessions
             WHERE session_hash = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at > $3"
        ))
        .bind(session_hash)
        .bind(now)
        .bind(now - idle)
        .fetch_optional(&self.pool)
        .await?;
        let Some(mut session) = row.map(|r| session_row(&r)) else { return Ok(None) };
        if session.last_seen_at.is_none_or(|seen| seen < now - TOUCH_EVERY_MICROS) {
            sqlx::query("UPDATE portal_sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
                .bind(now)
                .bind(&session.id)
                .execute(&self.pool)
                .await?;
            session.last_seen_at = Some(now);
        }
        Ok(Some(session))
    }

    pub(super) async fn read_session_by_id(&self, id: &str) -> StoreResult<Option<PortalSessionRow>> {
        let row = sqlx::query(&format!("SELECT {SESSION_COLUMNS} FROM portal_sessions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| session_row(&r)))
    }

    pub(super) async fn write_revoked(&self, id: &str, now: i64) -> StoreResult<Option<PortalSessionRow>> {
        sqlx::query("UPDATE portal_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.read_session_by_id(id).await
    }

    /// When a meter's running total in a period (its events in time order, ties by id) first reached `micros`: the
    /// day from the daily totals (at most 31 rows), then that day's events only. The answer is remembered until an
    /// event arrives on or before that day: a cap reached some days ago costs one read of the daily totals.
    pub(super) async fn read_time_reached(
        &self,
        customer_id: &str,
        period_start: i64,
        meter: &str,
        micros: i64,
    ) -> StoreResult<Option<i64>> {
        let days = self.read_daily(customer_id, period_start).await?;
        let mut before = 0_i64;
        let mut found = None;
        for d in days.iter().filter(|d| d.meter == meter) {
            let through = before.saturating_add(d.events_micros);
            if through >= micros {
                found = Some((d.day, through));
                break;
            }
            before = through;
        }
        let Some((day, through_day)) = found else { return Ok(None) };
        let key = (customer_id.to_owned(), period_start, meter.to_owned());
        let known = self.reached.lock().ok().and_then(|cache| cache.get(&key).copied());
        let still = |r: &Reached| r.micros == micros && r.day == day && r.through_day == through_day;
        if let Some(r) = known.filter(still) {
            return Ok(r.at);
        }
        let row = sqlx::query(
            "SELECT occurred_at FROM (
               SELECT occurred_at, SUM(quantity_micros) OVER (ORDER BY occurred_at, event_id) AS running
               FROM usage_events WHERE customer_id = $1 AND period_start = $2 AND meter = $3
                 AND occurred_at >= $4 AND occurred_at < $5
             ) AS t WHERE running >= $6 ORDER BY occurred_at LIMIT 1",
        )
        .bind(customer_id)
        .bind(period_start)
        .bind(meter)
        .bind(day)
        .bind(day + crate::time::MICROS_PER_DAY)
        .bind(micros - before)
        .fetch_optional(&self.pool)
        .await?;
        let at = row.map(|r| r.get("occurred_at"));
        if let Ok(mut cache) = self.reached.lock() {
            if cache.len() >= REACHED_KEPT {
                cache.clear();
            }
            cache.insert(key, Reached { micros, day, through_day, at });
        }
        Ok(at)
    }

    pub(super) async fn read_limit_changes(
        &self,
        customer_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<LimitChange>> {
        let rows = sqlx::query(
            "SELECT seq, product, old_amount, new_amount, changed_at, changed_by FROM limit_changes
             WHERE customer_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(customer_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| LimitChange {
                seq: r.get("seq"),
                product: r.get("product"),
                old: r.get("old_amount"),
                new: r.get("new_amount"),
                changed_at: r.get("changed_at"),
                by: r.get("changed_by"),
            })
            .collect())
    }

    pub(super) async fn read_daily(
        &self,
        customer_id: &str,
        period_start: i64,
    ) -> StoreResult<Vec<DailyUsage>> {
        let rows = sqlx::query(
            "SELECT meter, day, events_micros FROM usage_daily WHERE customer_id = $1 AND period_start = $2
             ORDER BY meter, day",
        )
        .bind(customer_id)
        .bind(period_start)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DailyUsage {
                meter: r.get("meter"),
                day: r.get("day"),
                events_micros: r.get("events_micros"),
            })
            .collect())
    }
}

fn session_row<R: Row>(r: &R) -> PortalSessionRow
where
    for<'s> &'s str: sqlx::ColumnIndex<R>,
    for<'q> i64: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> Option<i64>: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> String: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    PortalSessionRow {
        id: r.get("id"),
        customer_id: r.get("customer_id"),
        link_expires_at: r.get("link_expires_at"),
        opened_at: r.get("opened_at"),
        last_seen_at: r.get("last_seen_at"),
        expires_at: r.get("expires_at"),
        revoked_at: r.get("revoked_at"),
        created_by: r.get("created_by"),
        created_at: r.get("created_at"),
    }
}
