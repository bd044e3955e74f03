//! Test fixtures (feature `testing`): a platform on a fresh SQLite file or a fresh PostgreSQL
//! schema, so every test gets its own database and no test sees another's rows.

use crate::clock::{Clock, ManualClock};
use crate::open::{KeySource, open_keys, open_keystore};
use crate::{Platform, Result};
use std::sync::Arc;

/// 2026-11-26 12:00 CST, the fixtures' "now".
pub const T0_MS: i64 = 1_795_665_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL test database: `CITYCARD_TEST_DATABASE_URL`, or the local server's
/// `citycard_test` database that `scripts/test` creates fresh for every run.
pub fn postgres_test_url() -> String {
    std::env::var("CITYCARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/citycard_test".into())
}

pub struct TestPlatform {
    pub platform: Platform,
    pub clock: Arc<ManualClock>,
    /// Holds the temporary directory (SQLite file, key store) for the test's lifetime.
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    /// The PostgreSQL schema of this test, if any.
    pub schema: Option<String>,
}

/// A fresh platform on `backend`. Panics with instructions when PostgreSQL is unreachable: a
/// test whose component is missing fails, it is never skipped.
pub async fn fresh(backend: Backend) -> TestPlatform {
    try_fresh(backend).await.unwrap_or_else(|e| {
        panic!(
            "could not set up a {backend:?} test platform: {e}. For PostgreSQL run ./scripts/test \
             (it installs and starts Debian's postgresql and creates the test database) or set \
             CITYCARD_TEST_DATABASE_URL."
        )
    })
}

async fn try_fresh(backend: Backend) -> Result<TestPlatform> {
    let dir = tempfile::tempdir().map_err(|e| crate::PlatformError::Unexpected(e.to_string()))?;
    let clock = Arc::new(ManualClock::new(T0_MS));
    let (store, schema): (Arc<dyn store::Store>, _) = match backend {
        Backend::Sqlite => (
            Arc::new(store_sqlite::SqliteStore::open(&dir.path().join("citycard.db")).await?),
            None,
        ),
        Backend::Postgres => {
            let n: u64 = {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b)
                    .map_err(|_| crate::PlatformError::Unexpected("random".into()))?;
                u64::from_le_bytes(b)
            };
            let schema = format!("t_{n:016x}");
            let url = postgres_test_url();
            let sep = if url.contains('?') { '&' } else { '?' };
            let admin =
                store_postgres::PgStore::admin_execute(&url, &format!("CREATE SCHEMA {schema}"))
                    .await;
            admin?;
            let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
            (
                Arc::new(store_postgres::PgStore::connect(&scoped).await?),
                Some(schema),
            )
        }
    };
    let mut ks = open_keystore(
        &dir.path().join("keys"),
        &KeySource::Passphrase("test".into()),
        false,
    )?;
    let keys = open_keys(&*store, &mut ks).await?;
    let platform = Platform::new(store, keys, clock.clone() as Arc<dyn Clock>);
    platform.attach_keystore(Arc::new(ks));
    Ok(TestPlatform {
        platform,
        clock,
        dir,
        backend,
        schema,
    })
}

/// Gives `tp`'s platform a master-key store (a file store in the test's directory) holding
/// the development key set ([`crate::demo::load_development_keys`]). Never for production.
pub fn install_test_master_keys(tp: &TestPlatform) -> Result<()> {
    let store = keys::master::FileMasterKeyStore::create(
        &tp.dir.path().join("master-keys.json"),
        b"test master keys",
    )
    .map_err(|e| crate::PlatformError::Unexpected(e.to_string()))?;
    crate::demo::load_development_keys(&store)?;
    tp.platform.set_master_keys(Arc::new(store));
    Ok(())
}

/// The outlet and clerk [`issue_cards`] works at.
pub const TEST_OUTLET: &str = "TEST-1";
pub const TEST_CLERK: &str = "test-clerk";

/// [`crate::demo::issue_approved`] at [`TEST_OUTLET`] by [`TEST_CLERK`]: every approved card
/// through a batch and the emulated bureau to the outlet, the named ones handed over.
pub async fn issue_cards(p: &Platform, hand_over: &[&str]) -> Result<crate::Caller> {
    crate::demo::issue_approved(
        p,
        TEST_OUTLET,
        TEST_CLERK,
        "test-clerk-password-1",
        hand_over,
    )
    .await
}
