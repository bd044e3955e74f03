//! Clearing windows (清分窗口): every posting belongs to exactly one window, the one open at
//! the moment it is posted. Windows are cut daily at a configurable local time (default 23:00
//! in the city, UTC+8, i.e. 15:00 UTC); a window is named by the city date on which it closes
//! (`2026-11-30` covers 2026-11-29 23:00 up to, not including, 2026-11-30 23:00). With a
//! midnight cut-off a window is simply the calendar day.
//!
//! Pure arithmetic on unix milliseconds: the caller passes the time in.

use std::fmt;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
const DAY_MINUTES: u16 = 1_440;

/// One clearing window, by the city date it closes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowId {
    /// Days since 1970-01-01 of the closing date.
    day: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("cut-off {0:?} is not a time of day HH:MM")]
    BadCutoff(String),
    #[error("UTC offset of {0} minutes is outside -14:00..=+14:00")]
    BadOffset(i32),
    #[error("window id {0:?} is not a date YYYY-MM-DD")]
    BadId(String),
}

impl WindowId {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Result<Self, WindowError> {
        let bad = || WindowError::BadId(s.to_string());
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, WindowError> {
            let part = &s[r];
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
            return Err(bad());
        }
        Ok(WindowId {
            day: days_from_civil(y, m, d) as i32,
        })
    }

    /// The window after this one.
    pub fn next(self) -> Self {
        WindowId { day: self.day + 1 }
    }
}

impl fmt::Display for WindowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(i64::from(self.day));
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// Where windows are cut: a local time of day and the city's offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCalendar {
    cutoff_minutes: u16,
    utc_offset_minutes: i16,
}

impl Default for WindowCalendar {
    /// 23:00 in China Standard Time (UTC+8): 15:00 UTC.
    fn default() -> Self {
        WindowCalendar {
            cutoff_minutes: 23 * 60,
            utc_offset_minutes: 8 * 60,
        }
    }
}

impl WindowCalendar {
    /// A cut-off at `cutoff_minutes` after local midnight (0..1440) in a city at
    /// `utc_offset_minutes` from UTC.
    pub fn new(cutoff_minutes: u16, utc_offset_minutes: i16) -> Result<Self, WindowError> {
        if cutoff_minutes >= DAY_MINUTES {
            return Err(WindowError::BadCutoff(format!("{cutoff_minutes} minutes")));
        }
        if !(-14 * 60..=14 * 60).contains(&utc_offset_minutes) {
            return Err(WindowError::BadOffset(i32::from(utc_offset_minutes)));
        }
        Ok(WindowCalendar {
            cutoff_minutes,
            utc_offset_minutes,
        })
    }

    /// A cut-off given as `HH:MM` local time, at UTC+8.
    pub fn parse_cutoff(hh_mm: &str) -> Result<Self, WindowError> {
        let bad = || WindowError::BadCutoff(hh_mm.to_string());
        let (h, m) = hh_mm.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        WindowCalendar::new(h * 60 + m, 8 * 60)
    }

    pub fn cutoff_minutes(&self) -> u16 {
        self.cutoff_minutes
    }

    fn offset_ms(&self) -> i64 {
        i64::from(self.utc_offset_minutes) * MINUTE_MS
    }

    /// The window an instant (unix ms) falls in.
    pub fn window_of(&self, ms: i64) -> WindowId {
        // Shift so that the cut-off lands on local midnight: the date of the shifted instant
        // is the date the window closes on.
        let shift = i64::from((DAY_MINUTES - self.cutoff_minutes) % DAY_MINUTES) * MINUTE_MS;
        let day = (ms + self.offset_ms() + shift).div_euclid(DAY_MS);
        WindowId {
            day: i32::try_from(day).unwrap_or(if day < 0 { i32::MIN } else { i32::MAX }),
        }
    }

    /// The first instant (unix ms) of a window.
    pub fn start_ms(&self, w: WindowId) -> i64 {
        self.end_ms(w) - DAY_MS
    }

