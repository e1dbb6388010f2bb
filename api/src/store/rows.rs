//! Rows as read back: each column checked, a value that cannot be read is `StoreError::Corrupt`, never a panic.
use sqlx::Row;

use crate::store::error::{corrupt, StoreResult};
use crate::store::types::{CommitmentRow, CreditEntry, CustomerRow, InvoiceRow, RunFailure, RunRow};

pub(super) fn customer_row<R: Row>(r: &R) -> StoreResult<CustomerRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let addons: String = r.try_get("addons")?;
    let billing_anchor: i64 = r.try_get("billing_anchor")?;
    Ok(CustomerRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        billing_anchor,
        addons: serde_json::from_str(&addons).map_err(|e| corrupt("customer add-ons", e))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        open_from: r.try_get::<Option<i64>, _>("open_from")?.unwrap_or(billing_anchor),
        open_until: r.try_get("open_until")?,
    })
}

pub(super) fn commitment_row<R: Row>(r: &R) -> StoreResult<CommitmentRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(CommitmentRow {
        id: r.try_get("id")?,
        customer_id: r.try_get("customer_id")?,
        yearly_credit: r.try_get("yearly_credit")?,
        terms: r.try_get("terms")?,
        starts_at: r.try_get("starts_at")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(super) fn credit_row<R: Row>(r: &R) -> StoreResult<CreditEntry>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(CreditEntry {
        commitment_id: r.try_get("commitment_id")?,
        invoice_id: r.try_get("invoice_id")?,
        kind: r.try_get("kind")?,
        amount: r.try_get("amount")?,
        at: r.try_get("at")?,
    })
}

pub(super) fn invoice_row<R: Row>(r: &R) -> StoreResult<InvoiceRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(InvoiceRow {
        id: r.try_get("id")?,
        customer_id: r.try_get("customer_id")?,
        period_start: r.try_get("period_start")?,
        period_end: r.try_get("period_end")?,
        status: r.try_get("status")?,
        number: r.try_get("number")?,
        price_book_version: r.try_get("price_book_version")?,
        currency: r.try_get("currency")?,
        request: r.try_get("request")?,
        bill: r.try_get("bill")?,
        total: r.try_get("total")?,
        credit_applied: r.try_get("credit_applied")?,
        amount_due: r.try_get("amount_due")?,
        run_id: r.try_get("run_id")?,
        created_at: r.try_get("created_at")?,
        issued_at: r.try_get("issued_at")?,
        paid_at: r.try_get("paid_at")?,
        voided_at: r.try_get("voided_at")?,
    })
}

pub(super) fn run_row<R: Row>(r: &R, failures: Vec<RunFailure>) -> StoreResult<RunRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let issue: i64 = r.try_get("issue")?;
    Ok(RunRow {
        id: r.try_get("id")?,
        as_of: r.try_get("as_of")?,
        issue: issue != 0,
        status: r.try_get("status")?,
        eligible: r.try_get("eligible")?,
        invoiced: r.try_get("invoiced")?,
        created_at: r.try_get("created_at")?,
        finished_at: r.try_get("finished_at")?,
        failures,
    })
}
