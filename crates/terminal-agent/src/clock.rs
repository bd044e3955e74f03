//! The terminal's wall clock: the only place the agent reads it (taps get their time passed in).

/// Unix milliseconds of the terminal's clock.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
