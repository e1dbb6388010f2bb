//! An invoice's lifecycle step and the opening of an invoice run, each one transaction.

use sqlx::Row;

use crate::store::backend::Backend;
use crate::store::error::{corrupt, StoreError, StoreResult};
use crate::store::rows::{credit_row, invoice_row, run_row};
use crate::store::sql::{SqlStore, INVOICE_COLUMNS, RUN_COLUMNS};
use crate::store::types::{
    invoice_number, InvoiceAction, InvoiceFilter, InvoiceRow, RunFailure, RunRow, Transition,
};
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
    pub(super) async fn write_transition(
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
                Self::return_credit(&mut tx, &invoice.customer_id, id, now).await?;
            }
            (_, status) => return Ok(Transition::InvalidState(status.to_owned())),
        }
        let kind = match action {
            InvoiceAction::Issue => "invoice.issued",
            InvoiceAction::Pay => "invoice.paid",
            InvoiceAction::Void => "invoice.voided",
        };
        let event = NewOutboxEvent::invoice(kind, &invoice.customer_id, id, now);
        Self::put_events(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(Transition::Done(Box::new(invoice)))
    }

    /// The credit a voided invoice consumed, back to the commitments it came from.
    async fn return_credit(
        tx: &mut sqlx::Transaction<'static, B::Db>,
        customer_id: &str,
        invoice_id: &str,
        now: i64,
    ) -> StoreResult<()> {
        let consumed = sqlx::query(
            "SELECT customer_id, commitment_id, invoice_id, kind, amount, at FROM credit_entries
             WHERE invoice_id = $1 AND kind = 'consumption' ORDER BY seq",
        )
        .bind(invoice_id)
        .fetch_all(&mut **tx)
        .await?;
        for r in &consumed {
            let entry = credit_row(r)?;
            let amount: rust_decimal::Decimal =
                entry.amount.parse().map_err(|e| corrupt("credit amount", e))?;
            sqlx::query(
                "INSERT INTO credit_entries (customer_id, commitment_id, invoice_id, kind, amount, at)
                 VALUES ($1, $2, $3, 'void_return', $4, $5)",
            )
            .bind(customer_id)
            .bind(&entry.commitment_id)
            .bind(invoice_id)
            .bind((-amount).to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    pub(super) async fn read_run(&self, id: &str) -> StoreResult<Option<RunRow>> {
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

    pub(super) async fn write_finish(&self, id: &str, now: i64, event: &NewOutboxEvent) -> StoreResult<()> {
        let mut tx = self.pool.begin_with(B::BEGIN_WRITE).await?;
        let done = sqlx::query(
            "UPDATE invoice_runs SET status = 'completed', finished_at = $1 WHERE id = $2 AND status = 'running'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if B::rows_affected(&done) == 1 {
            Self::put_events(&mut tx, std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn write_run(
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

    /// Invoices by id after `after` (matching `filter`), at most `limit`.
    pub(super) async fn read_invoices(
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
}
