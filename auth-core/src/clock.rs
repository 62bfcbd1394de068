//! Time as a parameter. Every component takes a [`Clock`] (or a `now`) instead of reading the wall
//! clock, which is what makes fixed-clock tests and golden fixtures possible.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;
/// Seconds since the Unix epoch (the unit of JWT `iat`/`exp`).
pub type UnixSeconds = i64;

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> UnixMillis;

    /// The current time in whole seconds since the Unix epoch.
    fn now(&self) -> UnixSeconds {
        self.now_ms().div_euclid(1000)
    }
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMillis {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            // A clock set before 1970 is a broken machine; report the epoch rather than panic.
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to: for tests and fixture recording.
#[derive(Debug, Default)]
pub struct FixedClock {
    now_ms: AtomicI64,
}

impl FixedClock {
    /// A clock standing at `seconds` since the epoch.
    pub fn at_seconds(seconds: UnixSeconds) -> Self {
        Self { now_ms: AtomicI64::new(seconds.saturating_mul(1000)) }
    }

    /// A clock standing at `ms` milliseconds since the epoch.
    pub fn at_millis(ms: UnixMillis) -> Self {
        Self { now_ms: AtomicI64::new(ms) }
    }

    /// Moves the clock to `ms`.
    pub fn set_millis(&self, ms: UnixMillis) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_millis(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `seconds`.
    pub fn advance_seconds(&self, seconds: i64) {
        self.advance_millis(seconds.saturating_mul(1000));
    }
}

impl Clock for FixedClock {
    fn now_ms(&self) -> UnixMillis {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let clock = FixedClock::at_seconds(1_700_000_000);
        assert_eq!(clock.now(), 1_700_000_000);
        clock.advance_millis(1_500);
        assert_eq!(clock.now_ms(), 1_700_000_001_500);
        assert_eq!(clock.now(), 1_700_000_001);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > 1_577_836_800);
    }
}
