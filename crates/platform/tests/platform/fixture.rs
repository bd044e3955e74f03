//! Fresh platforms for tests: a `Platform` on its own SQLite file or its own PostgreSQL schema,
//! with a passphrase key store in its own directory and a clock that moves only when told, plus
//! the raw access to each backend that the encryption-at-rest checks need.

use platform::clock::ManualClock;
use platform::open::{open_keys, open_keystore};
use platform::residents::ImportReport;
use platform::{Caller, KeySource, Platform};
use resident::{ResidentId, Source};
use sqlx::Row;
use sqlx::postgres::PgConnectOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use store::{Role, Store};
use store_postgres::PgStore;
use store_sqlite::SqliteStore;

pub const PASSPHRASE: &str = "correct horse battery staple";

/// 2026-11-26 09:00 in the city (01:00 UTC), as unix milliseconds.
pub const START_MS: i64 = 1_795_654_800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database under one fixture, with the concrete store for raw access.
pub enum Db {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
        store: Arc<SqliteStore>,
    },
    Postgres {
        schema: String,
        opts: Box<PgConnectOptions>,
        store: Arc<PgStore>,
    },
}

pub struct Fixture {
    pub p: Platform,
    pub clock: Arc<ManualClock>,
    pub db: Db,
    pub key_dir: tempfile::TempDir,
}

fn test_url() -> String {
    std::env::var("CITYCARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/citycard_test".into())
}

async fn fresh_pg_schema() -> (String, PgConnectOptions) {
    let url = test_url();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    // Never skip: a test run without PostgreSQL must fail loudly, not pass on SQLite alone.
    let admin = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url} ({e}). Start the local server and create the \
             database (psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE citycard_test'), or set \
             CITYCARD_TEST_DATABASE_URL."
        )
    });
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let opts = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    (schema, opts)
}

