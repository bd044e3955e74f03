//! Opening the platform: the storage backend picked once from the configuration, the key
//! store, and the vault's data keys (generated and wrapped on first start).

use crate::clock::Clock;
use crate::{Platform, PlatformError, Result};
use keys::{FileKeyStore, KeyPurpose, KeyStore, Signer, Vault, WrappedDataKeys};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::{Store, StoredDataKeys};

/// Where the data lives: an embedded SQLite file (the default) or a PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StorageTarget {
    /// `--database-url` wins; otherwise the SQLite file in the data directory.
    pub fn from_config(data_dir: &Path, database_url: Option<&str>) -> Result<Self> {
        match database_url {
            None => Ok(StorageTarget::Sqlite(data_dir.join("citycard.db"))),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(StorageTarget::Postgres(u.to_string()))
            }
            Some(u) if u.starts_with("sqlite:") => {
                let path = u
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                Ok(StorageTarget::Sqlite(PathBuf::from(path)))
            }
            Some(_) => Err(PlatformError::invalid(
                "database_url",
                "must start with postgres://, postgresql:// or sqlite:",
            )),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            StorageTarget::Sqlite(p) => format!("sqlite {}", p.display()),
            // The URL may carry a password: show the host part only.
            StorageTarget::Postgres(u) => {
                let host = u.rsplit('@').next().unwrap_or("");
                format!("postgres {host}")
            }
        }
    }

    pub async fn connect(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            StorageTarget::Sqlite(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        PlatformError::Unexpected(format!("create {}: {e}", dir.display()))
                    })?;
                }
                Arc::new(store_sqlite::SqliteStore::open(path).await?)
            }
            StorageTarget::Postgres(url) => Arc::new(store_postgres::PgStore::connect(url).await?),
        })
    }
}

/// How the key store's passphrase is obtained.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Given by the operator (`CITYCARD_KEYSTORE_PASSPHRASE`): production.
    Passphrase(String),
    /// Development and demo only: a random passphrase kept in a file beside the key store,
    /// created on first use. Refused in production.
    DevelopmentFile,
}

pub const PII_KEYS: &str = "pii";
pub const PII_KEK: &str = "kek-pii";

/// The key store passphrase: the operator's, or (development only) the one in a file beside
/// the key store, created on first use. Every store under `key_dir` uses this one function.
pub fn keystore_passphrase(key_dir: &Path, source: &KeySource, production: bool) -> Result<String> {
    match source {
        KeySource::Passphrase(p) => Ok(p.clone()),
        KeySource::DevelopmentFile if production => Err(PlatformError::Forbidden(
            "production start needs CITYCARD_KEYSTORE_PASSPHRASE; the development \
             passphrase file is refused"
                .into(),
        )),
        KeySource::DevelopmentFile => {
            let file = key_dir.join("dev-passphrase");
            if let Ok(p) = std::fs::read_to_string(&file) {
                return Ok(p.trim().to_string());
            }
            std::fs::create_dir_all(key_dir).map_err(|e| {
                PlatformError::Unexpected(format!("create {}: {e}", key_dir.display()))
            })?;
            let mut b = [0u8; 24];
            getrandom::fill(&mut b).map_err(|_| PlatformError::Unexpected("random".into()))?;
            let p = hex::encode(b);
            write_private(&file, p.as_bytes())?;
            tracing::warn!(
                "created a development key-store passphrase in {}; production must set \
                 CITYCARD_KEYSTORE_PASSPHRASE",
                file.display()
            );
            Ok(p)
        }
    }
}

