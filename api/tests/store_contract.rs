//! The storage contract: every `Store` behaves the same. Each test runs on a fresh SQLite file, and on a fresh
//! PostgreSQL database when `TALLY_TEST_POSTGRES_URL` is set (`.ci/run` sets it) — and fails, never skips, when it is
//! set but PostgreSQL cannot be reached. Concurrency is real: tasks race on one pool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use api::store::PricingError;
use api::store::{
    self, AddonSince, AlertRow, BatchDone, ClaimCursor, CommitmentRow, CredentialKind, CreditEntry,
    CustomerRow, Due, Idempotent, InvoiceAction, InvoiceFilter, InvoiceRow, LimitRow, NewEvent, NewReport,
    PricedInvoice, RunRow, Store, StoredBook, Transition,
};
use api::store::{EventFilter, NewOutboxEvent};
use common::PgDb;
use sqlx::Connection;

/// Runs `check` on every backend.
async fn on_every_store<F, Fut>(check: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    on_every_store_at(|s, _| check(s)).await;
}

/// Runs `check` on every backend, with the database's URL (to reach it below the store, as an attacker would).
async fn on_every_store_at<F, Fut>(check: F)
where
    F: Fn(Arc<dyn Store>, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let (sqlite, dir) = common::sqlite().await;
    assert_eq!(sqlite.backend(), "sqlite");
    check(sqlite.clone(), format!("sqlite://{}/tally.db", dir.0.display())).await;
    sqlite.close().await;
    if let Ok(url) = std::env::var("TALLY_TEST_POSTGRES_URL") {
        let db = PgDb::create(&url).await;
        let pg = store::open(&db.url).await.unwrap();
        pg.migrate().await.unwrap();
        assert_eq!(pg.backend(), "postgres");
        check(pg.clone(), db.url.clone()).await;
        pg.close().await;
        db.drop_now().await;
    }
}

/// One statement straight to the database, under the store.
async fn raw_sql(url: &str, sql: &str) -> Result<u64, sqlx::Error> {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    }
}

fn customer(id: &str) -> CustomerRow {
    CustomerRow {
        id: id.into(),
        name: format!("{id} Inc"),
        billing_anchor: 1_000,
        addons: vec![AddonSince { key: "boost".into(), since: 1_000, until: None }],
        created_at: 5,
        updated_at: 5,
        open_from: 0,
        open_until: Some(2_000),
    }
}

fn event(customer: &str, id: &str, meter: &str, micros: i64, at: i64) -> NewEvent {
    NewEvent {
        customer_id: customer.into(),
        event_id: id.into(),
        meter: meter.into(),
        quantity_micros: micros,
        occurred_at: at,
        period_start: 0,
    }
}

#[tokio::test]
async fn migrations_settings_and_price_books() {
    on_every_store(|s| async move {
        s.migrate().await.unwrap();
        s.ping().await.unwrap();
        assert!(s.put_setting_if_absent("k", "v1").await.unwrap());
        assert!(!s.put_setting_if_absent("k", "v2").await.unwrap());
        assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("v1"));
        assert_eq!(s.setting("nope").await.unwrap(), None);
        let book = |v: &str, at| StoredBook {
            version: v.into(),
            in_force_at: at,
            body: format!("{{\"v\": \"{v}\"}}"),
        };
        assert!(s.insert_price_book(&book("b", 20), 1).await.unwrap());
        assert!(s.insert_price_book(&book("a", 10), 2).await.unwrap());
        assert!(!s.insert_price_book(&book("a", 30), 3).await.unwrap(), "a version label is published once");
        let versions: Vec<String> = s.price_books().await.unwrap().into_iter().map(|b| b.version).collect();
        assert_eq!(versions, ["a", "b"], "oldest in force first");
    })
    .await;
}

#[tokio::test]
async fn customers_and_keys() {
    on_every_store(|s| async move {
        assert!(s.insert_customer(&customer("b"), "hash-b").await.unwrap());
        assert!(s.insert_customer(&customer("a"), "hash-a").await.unwrap());
        assert!(!s.insert_customer(&customer("a"), "hash-a2").await.unwrap(), "an id is taken once");
        assert_eq!(s.key_owner("hash-a2").await.unwrap(), None, "a refused creation stores no key");
        assert_eq!(s.customer("a").await.unwrap(), Some(customer("a")));
        let ids = |rows: Vec<CustomerRow>| rows.into_iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(s.customers(None, 10).await.unwrap()), ["a", "b"]);
        assert_eq!(ids(s.customers(Some("a"), 10).await.unwrap()), ["b"]);
        assert_eq!(ids(s.customers(None, 1).await.unwrap()), ["a"]);
        let mut changed = customer("a");
        changed.name = "A2".into();
        changed.addons.clear();
        changed.updated_at = 9;
        s.update_customer(&changed).await.unwrap();
        assert_eq!(s.customer("a").await.unwrap(), Some(changed));
        assert_eq!(s.key_owner("hash-a").await.unwrap().as_deref(), Some("a"));
        s.rotate_key("a", "hash-a3", 10).await.unwrap();
        assert_eq!(s.key_owner("hash-a").await.unwrap(), None, "the old key is revoked");
        assert_eq!(s.key_owner("hash-a3").await.unwrap().as_deref(), Some("a"));
    })
    .await;
}

