//! The code (194 bytes) the phone shows, and its text form `ZZC1:` + Base45 (RFC 9285).

use core::fmt;

use crypto::{SM2_SIGNATURE_LEN, Sm2PublicKey, Sm2SigningKey};

use crate::certificate::field;
use crate::{
    CERTIFICATE_LEN, CODE_FORMAT, CODE_LEN, CODE_SIGNED_LEN, Certificate, FormatError,
    TEXT_LEN_MAX, TEXT_PREFIX,
};

// Field offsets of §Code.
const AT_FORMAT: usize = 0;
const AT_CERTIFICATE: usize = 1;
const AT_TIME: usize = AT_CERTIFICATE + CERTIFICATE_LEN;
const AT_SEQUENCE: usize = 128;
const AT_DEVICE_SIGNATURE: usize = CODE_SIGNED_LEN;

const _: () = assert!(AT_TIME == 124 && AT_SEQUENCE + 2 == AT_DEVICE_SIGNATURE);
const _: () = assert!(AT_DEVICE_SIGNATURE + SM2_SIGNATURE_LEN == CODE_LEN);

/// A parsed code. Parsing checks the form only (verification step 1); the signatures and
/// everything else are the [`Verifier`](crate::Verifier)'s.
#[derive(Clone, PartialEq, Eq)]
pub struct Code {
    certificate: Certificate,
    time: u32,
    sequence: u16,
    bytes: [u8; CODE_LEN],
}

impl Code {
    /// Builds the code for `certificate` made at `time` with `sequence`, and signs bytes
    /// `0..130` with the device key.
    pub fn sign(
        certificate: Certificate,
        time: u32,
        sequence: u16,
        device_key: &Sm2SigningKey,
    ) -> Code {
        let mut bytes = [0u8; CODE_LEN];
        bytes[AT_FORMAT] = CODE_FORMAT;
        bytes[AT_CERTIFICATE..AT_TIME].copy_from_slice(certificate.as_bytes());
        bytes[AT_TIME..AT_SEQUENCE].copy_from_slice(&time.to_be_bytes());
        bytes[AT_SEQUENCE..AT_DEVICE_SIGNATURE].copy_from_slice(&sequence.to_be_bytes());
        let signature = device_key.sign(&bytes[..CODE_SIGNED_LEN]);
        bytes[AT_DEVICE_SIGNATURE..].copy_from_slice(&signature);
        Code {
            certificate,
            time,
            sequence,
            bytes,
        }
    }

    /// Parses exactly 194 bytes: format `C1` and a well-formed certificate. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Code, FormatError> {
        let bytes: [u8; CODE_LEN] = bytes.try_into().map_err(|_| FormatError::WrongLength {
            what: "code",
            expected: CODE_LEN,
            actual: bytes.len(),
        })?;
        if bytes[AT_FORMAT] != CODE_FORMAT {
            return Err(FormatError::UnknownFormat(bytes[AT_FORMAT]));
        }
        let certificate = Certificate::parse(&bytes[AT_CERTIFICATE..AT_TIME])?;
        Ok(Code {
            certificate,
            time: u32::from_be_bytes(field(&bytes, AT_TIME)),
            sequence: u16::from_be_bytes(field(&bytes, AT_SEQUENCE)),
            bytes,
        })
    }

    /// Parses the text form: [`TEXT_PREFIX`] and the Base45 of the 194 bytes. Text longer
    /// than [`TEXT_LEN_MAX`] is refused before decoding. Never panics.
    pub fn parse_text(text: &str) -> Result<Code, FormatError> {
        if text.len() > TEXT_LEN_MAX {
            return Err(FormatError::TextTooLong(text.len()));
        }
        let body = text
            .strip_prefix(TEXT_PREFIX)
            .ok_or(FormatError::WrongPrefix)?;
        let bytes = base45::decode(body).map_err(|_| FormatError::Base45)?;
        Code::parse(&bytes)
    }

    /// The text form for the QR symbol: `ZZC1:` + Base45.
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(TEXT_LEN_MAX);
        text.push_str(TEXT_PREFIX);
        text.push_str(&base45::encode(self.bytes));
        text
    }

    /// The certificate inside.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// When the phone made the code (unix seconds).
    pub fn time(&self) -> u32 {
        self.time
    }

    /// The device's sequence number for this code.
    pub fn sequence(&self) -> u16 {
        self.sequence
    }

    /// The 194 bytes.
    pub fn as_bytes(&self) -> &[u8; CODE_LEN] {
        &self.bytes
    }

    /// The bytes the device signature covers (`0..130`).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..CODE_SIGNED_LEN]
    }

    /// The device signature, raw `r || s`.
    pub fn device_signature(&self) -> &[u8] {
        &self.bytes[AT_DEVICE_SIGNATURE..]
    }

    /// Whether the device signature is valid under the certified device key.
    pub fn verify_device_signature(&self) -> bool {
        let key: &Sm2PublicKey = &self.certificate.fields().device_public_key;
        key.verify(self.signed_bytes(), self.device_signature())
            .is_ok()
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code")
            .field("certificate", &self.certificate)
            .field("time", &self.time)
            .field("sequence", &self.sequence)
            .field(
                "device_signature",
                &hex::encode_upper(self.device_signature()),
            )
            .finish()
    }
}
