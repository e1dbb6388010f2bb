//! What a price preview reads: the stored requests of a month's invoices, and customers' open periods. Plain reads
//! in pages of customers (by id): they lock nothing and write nothing, so a preview runs beside a live service.

use sqlx::Row;

use crate::store::backend::Backend;
use crate::store::due::parse_due;
use crate::store::error::StoreResult;
use crate::store::sql::SqlStore;
use crate::store::types::{Due, InvoicedPage, InvoicedRequest};

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
    /// The start of the latest period invoiced (void invoices excepted).
    pub(super) async fn read_last_invoiced_period(&self) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT max(period_start) FROM invoices WHERE status <> 'void'")
            .fetch_one(&self.pool)
            .await?)
    }

    /// See `Store::invoiced_requests`.
    pub(super) async fn read_invoiced_requests(
        &self,
        from: i64,
        until: i64,
        after: &str,
        customers: i64,
    ) -> StoreResult<InvoicedPage> {
        let rows = sqlx::query(B::INVOICED_REQUESTS)
            .bind(after)
            .bind(customers)
            .bind(from)
            .bind(until)
            .fetch_all(&self.pool)
            .await?;
        let mut page = InvoicedPage { requests: Vec::with_capacity(rows.len()), ..InvoicedPage::default() };
        for row in &rows {
            let customer_id: String = row.try_get("customer_id")?;
            if let Some(invoice_id) = row.try_get::<Option<String>, _>("invoice_id")? {
                page.requests.push(InvoicedRequest {
                    customer_id: customer_id.clone(),
                    invoice_id,
                    period_start: row.try_get("period_start")?,
                    period_end: row.try_get("period_end")?,
                    price_book_version: row.try_get("price_book_version")?,
                    currency: row.try_get("currency")?,
                    request: row.try_get("request")?,
                    total: row.try_get("total")?,
                });
            }
            if page.last.as_deref() != Some(customer_id.as_str()) {
                page.customers += 1;
                page.last = Some(customer_id);
            }
        }
        Ok(page)
    }

    /// See `Store::open_periods`: the invoice run's read of a chunk, without its claim.
    pub(super) async fn read_open_periods(&self, after: &str, customers: i64) -> StoreResult<Vec<Due>> {
        let doc: Option<String> = match B::CLAIM_QUERY {
            // PostgreSQL: the ids, then the document of those customers (the run's read, with no lock taken).
            Some(_) => {
                let ids: Vec<String> =
                    sqlx::query_scalar("SELECT id FROM customers WHERE id > $1 ORDER BY id LIMIT $2")
                        .bind(after)
                        .bind(customers)
                        .fetch_all(&self.pool)
                        .await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = B::DUE_QUERY.replace("{ids}", &B::params(0, ids.len()));
                let mut query = sqlx::query_scalar(&sql);
                for id in &ids {
                    query = query.bind(id);
                }
                query.fetch_one(&self.pool).await?
            }
            // SQLite: the run's one statement, read outside a write transaction. Every customer's open period has
            // ended by the end of time, and no run is named `''`: it reads every customer after `after`.
            None => sqlx::query(B::DUE_QUERY)
                .bind(i64::MAX)
                .bind("")
                .bind(customers)
                .bind(after)
                .fetch_one(&self.pool)
                .await?
                .try_get("doc")?,
        };
        match doc {
            Some(doc) => parse_due(&doc),
            None => Ok(Vec::new()),
        }
    }
}
