//! Card production and counter work (issue 4, items 3 and 8), wired through storage: service
//! outlets and the clerks assigned to them; production batches (approved cards → in
//! production, the personalization file with card keys wrapped under the transport key, the
//! card bureau's result file, distribution to outlets); stock per outlet; the counter acts
//! (hand-over, lost report, replacement, instant issuance with a card writer) journaled with
//! outlet, clerk, card, fee and time in the same transaction as the card change; the daily
//! journal and its reconciliation against the cash the clerk declares.
//!
//! Every card change goes through `issuance::transition`, exactly as `card_action` does.
//! The pure formats live in `issuance::production`; this module adds storage, keys, the clock
//! and who may do what. Fees are journaled in fen only; the ledger posts them (see
//! [`Platform::counter_apply`]).

use crate::cards::{CardView, actor_of, change_of, row_to_card};
use crate::{Caller, Platform, PlatformError, Result};
use chip::{BcdDate, CardNumber, CardType};
use crypto::{Algorithm, Key16};
use issuance::production::{
    BatchHeader, BatchId, BureauConfig, CardRecord, ChipSerial, FileError, HOLDER_NAME_LEN_MAX,
    Outcome, emulate_bureau, profile_name, read_results, write_batch,
};
use issuance::{
    Action, Actor, CardState, ClerkId, Command, LifecyclePolicy, OutletId, Reason, Timestamp,
    transition,
};
use keys::master::{KeyRef, MasterKeyStore, MasterPurpose};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use store::{
    BATCH_CREATE_MAX, BatchCardRow, BatchOutcome, BatchRow, CardChange, CardRow, ChipRow,
    ClosingRow, CounterAct, JournalEntry, NewBatch, NewClosing, NewOutlet, OutletRow, Role,
    StoreError,
};

/// Version of the transit purchase, load and TAC master keys batches are diversified from.
pub const KEY_VERSION: u8 = 1;
/// Years a produced card is valid (EF15: start + 10 years).
pub const VALIDITY_YEARS: u16 = 10;
/// Cards read per storage call while building or exporting a batch.
const BATCH_PAGE: u32 = 5_000;
/// Cash a clerk may declare for one day, at most (1,000,000 yuan).
pub const DECLARED_FEN_MAX: i64 = 100_000_000;
/// Characters of an outlet code, at most.
pub const OUTLET_CODE_LEN_MAX: usize = 16;
/// Characters of an outlet name or address, at most.
pub const OUTLET_TEXT_LEN_MAX: usize = 200;

/// The transport key personalization data is wrapped under.
pub fn transport_key() -> KeyRef {
    KeyRef::transit(MasterPurpose::Transport, 1)
}

/// What a counter act costs the holder, in fen (the outlet takes it in cash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Fees {
    pub card_issued_fen: i64,
    pub instant_issued_fen: i64,
    pub lost_report_fen: i64,
    /// 补卡工本费.
    pub replacement_fen: i64,
}

/// The fee schedule: a first card and a lost report are free, a replacement costs 20 yuan.
pub const FEES: Fees = Fees {
    card_issued_fen: 0,
    instant_issued_fen: 0,
    lost_report_fen: 0,
    replacement_fen: 2_000,
};

/// `B000001` for batch 1: the id both production files carry.
pub fn batch_code(id: i64) -> String {
    format!("B{id:06}")
}

/// Accepts `B000001`, `b1` or `1`.
pub fn parse_batch(text: &str) -> Result<i64> {
    let digits = text.trim().trim_start_matches(['B', 'b']);
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            PlatformError::invalid("batch", format!("{text:?} is not a batch id like B000001"))
        })
}

/// 2 to 16 characters `A-Z 0-9 -`, upper-cased.
pub fn parse_outlet_code(text: &str) -> Result<String> {
    let code = text.trim().to_ascii_uppercase();
    let ok = (2..=OUTLET_CODE_LEN_MAX).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(code)
    } else {
        Err(PlatformError::invalid(
            "code",
            format!("an outlet code is 2 to {OUTLET_CODE_LEN_MAX} characters A-Z 0-9 -"),
        ))
    }
}

fn check_text(field: &str, text: &str) -> Result<String> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > OUTLET_TEXT_LEN_MAX || t.chars().any(char::is_control) {
        return Err(PlatformError::invalid(
            field,
            format!("1 to {OUTLET_TEXT_LEN_MAX} characters without control characters"),
        ));
    }
    Ok(t.to_string())
}

/// Parses `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Result<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text.trim(), &format)
        .map_err(|_| PlatformError::invalid("date", format!("{text:?} is not YYYY-MM-DD")))
}

fn day_text(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The city's business day of a moment.
fn business_day(ms: i64) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(crate::clock::CST)
        .date()
}

fn bcd(d: time::Date) -> Result<BcdDate> {
    BcdDate::new(d.year() as u16, u8::from(d.month()), d.day())
        .map_err(|e| PlatformError::Unexpected(format!("date: {e}")))
}

fn bcd_text(d: BcdDate) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

/// The end of a card's expiry day in the city, as the life cycle's `valid_until`.
fn valid_until(expiry: BcdDate) -> Result<Timestamp> {
    let date = time::Date::from_calendar_date(
        i32::from(expiry.year()),
        time::Month::try_from(expiry.month())
            .map_err(|e| PlatformError::Unexpected(format!("expiry month: {e}")))?,
        expiry.day(),
    )
    .map_err(|e| PlatformError::Unexpected(format!("expiry date: {e}")))?;
    let next = date
        .next_day()
        .ok_or_else(|| PlatformError::Unexpected("expiry date at the end of time".into()))?;
    Ok(Timestamp(
        next.midnight()
            .assume_offset(crate::clock::CST)
            .unix_timestamp(),
    ))
}

fn card_type(name: &str) -> Result<CardType> {
    Ok(match name {
        "ordinary" => CardType::Ordinary,
        "student" => CardType::Student,
        "senior" => CardType::Senior,
        "disabled" => CardType::Disabled,
        "employee" => CardType::Employee,
        "temporary" => CardType::Temporary,
        other => {
            return Err(PlatformError::Unexpected(format!(
                "stored card type {other:?}"
            )));
        }
    })
}

fn parse_algorithm(text: &str) -> Result<Algorithm> {
    match text.to_ascii_uppercase().as_str() {
        "3DES" | "TDES" => Ok(Algorithm::Tdes),
        "SM4" => Ok(Algorithm::Sm4),
        _ => Err(PlatformError::invalid("algorithm", "3DES or SM4")),
    }
}

/// Whether the bureau can print this name (the file's rules; the chip's GBK limit is the
/// bureau's check, reported back as a failure).
fn printable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= HOLDER_NAME_LEN_MAX
        && !name.chars().any(|c| c == '|' || c.is_control())
}

