//! The clock: the one place the platform reads the time, so tests and the demo can set it.

use std::sync::atomic::{AtomicI64, Ordering};
use time::{Date, OffsetDateTime, UtcOffset};

/// China Standard Time, in which the city's business days (and ID birth dates) are reckoned.
pub const CST: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => panic!("valid offset"),
};

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;

    /// Today's date in the city.
    fn today(&self) -> Date {
        let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.now_ms()) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        t.to_offset(CST).date()
    }
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
    }
}

/// The wall clock moved by a fixed offset, for development and tests only (`citycard
/// --clock-offset-s`): a platform started "two days ago" posts into a clearing window that the
/// same data, served again at the real time, can close. Production mode refuses an offset.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    offset_ms: i64,
}

impl OffsetClock {
    pub fn new(offset_ms: i64) -> Self {
        OffsetClock { offset_ms }
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms().saturating_add(self.offset_ms)
    }
}

/// The current wall-clock time in the city, for commands that default a time to "now".
pub fn now_in_city() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(SystemClock.now_ms()) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(CST)
}

/// A clock that stands still until moved: tests and the demo's simulated days.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock(AtomicI64::new(now_ms))
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Formats unix milliseconds as `YYYY-MM-DD HH:MM:SS` in the city's time.
pub fn format_ms(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(CST);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
