-- Events that reach someone: the transactional outbox, webhook endpoints, deliveries and their attempts.

-- An event, written in the transaction that makes the fact it reports (an alert, an invoice's step, a run's end, a
-- batch's refusals), so an event exists exactly when its fact does. `data` is its JSON; invoice events are written
-- with `data` NULL and `invoice_id` set, and the dispatcher freezes the invoice as it was at the event (invoices
-- change only by their lifecycle, so that is exact) into `data`, off the invoice run's path. `dispatched` is 0 until
-- the dispatcher has made the event's deliveries; the partial index keeps only those rows.
CREATE TABLE outbox_events (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    customer_id TEXT,
    invoice_id  TEXT,
    data        TEXT,
    created_at  BIGINT NOT NULL,
    dispatched  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX outbox_events_undispatched ON outbox_events (seq) WHERE dispatched = 0;
CREATE INDEX outbox_events_customer ON outbox_events (customer_id, seq);

-- Where events are sent. `secret` signs (the HMAC key must be readable: it is never answered after creation);
-- after a rotation `previous_secret` signs too until `previous_until`. `failing_since` is the first failed attempt
-- of the current run of failures (NULL after a success); five days of it disables the endpoint.
CREATE TABLE webhook_endpoints (
    id               TEXT PRIMARY KEY,
    url              TEXT NOT NULL,
    description      TEXT,
    event_types      TEXT NOT NULL,
    enabled          BIGINT NOT NULL,
    secret           TEXT NOT NULL,
    previous_secret  TEXT,
    previous_until   BIGINT,
    failing_since    BIGINT,
    disabled_reason  TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

-- One event to one endpoint: pending until an attempt succeeds (succeeded) or the schedule ends (failed). A worker
-- holds a delivery it is sending with a lease (`lease` its token, until `lease_until`), so no other worker sends it
-- at the same time; a lease outlives the longest attempt, and a crashed worker's lease simply runs out. `manual`:
-- the next attempt was asked for by hand.
CREATE TABLE webhook_deliveries (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    event_id         TEXT NOT NULL,
    event_seq        BIGINT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease            TEXT,
    lease_until      BIGINT,
    manual           BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, event_seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);

-- Every attempt: when, the answer's status (NULL when there was none), latency, the first 1 KB of the answer or
-- what went wrong, and whether it was asked for by hand.
CREATE TABLE webhook_attempts (
    delivery_id    TEXT NOT NULL,
    n              BIGINT NOT NULL,
    at             BIGINT NOT NULL,
    status         BIGINT,
    latency_micros BIGINT NOT NULL,
    response       TEXT NOT NULL,
    error          TEXT,
    manual         BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, n)
);
