//! tally's service side: the `tally` command-line tool ([`cli`], [`table`]) and the HTTP service `tally serve`
//! ([`server`] starts it, [`http`] answers, [`service`] holds the use-cases, [`store`] the SQLite and PostgreSQL
//! storage). Every amount it shows comes from [`billing_core::compute`].

pub mod cli;
pub mod http;
pub mod server;
pub mod service;
pub mod store;
pub mod table;
