//! Keys: the key store interface with its encrypted-file backend, and the vault that seals
//! personal data at rest.
//!
//! Invariant: key bytes never leave this crate. Callers name keys by id and get back sealed
//! bytes, blind indexes or check values; nothing here returns or prints a key.

mod file_store;
pub mod master;
mod secret;
mod signer;
mod sm4gcm;
mod vault;

pub use file_store::{FileKeyStore, KeyInfo, KeyPurpose};
pub use secret::Secret;
pub use signer::Signer;
pub use vault::{BlindIndex, DATA_KEYS_LEN, Vault, WrappedDataKeys};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key {0:?} is not in the key store")]
    UnknownKey(String),
    #[error("key {0:?} already exists")]
    Exists(String),
    #[error("the key store could not be opened: wrong passphrase or altered file")]
    BadPassphrase,
    #[error("sealed data failed authentication (altered, or sealed under another key)")]
    Unseal,
    #[error("sealed data is malformed: {0}")]
    Malformed(&'static str),
    #[error("key store file: {0}")]
    Io(#[from] std::io::Error),
    #[error("key store file is not valid: {0}")]
    Format(String),
    #[error("the system random source failed")]
    Random,
}

/// One interface to every key store backend (file today; PKCS#11 and national-algorithm HSMs
/// plug in behind it). Callers hold key ids, never key bytes.
pub trait KeyStore: Send + Sync {
    /// A short name of the backend, for logs and `keys list`.
    fn backend(&self) -> &'static str;
    /// Every key's id, purpose, version and check value.
    fn list(&self) -> Vec<KeyInfo>;
    /// Encrypts `plaintext` under key `key_id` (a key-encryption key), binding `aad`.
    fn wrap(&self, key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// Decrypts what `wrap` produced. Crate-private in effect: the result only feeds other
    /// key objects of this crate (see [`Vault::open`]).
    #[doc(hidden)]
    fn unwrap_secret(&self, key_id: &str, wrapped: &[u8], aad: &[u8]) -> Result<Secret, KeyError>;
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| KeyError::Random)?;
    Ok(b)
}
