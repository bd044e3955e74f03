//! The platform's SM2 signing keys (the deny-list key, later others): generated once, stored
//! wrapped under a key-encryption key like the vault's data keys, unwrapped at start into a
//! `Signer` that signs but never shows its secret.

use crate::secret::Secret;
use crate::{KeyError, KeyStore, WrappedDataKeys};
use crypto::{Key32, Sm2SigningKey};

pub struct Signer {
    key: Sm2SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(public {})", hex::encode(self.public_key()))
    }
}

fn aad(purpose: &str) -> Vec<u8> {
    format!("citycard-signer-v1:{purpose}").into_bytes()
}

impl Signer {
    /// A new SM2 key for `purpose`, and its wrapped form for the database.
    pub fn generate(
        store: &dyn KeyStore,
        kek_id: &str,
        purpose: &str,
    ) -> Result<(Signer, WrappedDataKeys), KeyError> {
        // A random 256-bit value is a valid scalar except with negligible probability; retry
        // rather than bias it.
        for _ in 0..8 {
            let bytes: [u8; 32] = crate::random_bytes()?;
            let secret = Secret::new(bytes.to_vec());
            if let Ok(key) = Sm2SigningKey::from_secret(&Key32::from_bytes(bytes)) {
                let wrapped = store.wrap(kek_id, secret.expose(), &aad(purpose))?;
                return Ok((
                    Signer { key },
                    WrappedDataKeys {
                        kek_id: kek_id.into(),
                        wrapped,
                    },
                ));
            }
        }
        Err(KeyError::Random)
    }

    pub fn open(
        store: &dyn KeyStore,
        w: &WrappedDataKeys,
        purpose: &str,
    ) -> Result<Signer, KeyError> {
        let secret = store.unwrap_secret(&w.kek_id, &w.wrapped, &aad(purpose))?;
        let bytes: [u8; 32] = secret
            .expose()
            .try_into()
            .map_err(|_| KeyError::Malformed("signing key length"))?;
        let key = Sm2SigningKey::from_secret(&Key32::from_bytes(bytes))
            .map_err(|_| KeyError::Malformed("signing key"))?;
        Ok(Signer { key })
    }

    /// SM2 with SM3 and the default identifier, raw `r || s`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message)
    }

    /// The SEC1 compressed public key terminals verify with.
    pub fn public_key(&self) -> [u8; 33] {
        self.key.public_key().to_compressed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileKeyStore, KeyPurpose};

    #[test]
    fn generate_open_sign_verify() {
        let dir = tempfile::tempdir().unwrap();
        let mut ks = FileKeyStore::create(&dir.path().join("k.json"), b"pw").unwrap();
        ks.generate("kek", KeyPurpose::KeyEncryption).unwrap();
        let (s, w) = Signer::generate(&ks, "kek", "denylist").unwrap();
        let again = Signer::open(&ks, &w, "denylist").unwrap();
        assert_eq!(s.public_key(), again.public_key());
        let sig = again.sign(b"list");
        let pk = crypto::Sm2PublicKey::from_sec1(&s.public_key()).unwrap();
        assert!(pk.verify(b"list", &sig).is_ok());
        assert!(pk.verify(b"lisT", &sig).is_err());
        // Bound to its purpose: the same bytes do not open as another key.
        assert!(Signer::open(&ks, &w, "other").is_err());
        assert!(!format!("{s:?}").contains(&hex::encode(&w.wrapped)));
    }
}
