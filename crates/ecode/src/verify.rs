//! Offline verification at a terminal, steps 1–9 of §Verification in the spec's order, each
//! failure with its own reason.

use core::fmt;

use chip::CardNumber;
use thiserror::Error;

use crate::ledger::{CertificateDigest, SPEND_LEDGER_ENTRIES_MAX, SpendLedger};
use crate::replay::{REPLAY_ENTRIES_MAX, ReplayCache};
use crate::{Code, FormatError, RootKeyId, RootKeys, Uses};

/// The spec's default freshness window (step 4).
pub const FRESHNESS_WINDOW_S_DEFAULT: u32 = 60;
/// The widest freshness window a terminal may be configured with. Wider windows make stolen
/// screenshots of codes usable for longer, and grow the replay cache.
pub const FRESHNESS_WINDOW_S_MAX: u32 = 600;

/// What the code is shown for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A payment of `amount_fen` (step 8 applies).
    Pay { amount_fen: u32 },
    /// Proof of identity (hospital, hotel desk).
    Identity,
    /// Passing a transit gate.
    Transit,
}

impl Purpose {
    /// The use bit the certificate must carry for this purpose.
    pub fn use_bit(self) -> Uses {
        match self {
            Purpose::Pay { .. } => Uses::PAY,
            Purpose::Identity => Uses::IDENTITY,
            Purpose::Transit => Uses::TRANSIT,
        }
    }
}

/// Which way a code is stale (step 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// Made more than the window before the terminal clock.
    Old { age_s: u32 },
    /// Made more than the window after the terminal clock.
    Future { ahead_s: u32 },
}

/// Why a terminal refused a code: one reason per check, in the spec's order. The first
/// failing check decides.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// Step 1: prefix, length, format or version.
    #[error("not a valid e-code: {0}")]
    Format(#[from] FormatError),
    /// Step 2: the root key id is not provisioned.
    #[error("root key {0} is not provisioned")]
    UnknownRoot(RootKeyId),
    /// Step 2: the root key is withdrawn.
    #[error("root key {0} is withdrawn")]
    RootWithdrawn(RootKeyId),
    /// Step 2: the root signature over the certificate is invalid.
    #[error("root signature is invalid")]
    RootSignature,
    /// Step 3: the code was made before the certificate's `not before`.
    #[error("certificate not yet valid at the code time")]
    NotYetValid,
    /// Step 3: the code was made, or is shown, after the certificate's `not after`.
    #[error("certificate expired")]
    Expired,
    /// Step 4: the code time is more than the freshness window from the terminal clock.
    #[error("code not fresh: {0:?}")]
    NotFresh(Staleness),
    /// Step 5: the device signature is invalid under the certified key.
    #[error("device signature is invalid")]
    DeviceSignature,
    /// Step 6: the card is on the deny-list.
    #[error("card is on the deny-list")]
    DenyListed,
    /// Step 7: this terminal already accepted this code.
    #[error("code already accepted (replay)")]
    Replay,
    /// Step 8: the payment would exceed the certificate's offline limit here.
    #[error("over the offline limit: {spent_fen} + {amount_fen} > {limit_fen} fen")]
    OverLimit {
        amount_fen: u32,
        spent_fen: u64,
        limit_fen: u32,
    },
    /// Step 8: the terminal's spend ledger is full, so it cannot account for this payment.
    #[error("spend ledger full: cannot account for a payment under another certificate")]
    SpendLedgerFull,
    /// Step 9: the certificate does not allow this use.
    #[error("use {0:?} not allowed by the certificate")]
    UseNotAllowed(Uses),
}

impl Refusal {
    /// The check (1–9) that refused.
    pub fn step(&self) -> u8 {
        match self {
            Refusal::Format(_) => 1,
            Refusal::UnknownRoot(_) | Refusal::RootWithdrawn(_) | Refusal::RootSignature => 2,
            Refusal::NotYetValid | Refusal::Expired => 3,
            Refusal::NotFresh(_) => 4,
            Refusal::DeviceSignature => 5,
            Refusal::DenyListed => 6,
            Refusal::Replay => 7,
            Refusal::OverLimit { .. } | Refusal::SpendLedgerFull => 8,
            Refusal::UseNotAllowed(_) => 9,
        }
    }

