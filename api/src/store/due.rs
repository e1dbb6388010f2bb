//! A batch of due customers as the database reads it: one JSON document per chunk, parsed here.

use crate::store::error::{corrupt, StoreResult};
use crate::store::types::{
    AddonSince, CommitmentRow, CreditEntry, CustomerRow, Due, LimitRow, MeterTotal, PricedInvoice,
    PricingError,
};

/// The next chunk of an invoice run (`$1` as_of, `$2` run id, `$3` how many, after the id `$4` in claim order: by
/// id), with each customer's usage in its open period, caps, commitments and credit movements: one JSON array, one
/// element per customer, in claim order (see [`parse_due`]), beside how many customers it holds and the id of the
/// last (`n`, `last_id`: where the next chunk starts, read without parsing the document). The customers are
/// materialized once, in claim order, which the aggregate keeps. Claim order is the primary key's, not an index on
/// `open_until`: invoicing a period then rewrites the customer's row and no index (see ARCHITECTURE.md). SQLite:
/// under the write lock `BEGIN IMMEDIATE` took. The inner lists are unordered (an `ORDER BY` inside each aggregate
/// costs a temporary B-tree per customer, measured 7.8 → 4.8 ms a batch of 500); [`parse_due`] orders them.
pub(super) const SQLITE_DUE: &str = "
WITH c AS MATERIALIZED (SELECT * FROM customers WHERE open_until <= $1 AND NOT EXISTS
      (SELECT 1 FROM invoice_run_failures f WHERE f.run_id = $2 AND f.customer_id = customers.id)
      AND id > $4
      ORDER BY id LIMIT $3)
SELECT count(*) AS n,
    max(c.id) AS last_id,
    json_group_array(json_array(
    c.id, c.name, c.billing_anchor, json(c.addons), c.created_at, c.updated_at, c.open_from, c.open_until,
    (SELECT json_group_array(json_array(u.meter, u.events_micros, u.reported_micros))
          FROM usage_totals u WHERE u.customer_id = c.id AND u.period_start = COALESCE(c.open_from, c.billing_anchor)),
    (SELECT json_group_array(json_array(l.product, l.amount, l.pinned_period_start, l.pinned_amount))
          FROM spend_limits l WHERE l.customer_id = c.id),
    (SELECT json_group_array(json_array(m.id, m.yearly_credit, m.terms, m.starts_at, m.expires_at, m.created_at))
          FROM commitments m WHERE m.customer_id = c.id),
    (SELECT json_group_array(json_array(e.commitment_id, e.invoice_id, e.kind, e.amount, e.at))
          FROM credit_entries e WHERE e.customer_id = c.id))) AS doc
FROM c";

/// The next chunk of a run on PostgreSQL (parameters as [`SQLITE_DUE`]'s), claimed with `FOR UPDATE SKIP LOCKED`
/// so concurrent workers take disjoint chunks.
pub(super) const POSTGRES_CLAIM: &str = "
SELECT id FROM customers WHERE open_until <= $1 AND NOT EXISTS
    (SELECT 1 FROM invoice_run_failures f WHERE f.run_id = $2 AND f.customer_id = customers.id)
    AND id > $4
ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED";

/// [`SQLITE_DUE`]'s document for PostgreSQL, of the customers [`POSTGRES_CLAIM`] locked (`{ids}`: their ids'
/// parameters).
pub(super) const POSTGRES_DUE: &str = "
WITH c AS (SELECT * FROM customers WHERE id IN {ids})
SELECT json_agg(json_build_array(
    c.id, c.name, c.billing_anchor, c.addons::json, c.created_at, c.updated_at, c.open_from, c.open_until,
    (SELECT COALESCE(json_agg(json_build_array(u.meter, u.events_micros, u.reported_micros)), '[]')
     FROM usage_totals u WHERE u.customer_id = c.id AND u.period_start = COALESCE(c.open_from, c.billing_anchor)),
    (SELECT COALESCE(json_agg(json_build_array(l.product, l.amount, l.pinned_period_start, l.pinned_amount)), '[]')
     FROM spend_limits l WHERE l.customer_id = c.id),
    (SELECT COALESCE(json_agg(json_build_array(m.id, m.yearly_credit, m.terms, m.starts_at, m.expires_at,
                                               m.created_at)), '[]')
     FROM commitments m WHERE m.customer_id = c.id),
    (SELECT COALESCE(json_agg(json_build_array(e.commitment_id, e.invoice_id, e.kind, e.amount, e.at)), '[]')
     FROM credit_entries e WHERE e.customer_id = c.id))
    ORDER BY c.id)::text
FROM c";

