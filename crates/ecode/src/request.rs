//! The certificate request: what a phone signs to prove that it holds the private key of the
//! public key it asks the platform to certify (proof of possession), bound to its card, its
//! device id and the time, so that a captured request is of no use for long nor elsewhere.

use core::fmt;

use chip::CardNumber;
use crypto::{SM2_SIGNATURE_LEN, Sm2PublicKey, Sm2SigningKey};
use thiserror::Error;

/// What every request message starts with, so that no other signed message of the phone can
/// pass as a certificate request.
pub const CERTIFICATE_REQUEST_CONTEXT: &[u8] = b"citycard e-code certificate request v1";
/// The longest device id: a phone app's installation id, a UUID fits.
pub const DEVICE_ID_LEN_MAX: usize = 64;

/// Why a device id is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeviceIdError {
    #[error("a device id is 1 to {DEVICE_ID_LEN_MAX} characters, got {0}")]
    Length(usize),
    #[error("a device id uses only A-Z, a-z, 0-9, '.', '_' and '-'")]
    Characters,
}

/// A phone's installation id, as the app reports it (not a secret; not personal data).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

impl DeviceId {
    /// 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    pub fn parse(text: &str) -> Result<DeviceId, DeviceIdError> {
        if text.is_empty() || text.len() > DEVICE_ID_LEN_MAX {
            return Err(DeviceIdError::Length(text.len()));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(DeviceIdError::Characters);
        }
        Ok(DeviceId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

/// A signed certificate request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    pub card_number: CardNumber,
    pub device_id: DeviceId,
    pub device_public_key: Sm2PublicKey,
    /// The phone clock when it made the request (unix seconds); the platform accepts it only
    /// within a few minutes of its own clock.
    pub time: u32,
    /// SM2 with SM3 over [`CertificateRequest::message`], raw `r || s`, by the device key.
    pub signature: [u8; SM2_SIGNATURE_LEN],
}

impl CertificateRequest {
    /// The signed bytes: the context, the card number (8 bytes BCD), the device id (its length
    /// in one byte, then its characters), the compressed device key (33 bytes) and the time
    /// (4 bytes, big-endian).
    pub fn message(
        card_number: CardNumber,
        device_id: &DeviceId,
        device_public_key: &Sm2PublicKey,
        time: u32,
    ) -> Vec<u8> {
        let id = device_id.as_str().as_bytes();
        let mut m = Vec::with_capacity(CERTIFICATE_REQUEST_CONTEXT.len() + 8 + 1 + id.len() + 37);
        m.extend_from_slice(CERTIFICATE_REQUEST_CONTEXT);
        m.extend_from_slice(&card_number.to_bcd());
        // At most DEVICE_ID_LEN_MAX (64) bytes, so the length fits one byte.
        m.push(id.len() as u8);
        m.extend_from_slice(id);
        m.extend_from_slice(&device_public_key.to_compressed());
        m.extend_from_slice(&time.to_be_bytes());
        m
    }

    /// The phone signs a request for its own key.
    pub fn sign(
        card_number: CardNumber,
        device_id: DeviceId,
        time: u32,
        device_key: &Sm2SigningKey,
    ) -> CertificateRequest {
        let device_public_key = device_key.public_key();
        let signature = device_key.sign(&Self::message(
            card_number,
            &device_id,
            &device_public_key,
            time,
        ));
        CertificateRequest {
            card_number,
            device_id,
            device_public_key,
            time,
            signature,
        }
    }

    /// Whether the signature is the device key's over this request.
    pub fn verify_signature(&self) -> bool {
        let message = Self::message(
            self.card_number,
            &self.device_id,
            &self.device_public_key,
            self.time,
        );
        self.device_public_key
            .verify(&message, &self.signature)
            .is_ok()
    }
}