impl Fixture {
    pub async fn new(backend: Backend) -> Self {
        let db = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("citycard.db");
                let store = Arc::new(SqliteStore::open(&path).await.unwrap());
                Db::Sqlite {
                    _dir: dir,
                    path,
                    store,
                }
            }
            Backend::Postgres => {
                let (schema, opts) = fresh_pg_schema().await;
                let store = Arc::new(PgStore::connect_with(opts.clone()).await.unwrap());
                Db::Postgres {
                    schema,
                    opts: Box::new(opts),
                    store,
                }
            }
        };
        let store: Arc<dyn Store> = match &db {
            Db::Sqlite { store, .. } => store.clone(),
            Db::Postgres { store, .. } => store.clone(),
        };
        let key_dir = tempfile::tempdir().unwrap();
        let mut keystore = open_keystore(
            key_dir.path(),
            &KeySource::Passphrase(PASSPHRASE.into()),
            true,
        )
        .unwrap();
        let keys = open_keys(&*store, &mut keystore).await.unwrap();
        let clock = Arc::new(ManualClock::new(START_MS));
        let p = Platform::new(store, keys, clock.clone());
        p.attach_keystore(Arc::new(keystore));
        Fixture {
            p,
            clock,
            db,
            key_dir,
        }
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres { .. } => Backend::Postgres,
        }
    }

    /// A second, independent connection to the same database (as a restarted process has).
    pub async fn connect_again(&self) -> Arc<dyn Store> {
        match &self.db {
            Db::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).await.unwrap()),
            Db::Postgres { opts, .. } => {
                Arc::new(PgStore::connect_with((**opts).clone()).await.unwrap())
            }
        }
    }

    /// Opens a second platform on the same database with the key store in `key_dir`.
    pub async fn reopen(&self, key_dir: &Path, passphrase: &str) -> platform::Result<Platform> {
        let mut keystore = open_keystore(key_dir, &KeySource::Passphrase(passphrase.into()), true)?;
        let store = self.connect_again().await;
        let keys = open_keys(&*store, &mut keystore).await?;
        Ok(Platform::new(store, keys, self.clock.clone()))
    }

    /// Imports `csv` as a feed of `source`.
    pub async fn import(
        &self,
        caller: &Caller,
        source: Source,
        channel: &str,
        csv: &[u8],
    ) -> platform::Result<ImportReport> {
        import(&self.p, caller, source, channel, csv).await
    }

    /// Every place in the stored database where one of `needles` appears, as
    /// `"<where>: <needle>"`. SQLite: the raw bytes of the database file and its WAL and
    /// shared-memory files. PostgreSQL: every row of every table of the schema as text
    /// (bytea shown in hex, so hex needles are searched too) and every bytea cell as bytes.
    pub async fn find_at_rest(&self, needles: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        match &self.db {
            Db::Sqlite { path, .. } => {
                let dir = path.parent().unwrap();
                let stem = path.file_name().unwrap().to_string_lossy().to_string();
                let mut files = 0;
                for entry in std::fs::read_dir(dir).unwrap() {
                    let entry = entry.unwrap();
                    let name = entry.file_name().to_string_lossy().to_string();
                    if !name.starts_with(&stem) {
                        continue;
                    }
                    files += 1;
                    let bytes = std::fs::read(entry.path()).unwrap();
                    for n in needles {
                        if contains(&bytes, n.as_bytes()) {
                            found.push(format!("file {name}: {n}"));
                        }
                    }
                }
                assert!(files >= 1, "no database file found in {}", dir.display());
            }
            Db::Postgres { schema, store, .. } => {
                let pool = store.pool();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = $1 ORDER BY 1",
                )
                .bind(schema)
                .fetch_all(pool)
                .await
                .unwrap();
                assert!(
                    tables.iter().any(|t| t == "residents"),
                    "schema {schema} has no residents table: {tables:?}"
                );
                for t in &tables {
                    let rows: Vec<String> =
                        sqlx::query_scalar(&format!("SELECT t::text FROM {schema}.{t} t"))
                            .fetch_all(pool)
                            .await
                            .unwrap();
                    for row in &rows {
                        for n in needles {
                            if row.contains(n) || row.contains(&hex::encode(n.as_bytes())) {
                                found.push(format!("table {t} (row text): {n}"));
                            }
                        }
                    }
                }
                let bytea: Vec<(String, String)> = sqlx::query(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = $1 AND data_type = 'bytea' ORDER BY 1, 2",
                )
                .bind(schema)
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
                assert!(
                    bytea
                        .iter()
                        .any(|(t, c)| t == "residents" && c == "name_sealed"),
                    "expected residents.name_sealed among bytea columns: {bytea:?}"
                );
                for (t, c) in &bytea {
                    let cells: Vec<Option<Vec<u8>>> =
                        sqlx::query_scalar(&format!("SELECT {c} FROM {schema}.{t}"))
                            .fetch_all(pool)
                            .await
                            .unwrap();
                    for cell in cells.iter().flatten() {
                        for n in needles {
                            if contains(cell, n.as_bytes()) {
                                found.push(format!("{t}.{c} (bytes): {n}"));
                            }
                        }
                    }
                }
            }
        }
        found
    }

    /// Moves everything in SQLite's write-ahead log into the database file.
    pub async fn checkpoint(&self) {
        if let Db::Sqlite { store, .. } = &self.db {
            sqlx::query("PRAGMA wal_checkpoint(FULL)")
                .execute(store.pool())
                .await
                .unwrap();
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

pub async fn import(
    p: &Platform,
    caller: &Caller,
    source: Source,
    channel: &str,
    csv: &[u8],
) -> platform::Result<ImportReport> {
    let bytes = csv.to_vec();
    let digest = platform::residents::digest(&bytes);
    p.import_residents(
        caller,
        source,
        channel,
        digest,
        Box::new(std::io::Cursor::new(bytes)),
        Arc::new(|_| {}),
    )
    .await
}

/// A caller of `role` that did not come through sign-in (roles alone decide access).
pub fn caller(username: &str, role: Role, department: Option<Source>) -> Caller {
    Caller {
        operator_id: Some(1),
        username: username.into(),
        role,
        department,
        origin: "test".into(),
    }
}

pub fn admin() -> Caller {
    Caller::cli("test")
}

/// A valid ID number (GB 11643) of region `region`, born on `y-m-d`, sequence `seq`.
pub fn id(region: &str, y: i32, m: u8, d: u8, seq: u16) -> String {
    let birth = time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap();
    ResidentId::from_parts(region, birth, seq)
        .as_str()
        .to_string()
}

/// The audit log's last sequence number (0 when empty).
pub async fn audit_seq(p: &Platform) -> i64 {
    p.store
        .audit_head()
        .await
        .unwrap()
        .map(|h| h.0)
        .unwrap_or(0)
}

/// Expands each test case `async fn name(f: Fixture)` into `name::sqlite` and
/// `name::postgres`, each on a fresh database.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let f = $crate::fixture::Fixture::new($crate::fixture::Backend::Sqlite).await;
                    super::$name(f).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let f = $crate::fixture::Fixture::new($crate::fixture::Backend::Postgres).await;
                    super::$name(f).await;
                }
            }
        )*
    };
}

impl Fixture {
    /// Gives the platform a master-key file store with the development key set, so cards can
    /// go through a production batch and the emulated bureau (`platform::demo::issue_approved`).
    pub fn install_master_keys(&self) {
        let store = keys::master::FileMasterKeyStore::create(
            &self.key_dir.path().join("master-keys-dev.json"),
            b"development keys",
        )
        .unwrap();
        platform::demo::load_development_keys(&store).unwrap();
        self.p.set_master_keys(std::sync::Arc::new(store));
    }
}
