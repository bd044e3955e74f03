//! The encrypted-file master-key store: the same sealing as [`crate::FileKeyStore`] (every key
//! SM4-GCM-sealed under an Argon2id passphrase key, the key reference as AAD, atomic
//! owner-only writes), holding 16-byte master keys usable with both profiles.
//!
//! For development, tests and demos. Production runs the `hsm` backend; a file store that
//! holds the test key set says so through [`MasterKeyStore::test_key_set_present`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crypto::{Algorithm, DivData, Key16, MAC_LEN, MasterKeys};

use super::{
    KeyComponent, KeyOrigin, KeyRef, MacInput, MasterKeyError, MasterKeyInfo, MasterKeyStore,
    MasterPurpose, combine_components, expect_card_master, expect_transport, input, wrap_card_key,
};
use crate::file_store::{Kdf, derive_master, new_master, write_private_atomic};
use crate::{KeyError, sm4gcm};

const FORMAT: u32 = 1;
const KIND: &str = "citycard master keys";
const CHECK_TEXT: &[u8] = b"citycard master key store";

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKey {
    key: KeyRef,
    kcv_tdes: String,
    kcv_sm4: String,
    origin: KeyOrigin,
    /// nonce || ciphertext || tag, hex; the AAD is the key label, so keys cannot be swapped.
    sealed: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FileFormat {
    format: u32,
    kind: String,
    kdf: Kdf,
    check: String,
    keys: Vec<StoredKey>,
}

struct Inner {
    path: PathBuf,
    master: sm4gcm::Sm4Gcm,
    file: FileFormat,
}

/// Master keys in one sealed JSON file. Methods take `&self`; a mutex orders writers.
pub struct FileMasterKeyStore {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for FileMasterKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("FileMasterKeyStore")
            .field("path", &inner.path)
            .field("keys", &inner.file.keys.len())
            .finish_non_exhaustive()
    }
}

fn kcv_hex(kcv: [u8; 3]) -> String {
    hex::encode_upper(kcv)
}

fn parse_kcv(text: &str) -> Option<[u8; 3]> {
    hex::decode(text).ok()?.try_into().ok()
}

impl FileMasterKeyStore {
    /// Creates a new, empty store file. Refuses to overwrite one.
    pub fn create(path: &Path, passphrase: &[u8]) -> Result<Self, MasterKeyError> {
        if path.exists() {
            return Err(KeyError::Exists(path.display().to_string()).into());
        }
        let (kdf, master, check) = new_master(passphrase, CHECK_TEXT)?;
        let inner = Inner {
            path: path.to_path_buf(),
            master,
            file: FileFormat {
                format: FORMAT,
                kind: KIND.to_string(),
                kdf,
                check,
                keys: Vec::new(),
            },
        };
        inner.save()?;
        Ok(FileMasterKeyStore {
            inner: Mutex::new(inner),
        })
    }

    /// Opens a store; a wrong passphrase or an altered file is [`KeyError::BadPassphrase`].
    pub fn open(path: &Path, passphrase: &[u8]) -> Result<Self, MasterKeyError> {
        let text = std::fs::read_to_string(path).map_err(KeyError::from)?;
        let file: FileFormat =
            serde_json::from_str(&text).map_err(|e| KeyError::Format(e.to_string()))?;
        if file.format != FORMAT || file.kind != KIND {
            return Err(
                KeyError::Format(format!("not a master key store of format {FORMAT}")).into(),
            );
        }
        let master = derive_master(passphrase, &file.kdf)?;
        let check = hex::decode(&file.check).map_err(|_| KeyError::Format("check".into()))?;
        match sm4gcm::open(&master, &check, b"check") {
            Ok(t) if t == CHECK_TEXT => {}
            _ => return Err(KeyError::BadPassphrase.into()),
        }
        Ok(FileMasterKeyStore {
            inner: Mutex::new(Inner {
                path: path.to_path_buf(),
                master,
                file,
            }),
        })
    }

