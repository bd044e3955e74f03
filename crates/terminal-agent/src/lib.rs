//! The terminal itself (issue 6, item 6), as a library: a bus validator, metro gate or POS that
//! keeps working without the network.
//!
//! **Durable first.** Every tap runs the fare engine (`fares`), then the purchase flow of the
//! chip profile (`chip::terminal`) against a card channel — the in-process emulator, whose card
//! and PSAM images live in the same SQLite file, or a PC/SC reader — and writes the upload
//! record in one SQLite transaction (WAL, `synchronous = FULL`) *before* the tap is reported
//! done. E-code payments are checked offline with `ecode::Verifier` and queued the same way.
//!
//! **Bounded queue.** At most [`Limits::queue_max`] records wait for upload; past it a tap is
//! refused with [`TapError::QueueFull`] before the card is touched.
//!
//! **Upload.** [`Agent::upload_once`] cuts the queue into batches (one batch id each, written
//! before the first send) and posts them with the terminal's signed requests. A batch is resent
//! with the same id and the same bytes until an answer arrives; the platform answers a batch id
//! it has seen with the results it gave the first time, and every record is idempotent on its
//! own (card, terminal, serial), so a crash or a cut connection at any point neither loses nor
//! doubles a record. Per-record answers mark each record accepted or refused (with the reason).

mod client;
mod clock;
mod db;
mod tap;
mod upload;

pub use client::{ClientError, PlatformClient};
pub use tap::{Ride, TapDone, TapError, TapRequest};
pub use upload::{SyncReport, UploadReport};

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use chip::{CardNumber, Psam, TerminalId};
use thiserror::Error;

/// Bounds of the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Records waiting for upload, at most (taps past it are refused).
    pub queue_max: u64,
    /// Records per upload batch, at most (the platform takes 10,000).
    pub batch_max: u32,
    /// E-code payments per batch, at most (the platform takes 5,000).
    pub ecode_batch_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue_max: 100_000,
            batch_max: 2_000,
            ecode_batch_max: 1_000,
        }
    }
}

/// Largest queue a terminal may be configured with.
pub const QUEUE_MAX_LIMIT: u64 = 10_000_000;
/// Largest batch the platform accepts.
pub const BATCH_MAX_LIMIT: u32 = 10_000;
/// Emulated cards a terminal may hold, at most.
pub const EMULATED_CARDS_MAX: u32 = 100_000;

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("local store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("local store holds a bad {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("platform refused: HTTP {status}: {detail}")]
    Refused { status: u16, detail: String },
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

/// The terminal: its local store, its PSAM and parameters, its queue.
pub struct Agent {
    db: db::Db,
    limits: Limits,
    /// Records queued or in a batch not yet answered.
    pending: AtomicU64,
    inner: tokio::sync::Mutex<tap::Inner>,
}

/// Counts of the local queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub queued: u64,
    pub batched: u64,
    pub accepted: u64,
    pub refused: u64,
}