/// One customer of [`SQLITE_DUE`]'s document: its columns, then its usage, caps, commitments and credit movements.
pub(super) type DueDoc = (
    String,
    String,
    i64,
    Vec<AddonSince>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Vec<(String, i64, i64)>,
    Vec<(String, i64, Option<i64>, Option<i64>)>,
    Vec<(String, String, String, i64, i64, i64)>,
    Vec<(String, String, String, String, i64)>,
);

pub(super) fn sorted<T>(
    items: impl IntoIterator<Item = T>,
    order: impl FnMut(&T, &T) -> std::cmp::Ordering,
) -> Vec<T> {
    let mut items: Vec<T> = items.into_iter().collect();
    items.sort_by(order);
    items
}

/// Reads the document of [`SQLITE_DUE`] / [`POSTGRES_DUE`].
pub(super) fn parse_due(doc: &str) -> StoreResult<Vec<Due>> {
    let rows: Vec<DueDoc> = serde_json::from_str(doc).map_err(|e| corrupt("invoice batch", e))?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                name,
                billing_anchor,
                addons,
                created_at,
                updated_at,
                open_from,
                open_until,
                usage,
                limits,
                commitments,
                credits,
            )| {
                let commitments = sorted(
                    commitments.into_iter().map(
                        |(cid, yearly_credit, terms, starts_at, expires_at, created_at)| CommitmentRow {
                            id: cid,
                            customer_id: id.clone(),
                            yearly_credit,
                            terms,
                            starts_at,
                            expires_at,
                            created_at,
                        },
                    ),
                    |a: &CommitmentRow, b: &CommitmentRow| {
                        (a.starts_at, a.created_at, &a.id).cmp(&(b.starts_at, b.created_at, &b.id))
                    },
                );
                Due {
                    customer: CustomerRow {
                        addons,
                        id,
                        name,
                        billing_anchor,
                        created_at,
                        updated_at,
                        open_from: open_from.unwrap_or(billing_anchor),
                        open_until,
                    },
                    totals: sorted(
                        usage.into_iter().map(|(meter, events_micros, reported_micros)| MeterTotal {
                            meter,
                            events_micros,
                            reported_micros,
                        }),
                        |a: &MeterTotal, b: &MeterTotal| a.meter.cmp(&b.meter),
                    ),
                    limits: sorted(
                        limits.into_iter().map(|(product, amount, start, pinned)| LimitRow {
                            product,
                            amount,
                            pinned: start.zip(pinned),
                        }),
                        |a: &LimitRow, b: &LimitRow| a.product.cmp(&b.product),
                    ),
                    commitments,
                    credits: credits
                        .into_iter()
                        .map(|(commitment_id, invoice_id, kind, amount, at)| CreditEntry {
                            commitment_id,
                            invoice_id,
                            kind,
                            amount,
                            at,
                        })
                        .collect(),
                }
            },
        )
        .collect())
}

/// A chunk of due periods, priced: the invoices, and the customers that could not be priced with the period and why;
/// with the statements that store them when they could be built on the pricing thread (`A`: the database's
/// arguments; see `invoice_batch`).
pub(super) struct PricedChunk<A> {
    pub(super) priced: Vec<PricedInvoice>,
    pub(super) failures: Vec<(String, i64, String)>,
    /// The inserts of the invoices and the update closing their periods, built beside the pricing (`None` when the
    /// invoices are issued: their numbers are given under the database's lock, in `write_chunk`).
    pub(super) statements: Option<Vec<(String, A)>>,
}

/// A chunk as the database read it: the document of [`parse_due`] (parsed on the pricing thread), how many customers
/// it holds, and the id of its last customer (claim order is by id: the next chunk starts after it).
pub(super) struct ReadChunk {
    pub(super) doc: String,
    pub(super) count: usize,
    pub(super) last: String,
}

/// Customers per chunk of a batch's pipeline (see `invoice_batch`).
pub(super) const DUE_CHUNK: usize = 100;
/// Customers in a batch's first chunk (see `invoice_batch`).
pub(super) const FIRST_CHUNK: usize = 25;
/// Chunks a batch reads ahead of the one being written: read, waiting for the pricing thread or being priced.
pub(super) const CHUNKS_AHEAD: usize = 3;

pub(super) fn price_chunk<A>(
    due: &[Due],
    price: &(dyn Fn(&Due) -> Result<PricedInvoice, PricingError> + Send + Sync),
) -> PricedChunk<A> {
    let mut chunk =
        PricedChunk { priced: Vec::with_capacity(due.len()), failures: Vec::new(), statements: None };
    for d in due {
        match price(d) {
            Ok(p) => chunk.priced.push(p),
            Err(reason) => {
                chunk.failures.push((d.customer.id.clone(), d.customer.open_from, reason.to_string()));
            }
        }
    }
    chunk
}
