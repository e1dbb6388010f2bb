-- Invoice runs claim customers in primary-key order, filtering on open_until (a scan that reads each customer once
-- per run), instead of through an index on open_until: invoicing a period moves open_until, and with the index every
-- invoice also moved an index entry (two B-tree writes and their pages in the WAL). Measured on 100,000 customers:
-- see BENCHMARKS.md.
DROP INDEX IF EXISTS customers_open_until;

-- A period's usage totals are read by their key (customer, period start), every meter at once, by every invoice and
-- every usage view, and upserted by every usage write: stored as the key's own B-tree (WITHOUT ROWID), one B-tree
-- instead of the key's index beside a table it points into.
CREATE TABLE usage_totals_by_key (
    customer_id     TEXT NOT NULL,
    period_start    INTEGER NOT NULL,
    meter           TEXT NOT NULL,
    events_micros   INTEGER NOT NULL DEFAULT 0,
    reported_micros INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (customer_id, period_start, meter)
) WITHOUT ROWID;
INSERT INTO usage_totals_by_key (customer_id, period_start, meter, events_micros, reported_micros)
    SELECT customer_id, period_start, meter, events_micros, reported_micros FROM usage_totals;
DROP TABLE usage_totals;
ALTER TABLE usage_totals_by_key RENAME TO usage_totals;
