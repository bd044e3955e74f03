//! Status words (SW1 SW2) the card and PSAM answer with.

use core::fmt;

use serde::{Deserialize, Serialize};

/// A two-byte ISO 7816-4 status word.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sw(pub u16);

impl Sw {
    /// `9000` done.
    pub const OK: Sw = Sw(0x9000);
    /// `6700` wrong length (Lc, Le, or an APDU that does not parse).
    pub const WRONG_LENGTH: Sw = Sw(0x6700);
    /// `6981` command incompatible with file structure (ISO 7816-4; e.g. READ
    /// RECORD on a binary file).
    pub const INCOMPATIBLE_FILE: Sw = Sw(0x6981);
    /// `6982` security status not satisfied (PIN not verified, file never
    /// readable/updatable).
    pub const SECURITY_NOT_SATISFIED: Sw = Sw(0x6982);
    /// `6983` PIN blocked.
    pub const PIN_BLOCKED: Sw = Sw(0x6983);
    /// `6984` reference data not usable (ISO 7816-4): a line-protected command without a
    /// fresh GET CHALLENGE (none issued, or already used).
    pub const CHALLENGE_NOT_USABLE: Sw = Sw(0x6984);
    /// `6988` incorrect secure messaging data objects (ISO 7816-4): a line-protection MAC
    /// that does not verify.
    pub const SM_INCORRECT: Sw = Sw(0x6988);
    /// `6985` conditions of use not satisfied (order, cap, counter exhausted,
    /// no current file, application not selected).
    pub const CONDITIONS_NOT_SATISFIED: Sw = Sw(0x6985);
    /// `6A80` incorrect data field (PSAM: unknown algorithm or transaction type).
    pub const WRONG_DATA: Sw = Sw(0x6A80);
    /// `6A82` file or application not found.
    pub const FILE_NOT_FOUND: Sw = Sw(0x6A82);
    /// `6A83` record not found (ISO 7816-4).
    pub const RECORD_NOT_FOUND: Sw = Sw(0x6A83);
    /// `6A86` wrong P1/P2.
    pub const WRONG_P1P2: Sw = Sw(0x6A86);
    /// `6B00` offset outside the file (ISO 7816-4).
    pub const WRONG_OFFSET: Sw = Sw(0x6B00);
    /// `6D00` instruction not supported.
    pub const INS_NOT_SUPPORTED: Sw = Sw(0x6D00);
    /// `6E00` class not supported.
    pub const CLA_NOT_SUPPORTED: Sw = Sw(0x6E00);
    /// `9302` MAC invalid.
    pub const MAC_INVALID: Sw = Sw(0x9302);
    /// `9303` application locked permanently (3 consecutive invalid MACs).
    pub const APPLICATION_LOCKED: Sw = Sw(0x9303);
    /// `9401` balance insufficient.
    pub const BALANCE_INSUFFICIENT: Sw = Sw(0x9401);
    /// `9403` key index not supported.
    pub const KEY_INDEX_UNSUPPORTED: Sw = Sw(0x9403);

    /// `63Cx`: wrong PIN, `x` tries left.
    pub const fn pin_tries_left(tries: u8) -> Sw {
        Sw(0x63C0 | (tries & 0x0F) as u16)
    }

    /// SW1.
    pub const fn sw1(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// SW2.
    pub const fn sw2(self) -> u8 {
        self.0 as u8
    }

    /// The two bytes as sent.
    pub const fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    /// Whether this is `9000`.
    pub const fn is_ok(self) -> bool {
        self.0 == 0x9000
    }
}

impl fmt::Debug for Sw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sw({:04X})", self.0)
    }
}

impl fmt::Display for Sw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}", self.0)
    }
}
