//! The customer's billing page: portal sessions (a single-use link, then a browser session), the history of cap
//! changes, and usage per day.

use sqlx::Row;

use super::SqlStore;
use crate::store::backend::Backend;
use crate::store::error::StoreResult;
use crate::store::types::{DailyUsage, LimitChange, PortalSessionRow};

const SESSION_COLUMNS: &str =
    "id, customer_id, link_expires_at, opened_at, last_seen_at, expires_at, revoked_at, \
    created_by, created_at";

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