    /// A stable reason code for gate displays, logs and uploads.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Format(_) => "format",
            Refusal::UnknownRoot(_) => "unknown_root",
            Refusal::RootWithdrawn(_) => "root_withdrawn",
            Refusal::RootSignature => "root_signature",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Expired => "expired",
            Refusal::NotFresh(Staleness::Old { .. }) => "not_fresh_old",
            Refusal::NotFresh(Staleness::Future { .. }) => "not_fresh_future",
            Refusal::DeviceSignature => "device_signature",
            Refusal::DenyListed => "deny_listed",
            Refusal::Replay => "replay",
            Refusal::OverLimit { .. } => "over_limit",
            Refusal::SpendLedgerFull => "spend_ledger_full",
            Refusal::UseNotAllowed(_) => "use_not_allowed",
        }
    }
}

/// A code that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub card_number: CardNumber,
    pub root_key_id: RootKeyId,
    pub code_time: u32,
    pub sequence: u16,
    pub purpose: Purpose,
    /// For a payment: what is left of the offline limit at this terminal after it.
    pub offline_remaining_fen: Option<u64>,
}

/// A terminal's verification settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Step 4's window, at most [`FRESHNESS_WINDOW_S_MAX`].
    pub freshness_window_s: u32,
    /// Replay cache size, 1 to [`REPLAY_ENTRIES_MAX`].
    pub replay_entries_max: usize,
    /// Certificates with payments tracked, 1 to [`SPEND_LEDGER_ENTRIES_MAX`].
    pub spend_ledger_entries_max: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            freshness_window_s: FRESHNESS_WINDOW_S_DEFAULT,
            replay_entries_max: REPLAY_ENTRIES_MAX,
            spend_ledger_entries_max: SPEND_LEDGER_ENTRIES_MAX,
        }
    }
}

/// A verifier setting out of its bounds.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("freshness window {0} s is above the {FRESHNESS_WINDOW_S_MAX} s maximum")]
    FreshnessWindow(u32),
    #[error("replay cache of {0} entries is outside 1..={REPLAY_ENTRIES_MAX}")]
    ReplayEntries(usize),
    #[error("spend ledger of {0} entries is outside 1..={SPEND_LEDGER_ENTRIES_MAX}")]
    SpendLedgerEntries(usize),
}

type DenyList = Box<dyn Fn(&CardNumber) -> bool + Send + Sync>;

/// A terminal's offline verifier: provisioned root keys, a deny-list predicate, a replay cache
/// and per-certificate offline spend accounting.
pub struct Verifier {
    roots: RootKeys,
    config: VerifierConfig,
    deny_list: DenyList,
    replay: ReplayCache,
    ledger: SpendLedger,
}

impl Verifier {
    /// A verifier trusting `roots`, with an empty deny-list.
    pub fn new(roots: RootKeys, config: VerifierConfig) -> Result<Verifier, ConfigError> {
        if config.freshness_window_s > FRESHNESS_WINDOW_S_MAX {
            return Err(ConfigError::FreshnessWindow(config.freshness_window_s));
        }
        if !(1..=REPLAY_ENTRIES_MAX).contains(&config.replay_entries_max) {
            return Err(ConfigError::ReplayEntries(config.replay_entries_max));
        }
        if !(1..=SPEND_LEDGER_ENTRIES_MAX).contains(&config.spend_ledger_entries_max) {
            return Err(ConfigError::SpendLedgerEntries(
                config.spend_ledger_entries_max,
            ));
        }
        Ok(Verifier {
            roots,
            config,
            deny_list: Box::new(|_| false),
            replay: ReplayCache::new(config.replay_entries_max),
            ledger: SpendLedger::new(config.spend_ledger_entries_max),
        })
    }

    /// Sets the deny-list (hotlist): cards for which `denied` answers true are refused.
    pub fn set_deny_list(&mut self, denied: impl Fn(&CardNumber) -> bool + Send + Sync + 'static) {
        self.deny_list = Box::new(denied);
    }

    /// The provisioned root keys, e.g. to withdraw one after a parameter download.
    pub fn roots_mut(&mut self) -> &mut RootKeys {
        &mut self.roots
    }

    /// The settings.
    pub fn config(&self) -> VerifierConfig {
        self.config
    }

    /// Verifies scanned text at terminal clock `now` and, if accepted, records it (replay
    /// cache, and the payment against the certificate's offline limit).
    pub fn verify_text(
        &mut self,
        text: &str,
        now: u32,
        purpose: Purpose,
    ) -> Result<Accepted, Refusal> {
        let code = Code::parse_text(text)?;
        self.verify(&code, now, purpose)
    }

