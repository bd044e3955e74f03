//! The 16-digit citizen card number: `4101` city, `00` citizen card, 9-digit sequence, Luhn digit.

use core::fmt;
use core::str::FromStr;

use crypto::DivData;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// City code (GB/T 2260 410100) and the citizen-card kind, the fixed first 6 digits.
pub const CARD_NUMBER_PREFIX: &str = "410100";
/// Digits in a card number.
pub const CARD_NUMBER_LEN: usize = 16;

/// Why text is not a card number.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CardNumberError {
    #[error("card number must have {CARD_NUMBER_LEN} digits, got {0} characters")]
    WrongLength(usize),
    #[error("card number has a non-digit at position {0}")]
    NotDigit(usize),
    #[error("card number must start with {CARD_NUMBER_PREFIX} (city 4101, citizen card 00)")]
    WrongPrefix,
    #[error("card number check digit is {found}, Luhn over the first 15 digits gives {expected}")]
    CheckDigit { expected: u8, found: u8 },
    #[error("card sequence {0} does not fit in 9 digits")]
    SequenceTooLarge(u32),
}

/// A validated card number. Its 8 BCD bytes are the diversification data D.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CardNumber([u8; CARD_NUMBER_LEN]);

/// Luhn check digit for a payload of decimal digits (values 0..=9).
fn luhn_digit(payload: &[u8]) -> u8 {
    // From the rightmost payload digit, double every other one: the check
    // digit will sit to its right, so the rightmost payload digit is doubled.
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

impl CardNumber {
    /// Parses and validates 16 digits: prefix `410100`, Luhn digit over the
    /// first 15.
    pub fn parse(text: &str) -> Result<Self, CardNumberError> {
        let bytes = text.as_bytes();
        if bytes.len() != CARD_NUMBER_LEN {
            return Err(CardNumberError::WrongLength(text.chars().count()));
        }
        let mut digits = [0u8; CARD_NUMBER_LEN];
        for (i, (d, c)) in digits.iter_mut().zip(bytes).enumerate() {
            if !c.is_ascii_digit() {
                return Err(CardNumberError::NotDigit(i));
            }
            *d = c - b'0';
        }
        if !text.starts_with(CARD_NUMBER_PREFIX) {
            return Err(CardNumberError::WrongPrefix);
        }
        let expected = luhn_digit(&digits[..15]);
        if digits[15] != expected {
            return Err(CardNumberError::CheckDigit {
                expected,
                found: digits[15],
            });
        }
        Ok(CardNumber(digits))
    }

    /// The card number for a 9-digit issue sequence, with its check digit.
    pub fn from_sequence(sequence: u32) -> Result<Self, CardNumberError> {
        if sequence > 999_999_999 {
            return Err(CardNumberError::SequenceTooLarge(sequence));
        }
        let payload = format!("{CARD_NUMBER_PREFIX}{sequence:09}");
        let digits: Vec<u8> = payload.bytes().map(|c| c - b'0').collect();
        CardNumber::parse(&format!("{payload}{}", luhn_digit(&digits)))
    }

    /// The 8 BCD bytes (also the last 8 bytes of the EF15 application serial).
    pub fn to_bcd(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        for (i, o) in out.iter_mut().enumerate() {
            *o = (self.0[2 * i] << 4) | self.0[2 * i + 1];
        }
        out
    }

    /// Reads a card number back from its 8 BCD bytes, with full validation.
    pub fn from_bcd(bytes: [u8; 8]) -> Result<Self, CardNumberError> {
        CardNumber::parse(&hex::encode_upper(bytes))
    }

    /// Diversification data D.
    pub fn div_data(self) -> DivData {
        DivData(self.to_bcd())
    }
}

impl fmt::Display for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.0 {
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber({self})")
    }
}

impl FromStr for CardNumber {
    type Err = CardNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CardNumber::parse(s)
    }
}

impl Serialize for CardNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CardNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        CardNumber::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_card_number_is_valid() {
        let n = CardNumber::parse("4101000000000018").unwrap();
        assert_eq!(n.to_bcd(), [0x41, 0x01, 0, 0, 0, 0, 0, 0x18]);
        assert_eq!(CardNumber::from_sequence(1).unwrap(), n);
        assert_eq!(CardNumber::from_bcd(n.to_bcd()).unwrap(), n);
        assert_eq!(n.to_string(), "4101000000000018");
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            CardNumber::parse("410100000000001"),
            Err(CardNumberError::WrongLength(15))
        );
        assert_eq!(
            CardNumber::parse("41010000000000x8"),
            Err(CardNumberError::NotDigit(14))
        );
        assert_eq!(
            CardNumber::parse("4102000000000018"),
            Err(CardNumberError::WrongPrefix)
        );
        assert_eq!(
            CardNumber::parse("4101000000000017"),
            Err(CardNumberError::CheckDigit {
                expected: 8,
                found: 7
            })
        );
        assert_eq!(
            CardNumber::parse("４101000000000018").unwrap_err(),
            CardNumberError::WrongLength(16)
        );
        assert!(CardNumber::from_sequence(1_000_000_000).is_err());
    }

    #[test]
    fn every_single_digit_error_is_caught() {
        let good = "4101001234567890";
        let payload: Vec<u8> = good.bytes().take(15).map(|c| c - b'0').collect();
        let valid = format!("{}{}", &good[..15], luhn_digit(&payload));
        assert!(CardNumber::parse(&valid).is_ok());
        for pos in 6..16 {
            for d in 0..10u8 {
                let mut s = valid.clone().into_bytes();
                if s[pos] == b'0' + d {
                    continue;
                }
                s[pos] = b'0' + d;
                let s = String::from_utf8(s).unwrap();
                assert!(
                    CardNumber::parse(&s).is_err(),
                    "{s} should fail the Luhn check"
                );
            }
        }
    }
}
