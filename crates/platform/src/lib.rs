//! The platform's services, shared by the HTTP server and the command line: opening storage
//! and keys, the resident base database (import, lookup, provenance), operators and their
//! credentials, the audit log, and the synthetic demo city.
//!
//! Domain rules live in the pure crates (`resident`, `audit`); this crate orchestrates them
//! with the store and the vault, and is where the clock is read.

pub mod applications;
pub mod apps;
pub mod audit_writer;
pub mod bills;
pub mod cards;
pub mod channel;
pub mod chip_updates;
pub mod citizen_points;
pub mod citizen_services;
pub mod citizens;
pub mod clearing;
pub mod clearing_status;
pub mod clock;
pub mod credit;
pub mod demo;
pub mod disbursements;
pub mod ecode;
pub mod ecode_identity;
pub mod ecode_payments;
mod error;
pub mod exchange;
pub mod exchange_oversight;
pub mod feeds;
pub mod fees;
pub mod hotel;
pub mod ledger;
pub mod money;
pub mod notifications;
pub mod open;
pub mod operators;
pub mod points;
pub mod production;
pub mod purchases;
pub mod residents;
pub mod terminals;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{FieldProblem, PlatformError};
pub use open::{KeySource, StorageTarget};

use clock::Clock;
use keys::Vault;
use std::sync::Arc;
use store::{Role, Store};

pub type Result<T, E = PlatformError> = std::result::Result<T, E>;

/// Everything a request handler or command needs, cheap to clone.
#[derive(Clone)]
pub struct Platform {
    pub store: Arc<dyn Store>,
    vault: Arc<Vault>,
    denylist_signer: Arc<keys::Signer>,
    pub clock: Arc<dyn Clock>,
    audit: audit_writer::AuditWriter,
    logins: Arc<operators::LoginThrottle>,
    credentials: Arc<operators::CredentialCache>,
    deny_cache: Arc<cards::DenyCache>,
    deny_deltas: Arc<cards::DeltaCache>,
    ecode: Arc<crate::ecode::EcodeState>,
    terminal_auth: Arc<terminals::TerminalAuth>,
    /// The data-sharing exchange: its signer, replay cache and provider transport.
    exchange: Arc<exchange::ExchangeState>,
    /// The card company's master-key store (file or HSM), when this process holds one:
    /// production export, instant issuance and post-issuance scripts compute through it.
    masters: Arc<std::sync::OnceLock<Arc<dyn keys::master::MasterKeyStore>>>,
    /// Payment channels for top-ups (the first is the default), attached at start.
    channels: Arc<std::sync::RwLock<Vec<Arc<dyn channel::PaymentChannel>>>>,
    /// The group commit of payments and fees, started at the first payment.
    payments: Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<money::PaymentJob>>>,
    /// The group commit of terminals' named upload batches, started at the first upload.
    uploads: Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<purchases::UploadJob>>>,
    /// Ledger account ids by natural key (ids never change).
    account_ids: Arc<std::sync::Mutex<std::collections::HashMap<::ledger::AccountKey, i64>>>,
    /// Where clearing windows are cut (default 23:00 in the city).
    windows: ::ledger::WindowCalendar,
    /// The SMS gateway notices go through.
    notify: Arc<notifications::NotifyState>,
    /// Citizens' sign-in throttle and the portal's e-code devices.
    citizens: Arc<citizens::CitizenState>,
}

/// Who is acting, as established by authentication (or `system`/`cli` for local commands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub operator_id: Option<i64>,
    pub username: String,
    pub role: Role,
    pub department: Option<resident::Source>,
    /// Where the request came from: a client address, `cli`, `demo`.
    pub origin: String,
}

impl Caller {
    /// The local command line, run by whoever holds the data directory and its key store.
    pub fn cli(origin: &str) -> Self {
        Caller {
            operator_id: None,
            username: "cli".into(),
            role: Role::Administrator,
            department: None,
            origin: origin.into(),
        }
    }

    pub fn actor(&self) -> String {
        if self.citizen_id().is_some() {
            return self.username.clone();
        }
        match self.operator_id {
            Some(_) => format!("operator:{}", self.username),
            None => format!("system:{}", self.username),
        }
    }

    pub fn draft(
        &self,
        action: &str,
        record: impl Into<String>,
        detail: impl Into<String>,
    ) -> audit::Draft {
        audit::Draft::new(self.actor(), action, record, &self.origin, detail)
    }
}

impl Platform {
    pub fn new(store: Arc<dyn Store>, keys: open::PlatformKeys, clock: Arc<dyn Clock>) -> Self {
        let audit = audit_writer::AuditWriter::start(store.clone(), clock.clone());
        let exchange = Arc::new(exchange::ExchangeState::new(
            keys.exchange,
            store.clone(),
            clock.clone(),
        ));
        Platform {
            store,
            vault: Arc::new(keys.vault),
            denylist_signer: Arc::new(keys.denylist),
            clock,
            audit,
            logins: Arc::new(operators::LoginThrottle::default()),
            credentials: Arc::new(operators::CredentialCache::default()),
            deny_cache: Arc::new(cards::DenyCache::default()),
            deny_deltas: Arc::default(),
            ecode: Arc::default(),
            terminal_auth: Arc::default(),
            exchange,
            masters: Arc::default(),
            channels: Arc::default(),
            payments: Arc::default(),
            uploads: Arc::default(),
            account_ids: Arc::default(),
            windows: ::ledger::WindowCalendar::default(),
            notify: Arc::default(),
            citizens: Arc::default(),
        }
    }

    /// Appends an audit entry (group-committed with concurrent ones) and waits until it is
    /// durable: data is only returned to a caller after its read is on the record.
    pub async fn audit(&self, draft: audit::Draft) -> Result<audit::Entry> {
        self.audit.append(draft).await
    }

    /// Checks the whole audit chain; the inner error names the first bad entry.
    pub async fn audit_verify(&self) -> Result<std::result::Result<u64, audit::ChainError>> {
        Ok(store::audit_verify(&*self.store).await?)
    }
}
