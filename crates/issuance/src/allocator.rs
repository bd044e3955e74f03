//! Card number allocation: a monotonic 9-digit issue sequence, so a number is
//! never handed out twice, with the prefix and Luhn digit from `chip::CardNumber`.

use chip::CardNumber;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The largest 9-digit issue sequence.
pub const SEQUENCE_MAX: u32 = 999_999_999;

/// Why no card number could be allocated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AllocatorError {
    #[error("the 9-digit card sequence is exhausted (next would be {next})")]
    Exhausted { next: u64 },
    #[error("allocator cannot start at sequence {0}: it must be 1..={SEQUENCE_MAX}")]
    BadStart(u64),
}

/// The allocator's whole state is the next sequence to hand out. The platform
/// persists it (one row, advanced in the same transaction as the card insert);
/// because it only moves forward, a number burnt by a failed or withdrawn
/// application is never reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardNumberAllocator {
    next: u64,
}

impl CardNumberAllocator {
    /// Starts at sequence 1 (sequence 0 is left unused so that an all-zero
    /// sequence never names a real card).
    pub fn new() -> Self {
        CardNumberAllocator { next: 1 }
    }

    /// Resumes from persisted state.
    pub fn resume(next: u64) -> Result<Self, AllocatorError> {
        if next == 0 || next > u64::from(SEQUENCE_MAX) + 1 {
            return Err(AllocatorError::BadStart(next));
        }
        Ok(CardNumberAllocator { next })
    }

    /// The next sequence that will be handed out (the state to persist).
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Whether `number` was handed out by this allocator (or its history).
    pub fn has_allocated(&self, number: CardNumber) -> bool {
        u64::from(card_sequence(number)) < self.next && card_sequence(number) > 0
    }

    /// Hands out the next card number.
    pub fn allocate(&mut self) -> Result<CardNumber, AllocatorError> {
        let sequence = u32::try_from(self.next)
            .ok()
            .filter(|s| *s <= SEQUENCE_MAX)
            .ok_or(AllocatorError::Exhausted { next: self.next })?;
        let number = CardNumber::from_sequence(sequence)
            .map_err(|_| AllocatorError::Exhausted { next: self.next })?;
        self.next += 1;
        Ok(number)
    }
}

impl Default for CardNumberAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// The 9-digit issue sequence inside a card number (digits 7 to 15).
pub fn card_sequence(number: CardNumber) -> u32 {
    // BCD bytes: 41 01 00 s1s2 s3s4 s5s6 s7s8 s9c. A validated card number
    // holds only decimal digits, so every nibble is 0..=9.
    let bcd = number.to_bcd();
    let mut digits = 0u64;
    for byte in &bcd[3..8] {
        digits = digits * 10 + u64::from(byte >> 4);
        digits = digits * 10 + u64::from(byte & 0x0F);
    }
    // The last nibble pushed was the check digit: drop it. Nine digits fit u32.
    (digits / 10) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_in_order_with_luhn_digits() {
        let mut a = CardNumberAllocator::new();
        let first = a.allocate().unwrap();
        assert_eq!(first.to_string(), "4101000000000018");
        let second = a.allocate().unwrap();
        assert_eq!(card_sequence(second), 2);
        assert_eq!(CardNumber::parse(&second.to_string()).unwrap(), second);
        assert!(a.has_allocated(first) && a.has_allocated(second));
        assert!(!a.has_allocated(CardNumber::from_sequence(3).unwrap()));
        assert_eq!(a.next_sequence(), 3);
    }

    #[test]
    fn sequence_round_trips() {
        for s in [1, 9, 10, 123_456_789, SEQUENCE_MAX] {
            assert_eq!(card_sequence(CardNumber::from_sequence(s).unwrap()), s);
        }
    }

    #[test]
    fn exhaustion_is_an_error_not_a_wrap() {
        let mut a = CardNumberAllocator::resume(u64::from(SEQUENCE_MAX)).unwrap();
        assert_eq!(card_sequence(a.allocate().unwrap()), SEQUENCE_MAX);
        assert_eq!(
            a.allocate(),
            Err(AllocatorError::Exhausted {
                next: u64::from(SEQUENCE_MAX) + 1
            })
        );
        assert!(CardNumberAllocator::resume(0).is_err());
        assert!(CardNumberAllocator::resume(u64::from(SEQUENCE_MAX) + 2).is_err());
    }
}