    /// Opens the store at `path`, creating an empty one the first time.
    pub fn open_or_create(path: &Path, passphrase: &[u8]) -> Result<Self, MasterKeyError> {
        if path.exists() {
            Self::open(path, passphrase)
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(KeyError::from)?;
            }
            Self::create(path, passphrase)
        }
    }

    /// Loads the development key set of `epurse.md` §4 as `app`'s purchase, load and TAC keys,
    /// version 1, marked [`KeyOrigin::TestKeySet`]. Never for production: a store holding them
    /// reports [`MasterKeyStore::test_key_set_present`].
    pub fn load_test_key_set(&self, app: &str) -> Result<Vec<MasterKeyInfo>, MasterKeyError> {
        let test = MasterKeys::test_set();
        let mut inner = self.lock();
        [
            (MasterPurpose::Purchase, &test.purchase),
            (MasterPurpose::Load, &test.load),
            (MasterPurpose::Tac, &test.tac),
        ]
        .into_iter()
        .map(|(purpose, key)| {
            inner.insert(&KeyRef::new(app, purpose, 1)?, key, KeyOrigin::TestKeySet)
        })
        .collect()
    }

    /// Loads the development maintenance master key (`crypto::test_maintenance_master`) as
    /// `app`'s maintenance key, version 1, marked [`KeyOrigin::TestKeySet`]. Never for
    /// production.
    pub fn load_test_maintenance_key(&self, app: &str) -> Result<MasterKeyInfo, MasterKeyError> {
        let key = crypto::test_maintenance_master();
        self.lock().insert(
            &KeyRef::new(app, MasterPurpose::Maintenance, 1)?,
            &key,
            KeyOrigin::TestKeySet,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the file half-written (writes are
        // atomic renames), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn insert(
        &mut self,
        key_ref: &KeyRef,
        key: &Key16,
        origin: KeyOrigin,
    ) -> Result<MasterKeyInfo, MasterKeyError> {
        if self.file.keys.iter().any(|k| &k.key == key_ref) {
            return Err(MasterKeyError::Exists(key_ref.clone()));
        }
        let info = MasterKeyInfo {
            key: key_ref.clone(),
            kcv_tdes: Some(key.kcv(Algorithm::Tdes)),
            kcv_sm4: Some(key.kcv(Algorithm::Sm4)),
            origin,
        };
        let sealed = sm4gcm::seal(&self.master, key.expose(), key_ref.label().as_bytes())?;
        self.file.keys.push(StoredKey {
            key: key_ref.clone(),
            kcv_tdes: kcv_hex(key.kcv(Algorithm::Tdes)),
            kcv_sm4: kcv_hex(key.kcv(Algorithm::Sm4)),
            origin,
            sealed: hex::encode(sealed),
        });
        if let Err(e) = self.save() {
            self.file.keys.pop();
            return Err(e);
        }
        Ok(info)
    }

    fn key(&self, key_ref: &KeyRef) -> Result<Key16, MasterKeyError> {
        let stored = self
            .file
            .keys
            .iter()
            .find(|k| &k.key == key_ref)
            .ok_or_else(|| MasterKeyError::UnknownKey(key_ref.clone()))?;
        let sealed =
            hex::decode(&stored.sealed).map_err(|_| KeyError::Format("sealed key".into()))?;
        let mut bytes = sm4gcm::open(&self.master, &sealed, key_ref.label().as_bytes())?;
        let key = Key16::from_slice(&bytes).map_err(|_| KeyError::Malformed("key length"));
        zeroize::Zeroize::zeroize(&mut bytes);
        Ok(key?)
    }

    fn save(&self) -> Result<(), MasterKeyError> {
        let text = serde_json::to_string_pretty(&self.file)
            .map_err(|e| KeyError::Format(e.to_string()))?;
        write_private_atomic(&self.path, text.as_bytes()).map_err(|e| KeyError::Io(e).into())
    }
}

impl MasterKeyStore for FileMasterKeyStore {
    fn backend(&self) -> &'static str {
        "file"
    }

    fn list(&self) -> Result<Vec<MasterKeyInfo>, MasterKeyError> {
        Ok(self
            .lock()
            .file
            .keys
            .iter()
            .map(|k| MasterKeyInfo {
                key: k.key.clone(),
                kcv_tdes: parse_kcv(&k.kcv_tdes),
                kcv_sm4: parse_kcv(&k.kcv_sm4),
                origin: k.origin,
            })
            .collect())
    }

    fn generate(&self, key: &KeyRef) -> Result<MasterKeyInfo, MasterKeyError> {
        let mut bytes: [u8; 16] = crate::random_bytes()?;
        let value = Key16::from_bytes(bytes);
        bytes.fill(0);
        self.lock().insert(key, &value, KeyOrigin::Generated)
    }

    fn import_components(
        &self,
        key: &KeyRef,
        components: &[KeyComponent],
        kcv_alg: Algorithm,
        expected_kcv: Option<[u8; 3]>,
    ) -> Result<MasterKeyInfo, MasterKeyError> {
        let value = combine_components(components)?;
        let actual = value.kcv(kcv_alg);
        if let Some(expected) = expected_kcv.filter(|e| *e != actual) {
            return Err(MasterKeyError::KeyKcvMismatch {
                expected: kcv_hex(expected),
                actual: kcv_hex(actual),
            });
        }
        self.lock().insert(key, &value, KeyOrigin::Components)
    }

    fn diversify_wrapped(
        &self,
        master: &KeyRef,
        alg: Algorithm,
        div: &DivData,
        transport: &KeyRef,
    ) -> Result<super::WrappedCardKey, MasterKeyError> {
        expect_card_master(master)?;
        expect_transport(transport)?;
        let inner = self.lock();
        let card_key = crypto::diversify(alg, &inner.key(master)?, div);
        let tk = inner.key(transport)?;
        Ok(super::WrappedCardKey {
            master: master.clone(),
            transport: transport.clone(),
            algorithm: alg,
            wrapped: wrap_card_key(alg, &tk, &card_key),
            kcv: card_key.kcv(alg),
        })
    }

    fn encrypt_for_transport(
        &self,
        transport: &KeyRef,
        alg: Algorithm,
        iv: &[u8; 16],
        data: &[u8],
    ) -> Result<Vec<u8>, MasterKeyError> {
        expect_transport(transport)?;
        super::check_transport_data(alg, data)?;
        let tk = self.lock().key(transport)?;
        crypto::cbc_encrypt(alg, &tk, iv, data)
            .map_err(|e| MasterKeyError::InvalidData(e.to_string()))
    }

    fn card_mac(
        &self,
        master: &KeyRef,
        alg: Algorithm,
        div: &DivData,
        input: &MacInput,
    ) -> Result<[u8; MAC_LEN], MasterKeyError> {
        let card_key = crypto::diversify(alg, &self.lock().key(master)?, div);
        Ok(input::software_mac(alg, &card_key, input))
    }

    fn card_macs(
        &self,
        master: &KeyRef,
        items: &[(Algorithm, DivData, MacInput)],
    ) -> Result<Vec<[u8; MAC_LEN]>, MasterKeyError> {
        // Unseal the master key once for the batch, outside the store's lock afterwards.
        let key = self.lock().key(master)?;
        Ok(items
            .iter()
            .map(|(alg, div, input)| {
                input::software_mac(*alg, &crypto::diversify(*alg, &key, div), input)
            })
            .collect())
    }
}
