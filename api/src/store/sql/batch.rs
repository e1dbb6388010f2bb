//! One batch of an invoice run: claim due customers, read what pricing needs, price on a blocking thread while the
//! database writes the chunk before and reads the ones after, all inside one transaction.

use std::sync::Arc;

use sqlx::Row;

use crate::store::backend::Backend;
use crate::store::due::{
    parse_due, price_chunk, PricedChunk, ReadChunk, CHUNKS_AHEAD, DUE_CHUNK, FIRST_CHUNK,
};
use crate::store::error::{corrupt, StoreError, StoreResult};
use crate::store::sql::{SqlStore, INVOICES_PER_STATEMENT, INVOICE_COLUMNS, IN_LIST};
use crate::store::types::{invoice_number, BatchDone, ClaimCursor, PriceFn, PricedInvoice, RunRow};
use crate::store::webhooks::NewOutboxEvent;

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
        // Their events (`invoice.created`, and `invoice.issued` when issued), built here with the rest.
        for chunk in priced.chunks(INVOICES_PER_STATEMENT) {
            let events = chunk.iter().flat_map(|p| {
                let i = &p.invoice;
                let issued = (i.status == "issued").then_some("invoice.issued");
                std::iter::once("invoice.created")
                    .chain(issued)
                    .map(|kind| NewOutboxEvent::invoice(kind, &i.customer_id, &i.id, i.created_at))
            });
            let events: Vec<NewOutboxEvent> = events.collect();
            let rows: Vec<String> = (0..events.len()).map(|i| B::params(i * 5, 5)).collect();
            let sql = format!(
                "INSERT INTO outbox_events (id, type, customer_id, invoice_id, created_at) VALUES {}",
                rows.join(",")
            );
            let mut args = <B::Db as sqlx::Database>::Arguments::<'static>::default();
            args.reserve(events.len() * 5, 0);
            for e in events {
                args.add(e.id).map_err(bad)?;
                args.add(e.kind).map_err(bad)?;
                args.add(e.customer_id).map_err(bad)?;
                args.add(e.invoice_id).map_err(bad)?;
                args.add(e.created_at).map_err(bad)?;
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

    /// The pricing thread of a batch: it reads documents from the returned sender and answers each with its priced
    /// chunk, in order, until the sender is dropped.
    #[allow(clippy::type_complexity)] // the three ends of one pipeline, named at the call
    fn spawn_pricer(
        price: &PriceFn,
        issuing: bool,
    ) -> (
        std::sync::mpsc::Sender<String>,
        tokio::sync::mpsc::UnboundedReceiver<
            StoreResult<PricedChunk<<B::Db as sqlx::Database>::Arguments<'static>>>,
        >,
        tokio::task::JoinHandle<()>,
    ) {
        let (to_pricer, docs) = std::sync::mpsc::channel::<String>();
        let (to_database, priced) = tokio::sync::mpsc::unbounded_channel();
        let pricer = Arc::clone(price);
        let pricing = tokio::task::spawn_blocking(move || {
            for doc in docs {
                if to_database.send(Self::prepare(&doc, &pricer, issuing)).is_err() {
                    break;
                }
            }
        });
        (to_pricer, priced, pricing)
    }

    pub(super) async fn write_batch(
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
        let (to_pricer, mut priced, pricing) = Self::spawn_pricer(price, run.issue);
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
                    None => return Err(pricing_stopped(pricing).await),
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
                return Err(pricing_stopped(pricing).await);
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

/// Why a batch's pricing thread stopped answering: it panicked (or ended, which it never does first).
async fn pricing_stopped(pricing: tokio::task::JoinHandle<()>) -> StoreError {
    match pricing.await {
        Err(e) => corrupt("pricing", e),
        Ok(()) => corrupt("pricing", "the pricing thread stopped"),
    }
}
