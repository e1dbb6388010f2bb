//! tally's service side: the `tally` command-line tool ([`cli`], [`table`]) and the HTTP service `tally serve`
//! ([`server`] starts it, [`http`] answers, [`service`] holds the use-cases, [`store`] the SQLite and PostgreSQL
//! storage, [`page`] the pricing page at `/`). Every amount it shows comes from [`billing_core::compute`].

// The OpenAPI document is one `json!` literal deep enough to need it.
#![recursion_limit = "1024"]

pub mod cli;
pub mod http;
pub mod invoicing;
pub mod openapi;
pub mod page;
pub mod render;
pub mod server;
pub mod service;
pub mod store;
pub mod table;
