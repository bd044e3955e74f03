//! The encrypted-file key store, the embedded default: one JSON file whose every key is sealed
//! (SM4-GCM) under a master key derived from a passphrase with Argon2id. The passphrase comes
//! from the operator (environment) and never touches the disk next to the file in production.

use crate::secret::Secret;
use crate::sm4gcm;
use crate::{KeyError, KeyStore};
use argon2::{Algorithm, Argon2, Params, Version};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a key is for. The hierarchy grows with the card work (purchase, load, TAC, PIN, e-code
/// root); callers name purposes, backends decide where the bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyPurpose {
    /// Key-encryption key: wraps data keys stored in the database.
    KeyEncryption,
}

impl KeyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::KeyEncryption => "key_encryption",
        }
    }
}

/// What may be shown about a key: never its bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub purpose: KeyPurpose,
    pub version: u32,
    /// Key check value: the first 3 bytes of the key's encryption of a zero block, in hex.
    pub kcv: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Kdf {
    pub(crate) salt: String,
    pub(crate) m_kib: u32,
    pub(crate) t: u32,
    pub(crate) p: u32,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKey {
    #[serde(flatten)]
    info: KeyInfo,
    /// nonce || ciphertext || tag, hex; the AAD is the key id, so keys cannot be swapped.
    sealed: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FileFormat {
    format: u32,
    kdf: Kdf,
    /// A sealed constant: opening it proves the passphrase before any key is touched.
    check: String,
    keys: Vec<StoredKey>,
}

const FORMAT: u32 = 1;
const CHECK_TEXT: &[u8] = b"citycard key store";
/// Argon2id cost: 19 MiB, 2 passes (OWASP's minimum recommendation for Argon2id).
pub(crate) const KDF_M_KIB: u32 = 19 * 1024;
pub(crate) const KDF_T: u32 = 2;

pub struct FileKeyStore {
    path: PathBuf,
    master: sm4gcm::Sm4Gcm,
    file: FileFormat,
}

impl std::fmt::Debug for FileKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKeyStore")
            .field("path", &self.path)
            .field("keys", &self.file.keys.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn derive_master(passphrase: &[u8], kdf: &Kdf) -> Result<sm4gcm::Sm4Gcm, KeyError> {
    let salt = hex::decode(&kdf.salt).map_err(|_| KeyError::Format("kdf salt".into()))?;
    let params = Params::new(kdf.m_kib, kdf.t, kdf.p, Some(16))
        .map_err(|e| KeyError::Format(format!("kdf parameters: {e}")))?;
    let mut out = [0u8; 16];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, &salt, &mut out)
        .map_err(|e| KeyError::Format(format!("kdf: {e}")))?;
    let secret = Secret::new(out.to_vec());
    out.fill(0);
    Ok(sm4gcm::cipher(secret.expose()))
}

/// KCV of a 16-byte SM4 key.
fn kcv_sm4(key: &[u8]) -> String {
    use sm4::cipher::{BlockCipherEncrypt, KeyInit};
    let c = sm4::Sm4::new_from_slice(key).expect("SM4 keys are 16 bytes");
    let mut block = sm4::cipher::Block::<sm4::Sm4>::default();
    c.encrypt_block(&mut block);
    hex::encode_upper(&block[..3])
}

/// Writes a key file atomically (temporary file, fsync, rename) with owner-only permissions,
/// so a crash leaves the old file or the new one, never half of either.
pub(crate) fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// A fresh passphrase-derived master key for a new store file: its KDF parameters (random
/// salt, the store's cost), the key, and `check_text` sealed under it, which proves the
/// passphrase when the file is opened.
pub(crate) fn new_master(
    passphrase: &[u8],
    check_text: &[u8],
) -> Result<(Kdf, sm4gcm::Sm4Gcm, String), KeyError> {
    let salt: [u8; 16] = crate::random_bytes()?;
    let kdf = Kdf {
        salt: hex::encode(salt),
        m_kib: KDF_M_KIB,
        t: KDF_T,
        p: 1,
    };
    let master = derive_master(passphrase, &kdf)?;
    let check = hex::encode(sm4gcm::seal(&master, check_text, b"check")?);
    Ok((kdf, master, check))
}

impl FileKeyStore {
    /// Creates a new, empty key store file. Refuses to overwrite one.
    pub fn create(path: &Path, passphrase: &[u8]) -> Result<Self, KeyError> {
        if path.exists() {
            return Err(KeyError::Exists(path.display().to_string()));
        }
        let (kdf, master, check) = new_master(passphrase, CHECK_TEXT)?;
        let store = FileKeyStore {
            path: path.to_path_buf(),
            master,
            file: FileFormat {
                format: FORMAT,
                kdf,
                check,
                keys: Vec::new(),
            },
        };
        store.save()?;
        Ok(store)
    }

    pub fn open(path: &Path, passphrase: &[u8]) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path)?;
        let file: FileFormat =
            serde_json::from_str(&text).map_err(|e| KeyError::Format(e.to_string()))?;
        if file.format != FORMAT {
            return Err(KeyError::Format(format!("unknown format {}", file.format)));
        }
        let master = derive_master(passphrase, &file.kdf)?;
        let check = hex::decode(&file.check).map_err(|_| KeyError::Format("check".into()))?;
        match sm4gcm::open(&master, &check, b"check") {
            Ok(t) if t == CHECK_TEXT => {}
            _ => return Err(KeyError::BadPassphrase),
        }
        Ok(FileKeyStore {
            path: path.to_path_buf(),
            master,
            file,
        })
    }

    pub fn open_or_create(path: &Path, passphrase: &[u8]) -> Result<Self, KeyError> {
        if path.exists() {
            Self::open(path, passphrase)
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            Self::create(path, passphrase)
        }
    }

    /// Generates a new random 128-bit key under `id`.
    pub fn generate(&mut self, id: &str, purpose: KeyPurpose) -> Result<KeyInfo, KeyError> {
        let key: [u8; 16] = crate::random_bytes()?;
        let key = Secret::new(key.to_vec());
        self.insert(id, purpose, &key)
    }

    /// Makes sure a key `id` exists, generating it the first time.
    pub fn ensure(&mut self, id: &str, purpose: KeyPurpose) -> Result<KeyInfo, KeyError> {
        if let Some(k) = self.file.keys.iter().find(|k| k.info.id == id) {
            return Ok(k.info.clone());
        }
        self.generate(id, purpose)
    }

    fn insert(&mut self, id: &str, purpose: KeyPurpose, key: &Secret) -> Result<KeyInfo, KeyError> {
        if self.file.keys.iter().any(|k| k.info.id == id) {
            return Err(KeyError::Exists(id.to_string()));
        }
        let info = KeyInfo {
            id: id.to_string(),
            purpose,
            version: 1,
            kcv: kcv_sm4(key.expose()),
        };
        let sealed = hex::encode(sm4gcm::seal(&self.master, key.expose(), id.as_bytes())?);
        self.file.keys.push(StoredKey {
            info: info.clone(),
            sealed,
        });
        self.save()?;
        Ok(info)
    }

    fn key(&self, id: &str) -> Result<Secret, KeyError> {
        let k = self
            .file
            .keys
            .iter()
            .find(|k| k.info.id == id)
            .ok_or_else(|| KeyError::UnknownKey(id.to_string()))?;
        let sealed = hex::decode(&k.sealed).map_err(|_| KeyError::Format("sealed key".into()))?;
        Ok(Secret::new(sm4gcm::open(
            &self.master,
            &sealed,
            id.as_bytes(),
        )?))
    }

    fn save(&self) -> Result<(), KeyError> {
        let text = serde_json::to_string_pretty(&self.file)
            .map_err(|e| KeyError::Format(e.to_string()))?;
        Ok(write_private_atomic(&self.path, text.as_bytes())?)
    }
}

