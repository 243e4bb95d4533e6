//! Time as the system reads it: through a [`Clock`].
//!
//! Whatever depends on the time (token lifetimes, the budget's day, entry
//! times, retention) asks a clock it was given, so a test can set the time
//! instead of waiting for it. [`SystemClock`] is the only reading of the wall
//! clock in the code base (`clippy.toml` refuses any other).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> SystemTime;

    /// Whole seconds since the Unix epoch, now.
    fn unix_seconds(&self) -> i64 {
        self.unix_micros().div_euclid(1_000_000)
    }

    /// Microseconds since the Unix epoch, now.
    fn unix_micros(&self) -> i64 {
        match self.now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
        }
    }

    /// The UTC hour since the Unix epoch, now (0 before the epoch).
    fn utc_hour(&self) -> u32 {
        u32::try_from(self.unix_seconds().max(0) / 3600).unwrap_or(u32::MAX)
    }
}

/// A clock shared by the parts of a node.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemClock::now(*self)
    }
}

impl SystemClock {
    /// Now, by the wall clock (without the [`Clock`] trait in scope).
    #[allow(
        clippy::disallowed_methods,
        reason = "the one reading of the wall clock"
    )]
    pub fn now(self) -> SystemTime {
        SystemTime::now()
    }

    /// The wall clock, shared.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

/// A clock that stands still until it is set or advanced: for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// A clock at `unix_seconds`.
    pub fn at(unix_seconds: i64) -> Arc<Self> {
        Arc::new(Self {
            micros: AtomicI64::new(unix_seconds.saturating_mul(1_000_000)),
        })
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }

    /// Sets the clock to `unix_seconds`.
    pub fn set(&self, unix_seconds: i64) {
        self.micros
            .store(unix_seconds.saturating_mul(1_000_000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        let micros = self.micros.load(Ordering::SeqCst);
        if micros >= 0 {
            UNIX_EPOCH + Duration::from_micros(micros.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
        }
    }

    fn unix_micros(&self) -> i64 {
        self.micros.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(1_700_000_000);
        assert_eq!(clock.unix_seconds(), 1_700_000_000);
        assert_eq!(clock.utc_hour(), 1_700_000_000 / 3600);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.unix_micros(), 1_700_000_001_500_000);
        assert_eq!(clock.unix_seconds(), 1_700_000_001);
        clock.set(-1);
        assert_eq!(clock.unix_seconds(), -1);
        assert_eq!(clock.utc_hour(), 0);
        // The wall clock is past 2020.
        assert!(SystemClock.unix_seconds() > 1_577_836_800);
    }
}