impl Agent {
    /// Opens (or creates) the terminal's store at `path`. A new store gets an emulated PSAM with
    /// `psam_terminal_id` and the development purchase key; an existing one keeps its PSAM.
    pub async fn open(path: &Path, psam_terminal_id: TerminalId, limits: Limits) -> Result<Agent> {
        if limits.queue_max == 0 || limits.queue_max > QUEUE_MAX_LIMIT {
            return Err(AgentError::Config(format!(
                "queue_max must be 1 to {QUEUE_MAX_LIMIT}"
            )));
        }
        if limits.batch_max == 0
            || limits.batch_max > BATCH_MAX_LIMIT
            || limits.ecode_batch_max == 0
            || limits.ecode_batch_max > 5_000
        {
            return Err(AgentError::Config(format!(
                "batch_max must be 1 to {BATCH_MAX_LIMIT}, ecode_batch_max 1 to 5000"
            )));
        }
        let db = db::Db::open(path).await?;
        // Recovery: records of a batch never answered stay batched and are resent under the
        // same batch id; nothing else needs repair, since every write is one transaction.
        let psam = match db.psam().await? {
            Some(image) => {
                if image.terminal_id != psam_terminal_id {
                    return Err(AgentError::Config(format!(
                        "this store belongs to the PSAM {}, not {psam_terminal_id}",
                        image.terminal_id
                    )));
                }
                Psam::from_image(image)
            }
            None => {
                let psam = Psam::new(
                    psam_terminal_id,
                    crypto::MasterKeys::test_set().purchase.clone(),
                );
                db.psam_save(psam.image()).await?;
                psam
            }
        };
        let counts = db.counts().await?;
        let fares = db.fares().await?.unwrap_or_else(fares::default_rules);
        let deny = db.deny_list().await?;
        let verifier = match db.meta_text("ecode_roots").await? {
            Some(pem) => Some(ecode_verifier(&pem)?),
            None => None,
        };
        Ok(Agent {
            db,
            limits,
            pending: AtomicU64::new(counts.queued + counts.batched),
            inner: tokio::sync::Mutex::new(tap::Inner {
                psam,
                fares,
                deny: deny.map(std::sync::Arc::new),
                verifier,
                cards: Default::default(),
            }),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Records not yet answered by the platform.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::SeqCst)
    }

    pub async fn counts(&self) -> Result<QueueCounts> {
        self.db.counts().await
    }

    /// Records the platform answered, by its result (`posted`, `duplicate`, `bad_tac`, …).
    pub async fn result_counts(&self) -> Result<Vec<(String, u64)>> {
        self.db.result_counts().await
    }

    /// The PSAM's terminal id (what its records carry).
    pub async fn psam_terminal_id(&self) -> TerminalId {
        self.inner.lock().await.psam.image().terminal_id
    }

    /// The parameter version held (`None` before the first download).
    pub async fn parameters_version(&self) -> Result<Option<String>> {
        self.db.meta_text("parameters_version").await
    }

    /// The deny-list version held (0 before the first download).
    pub async fn deny_list_version(&self) -> i64 {
        self.inner
            .lock()
            .await
            .deny
            .as_ref()
            .map_or(0, |d| d.version().0 as i64)
    }

    /// Creates emulated cards (development key set) with issue sequences from
    /// `first_sequence`, each loaded with `load_fen`, unless the store holds cards already.
    /// Returns their numbers.
    pub async fn emulator_provision(
        &self,
        first_sequence: u32,
        count: u32,
        load_fen: u32,
    ) -> Result<Vec<CardNumber>> {
        if count > EMULATED_CARDS_MAX {
            return Err(AgentError::Config(format!(
                "at most {EMULATED_CARDS_MAX} emulated cards"
            )));
        }
        let existing = self.db.emulated_cards().await?;
        if !existing.is_empty() {
            return Ok(existing);
        }
        let cards = tokio::task::spawn_blocking(move || {
            tap::provision_cards(first_sequence, count, load_fen)
        })
        .await
        .map_err(|e| AgentError::Config(e.to_string()))??;
        self.db.emulated_cards_insert(&cards).await?;
        Ok(cards.iter().map(|(n, _)| *n).collect())
    }

    /// The balance of an emulated card, in fen.
    pub async fn emulated_balance(&self, card: CardNumber) -> Result<Option<u32>> {
        Ok(self
            .db
            .emulated_card(card)
            .await?
            .and_then(|c| c.purse().map(|p| p.balance_fen)))
    }

    /// Provisions the e-code root keys (PEM) the terminal trusts; e-code taps need them.
    /// The e-code root keys by hand (the parameter download also brings them); kept in the
    /// store like downloaded ones.
    pub async fn set_ecode_roots(&self, pem: &str) -> Result<()> {
        let verifier = ecode_verifier(pem)?;
        self.db
            .meta_set(&[("ecode_roots", pem.as_bytes().to_vec())])
            .await?;
        self.inner.lock().await.verifier = Some(verifier);
        Ok(())
    }

    /// The emulated cards, by number.
    pub async fn emulated_cards(&self) -> Result<Vec<CardNumber>> {
        self.db.emulated_cards().await
    }

    /// Fare tables to use until the first parameter download.
    pub async fn set_initial_fares(&self, rules: fares::FareRules) -> Result<()> {
        rules
            .validate()
            .map_err(|e| AgentError::Config(e.to_string()))?;
        let json = serde_json::to_vec(&rules).expect("plain JSON");
        self.db.meta_set(&[("fares", json)]).await?;
        self.inner.lock().await.fares = rules;
        Ok(())
    }
}

/// An offline e-code verifier over the roots in `pem`.
pub(crate) fn ecode_verifier(pem: &str) -> Result<ecode::Verifier> {
    let roots = ecode::RootKeys::from_pem(pem)
        .map_err(|e| AgentError::Config(format!("e-code root keys: {e}")))?;
    ecode::Verifier::new(roots, ecode::VerifierConfig::default())
        .map_err(|e| AgentError::Config(e.to_string()))
}
