//! Time: where "now" comes from (the system clock, or a pinned one in tests) and instants as stored (microseconds
//! since the epoch). A leaf: it depends on nothing of tally's.

use std::sync::RwLock;

use chrono::{DateTime, Utc};

/// Where "now" comes from: the system clock in production, a pinned instant in tests.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that says what it is told (tests).
#[derive(Debug)]
pub struct FixedClock(pub RwLock<DateTime<Utc>>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A UTC day in microseconds, the unit instants are stored in.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Microseconds since the epoch, as stored.
pub fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// The first instant of `now`'s month, UTC.
pub fn first_of_month(now: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Datelike;
    billing_core::period::utc_midnight(now.year(), now.month(), 1).unwrap_or(now)
}
