//! BCD dates (`YYYYMMDD`, 4 bytes) and times (`hhmmss`, 3 bytes) as the profile stores them.

use core::fmt;

use thiserror::Error;

/// Why bytes or text are not a valid BCD date or time.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BcdError {
    /// A nibble above 9.
    #[error("not BCD: {0}")]
    NotBcd(String),
    /// Digits that form no calendar date.
    #[error("no such date: {0}")]
    InvalidDate(String),
    /// Digits that form no time of day.
    #[error("no such time: {0}")]
    InvalidTime(String),
}

fn bcd_byte(b: u8) -> Option<u8> {
    let (hi, lo) = (b >> 4, b & 0x0F);
    (hi <= 9 && lo <= 9).then_some(hi * 10 + lo)
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A calendar date, stored on the card as BCD `YYYYMMDD`. Ordered by time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BcdDate {
    year: u16,
    month: u8,
    day: u8,
}

impl BcdDate {
    /// A date from its parts; checks that the day exists.
    pub fn new(year: u16, month: u8, day: u8) -> Result<Self, BcdError> {
        if !(1..=9999).contains(&year)
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
        {
            return Err(BcdError::InvalidDate(format!(
                "{year:04}-{month:02}-{day:02}"
            )));
        }
        Ok(BcdDate { year, month, day })
    }

    /// Parses the 4 BCD bytes of a card field.
    pub fn from_bcd(bytes: [u8; 4]) -> Result<Self, BcdError> {
        let d: Option<Vec<u8>> = bytes.iter().map(|b| bcd_byte(*b)).collect();
        let d = d.ok_or_else(|| BcdError::NotBcd(hex::encode_upper(bytes)))?;
        BcdDate::new(u16::from(d[0]) * 100 + u16::from(d[1]), d[2], d[3])
    }

    /// Parses `YYYYMMDD`.
    pub fn parse(text: &str) -> Result<Self, BcdError> {
        let bytes: [u8; 4] = hex::decode(text)
            .ok()
            .and_then(|v| v.try_into().ok())
            .filter(|_| text.bytes().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| BcdError::NotBcd(text.to_string()))?;
        BcdDate::from_bcd(bytes)
    }

    /// The 4 BCD bytes.
    pub fn to_bcd(self) -> [u8; 4] {
        [
            to_bcd((self.year / 100) as u8),
            to_bcd((self.year % 100) as u8),
            to_bcd(self.month),
            to_bcd(self.day),
        ]
    }

    /// The same day `years` later; 29 February becomes 28 February in a
    /// common year. Used for the expiry date (start + 10 years).
    pub fn plus_years(self, years: u16) -> Result<Self, BcdError> {
        let year = self.year.saturating_add(years);
        let day = self.day.min(days_in_month(year, self.month));
        BcdDate::new(year, self.month, day)
    }

    pub fn year(self) -> u16 {
        self.year
    }
    pub fn month(self) -> u8 {
        self.month
    }
    pub fn day(self) -> u8 {
        self.day
    }
}

impl fmt::Debug for BcdDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Display for BcdDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A time of day, stored as BCD `hhmmss`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BcdTime {
    hour: u8,
    minute: u8,
    second: u8,
}

impl BcdTime {
    /// A time from its parts.
    pub fn new(hour: u8, minute: u8, second: u8) -> Result<Self, BcdError> {
        if hour > 23 || minute > 59 || second > 59 {
            return Err(BcdError::InvalidTime(format!(
                "{hour:02}:{minute:02}:{second:02}"
            )));
        }
        Ok(BcdTime {
            hour,
            minute,
            second,
        })
    }

    /// Parses the 3 BCD bytes of a card field.
    pub fn from_bcd(bytes: [u8; 3]) -> Result<Self, BcdError> {
        let d: Option<Vec<u8>> = bytes.iter().map(|b| bcd_byte(*b)).collect();
        let d = d.ok_or_else(|| BcdError::NotBcd(hex::encode_upper(bytes)))?;
        BcdTime::new(d[0], d[1], d[2])
    }

    /// The 3 BCD bytes.
    pub fn to_bcd(self) -> [u8; 3] {
        [to_bcd(self.hour), to_bcd(self.minute), to_bcd(self.second)]
    }

    pub fn hour(self) -> u8 {
        self.hour
    }
    pub fn minute(self) -> u8 {
        self.minute
    }
    pub fn second(self) -> u8 {
        self.second
    }
}

impl fmt::Debug for BcdTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_round_trip_and_validation() {
        let d = BcdDate::parse("20261126").unwrap();
        assert_eq!(d.to_bcd(), [0x20, 0x26, 0x11, 0x26]);
        assert_eq!(BcdDate::from_bcd(d.to_bcd()).unwrap(), d);
        assert!(BcdDate::parse("20260230").is_err());
        assert!(BcdDate::parse("2026113").is_err());
        assert!(BcdDate::parse("2026-1-1").is_err());
        assert!(BcdDate::from_bcd([0x20, 0x2A, 0x01, 0x01]).is_err());
        assert_eq!(
            BcdDate::parse("20240229").unwrap().plus_years(10).unwrap(),
            BcdDate::parse("20340228").unwrap()
        );
        assert!(BcdDate::parse("20250101").unwrap() < BcdDate::parse("20251231").unwrap());
    }

    #[test]
    fn time_round_trip_and_validation() {
        let t = BcdTime::new(14, 30, 0).unwrap();
        assert_eq!(t.to_bcd(), [0x14, 0x30, 0x00]);
        assert_eq!(BcdTime::from_bcd([0x14, 0x30, 0x00]).unwrap(), t);
        assert!(BcdTime::from_bcd([0x24, 0x00, 0x00]).is_err());
        assert!(BcdTime::new(0, 60, 0).is_err());
    }
}
