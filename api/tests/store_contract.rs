//! The storage contract: every `Store` behaves the same. Each test runs on a fresh SQLite file, and on a fresh
//! PostgreSQL database when `TALLY_TEST_POSTGRES_URL` is set (`.ci/run` sets it) — and fails, never skips, when it is
//! set but PostgreSQL cannot be reached. Concurrency is real: tasks race on one pool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use api::store::{
    self, AddonSince, AlertRow, CustomerRow, Idempotent, LimitRow, NewEvent, NewReport, Store, StoredBook,
};
use sqlx::Connection;

/// A fresh PostgreSQL database, dropped on [`PgDb::drop_now`].
struct PgDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create(admin_url: &str) -> PgDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("tally_contract_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap_or_else(|e| {
            panic!("TALLY_TEST_POSTGRES_URL is set but PostgreSQL cannot be reached: {e}")
        });
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
        PgDb { admin_url: admin_url.to_owned(), url: format!("{base}/{name}"), name }
    }

    async fn drop_now(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// Runs `check` on every backend.
async fn on_every_store<F, Fut>(check: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let (sqlite, _dir) = common::sqlite().await;
    assert_eq!(sqlite.backend(), "sqlite");
    check(sqlite.clone()).await;
    sqlite.close().await;
    if let Ok(url) = std::env::var("TALLY_TEST_POSTGRES_URL") {
        let db = PgDb::create(&url).await;
        let pg = store::open(&db.url).await.unwrap();
        pg.migrate().await.unwrap();
        assert_eq!(pg.backend(), "postgres");
        check(pg.clone()).await;
        pg.close().await;
        db.drop_now().await;
    }
}

fn customer(id: &str) -> CustomerRow {
    CustomerRow {
        id: id.into(),
        name: format!("{id} Inc"),
        billing_anchor: 1_000,
        addons: vec![AddonSince { key: "boost".into(), since: 1_000 }],
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
        s.insert_reports(&[r(5), r(9), r(3)]).await.unwrap();
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
        s.set_limits("c", &[("x".into(), l("x", 100, None)), ("y".into(), l("y", 5, Some((7, 50))))], 1)
            .await
            .unwrap();
        s.set_limits("c", &[("x".into(), l("x", 200, None))], 2).await.unwrap();
        let limits = s.limits("c").await.unwrap();
        assert_eq!(
            limits,
            [
                LimitRow { product: "x".into(), amount: 200, pinned: None },
                LimitRow { product: "y".into(), amount: 5, pinned: Some((7, 50)) }
            ]
        );
        s.set_limits("c", &[("y".into(), None)], 3).await.unwrap();
        assert_eq!(s.limits("c").await.unwrap().len(), 1);
        let a = AlertRow { period_start: 0, product: "x".into(), threshold: "0.8".into(), detected_at: 11 };
        assert!(s.insert_alert("c", &a).await.unwrap());
        assert!(
            !s.insert_alert("c", &AlertRow { detected_at: 12, ..a.clone() }).await.unwrap(),
            "once per period"
        );
        assert!(s.insert_alert("c", &AlertRow { period_start: 1, ..a.clone() }).await.unwrap());
        assert_eq!(s.alerts("c").await.unwrap().len(), 2);
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