/// Store conflicts carry their own sentences here (the generic mapping says "already exists").
fn stored(e: StoreError) -> PlatformError {
    match e {
        StoreError::Conflict(m) => PlatformError::Conflict(m),
        e => e.into(),
    }
}

fn sm3_hex(bytes: &[u8]) -> String {
    use sm3::Digest;
    hex::encode_upper(sm3::Sm3::digest(bytes))
}

// ---------------------------------------------------------------------------------------
// Views

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutletView {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub address: String,
    pub active: bool,
    /// Usernames of the clerks assigned here.
    pub clerks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchView {
    /// `B000001`.
    pub id: String,
    /// created, exported, imported
    pub state: String,
    pub algorithm: String,
    pub transport_key: String,
    pub card_count: i64,
    pub start_date: String,
    pub expiry_date: String,
    pub exports: i64,
    pub export_digest: Option<String>,
    pub import_digest: Option<String>,
    pub produced: i64,
    pub failed: i64,
    pub distributed: i64,
    pub created_ms: i64,
    pub created_by: String,
}

impl From<BatchRow> for BatchView {
    fn from(b: BatchRow) -> Self {
        BatchView {
            id: batch_code(b.id),
            state: b.state,
            algorithm: b.algorithm,
            transport_key: b.transport_key,
            card_count: b.card_count,
            start_date: b.start_date,
            expiry_date: b.expiry_date,
            exports: b.exports,
            export_digest: b.export_digest,
            import_digest: b.import_digest,
            produced: b.produced,
            failed: b.failed,
            distributed: b.distributed,
            created_ms: b.created_ms,
            created_by: b.created_by,
        }
    }
}

/// A batch just created, with the approved cards left out and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchCreated {
    pub batch: BatchView,
    /// Approved cards skipped because the holder has no printable name on record.
    pub skipped_unprintable: u32,
}

/// A personalization file, ready to hand to the bureau.
#[derive(Clone, PartialEq, Eq)]
pub struct ExportedFile {
    pub batch: String,
    pub card_count: u32,
    /// SM3 of the whole file, upper-case hex (also the file's trailer digest of its body).
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for ExportedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedFile")
            .field("batch", &self.batch)
            .field("card_count", &self.card_count)
            .field("digest", &self.digest)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub batch: BatchView,
    pub produced: u32,
    /// Card number and the bureau's reason, for each failed card (back to `approved`).
    pub failed: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DistributeReport {
    pub batch: String,
    pub outlet: String,
    pub delivered: u32,
    /// Produced cards of the batch still waiting for distribution.
    pub remaining: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StockView {
    pub outlet: OutletView,
    /// Cards delivered to (or issued at) the outlet, by their current state.
    pub by_state: BTreeMap<String, i64>,
    /// Cards waiting for collection (at most [`store::PAGE_MAX`]), holders masked.
    pub waiting: Vec<CardView>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JournalLine {
    pub at_ms: i64,
    pub clerk: String,
    pub act: String,
    pub card_number: Option<String>,
    pub fee_fen: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClosingView {
    pub acts: i64,
    pub expected_fen: i64,
    pub declared_fen: i64,
    /// Declared minus expected: positive over, negative short.
    pub difference_fen: i64,
    pub balanced: bool,
    pub closed_by: String,
    pub closed_ms: i64,
}

impl From<ClosingRow> for ClosingView {
    fn from(c: ClosingRow) -> Self {
        ClosingView {
            acts: c.acts,
            expected_fen: c.expected_fen,
            declared_fen: c.declared_fen,
            difference_fen: c.difference_fen,
            balanced: c.difference_fen == 0,
            closed_by: c.closed_by,
            closed_ms: c.closed_ms,
        }
    }
}

/// One outlet's counter day: every act, the counts by act, the fees taken, the closing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JournalView {
    pub outlet: String,
    pub date: String,
    pub lines: Vec<JournalLine>,
    pub counts: BTreeMap<String, i64>,
    pub fees_fen: i64,
    pub closing: Option<ClosingView>,
}

/// A card personalized and handed over on the spot.
#[derive(Debug, Clone)]
pub struct InstantIssue {
    pub card: CardView,
    pub chip_serial: String,
    /// The chip as the writer made it (the emulator's `CardImage`).
    pub chip: chip::Card,
}

/// A replacement at the counter: the old card and its successor's number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replacement {
    pub card: CardView,
    pub successor: String,
    pub fee_fen: i64,
}

// ---------------------------------------------------------------------------------------
// Card writers

/// Personalizes one chip from a one-card personalization file, as the outlet's card writer
/// does: it holds the transport key (by key ceremony), unwraps and checks the card keys, and
/// answers with the chip's serial and the chip.
pub trait CardWriter: Send + Sync {
    fn write(
        &self,
        personalization: &[u8],
    ) -> std::result::Result<(ChipSerial, chip::Card), String>;
}

/// The card writer emulated by the bureau emulator (`issuance::production::emulate_bureau`).
/// `Debug` masks the transport key.
pub struct EmulatedWriter {
    transport_key: Key16,
    initial_pin: String,
    next_serial: AtomicU64,
}

impl std::fmt::Debug for EmulatedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedWriter")
            .field("next_serial", &self.next_serial)
            .finish_non_exhaustive()
    }
}

impl EmulatedWriter {
    pub fn new(transport_key: Key16, serial_first: u64, initial_pin: &str) -> Self {
        EmulatedWriter {
            transport_key,
            initial_pin: initial_pin.into(),
            next_serial: AtomicU64::new(serial_first),
        }
    }
}

impl CardWriter for EmulatedWriter {
    fn write(
        &self,
        personalization: &[u8],
    ) -> std::result::Result<(ChipSerial, chip::Card), String> {
        let config = BureauConfig {
            transport_key: self.transport_key.clone(),
            serial_first: self.next_serial.fetch_add(1, Ordering::SeqCst),
            initial_pin: self.initial_pin.clone(),
            fail: Vec::new(),
        };
        let run =
            emulate_bureau(personalization, &config, std::io::sink()).map_err(|e| e.to_string())?;
        if let Some((_, reason)) = run.failed.into_iter().next() {
            return Err(reason);
        }
        let p = run
            .produced
            .into_iter()
            .next()
            .ok_or_else(|| "the writer produced no card".to_string())?;
        Ok((p.serial, p.card))
    }
}

// ---------------------------------------------------------------------------------------

fn admin_only(caller: &Caller, what: &str) -> Result<()> {
    if caller.role != Role::Administrator {
        return Err(PlatformError::Forbidden(format!(
            "only administrators {what}; the {} role may not",
            caller.role.as_str()
        )));
    }
    Ok(())
}

