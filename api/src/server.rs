//! `tally serve`: settings, start-up (open and migrate the database, publish the first price book, the admin
//! token), and serving until a shutdown signal, finishing the requests in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use billing_core::PriceBook;
use tokio::net::TcpListener;

use crate::app::RunSettings;
use crate::app::Service;
use crate::http::{self, AppState};
use crate::secret::{hash_secret, hex, new_secret, unhex};
use crate::store::{self, Store};
use crate::time::{Clock, SystemClock};

/// Everything `tally serve` is told.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// `sqlite://FILE?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// The first price book of a new database (default: the built-in one).
    pub price_book: Option<PriceBook>,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// The admin token, when given (`TALLY_ADMIN_TOKEN`); otherwise one is generated on first start.
    pub admin_token: Option<String>,
    /// The prefix of invoice numbers (`--invoice-prefix`).
    pub invoice_prefix: String,
    /// The pricing page's site folder (`--assets`; default: found next to the binary, see [`crate::http::Assets`]).
    pub assets: Option<std::path::PathBuf>,
    /// The public address of the site (`--public-url`): billing-portal links start with it, and session cookies
    /// are `Secure` when it is https.
    pub public_url: Option<String>,
    /// The seller printed on invoices.
    pub seller: crate::http::Seller,
    /// How webhooks are delivered.
    pub webhooks: crate::app::WebhookSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:3000".into(),
            database_url: "sqlite://tally.db?mode=rwc".into(),
            price_book: None,
            max_body: 5 * 1024 * 1024,
            admin_token: None,
            invoice_prefix: crate::app::DEFAULT_PREFIX.into(),
            assets: None,
            public_url: None,
            seller: crate::http::Seller { name: "tally".into(), address: String::new() },
            webhooks: crate::app::WebhookSettings::default(),
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database.
    #[error("{0}")]
    Store(#[from] store::StoreError),
    /// The listening socket.
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    /// Start-up of the service (a stored price book that no longer parses…).
    #[error("{0}")]
    Service(String),
}

/// A built service, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    max_body: usize,
    /// Said once on start: the admin token, when it was just generated.
    pub generated_admin_token: Option<String>,
}

impl Application {
    /// Opens and migrates the database, publishes the first price book on a new one, sets up the admin token, and
    /// binds the listener.
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with a given clock (tests).
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Application, StartError> {
        let store = store::open(&settings.database_url).await?;
        store.migrate().await?;
        let (state, generated_admin_token) = state(store, clock, &settings).await?;
        let listener = TcpListener::bind(&settings.listen)
            .await
            .map_err(|e| StartError::Listen(settings.listen.clone(), e))?;
        Ok(Application { listener, state, max_body: settings.max_body, generated_admin_token })
    }

    /// The address bound.
    ///
    /// # Errors
    /// When the socket has none.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The service's state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, finishes the requests in flight, and closes the
    /// database (every acknowledged write is committed before its response is sent).
    ///
    /// # Errors
    /// I/O errors of the listener.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let service = self.state.service.clone();
        // Idempotency records expire after a day: purged at start and every hour (several instances may purge at
        // once; each deletes what is there to delete).
        let purge = http::idempotency::purge_expired(service.clone(), PURGE_EVERY);
        // Webhook delivery: events written by any instance, sent by whichever claims them.
        let webhooks = tokio::spawn(service.clone().deliver_webhooks());
        let router = http::router(self.state, self.max_body);
        let served = axum::serve(self.listener, router).with_graceful_shutdown(shutdown).await;
        purge.abort();
        webhooks.abort();
        service.close().await;
        served?;
        Ok(())
    }
}

/// The service's state over an open, migrated store (also what in-process tests build their router from).
///
/// # Errors
/// [`StartError`].
pub async fn state(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: &Settings,
) -> Result<(AppState, Option<String>), StartError> {
    let first = match &settings.price_book {
        Some(book) => book.clone(),
        None => PriceBook::default_book().map_err(|e| StartError::Service(e.to_string()))?,
    };
    let (admin_hash, generated) = admin_token(store.as_ref(), settings.admin_token.as_deref()).await?;
    let service = Service::start(store, clock, &first)
        .await
        .map_err(|e| StartError::Service(e.to_string()))?
        .with_webhooks(settings.webhooks.clone());
    let run_settings =
        RunSettings { workers: 2, prefix: settings.invoice_prefix.clone(), ..RunSettings::default() };
    Ok((
        AppState {
            service: Arc::new(service),
            admin_hash,
            max_body: settings.max_body,
            run_settings,
            assets: Arc::new(crate::http::Assets::locate(settings.assets.as_deref())),
            public_url: settings.public_url.clone(),
            seller: settings.seller.clone(),
        },
        generated,
    ))
}

const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

/// The admin token's hash: from `TALLY_ADMIN_TOKEN` when set; otherwise the stored one; otherwise a new token,
/// stored hashed and returned once to be printed.
async fn admin_token(
    store: &dyn Store,
    given: Option<&str>,
) -> Result<([u8; 32], Option<String>), StartError> {
    if let Some(token) = given.filter(|t| !t.is_empty()) {
        return Ok((hash_secret(token), None));
    }
    if let Some(stored) = store.setting(ADMIN_TOKEN_SETTING).await? {
        return Ok((
            unhex(&stored)
                .ok_or_else(|| StartError::Service("the stored admin token hash is not valid".into()))?,
            None,
        ));
    }
    let token = new_secret("ta_").map_err(|e| StartError::Service(e.to_string()))?;
    if store.put_setting_if_absent(ADMIN_TOKEN_SETTING, &hex(&hash_secret(&token))).await? {
        return Ok((hash_secret(&token), Some(token)));
    }
    // Another process stored one first: use it (its token was printed there).
    let stored = store.setting(ADMIN_TOKEN_SETTING).await?.unwrap_or_default();
    Ok((
        unhex(&stored)
            .ok_or_else(|| StartError::Service("the stored admin token hash is not valid".into()))?,
        None,
    ))
}

/// How often `tally serve` purges expired idempotency records.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
