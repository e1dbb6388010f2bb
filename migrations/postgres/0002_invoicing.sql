-- Invoicing (PostgreSQL): commitments and their credit, invoices, invoice runs. Amounts are decimal text, exact.

-- Each customer's first period without an invoice: [open_from, open_until). A period before open_from is closed:
-- no usage may enter it. Invoicing a period moves both in the invoice's own transaction. open_until is set for
-- customers created before this migration by the service at start (it needs calendar arithmetic).
ALTER TABLE customers ADD COLUMN open_from BIGINT;
ALTER TABLE customers ADD COLUMN open_until BIGINT;
UPDATE customers SET open_from = billing_anchor;
CREATE INDEX customers_open_until ON customers (open_until, id);

-- A yearly prepaid credit bought at a discount; its terms (bracket, price, monthly releases) as billing-core
-- computed them at purchase, so a later price book never changes what was bought.
CREATE TABLE commitments (
    id            TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL REFERENCES customers (id),
    yearly_credit TEXT NOT NULL,
    terms         TEXT NOT NULL,        -- JSON: billing-core's CommitmentTerms
    starts_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX commitments_customer ON commitments (customer_id, starts_at);

-- What invoices did to a commitment's credit: consumption (negative) and the return of a voided invoice's
-- consumption (positive). Releases and expiries follow from the commitment's terms and are not stored.
CREATE TABLE credit_entries (
    seq           BIGSERIAL PRIMARY KEY,
    customer_id   TEXT NOT NULL REFERENCES customers (id),
    commitment_id TEXT NOT NULL REFERENCES commitments (id),
    invoice_id    TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('consumption', 'void_return')),
    amount        TEXT NOT NULL,
    at            BIGINT NOT NULL
);
CREATE INDEX credit_entries_customer ON credit_entries (customer_id, seq);

-- One invoice per customer period, forever: the unique key is what makes a run exactly-once.
CREATE TABLE invoices (
    id                 TEXT PRIMARY KEY,
    customer_id        TEXT NOT NULL REFERENCES customers (id),
    period_start       BIGINT NOT NULL,
    period_end         BIGINT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('draft', 'issued', 'paid', 'void')),
    number             TEXT UNIQUE,
    price_book_version TEXT NOT NULL,
    currency           TEXT NOT NULL,
    request            TEXT NOT NULL,   -- the quote request it was computed from (JSON)
    bill               TEXT NOT NULL,   -- billing-core's bill of that request (JSON)
    total              TEXT NOT NULL,
    credit_applied     TEXT NOT NULL,
    amount_due         TEXT NOT NULL,
    run_id             TEXT,
    created_at         BIGINT NOT NULL,
    issued_at          BIGINT,
    paid_at            BIGINT,
    voided_at          BIGINT,
    UNIQUE (customer_id, period_start)
);
CREATE INDEX invoices_status ON invoices (status, id);


-- An invoice once issued never changes: only its status moves on (issued → paid or void) with its time.
CREATE FUNCTION invoices_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'an issued invoice cannot be deleted';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status <> 'draft' AND (
           NEW.id IS DISTINCT FROM OLD.id OR NEW.customer_id IS DISTINCT FROM OLD.customer_id
        OR NEW.period_start IS DISTINCT FROM OLD.period_start OR NEW.period_end IS DISTINCT FROM OLD.period_end
        OR NEW.number IS DISTINCT FROM OLD.number OR NEW.price_book_version IS DISTINCT FROM OLD.price_book_version
        OR NEW.currency IS DISTINCT FROM OLD.currency OR NEW.request IS DISTINCT FROM OLD.request
        OR NEW.bill IS DISTINCT FROM OLD.bill OR NEW.total IS DISTINCT FROM OLD.total
        OR NEW.credit_applied IS DISTINCT FROM OLD.credit_applied OR NEW.amount_due IS DISTINCT FROM OLD.amount_due
        OR NEW.run_id IS DISTINCT FROM OLD.run_id OR NEW.created_at IS DISTINCT FROM OLD.created_at
        OR NEW.issued_at IS DISTINCT FROM OLD.issued_at
        OR OLD.status <> 'issued'
        OR NEW.status NOT IN ('paid', 'void')
        OR (NEW.status = 'paid' AND (NEW.paid_at IS NULL OR NEW.voided_at IS NOT NULL))
        OR (NEW.status = 'void' AND (NEW.voided_at IS NULL OR NEW.paid_at IS NOT NULL))) THEN
        RAISE EXCEPTION 'an issued invoice cannot change';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER invoices_frozen BEFORE UPDATE OR DELETE ON invoices FOR EACH ROW EXECUTE FUNCTION invoices_frozen();

-- The next invoice number: taken in the issuing transaction, so numbers have no gaps.
CREATE TABLE invoice_numbers (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    next BIGINT NOT NULL
);
INSERT INTO invoice_numbers (id, next) VALUES (1, 1);

-- Invoice runs. Counters move in the same transaction as the invoices they count. Several workers or processes
-- with the same as_of share one running run.
CREATE TABLE invoice_runs (
    id          TEXT PRIMARY KEY,
    as_of       BIGINT NOT NULL,
    issue       BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'completed')),
    eligible    BIGINT NOT NULL DEFAULT 0,
    invoiced    BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE UNIQUE INDEX invoice_runs_one_running ON invoice_runs (as_of, issue) WHERE status = 'running';

CREATE TABLE invoice_run_failures (
    run_id       TEXT NOT NULL REFERENCES invoice_runs (id),
    customer_id  TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    at           BIGINT NOT NULL,
    PRIMARY KEY (run_id, customer_id)
);