/// Opens (creating on first use) the file key store under `key_dir`.
pub fn open_keystore(key_dir: &Path, source: &KeySource, production: bool) -> Result<FileKeyStore> {
    let passphrase = keystore_passphrase(key_dir, source, production)?;
    Ok(FileKeyStore::open_or_create(
        &key_dir.join("keystore.json"),
        passphrase.as_bytes(),
    )?)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| PlatformError::Unexpected(format!("create {}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| PlatformError::Unexpected(format!("write {}: {e}", path.display())))
}

/// The vault for personal data: its data keys come wrapped from the database; on first start
/// they are generated and stored (the first of two racing processes wins, both use its keys).
pub async fn open_vault(store: &dyn Store, keystore: &mut FileKeyStore) -> Result<Vault> {
    if let Some(k) = store.data_keys(PII_KEYS).await? {
        return Ok(Vault::open(
            keystore,
            &WrappedDataKeys {
                kek_id: k.kek_id,
                wrapped: k.wrapped,
            },
        )?);
    }
    keystore.ensure(PII_KEK, KeyPurpose::KeyEncryption)?;
    let (_, wrapped) = Vault::generate(keystore, PII_KEK)?;
    let stored = store
        .data_keys_insert(&StoredDataKeys {
            purpose: PII_KEYS.into(),
            kek_id: wrapped.kek_id,
            wrapped: wrapped.wrapped,
        })
        .await?;
    Ok(Vault::open(
        keystore as &dyn KeyStore,
        &WrappedDataKeys {
            kek_id: stored.kek_id,
            wrapped: stored.wrapped,
        },
    )?)
}

/// The deny-list signing key's purpose in the data-keys table.
pub const DENYLIST_SIGNER: &str = "signer:denylist";
/// The data-sharing exchange's signing key (what it forwards and delivers, the audit head's
/// stamps).
pub const EXCHANGE_SIGNER: &str = "signer:exchange";

/// An SM2 signing key of the platform, wrapped in the database like the vault's keys and
/// generated on first start.
pub async fn open_signer(
    store: &dyn Store,
    keystore: &mut FileKeyStore,
    purpose: &str,
) -> Result<Signer> {
    if let Some(k) = store.data_keys(purpose).await? {
        return Ok(Signer::open(
            keystore,
            &WrappedDataKeys {
                kek_id: k.kek_id,
                wrapped: k.wrapped,
            },
            purpose,
        )?);
    }
    keystore.ensure(PII_KEK, KeyPurpose::KeyEncryption)?;
    let (_, wrapped) = Signer::generate(keystore, PII_KEK, purpose)?;
    let stored = store
        .data_keys_insert(&StoredDataKeys {
            purpose: purpose.into(),
            kek_id: wrapped.kek_id,
            wrapped: wrapped.wrapped,
        })
        .await?;
    Ok(Signer::open(
        keystore as &dyn KeyStore,
        &WrappedDataKeys {
            kek_id: stored.kek_id,
            wrapped: stored.wrapped,
        },
        purpose,
    )?)
}

/// The keys a running platform holds, unwrapped: the personal-data vault and the deny-list
/// signer, the exchange's signer.
pub struct PlatformKeys {
    pub vault: Vault,
    pub denylist: Signer,
    pub exchange: Signer,
}

pub async fn open_keys(store: &dyn Store, keystore: &mut FileKeyStore) -> Result<PlatformKeys> {
    Ok(PlatformKeys {
        vault: open_vault(store, keystore).await?,
        denylist: open_signer(store, keystore, DENYLIST_SIGNER).await?,
        exchange: open_signer(store, keystore, EXCHANGE_SIGNER).await?,
    })
}

/// Opens storage, keys and vault: what every command and the server do first.
pub async fn open_platform(
    target: &StorageTarget,
    key_dir: &Path,
    keys: &KeySource,
    production: bool,
    clock: Arc<dyn Clock>,
) -> Result<Platform> {
    let mut keystore = open_keystore(key_dir, keys, production)?;
    let store = target.connect().await?;
    let keys = open_keys(&*store, &mut keystore).await?;
    let platform = Platform::new(store, keys, clock);
    platform.attach_keystore(Arc::new(keystore));
    Ok(platform)
}
