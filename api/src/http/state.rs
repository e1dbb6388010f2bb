//! What every handler shares: the use-cases and the settings the HTTP layer needs.

use std::sync::Arc;

use super::assets::Assets;
use crate::app::{RunSettings, Service};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The use-cases.
    pub service: Arc<Service>,
    /// SHA-256 of the admin token.
    pub admin_hash: [u8; 32],
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// How invoice runs started over HTTP work, and the prefix of invoice numbers.
    pub run_settings: RunSettings,
    /// The pricing page's wasm bundle, when there is one.
    pub assets: Arc<Assets>,
    /// The site's public address (`--public-url`), for the links it gives out; `None`: the request's `Host`.
    pub public_url: Option<String>,
    /// Who issues the invoices, as printed on them.
    pub seller: Seller,
}

/// The seller printed on invoices (`--seller-name`, `--seller-address`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seller {
    /// Name.
    pub name: String,
    /// Postal address, lines separated by `\n` (or `|` on a command line).
    pub address: String,
}