fn reader(caller: &Caller) -> Result<()> {
    if !matches!(
        caller.role,
        Role::Administrator | Role::Auditor | Role::CounterClerk
    ) {
        return Err(PlatformError::Forbidden(format!(
            "the {} role does not see production and counter work",
            caller.role.as_str()
        )));
    }
    Ok(())
}

/// One planned transition of a card held in memory: the next row and what it writes.
struct Planned {
    change: CardChange,
    drafts: Vec<audit::Draft>,
}

fn plan(
    caller: &Caller,
    row: &CardRow,
    action: Action,
    reason: Reason,
    actor: Actor,
    now_ms: i64,
) -> Result<Planned> {
    let card = row_to_card(row)?;
    let t = transition(
        &card,
        &Command::new(action, reason, actor),
        Timestamp(now_ms.div_euclid(1000)),
        &LifecyclePolicy::default(),
    )
    .map_err(|e| PlatformError::Conflict(format!("card {}: {e}", row.number)))?;
    let (change, drafts) = change_of(caller, row, &t, reason, now_ms)?;
    Ok(Planned { change, drafts })
}

/// Chains transitions on one card: each starts from the row the previous one wrote.
fn plan_chain(
    caller: &Caller,
    row: &CardRow,
    steps: &[(Action, Reason, Actor)],
    now_ms: i64,
) -> Result<(Vec<CardChange>, Vec<audit::Draft>)> {
    let mut current = row.clone();
    let mut changes = Vec::new();
    let mut drafts = Vec::new();
    for (action, reason, actor) in steps {
        let p = plan(caller, &current, *action, *reason, *actor, now_ms)?;
        current = p.change.card.clone();
        changes.push(p.change);
        drafts.extend(p.drafts);
    }
    Ok((changes, drafts))
}

impl Platform {
    /// Attaches the card company's master-key store (file or HSM): batch export and instant
    /// issuance diversify and wrap card keys through it.
    /// This handle (and its clones) use `keys`, whatever other handles use.
    pub fn with_master_keys(mut self, keys: Arc<dyn MasterKeyStore>) -> Self {
        self.masters = Arc::new(std::sync::OnceLock::from(keys));
        self
    }

    /// The holder's ID number for the personalization file (sealed there under the transport
    /// key); callers audit the read with the export or the issuance.
    fn holder_id(&self, id_blind: &keys::BlindIndex, sealed: &[u8]) -> Result<String> {
        Ok(self
            .vault
            .open_string(&crate::residents::ctx(id_blind, "id_number"), sealed)?)
    }

    fn holder_name(&self, id_blind: &keys::BlindIndex, sealed: &Option<Vec<u8>>) -> Result<String> {
        Ok(sealed
            .as_ref()
            .map(|s| {
                self.vault
                    .open_string(&crate::residents::ctx(id_blind, "name"), s)
            })
            .transpose()?
            .unwrap_or_default())
    }

    // -- outlets and clerks ------------------------------------------------------------------

    pub async fn outlet_create(
        &self,
        caller: &Caller,
        code: &str,
        name_zh: &str,
        name_en: &str,
        address: &str,
    ) -> Result<OutletView> {
        admin_only(caller, "open service outlets")?;
        let outlet = NewOutlet {
            code: parse_outlet_code(code)?,
            name_zh: check_text("name_zh", name_zh)?,
            name_en: check_text("name_en", name_en)?,
            address: check_text("address", address)?,
        };
        let now = self.clock.now_ms();
        let row = self
            .store
            .outlet_create(
                &outlet,
                caller.draft(
                    "outlet.create",
                    format!("outlet:{}", outlet.code),
                    outlet.name_en.clone(),
                ),
                now,
            )
            .await?;
        self.outlet_view(row).await
    }

    async fn outlet_view(&self, row: OutletRow) -> Result<OutletView> {
        Ok(OutletView {
            clerks: self.store.outlet_clerks(row.id).await?,
            code: row.code,
            name_zh: row.name_zh,
            name_en: row.name_en,
            address: row.address,
            active: row.active,
        })
    }

    pub async fn outlets(&self, caller: &Caller) -> Result<Vec<OutletView>> {
        reader(caller)?;
        let mut out = Vec::new();
        for row in self.store.outlets_list().await? {
            out.push(self.outlet_view(row).await?);
        }
        Ok(out)
    }

