//! What a price preview reads, per database: a page of customers and their invoices of a month. (Here, not in
//! `sql/reprice.rs`, because `backend.rs` picks one of them and `sql/` depends on `backend.rs`.)

/// A page of customers (`$1` after this id, `$2` how many) with their invoices whose period starts in `[$3, $4)`,
/// void ones excepted, on SQLite. Paged over customers, not invoices, so a page always moves on (a customer without
/// such an invoice is one row of NULLs) and never splits a customer. Each customer's invoices are found through the
/// `(customer_id, period_start)` key (SQLite joins by nested loops): the cost is per customer, whatever history is
/// stored.
pub(super) const SQLITE_INVOICED_REQUESTS: &str = "
WITH c AS MATERIALIZED (SELECT id FROM customers WHERE id > $1 ORDER BY id LIMIT $2)
SELECT c.id AS customer_id, i.id AS invoice_id, i.period_start, i.period_end, i.price_book_version, i.currency,
       i.request, i.total
FROM c LEFT JOIN invoices i
    ON i.customer_id = c.id AND i.period_start >= $3 AND i.period_start < $4 AND i.status <> 'void'
ORDER BY c.id, i.period_start";

/// [`SQLITE_INVOICED_REQUESTS`] on PostgreSQL: the invoices of each customer in a `LATERAL` subquery that cannot be
/// flattened (`OFFSET 0`). A prepared statement's generic plan does not know the month's bounds, and as a plain join
/// it hashed every invoice of the month for each page of 1,000 customers (24 s for 100,000, against 1 s).
pub(super) const POSTGRES_INVOICED_REQUESTS: &str = "
WITH c AS MATERIALIZED (SELECT id FROM customers WHERE id > $1 ORDER BY id LIMIT $2)
SELECT c.id AS customer_id, i.id AS invoice_id, i.period_start, i.period_end, i.price_book_version, i.currency,
       i.request, i.total
FROM c LEFT JOIN LATERAL (SELECT * FROM invoices i
    WHERE i.customer_id = c.id AND i.period_start >= $3 AND i.period_start < $4 AND i.status <> 'void'
    ORDER BY i.period_start OFFSET 0) i ON true
ORDER BY c.id, i.period_start";