    /// Verifies a parsed code at terminal clock `now` and, if accepted, records it.
    pub fn verify(&mut self, code: &Code, now: u32, purpose: Purpose) -> Result<Accepted, Refusal> {
        self.replay.purge(now, self.config.freshness_window_s);
        self.ledger.purge(now);
        let accepted = self.check(code, now, purpose)?;
        self.replay
            .insert(accepted.card_number, accepted.sequence, accepted.code_time);
        if let Purpose::Pay { amount_fen } = purpose {
            let not_after = code.certificate().fields().not_after;
            self.ledger
                .record(certificate_digest(code), not_after, amount_fen);
        }
        Ok(accepted)
    }

    /// Runs steps 1–9 on scanned text without recording anything.
    pub fn check_text(&self, text: &str, now: u32, purpose: Purpose) -> Result<Accepted, Refusal> {
        let code = Code::parse_text(text)?;
        self.check(&code, now, purpose)
    }

    /// Runs steps 2–9 on a parsed code (step 1) without recording anything: the decision
    /// [`Verifier::verify`] would take.
    pub fn check(&self, code: &Code, now: u32, purpose: Purpose) -> Result<Accepted, Refusal> {
        let certificate = code.certificate();
        let fields = certificate.fields();

        // 2. Root key provisioned, not withdrawn; root signature valid.
        let root_key_id = certificate.root_key_id();
        let (root_key, withdrawn) = self
            .roots
            .get(root_key_id)
            .ok_or(Refusal::UnknownRoot(root_key_id))?;
        if withdrawn {
            return Err(Refusal::RootWithdrawn(root_key_id));
        }
        if !certificate.verify_root_signature(root_key) {
            return Err(Refusal::RootSignature);
        }

        // 3. not before <= code time <= not after. The terminal clock past `not after` is
        // refused here too: the spec's appendix expects "certificate expired" for a code made
        // inside the validity but shown after it, which the code time alone cannot give.
        // The terminal clock is not held against `not before`: a gate whose clock lags by
        // less than the window must still accept codes under a certificate just issued.
        if code.time() < fields.not_before {
            return Err(Refusal::NotYetValid);
        }
        if code.time() > fields.not_after || now > fields.not_after {
            return Err(Refusal::Expired);
        }

        // 4. |terminal clock - code time| <= window.
        let window = self.config.freshness_window_s;
        if now >= code.time() {
            let age_s = now - code.time();
            if age_s > window {
                return Err(Refusal::NotFresh(Staleness::Old { age_s }));
            }
        } else {
            let ahead_s = code.time() - now;
            if ahead_s > window {
                return Err(Refusal::NotFresh(Staleness::Future { ahead_s }));
            }
        }

        // 5. Device signature under the certified key.
        if !code.verify_device_signature() {
            return Err(Refusal::DeviceSignature);
        }

        // 6. Deny-list.
        let card_number = certificate.card_number();
        if (self.deny_list)(&card_number) {
            return Err(Refusal::DenyListed);
        }

        // 7. Replay within the window.
        if self
            .replay
            .contains(card_number, code.sequence(), code.time())
        {
            return Err(Refusal::Replay);
        }

        // 8. Payment against the offline limit, as accounted at this terminal.
        let mut offline_remaining_fen = None;
        if let Purpose::Pay { amount_fen } = purpose {
            let digest = certificate_digest(code);
            let spent_fen = self.ledger.spent_fen(&digest);
            let limit_fen = fields.offline_limit_fen;
            let after = spent_fen + u64::from(amount_fen);
            if after > u64::from(limit_fen) {
                return Err(Refusal::OverLimit {
                    amount_fen,
                    spent_fen,
                    limit_fen,
                });
            }
            if !self.ledger.has_room_for(&digest) {
                return Err(Refusal::SpendLedgerFull);
            }
            offline_remaining_fen = Some(u64::from(limit_fen) - after);
        }

        // 9. Use allowed by the certificate.
        if !fields.uses.contains(purpose.use_bit()) {
            return Err(Refusal::UseNotAllowed(purpose.use_bit()));
        }

        Ok(Accepted {
            card_number,
            root_key_id,
            code_time: code.time(),
            sequence: code.sequence(),
            purpose,
            offline_remaining_fen,
        })
    }

    /// Codes remembered against replay.
    pub fn replay_entries(&self) -> usize {
        self.replay.len()
    }

    /// Certificates with payments accounted.
    pub fn spend_ledger_entries(&self) -> usize {
        self.ledger.len()
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("roots", &self.roots.ids().collect::<Vec<_>>())
            .field("config", &self.config)
            .field("replay_entries", &self.replay.len())
            .field("spend_ledger_entries", &self.ledger.len())
            .finish_non_exhaustive()
    }
}

fn certificate_digest(code: &Code) -> CertificateDigest {
    crypto::sm3(code.certificate().signed_bytes())
}
