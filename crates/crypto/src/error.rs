//! The crate's error type.

use thiserror::Error;

/// Why a cryptographic operation refused its input.
///
/// None of these carries key material: a message names the field and the
/// lengths, never the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// A byte string had the wrong length for what it was meant to be.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    InvalidLength {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// Data for ECB mode was not a whole number of blocks.
    #[error("data of {actual} bytes is not a multiple of the {block}-byte block")]
    NotBlockAligned { block: usize, actual: usize },
    /// A hex string did not decode.
    #[error("{what}: not valid hex")]
    InvalidHex { what: &'static str },
    /// An algorithm id that the profile does not define (only `00` and `04` are).
    #[error("unknown algorithm id {0:#04x}")]
    UnknownAlgorithm(u8),
    /// An SM2 secret scalar was zero or not below the curve order.
    #[error("SM2 secret key out of range")]
    InvalidSecretKey,
    /// Bytes that do not encode a point on the SM2 curve.
    #[error("invalid SM2 public key")]
    InvalidPublicKey,
    /// A signature that is malformed (wrong length, r or s zero or out of range).
    #[error("malformed SM2 signature")]
    MalformedSignature,
    /// A well-formed signature that does not verify for this key and message.
    #[error("SM2 signature does not verify")]
    SignatureMismatch,
}
