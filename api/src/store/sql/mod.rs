//! Every query of the store, once, for both databases: [`SqlStore`] implements [`Store`] generic over a
//! [`Backend`], which supplies what differs (see `backend.rs`). The larger writes have files of their own: `events`
//! (usage in bulk, idempotency claims), `batch` (an invoice run's batch), `invoices` (a lifecycle step, opening a
//! run); this one holds the rest.
//!
//! The bounds below say what sqlx must do for a backend's database (execute on a pool and in a transaction, bind and
//! read the column types tally stores: integers, booleans, text): both `Sqlite` and `Postgres` meet them.

mod batch;
mod customers;
mod deliveries;
mod events;
mod invoices;
mod portal;
mod reprice;
mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::Row;

use crate::store::backend::Backend;
use crate::store::contract::{Idempotent, Store};
use crate::store::error::StoreResult;
use crate::store::migrations::Embedded;
use crate::store::rows::{commitment_row, credit_row, customer_row, invoice_row};
use crate::store::types::{
    AlertRow, BatchDone, ClaimCursor, CommitmentRow, CredentialKind, CreditEntry, CustomerRow, DailyUsage,
    Due, EventOutcome, InvoiceAction, InvoiceFilter, InvoiceRow, InvoicedPage, LimitChange, LimitRow,
    MeterTotal, NewEvent, NewReport, PortalSessionRow, PriceFn, RunRow, StoredBook, Transition,
};
use crate::store::webhooks::{
    Attempted, ClaimLimits, ClaimedDelivery, DeliveryRow, EndpointRow, EventFilter, NewOutboxEvent,
    OutboxEvent, RenderFn,
};

/// The store on SQLite.
pub type SqliteStore = SqlStore<crate::store::backend::Sqlite>;
/// The store on PostgreSQL.
pub type PgStore = SqlStore<crate::store::backend::Postgres>;

/// Ids per `IN (…)` list, rows per multi-row insert of invoices (18 parameters each): far below both databases'
/// parameter limits.
const IN_LIST: usize = 500;
const INVOICES_PER_STATEMENT: usize = 200;

const CUSTOMER_COLUMNS: &str =
    "id, name, billing_anchor, addons, created_at, updated_at, open_from, open_until";
const INVOICE_COLUMNS: &str = "id, customer_id, period_start, period_end, status, number, price_book_version, \
    currency, request, bill, total, credit_applied, amount_due, run_id, created_at, issued_at, paid_at, voided_at";
const RUN_COLUMNS: &str = "id, as_of, issue, status, eligible, invoiced, created_at, finished_at";

/// Rows to insert per statement: 7 parameters each stays far below both databases' parameter limits.
const EVENTS_PER_STATEMENT: usize = 500;

/// The store on a database: the same queries for both, with what differs taken from `B`.
#[derive(Debug, Clone)]
pub struct SqlStore<B: Backend> {
    pub(super) pool: sqlx::Pool<B::Db>,
    /// Held while the store lives: background tasks on its pool stop when it is dropped.
    pub(super) _alive: Arc<()>,
    pub(super) backend: std::marker::PhantomData<B>,
    /// When running totals were reached, remembered with what makes them still true (see `portal.rs`).
    pub(super) reached: Arc<std::sync::Mutex<portal::ReachedCache>>,
}

