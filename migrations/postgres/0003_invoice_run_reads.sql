-- Invoice runs claim customers in primary-key order, filtering on open_until (a scan that reads each customer once
-- per run), instead of through an index on open_until: invoicing a period moves open_until, and with the index every
-- invoice also moved an index entry (two B-tree writes and their pages in the WAL). Measured on 100,000 customers:
-- see BENCHMARKS.md.
DROP INDEX IF EXISTS customers_open_until;
