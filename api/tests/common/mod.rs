//! Helpers of the service's in-process tests: a router over a fresh SQLite file (or a PostgreSQL database), a pinned
//! clock, and one-call requests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use api::http::{router, AppState};
use api::server::{state, Settings};
use api::store::{self, Store};
use api::time::FixedClock;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::Connection;
use tower::ServiceExt;

pub const ADMIN: &str = "admin-secret";

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tally-api-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh SQLite store in its own temporary directory.
pub async fn sqlite() -> (Arc<dyn Store>, TempDir) {
    let dir = TempDir::new();
    let url = format!("sqlite://{}/tally.db?mode=rwc", dir.0.display());
    let store = store::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

/// A fresh PostgreSQL database, dropped on [`PgDb::drop_now`].
pub struct PgDb {
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub async fn create(admin_url: &str) -> PgDb {
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

    pub async fn drop_now(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The service over a fresh SQLite file, its clock pinned to 2026-11-20 12:00 UTC.
pub struct App {
    pub router: Router,
    pub clock: Arc<FixedClock>,
    pub state: AppState,
    _dir: TempDir,
}

impl App {
    pub async fn new() -> App {
        let (store, dir) = sqlite().await;
        App::on(store, dir).await
    }

    /// The service over `store` (its directory, if any, removed with the app).
    pub async fn on(store: Arc<dyn Store>, dir: TempDir) -> App {
        App::with(store, dir, Settings { admin_token: Some(ADMIN.into()), ..Settings::default() }).await
    }

    /// The service over `store` with `settings`.
    pub async fn with(store: Arc<dyn Store>, dir: TempDir, settings: Settings) -> App {
        let clock = Arc::new(FixedClock(RwLock::new(at("2026-11-20T12:00:00Z"))));
        let (state, _) = state(store, clock.clone(), &settings).await.unwrap();
        App { router: router(state.clone(), settings.max_body), clock, state, _dir: dir }
    }

    pub fn set_now(&self, now: &str) {
        *self.clock.0.write().unwrap() = at(now);
    }

    /// One request: method, path, bearer token, JSON body; the status and the body as JSON (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.raw(method, path, token, body.map(|b| b.to_string()), &[]).await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let has_type = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !has_type {
            request = request.header("content-type", "application/json");
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Starts an invoice run (`POST /v1/invoice-runs`) and waits for it to complete; the run's final JSON.
    pub async fn run_invoices(&self, as_of: &str, issue: bool) -> Value {
        let (status, started) = self
            .post("/v1/invoice-runs", Some(ADMIN), serde_json::json!({"as_of": as_of, "issue": issue}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        let id = started["id"].as_str().unwrap().to_owned();
        for _ in 0..500 {
            let (status, body) = self.get(&format!("/v1/invoice-runs/{id}"), Some(ADMIN)).await;
            assert_eq!(status, StatusCode::OK);
            if body["status"] == "completed" {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("run {id} did not complete");
    }

    /// Creates a customer anchored on 2026-11-01; returns its key.
    pub async fn customer(&self, id: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/customers",
                Some(ADMIN),
                serde_json::json!({"id": id, "name": id, "billing_anchor": "2026-11-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["api_key"].as_str().unwrap().to_owned()
    }
}

/// The error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error body: {body}"))
}

/// An app on every backend, with the URL of its database (to count rows below the service).
pub async fn on_every_backend<F, Fut>(check: F)
where
    F: Fn(App, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (sqlite, dir) = sqlite().await;
    let url = format!("sqlite://{}/tally.db", dir.0.display());
    check(App::on(sqlite, dir).await, url).await;
    if let Ok(admin_url) = std::env::var("TALLY_TEST_POSTGRES_URL") {
        let db = PgDb::create(&admin_url).await;
        let pg: std::sync::Arc<dyn Store> = store::open(&db.url).await.unwrap();
        pg.migrate().await.unwrap();
        let app = App::on(pg.clone(), TempDir::new()).await;
        check(app, db.url.clone()).await;
        pg.close().await;
        db.drop_now().await;
    }
}

/// Rows per table, read straight from the database.
pub async fn rows(url: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for t in tables {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{t}\""))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            out.insert(t, n);
        }
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for t in tables {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{t}\""))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            out.insert(t, n);
        }
        conn.close().await.unwrap();
    }
    assert!(out.contains_key("idempotency_keys") && out.contains_key("customers"), "{out:?}");
    out
}
