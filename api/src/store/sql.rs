//! The two implementations of [`Store`]: one `sql_store!` expansion per database, the differences between them
//! given as the macro's arguments (placeholders, the statement that begins a write, lock clauses, the claim and
//! read of a batch of due customers) and the few `if $lock_first …` branches inside. Replacing the macro with one
//! implementation generic over a small backend trait is the next step of this layer (ARCHITECTURE.md).

use super::backend::Backend;
use super::due::*;
use super::migrations::Embedded;
use super::rows::*;
use super::*;

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
}

impl<B: Backend> SqlStore<B> {
    /// The store over `pool`; `alive` is held while it lives (background tasks on the pool watch it).
    pub(super) fn new(pool: sqlx::Pool<B::Db>, alive: Arc<()>) -> Self {
        SqlStore { pool, _alive: alive, backend: std::marker::PhantomData }
    }
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
    /// The start of the open period of each customer named, read under a shared lock (PostgreSQL) or the
    /// write lock (SQLite): an invoice run cannot close one of these periods until the caller commits.
    async fn open_from<'a>(
        tx: &mut sqlx::Transaction<'static, B::Db>,
        customers: impl Iterator<Item = &'a str>,
    ) -> StoreResult<std::collections::HashMap<String, i64>> {
        let mut ids: Vec<&str> = customers.collect();
        ids.sort_unstable();
        ids.dedup();
        let mut open = std::collections::HashMap::with_capacity(ids.len());
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
    /// Up to `n` customers of `run` after the id `after` in claim order (by id), with all pricing needs;
    /// `None` when none is left.
    async fn due_chunk(
        tx: &mut sqlx::Transaction<'static, B::Db>,
        run: &RunRow,
        after: String,
        n: usize,
    ) -> StoreResult<Option<ReadChunk>> {
        // Everything as one JSON document built by the database: one row crosses to this task instead of one
        // per customer, usage total, cap, commitment and credit entry. It is parsed on the pricing thread:
        // only the count and the last key, which the next read needs, are read here.
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let (doc, count, last): (Option<String>, i64, Option<String>) = match B::CLAIM_QUERY {
            // PostgreSQL: the rows locked first, then read by a statement of its own, whose snapshot is
            // taken after the locks: usage committed before a lock was granted is in it. (Read in the
            // locking statement, it would miss usage committed while that statement ran.)
            Some(claim) => {
                let claimed: Vec<String> = sqlx::query_scalar(claim)
                    .bind(run.as_of)
                    .bind(&run.id)
                    .bind(n)
                    .bind(after)
                    .fetch_all(&mut **tx)
                    .await?;
                let Some(last) = claimed.last().cloned() else {
                    return Ok(None);
                };
                let sql = B::DUE_QUERY.replace("{ids}", &B::params(0, claimed.len()));
                let mut query = sqlx::query_scalar(&sql);
                for id in &claimed {
                    query = query.bind(id);
                }
                let doc = query.fetch_one(&mut **tx).await?;
                (doc, i64::try_from(claimed.len()).unwrap_or(i64::MAX), Some(last))
            }
            // SQLite: one statement under the write lock `BEGIN IMMEDIATE` took.
            None => {
                let row = sqlx::query(B::DUE_QUERY)
                    .bind(run.as_of)
                    .bind(&run.id)
                    .bind(n)
                    .bind(after)
                    .fetch_one(&mut **tx)
                    .await?;
                (row.try_get("doc")?, row.try_get("n")?, row.try_get("last_id")?)
            }
        };
        match (doc, last) {
            (Some(doc), Some(last)) if count > 0 => {
                Ok(Some(ReadChunk { doc, count: usize::try_from(count).unwrap_or(0), last }))
            }
            _ => Ok(None),
        }
    }

    /// The pricing thread's part of a chunk: reads the document, prices each customer's period and, unless
    /// the invoices are issued (numbered under the lock, in `write_chunk`), builds the statements storing them.
    fn prepare(
        doc: &str,
        price: &PriceFn,
        issuing: bool,
    ) -> StoreResult<PricedChunk<<B::Db as sqlx::Database>::Arguments<'static>>> {
        let due = parse_due(doc)?;
        let mut chunk = price_chunk(&due, &**price);
        if !issuing {
            chunk.statements = Some(Self::statements(&mut chunk.priced)?);
        }
        Ok(chunk)
    }

    /// The statements storing priced invoices: multi-row inserts, then one update per list of customers moving
    /// their open period on (a statement is a round trip to the database's thread or server). The invoices'
    /// request and bill (most of their bytes) move into the statements, leaving the invoices without them.
    fn statements(
        priced: &mut [PricedInvoice],
    ) -> StoreResult<Vec<(String, <B::Db as sqlx::Database>::Arguments<'static>)>> {
        use sqlx::Arguments as _;
        let bad = |e| corrupt("invoice", e);
        let mut statements = Vec::new();
        for chunk in priced.chunks_mut(INVOICES_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len()).map(|i| B::params(i * 18, 18)).collect();
            let sql = format!("INSERT INTO invoices ({INVOICE_COLUMNS}) VALUES {}", rows.join(","));
            let mut args = <B::Db as sqlx::Database>::Arguments::<'static>::default();
            args.reserve(chunk.len() * 18, 0);
            for p in chunk {
                let i = &mut p.invoice;
                args.add(i.id.clone()).map_err(bad)?;
                args.add(i.customer_id.clone()).map_err(bad)?;
                args.add(i.period_start).map_err(bad)?;
                args.add(i.period_end).map_err(bad)?;
                args.add(i.status.clone()).map_err(bad)?;
                args.add(i.number.clone()).map_err(bad)?;
                args.add(i.price_book_version.clone()).map_err(bad)?;
                args.add(i.currency.clone()).map_err(bad)?;
                args.add(std::mem::take(&mut i.request)).map_err(bad)?;
                args.add(std::mem::take(&mut i.bill)).map_err(bad)?;
                args.add(i.total.clone()).map_err(bad)?;
                args.add(i.credit_applied.clone()).map_err(bad)?;
                args.add(i.amount_due.clone()).map_err(bad)?;
                args.add(i.run_id.clone()).map_err(bad)?;
                args.add(i.created_at).map_err(bad)?;
                args.add(i.issued_at).map_err(bad)?;
                args.add(i.paid_at).map_err(bad)?;
                args.add(i.voided_at).map_err(bad)?;
            }
            statements.push((sql, args));
        }
        // The periods close with their invoices: each customer's open period moves on, in the same
        // transaction.
        for chunk in priced.chunks(IN_LIST) {
            let rows: Vec<String> = (0..chunk.len()).map(|i| B::params(i * 3, 3)).collect();
            let sql = format!(
                "UPDATE customers SET open_from = v.column2, open_until = v.column3
                 FROM (VALUES {}) AS v WHERE customers.id = v.column1",
                rows.join(",")
            );
            let mut args = <B::Db as sqlx::Database>::Arguments::<'static>::default();
            for p in chunk {
                args.add(p.invoice.customer_id.clone()).map_err(bad)?;
                args.add(p.next.0).map_err(bad)?;
                args.add(p.next.1).map_err(bad)?;
            }
            statements.push((sql, args));
        }
        Ok(statements)
    }

    /// Stores a priced chunk: numbers (when issuing), invoices, credit consumption, the periods closed, the
    /// failures. Counts into `done`.
    async fn write_chunk(
        tx: &mut sqlx::Transaction<'static, B::Db>,
        run: &RunRow,
        prefix: &str,
        now: i64,
        chunk: PricedChunk<<B::Db as sqlx::Database>::Arguments<'static>>,
        done: &mut BatchDone,
    ) -> StoreResult<()> {
        let PricedChunk { mut priced, failures, statements } = chunk;
        let statements = match statements {
            Some(statements) => statements,
            None => {
                let issuing = i64::try_from(priced.iter().filter(|p| p.invoice.status == "issued").count())
                    .unwrap_or(i64::MAX);
                if issuing > 0 {
                    let next: i64 = sqlx::query(
                        "UPDATE invoice_numbers SET next = next + $1 WHERE id = 1 RETURNING next",
                    )
                    .bind(issuing)
                    .fetch_one(&mut **tx)
                    .await?
                    .get("next");
                    let issued = priced.iter_mut().filter(|p| p.invoice.status == "issued");
                    for (n, p) in (next - issuing..).zip(issued) {
                        p.invoice.number = Some(invoice_number(prefix, n));
                        p.invoice.issued_at = Some(now);
                    }
                }
                Self::statements(&mut priced)?
            }
        };
        for (sql, args) in statements {
            sqlx::query_with(&sql, B::arguments(args)).execute(&mut **tx).await?;
        }
        for p in &priced {
            for e in &p.consumption {
                sqlx::query(
                    "INSERT INTO credit_entries (customer_id, commitment_id, invoice_id, kind, amount, at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&p.invoice.customer_id)
                .bind(&e.commitment_id)
                .bind(&e.invoice_id)
                .bind(&e.kind)
                .bind(&e.amount)
                .bind(e.at)
                .execute(&mut **tx)
                .await?;
            }
        }
        for (customer, period_start, reason) in &failures {
            sqlx::query(
                "INSERT INTO invoice_run_failures (run_id, customer_id, period_start, reason, at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&run.id)
            .bind(customer)
            .bind(*period_start)
            .bind(reason)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        done.invoiced += priced.len();
        done.failed += failures.len();
        Ok(())
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

    async fn rotate_key(&self, customer_id: &str, key_hash: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
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

    async fn key_owner(&self, key_hash: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT customer_id FROM api_keys WHERE hash = $1 AND revoked_at IS NULL")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("customer_id")))
    }

    async fn insert_events(&self, events: &[NewEvent], now: i64) -> StoreResult<Vec<EventOutcome>> {
        let mut outcome = vec![EventOutcome::Duplicate; events.len()];
        let mut totals: BTreeMap<(&str, i64, &str), i64> = BTreeMap::new();
        // SQLite: a deferred BEGIN, because the first statement is the INSERT, which takes the write lock as
        // it starts (SQLite retries that with a fresh snapshot while the transaction has read nothing), so
        // everything it and later statements read is current. Measured: 8 concurrent writers store ~25 %
        // more events a second than with BEGIN IMMEDIATE (BENCHMARKS.md, issue 8).
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
        let is_open = |open: &std::collections::HashMap<String, i64>, e: &NewEvent| {
            open.get(e.customer_id.as_str()).is_none_or(|o| e.period_start >= *o)
        };
        let candidates: Vec<(usize, &NewEvent)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| open_from.as_ref().is_none_or(|open| is_open(open, e)))
            .collect();
        for chunk in candidates.chunks(EVENTS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len()).map(|i| B::params(i * 7, 7)).collect();
            let sql = if B::LOCK_FIRST {
                format!(
                    "INSERT INTO usage_events (customer_id, event_id, meter, quantity_micros, occurred_at, \
                     period_start, received_at) VALUES {} \
                     ON CONFLICT (customer_id, event_id) DO NOTHING RETURNING customer_id, event_id",
                    rows.join(",")
                )
            } else {
                format!(
                    "INSERT INTO usage_events (customer_id, event_id, meter, quantity_micros, occurred_at, \
                     period_start, received_at) \
                     SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7 \
                     FROM (VALUES {}) AS v LEFT JOIN customers c ON c.id = v.column1 \
                     WHERE c.id IS NULL OR v.column6 >= COALESCE(c.open_from, c.billing_anchor) \
                     ON CONFLICT (customer_id, event_id) DO NOTHING RETURNING customer_id, event_id",
                    rows.join(",")
                )
            };
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
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|r| (r.get("customer_id"), r.get("event_id")))
                .collect();
            let inserted: std::collections::HashSet<(&str, &str)> =
                returned.iter().map(|(c, e)| (c.as_str(), e.as_str())).collect();
            // The first event of a chunk with a returned id is the one stored; a repeat is a duplicate.
            let mut seen: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
            for (index, e) in chunk {
                let key = (e.customer_id.as_str(), e.event_id.as_str());
                if inserted.contains(&key) && seen.insert(key) {
                    outcome[*index] = EventOutcome::Stored;
                    let total = totals.entry((&e.customer_id, e.period_start, &e.meter)).or_default();
                    *total = total
                        .checked_add(e.quantity_micros)
                        .ok_or_else(|| corrupt("usage total", "overflow"))?;
                }
            }
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
            for index in unstored {
                let e = &events[index];
                if is_open(&open, e) {
                    continue;
                }
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
        for ((customer, period_start, meter), micros) in totals {
            sqlx::query(
                "INSERT INTO usage_totals (customer_id, period_start, meter, events_micros) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (customer_id, period_start, meter)
                 DO UPDATE SET events_micros = usage_totals.events_micros + excluded.events_micros",
            )
            .bind(customer)
            .bind(period_start)
            .bind(meter)
            .bind(micros)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn insert_reports(&self, reports: &[NewReport]) -> StoreResult<Vec<bool>> {
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
        tx.commit().await?;
        Ok(stored)
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
        // The running sum in time order (ties by id): the first event at which it reaches `micros`.
        let row = sqlx::query(
            "SELECT occurred_at FROM (
               SELECT occurred_at, SUM(quantity_micros) OVER (ORDER BY occurred_at, event_id) AS running
               FROM usage_events WHERE customer_id = $1 AND period_start = $2 AND meter = $3
             ) AS t WHERE running >= $4 ORDER BY occurred_at LIMIT 1",
        )
        .bind(customer_id)
        .bind(period_start)
        .bind(meter)
        .bind(micros)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get("occurred_at")))
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
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (product, change) in changes {
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

    async fn insert_alert(&self, customer_id: &str, a: &AlertRow) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO alerts (customer_id, period_start, product, threshold, detected_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id, period_start, product, threshold) DO NOTHING",
        )
        .bind(customer_id)
        .bind(a.period_start)
        .bind(&a.product)
        .bind(&a.threshold)
        .bind(a.detected_at)
        .execute(&self.pool)
        .await?;
        Ok(B::rows_affected(&done) == 1)
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
        // Keys older than 24 hours are forgotten first, so the same key can be used again after a day.
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at < $3")
            .bind(scope)
            .bind(key)
            .bind(now - 86_400_000_000)
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
        let mut sql = format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id > $1");
        let mut n = 1;
        let mut next = |sql: &mut String, column: &str| {
            n += 1;
            sql.push_str(&format!(" AND {column} = ${n}"));
        };
        if filter.customer_id.is_some() {
            next(&mut sql, "customer_id");
        }
        if filter.period_start.is_some() {
            next(&mut sql, "period_start");
        }
        if filter.status.is_some() {
            next(&mut sql, "status");
        }
        sql.push_str(&format!(" ORDER BY id LIMIT ${}", n + 1));
        let mut query = sqlx::query(&sql).bind(after.unwrap_or(""));
        if let Some(c) = &filter.customer_id {
            query = query.bind(c);
        }
        if let Some(p) = filter.period_start {
            query = query.bind(p);
        }
        if let Some(st) = &filter.status {
            query = query.bind(st);
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(invoice_row).collect()
    }

    async fn transition_invoice(
        &self,
        id: &str,
        action: InvoiceAction,
        prefix: &str,
        now: i64,
    ) -> StoreResult<Transition> {
        let mut tx = self.pool.begin_with(B::BEGIN_WRITE).await?;
        let row =
            sqlx::query(&format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1{}", B::UPDATE_LOCK))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else { return Ok(Transition::NotFound) };
        let mut invoice = invoice_row(&row)?;
        match (action, invoice.status.as_str()) {
            (InvoiceAction::Issue, "draft") => {
                let next: i64 =
                    sqlx::query("UPDATE invoice_numbers SET next = next + 1 WHERE id = 1 RETURNING next")
                        .fetch_one(&mut *tx)
                        .await?
                        .get("next");
                invoice.number = Some(invoice_number(prefix, next - 1));
                invoice.status = "issued".into();
                invoice.issued_at = Some(now);
                sqlx::query(
                    "UPDATE invoices SET status = 'issued', number = $1, issued_at = $2 WHERE id = $3",
                )
                .bind(&invoice.number)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            (InvoiceAction::Pay, "issued") => {
                invoice.status = "paid".into();
                invoice.paid_at = Some(now);
                sqlx::query("UPDATE invoices SET status = 'paid', paid_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            (InvoiceAction::Void, "draft" | "issued") => {
                invoice.status = "void".into();
                invoice.voided_at = Some(now);
                sqlx::query("UPDATE invoices SET status = 'void', voided_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                // The credit the invoice consumed goes back to the commitments it came from.
                let consumed = sqlx::query(
                    "SELECT customer_id, commitment_id, invoice_id, kind, amount, at FROM credit_entries
                     WHERE invoice_id = $1 AND kind = 'consumption' ORDER BY seq",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                for r in &consumed {
                    let entry = credit_row(r)?;
                    let amount: rust_decimal::Decimal =
                        entry.amount.parse().map_err(|e| corrupt("credit amount", e))?;
                    sqlx::query(
                        "INSERT INTO credit_entries (customer_id, commitment_id, invoice_id, kind, amount, at)
                         VALUES ($1, $2, $3, 'void_return', $4, $5)",
                    )
                    .bind(&invoice.customer_id)
                    .bind(&entry.commitment_id)
                    .bind(id)
                    .bind((-amount).to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            (_, status) => return Ok(Transition::InvalidState(status.to_owned())),
        }
        tx.commit().await?;
        Ok(Transition::Done(Box::new(invoice)))
    }

    async fn open_run(
        &self,
        id: &str,
        as_of: i64,
        issue: bool,
        eligible: i64,
        now: i64,
    ) -> StoreResult<(RunRow, bool)> {
        for _ in 0..3 {
            let done = sqlx::query(
                "INSERT INTO invoice_runs (id, as_of, issue, status, eligible, invoiced, created_at)
                 VALUES ($1, $2, $3, 'running', $4, 0, $5) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(as_of)
            .bind(i64::from(issue))
            .bind(eligible)
            .bind(now)
            .execute(&self.pool)
            .await?;
            let created = B::rows_affected(&done) == 1;
            let row = sqlx::query(&format!(
                "SELECT {RUN_COLUMNS} FROM invoice_runs WHERE as_of = $1 AND issue = $2 AND status = 'running'"
            ))
            .bind(as_of)
            .bind(i64::from(issue))
            .fetch_optional(&self.pool)
            .await?;
            // (None: the running run completed between the two statements; try again.)
            if let Some(row) = row {
                return Ok((run_row(&row, Vec::new())?, created));
            }
        }
        Err(StoreError::Corrupt("cannot open an invoice run".into()))
    }

    async fn run(&self, id: &str) -> StoreResult<Option<RunRow>> {
        let Some(row) = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM invoice_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let failures = sqlx::query(
            "SELECT customer_id, period_start, reason FROM invoice_run_failures WHERE run_id = $1
             ORDER BY customer_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| RunFailure {
            customer_id: r.get("customer_id"),
            period_start: r.get("period_start"),
            reason: r.get("reason"),
        })
        .collect();
        Ok(Some(run_row(&row, failures)?))
    }

    async fn finish_run(&self, id: &str, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE invoice_runs SET status = 'completed', finished_at = $1 WHERE id = $2 AND status = 'running'")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
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
        let mut tx = self.pool.begin_with(B::BEGIN_WRITE).await?;
        // A pipeline inside the one transaction. One blocking thread (the other core) reads each chunk's
        // document, prices its customers and builds the statements storing them, chunk after chunk in
        // claim order; the database meanwhile reads the chunks ahead and writes each chunk as soon as it is
        // priced, so neither side waits for the other while there is work for it (a chunk at a time, in
        // lock step, each waited for the slower of the two at every step). The transaction holds the write
        // lock (SQLite) or the claimed rows (PostgreSQL) throughout, so what a chunk read cannot change
        // before its invoices commit. Chunks follow the claim order (by id) and a chunk starts after the
        // last customer of the one before, so two chunks never hold the same customer and reading ahead
        // never reads a customer before an earlier chunk's invoice for it is written; a customer whose
        // next period also ended comes back in a later batch, after its first period's invoice is
        // committed.
        let (to_pricer, docs) = std::sync::mpsc::channel::<String>();
        let (to_database, mut priced) = tokio::sync::mpsc::unbounded_channel();
        let (pricer, issuing) = (Arc::clone(price), run.issue);
        let pricing = tokio::task::spawn_blocking(move || {
            for doc in docs {
                if to_database.send(Self::prepare(&doc, &pricer, issuing)).is_err() {
                    break;
                }
            }
        });
        let mut done = BatchDone::default();
        // The last customer this batch claimed; `None` until its first chunk.
        let mut last: Option<String> = None;
        let (mut in_flight, mut reading) = (0_usize, true);
        loop {
            // A priced chunk is written first: it is what the pricing thread has finished with.
            let ready = match priced.try_recv() {
                Ok(chunk) => Some(chunk),
                Err(_) if reading && in_flight < CHUNKS_AHEAD => None,
                Err(_) if in_flight == 0 => break,
                Err(_) => match priced.recv().await {
                    Some(chunk) => Some(chunk),
                    // The pricing thread stopped without an answer: it panicked.
                    None => {
                        return Err(match pricing.await {
                            Err(e) => corrupt("pricing", e),
                            Ok(()) => corrupt("pricing", "the pricing thread stopped"),
                        })
                    }
                },
            };
            if let Some(chunk) = ready {
                in_flight -= 1;
                Self::write_chunk(&mut tx, run, prefix, now, chunk?, &mut done).await?;
                continue;
            }
            // The first chunk is small: while it is priced the database has only the second to read, and a
            // batch's first pricing is time the database would otherwise wait.
            let wanted = match &last {
                None => limit.min(FIRST_CHUNK),
                Some(_) => limit.saturating_sub(done.claimed).min(DUE_CHUNK),
            };
            // After what the other workers claimed meanwhile, and never before this batch's own claims (the
            // cursor may have been restarted by a worker finding the end of the pass).
            let from = last.as_deref().map_or_else(|| cursor.get(), |own| cursor.after(own));
            let next = if wanted == 0 { None } else { Self::due_chunk(&mut tx, run, from, wanted).await? };
            let Some(ReadChunk { doc, count, last: claimed_to }) = next else {
                reading = false;
                continue;
            };
            cursor.advance(&claimed_to);
            last = Some(claimed_to);
            done.claimed += count;
            in_flight += 1;
            if to_pricer.send(doc).is_err() {
                return Err(match pricing.await {
                    Err(e) => corrupt("pricing", e),
                    Ok(()) => corrupt("pricing", "the pricing thread stopped"),
                });
            }
        }
        drop(to_pricer);
        if done.claimed == 0 {
            tx.rollback().await?;
            return Ok(BatchDone::default());
        }
        sqlx::query("UPDATE invoice_runs SET invoiced = invoiced + $1 WHERE id = $2")
            .bind(i64::try_from(done.invoiced).unwrap_or(i64::MAX))
            .bind(&run.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done)
    }
}
