//! The phone side: the device key, its certificate and the sequence counter that make codes.

use core::fmt;

use crypto::{Key32, Sm2PublicKey, Sm2SigningKey};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use crate::{Certificate, Code};

/// Why the phone cannot make a code or take a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeviceError {
    #[error("not a valid SM2 secret key")]
    InvalidSecretKey,
    #[error("the certificate is for another device key")]
    KeyMismatch,
    #[error("the certificate is not valid at {0}: refresh it while online")]
    CertificateNotValid(u32),
}

/// A phone's e-code state: its SM2 key pair (the private key never leaves the phone), the
/// certificate the platform issued for it, and the sequence number of the next code.
///
/// `Debug` masks the private key. Serde gives the state the app keeps in its secure storage:
/// `{"secret_key": hex, "certificate": hex, "next_sequence": n}`; the private key is in it,
/// so the JSON is secret.
#[derive(Clone)]
pub struct Device {
    key: Sm2SigningKey,
    certificate: Certificate,
    next_sequence: u16,
}

impl Device {
    /// A device with the key `secret` (from the phone's random source) and its certificate;
    /// its first code has sequence 1.
    pub fn new(secret: &Key32, certificate: Certificate) -> Result<Device, DeviceError> {
        Device::with_sequence(secret, certificate, 1)
    }

    fn with_sequence(
        secret: &Key32,
        certificate: Certificate,
        next_sequence: u16,
    ) -> Result<Device, DeviceError> {
        let key = Sm2SigningKey::from_secret(secret).map_err(|_| DeviceError::InvalidSecretKey)?;
        if certificate.fields().device_public_key != key.public_key() {
            return Err(DeviceError::KeyMismatch);
        }
        Ok(Device {
            key,
            certificate,
            next_sequence,
        })
    }

    /// The public key to have certified.
    pub fn public_key(&self) -> Sm2PublicKey {
        self.key.public_key()
    }

    /// The current certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The sequence number the next code will carry.
    pub fn next_sequence(&self) -> u16 {
        self.next_sequence
    }

    /// Takes a refreshed certificate for the same key; the sequence keeps counting.
    pub fn renew(&mut self, certificate: Certificate) -> Result<(), DeviceError> {
        if certificate.fields().device_public_key != self.key.public_key() {
            return Err(DeviceError::KeyMismatch);
        }
        self.certificate = certificate;
        Ok(())
    }

    /// Makes the code for phone clock `now` and counts the sequence up. The counter wraps
    /// after 65535: a terminal's replay key also holds the code time, so a wrapped number
    /// cannot collide with a code that is still fresh.
    pub fn make_code(&mut self, now: u32) -> Result<Code, DeviceError> {
        if !self.certificate.is_valid_at(now) {
            return Err(DeviceError::CertificateNotValid(now));
        }
        let code = Code::sign(self.certificate.clone(), now, self.next_sequence, &self.key);
        self.next_sequence = self.next_sequence.wrapping_add(1);
        Ok(code)
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("key", &self.key)
            .field("certificate", &self.certificate)
            .field("next_sequence", &self.next_sequence)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceState {
    secret_key: String,
    certificate: String,
    next_sequence: u16,
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let secret = self.key.to_secret();
        let mut state = DeviceState {
            secret_key: hex::encode_upper(secret.expose()),
            certificate: hex::encode_upper(self.certificate.as_bytes()),
            next_sequence: self.next_sequence,
        };
        let result = state.serialize(serializer);
        state.secret_key.zeroize();
        result
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let state = DeviceState::deserialize(deserializer)?;
        let secret_hex = Zeroizing::new(state.secret_key);
        let secret = Key32::from_hex(&secret_hex)
            .map_err(|_| D::Error::custom("secret_key: not 32 bytes of hex"))?;
        let certificate_bytes = hex::decode(&state.certificate)
            .map_err(|_| D::Error::custom("certificate: not hex"))?;
        let certificate = Certificate::parse(&certificate_bytes)
            .map_err(|e| D::Error::custom(format!("certificate: {e}")))?;
        Device::with_sequence(&secret, certificate, state.next_sequence)
            .map_err(|e| D::Error::custom(format!("device: {e}")))
    }
}