impl<B: Backend> SqlStore<B> {
    /// The store over `pool`; `alive` is held while it lives (background tasks on the pool watch it).
    pub(super) fn new(pool: sqlx::Pool<B::Db>, alive: Arc<()>) -> Self {
        SqlStore { pool, _alive: alive, backend: std::marker::PhantomData, reached: Arc::default() }
    }
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B>
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
    fn backend(&self) -> &'static str {
        B::NAME
    }

    async fn migrate(&self) -> StoreResult<()> {
        Migrator::new(Embedded(B::MIGRATIONS)).await?.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("value")))
    }

    async fn put_setting_if_absent(&self, key: &str, value: &str) -> StoreResult<bool> {
        let done =
            sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await?;
        Ok(B::rows_affected(&done) == 1)
    }

    async fn insert_price_book(&self, book: &StoredBook, now: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO price_books (version, in_force_at, body, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(&book.version)
        .bind(book.in_force_at)
        .bind(&book.body)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(B::rows_affected(&done) == 1)
    }

    async fn price_books(&self) -> StoreResult<Vec<StoredBook>> {
        let rows = sqlx::query(
            "SELECT version, in_force_at, body FROM price_books ORDER BY in_force_at, created_at, version",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredBook {
                version: r.get("version"),
                in_force_at: r.get("in_force_at"),
                body: r.get("body"),
            })
            .collect())
    }

    async fn insert_customer(&self, c: &CustomerRow, key_hash: &str) -> StoreResult<bool> {
        self.write_customer(c, key_hash).await
    }

    async fn customer(&self, id: &str) -> StoreResult<Option<CustomerRow>> {
        let row = sqlx::query(&format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| customer_row(&r)).transpose()
    }

    async fn customers(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<CustomerRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(customer_row).collect()
    }

    async fn update_customer(&self, c: &CustomerRow) -> StoreResult<()> {
        self.write_customer_change(c).await
    }

    async fn rotate_key(&self, customer_id: &str, key_hash: &str, now: i64) -> StoreResult<()> {
        self.write_key(customer_id, key_hash, now).await
    }

    async fn key_owner(&self, key_hash: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT customer_id FROM api_keys WHERE hash = $1 AND revoked_at IS NULL")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("customer_id")))
    }

    async fn insert_events(&self, events: &[NewEvent], now: i64) -> StoreResult<Vec<EventOutcome>> {
        self.write_events(events, now).await
    }

    async fn insert_reports(&self, reports: &[NewReport], now: i64) -> StoreResult<Vec<bool>> {
        self.write_reports(reports, now).await
    }

    async fn usage_totals(&self, customer_id: &str, period_start: i64) -> StoreResult<Vec<MeterTotal>> {
        let rows = sqlx::query(
            "SELECT meter, events_micros, reported_micros FROM usage_totals
             WHERE customer_id = $1 AND period_start = $2 ORDER BY meter",
        )
        .bind(customer_id)
        .bind(period_start)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| MeterTotal {
                meter: r.get("meter"),
                events_micros: r.get("events_micros"),
                reported_micros: r.get("reported_micros"),
            })
            .collect())
    }

    async fn time_total_reached(
        &self,
        customer_id: &str,
        period_start: i64,
        meter: &str,
        micros: i64,
    ) -> StoreResult<Option<i64>> {
        self.read_time_reached(customer_id, period_start, meter, micros).await
    }

    async fn limits(&self, customer_id: &str) -> StoreResult<Vec<LimitRow>> {
        let rows = sqlx::query(
            "SELECT product, amount, pinned_period_start, pinned_amount FROM spend_limits
             WHERE customer_id = $1 ORDER BY product",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let start: Option<i64> = r.get("pinned_period_start");
                let amount: Option<i64> = r.get("pinned_amount");
                LimitRow { product: r.get("product"), amount: r.get("amount"), pinned: start.zip(amount) }
            })
            .collect())
    }

    async fn set_limits(
        &self,
        customer_id: &str,
        changes: &[(String, Option<LimitRow>)],
        now: i64,
        by: CredentialKind,
    ) -> StoreResult<()> {
        self.write_limits(customer_id, changes, now, by).await
    }

    async fn limit_changes(
        &self,
        customer_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<LimitChange>> {
        self.read_limit_changes(customer_id, before, limit).await
    }

    async fn usage_daily(&self, customer_id: &str, period_start: i64) -> StoreResult<Vec<DailyUsage>> {
        self.read_daily(customer_id, period_start).await
    }

    async fn insert_portal_session(&self, session: &PortalSessionRow, link_hash: &str) -> StoreResult<()> {
        self.write_portal_session(session, link_hash).await
    }

    async fn open_portal_link(
        &self,
        link_hash: &str,
        session_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<Option<PortalSessionRow>> {
        self.write_link_opened(link_hash, session_hash, now, expires_at).await
    }

    async fn portal_session(
        &self,
        session_hash: &str,
        now: i64,
        idle: i64,
    ) -> StoreResult<Option<PortalSessionRow>> {
        self.read_session(session_hash, now, idle).await
    }

    async fn portal_session_by_id(&self, id: &str) -> StoreResult<Option<PortalSessionRow>> {
        self.read_session_by_id(id).await
    }

    async fn revoke_portal_session(&self, id: &str, now: i64) -> StoreResult<Option<PortalSessionRow>> {
        self.write_revoked(id, now).await
    }

    async fn insert_alert(
        &self,
        customer_id: &str,
        a: &AlertRow,
        events: &[NewOutboxEvent],
    ) -> StoreResult<bool> {
        self.write_alert(customer_id, a, events).await
    }

    async fn alerts(&self, customer_id: &str) -> StoreResult<Vec<AlertRow>> {
        let rows = sqlx::query(
            "SELECT period_start, product, threshold, detected_at FROM alerts WHERE customer_id = $1
             ORDER BY detected_at, period_start, product, threshold",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AlertRow {
                period_start: r.get("period_start"),
                product: r.get("product"),
                threshold: r.get("threshold"),
                detected_at: r.get("detected_at"),
            })
            .collect())
    }

    async fn claim_idempotent(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: i64,
    ) -> StoreResult<Idempotent> {
        self.write_claim(scope, key, request_hash, now).await
    }

    async fn finish_idempotent(&self, scope: &str, key: &str, status: i64, body: &str) -> StoreResult<()> {
        sqlx::query("UPDATE idempotency_keys SET status = $1, body = $2 WHERE scope = $3 AND key = $4")
            .bind(status)
            .bind(body)
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release_idempotent(&self, scope: &str, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL")
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn purge_idempotent(&self, before: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(B::rows_affected(&done))
    }

    async fn set_open_until(&self, customer_id: &str, open_until: i64) -> StoreResult<()> {
        sqlx::query("UPDATE customers SET open_until = $1 WHERE id = $2 AND open_until IS NULL")
            .bind(open_until)
            .bind(customer_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn anchor_counts(&self, before: i64) -> StoreResult<Vec<(i64, i64)>> {
        let rows = sqlx::query(
            "SELECT billing_anchor, COUNT(*) AS n FROM customers WHERE billing_anchor < $1
             GROUP BY billing_anchor ORDER BY billing_anchor",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get("billing_anchor"), r.get("n"))).collect())
    }

    async fn customers_without_open_until(&self) -> StoreResult<Vec<CustomerRow>> {
        let rows = sqlx::query(&format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE open_until IS NULL"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(customer_row).collect()
    }

    async fn insert_commitment(&self, c: &CommitmentRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO commitments (id, customer_id, yearly_credit, terms, starts_at, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.id)
        .bind(&c.customer_id)
        .bind(&c.yearly_credit)
        .bind(&c.terms)
        .bind(c.starts_at)
        .bind(c.expires_at)
        .bind(c.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn commitments(&self, customer_id: &str) -> StoreResult<Vec<CommitmentRow>> {
        let rows = sqlx::query(
            "SELECT id, customer_id, yearly_credit, terms, starts_at, expires_at, created_at FROM commitments
             WHERE customer_id = $1 ORDER BY starts_at, created_at, id",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(commitment_row).collect()
    }

    async fn credit_entries(&self, customer_id: &str) -> StoreResult<Vec<CreditEntry>> {
        let rows = sqlx::query(
            "SELECT customer_id, commitment_id, invoice_id, kind, amount, at FROM credit_entries
             WHERE customer_id = $1 ORDER BY seq",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(credit_row).collect()
    }

    async fn invoice(&self, id: &str) -> StoreResult<Option<InvoiceRow>> {
        let row = sqlx::query(&format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| invoice_row(&r)).transpose()
    }

    async fn invoices(
        &self,
        filter: &InvoiceFilter,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<InvoiceRow>> {
        self.read_invoices(filter, after, limit).await
    }

    async fn last_invoiced_period(&self) -> StoreResult<Option<i64>> {
        self.read_last_invoiced_period().await
    }

    async fn invoiced_requests(
        &self,
        from: i64,
        until: i64,
        after: &str,
        customers: i64,
    ) -> StoreResult<InvoicedPage> {
        self.read_invoiced_requests(from, until, after, customers).await
    }

    async fn open_periods(&self, after: &str, customers: i64) -> StoreResult<Vec<Due>> {
        self.read_open_periods(after, customers).await
    }

    async fn transition_invoice(
        &self,
        id: &str,
        action: InvoiceAction,
        prefix: &str,
        now: i64,
    ) -> StoreResult<Transition> {
        self.write_transition(id, action, prefix, now).await
    }

    async fn open_run(
        &self,
        id: &str,
        as_of: i64,
        issue: bool,
        eligible: i64,
        now: i64,
    ) -> StoreResult<(RunRow, bool)> {
        self.write_run(id, as_of, issue, eligible, now).await
    }

    async fn run(&self, id: &str) -> StoreResult<Option<RunRow>> {
        self.read_run(id).await
    }

    async fn finish_run(&self, id: &str, now: i64, event: &NewOutboxEvent) -> StoreResult<()> {
        self.write_finish(id, now, event).await
    }

    async fn pending(&self, as_of: i64, run_id: &str) -> StoreResult<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM customers WHERE open_until <= $1 AND NOT EXISTS
             (SELECT 1 FROM invoice_run_failures f WHERE f.run_id = $2 AND f.customer_id = customers.id)",
        )
        .bind(as_of)
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get("n"))
    }

    async fn invoice_batch(
        &self,
        run: &RunRow,
        cursor: &ClaimCursor,
        limit: usize,
        prefix: &str,
        now: i64,
        price: &PriceFn,
    ) -> StoreResult<BatchDone> {
        self.write_batch(run, cursor, limit, prefix, now, price).await
    }

    async fn outbox_events(
        &self,
        filter: &EventFilter,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<OutboxEvent>> {
        self.read_events(filter, before, limit).await
    }

    async fn outbox_event(&self, id: &str) -> StoreResult<Option<OutboxEvent>> {
        self.read_event(id).await
    }

    async fn put_endpoint(&self, endpoint: &EndpointRow, replaces: Option<i64>) -> StoreResult<bool> {
        self.write_endpoint(endpoint, replaces).await
    }

    async fn endpoints(&self, id: Option<&str>) -> StoreResult<Vec<EndpointRow>> {
        self.read_endpoints(id).await
    }

    async fn delete_endpoint(&self, id: &str) -> StoreResult<bool> {
        self.remove_endpoint(id).await
    }

    async fn dispatch_events(&self, now: i64, render: &RenderFn) -> StoreResult<usize> {
        self.write_dispatch(now, render).await
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limits: &ClaimLimits,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        self.write_lease(now, lease_until, limits).await
    }

    async fn record_attempts(&self, batch: &[Attempted]) -> StoreResult<Vec<bool>> {
        self.write_attempts(batch).await
    }

    async fn deliveries(
        &self,
        endpoint_id: Option<&str>,
        id: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRow>> {
        self.read_deliveries(endpoint_id, id, before, limit).await
    }

    async fn retry_delivery(&self, id: &str, now: i64) -> StoreResult<bool> {
        self.write_retry(id, now).await
    }
}
