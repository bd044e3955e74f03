//! Why bytes or text are not a format-1 certificate or code (verification step 1).

use chip::CardNumberError;
use thiserror::Error;

use crate::{TEXT_LEN_MAX, TEXT_PREFIX};

/// Why input is not a well-formed format-1 code or certificate. All of these are
/// verification step 1 ("prefix and length are right; format and version are known").
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    /// Text longer than [`TEXT_LEN_MAX`]; refused before it is decoded.
    #[error("text of {0} bytes is longer than the {TEXT_LEN_MAX}-byte maximum")]
    TextTooLong(usize),
    /// Text that does not start with [`TEXT_PREFIX`].
    #[error("text does not start with {TEXT_PREFIX}")]
    WrongPrefix,
    /// Text after the prefix that is not Base45 (RFC 9285).
    #[error("text after the prefix is not Base45")]
    Base45,
    /// Bytes of the wrong length.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    WrongLength {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// A code format byte other than `C1`.
    #[error("unknown code format {0:#04x}")]
    UnknownFormat(u8),
    /// A certificate version byte other than `01`.
    #[error("unknown certificate version {0:#04x}")]
    UnknownVersion(u8),
    /// The card number is not 16 BCD digits of the profile with a right Luhn digit.
    #[error("card number: {0}")]
    CardNumber(#[from] CardNumberError),
    /// The device public key is not a point on the SM2 curve.
    #[error("device public key is not an SM2 point")]
    DevicePublicKey,
    /// Use bits beyond pay (0), identity (1) and transit (2).
    #[error("uses {0:#04x} set bits that format 1 does not define")]
    UnknownUses(u8),
}
