//! The vault seals personal data at rest and computes blind indexes for lookups.
//!
//! A data key (SM4-GCM) and a blind-index key (HMAC-SM3) are generated once, wrapped under a
//! key-encryption key of the key store, and kept wrapped in the database. At start the platform
//! unwraps them into a `Vault`; the database itself never holds a usable key.

use crate::secret::Secret;
use crate::sm4gcm;
use crate::{KeyError, KeyStore};
use hmac::{Hmac, KeyInit, Mac};
use sm3::Sm3;

const DEK_LEN: usize = 16;
const BLIND_KEY_LEN: usize = 32;
pub const DATA_KEYS_LEN: usize = DEK_LEN + BLIND_KEY_LEN;
const WRAP_AAD: &[u8] = b"citycard-vault-v1";

/// The data keys as stored in the database: sealed under key-encryption key `kek_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDataKeys {
    pub kek_id: String,
    pub wrapped: Vec<u8>,
}

/// A keyed hash of a value, for equality lookups without storing the value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlindIndex(pub [u8; 32]);

impl BlindIndex {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(BlindIndex(b.try_into().ok()?))
    }
}

impl std::fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlindIndex({}…)", &self.to_hex()[..8])
    }
}

pub struct Vault {
    dek: sm4gcm::Sm4Gcm,
    blind: Hmac<Sm3>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault([keys masked])")
    }
}

impl Vault {
    /// Generates fresh data keys and returns them with their wrapped form for the database.
    pub fn generate(
        store: &dyn KeyStore,
        kek_id: &str,
    ) -> Result<(Vault, WrappedDataKeys), KeyError> {
        let bytes: [u8; DATA_KEYS_LEN] = crate::random_bytes()?;
        let secret = Secret::new(bytes.to_vec());
        let wrapped = store.wrap(kek_id, secret.expose(), WRAP_AAD)?;
        Ok((
            Vault::from_secret(&secret)?,
            WrappedDataKeys {
                kek_id: kek_id.to_string(),
                wrapped,
            },
        ))
    }

    /// Unwraps data keys read from the database.
    pub fn open(store: &dyn KeyStore, w: &WrappedDataKeys) -> Result<Vault, KeyError> {
        let secret = store.unwrap_secret(&w.kek_id, &w.wrapped, WRAP_AAD)?;
        Vault::from_secret(&secret)
    }

    fn from_secret(secret: &Secret) -> Result<Vault, KeyError> {
        if secret.len() != DATA_KEYS_LEN {
            return Err(KeyError::Malformed("data keys length"));
        }
        let (dek, blind) = secret.expose().split_at(DEK_LEN);
        Ok(Vault {
            dek: sm4gcm::cipher(dek),
            blind: <Hmac<Sm3> as KeyInit>::new_from_slice(blind)
                .map_err(|_| KeyError::Malformed("blind key"))?,
        })
    }

    /// Seals `plaintext`; `context` (e.g. table, field and row key) is bound as associated data
    /// so a sealed cell copied into another row or field fails to open.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        sm4gcm::seal(&self.dek, plaintext, context)
    }

    pub fn open_bytes(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        sm4gcm::open(&self.dek, sealed, context)
    }

    pub fn open_string(&self, context: &[u8], sealed: &[u8]) -> Result<String, KeyError> {
        String::from_utf8(self.open_bytes(context, sealed)?)
            .map_err(|_| KeyError::Malformed("not UTF-8"))
    }

    /// HMAC-SM3 of `value` in a named domain (`"id_number"`, `"name"`), so equal values in
    /// different domains do not share an index.
    pub fn blind(&self, domain: &str, value: &str) -> BlindIndex {
        let mut m = self.blind.clone();
        m.update(domain.as_bytes());
        m.update(&[0]);
        m.update(value.as_bytes());
        BlindIndex(m.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileKeyStore, KeyPurpose};

    #[test]
    fn seal_open_blind_and_rewrap() {
        let dir = tempfile::tempdir().unwrap();
        let mut ks = FileKeyStore::create(&dir.path().join("k.json"), b"pw").unwrap();
        ks.generate("kek", KeyPurpose::KeyEncryption).unwrap();
        let (v, wrapped) = Vault::generate(&ks, "kek").unwrap();
        let sealed = v.seal(b"resident/name/1", "张三".as_bytes()).unwrap();
        assert!(!sealed.windows(6).any(|w| w == "张三".as_bytes()));
        assert_eq!(v.open_string(b"resident/name/1", &sealed).unwrap(), "张三");
        assert!(matches!(
            v.open_bytes(b"resident/name/2", &sealed),
            Err(KeyError::Unseal)
        ));
        let mut tampered = sealed.clone();
        tampered[14] ^= 1;
        assert!(v.open_bytes(b"resident/name/1", &tampered).is_err());

        let v2 = Vault::open(&ks, &wrapped).unwrap();
        assert_eq!(v2.open_string(b"resident/name/1", &sealed).unwrap(), "张三");
        assert_eq!(v.blind("name", "张三"), v2.blind("name", "张三"));
        assert_ne!(v.blind("name", "张三"), v.blind("phone", "张三"));
        assert!(!format!("{v:?}").contains(&hex::encode(&wrapped.wrapped)));

        let mut bad = wrapped.clone();
        bad.wrapped[20] ^= 1;
        assert!(Vault::open(&ks, &bad).is_err());
    }
}
