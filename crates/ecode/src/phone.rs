//! The phone app's whole e-code state, from before enrolment to making codes: its device id,
//! its SM2 key pair, the certificate once the platform issued one, and the sequence counter.
//! A phone app wraps this (it keeps the serialised state in its secure storage); the
//! `citycard ecode` commands keep it in a device file.

use core::fmt;

use chip::CardNumber;
use crypto::{Key32, Sm2PublicKey, Sm2SigningKey};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use crate::{Certificate, CertificateRequest, Code, DeviceId};

/// Why the phone cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PhoneError {
    #[error("not a valid SM2 secret key")]
    InvalidSecretKey,
    #[error("the certificate is for another device key")]
    KeyMismatch,
    #[error("no certificate yet: request one while online")]
    NoCertificate,
    #[error("the certificate is not valid at {0}: refresh it while online")]
    CertificateNotValid(u32),
}

/// A phone's e-code state. `Debug` masks the private key; the serialised form
/// `{"device_id", "secret_key", "certificate", "next_sequence"}` holds the private key, so it is
/// secret (the device file is written readable by its owner only).
#[derive(Clone)]
pub struct Phone {
    device_id: DeviceId,
    key: Sm2SigningKey,
    certificate: Option<Certificate>,
    next_sequence: u16,
}

impl Phone {
    /// A phone with a new key from `secret` (32 bytes from the phone's random source); no
    /// certificate yet, the first code will have sequence 1.
    pub fn new(device_id: DeviceId, secret: &Key32) -> Result<Phone, PhoneError> {
        let key = Sm2SigningKey::from_secret(secret).map_err(|_| PhoneError::InvalidSecretKey)?;
        Ok(Phone {
            device_id,
            key,
            certificate: None,
            next_sequence: 1,
        })
    }

    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    /// The public key the platform enrols and certifies.
    pub fn public_key(&self) -> Sm2PublicKey {
        self.key.public_key()
    }

    /// The current certificate, if any.
    pub fn certificate(&self) -> Option<&Certificate> {
        self.certificate.as_ref()
    }

    /// The sequence number the next code will carry.
    pub fn next_sequence(&self) -> u16 {
        self.next_sequence
    }

    /// A signed request for a certificate for `card_number`, at phone clock `now`.
    pub fn certificate_request(&self, card_number: CardNumber, now: u32) -> CertificateRequest {
        CertificateRequest::sign(card_number, self.device_id.clone(), now, &self.key)
    }

    /// Installs a certificate the platform issued (first or refreshed); it must certify this
    /// phone's key. The sequence keeps counting.
    pub fn install_certificate(&mut self, certificate: Certificate) -> Result<(), PhoneError> {
        if certificate.fields().device_public_key != self.key.public_key() {
            return Err(PhoneError::KeyMismatch);
        }
        self.certificate = Some(certificate);
        Ok(())
    }

    /// Makes the code for phone clock `now` and counts the sequence up (wrapping after 65535,
    /// as [`Device::make_code`](crate::Device::make_code) explains).
    pub fn make_code(&mut self, now: u32) -> Result<Code, PhoneError> {
        let certificate = self.certificate.as_ref().ok_or(PhoneError::NoCertificate)?;
        if !certificate.is_valid_at(now) {
            return Err(PhoneError::CertificateNotValid(now));
        }
        let code = Code::sign(certificate.clone(), now, self.next_sequence, &self.key);
        self.next_sequence = self.next_sequence.wrapping_add(1);
        Ok(code)
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Phone")
            .field("device_id", &self.device_id)
            .field("key", &self.key)
            .field("certificate", &self.certificate)
            .field("next_sequence", &self.next_sequence)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneState {
    device_id: String,
    secret_key: String,
    certificate: Option<String>,
    next_sequence: u16,
}

impl Serialize for Phone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let secret = self.key.to_secret();
        let mut state = PhoneState {
            device_id: self.device_id.to_string(),
            secret_key: hex::encode_upper(secret.expose()),
            certificate: self
                .certificate
                .as_ref()
                .map(|c| hex::encode_upper(c.as_bytes())),
            next_sequence: self.next_sequence,
        };
        let result = state.serialize(serializer);
        state.secret_key.zeroize();
        result
    }
}

impl<'de> Deserialize<'de> for Phone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let state = PhoneState::deserialize(deserializer)?;
        let secret_hex = Zeroizing::new(state.secret_key);
        let secret = Key32::from_hex(&secret_hex)
            .map_err(|_| D::Error::custom("secret_key: not 32 bytes of hex"))?;
        let device_id = DeviceId::parse(&state.device_id)
            .map_err(|e| D::Error::custom(format!("device_id: {e}")))?;
        let mut phone =
            Phone::new(device_id, &secret).map_err(|e| D::Error::custom(format!("{e}")))?;
        phone.next_sequence = state.next_sequence;
        if let Some(hex_text) = state.certificate {
            let bytes =
                hex::decode(&hex_text).map_err(|_| D::Error::custom("certificate: not hex"))?;
            let certificate = Certificate::parse(&bytes)
                .map_err(|e| D::Error::custom(format!("certificate: {e}")))?;
            phone
                .install_certificate(certificate)
                .map_err(|e| D::Error::custom(format!("certificate: {e}")))?;
        }
        Ok(phone)
    }
}
