//! Customers and their caps: creation with a first key, changes, new keys, caps set and removed, each one transaction.

use sqlx::Row;

use super::SqlStore;
use crate::store::backend::Backend;
use crate::store::error::{corrupt, StoreResult};
use crate::store::types::{CredentialKind, CustomerRow, LimitRow};

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
    pub(super) async fn write_customer(&self, c: &CustomerRow, key_hash: &str) -> StoreResult<bool> {
        let addons = serde_json::to_string(&c.addons).map_err(|e| corrupt("add-ons", e))?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO customers (id, name, billing_anchor, addons, created_at, updated_at, open_from, open_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(c.billing_anchor)
        .bind(addons)
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.open_from)
        .bind(c.open_until)
        .execute(&mut *tx)
        .await?;
        if B::rows_affected(&done) == 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO api_keys (hash, customer_id, created_at) VALUES ($1, $2, $3)")
            .bind(key_hash)
            .bind(&c.id)
            .bind(c.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn write_customer_change(&self, c: &CustomerRow) -> StoreResult<()> {
        let addons = serde_json::to_string(&c.addons).map_err(|e| corrupt("add-ons", e))?;
        sqlx::query("UPDATE customers SET name = $1, addons = $2, updated_at = $3 WHERE id = $4")
            .bind(&c.name)
            .bind(addons)
            .bind(c.updated_at)
            .bind(&c.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn write_key(&self, customer_id: &str, key_hash: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // A new key ends every billing-portal session of the customer.
        sqlx::query(
            "UPDATE portal_sessions SET revoked_at = $1 WHERE customer_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(customer_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE customer_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(customer_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO api_keys (hash, customer_id, created_at) VALUES ($1, $2, $3)")
            .bind(key_hash)
            .bind(customer_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn write_limits(
        &self,
        customer_id: &str,
        changes: &[(String, Option<LimitRow>)],
        now: i64,
        by: CredentialKind,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin_with(B::BEGIN_WRITE).await?;
        // Changes of one customer's caps one at a time (the customer's row locked on PostgreSQL, the write lock on
        // SQLite), so each change's `old` is the amount the one before it left.
        sqlx::query(&format!("SELECT id FROM customers WHERE id = $1{}", B::UPDATE_LOCK))
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await?;
        let old: std::collections::HashMap<String, i64> =
            sqlx::query("SELECT product, amount FROM spend_limits WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|r| (r.get("product"), r.get("amount")))
                .collect();
        for (product, change) in changes {
            let (before, after) = (old.get(product).copied(), change.as_ref().map(|l| l.amount));
            if before != after {
                sqlx::query(
                    "INSERT INTO limit_changes (customer_id, product, old_amount, new_amount, changed_at, changed_by)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(customer_id)
                .bind(product)
                .bind(before)
                .bind(after)
                .bind(now)
                .bind(by.as_str())
                .execute(&mut *tx)
                .await?;
            }
            match change {
                None => {
                    sqlx::query("DELETE FROM spend_limits WHERE customer_id = $1 AND product = $2")
                        .bind(customer_id)
                        .bind(product)
                        .execute(&mut *tx)
                        .await?;
                }
                Some(l) => {
                    sqlx::query(
                        "INSERT INTO spend_limits (customer_id, product, amount, pinned_period_start, pinned_amount, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (customer_id, product) DO UPDATE SET amount = excluded.amount,
                           pinned_period_start = excluded.pinned_period_start,
                           pinned_amount = excluded.pinned_amount, updated_at = excluded.updated_at",
                    )
                    .bind(customer_id)
                    .bind(product)
                    .bind(l.amount)
                    .bind(l.pinned.map(|p| p.0))
                    .bind(l.pinned.map(|p| p.1))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