impl KeyStore for FileKeyStore {
    fn backend(&self) -> &'static str {
        "file"
    }

    fn list(&self) -> Vec<KeyInfo> {
        self.file.keys.iter().map(|k| k.info.clone()).collect()
    }

    fn wrap(&self, key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = self.key(key_id)?;
        sm4gcm::seal(&sm4gcm::cipher(key.expose()), plaintext, aad)
    }

    fn unwrap_secret(&self, key_id: &str, wrapped: &[u8], aad: &[u8]) -> Result<Secret, KeyError> {
        let key = self.key(key_id)?;
        Ok(Secret::new(sm4gcm::open(
            &sm4gcm::cipher(key.expose()),
            wrapped,
            aad,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_reopen_wrap_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut ks = FileKeyStore::create(&path, b"correct horse").unwrap();
        let info = ks.generate("kek", KeyPurpose::KeyEncryption).unwrap();
        assert_eq!(info.kcv.len(), 6);
        let wrapped = ks.wrap("kek", b"data key", b"ctx").unwrap();
        drop(ks);

        let ks = FileKeyStore::open(&path, b"correct horse").unwrap();
        assert_eq!(ks.list(), vec![info]);
        let back = ks.unwrap_secret("kek", &wrapped, b"ctx").unwrap();
        assert_eq!(back.expose(), b"data key");
        assert!(matches!(
            ks.unwrap_secret("kek", &wrapped, b"other"),
            Err(KeyError::Unseal)
        ));
        assert!(matches!(
            ks.wrap("nope", b"x", b""),
            Err(KeyError::UnknownKey(_))
        ));
        assert!(matches!(
            FileKeyStore::open(&path, b"wrong"),
            Err(KeyError::BadPassphrase)
        ));
        assert!(matches!(
            FileKeyStore::create(&path, b"x"),
            Err(KeyError::Exists(_))
        ));
        // The file holds no key in clear: the key's check value is there, its bytes are not.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("data key"));
        assert!(format!("{ks:?}").contains("keys: 1"));
    }

    #[test]
    fn kcv_matches_gbt_32907_vector() {
        // SM4 of the zero block under 0123456789ABCDEFFEDCBA9876543210, first three bytes;
        // cross-checked with `openssl enc -sm4-ecb -nopad`.
        let key = hex::decode("0123456789ABCDEFFEDCBA9876543210").unwrap();
        assert_eq!(kcv_sm4(&key), "2677F4");
    }
}