    async fn outlet_row(&self, code: &str) -> Result<OutletRow> {
        let code = parse_outlet_code(code)?;
        self.store
            .outlet_by_code(&code)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("outlet {code}")))
    }

    /// Opens or closes an outlet; a closed outlet takes no deliveries and no counter acts.
    pub async fn outlet_set_active(
        &self,
        caller: &Caller,
        code: &str,
        active: bool,
    ) -> Result<OutletView> {
        admin_only(caller, "open and close service outlets")?;
        let o = self.outlet_row(code).await?;
        let action = if active {
            "outlet.open"
        } else {
            "outlet.close"
        };
        self.store
            .outlet_set_active(
                o.id,
                active,
                caller.draft(action, format!("outlet:{}", o.code), ""),
                self.clock.now_ms(),
            )
            .await?;
        let row = self
            .store
            .outlet_by_id(o.id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("outlet {}", o.code)))?;
        self.outlet_view(row).await
    }

    /// Assigns a counter clerk (an operator with that role) to an outlet.
    pub async fn clerk_assign(
        &self,
        caller: &Caller,
        code: &str,
        username: &str,
    ) -> Result<OutletView> {
        admin_only(caller, "assign clerks to outlets")?;
        let o = self.outlet_row(code).await?;
        let op = self
            .store
            .operator_by_username(username)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("operator {username}")))?;
        if op.role != Role::CounterClerk {
            return Err(PlatformError::invalid(
                "username",
                format!("{username} is a {}, not a counter clerk", op.role.as_str()),
            ));
        }
        self.store
            .clerk_assign(
                op.id,
                o.id,
                caller.draft(
                    "outlet.assign_clerk",
                    format!("outlet:{}", o.code),
                    format!("clerk {username}"),
                ),
                self.clock.now_ms(),
            )
            .await?;
        self.outlet_view(o).await
    }

    /// Opens outlet `code` with clerk `clerk` assigned, whichever of the three already exist
    /// (the demo city and test fixtures).
    pub async fn ensure_outlet_with_clerk(
        &self,
        caller: &Caller,
        code: &str,
        clerk: &str,
        clerk_password: &str,
    ) -> Result<Caller> {
        let o = match self.store.outlet_by_code(code).await? {
            Some(o) => o,
            None => {
                self.outlet_create(
                    caller,
                    code,
                    "金水服务网点",
                    "Jinshui service outlet",
                    "金水路 1 号",
                )
                .await?;
                self.outlet_row(code).await?
            }
        };
        let op = match self.store.operator_by_username(clerk).await? {
            Some(op) => op,
            None => {
                self.create_operator(
                    caller,
                    crate::operators::OperatorRequest {
                        username: clerk.into(),
                        display_name: clerk.into(),
                        password: clerk_password.into(),
                        role: Role::CounterClerk,
                        department: None,
                    },
                )
                .await?;
                self.store
                    .operator_by_username(clerk)
                    .await?
                    .ok_or_else(|| PlatformError::Unexpected(format!("operator {clerk}")))?
            }
        };
        if self.store.clerk_outlet(op.id).await?.map(|x| x.id) != Some(o.id) {
            self.clerk_assign(caller, code, clerk).await?;
        }
        self.clerk_caller(clerk, &caller.origin).await
    }

    /// The whole production path for every approved card, with the emulated card bureau (the
    /// demo city and test fixtures; a real bureau works on the exported file offline): a batch,
    /// its personalization file, [`emulate_bureau`] holding `bureau_transport` (the transport
    /// key as the bureau got it by key ceremony), the result file imported, the produced cards
    /// distributed to `outlet`. Returns the batch id, or `None` when no card was approved.
    pub async fn produce_with_emulated_bureau(
        &self,
        caller: &Caller,
        outlet: &str,
        bureau_transport: &Key16,
        serial_first: u64,
    ) -> Result<Option<String>> {
        let created = match self
            .create_batch(caller, store::BATCH_CREATE_MAX, "3DES")
            .await
        {
            Ok(c) => c,
            Err(PlatformError::Conflict(m)) if m.starts_with("no approved card") => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let batch = created.batch.id;
        let file = self.export_batch(caller, &batch).await?;
        let config = BureauConfig {
            transport_key: bureau_transport.clone(),
            serial_first,
            initial_pin: "123456".into(),
            fail: Vec::new(),
        };
        let mut results = Vec::new();
        emulate_bureau(file.bytes.as_slice(), &config, &mut results)
            .map_err(|e| PlatformError::Unexpected(format!("emulated bureau: {e}")))?;
        self.import_results(caller, &batch, &results).await?;
        self.distribute_batch(caller, &batch, outlet, None).await?;
        Ok(Some(batch))
    }

    /// The caller as the counter clerk `username` (for the command line, which is trusted
    /// with the data directory and acts in a named clerk's place).
    pub async fn clerk_caller(&self, username: &str, origin: &str) -> Result<Caller> {
        let op = self
            .store
            .operator_by_username(username)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("operator {username}")))?;
        if op.role != Role::CounterClerk || op.disabled {
            return Err(PlatformError::Forbidden(format!(
                "{username} is not an active counter clerk"
            )));
        }
        Ok(Caller {
            operator_id: Some(op.id),
            username: op.username,
            role: op.role,
            department: None,
            origin: origin.into(),
        })
    }

    /// The outlet `caller` works at, which must be `outlet`: a clerk acts only at its own.
    async fn clerk_at(&self, caller: &Caller, outlet: &OutletRow) -> Result<i64> {
        let id = match (caller.role, caller.operator_id) {
            (Role::CounterClerk, Some(id)) => id,
            _ => {
                return Err(PlatformError::Forbidden(format!(
                    "counter work is done by counter clerks; the {} role may not",
                    caller.role.as_str()
                )));
            }
        };
        let at = self.store.clerk_outlet(id).await?.ok_or_else(|| {
            PlatformError::Forbidden(format!(
                "clerk {} is not assigned to any outlet",
                caller.username
            ))
        })?;
        if at.id != outlet.id {
            return Err(PlatformError::Forbidden(format!(
                "clerk {} works at outlet {}, not at {}",
                caller.username, at.code, outlet.code
            )));
        }
        if !outlet.active {
            return Err(PlatformError::Conflict(format!(
                "outlet {} is closed",
                outlet.code
            )));
        }
        Ok(id)
    }

    /// Readers see every outlet; a clerk only its own.
    async fn may_see_outlet(&self, caller: &Caller, outlet: &OutletRow) -> Result<()> {
        reader(caller)?;
        if caller.role == Role::CounterClerk {
            let own = match caller.operator_id {
                Some(id) => self.store.clerk_outlet(id).await?,
                None => None,
            };
            if own.map(|o| o.id) != Some(outlet.id) {
                return Err(PlatformError::Forbidden(format!(
                    "clerk {} sees only its own outlet, not {}",
                    caller.username, outlet.code
                )));
            }
        }
        Ok(())
    }

    // -- batches -----------------------------------------------------------------------------

    async fn batch_row(&self, batch: &str) -> Result<BatchRow> {
        let id = parse_batch(batch)?;
        self.store
            .batch_by_id(id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("batch {}", batch_code(id))))
    }

    pub async fn batch(&self, caller: &Caller, batch: &str) -> Result<BatchView> {
        reader(caller)?;
        Ok(self.batch_row(batch).await?.into())
    }

    pub async fn batches(&self, caller: &Caller, limit: u32) -> Result<Vec<BatchView>> {
        reader(caller)?;
        Ok(self
            .store
            .batches_recent(limit)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    async fn all_batch_cards(&self, id: i64) -> Result<Vec<BatchCardRow>> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.store.batch_cards(id, after, BATCH_PAGE).await?;
            let n = page.len();
            if let Some(last) = page.last() {
                after = last.idx;
            }
            out.extend(page);
            if n < BATCH_PAGE as usize {
                return Ok(out);
            }
        }
    }

    /// Puts up to `max` approved cards (in card-number order) into a new production batch:
    /// every card goes to `in_production` through the state machine, in one transaction with
    /// the batch and one audit entry per card. Cards whose holder has no printable name on
    /// record are left approved and counted.
    pub async fn create_batch(
        &self,
        caller: &Caller,
        max: u32,
        algorithm: &str,
    ) -> Result<BatchCreated> {
        admin_only(caller, "create production batches")?;
        if !(1..=BATCH_CREATE_MAX).contains(&max) {
            return Err(PlatformError::invalid(
                "max",
                format!("a batch holds 1 to {BATCH_CREATE_MAX} cards"),
            ));
        }
        let alg = parse_algorithm(algorithm)?;
        let actor = actor_of(caller)?;
        let now = self.clock.now_ms();
        let mut changes = Vec::new();
        let mut drafts = Vec::new();
        let mut skipped = 0u32;
        let mut after = String::new();
        'pages: loop {
            let page = self.store.production_candidates(&after, BATCH_PAGE).await?;
            let n = page.len();
            for c in page {
                after = c.card.number.clone();
                if !printable(&self.holder_name(&c.id_blind, &c.name_sealed)?) {
                    skipped += 1;
                    continue;
                }
                let p = plan(
                    caller,
                    &c.card,
                    Action::SendToProduction,
                    Reason::Routine,
                    actor,
                    now,
                )?;
                changes.push(p.change);
                drafts.extend(p.drafts);
                if changes.len() == max as usize {
                    break 'pages;
                }
            }
            if n < BATCH_PAGE as usize {
                break;
            }
        }
        if changes.is_empty() {
            return Err(PlatformError::Conflict(format!(
                "no approved card is waiting for production{}",
                if skipped > 0 {
                    format!(" ({skipped} approved card(s) have no printable holder name)")
                } else {
                    String::new()
                }
            )));
        }
        let start = bcd(self.clock.today())?;
        let expiry = start
            .plus_years(VALIDITY_YEARS)
            .map_err(|e| PlatformError::Unexpected(format!("expiry: {e}")))?;
        drafts.push(caller.draft(
            "batch.create",
            "batch:new",
            format!(
                "{} card(s) approved -> in_production, profile {}, {skipped} skipped without a printable name",
                changes.len(),
                profile_name(alg)
            ),
        ));
        let row = self
            .store
            .batch_create(
                &NewBatch {
                    algorithm: profile_name(alg).into(),
                    key_version: i64::from(KEY_VERSION),
                    transport_key: transport_key().label(),
                    start_date: bcd_text(start),
                    expiry_date: bcd_text(expiry),
                    created_by: caller.actor(),
                },
                &changes,
                drafts,
                now,
            )
            .await
            .map_err(stored)?;
        Ok(BatchCreated {
            batch: row.into(),
            skipped_unprintable: skipped,
        })
    }

    /// The personalization file of a batch (`issuance::production` format): per card the
    /// number, type, printed name, validity and DPK/DLK/DTK diversified in the master-key store
    /// and wrapped under the transport key — never a key in clear. Exporting again gives the
    /// same bytes. Audited (the file carries holder names).
    pub async fn export_batch(&self, caller: &Caller, batch: &str) -> Result<ExportedFile> {
        admin_only(caller, "export personalization data")?;
        let row = self.batch_row(batch).await?;
        let code = batch_code(row.id);
        if row.state == "imported" {
            return Err(PlatformError::Conflict(format!(
                "batch {code} is already produced (results imported); its personalization \
                 file is no longer issued"
            )));
        }
        let keys = self.master_keys()?.clone();
        let alg = parse_algorithm(&row.algorithm)?;
        let start = BcdDate::parse(&row.start_date)
            .map_err(|e| PlatformError::Unexpected(format!("batch start date: {e}")))?;
        let expiry = BcdDate::parse(&row.expiry_date)
            .map_err(|e| PlatformError::Unexpected(format!("batch expiry date: {e}")))?;
        let mut records = Vec::with_capacity(row.card_count as usize);
        for c in self.all_batch_cards(row.id).await? {
            records.push(CardRecord {
                card_number: CardNumber::parse(&c.card.number)
                    .map_err(|e| PlatformError::Unexpected(format!("stored card number: {e}")))?,
                card_type: card_type(&c.card.card_type)?,
                holder_name: self.holder_name(&c.id_blind, &c.name_sealed)?,
                id_number: self.holder_id(&c.id_blind, &c.id_sealed)?,
                start_date: start,
                expiry_date: expiry,
            });
        }
        let header = BatchHeader {
            batch_id: BatchId::parse(&code)
                .map_err(|e| PlatformError::Unexpected(format!("batch id: {e}")))?,
            card_count: u32::try_from(records.len())
                .map_err(|_| PlatformError::Unexpected("batch too large".into()))?,
            key_version: KEY_VERSION,
            transport: KeyRef::parse(&row.transport_key)
                .map_err(|e| PlatformError::Unexpected(format!("transport key: {e}")))?,
            algorithm: alg,
            maintained: maintained_apps(&*keys)?,
        };
        // Diversifying and wrapping 3 keys per card is CPU work: off the async threads.
        let bytes = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(records.len() * 220);
            write_batch(&mut out, &header, records.into_iter(), &*keys).map(|_| out)
        })
        .await
        .map_err(|e| PlatformError::Unexpected(format!("export thread: {e}")))?
        .map_err(|e| PlatformError::Conflict(format!("batch {code} cannot be exported: {e}")))?;
        let digest = sm3_hex(&bytes);
        self.store
            .batch_exported(
                row.id,
                &digest,
                caller.draft(
                    "batch.export",
                    format!("batch:{code}"),
                    format!(
                        "{} card(s): printed holder names, ID numbers sealed and card keys \
                         wrapped under {} to the card bureau; file SM3 {digest}",
                        row.card_count, row.transport_key
                    ),
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(stored)?;
        Ok(ExportedFile {
            batch: code,
            card_count: header_count(row.card_count),
            digest,
            bytes,
        })
    }

    /// Imports the bureau's result file for a batch: produced cards get their chip serial and
    /// validity, failed ones go back to `approved` for a later batch. The whole file is
    /// refused — and nothing changes — when it is for another batch, damaged or truncated, has
    /// a bad row, misses a card, or when the batch was already imported.
    pub async fn import_results(
        &self,
        caller: &Caller,
        batch: &str,
        file: &[u8],
    ) -> Result<ImportReport> {
        admin_only(caller, "import production results")?;
        let row = self.batch_row(batch).await?;
        let code = batch_code(row.id);
        let digest = sm3_hex(file);
        match row.state.as_str() {
            "created" => {
                return Err(PlatformError::Conflict(format!(
                    "batch {code} was never exported: there can be no results for it yet"
                )));
            }
            "imported" => {
                return Err(PlatformError::Conflict(format!(
                    "batch {code} was already imported (result file SM3 {}); a second import \
                     is refused and changes nothing",
                    row.import_digest.as_deref().unwrap_or("?")
                )));
            }
            _ => {}
        }
        let cards = self.all_batch_cards(row.id).await?;
        let numbers: Vec<CardNumber> = cards
            .iter()
            .map(|c| CardNumber::parse(&c.card.number))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| PlatformError::Unexpected(format!("stored card number: {e}")))?;
        let batch_id = BatchId::parse(&code)
            .map_err(|e| PlatformError::Unexpected(format!("batch id: {e}")))?;
        let import = read_results(file, &batch_id, &numbers).map_err(|e| match e {
            FileError::BatchMismatch { found, .. } => PlatformError::invalid(
                "file",
                format!("the result file is for batch {found}, not {code}; nothing imported"),
            ),
            e => PlatformError::invalid(
                "file",
                format!("the result file is refused ({e}); nothing imported"),
            ),
        })?;
        if let Some(first) = import.rejects.first() {
            return Err(PlatformError::invalid(
                "file",
                format!(
                    "{} row(s) of the result file are wrong (first: line {}: {}); nothing imported",
                    import.rejects.len(),
                    first.line,
                    first.reason
                ),
            ));
        }
        if let Some(first) = import.unresolved.first() {
            return Err(PlatformError::invalid(
                "file",
                format!(
                    "{} card(s) of batch {code} have no result (first: {first}); nothing imported",
                    import.unresolved.len()
                ),
            ));
        }
        let expiry = BcdDate::parse(&row.expiry_date)
            .map_err(|e| PlatformError::Unexpected(format!("batch expiry date: {e}")))?;
        let valid_until = valid_until(expiry)?;
        let by_number: BTreeMap<&str, &BatchCardRow> =
            cards.iter().map(|c| (c.card.number.as_str(), c)).collect();
        let now = self.clock.now_ms();
        let mut outcomes = Vec::with_capacity(cards.len());
        let mut changes = Vec::with_capacity(cards.len());
        let mut drafts = Vec::with_capacity(cards.len() + 1);
        let mut failed = Vec::new();
        for accepted in &import.accepted {
            let number = accepted.row.card_number.to_string();
            let c = by_number.get(number.as_str()).ok_or_else(|| {
                PlatformError::Unexpected(format!("card {number} vanished from the batch"))
            })?;
            let (action, reason, outcome) = match &accepted.row.outcome {
                Outcome::Produced(serial) => (
                    Action::ProductionDone { valid_until },
                    Reason::Routine,
                    BatchOutcome {
                        number: number.clone(),
                        chip_serial: Some(serial.to_string()),
                        failure: None,
                    },
                ),
                Outcome::Failed(why) => {
                    failed.push((number.clone(), why.clone()));
                    (
                        Action::ProductionFailed,
                        Reason::ProductionFailure,
                        BatchOutcome {
                            number: number.clone(),
                            chip_serial: None,
                            failure: Some(why.clone()),
                        },
                    )
                }
            };
            let p = plan(caller, &c.card, action, reason, Actor::System, now)?;
            changes.push(p.change);
            drafts.extend(p.drafts);
            outcomes.push(outcome);
        }
        let produced = (outcomes.len() - failed.len()) as u32;
        drafts.push(caller.draft(
            "batch.import",
            format!("batch:{code}"),
            format!(
                "{produced} produced, {} failed; result file SM3 {digest}",
                failed.len()
            ),
        ));
        self.store
            .batch_import(row.id, &digest, &outcomes, &changes, drafts, now)
            .await
            .map_err(stored)?;
        Ok(ImportReport {
            batch: self.batch_row(&code).await?.into(),
            produced,
            failed,
        })
    }

    /// Delivers the produced cards of a batch (or the first `count` of them) to an outlet.
    pub async fn distribute_batch(
        &self,
        caller: &Caller,
        batch: &str,
        outlet: &str,
        count: Option<u32>,
    ) -> Result<DistributeReport> {
        admin_only(caller, "distribute produced cards")?;
        let row = self.batch_row(batch).await?;
        let code = batch_code(row.id);
        let o = self.outlet_row(outlet).await?;
        if !o.active {
            return Err(PlatformError::Conflict(format!(
                "outlet {} is closed and takes no deliveries",
                o.code
            )));
        }
        if row.state != "imported" {
            return Err(PlatformError::Conflict(format!(
                "batch {code} has no results yet: import the bureau's result file first"
            )));
        }
        let produced: Vec<BatchCardRow> = self
            .all_batch_cards(row.id)
            .await?
            .into_iter()
            .filter(|c| c.card.state == "produced")
            .collect();
        let take = count.map_or(produced.len(), |n| (n as usize).min(produced.len()));
        if take == 0 {
            return Err(PlatformError::Conflict(format!(
                "batch {code} has no produced card left to distribute"
            )));
        }
        let outlet_id = OutletId(
            u32::try_from(o.id).map_err(|_| PlatformError::Unexpected("outlet id".into()))?,
        );
        let now = self.clock.now_ms();
        let mut changes = Vec::with_capacity(take);
        let mut drafts = Vec::with_capacity(take + 1);
        for c in &produced[..take] {
            let p = plan(
                caller,
                &c.card,
                Action::DeliverToOutlet(outlet_id),
                Reason::Routine,
                Actor::System,
                now,
            )?;
            changes.push(p.change);
            drafts.extend(p.drafts);
        }
        drafts.push(caller.draft(
            "batch.distribute",
            format!("batch:{code}"),
            format!("{take} card(s) to outlet {}", o.code),
        ));
        self.store
            .batch_distribute(row.id, o.id, &changes, drafts, now)
            .await
            .map_err(stored)?;
        Ok(DistributeReport {
            batch: code,
            outlet: o.code,
            delivered: take as u32,
            remaining: (produced.len() - take) as u32,
        })
    }

    /// Stock at an outlet: its cards by state and the cards waiting for collection.
    pub async fn outlet_stock(&self, caller: &Caller, outlet: &str) -> Result<StockView> {
        let o = self.outlet_row(outlet).await?;
        self.may_see_outlet(caller, &o).await?;
        let by_state = self.store.outlet_stock(o.id).await?.into_iter().collect();
        let rows = self.store.outlet_waiting(o.id, "", store::PAGE_MAX).await?;
        self.audit(caller.draft(
            "outlet.stock",
            format!("outlet:{}", o.code),
            format!("{} waiting card(s), holders masked", rows.len()),
        ))
        .await?;
        let mut waiting = Vec::with_capacity(rows.len());
        for r in rows {
            waiting.push(self.masked_view(r).await?);
        }
        Ok(StockView {
            outlet: self.outlet_view(o).await?,
            by_state,
            waiting,
        })
    }

    // -- counter -----------------------------------------------------------------------------

    async fn card_row(&self, number: &str) -> Result<CardRow> {
        let n = CardNumber::parse(number)
            .map_err(|e| PlatformError::invalid("card_number", e.to_string()))?;
        self.store
            .card_by_number(&n.to_string())
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("card {n}")))
    }

    /// Writes a counter act: the card changes, the journal row (outlet, clerk, card, fee,
    /// time, business day), chip and stock rows and the audit entries, in one transaction.
    /// The ledger posting of the fee (debit the outlet's cash, credit fee income) belongs in
    /// this same transaction once the ledger exists.
    #[allow(clippy::too_many_arguments)]
    async fn counter_apply(
        &self,
        caller: &Caller,
        outlet: &OutletRow,
        clerk_id: i64,
        act: &str,
        card: &str,
        fee_fen: i64,
        changes: Vec<CardChange>,
        mut drafts: Vec<audit::Draft>,
        chip: Option<ChipRow>,
        stock: bool,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let day = day_text(business_day(now));
        // Phones are enrolled only on active cards and revoked by the storage when the card
        // leaves active (a lost report, a replacement): their audit entries go with it.
        if let Some(last) = changes.last() {
            drafts.extend(
                self.ecode_devices_leaving(caller, "active", &last.card)
                    .await?,
            );
        }
        drafts.push(caller.draft(
            &format!("counter.{act}"),
            format!("outlet:{}", outlet.code),
            format!("card {card}, fee {fee_fen} fen, business day {day}"),
        ));
        let act = CounterAct {
            changes,
            journal: JournalEntry {
                outlet_id: outlet.id,
                clerk_id,
                clerk: caller.username.clone(),
                business_day: day,
                act: act.into(),
                card_number: Some(card.into()),
                fee_fen,
                at_ms: now,
            },
            chip,
            stock: stock.then(|| (card.to_string(), outlet.id)),
        };
        self.store
            .counter_apply(&act, drafts, now)
            .await
            .map_err(stored)
    }

    /// Hands a card waiting at the clerk's outlet to its holder, who activates it there:
    /// at_outlet → issued → active, journaled as `card_issued`.
    pub async fn counter_hand_over(
        &self,
        caller: &Caller,
        outlet: &str,
        card: &str,
    ) -> Result<CardView> {
        let o = self.outlet_row(outlet).await?;
        let clerk = self.clerk_at(caller, &o).await?;
        let row = self.card_row(card).await?;
        let state = row_to_card(&row)?.state;
        if let CardState::AtOutlet(at) = state
            && i64::from(at.0) != o.id
        {
            let there = self
                .store
                .outlet_by_id(i64::from(at.0))
                .await?
                .map_or_else(|| at.0.to_string(), |x| x.code);
            return Err(PlatformError::Conflict(format!(
                "card {} waits at outlet {there}, not at {}",
                row.number, o.code
            )));
        }
        let who = Actor::Clerk(ClerkId(clerk as u32));
        let now = self.clock.now_ms();
        let (changes, drafts) = plan_chain(
            caller,
            &row,
            &[
                (Action::HandOver, Reason::Routine, who),
                (Action::Activate, Reason::HolderRequest, who),
            ],
            now,
        )?;
        let last = changes[changes.len() - 1].card.clone();
        self.counter_apply(
            caller,
            &o,
            clerk,
            "card_issued",
            &row.number,
            FEES.card_issued_fen,
            changes,
            drafts,
            None,
            false,
        )
        .await?;
        self.masked_view(last).await
    }

    /// A holder reports a card lost at the counter (挂失), journaled as `lost_report`.
    pub async fn counter_report_lost(
        &self,
        caller: &Caller,
        outlet: &str,
        card: &str,
    ) -> Result<CardView> {
        let o = self.outlet_row(outlet).await?;
        let clerk = self.clerk_at(caller, &o).await?;
        let row = self.card_row(card).await?;
        let who = Actor::Clerk(ClerkId(clerk as u32));
        let (changes, drafts) = plan_chain(
            caller,
            &row,
            &[(Action::ReportLost, Reason::Lost, who)],
            self.clock.now_ms(),
        )?;
        let last = changes[0].card.clone();
        self.counter_apply(
            caller,
            &o,
            clerk,
            "lost_report",
            &row.number,
            FEES.lost_report_fen,
            changes,
            drafts,
            None,
            false,
        )
        .await?;
        self.masked_view(last).await
    }

    /// Replaces a card at the counter (补卡): the old card is replaced and deny-listed, its
    /// successor starts at `approved` (for the next batch or instant issuance); the fee is
    /// journaled as `replacement`.
    pub async fn counter_replace(
        &self,
        caller: &Caller,
        outlet: &str,
        card: &str,
        reason: Reason,
    ) -> Result<Replacement> {
        let o = self.outlet_row(outlet).await?;
        let clerk = self.clerk_at(caller, &o).await?;
        let row = self.card_row(card).await?;
        let who = Actor::Clerk(ClerkId(clerk as u32));
        // Check the state machine before a number is taken, with any other number.
        let probe = [1u32, 2]
            .into_iter()
            .filter_map(|s| CardNumber::from_sequence(s).ok())
            .find(|n| n.to_string() != row.number)
            .ok_or_else(|| PlatformError::Unexpected("no probe card number".into()))?;
        plan(
            caller,
            &row,
            Action::Replace { successor: probe },
            reason,
            who,
            self.clock.now_ms(),
        )?;
        let seq = self.store.card_sequence_next().await?;
        let successor = CardNumber::from_sequence(seq)
            .map_err(|e| PlatformError::Unexpected(format!("card number sequence: {e}")))?;
        let (changes, drafts) = plan_chain(
            caller,
            &row,
            &[(Action::Replace { successor }, reason, who)],
            self.clock.now_ms(),
        )?;
        let last = changes[0].card.clone();
        self.counter_apply(
            caller,
            &o,
            clerk,
            "replacement",
            &row.number,
            FEES.replacement_fen,
            changes,
            drafts,
            None,
            false,
        )
        .await?;
        Ok(Replacement {
            card: self.masked_view(last).await?,
            successor: successor.to_string(),
            fee_fen: FEES.replacement_fen,
        })
    }

    /// Instant issuance (即时制卡): the clerk personalizes an approved card on the spot with
    /// the outlet's card writer and hands it over. The card goes through production in one
    /// step (in_production → produced → at_outlet → issued → active), its chip serial is
    /// recorded, and the act is journaled — all in one transaction after the chip is written.
    /// The writer gets a one-card personalization file, keys wrapped under the transport key.
    pub async fn instant_issue(
        &self,
        caller: &Caller,
        outlet: &str,
        card: &str,
        algorithm: &str,
        writer: &dyn CardWriter,
    ) -> Result<InstantIssue> {
        let o = self.outlet_row(outlet).await?;
        let clerk = self.clerk_at(caller, &o).await?;
        let alg = parse_algorithm(algorithm)?;
        let row = self.card_row(card).await?;
        let keys = self.master_keys()?.clone();
        let start = bcd(self.clock.today())?;
        let expiry = start
            .plus_years(VALIDITY_YEARS)
            .map_err(|e| PlatformError::Unexpected(format!("expiry: {e}")))?;
        let who = Actor::Clerk(ClerkId(clerk as u32));
        let outlet_id = OutletId(
            u32::try_from(o.id).map_err(|_| PlatformError::Unexpected("outlet id".into()))?,
        );
        let now = self.clock.now_ms();
        // Every step is checked before the chip is written.
        let (changes, drafts) = plan_chain(
            caller,
            &row,
            &[
                (Action::SendToProduction, Reason::Routine, Actor::System),
                (
                    Action::ProductionDone {
                        valid_until: valid_until(expiry)?,
                    },
                    Reason::Routine,
                    Actor::System,
                ),
                (Action::DeliverToOutlet(outlet_id), Reason::Routine, who),
                (Action::HandOver, Reason::Routine, who),
                (Action::Activate, Reason::HolderRequest, who),
            ],
            now,
        )?;
        let resident = self
            .store
            .resident_by_id(row.resident_id)
            .await?
            .ok_or_else(|| {
                PlatformError::Unexpected(format!("card {} has no resident", row.number))
            })?;
        let name = self.holder_name(&resident.id_blind, &resident.name_sealed)?;
        if !printable(&name) {
            return Err(PlatformError::Conflict(format!(
                "the holder of card {} has no printable name on record",
                row.number
            )));
        }
        let number = CardNumber::parse(&row.number)
            .map_err(|e| PlatformError::Unexpected(format!("stored card number: {e}")))?;
        let header = BatchHeader {
            batch_id: BatchId::parse(&format!("I{number}"))
                .map_err(|e| PlatformError::Unexpected(format!("batch id: {e}")))?,
            card_count: 1,
            key_version: KEY_VERSION,
            transport: transport_key(),
            algorithm: alg,
            maintained: maintained_apps(&*keys)?,
        };
        let record = CardRecord {
            card_number: number,
            card_type: card_type(&row.card_type)?,
            holder_name: name,
            id_number: self.holder_id(&resident.id_blind, &resident.id_sealed)?,
            start_date: start,
            expiry_date: expiry,
        };
        let mut file = Vec::new();
        write_batch(&mut file, &header, std::iter::once(record), &*keys).map_err(|e| {
            PlatformError::Conflict(format!("card {number} cannot be personalized: {e}"))
        })?;
        let (serial, chip_card) = writer.write(&file).map_err(|e| {
            PlatformError::Conflict(format!("the card writer refused card {number}: {e}"))
        })?;
        let last = changes[changes.len() - 1].card.clone();
        self.counter_apply(
            caller,
            &o,
            clerk,
            "instant_issued",
            &row.number,
            FEES.instant_issued_fen,
            changes,
            drafts,
            Some(ChipRow {
                number: row.number.clone(),
                chip_serial: serial.to_string(),
                batch_id: None,
                outlet_id: Some(o.id),
                recorded_ms: now,
            }),
            true,
        )
        .await?;
        Ok(InstantIssue {
            card: self.masked_view(last).await?,
            chip_serial: serial.to_string(),
            chip: chip_card,
        })
    }

    /// The chip serial recorded for a card, if it was produced.
    pub async fn chip_serial(&self, caller: &Caller, card: &str) -> Result<Option<String>> {
        reader(caller)?;
        let row = self.card_row(card).await?;
        Ok(self
            .store
            .card_chip(&row.number)
            .await?
            .map(|c| c.chip_serial))
    }

    /// One outlet's counter journal for a business day: every act, counts by act, the fees
    /// taken, and the closing if the day is closed.
    pub async fn counter_journal(
        &self,
        caller: &Caller,
        outlet: &str,
        date: &str,
    ) -> Result<JournalView> {
        let o = self.outlet_row(outlet).await?;
        self.may_see_outlet(caller, &o).await?;
        let day = day_text(parse_day(date)?);
        let rows = self.store.journal_day(o.id, &day).await?;
        let mut counts = BTreeMap::new();
        let mut fees_fen: i64 = 0;
        let mut lines = Vec::with_capacity(rows.len());
        for r in rows {
            *counts.entry(r.entry.act.clone()).or_insert(0) += 1;
            fees_fen = fees_fen
                .checked_add(r.entry.fee_fen)
                .ok_or_else(|| PlatformError::Unexpected("fee total overflows".into()))?;
            lines.push(JournalLine {
                at_ms: r.entry.at_ms,
                clerk: r.entry.clerk,
                act: r.entry.act,
                card_number: r.entry.card_number,
                fee_fen: r.entry.fee_fen,
            });
        }
        let closing = self.store.day_closing(o.id, &day).await?.map(Into::into);
        Ok(JournalView {
            outlet: o.code,
            date: day,
            lines,
            counts,
            fees_fen,
            closing,
        })
    }

    /// Closes a counter day (对账): the clerk declares the cash taken, the platform counts the
    /// journal and records both with the difference (positive over, negative short). A day
    /// closes once: a second close is refused naming the first, and a closed day takes no
    /// more counter acts.
    pub async fn close_day(
        &self,
        caller: &Caller,
        outlet: &str,
        date: &str,
        declared_fen: i64,
    ) -> Result<ClosingView> {
        let o = self.outlet_row(outlet).await?;
        self.clerk_at(caller, &o).await?;
        let day = parse_day(date)?;
        if day > self.clock.today() {
            return Err(PlatformError::invalid(
                "date",
                format!("{} has not begun in the city yet", day_text(day)),
            ));
        }
        if !(0..=DECLARED_FEN_MAX).contains(&declared_fen) {
            return Err(PlatformError::invalid(
                "declared_fen",
                format!("0 to {DECLARED_FEN_MAX} fen"),
            ));
        }
        let c = caller.clone();
        let code = o.code.clone();
        let audit = move |r: &ClosingRow| {
            c.draft(
                "counter.close",
                format!("outlet:{code}"),
                format!(
                    "business day {}: {} act(s), expected {} fen, declared {} fen, difference {} fen",
                    r.business_day, r.acts, r.expected_fen, r.declared_fen, r.difference_fen
                ),
            )
        };
        let row = self
            .store
            .day_close(
                &NewClosing {
                    outlet_id: o.id,
                    business_day: day_text(day),
                    declared_fen,
                    closed_by: caller.username.clone(),
                },
                &audit,
                self.clock.now_ms(),
            )
            .await
            .map_err(stored)?;
        Ok(row.into())
    }
}

fn header_count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The applications whose maintenance key (DAMK) a new card gets: those of
/// [`issuance::production::MAINTAINED_APPS`] whose maintenance master key the store holds, so
/// the card takes post-issuance scripts for them (application management).
fn maintained_apps(keys: &dyn MasterKeyStore) -> Result<Vec<String>> {
    let present = keys
        .list()
        .map_err(|e| PlatformError::Unexpected(format!("master-key store: {e}")))?;
    Ok(issuance::production::MAINTAINED_APPS
        .iter()
        .filter(|(_, app, _)| {
            present.iter().any(|k| {
                k.key.app() == *app
                    && k.key.purpose() == keys::master::MasterPurpose::Maintenance
                    && k.key.version() == issuance::production::MAINTENANCE_KEY_VERSION
            })
        })
        .map(|(_, app, _)| (*app).to_string())
        .collect())
}
