//! tally's service side. For now: the `tally` command-line tool ([`cli`]) and its human-readable output
//! ([`table`]). The HTTP service (storage, usage, caps, commitments, invoice runs) comes next and will share the
//! same [`billing_core::compute`] pipeline.

pub mod cli;
pub mod table;
