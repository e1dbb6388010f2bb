-- The customer's billing page: portal sessions, who changed a cap, and usage per day.

-- A billing-portal session: a single-use link (its token stored hashed, valid until link_expires_at) that, once
-- opened, becomes a browser session (its cookie stored hashed) for one customer. A session ends when idle for an
-- hour (last_seen_at), at expires_at (12 hours after opening), when revoked, or when the customer's key rotates.
CREATE TABLE portal_sessions (
    id              TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL REFERENCES customers (id),
    link_hash       TEXT NOT NULL UNIQUE,
    link_expires_at BIGINT NOT NULL,
    session_hash    TEXT UNIQUE,
    opened_at       BIGINT,
    last_seen_at    BIGINT,
    expires_at      BIGINT,
    revoked_at      BIGINT,
    created_by      TEXT NOT NULL CHECK (created_by IN ('admin', 'api_key')),
    created_at      BIGINT NOT NULL
);
CREATE INDEX portal_sessions_customer ON portal_sessions (customer_id);

-- Every change of a spend cap, by any route: old and new amount (NULL for no cap), when, and by which kind of
-- credential. Written in the transaction that changes the cap.
CREATE TABLE limit_changes (
    seq         BIGSERIAL PRIMARY KEY,
    customer_id TEXT NOT NULL,
    product     TEXT NOT NULL,
    old_amount  BIGINT,
    new_amount  BIGINT,
    changed_at  BIGINT NOT NULL,
    changed_by  TEXT NOT NULL CHECK (changed_by IN ('admin', 'api_key', 'portal'))
);
CREATE INDEX limit_changes_customer ON limit_changes (customer_id, seq);

-- Usage events per UTC day, kept in the transaction that stores the events (as usage_totals is), so a period's
-- daily chart is at most 31 rows per meter however many events it has.
CREATE TABLE usage_daily (
    customer_id   TEXT NOT NULL,
    period_start  BIGINT NOT NULL,
    meter         TEXT NOT NULL,
    day           BIGINT NOT NULL,        -- the UTC midnight starting the day (micros)
    events_micros BIGINT NOT NULL,
    PRIMARY KEY (customer_id, period_start, meter, day)
);
INSERT INTO usage_daily (customer_id, period_start, meter, day, events_micros)
SELECT customer_id, period_start, meter, (occurred_at / 86400000000) * 86400000000, SUM(quantity_micros)
FROM usage_events GROUP BY customer_id, period_start, meter, (occurred_at / 86400000000) * 86400000000;