    /// The first instant after a window (its cut-off), unix ms.
    pub fn end_ms(&self, w: WindowId) -> i64 {
        // Minutes from the closing date's local midnight to the cut-off; a midnight cut-off
        // closes at the end of the day.
        let close = i64::from((self.cutoff_minutes + DAY_MINUTES - 1) % DAY_MINUTES + 1);
        i64::from(w.day) * DAY_MS + close * MINUTE_MS - self.offset_ms()
    }

    /// Unix ms of a local date and time of the city (a terminal's transaction time).
    /// `None` for an impossible date or time.
    pub fn local_ms(&self, y: u16, m: u8, d: u8, hh: u8, mm: u8, ss: u8) -> Option<i64> {
        let (y, m64, d64) = (i64::from(y), i64::from(m), i64::from(d));
        if !(1..=12).contains(&m64) || d64 < 1 || d64 > days_in_month(y, m64) {
            return None;
        }
        if hh > 23 || mm > 59 || ss > 59 {
            return None;
        }
        let secs = i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss);
        Some(days_from_civil(y, m64, d64) * DAY_MS + secs * 1000 - self.offset_ms())
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30 15:00:00 UTC = 23:00 in the city.
    const CUT_MS: i64 = 1_796_050_800_000;

    #[test]
    fn default_cutoff_is_23_00_in_the_city() {
        let c = WindowCalendar::default();
        let w = c.window_of(CUT_MS - 1);
        assert_eq!(w.to_string(), "2026-11-30");
        assert_eq!(c.window_of(CUT_MS).to_string(), "2026-12-01");
        assert_eq!(c.end_ms(w), CUT_MS);
        assert_eq!(c.start_ms(w), CUT_MS - DAY_MS);
        assert_eq!(c.window_of(c.start_ms(w)), w);
        assert_eq!(c.window_of(c.start_ms(w) - 1).next(), w);
        // 2026-11-30 08:00 in the city is mid-window.
        assert_eq!(c.local_ms(2026, 11, 30, 23, 0, 0), Some(CUT_MS));
        assert_eq!(c.window_of(c.local_ms(2026, 11, 30, 8, 0, 0).unwrap()), w);
        assert_eq!(WindowId::parse("2026-11-30"), Ok(w));
    }

    #[test]
    fn midnight_and_early_cutoffs() {
        let midnight = WindowCalendar::new(0, 480).unwrap();
        let t = midnight.local_ms(2026, 2, 28, 23, 59, 59).unwrap();
        assert_eq!(midnight.window_of(t).to_string(), "2026-02-28");
        assert_eq!(midnight.window_of(t + 1000).to_string(), "2026-03-01");
        let w = midnight.window_of(t);
        assert_eq!(midnight.end_ms(w), t + 1000);
        let six = WindowCalendar::parse_cutoff("06:00").unwrap();
        let t = six.local_ms(2026, 11, 30, 7, 0, 0).unwrap();
        assert_eq!(six.window_of(t).to_string(), "2026-12-01");
        assert_eq!(six.window_of(t - 3_600_001).to_string(), "2026-11-30");
    }

    #[test]
    fn every_instant_is_in_exactly_its_window() {
        let c = WindowCalendar::parse_cutoff("23:00").unwrap();
        let mut t = CUT_MS - 3 * DAY_MS;
        while t < CUT_MS + 3 * DAY_MS {
            let w = c.window_of(t);
            assert!(c.start_ms(w) <= t && t < c.end_ms(w), "{t} {w}");
            t += 7 * MINUTE_MS + 13;
        }
    }

    #[test]
    fn bad_input_is_refused() {
        for s in ["24:00", "7:00", "12:60", "x"] {
            assert!(WindowCalendar::parse_cutoff(s).is_err(), "{s}");
        }
        for s in ["2026-02-30", "2026-13-01", "20261130", "2026-1-30"] {
            assert!(WindowId::parse(s).is_err(), "{s}");
        }
        assert_eq!(
            WindowCalendar::default().local_ms(2026, 2, 29, 0, 0, 0),
            None
        );
        assert!(
            WindowCalendar::default()
                .local_ms(2028, 2, 29, 0, 0, 0)
                .is_some()
        );
        assert_eq!(
            WindowCalendar::default().local_ms(2026, 1, 1, 24, 0, 0),
            None
        );
    }
}
