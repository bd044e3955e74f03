//! The electronic citizen card code (e-code, 电子市民卡码), format 1, per `specs/ecode.md`.
//!
//! The phone shows a [`Code`]: a platform-issued [`Certificate`] for the phone's own SM2 key,
//! the time the code was made, a sequence number and the phone's signature. A terminal checks
//! it offline with a [`Verifier`] that holds the provisioned root public keys ([`RootKeys`]),
//! a deny-list, a replay cache and per-certificate offline spend accounting. The platform side
//! signs certificates with a [`RootKeyRing`] (rotation, withdrawal, PEM export); the phone side
//! is a [`Device`].
//!
//! Everything here is a pure function of its inputs: no I/O, no clock (the time is always
//! passed in, as unix seconds), no randomness of its own (callers supply secret scalars), no
//! async. Parsing never panics, whatever the input.

mod certificate;
mod code;
mod device;
mod error;
mod ledger;
mod pem;
mod phone;
#[cfg(feature = "qr")]
pub mod qr;
mod replay;
mod request;
mod roots;
#[cfg(feature = "scan")]
pub mod scan;
mod verify;

pub use certificate::{Certificate, CertificateFields, RootKeyId, Uses};
pub use chip::{CardNumber, CardNumberError};
pub use code::Code;
pub use device::{Device, DeviceError};
pub use error::FormatError;
pub use ledger::SPEND_LEDGER_ENTRIES_MAX;
pub use pem::{PemError, SPKI_DER_LEN, spki_der_from_public_key, spki_der_to_public_key};
pub use phone::{Phone, PhoneError};
pub use replay::REPLAY_ENTRIES_MAX;
pub use request::{
    CERTIFICATE_REQUEST_CONTEXT, CertificateRequest, DEVICE_ID_LEN_MAX, DeviceId, DeviceIdError,
};
pub use roots::{ROOT_KEYS_MAX, RingError, RootKeyRing, RootKeys, TrustError};
pub use verify::{
    Accepted, ConfigError, FRESHNESS_WINDOW_S_DEFAULT, FRESHNESS_WINDOW_S_MAX, Purpose, Refusal,
    Staleness, Verifier, VerifierConfig,
};

/// Certificate length in bytes (§Certificate).
pub const CERTIFICATE_LEN: usize = 123;
/// The certificate bytes the root signature covers: `0..59`.
pub const CERTIFICATE_SIGNED_LEN: usize = 59;
/// Code length in bytes (§Code).
pub const CODE_LEN: usize = 194;
/// The code bytes the device signature covers: `0..130`.
pub const CODE_SIGNED_LEN: usize = 130;
/// The code format byte of format 1.
pub const CODE_FORMAT: u8 = 0xC1;
/// The certificate version byte of format 1.
pub const CERTIFICATE_VERSION: u8 = 0x01;
/// What the text form starts with, before the Base45 of the code bytes.
pub const TEXT_PREFIX: &str = "ZZC1:";
/// Length of the text form: the prefix and Base45 of 194 bytes (3 characters per 2 bytes).
/// Text is refused above this bound before any decoding.
pub const TEXT_LEN_MAX: usize = TEXT_PREFIX.len() + CODE_LEN / 2 * 3 + CODE_LEN % 2 * 2;