#[tokio::test]
async fn events_count_once_however_they_arrive() {
    on_every_store(|s| async move {
        s.insert_customer(&customer("c"), "h").await.unwrap();
        let batch = vec![
            event("c", "e1", "m", 1_500_000, 10),
            event("c", "e1", "m", 1_500_000, 10),
            event("c", "e2", "m", 2_000_000, 20),
        ];
        use api::store::EventOutcome::{Duplicate, Stored};
        assert_eq!(s.insert_events(&batch, 0).await.unwrap(), [Stored, Duplicate, Stored]);
        assert_eq!(s.insert_events(&batch, 0).await.unwrap(), [Duplicate, Duplicate, Duplicate]);
        let totals = s.usage_totals("c", 0).await.unwrap();
        assert_eq!((totals.len(), totals[0].events_micros), (1, 3_500_000));

        // 8 writers race with the same 2,000 events: each is stored once, and the total counts it once.
        let events: Vec<NewEvent> =
            (0..2_000).map(|i| event("c", &format!("r{i}"), "race", 1_000_000, i)).collect();
        let events = Arc::new(events);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (s, events) = (s.clone(), events.clone());
                tokio::spawn(async move {
                    let mut stored = 0;
                    for chunk in events.chunks(500) {
                        stored += s
                            .insert_events(chunk, 0)
                            .await
                            .unwrap()
                            .iter()
                            .filter(|x| **x == api::store::EventOutcome::Stored)
                            .count();
                    }
                    stored
                })
            })
            .collect();
        let mut stored = 0;
        for t in tasks {
            stored += t.await.unwrap();
        }
        assert_eq!(stored, 2_000);
        let race = s.usage_totals("c", 0).await.unwrap().into_iter().find(|t| t.meter == "race").unwrap();
        assert_eq!(race.events_micros, 2_000 * 1_000_000);
        // The 1,000th unit of `race` arrived with the event at time 999.
        assert_eq!(s.time_total_reached("c", 0, "race", 1_000 * 1_000_000).await.unwrap(), Some(999));
        assert_eq!(s.time_total_reached("c", 0, "race", 1 + 2_000 * 1_000_000).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn reports_keep_the_highest_value() {
    on_every_store(|s| async move {
        let r =
            |v| NewReport { customer_id: "c".into(), meter: "rows".into(), value_micros: v, period_start: 7 };
        s.insert_reports(&[r(5), r(9), r(3)], 0).await.unwrap();
        s.insert_events(&[NewEvent { period_start: 7, ..event("c", "x", "rows", 4, 1) }], 0).await.unwrap();
        let t = &s.usage_totals("c", 7).await.unwrap()[0];
        assert_eq!((t.reported_micros, t.events_micros), (9, 4));
        assert!(s.usage_totals("c", 8).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn limits_and_alerts() {
    on_every_store(|s| async move {
        let l = |p: &str, a, pinned| Some(LimitRow { product: p.into(), amount: a, pinned });
        s.set_limits(
            "c",
            &[("x".into(), l("x", 100, None)), ("y".into(), l("y", 5, Some((7, 50))))],
            1,
            CredentialKind::Admin,
        )
        .await
        .unwrap();
        s.set_limits("c", &[("x".into(), l("x", 200, None))], 2, CredentialKind::ApiKey).await.unwrap();
        // The same amount again is no change.
        s.set_limits("c", &[("x".into(), l("x", 200, None))], 3, CredentialKind::Portal).await.unwrap();
        let limits = s.limits("c").await.unwrap();
        assert_eq!(
            limits,
            [
                LimitRow { product: "x".into(), amount: 200, pinned: None },
                LimitRow { product: "y".into(), amount: 5, pinned: Some((7, 50)) }
            ]
        );
        s.set_limits("c", &[("y".into(), None)], 4, CredentialKind::Portal).await.unwrap();
        assert_eq!(s.limits("c").await.unwrap().len(), 1);
        // Every change, newest first, with what it was, what it became, when and by whom; paged by `seq`.
        let history = s.limit_changes("c", None, 10).await.unwrap();
        let seen: Vec<_> =
            history.iter().map(|c| (c.product.as_str(), c.old, c.new, c.changed_at, c.by.as_str())).collect();
        assert_eq!(
            seen,
            [
                ("y", Some(5), None, 4, "portal"),
                ("x", Some(100), Some(200), 2, "api_key"),
                ("y", None, Some(5), 1, "admin"),
                ("x", None, Some(100), 1, "admin"),
            ]
        );
        let older = s.limit_changes("c", Some(history[1].seq), 10).await.unwrap();
        assert_eq!(older, history[2..]);
        assert!(s.limit_changes("other", None, 10).await.unwrap().is_empty());
        let a = AlertRow { period_start: 0, product: "x".into(), threshold: "0.8".into(), detected_at: 11 };
        // An alert's events are stored with it, and only when the alert is new.
        let notice = |id: &str| NewOutboxEvent {
            id: id.into(),
            kind: "spend_alert.crossed".into(),
            customer_id: Some("c".into()),
            data: Some("{}".into()),
            invoice_id: None,
            created_at: 11,
        };
        assert!(s.insert_alert("c", &a, &[notice("evt_1"), notice("evt_2")]).await.unwrap());
        assert!(
            !s.insert_alert("c", &AlertRow { detected_at: 12, ..a.clone() }, &[notice("evt_3")])
                .await
                .unwrap(),
            "once per period"
        );
        assert!(s
            .insert_alert("c", &AlertRow { period_start: 1, ..a.clone() }, &[notice("evt_4")])
            .await
            .unwrap());
        assert_eq!(s.alerts("c").await.unwrap().len(), 2);
        let stored = s.outbox_events(&EventFilter::default(), None, 10).await.unwrap();
        let ids: Vec<&str> = stored.iter().map(|e| e.event.id.as_str()).collect();
        assert_eq!(
            ids,
            ["evt_4", "evt_2", "evt_1"],
            "newest first; the repeated alert's event is not stored"
        );
    })
    .await;
}

#[tokio::test]
async fn idempotency_keys() {
    on_every_store(|s| async move {
        assert_eq!(s.claim_idempotent("sc", "k", "h1", 0).await.unwrap(), Idempotent::Claimed);
        assert_eq!(s.claim_idempotent("sc", "k", "h1", 1).await.unwrap(), Idempotent::InProgress);
        assert_eq!(s.claim_idempotent("sc", "k", "h2", 1).await.unwrap(), Idempotent::Conflict);
        assert_eq!(s.claim_idempotent("other", "k", "h2", 1).await.unwrap(), Idempotent::Claimed, "scoped");
        s.finish_idempotent("sc", "k", 201, "{}").await.unwrap();
        assert_eq!(
            s.claim_idempotent("sc", "k", "h1", 2).await.unwrap(),
            Idempotent::Replay { status: 201, body: "{}".into() }
        );
        // A day later the key is free again.
        assert_eq!(s.claim_idempotent("sc", "k", "h2", 86_400_000_001).await.unwrap(), Idempotent::Claimed);
        s.release_idempotent("other", "k").await.unwrap();
        assert_eq!(s.claim_idempotent("other", "k", "h3", 3).await.unwrap(), Idempotent::Claimed, "released");
        // Racing claims: exactly one wins.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.claim_idempotent("race", "k", "h", 0).await.unwrap() })
            })
            .collect();
        let mut claimed = 0;
        for t in tasks {
            claimed += usize::from(t.await.unwrap() == Idempotent::Claimed);
        }
        assert_eq!(claimed, 1);
    })
    .await;
}

/// A stand-in for the service's pricing (the store does not price): an invoice whose total is the period's event
/// micro-units, the next period 2,000 µs on.
fn price(due: &Due, run: &RunRow, n: &AtomicU32) -> Result<PricedInvoice, PricingError> {
    let c = &due.customer;
    if c.id.starts_with("bad") {
        return Err(PricingError::Rejected("cannot be priced".into()));
    }
    let total: i64 = due.totals.iter().map(|t| t.events_micros + t.reported_micros).sum();
    let id = format!("in_{}_{}", c.id, c.open_from);
    let consumption = due
        .commitments
        .first()
        .map(|cm| CreditEntry {
            commitment_id: cm.id.clone(),
            invoice_id: id.clone(),
            kind: "consumption".into(),
            amount: "-1.50".into(),
            at: c.open_from,
        })
        .into_iter()
        .collect();
    n.fetch_add(1, Ordering::Relaxed);
    Ok(PricedInvoice {
        invoice: InvoiceRow {
            id,
            customer_id: c.id.clone(),
            period_start: c.open_from,
            period_end: c.open_from + 2_000,
            status: if run.issue { "issued".into() } else { "draft".into() },
            number: None,
            price_book_version: "v".into(),
            currency: "USD".into(),
            request: "{}".into(),
            bill: "{}".into(),
            total: total.to_string(),
            credit_applied: "0".into(),
            amount_due: total.to_string(),
            run_id: Some(run.id.clone()),
            created_at: 1,
            issued_at: None,
            paid_at: None,
            voided_at: None,
        },
        consumption,
        next: (c.open_from + 2_000, c.open_from + 4_000),
    })
}

/// [`price`] as the store takes it.
fn pricer(run: &RunRow, n: &Arc<AtomicU32>) -> api::store::PriceFn {
    let (run, n) = (run.clone(), Arc::clone(n));
    Arc::new(move |due: &Due| price(due, &run, &n))
}

#[tokio::test]
async fn an_invoice_batch_closes_each_period_once_and_usage_cannot_enter_it() {
    on_every_store(|s| async move {
        for id in ["a", "b", "bad"] {
            s.insert_customer(&CustomerRow { open_from: 0, open_until: Some(2_000), ..customer(id) }, id)
                .await
                .unwrap();
        }
        use api::store::EventOutcome::{Closed, Duplicate, Stored};
        assert_eq!(s.insert_events(&[event("a", "e1", "m", 7, 10)], 0).await.unwrap(), [Stored]);
        let (run, created) = s.open_run("run_1", 5_000, false, 6, 0).await.unwrap();
        assert!(created);
        let (joined, created) = s.open_run("run_2", 5_000, false, 6, 0).await.unwrap();
        assert_eq!((joined.id.as_str(), created), ("run_1", false), "one running run per as_of");
        let n = Arc::new(AtomicU32::new(0));
        let price = pricer(&run, &n);
        // Periods [0, 2000) and [2000, 4000) end by 5000; [4000, 6000) does not.
        let first = s.invoice_batch(&run, &ClaimCursor::default(), 10, "INV-", 1, &price).await.unwrap();
        assert_eq!(first, BatchDone { claimed: 3, invoiced: 2, failed: 1 });
        let second = s.invoice_batch(&run, &ClaimCursor::default(), 10, "INV-", 1, &price).await.unwrap();
        assert_eq!(
            second,
            BatchDone { claimed: 2, invoiced: 2, failed: 0 },
            "a failed customer is not retried in its run"
        );
        assert_eq!(
            s.invoice_batch(&run, &ClaimCursor::default(), 10, "INV-", 1, &price).await.unwrap(),
            BatchDone::default()
        );
        assert_eq!(s.pending(5_000, &run.id).await.unwrap(), 0);
        assert_eq!(s.pending(5_000, "another run").await.unwrap(), 1, "the failed customer is still due");
        let stored = s.run(&run.id).await.unwrap().unwrap();
        assert_eq!((stored.invoiced, stored.failures.len()), (4, 1));
        assert_eq!(stored.failures[0].reason, "cannot be priced");
        let done = |id: &str| NewOutboxEvent {
            id: id.into(),
            kind: "invoice_run.completed".into(),
            customer_id: None,
            data: Some("{}".into()),
            invoice_id: None,
            created_at: 9,
        };
        s.finish_run(&run.id, 9, &done("evt_done")).await.unwrap();
        s.finish_run(&run.id, 10, &done("evt_done_again")).await.unwrap();
        assert_eq!(s.run(&run.id).await.unwrap().unwrap().status, "completed");
        let completed = EventFilter { kind: Some("invoice_run.completed".into()), customer_id: None };
        let ids: Vec<String> =
            s.outbox_events(&completed, None, 10).await.unwrap().into_iter().map(|e| e.event.id).collect();
        assert_eq!(ids, ["evt_done"], "a run completes once, with one event");
        // Its invoices were created with their events (data left for the dispatcher to freeze).
        let created = EventFilter { kind: Some("invoice.created".into()), customer_id: None };
        let created = s.outbox_events(&created, None, 100).await.unwrap();
        assert_eq!(created.len(), 4);
        assert!(created
            .iter()
            .all(|e| e.event.data.is_none() && e.event.invoice_id.is_some() && !e.dispatched));
        let a = s.customer("a").await.unwrap().unwrap();
        assert_eq!((a.open_from, a.open_until), (4_000, Some(6_000)));
        let first_invoice = s.invoice("in_a_0").await.unwrap().unwrap();
        assert_eq!(first_invoice.total, "7");
        // Usage for a closed period is refused, a retry of a counted event is a duplicate, an open period takes it.
        let late = [
            event("a", "late", "m", 1, 10),
            event("a", "e1", "m", 7, 10),
            NewEvent { period_start: 4_000, ..event("a", "new", "m", 1, 4_001) },
        ];
        assert_eq!(s.insert_events(&late, 0).await.unwrap(), [Closed, Duplicate, Stored]);
        let r =
            |p| NewReport { customer_id: "a".into(), meter: "m".into(), value_micros: 5, period_start: p };
        assert_eq!(s.insert_reports(&[r(2_000), r(4_000)], 0).await.unwrap(), [false, true]);
        let refused = EventFilter {
            kind: Some("usage.rejected_for_closed_period".into()),
            customer_id: Some("a".into()),
        };
        let refused = s.outbox_events(&refused, None, 10).await.unwrap();
        let kinds: Vec<String> = refused
            .iter()
            .map(|e| serde_json::from_str::<serde_json::Value>(e.event.data.as_deref().unwrap()).unwrap())
            .map(|d| format!("{} {}", d["kind"].as_str().unwrap(), d["count"]))
            .collect();
        assert_eq!(kinds, ["reports 1", "events 1"], "one event per batch and customer, with the batch");
        assert_eq!(
            s.usage_totals("a", 0).await.unwrap()[0].events_micros,
            7,
            "the closed period is unchanged"
        );
        s.set_open_until("a", 1).await.unwrap(); // no effect: a's open period has its end
        assert_eq!(s.customer("a").await.unwrap().unwrap().open_until, Some(6_000));
        let filter = InvoiceFilter { customer_id: Some("a".into()), ..InvoiceFilter::default() };
        assert_eq!(s.invoices(&filter, None, 10).await.unwrap().len(), 2);
        let filter = InvoiceFilter {
            period_start: Some(2_000),
            status: Some("draft".into()),
            ..InvoiceFilter::default()
        };
        assert_eq!(s.invoices(&filter, None, 10).await.unwrap().len(), 2);
        assert_eq!(s.invoices(&InvoiceFilter::default(), Some("in_a_2000"), 10).await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_batch_claims_after_its_cursor_in_id_order_and_leaves_it_at_the_last_claimed() {
    // Five customers, two ended periods each: a pass claims each customer once, in id order, from the cursor; the
    // second periods are the next pass's, from an empty cursor.
    on_every_store(|s| async move {
        let ids = ["p1", "p2", "p3", "p4", "p5"];
        for id in ids.iter().rev() {
            s.insert_customer(&CustomerRow { open_from: 0, open_until: Some(2_000), ..customer(id) }, id)
                .await
                .unwrap();
        }
        let (run, _) = s.open_run("run_cursor", 4_500, false, 10, 0).await.unwrap();
        let n = Arc::new(AtomicU32::new(0));
        let price = pricer(&run, &n);
        let cursor = ClaimCursor::default();
        let mut passes = Vec::new();
        for _ in 0..2 {
            let mut pass = Vec::new();
            loop {
                let before = cursor.get();
                let done = s.invoice_batch(&run, &cursor, 2, "INV-", 1, &price).await.unwrap();
                if done.claimed == 0 {
                    assert_eq!(cursor.get(), before, "a batch that claims nothing leaves the cursor");
                    break;
                }
                assert!(cursor.get() > before, "the cursor moves on: {before} → {}", cursor.get());
                pass.push((done.claimed, cursor.get()));
            }
            passes.push(pass);
            assert!(!cursor.restart("p4"), "a restart from where the cursor no longer is does nothing");
            assert!(cursor.restart("p5"), "the end of the pass restarts it");
            assert!(!cursor.restart(""), "a pass at its start is not restarted");
        }
        let expected = vec![(2, "p2".to_owned()), (2, "p4".to_owned()), (1, "p5".to_owned())];
        assert_eq!(passes, [expected.clone(), expected], "one period per customer and pass, in id order");
        assert_eq!(s.invoice_batch(&run, &cursor, 2, "INV-", 1, &price).await.unwrap(), BatchDone::default());
        assert_eq!(cursor.get(), "", "nothing claimed from the start: the cursor stays there");
        for id in ids {
            let filter = InvoiceFilter { customer_id: Some(id.to_owned()), ..InvoiceFilter::default() };
            let starts: Vec<i64> =
                s.invoices(&filter, None, 10).await.unwrap().iter().map(|v| v.period_start).collect();
            assert_eq!(starts.len(), 2, "{id}: {starts:?}");
            assert!(starts.contains(&0) && starts.contains(&2_000), "{id}: {starts:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_batch_larger_than_its_pipeline_chunks_invoices_every_period_once_in_order() {
    // 350 customers, each with two ended periods (a second one only after the first is written), every 50th one
    // unpriceable; batches of up to 1,000 customer periods, so a batch runs through several chunks of its pipeline.
    on_every_store(|s| async move {
        let ids: Vec<String> =
            (0..350).map(|i| if i % 50 == 7 { format!("bad{i:03}") } else { format!("m{i:03}") }).collect();
        for id in &ids {
            s.insert_customer(&CustomerRow { open_from: 0, open_until: Some(2_000), ..customer(id) }, id)
                .await
                .unwrap();
        }
        let events: Vec<NewEvent> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| event(id, "e", "m", i64::try_from(i).unwrap() + 1, 10))
            .collect();
        s.insert_events(&events, 0).await.unwrap();
        let (run, _) = s.open_run("run_big", 4_500, true, 700, 0).await.unwrap();
        let n = Arc::new(AtomicU32::new(0));
        let price = pricer(&run, &n);
        let mut batches = Vec::new();
        loop {
            let done = s.invoice_batch(&run, &ClaimCursor::default(), 1_000, "B-", 1, &price).await.unwrap();
            if done.claimed == 0 {
                break;
            }
            batches.push(done);
        }
        assert!(batches[0].claimed > 200, "one batch spans several chunks: {batches:?}");
        let good = ids.iter().filter(|id| id.starts_with('m')).count();
        let invoiced: usize = batches.iter().map(|b| b.invoiced).sum();
        let failed: usize = batches.iter().map(|b| b.failed).sum();
        assert_eq!((invoiced, failed), (2 * good, 7), "{batches:?}");
        assert_eq!(s.pending(run.as_of, &run.id).await.unwrap(), 0);
        let stored = s.run(&run.id).await.unwrap().unwrap();
        assert_eq!((usize::try_from(stored.invoiced).unwrap(), stored.failures.len()), (2 * good, 7));
        let mut numbers = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let filter = InvoiceFilter { customer_id: Some(id.clone()), ..InvoiceFilter::default() };
            let invoices = s.invoices(&filter, None, 10).await.unwrap();
            let customer = s.customer(id).await.unwrap().unwrap();
            if id.starts_with("bad") {
                assert!(invoices.is_empty(), "{id}");
                assert_eq!(customer.open_from, 0, "{id}'s period stays open");
                continue;
            }
            let mut periods: Vec<(i64, String)> =
                invoices.iter().map(|v| (v.period_start, v.total.clone())).collect();
            periods.sort();
            assert_eq!(periods, [(0, (i + 1).to_string()), (2_000, "0".to_owned())], "{id}");
            assert_eq!((customer.open_from, customer.open_until), (4_000, Some(6_000)), "{id}");
            numbers.extend(invoices.into_iter().map(|v| v.number.unwrap()));
        }
        numbers.sort();
        let expected: Vec<String> = (1..=2 * good).map(|i| format!("B-{i:06}")).collect();
        assert_eq!(numbers, expected, "numbers are given once each, without a gap");
    })
    .await;
}

#[tokio::test]
async fn a_batch_whose_pricing_panics_midway_stores_nothing_and_the_next_batch_invoices_everyone() {
    // 300 customers; the pricing panics at the 151st, several chunks into the batch's pipeline, after the database
    // has written earlier chunks and read later ones: the batch fails whole (its transaction rolls back), and a
    // batch with a working pricing then invoices every customer once.
    on_every_store(|s| async move {
        let ids: Vec<String> = (0..300).map(|i| format!("p{i:03}")).collect();
        for id in &ids {
            s.insert_customer(&CustomerRow { open_from: 0, open_until: Some(2_000), ..customer(id) }, id)
                .await
                .unwrap();
        }
        let (run, _) = s.open_run("run_panic", 2_000, false, 300, 0).await.unwrap();
        let n = Arc::new(AtomicU32::new(0));
        let panicking: api::store::PriceFn = {
            let (run, n) = (run.clone(), Arc::clone(&n));
            Arc::new(move |due: &Due| {
                assert_ne!(due.customer.id, "p150", "the pricing fails here");
                price(due, &run, &n)
            })
        };
        let cursor = ClaimCursor::default();
        let failed = s.invoice_batch(&run, &cursor, 1_000, "P-", 1, &panicking).await;
        assert!(failed.is_err(), "{failed:?}");
        assert!(n.load(Ordering::Relaxed) >= 150, "the chunks before the panic were priced");
        assert!(s.invoices(&InvoiceFilter::default(), None, 10).await.unwrap().is_empty(), "nothing stored");
        assert_eq!(s.run(&run.id).await.unwrap().unwrap().invoiced, 0);
        for id in &ids {
            assert_eq!(s.customer(id).await.unwrap().unwrap().open_from, 0, "{id}'s period stays open");
        }
        let done =
            s.invoice_batch(&run, &ClaimCursor::default(), 1_000, "P-", 1, &pricer(&run, &n)).await.unwrap();
        assert_eq!((done.claimed, done.invoiced, done.failed), (300, 300, 0));
        assert_eq!(s.pending(run.as_of, &run.id).await.unwrap(), 0);
        let mut seen = std::collections::BTreeSet::new();
        let mut after = None;
        loop {
            let page = s.invoices(&InvoiceFilter::default(), after.as_deref(), 100).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for invoice in page {
                assert!(seen.insert(invoice.customer_id.clone()), "{} invoiced twice", invoice.customer_id);
            }
        }
        assert_eq!(seen.len(), 300);
    })
    .await;
}

#[tokio::test]
async fn concurrent_workers_invoice_every_customer_once() {
    on_every_store(|s| async move {
        for i in 0..120 {
            s.insert_customer(
                &CustomerRow { open_from: 0, open_until: Some(2_000), ..customer(&format!("c{i:03}")) },
                &format!("k{i}"),
            )
            .await
            .unwrap();
        }
        let (run, _) = s.open_run("run_c", 4_000, true, 240, 0).await.unwrap();
        let n = Arc::new(AtomicU32::new(0));
        // Workers 0 and 1 share a cursor (one process's workers), 2 and 3 have one each (other processes).
        let shared = Arc::new(ClaimCursor::default());
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (s, run, n) = (s.clone(), run.clone(), n.clone());
                let cursor = if w < 2 { shared.clone() } else { Arc::new(ClaimCursor::default()) };
                tokio::spawn(async move {
                    let mut invoiced = 0;
                    let price = pricer(&run, &n);
                    loop {
                        let from = cursor.get();
                        match s.invoice_batch(&run, &cursor, 7, "T-", 1, &price).await {
                            Ok(done) if done.claimed == 0 && !from.is_empty() => {
                                cursor.restart(&from);
                            }
                            Ok(done) if done.claimed == 0 => {
                                if s.pending(run.as_of, &run.id).await.unwrap() == 0 {
                                    return invoiced;
                                }
                                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                            }
                            Ok(done) => invoiced += done.invoiced,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let mut invoiced = 0;
        for w in workers {
            invoiced += w.await.unwrap();
        }
        assert_eq!(invoiced, 240);
        assert_eq!(s.run(&run.id).await.unwrap().unwrap().invoiced, 240);
        // Issued at once: numbers T-000001 … T-000240, each once, no gap.
        let mut numbers = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = s.invoices(&InvoiceFilter::default(), after.as_deref(), 100).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            numbers.extend(page.into_iter().map(|i| i.number.unwrap()));
        }
        numbers.sort();
        let expected: Vec<String> = (1..=240).map(|i| format!("T-{i:06}")).collect();
        assert_eq!(numbers, expected);
    })
    .await;
}

#[tokio::test]
async fn an_issued_invoice_cannot_change_even_below_the_store() {
    on_every_store_at(|s, url| async move {
        s.insert_customer(&CustomerRow { open_from: 0, open_until: Some(2_000), ..customer("a") }, "k").await.unwrap();
        let terms = r#"{"yearly_credit":"3333"}"#;
        let cm = CommitmentRow {
            id: "cm_1".into(),
            customer_id: "a".into(),
            yearly_credit: "3333".into(),
            terms: terms.into(),
            starts_at: 0,
            expires_at: 100_000,
            created_at: 0,
        };
        s.insert_commitment(&cm).await.unwrap();
        assert_eq!(s.commitments("a").await.unwrap(), std::slice::from_ref(&cm));
        let (run, _) = s.open_run("run_t", 2_000, false, 1, 0).await.unwrap();
        let n = Arc::new(AtomicU32::new(0));
        s.invoice_batch(&run, &ClaimCursor::default(), 10, "INV-", 1, &pricer(&run, &n)).await.unwrap();
        assert_eq!(s.credit_entries("a").await.unwrap().len(), 1);
        let id = "in_a_0";
        // The unique key refuses a second invoice of the period, even written straight to the database.
        let second = "INSERT INTO invoices (id, customer_id, period_start, period_end, status, price_book_version, currency, \
                      request, bill, total, credit_applied, amount_due, created_at) \
                      VALUES ('in_x', 'a', 0, 2000, 'draft', 'v', 'USD', '{}', '{}', '0', '0', '0', 1)";
        assert!(raw_sql(&url, second).await.is_err());
        // A draft can still be corrected below the store; once issued it cannot.
        assert_eq!(raw_sql(&url, "UPDATE invoices SET total = '0' WHERE id = 'in_a_0'").await.unwrap(), 1);
        let Transition::Done(issued) = s.transition_invoice(id, InvoiceAction::Issue, "INV-", 5).await.unwrap() else { panic!() };
        assert_eq!(issued.number.as_deref(), Some("INV-000001"));
        for sql in [
            "UPDATE invoices SET total = '1000' WHERE id = 'in_a_0'",
            "UPDATE invoices SET bill = '{}x' WHERE id = 'in_a_0'",
            "UPDATE invoices SET number = 'INV-999999' WHERE id = 'in_a_0'",
            "UPDATE invoices SET status = 'draft' WHERE id = 'in_a_0'",
            "UPDATE invoices SET status = 'paid' WHERE id = 'in_a_0'", // paid without a paid_at
            "DELETE FROM invoices WHERE id = 'in_a_0'",
        ] {
            assert!(raw_sql(&url, sql).await.is_err(), "{sql} must be refused");
        }
        assert_eq!(s.invoice(id).await.unwrap().unwrap(), *issued);
        assert_eq!(s.transition_invoice(id, InvoiceAction::Issue, "INV-", 6).await.unwrap(), Transition::InvalidState("issued".into()));
        let Transition::Done(voided) = s.transition_invoice(id, InvoiceAction::Void, "INV-", 7).await.unwrap() else { panic!() };
        assert_eq!((voided.status.as_str(), voided.voided_at), ("void", Some(7)));
        // Voiding returned the consumed credit.
        let entries = s.credit_entries("a").await.unwrap();
        assert_eq!(entries.iter().map(|e| (e.kind.as_str(), e.amount.as_str())).collect::<Vec<_>>(), [("consumption", "-1.50"), ("void_return", "1.50")]);
        assert!(raw_sql(&url, "UPDATE invoices SET status = 'issued', voided_at = NULL WHERE id = 'in_a_0'").await.is_err());
        assert_eq!(s.transition_invoice(id, InvoiceAction::Pay, "INV-", 8).await.unwrap(), Transition::InvalidState("void".into()));
        assert_eq!(s.transition_invoice("nope", InvoiceAction::Pay, "INV-", 8).await.unwrap(), Transition::NotFound);
    })
    .await;
}

#[tokio::test]
async fn usage_racing_an_invoice_run_is_either_in_the_invoice_or_refused() {
    on_every_store(|s| async move {
        for i in 0..40 {
            s.insert_customer(
                &CustomerRow { open_from: 0, open_until: Some(2_000), ..customer(&format!("r{i:02}")) },
                &format!("k{i}"),
            )
            .await
            .unwrap();
        }
        let (run, _) = s.open_run("run_race", 2_000, false, 40, 0).await.unwrap();
        // Writers send events of period 0 to every customer while the run closes that period customer by customer.
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut refused = 0;
                    for round in 0..30 {
                        let batch: Vec<NewEvent> = (0..40)
                            .map(|i| event(&format!("r{i:02}"), &format!("w{w}-{round}"), "m", 1, 10))
                            .collect();
                        for outcome in s.insert_events(&batch, 0).await.unwrap() {
                            refused += usize::from(outcome == api::store::EventOutcome::Closed);
                        }
                    }
                    refused
                })
            })
            .collect();
        let n = Arc::new(AtomicU32::new(0));
        let price = pricer(&run, &n);
        loop {
            let done = s.invoice_batch(&run, &ClaimCursor::default(), 3, "INV-", 1, &price).await.unwrap();
            if done.claimed == 0 && s.pending(run.as_of, &run.id).await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let mut refused = 0;
        for w in writers {
            refused += w.await.unwrap();
        }
        // Every event stored in period 0 is in its customer's invoice: none slipped in after the close.
        let mut stored = 0;
        for i in 0..40 {
            let id = format!("r{i:02}");
            let total = s.usage_totals(&id, 0).await.unwrap().first().map_or(0, |t| t.events_micros);
            let invoice = s.invoice(&format!("in_{id}_0")).await.unwrap().unwrap();
            assert_eq!(invoice.total, total.to_string(), "{id}");
            stored += usize::try_from(total).unwrap();
        }
        assert_eq!(stored + refused, 3 * 30 * 40, "each event stored or refused");
    })
    .await;
}

#[tokio::test]
async fn usage_is_summed_per_utc_day_as_it_is_stored() {
    on_every_store(|s| async move {
        s.insert_customer(&customer("c"), "hash-c").await.unwrap();
        const DAY: i64 = 86_400_000_000;
        let events = [
            event("c", "a", "events", 5, 3 * DAY + 1),
            event("c", "b", "events", 7, 4 * DAY - 1),
            event("c", "c", "events", 11, 4 * DAY),
            event("c", "d", "recordings", 2, 4 * DAY + 5),
        ];
        s.insert_events(&events, 1).await.unwrap();
        // A duplicate counts once, in its day as in its period.
        s.insert_events(&events[..2], 2).await.unwrap();
        let daily: Vec<_> = s
            .usage_daily("c", 0)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.meter, d.day, d.events_micros))
            .collect();
        assert_eq!(
            daily,
            [
                ("events".to_owned(), 3 * DAY, 12),
                ("events".to_owned(), 4 * DAY, 11),
                ("recordings".to_owned(), 4 * DAY, 2)
            ]
        );
        assert!(s.usage_daily("c", 1).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_portal_link_opens_once_and_its_session_ends_idle_revoked_or_rotated() {
    use api::store::PortalSessionRow;
    on_every_store(|s| async move {
        s.insert_customer(&customer("c"), "key-1").await.unwrap();
        let row = |id: &str| PortalSessionRow {
            id: id.into(),
            customer_id: "c".into(),
            link_expires_at: 100,
            opened_at: None,
            last_seen_at: None,
            expires_at: None,
            revoked_at: None,
            created_by: "admin".into(),
            created_at: 0,
        };
        s.insert_portal_session(&row("ps1"), "link-1").await.unwrap();
        s.insert_portal_session(&row("ps2"), "link-2").await.unwrap();
        s.insert_portal_session(&row("ps3"), "link-3").await.unwrap();
        // Unknown, then expired: nothing opens and nothing is written.
        assert!(s.open_portal_link("link-x", "cookie-x", 10, 1_000).await.unwrap().is_none());
        assert!(s.open_portal_link("link-3", "cookie-3", 100, 1_000).await.unwrap().is_none());
        assert_eq!(s.portal_session_by_id("ps3").await.unwrap().unwrap().opened_at, None);
        // Opens once, racing.
        let (a, b) = tokio::join!(
            s.open_portal_link("link-1", "cookie-a", 10, 1_000),
            s.open_portal_link("link-1", "cookie-b", 10, 1_000)
        );
        let opened = [a.unwrap(), b.unwrap()];
        assert_eq!(opened.iter().filter(|o| o.is_some()).count(), 1, "one browser gets the session");
        let live = if opened[0].is_some() { "cookie-a" } else { "cookie-b" };
        let dead = if opened[0].is_some() { "cookie-b" } else { "cookie-a" };
        let session = s.portal_session(live, 20, 50).await.unwrap().unwrap();
        assert_eq!((session.id.as_str(), session.customer_id.as_str()), ("ps1", "c"));
        assert!(s.portal_session(dead, 20, 50).await.unwrap().is_none());
        // Idle: each use (written at most once a minute) keeps it alive for `idle` more; then it ends.
        const H: i64 = 3_600_000_000;
        let t = 1_000_000;
        s.insert_portal_session(&PortalSessionRow { link_expires_at: 10 * H, ..row("ps6") }, "link-6")
            .await
            .unwrap();
        s.open_portal_link("link-6", "cookie-6", t, t + 12 * H).await.unwrap().unwrap();
        assert!(s.portal_session("cookie-6", t + H - 1, H).await.unwrap().is_some());
        assert!(
            s.portal_session("cookie-6", t + 2 * H - 2, H).await.unwrap().is_some(),
            "the use at H−1 counts"
        );
        assert!(s.portal_session("cookie-6", t + 3 * H - 1, H).await.unwrap().is_none(), "an hour idle");
        // Past its absolute end: ended.
        assert!(s.open_portal_link("link-2", "cookie-2", 10, 30).await.unwrap().is_some());
        assert!(s.portal_session("cookie-2", 29, 1_000).await.unwrap().is_some());
        assert!(s.portal_session("cookie-2", 30, 1_000).await.unwrap().is_none(), "absolute expiry");
        // Revoked: ended, once; unknown: none.
        s.insert_portal_session(&row("ps4"), "link-4").await.unwrap();
        s.open_portal_link("link-4", "cookie-4", 10, 1_000).await.unwrap().unwrap();
        assert_eq!(s.revoke_portal_session("ps4", 11).await.unwrap().unwrap().revoked_at, Some(11));
        assert_eq!(s.revoke_portal_session("ps4", 12).await.unwrap().unwrap().revoked_at, Some(11));
        assert!(s.portal_session("cookie-4", 13, 1_000).await.unwrap().is_none());
        assert!(s.revoke_portal_session("nope", 12).await.unwrap().is_none());
        // A rotated key ends every session of the customer.
        s.insert_portal_session(&row("ps5"), "link-5").await.unwrap();
        s.open_portal_link("link-5", "cookie-5", 10, 1_000).await.unwrap().unwrap();
        assert!(s.portal_session("cookie-5", 11, 1_000).await.unwrap().is_some());
        s.rotate_key("c", "key-2", 12).await.unwrap();
        assert!(s.portal_session("cookie-5", 13, 1_000).await.unwrap().is_none());
    })
    .await;
}

/// The naive answer to `time_total_reached("c", 0, "m", amount)`: the period's events of the meter in time order
/// (ties by id), summed until the amount.
fn naive_time_reached(events: &[NewEvent], amount: i64) -> Option<i64> {
    let mut mine: Vec<&NewEvent> = events.iter().filter(|e| e.meter == "m" && e.period_start == 0).collect();
    mine.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
    let mut running = 0;
    mine.iter()
        .find(|e| {
            running += e.quantity_micros;
            running >= amount
        })
        .map(|e| e.occurred_at)
}

/// When a running total reached an amount, found through the daily totals and one day's events, is the naive answer:
/// every event of the period in time order (ties by id), summed until the amount — for events over many days,
/// with ties, other meters and other periods mixed in, at every threshold.
#[tokio::test]
async fn the_time_a_total_was_reached_is_the_naive_running_sum() {
    on_every_store(|s| async move {
        const DAY: i64 = 86_400_000_000;
        s.insert_customer(&customer("c"), "hash-c").await.unwrap();
        // A fixed pseudo-random walk (a linear congruential generator): replayable.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % n
        };
        let mut events = Vec::new();
        for i in 0..600 {
            let meter = if next(4) == 0 { "other" } else { "m" };
            let at = i64::try_from(next(20)).unwrap() * DAY + i64::try_from(next(3)).unwrap() * 1_000;
            let period = if next(10) == 0 { 7 } else { 0 };
            let micros = i64::try_from(1 + next(5_000_000)).unwrap();
            events.push(NewEvent {
                period_start: period,
                ..event("c", &format!("e{i:03}"), meter, micros, at)
            });
        }
        for chunk in events.chunks(97) {
            s.insert_events(chunk, 1).await.unwrap();
        }
        // Twice: answers are remembered (each amount asked twice in a row), and must change when events arrive on
        // or before their day (late events, on every day of the period), and stay when they arrive after it.
        let mut last = None;
        for round in 0..2 {
            if round == 1 {
                let late: Vec<NewEvent> = (0..150)
                    .map(|i| {
                        let at =
                            i64::try_from(next(20)).unwrap() * DAY + i64::try_from(next(3)).unwrap() * 1_000;
                        event(
                            "c",
                            &format!("late{i:03}"),
                            "m",
                            i64::try_from(1 + next(5_000_000)).unwrap(),
                            at,
                        )
                    })
                    .collect();
                s.insert_events(&late, 2).await.unwrap();
                events.extend(late);
            }
            let mut mine: Vec<&NewEvent> =
                events.iter().filter(|e| e.meter == "m" && e.period_start == 0).collect();
            mine.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
            let total: i64 = mine.iter().map(|e| e.quantity_micros).sum();
            let mut amounts: Vec<i64> =
                (0..200).map(|_| 1 + i64::try_from(next(u64::try_from(total).unwrap())).unwrap()).collect();
            let mut running = 0;
            for e in &mine {
                running += e.quantity_micros;
                amounts.extend([running - 1, running, running + 1]);
            }
            amounts.push(total + 1);
            // The last amount of the round before first: its remembered answer, after the late events.
            for amount in last.into_iter().chain(amounts.into_iter().filter(|a| *a > 0)) {
                for _ in 0..2 {
                    assert_eq!(
                        s.time_total_reached("c", 0, "m", amount).await.unwrap(),
                        naive_time_reached(&events, amount),
                        "round {round}, amount {amount}"
                    );
                }
                last = Some(amount);
            }
        }
        // A remembered answer is asked again after one more event, on a day before, on or after its own: it must
        // be the naive answer each time.
        for i in 0..80 {
            let total: i64 = events
                .iter()
                .filter(|e| e.meter == "m" && e.period_start == 0)
                .map(|e| e.quantity_micros)
                .sum();
            let amount = 1 + i64::try_from(next(u64::try_from(total).unwrap())).unwrap();
            assert_eq!(
                s.time_total_reached("c", 0, "m", amount).await.unwrap(),
                naive_time_reached(&events, amount)
            );
            let at = i64::try_from(next(20)).unwrap() * DAY + i64::try_from(next(3)).unwrap() * 1_000;
            let one =
                event("c", &format!("probe{i:03}"), "m", i64::try_from(1 + next(5_000_000)).unwrap(), at);
            s.insert_events(std::slice::from_ref(&one), 3).await.unwrap();
            events.push(one);
            assert_eq!(
                s.time_total_reached("c", 0, "m", amount).await.unwrap(),
                naive_time_reached(&events, amount),
                "probe {i}, amount {amount}, one more event at {at}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn an_endpoint_is_replaced_only_as_it_was_read_and_its_run_of_failures_is_the_workers() {
    on_every_store(|s| async move {
        let endpoint = api::store::EndpointRow {
            id: "we_1".into(),
            url: "https://hooks.example.com/".into(),
            description: None,
            event_types: vec!["*".into()],
            enabled: true,
            secret: "whsec_AAAA".into(),
            previous_secret: None,
            previous_until: None,
            failing_since: Some(5),
            disabled_reason: None,
            created_at: 10,
            updated_at: 10,
        };
        assert!(s.put_endpoint(&endpoint, None).await.unwrap());
        assert!(!s.put_endpoint(&endpoint, None).await.unwrap(), "the id is taken");
        let changed = api::store::EndpointRow {
            description: Some("ops".into()),
            failing_since: Some(999),
            updated_at: 11,
            ..endpoint.clone()
        };
        assert!(
            !s.put_endpoint(&changed, Some(9)).await.unwrap(),
            "not the version read: nothing is overwritten"
        );
        assert!(s.put_endpoint(&changed, Some(10)).await.unwrap());
        assert!(
            !s.put_endpoint(&changed, Some(10)).await.unwrap(),
            "a second change from the same read conflicts"
        );
        let stored = s.endpoints(Some("we_1")).await.unwrap().remove(0);
        assert_eq!((stored.description.as_deref(), stored.updated_at), (Some("ops"), 11));
        assert_eq!(stored.failing_since, Some(5), "a change never writes the run of failures back");
        let enabled = api::store::EndpointRow { failing_since: None, updated_at: 12, ..stored };
        assert!(s.put_endpoint(&enabled, Some(11)).await.unwrap());
        assert_eq!(s.endpoints(Some("we_1")).await.unwrap()[0].failing_since, None, "re-enabling clears it");
        assert!(s.endpoints(Some("we_2")).await.unwrap().is_empty());
        assert!(!s.delete_endpoint("we_2").await.unwrap());
        assert!(s.delete_endpoint("we_1").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn a_preview_reads_a_months_invoices_by_pages_of_customers_and_open_periods_as_a_run_would() {
    on_every_store_at(|s, url| async move {
        for id in ["a", "b", "bad", "c", "d"] {
            s.insert_customer(&CustomerRow { open_from: 0, open_until: Some(2_000), ..customer(id) }, id)
                .await
                .unwrap();
        }
        s.insert_events(&[event("a", "e1", "m", 7, 10), event("b", "e2", "m", 9, 10)], 0).await.unwrap();
        let (run, _) = s.open_run("run_1", 4_000, false, 10, 0).await.unwrap();
        let n = Arc::new(AtomicU32::new(0));
        let price = pricer(&run, &n);
        // Periods [0, 2000) and [2000, 4000) of every customer but `bad` (its pricing fails).
        for _ in 0..3 {
            s.invoice_batch(&run, &ClaimCursor::default(), 10, "INV-", 1, &price).await.unwrap();
        }
        assert_eq!(s.last_invoiced_period().await.unwrap(), Some(2_000));
        assert!(matches!(
            s.transition_invoice("in_c_0", InvoiceAction::Void, "INV-", 2).await.unwrap(),
            Transition::Done(_)
        ));
        let before = common::rows(&url).await;

        // Pages of two customers: `bad` (no invoice) and `c` (void) are looked at, and listed by none.
        let mut after = String::new();
        let mut pages = Vec::new();
        loop {
            let page = s.invoiced_requests(0, 2_000, &after, 2).await.unwrap();
            let Some(last) = page.last.clone() else {
                assert_eq!(page.customers, 0);
                break;
            };
            after = last;
            pages.push(page);
        }
        let listed: Vec<Vec<(&str, &str, &str)>> = pages
            .iter()
            .map(|p| {
                p.requests
                    .iter()
                    .map(|r| (r.customer_id.as_str(), r.invoice_id.as_str(), r.total.as_str()))
                    .collect()
            })
            .collect();
        assert_eq!(
            listed,
            [vec![("a", "in_a_0", "7"), ("b", "in_b_0", "9")], vec![], vec![("d", "in_d_0", "0")]]
        );
        assert_eq!(
            pages.iter().map(|p| (p.customers, p.last.as_deref())).collect::<Vec<_>>(),
            [(2, Some("b")), (2, Some("c")), (1, Some("d"))]
        );
        let r = &pages[0].requests[0];
        assert_eq!(
            (r.period_start, r.period_end, r.price_book_version.as_str(), r.currency.as_str()),
            (0, 2_000, "v", "USD")
        );
        // The next month: the second period of each, the void one of `c` too.
        let page = s.invoiced_requests(2_000, 4_000, "", 10).await.unwrap();
        let ids: Vec<&str> = page.requests.iter().map(|r| r.invoice_id.as_str()).collect();
        assert_eq!(ids, ["in_a_2000", "in_b_2000", "in_c_2000", "in_d_2000"]);
        assert_eq!(s.invoiced_requests(4_000, 6_000, "", 10).await.unwrap().requests, []);

        // Open periods: every customer, with what its period needs, as a run reads it (no claim).
        let open = s.open_periods("", 3).await.unwrap();
        assert_eq!(open.iter().map(|d| d.customer.id.as_str()).collect::<Vec<_>>(), ["a", "b", "bad"]);
        assert_eq!(open[2].customer.open_from, 0, "bad's first period is still open");
        assert_eq!(open[2].totals, [], "no usage");
        assert_eq!(open[0].customer.open_from, 4_000);
        let rest = s.open_periods("bad", 3).await.unwrap();
        assert_eq!(rest.iter().map(|d| d.customer.id.as_str()).collect::<Vec<_>>(), ["c", "d"]);
        assert!(s.open_periods("d", 3).await.unwrap().is_empty());
        assert_eq!(common::rows(&url).await, before, "reads only");
    })
    .await;
}
