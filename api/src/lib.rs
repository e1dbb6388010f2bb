//! tally's service side, in layers whose imports point one way (down):
//!
//! - [`cli`] (with [`table`]) and [`server`]: the `tally` command and `tally serve`'s start-up; they assemble
//!   the layers below;
//! - [`http`]: the HTTP API — routes, who may call them, the one error shape, idempotency keys, the pricing page;
//! - [`app`]: the use-cases (customers, usage ingestion, the usage view, caps, commitments and credit, invoice runs,
//!   the invoice lifecycle); every amount comes from [`billing_core::compute`];
//! - [`store`]: the storage trait and its SQLite and PostgreSQL implementations;
//! - leaves used by any layer: [`time`] (the clock, stored instants), [`secret`] (credentials, ids),
//!   [`signature`] (Standard Webhooks signatures) and [`outbound`] (requests to users' addresses, the address rule).

// The OpenAPI document is one `json!` literal deep enough to need it.
#![recursion_limit = "1024"]

pub mod app;
pub mod cli;
pub mod http;
pub mod outbound;
pub mod secret;
pub mod server;
pub mod signature;
pub mod store;
pub mod table;
pub mod time;
