//! Points in time as the caller passes them in: this crate never reads a clock.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch (UTC). The platform's clock module makes these.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Seconds since the Unix epoch.
    pub fn unix_s(self) -> i64 {
        self.0
    }

    /// This time plus `seconds`, saturating at the far future rather than wrapping.
    pub fn plus_s(self, seconds: u64) -> Timestamp {
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(seconds))
    }

    /// This time minus `seconds`, saturating at the far past.
    pub fn minus_s(self, seconds: u64) -> Timestamp {
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(seconds))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}
