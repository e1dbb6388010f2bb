-- tally's service schema (PostgreSQL). Money and quantities are exact: integers (micro-units of a quantity, whole
-- currency units of a limit) or decimal text; never REAL or NUMERIC. Instants are microseconds since the Unix epoch.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Price-book versions; the one in force at an instant is the latest whose in_force_at is not after it.
CREATE TABLE price_books (
    version     TEXT PRIMARY KEY,
    in_force_at BIGINT NOT NULL,
    body        TEXT NOT NULL,          -- canonical JSON, as billing-core serializes it
    created_at  BIGINT NOT NULL
);
CREATE INDEX price_books_in_force ON price_books (in_force_at);

CREATE TABLE customers (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    billing_anchor BIGINT NOT NULL,
    addons         TEXT NOT NULL,       -- JSON: [{"key": "...", "since": <micros>}]
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- API keys, stored as SHA-256 hashes; a customer has one active key at a time.
CREATE TABLE api_keys (
    hash        TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_customer ON api_keys (customer_id);

-- Every usage event ever accepted; the primary key is what makes a repeated id count once.
CREATE TABLE usage_events (
    customer_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    meter           TEXT NOT NULL,
    quantity_micros BIGINT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    period_start    BIGINT NOT NULL,
    received_at     BIGINT NOT NULL,
    PRIMARY KEY (customer_id, event_id)
);

-- Running totals per customer, period and meter, kept in the same transaction as the events they sum, so a
-- period's usage is one indexed read however many events it has. reported_micros is the highest absolute report.
CREATE TABLE usage_totals (
    customer_id     TEXT NOT NULL,
    period_start    BIGINT NOT NULL,
    meter           TEXT NOT NULL,
    events_micros   BIGINT NOT NULL DEFAULT 0,
    reported_micros BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (customer_id, period_start, meter)
);

-- Spend caps in force, whole currency units after the commitment discount. A cap lowered below what the current
-- period already bills is pinned for that period (pinned_period_start, pinned_amount_minor) and applies in full
-- from the next one.
CREATE TABLE spend_limits (
    customer_id         TEXT NOT NULL,
    product             TEXT NOT NULL,
    amount              BIGINT NOT NULL,
    pinned_period_start BIGINT,
    pinned_amount       BIGINT,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (customer_id, product)
);

-- Each threshold of each product's cap, once per period.
CREATE TABLE alerts (
    customer_id  TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    product      TEXT NOT NULL,
    threshold    TEXT NOT NULL,
    detected_at  BIGINT NOT NULL,
    PRIMARY KEY (customer_id, period_start, product, threshold)
);

-- Idempotency-Key replays: a key is scoped to its credential, method and path.
CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       BIGINT,               -- NULL while the first request is still running
    body         TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
