//! The storage contract: [`Store`], what the use-cases may ask of a database (`api/tests/store_contract.rs` runs
//! the same suite on both), and what an idempotency claim found.

use async_trait::async_trait;

use crate::store::error::StoreResult;
use crate::store::types::{
    AlertRow, BatchDone, ClaimCursor, CommitmentRow, CredentialKind, CreditEntry, CustomerRow, DailyUsage,
    Due, EventOutcome, InvoiceAction, InvoiceFilter, InvoiceRow, InvoicedPage, LimitChange, LimitRow,
    MeterTotal, NewEvent, NewReport, PortalSessionRow, PriceFn, RunRow, StoredBook, Transition,
};
use crate::store::webhooks::{
    Attempted, ClaimLimits, ClaimedDelivery, DeliveryRow, EndpointRow, EventFilter, NewOutboxEvent,
    OutboxEvent, RenderFn,
};

/// Where storage keeps tally's state. Object-safe, so the service holds an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Applies the migrations not applied yet.
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the pool (after a graceful shutdown: every acknowledged write is committed).
    async fn close(&self);

    /// A setting.
    async fn setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// Stores a setting unless one exists; whether it was stored.
    async fn put_setting_if_absent(&self, key: &str, value: &str) -> StoreResult<bool>;

    /// Stores a price-book version; `false` when the version label is taken.
    async fn insert_price_book(&self, book: &StoredBook, now: i64) -> StoreResult<bool>;
    /// Every price-book version, oldest in force first.
    async fn price_books(&self) -> StoreResult<Vec<StoredBook>>;

    /// Stores a new customer and its first key's hash; `false` when the id is taken.
    async fn insert_customer(&self, customer: &CustomerRow, key_hash: &str) -> StoreResult<bool>;
    /// A customer by id.
    async fn customer(&self, id: &str) -> StoreResult<Option<CustomerRow>>;
    /// Customers by id, after `after`, at most `limit`.
    async fn customers(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<CustomerRow>>;
    /// Stores a customer's name and add-ons.
    async fn update_customer(&self, customer: &CustomerRow) -> StoreResult<()>;
    /// Revokes a customer's keys and portal sessions and stores a new key, in one transaction.
    async fn rotate_key(&self, customer_id: &str, key_hash: &str, now: i64) -> StoreResult<()>;
    /// The customer of an active key.
    async fn key_owner(&self, key_hash: &str) -> StoreResult<Option<String>>;

    /// Stores the events whose `(customer, id)` is new and whose period is still open, and adds them to their
    /// period totals, in one transaction. Returns what happened to each: stored (the first of several with one
    /// id), a duplicate (stored before, by this call or a concurrent one: the primary key decides), or refused
    /// because its period is invoiced (decided under the customer's lock, so no event slips into a period an
    /// invoice run is closing).
    async fn insert_events(&self, events: &[NewEvent], now: i64) -> StoreResult<Vec<EventOutcome>>;
    /// Records absolute reports (the highest per period and meter wins); per report, `false` when its period is
    /// invoiced (refused). Refused entries (of both calls) are reported by one `usage.rejected_for_closed_period`
    /// event per customer, stored in the same transaction.
    async fn insert_reports(&self, reports: &[NewReport], now: i64) -> StoreResult<Vec<bool>>;
    /// A customer's usage in the period starting at `period_start`.
    async fn usage_totals(&self, customer_id: &str, period_start: i64) -> StoreResult<Vec<MeterTotal>>;
    /// The event that brought a meter's running total to at least `micros` in a period: its time (micros).
    async fn time_total_reached(
        &self,
        customer_id: &str,
        period_start: i64,
        meter: &str,
        micros: i64,
    ) -> StoreResult<Option<i64>>;

    /// A customer's caps.
    async fn limits(&self, customer_id: &str) -> StoreResult<Vec<LimitRow>>;
    /// Sets (`Some`) or removes (`None`) caps, in one transaction, recording each change of a cap's amount
    /// (old and new, when, `by` which kind of credential) in the same transaction.
    async fn set_limits(
        &self,
        customer_id: &str,
        changes: &[(String, Option<LimitRow>)],
        now: i64,
        by: CredentialKind,
    ) -> StoreResult<()>;
    /// A customer's cap changes, newest first: those before `before` (a `seq`), at most `limit`.
    async fn limit_changes(
        &self,
        customer_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<LimitChange>>;
    /// A customer's usage events per meter and UTC day in the period starting at `period_start`, by meter and day.
    async fn usage_daily(&self, customer_id: &str, period_start: i64) -> StoreResult<Vec<DailyUsage>>;

    /// Stores a new portal session whose link's token hashes to `link_hash`.
    async fn insert_portal_session(&self, session: &PortalSessionRow, link_hash: &str) -> StoreResult<()>;
    /// Opens the link whose token hashes to `link_hash`, once: when it exists, was never opened, is not revoked and
    /// has not expired at `now`, it becomes the session whose cookie hashes to `session_hash`, ending at
    /// `expires_at`; otherwise nothing is written and `None` is answered.
    async fn open_portal_link(
        &self,
        link_hash: &str,
        session_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<Option<PortalSessionRow>>;
    /// The live session whose cookie hashes to `session_hash` at `now` (opened, not revoked, not past its end, used
    /// within `idle` micros), its last use moved to `now` (at most once a minute).
    async fn portal_session(
        &self,
        session_hash: &str,
        now: i64,
        idle: i64,
    ) -> StoreResult<Option<PortalSessionRow>>;
    /// A portal session by id.
    async fn portal_session_by_id(&self, id: &str) -> StoreResult<Option<PortalSessionRow>>;
    /// Revokes a session (kept revoked at its first revocation); the session, or `None` when there is none.
    async fn revoke_portal_session(&self, id: &str, now: i64) -> StoreResult<Option<PortalSessionRow>>;

    /// Records an alert once, with its events (stored in the same transaction, only when the alert is new); whether
    /// it is new.
    async fn insert_alert(
        &self,
        customer_id: &str,
        alert: &AlertRow,
        events: &[NewOutboxEvent],
    ) -> StoreResult<bool>;
    /// A customer's alerts, oldest first.
    async fn alerts(&self, customer_id: &str) -> StoreResult<Vec<AlertRow>>;

    /// Claims an idempotency key: `Claimed` when new (the caller runs the request, then [`Store::finish_idempotent`]),
    /// otherwise what the first request left.
    async fn claim_idempotent(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: i64,
    ) -> StoreResult<Idempotent>;
    /// Stores the response of a claimed key.
    async fn finish_idempotent(&self, scope: &str, key: &str, status: i64, body: &str) -> StoreResult<()>;
    /// Forgets a claimed key whose request failed before writing anything (so it can be retried).
    async fn release_idempotent(&self, scope: &str, key: &str) -> StoreResult<()>;
    /// Deletes every idempotency record created before `before` (micros); how many.
    async fn purge_idempotent(&self, before: i64) -> StoreResult<u64>;

    /// Sets the end of a customer's open period (for customers stored before invoicing existed).
    async fn set_open_until(&self, customer_id: &str, open_until: i64) -> StoreResult<()>;
    /// Customers whose open period has no end yet.
    async fn customers_without_open_until(&self) -> StoreResult<Vec<CustomerRow>>;
    /// How many customers share each billing anchor before `before` (micros), by anchor: a customer's periods
    /// follow from its anchor alone.
    async fn anchor_counts(&self, before: i64) -> StoreResult<Vec<(i64, i64)>>;

    /// Stores a commitment.
    async fn insert_commitment(&self, commitment: &CommitmentRow) -> StoreResult<()>;
    /// A customer's commitments, oldest first.
    async fn commitments(&self, customer_id: &str) -> StoreResult<Vec<CommitmentRow>>;
    /// A customer's credit movements, oldest first.
    async fn credit_entries(&self, customer_id: &str) -> StoreResult<Vec<CreditEntry>>;

    /// An invoice.
    async fn invoice(&self, id: &str) -> StoreResult<Option<InvoiceRow>>;
    /// Invoices by id after `after`, at most `limit`.
    async fn invoices(
        &self,
        filter: &InvoiceFilter,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<InvoiceRow>>;
    /// The start of the latest period with an invoice that is not void (micros).
    async fn last_invoiced_period(&self) -> StoreResult<Option<i64>>;
    /// The stored requests of the invoices (void ones excepted) whose period starts in `[from, until)`, of the next
    /// `customers` customers by id after `after`, by customer and period, with how many customers were looked at and
    /// the last. A plain read: it locks nothing and writes nothing.
    async fn invoiced_requests(
        &self,
        from: i64,
        until: i64,
        after: &str,
        customers: i64,
    ) -> StoreResult<InvoicedPage>;
    /// The next `customers` customers by id after `after` with what pricing their open period needs (its usage,
    /// caps, commitments, credit movements), as an invoice run reads them but without claiming them.
    async fn open_periods(&self, after: &str, customers: i64) -> StoreResult<Vec<Due>>;
    /// A lifecycle step, in one transaction: issuing takes the next number (`prefix` + six digits, no gaps),
    /// voiding returns the invoice's consumed credit; the step's event (`invoice.issued`, `invoice.paid`,
    /// `invoice.voided`) is stored with it.
    async fn transition_invoice(
        &self,
        id: &str,
        action: InvoiceAction,
        prefix: &str,
        now: i64,
    ) -> StoreResult<Transition>;

    /// The running run of `as_of` and `issue`, or a new one (id `id`, `eligible` periods); and whether it is new.
    async fn open_run(
        &self,
        id: &str,
        as_of: i64,
        issue: bool,
        eligible: i64,
        now: i64,
    ) -> StoreResult<(RunRow, bool)>;
    /// A run and its failures.
    async fn run(&self, id: &str) -> StoreResult<Option<RunRow>>;
    /// Marks a run completed and stores its `invoice_run.completed` event, in one transaction; only the first call
    /// for a run does either.
    async fn finish_run(&self, id: &str, now: i64, event: &NewOutboxEvent) -> StoreResult<()>;
    /// Invoices up to `limit` customers' next ended period in one transaction: claims them (on PostgreSQL with
    /// `FOR UPDATE SKIP LOCKED`, so concurrent workers take different customers; on SQLite the transaction holds
    /// the write lock from its start), reads what `price` needs, stores each invoice with its credit consumption
    /// and the customer's next open period and the invoices' events (`invoice.created`, and `invoice.issued` when the
    /// run issues), records failures and moves the run's counter. A crash at any point
    /// leaves all of it or none. Customers are claimed in id order after `cursor` (from an empty cursor, at the
    /// first id), which moves on to the last one claimed as each chunk is claimed; a batch that claims nothing
    /// leaves it where it was.
    async fn invoice_batch(
        &self,
        run: &RunRow,
        cursor: &ClaimCursor,
        limit: usize,
        prefix: &str,
        now: i64,
        price: &PriceFn,
    ) -> StoreResult<BatchDone>;
    /// How many customers still have a period ended by `as_of` to invoice, failures of `run_id` excepted (a plain
    /// read: rows another worker holds count).
    async fn pending(&self, as_of: i64, run_id: &str) -> StoreResult<i64>;

    /// Events, newest first: those before `before` (a `seq`), at most `limit`.
    async fn outbox_events(
        &self,
        filter: &EventFilter,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<OutboxEvent>>;
    /// An event by id.
    async fn outbox_event(&self, id: &str) -> StoreResult<Option<OutboxEvent>>;
    /// Stores a new endpoint (`replaces` `None`; `false` when its id is taken), or replaces the one whose
    /// `updated_at` is `replaces` (`false` when there is none: gone, or changed since it was read). Its run of
    /// failures is left to the workers, except that a replacement with `failing_since` `None` clears it.
    async fn put_endpoint(&self, endpoint: &EndpointRow, replaces: Option<i64>) -> StoreResult<bool>;
    /// Every endpoint, or the one with id `id`.
    async fn endpoints(&self, id: Option<&str>) -> StoreResult<Vec<EndpointRow>>;
    /// Deletes an endpoint and its pending deliveries; whether it existed.
    async fn delete_endpoint(&self, id: &str) -> StoreResult<bool>;
    /// Dispatches undispatched events, oldest first (at most 500, claimed: concurrent dispatchers take different
    /// ones): freezes each invoice event's data with `render` and makes one delivery per enabled endpoint that
    /// subscribes to its type and existed when it was made. How many events it dispatched.
    async fn dispatch_events(&self, now: i64, render: &RenderFn) -> StoreResult<usize>;
    /// Leases due deliveries of enabled endpoints until `lease_until`, oldest due first, within `limits` (in all, and
    /// per endpoint counting those in flight); concurrent workers take different ones; a lease that runs out makes
    /// its delivery claimable again.
    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limits: &ClaimLimits,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records attempts and what follows each, in one transaction (a state moves only under its attempt's lease);
    /// with `disable`, an endpoint failing for at least that many micros is disabled and the event stored, in the
    /// same transaction. Per attempt, whether its endpoint was disabled.
    async fn record_attempts(&self, batch: &[Attempted]) -> StoreResult<Vec<bool>>;
    /// Deliveries with their attempts, newest first: an endpoint's (before `before`, a `seq`), or one by id.
    async fn deliveries(
        &self,
        endpoint_id: Option<&str>,
        id: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRow>>;
    /// Makes a delivery due now, by hand; whether it exists.
    async fn retry_delivery(&self, id: &str, now: i64) -> StoreResult<bool>;
}

/// How long an idempotency record is kept, in microseconds: a day. A claim forgets an older record of its key, and
/// the purge deletes older records.
pub const IDEMPOTENCY_KEEP_MICROS: i64 = 24 * 60 * 60 * 1_000_000;

/// What a claim on an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotent {
    /// New: run the request.
    Claimed,
    /// The same request already answered: replay this.
    Replay {
        /// HTTP status.
        status: i64,
        /// Body.
        body: String,
    },
    /// The same key with another request body.
    Conflict,
    /// The first request is still running.
    InProgress,
}
