//! Money movements (issue 5): top-ups of the online account through a payment channel (充值),
//! e-purse loads with the host side of the chip profile (圈存), online payments from the
//! account (the e-code), fees and taxes paid to a department, refunds and reversals.
//!
//! Every movement is one row (`store::money`) written in the same transaction as the ledger
//! transfers that carry its money and its audit entry, named by the caller's idempotency key:
//! the same request twice is one movement and gets the same answer; the same key for a
//! different request is refused.
//!
//! - Top-up: a pending transfer bank float → online account is recorded before the bank is
//!   asked (it reserves nothing and moves nothing); the bank's success posts it, its refusal
//!   voids it; no answer (time-out, unreachable, "processing") leaves it pending for
//!   [`Platform::resolve_pending_topups`], which asks the bank by order id. Money is created
//!   only on the bank's success.
//! - Load: the card's INITIALIZE FOR LOAD answer is checked (MAC1) in the master-key store,
//!   the amount is held by a pending transfer online → the card's pending-load account, and
//!   MAC2 is issued only once the hold is written. The card's TAC after CREDIT FOR LOAD posts
//!   the hold and moves the money pending load → e-purse shadow. A load whose TAC never comes
//!   back is resolved by evidence ([`LoadEvidence`]): the card's online counter at a later
//!   contact (a later INITIALIZE FOR LOAD resolves every open load of the card by itself), the
//!   balance seen on the card, or the TAC found later. Completed → shadow; not completed →
//!   the hold is voided and the money is the online account's again.
//! - Payments and fees post at once; refunds (partial, many) and a reversal (the rest, once)
//!   give back from the payee to the online account, never more than was paid (the store
//!   enforces it under concurrency).

use crate::channel::{
    ChannelAnswer, ChannelError, DebitRequest, ORDER_ID_LEN_MAX, PaymentChannel, mask_account,
};
use crate::{Caller, Platform, PlatformError, Result};
use ::ledger::{
    AccountKey, AccountKind, Amount, BookError, IdempotencyKey, Owner, Transfer, TransferKind, Unit,
};
use keys::master::{KeyRef, LoadFields, MasterKeyError, MasterPurpose};
use sm3::{Digest, Sm3};
use std::sync::Arc;
use store::Role;
use store::ledger::Resolve;
use store::money::{
    MovementKind, MovementRow, NewMovement, ParentChange, Recorded, Transition, Transitioned,
};

/// One top-up is at most 50,000 yuan.
pub const TOPUP_FEN_MAX: i64 = 5_000_000;
/// One payment or fee is at most 50,000 yuan.
pub const PAYMENT_FEN_MAX: i64 = 5_000_000;
/// A payment's reference (order number, bill number) is at most this many characters.
pub const REFERENCE_CHARS_MAX: usize = 64;
/// A sweep asks the bank about at most this many top-ups per run.
pub const SWEEP_MAX: usize = 10_000;

pub const TOPUP_PENDING: &str = "pending";
pub const TOPUP_SUCCEEDED: &str = "succeeded";
pub const TOPUP_FAILED: &str = "failed";
pub const LOAD_AUTHORIZED: &str = "authorized";
pub const LOAD_COMPLETED: &str = "completed";
pub const LOAD_RETURNED: &str = "returned";
pub const PAYMENT_PAID: &str = "paid";
pub const PAYMENT_REVERSED: &str = "reversed";
const RETURN_DONE: &str = "done";

fn may(caller: &Caller, roles: &[Role], what: &str) -> Result<()> {
    if roles.contains(&caller.role) {
        Ok(())
    } else {
        Err(PlatformError::Forbidden(format!(
            "the role {} may not {what}",
            caller.role.as_str()
        )))
    }
}

/// Top-ups and loads happen at the counter (or by an administrator).
const COUNTER_MONEY: &[Role] = &[Role::Administrator, Role::CounterClerk];
/// Payments, refunds and reversals: the clearing officer until terminals authenticate
/// themselves (issue 6).
const PAYMENT_ROLES: &[Role] = &[Role::Administrator, Role::ClearingOfficer];
/// Fees are also taken at the counter.
const FEE_ROLES: &[Role] = &[
    Role::Administrator,
    Role::ClearingOfficer,
    Role::CounterClerk,
];
const MONEY_READERS: &[Role] = &[
    Role::Administrator,
    Role::ClearingOfficer,
    Role::CounterClerk,
    Role::Auditor,
];
const SWEEPERS: &[Role] = &[Role::Administrator, Role::ClearingOfficer];

/// `<kind>:<key>` after checking the caller's key (1..=128 printable ASCII, no spaces).
fn request_key(kind: MovementKind, key: &str) -> Result<String> {
    IdempotencyKey::parse(key)
        .map_err(|e| PlatformError::invalid("idempotency_key", e.to_string()))?;
    Ok(format!("{}:{key}", kind.as_str()))
}

fn sm3_hex(parts: &[&[u8]]) -> String {
    hex::encode(digest(parts))
}

/// SM3 over length-prefixed parts.
fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sm3::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// A transfer key derived from the movement's request key (which may be 128 characters).
fn transfer_key(prefix: &str, request_key: &str) -> IdempotencyKey {
    IdempotencyKey::parse(&format!(
        "{prefix}:{}",
        &sm3_hex(&[request_key.as_bytes()])[..40]
    ))
    .expect("a well-formed key")
}

/// Our order id for a top-up: `CC` + 30 hex digits of SM3 of the request key, so the same
/// request always asks the bank with the same order id.
fn order_id(request_key: &str) -> String {
    let id = format!(
        "CC{}",
        sm3_hex(&[b"order", request_key.as_bytes()])[..30].to_ascii_uppercase()
    );
    debug_assert!(id.len() <= ORDER_ID_LEN_MAX);
    id
}

fn cut(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn check_amount(field: &str, fen: i64, max: i64) -> Result<Amount> {
    if fen <= 0 || fen > max {
        return Err(PlatformError::invalid(
            field,
            format!("must be 1 to {max} fen, not {fen}"),
        ));
    }
    Ok(Amount(fen))
}

fn unexpected(what: &str, r: Recorded) -> PlatformError {
    PlatformError::Unexpected(format!("{what}: {r:?}"))
}

fn key_error(e: MasterKeyError) -> PlatformError {
    match e {
        MasterKeyError::Mac1Invalid => PlatformError::invalid(
            "initialize_response",
            "the card's load MAC1 does not verify: not this card, or altered data",
        ),
        MasterKeyError::CapExceeded {
            balance_fen,
            amount_fen,
        } => PlatformError::Conflict(format!(
            "a load of {amount_fen} fen onto {balance_fen} fen exceeds the e-purse cap of {} fen",
            keys::master::BALANCE_MAX_FEN
        )),
        MasterKeyError::UnknownKey(k) => PlatformError::Conflict(format!(
            "master key {k} is not in this process's master-key store"
        )),
        e => PlatformError::Unexpected(format!("master-key store: {e}")),
    }
}

fn parse_detail<T: serde::de::DeserializeOwned>(row: &MovementRow) -> Result<T> {
    serde_json::from_str(&row.detail)
        .map_err(|e| PlatformError::Unexpected(format!("money movement {} detail: {e}", row.id)))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("details serialize")
}

// -- top-ups ------------------------------------------------------------------------------

/// A top-up as a counter clerk asks for it.
#[derive(Clone, PartialEq, Eq)]
pub struct TopUpRequest {
    pub key: String,
    pub id_number: String,
    pub amount_fen: i64,
    /// The citizen's bank card or account (12 to 19 digits): sent to the bank, stored masked.
    pub bank_account: String,
    /// The channel's code; the first attached channel when `None`.
    pub channel: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct TopUpDetail {
    account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bank_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopUpView {
    pub id: i64,
    pub order_id: String,
    /// `pending`, `succeeded` or `failed`.
    pub state: String,
    pub amount_fen: i64,
    pub channel: String,
    /// The bank account, masked (`****1234`).
    pub account: String,
    pub bank_ref: Option<String>,
    pub reason: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

fn topup_view(row: &MovementRow) -> Result<TopUpView> {
    let d: TopUpDetail = parse_detail(row)?;
    Ok(TopUpView {
        id: row.id,
        order_id: row.external_ref.clone().unwrap_or_default(),
        state: row.state.clone(),
        amount_fen: row.amount,
        channel: row.counterparty.clone(),
        account: d.account,
        bank_ref: d.bank_ref,
        reason: d.reason,
        created_ms: row.created_ms,
        updated_ms: row.updated_ms,
    })
}

/// What one sweep of pending top-ups did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TopUpSweep {
    /// Pending top-ups the bank was asked about.
    pub asked: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Still pending: the bank said "processing", or did not answer.
    pub still_pending: u64,
}

// -- loads --------------------------------------------------------------------------------

/// A load as the terminal (or phone) sends it after INITIALIZE FOR LOAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRequest {
    pub key: String,
    pub card_number: String,
    pub amount_fen: i64,
    /// The card's 16-byte answer to INITIALIZE FOR LOAD: balance (4), online counter (2), key
    /// version, algorithm, random (4), MAC1 (4).
    pub initialize_response: Vec<u8>,
    /// The load terminal's id, 12 digits.
    pub terminal_id: String,
    /// The date and time the terminal puts into CREDIT FOR LOAD: `YYYYMMDD`, `hhmmss`.
    pub date: String,
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LoadDetail {
    algorithm: u8,
    key_version: u8,
    balance_before: u32,
    counter: u16,
    random: String,
    terminal_id: String,
    date: String,
    time: String,
    mac2: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resolution: Option<String>,
}

impl LoadDetail {
    fn fields(&self, amount_fen: u32) -> Result<LoadFields> {
        let bad = |what: &str| PlatformError::Unexpected(format!("load detail {what}"));
        let fixed =
            |s: &str, what: &str| -> Result<Vec<u8>> { hex::decode(s).map_err(|_| bad(what)) };
        Ok(LoadFields {
            balance_before_fen: self.balance_before,
            online_counter: self.counter,
            random: fixed(&self.random, "random")?
                .try_into()
                .map_err(|_| bad("random"))?,
            amount_fen,
            terminal_id: fixed(&self.terminal_id, "terminal id")?
                .try_into()
                .map_err(|_| bad("terminal id"))?,
            date: fixed(&self.date, "date")?
                .try_into()
                .map_err(|_| bad("date"))?,
            time: fixed(&self.time, "time")?
                .try_into()
                .map_err(|_| bad("time"))?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadView {
    pub id: i64,
    pub card_number: String,
    pub amount_fen: i64,
    /// `authorized` (MAC2 issued, waiting for the TAC), `completed` or `returned`.
    pub state: String,
    pub balance_before_fen: u32,
    pub online_counter: u16,
    /// MAC2 for CREDIT FOR LOAD, hex; only while `authorized`.
    pub mac2: Option<String>,
    /// How it was resolved: `confirmed` (TAC), `counter`, `balance`, `tac`.
    pub resolution: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

fn load_view(row: &MovementRow) -> Result<LoadView> {
    let d: LoadDetail = parse_detail(row)?;
    Ok(LoadView {
        id: row.id,
        card_number: row.card_number.clone().unwrap_or_default(),
        amount_fen: row.amount,
        state: row.state.clone(),
        balance_before_fen: d.balance_before,
        online_counter: d.counter,
        mac2: (row.state == LOAD_AUTHORIZED).then_some(d.mac2),
        resolution: d.resolution,
        created_ms: row.created_ms,
        updated_ms: row.updated_ms,
    })
}

/// What a later contact with the card shows about a load whose TAC never came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadEvidence {
    /// The card's online counter (loads only advance it) read at a later contact: past the
    /// load's counter means its CREDIT happened; equal means it did not.
    OnlineCounter(u16),
    /// The e-purse balance read on the card before any purchase since: the balance before
    /// plus the amount means the CREDIT happened; the balance before means it did not.
    Balance(u32),
    /// The card's TAC of the CREDIT, recovered later (a terminal's log): proves it happened.
    Tac([u8; 4]),
}

// -- payments -----------------------------------------------------------------------------

/// Whose online account pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payer {
    /// The card presented (its e-code): the card must be active.
    Card(String),
    /// The resident by ID number (a counter payment).
    IdNumber(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    pub key: String,
    pub payer: Payer,
    pub merchant: String,
    pub amount_fen: i64,
    /// The merchant's order or bill number; no personal data.
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeRequest {
    pub key: String,
    pub payer: Payer,
    /// The collecting department's code (`tax`, `public_security`, …).
    pub department: String,
    /// What is paid: a fee item code (`vehicle_tax`, `passport_fee`).
    pub item: String,
    pub amount_fen: i64,
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PaymentDetail {
    reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    item: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PaymentView {
    pub id: i64,
    /// `payment` or `fee`.
    pub kind: String,
    /// The merchant or department paid.
    pub payee: String,
    pub item: Option<String>,
    pub amount_fen: i64,
    /// Given back so far by refunds and a reversal.
    pub returned_fen: i64,
    /// `paid` or `reversed`.
    pub state: String,
    pub reference: String,
    pub card_number: Option<String>,
    pub created_ms: i64,
}

fn payment_view(row: &MovementRow) -> Result<PaymentView> {
    let d: PaymentDetail = parse_detail(row)?;
    Ok(PaymentView {
        id: row.id,
        kind: row.kind.as_str().to_string(),
        payee: row.counterparty.clone(),
        item: d.item,
        amount_fen: row.amount,
        returned_fen: row.returned,
        state: row.state.clone(),
        reference: d.reference,
        card_number: row.card_number.clone(),
        created_ms: row.created_ms,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefundView {
    pub id: i64,
    /// `refund` or `reversal`.
    pub kind: String,
    pub payment_id: i64,
    pub amount_fen: i64,
    pub reason: String,
    pub created_ms: i64,
}

fn refund_view(row: &MovementRow) -> Result<RefundView> {
    let d: PaymentDetail = parse_detail(row)?;
    Ok(RefundView {
        id: row.id,
        kind: row.kind.as_str().to_string(),
        payment_id: row.parent_id.unwrap_or_default(),
        amount_fen: row.amount,
        reason: d.reference,
        created_ms: row.created_ms,
    })
}

fn check_text(field: &str, s: &str, max: usize) -> Result<()> {
    if s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(PlatformError::invalid(
            field,
            format!("at most {max} characters without control characters"),
        ));
    }
    // Digit runs are where ID numbers, phones and bank accounts hide.
    let mut run = 0;
    for c in s.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run > 24 {
            return Err(PlatformError::invalid(
                field,
                "holds more than 24 digits in a row; personal data stays out",
            ));
        }
    }
    Ok(())
}

fn refused(what: &str, e: BookError) -> PlatformError {
    match e {
        BookError::BelowFloor { available, .. } => PlatformError::Conflict(format!(
            "{what} refused: the online account has {} yuan available",
            Amount(available).yuan()
        )),
        e => PlatformError::invalid("transfer", e.to_string()),
    }
}

/// One payment or fee, its accounts resolved: what [`payment_item`] turns into a movement.
pub(crate) struct PaymentItem<'a> {
    pub kind: MovementKind,
    pub key: &'a str,
    pub resident: i64,
    pub card: Option<String>,
    pub payer_account: i64,
    pub payee: &'a AccountKey,
    pub payee_account: i64,
    pub payee_code: &'a str,
    pub item: Option<&'a str>,
    pub amount_fen: i64,
    pub reference: &'a str,
}

/// A payment's movement row, transfer, audit entry and digest, checked; nothing written.
pub(crate) struct PreparedPayment {
    pub movement: NewMovement,
    pub transfer: Transfer,
    pub draft: audit::Draft,
    pub digest: [u8; 32],
}

pub(crate) fn payment_item(caller: &Caller, p: &PaymentItem<'_>) -> Result<PreparedPayment> {
    let amount = check_amount("amount_fen", p.amount_fen, PAYMENT_FEN_MAX)?;
    check_text("reference", p.reference, REFERENCE_CHARS_MAX)?;
    let kind = p.kind;
    let rk = request_key(kind, p.key)?;
    let digest = digest(&[
        kind.as_str().as_bytes(),
        &p.resident.to_be_bytes(),
        p.card.as_deref().unwrap_or("").as_bytes(),
        p.payee.to_string().as_bytes(),
        p.item.unwrap_or("").as_bytes(),
        &amount.get().to_be_bytes(),
        p.reference.as_bytes(),
    ]);
    let transfer = Transfer::simple(
        transfer_key(kind.as_str(), &rk),
        match kind {
            MovementKind::Fee => TransferKind::Fee,
            _ => TransferKind::Payment,
        },
        format!("{} to {}", kind.as_str(), p.payee_code),
        p.payer_account,
        p.payee_account,
        Unit::Cny,
        amount,
    );
    let movement = NewMovement {
        kind,
        request_key: rk,
        digest,
        resident_id: p.resident,
        card_number: p.card.clone(),
        counterparty: p.payee_code.to_string(),
        amount: amount.get(),
        parent_id: None,
        state: PAYMENT_PAID.into(),
        external_ref: None,
        detail: to_json(&PaymentDetail {
            reference: p.reference.to_string(),
            item: p.item.map(str::to_string),
        }),
    };
    let draft = caller.draft(
        &format!("money.{}", kind.as_str()),
        format!("resident:{}", p.resident),
        format!("{} fen to {}", amount.get(), p.payee_code),
    );
    Ok(PreparedPayment {
        movement,
        transfer,
        draft,
        digest,
    })
}

/// One payment or fee waiting for the group commit.
pub(crate) struct PaymentJob {
    movement: NewMovement,
    transfer: Transfer,
    draft: audit::Draft,
    reply: tokio::sync::oneshot::Sender<Result<Recorded>>,
    /// When the job was queued: the wait before its group's transaction is logged at debug.
    queued: std::time::Instant,
}

/// Account ids remembered by the platform, at most.
pub const ACCOUNT_IDS_CACHED_MAX: usize = 1_000_000;

/// Payments queued at most this deep before callers wait.
const PAYMENT_QUEUE_MAX: usize = 4_096;

/// The group commit of payments and fees: whatever is queued when the store is free goes in
/// one transaction (`MoneyStore::money_record_many`), so concurrent authorizations share a
/// commit and the writer is not the bottleneck; alone, a payment waits for nothing.
async fn run_payment_queue(
    store: Arc<dyn store::Store>,
    clock: Arc<dyn crate::clock::Clock>,
    mut rx: tokio::sync::mpsc::Receiver<PaymentJob>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < store::money::MONEY_BATCH_MAX {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let items: Vec<(NewMovement, Transfer)> = jobs
            .iter()
            .map(|j| (j.movement.clone(), j.transfer.clone()))
            .collect();
        let audits: Vec<audit::Draft> = jobs.iter().map(|j| j.draft.clone()).collect();
        let began = std::time::Instant::now();
        let waited = jobs
            .iter()
            .map(|j| began - j.queued)
            .max()
            .unwrap_or_default();
        let recorded = store
            .money_record_many(&items, &audits, clock.now_ms())
            .await;
        tracing::debug!(
            payments = jobs.len(),
            waited_us = waited.as_micros() as u64,
            transaction_us = began.elapsed().as_micros() as u64,
            "payment group recorded"
        );
        match recorded {
            Ok(answers) => {
                for (j, a) in jobs.into_iter().zip(answers) {
                    let _ = j.reply.send(Ok(a));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, payments = jobs.len(), "recording payments failed");
                let text = e.to_string();
                for j in jobs {
                    let _ = j.reply.send(Err(PlatformError::Unexpected(format!(
                        "recording payments: {text}"
                    ))));
                }
            }
        }
    }
}

impl Platform {
    fn payment_queue(&self) -> &tokio::sync::mpsc::Sender<PaymentJob> {
        self.payments.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(PAYMENT_QUEUE_MAX);
            tokio::spawn(run_payment_queue(
                self.store.clone(),
                self.clock.clone(),
                rx,
            ));
            tx
        })
    }

    /// Account ids by natural key, opened when new. Ids never change and accounts are never
    /// deleted, so known ids are remembered (up to [`ACCOUNT_IDS_CACHED_MAX`]) and an
    /// authorization does not read them again.
    pub(crate) async fn account_ids(
        &self,
        caller: &Caller,
        keys: &[AccountKey],
    ) -> Result<Vec<i64>> {
        {
            let cache = self.account_ids.lock().unwrap_or_else(|p| p.into_inner());
            let known: Vec<i64> = keys.iter().filter_map(|k| cache.get(k).copied()).collect();
            if known.len() == keys.len() {
                return Ok(known);
            }
        }
        let rows = self.ledger_accounts(caller, keys).await?;
        let mut cache = self.account_ids.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() + rows.len() > ACCOUNT_IDS_CACHED_MAX {
            cache.clear();
        }
        for r in &rows {
            cache.insert(r.key.clone(), r.id);
        }
        Ok(rows.iter().map(|r| r.id).collect())
    }

    /// Attaches a payment channel; the first attached is the default. A channel with the same
    /// code replaces the earlier one.
    pub fn add_payment_channel(&self, channel: Arc<dyn PaymentChannel>) {
        let mut all = self.channels.write().expect("channel list lock");
        all.retain(|c| c.code() != channel.code());
        all.push(channel);
    }

    fn channel(&self, code: Option<&str>) -> Result<Arc<dyn PaymentChannel>> {
        let all = self.channels.read().expect("channel list lock");
        match code {
            None => all.first().cloned().ok_or_else(|| {
                PlatformError::Conflict(
                    "no payment channel is attached to this process (configure bank_url, or \
                     serve without --production to get the simulated bank)"
                        .into(),
                )
            }),
            Some(c) => all
                .iter()
                .find(|ch| ch.code() == c)
                .cloned()
                .ok_or_else(|| PlatformError::NotFound(format!("payment channel {c}"))),
        }
    }

    async fn resident_of_id_number(&self, id_number: &str) -> Result<i64> {
        let id = resident::ResidentId::parse(id_number, self.clock.today())
            .map_err(|e| PlatformError::invalid("id_number", e.to_string()))?;
        Ok(self
            .store
            .resident_by_blind(&self.vault.blind("id_number", id.as_str()))
            .await?
            .ok_or_else(|| PlatformError::NotFound("resident".into()))?
            .id)
    }

    /// An active card's number and holder.
    async fn active_card(&self, number: &str) -> Result<(chip::CardNumber, i64)> {
        let n = chip::CardNumber::parse(number)
            .map_err(|e| PlatformError::invalid("card_number", e.to_string()))?;
        let card = self
            .store
            .card_by_number(&n.to_string())
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("card {n}")))?;
        if card.state != "active" {
            return Err(PlatformError::Conflict(format!(
                "card {n} is {}; money moves only with an active card",
                card.state
            )));
        }
        Ok((n, card.resident_id))
    }

    pub(crate) async fn payer(&self, payer: &Payer) -> Result<(i64, Option<String>)> {
        match payer {
            Payer::Card(n) => {
                let (n, resident) = self.active_card(n).await?;
                Ok((resident, Some(n.to_string())))
            }
            Payer::IdNumber(id) => Ok((self.resident_of_id_number(id).await?, None)),
        }
    }

    // -- top-ups ---------------------------------------------------------------------------

    /// Tops up a resident's online account from their bank account through a channel. The
    /// answer is `succeeded`, `failed`, or `pending` when the bank did not answer in time
    /// (resolved later by [`Platform::resolve_pending_topups`]). The same request again asks
    /// the bank again with the same order id and answers as the first final answer did.
    pub async fn topup(&self, caller: &Caller, req: &TopUpRequest) -> Result<TopUpView> {
        may(caller, COUNTER_MONEY, "top up an account")?;
        let amount = check_amount("amount_fen", req.amount_fen, TOPUP_FEN_MAX)?;
        if !(12..=19).contains(&req.bank_account.len())
            || !req.bank_account.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(PlatformError::invalid(
                "bank_account",
                "must be 12 to 19 digits",
            ));
        }
        let channel = self.channel(req.channel.as_deref())?;
        let rk = request_key(MovementKind::TopUp, &req.key)?;
        let resident = self.resident_of_id_number(&req.id_number).await?;
        let masked = mask_account(&req.bank_account);
        let order = order_id(&rk);
        let digest = digest(&[
            b"top_up",
            &resident.to_be_bytes(),
            &amount.get().to_be_bytes(),
            channel.code().as_bytes(),
            masked.as_bytes(),
        ]);
        let float = AccountKey::new(
            AccountKind::BankFloat,
            Owner::Bank(channel.code().to_string()),
            Unit::Cny,
        )
        .map_err(|e| PlatformError::Unexpected(format!("channel code: {e}")))?;
        let rows = self
            .ledger_accounts(caller, &[float, AccountKey::citizen_online(resident)])
            .await?;
        let transfer = Transfer::simple(
            transfer_key("topup", &rk),
            TransferKind::TopUp,
            format!("top-up through {}", channel.code()),
            rows[0].id,
            rows[1].id,
            Unit::Cny,
            amount,
        )
        .pending();
        let movement = NewMovement {
            kind: MovementKind::TopUp,
            request_key: rk,
            digest,
            resident_id: resident,
            card_number: None,
            counterparty: channel.code().to_string(),
            amount: amount.get(),
            parent_id: None,
            state: TOPUP_PENDING.into(),
            external_ref: Some(order.clone()),
            detail: to_json(&TopUpDetail {
                account: masked,
                bank_ref: None,
                reason: None,
            }),
        };
        let draft = caller.draft(
            "money.topup",
            format!("resident:{resident}"),
            format!("order {order}, {} fen via {}", amount.get(), channel.code()),
        );
        let row = match self
            .store
            .money_record(&movement, None, &[transfer], draft, self.clock.now_ms())
            .await?
        {
            Recorded::Created(row) => row,
            Recorded::Existing(row) if row.digest != digest => {
                return Err(PlatformError::Conflict(format!(
                    "idempotency key {} was already used for a different top-up",
                    req.key
                )));
            }
            Recorded::Existing(row) if row.state != TOPUP_PENDING => return topup_view(&row),
            Recorded::Existing(row) => row,
            r => return Err(unexpected("recording a top-up", r)),
        };
        let answer = channel
            .initiate(&DebitRequest {
                order_id: order,
                account: req.bank_account.clone(),
                amount_fen: amount.get(),
            })
            .await;
        let row = self.topup_settle(caller, row, answer).await?;
        topup_view(&row)
    }

    /// Applies the bank's answer to a pending top-up: success posts, failure voids, anything
    /// else leaves it pending.
    async fn topup_settle(
        &self,
        caller: &Caller,
        row: MovementRow,
        answer: std::result::Result<ChannelAnswer, ChannelError>,
    ) -> Result<MovementRow> {
        let order = row.external_ref.clone().unwrap_or_default();
        let mut detail: TopUpDetail = parse_detail(&row)?;
        let (to, post) = match answer {
            Ok(ChannelAnswer::Succeeded { bank_ref }) => {
                detail.bank_ref = Some(cut(&bank_ref, crate::channel::BANK_TEXT_MAX));
                (TOPUP_SUCCEEDED, true)
            }
            Ok(ChannelAnswer::Failed { reason }) => {
                detail.reason = Some(cut(&reason, crate::channel::BANK_TEXT_MAX));
                (TOPUP_FAILED, false)
            }
            Ok(ChannelAnswer::Processing) => {
                tracing::info!(order = %order, "bank is still processing a top-up");
                return Ok(row);
            }
            Err(e) => {
                tracing::warn!(order = %order, error = %e, "no answer from the bank; the top-up stays pending");
                return Ok(row);
            }
        };
        let transition = Transition {
            id: row.id,
            from: TOPUP_PENDING.into(),
            to: to.into(),
            detail: Some(to_json(&detail)),
            resolves: vec![Resolve {
                key: transfer_key("topup", &row.request_key),
                post,
            }],
            transfers: vec![],
        };
        let draft = caller.draft(
            &format!("money.topup.{to}"),
            format!("resident:{}", row.resident_id),
            format!("order {order}"),
        );
        Ok(
            match self
                .store
                .money_transition(&transition, draft, self.clock.now_ms())
                .await?
            {
                Transitioned::Changed(r) | Transitioned::Stale(r) => r,
            },
        )
    }

    /// A top-up by our order id.
    pub async fn topup_by_order(&self, caller: &Caller, order_id: &str) -> Result<TopUpView> {
        may(caller, MONEY_READERS, "read top-ups")?;
        if order_id.is_empty()
            || order_id.len() > ORDER_ID_LEN_MAX
            || !order_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(PlatformError::invalid(
                "order_id",
                "must be 1 to 32 letters or digits",
            ));
        }
        let row = self
            .store
            .money_by_ref(MovementKind::TopUp, order_id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("top-up {order_id}")))?;
        self.audit(caller.draft(
            "money.topup.read",
            format!("resident:{}", row.resident_id),
            format!("order {order_id}"),
        ))
        .await?;
        topup_view(&row)
    }

    /// Asks the bank about every top-up pending for at least `min_age_ms` and applies the
    /// answers. Safe to run at any time, any number of times.
    pub async fn resolve_pending_topups(
        &self,
        caller: &Caller,
        min_age_ms: i64,
    ) -> Result<TopUpSweep> {
        may(caller, SWEEPERS, "resolve pending top-ups")?;
        let before = self.clock.now_ms() - min_age_ms.max(0);
        let mut sweep = TopUpSweep::default();
        let mut after = 0;
        while (sweep.asked as usize) < SWEEP_MAX {
            let page = self
                .store
                .money_list(
                    MovementKind::TopUp,
                    TOPUP_PENDING,
                    None,
                    before,
                    after,
                    store::money::MOVEMENTS_PAGE_MAX,
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for row in page {
                sweep.asked += 1;
                let order = row.external_ref.clone().unwrap_or_default();
                let answer = match self.channel(Some(&row.counterparty)) {
                    Ok(ch) => ch.status(&order).await,
                    Err(e) => Err(ChannelError::Unreachable(e.to_string())),
                };
                let now = self.topup_settle(caller, row, answer).await?;
                match now.state.as_str() {
                    TOPUP_SUCCEEDED => sweep.succeeded += 1,
                    TOPUP_FAILED => sweep.failed += 1,
                    _ => sweep.still_pending += 1,
                }
            }
        }
        Ok(sweep)
    }

    // -- loads -----------------------------------------------------------------------------

    /// Authorizes a load (圈存): checks the card's MAC1, resolves the card's earlier open loads
    /// by this contact's online counter, holds the amount from the online account and issues
    /// MAC2. The same request again answers the same MAC2.
    pub async fn load_authorize(&self, caller: &Caller, req: &LoadRequest) -> Result<LoadView> {
        may(caller, COUNTER_MONEY, "load a card")?;
        let amount = check_amount(
            "amount_fen",
            req.amount_fen,
            i64::from(keys::master::BALANCE_MAX_FEN),
        )?;
        let rk = request_key(MovementKind::Load, &req.key)?;
        let r: [u8; 16] = req.initialize_response.as_slice().try_into().map_err(|_| {
            PlatformError::invalid(
                "initialize_response",
                format!(
                    "must be the card's 16 bytes, not {}",
                    req.initialize_response.len()
                ),
            )
        })?;
        let terminal = chip::TerminalId::parse(&req.terminal_id)
            .map_err(|e| PlatformError::invalid("terminal_id", e.to_string()))?;
        let date = chip::BcdDate::parse(&req.date)
            .map_err(|e| PlatformError::invalid("date", e.to_string()))?;
        let time = parse_time(&req.time)?;
        let algorithm = crypto::Algorithm::from_id(r[7]).map_err(|_| {
            PlatformError::invalid(
                "initialize_response",
                format!("unknown algorithm id {:#04x}", r[7]),
            )
        })?;
        let (number, resident) = self.active_card(&req.card_number).await?;
        let card = number.to_string();
        let detail = LoadDetail {
            algorithm: r[7],
            key_version: r[6],
            balance_before: u32::from_be_bytes([r[0], r[1], r[2], r[3]]),
            counter: u16::from_be_bytes([r[4], r[5]]),
            random: hex::encode(&r[8..12]),
            terminal_id: hex::encode(terminal.as_bytes()),
            date: hex::encode(date.to_bcd()),
            time: hex::encode(time.to_bcd()),
            mac2: String::new(),
            tac: None,
            resolution: None,
        };
        let digest = digest(&[
            b"load",
            card.as_bytes(),
            &amount.get().to_be_bytes(),
            &r,
            terminal.as_bytes(),
            &date.to_bcd(),
            &time.to_bcd(),
        ]);
        if let Some(row) = self.store.money_by_key(&rk).await? {
            if row.digest != digest {
                return Err(PlatformError::Conflict(format!(
                    "idempotency key {} was already used for a different load",
                    req.key
                )));
            }
            return load_view(&row);
        }
        let fields = detail.fields(amount.get() as u32)?;
        let masters = self.master_keys()?.clone();
        let load_key = KeyRef::transit(MasterPurpose::Load, detail.key_version);
        let div = number.div_data();
        let mac1: [u8; 4] = [r[12], r[13], r[14], r[15]];
        // Key stores may block (an HSM session); keep them off the async workers.
        let mac2 = tokio::task::spawn_blocking(move || {
            masters.issue_load_mac2(&load_key, algorithm, &div, &fields, &mac1)
        })
        .await
        .map_err(|e| PlatformError::Unexpected(e.to_string()))?
        .map_err(key_error)?;
        // MAC1 verified: this contact's online counter and balance are the card's own, and
        // settle whatever load of the card is still open.
        let external = format!("{card}-{}-{}", detail.counter, detail.random);
        self.loads_resolve_by_contact(caller, &card, detail.counter, &external)
            .await?;
        let detail = LoadDetail {
            mac2: hex::encode_upper(mac2),
            ..detail
        };
        let rows = self
            .ledger_accounts(
                caller,
                &[
                    AccountKey::citizen_online(resident),
                    AccountKey::epurse_pending_load(&card),
                    AccountKey::epurse_shadow(&card),
                ],
            )
            .await?;
        let hold = Transfer::simple(
            transfer_key("load", &rk),
            TransferKind::Load,
            "load held until the card confirms",
            rows[0].id,
            rows[1].id,
            Unit::Cny,
            amount,
        )
        .pending();
        let movement = NewMovement {
            kind: MovementKind::Load,
            request_key: rk,
            digest,
            resident_id: resident,
            card_number: Some(card.clone()),
            counterparty: "epurse".into(),
            amount: amount.get(),
            parent_id: None,
            state: LOAD_AUTHORIZED.into(),
            external_ref: Some(external),
            detail: to_json(&detail),
        };
        let draft = caller.draft(
            "money.load.authorize",
            format!("card:{card}"),
            format!("{} fen at online counter {}", amount.get(), detail.counter),
        );
        match self
            .store
            .money_record(&movement, None, &[hold], draft, self.clock.now_ms())
            .await
        {
            Ok(Recorded::Created(row)) => load_view(&row),
            Ok(Recorded::Existing(row)) if row.digest == digest => load_view(&row),
            Ok(Recorded::Existing(_)) => Err(PlatformError::Conflict(format!(
                "idempotency key {} was already used for a different load",
                req.key
            ))),
            Ok(Recorded::Rejected(e)) => Err(refused("the load", e)),
            Ok(r) => Err(unexpected("recording a load", r)),
            Err(store::StoreError::Conflict(_)) => Err(PlatformError::Conflict(format!(
                "card {card} has a load in progress, or this INITIALIZE FOR LOAD was used already"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn load_row(&self, id: i64) -> Result<MovementRow> {
        self.store
            .money_by_id(id)
            .await?
            .filter(|r| r.kind == MovementKind::Load)
            .ok_or_else(|| PlatformError::NotFound(format!("load {id}")))
    }

    /// Confirms a load with the TAC the card returned from CREDIT FOR LOAD: the held money
    /// goes to the e-purse shadow. The same TAC again answers the same.
    pub async fn load_confirm(&self, caller: &Caller, id: i64, tac: [u8; 4]) -> Result<LoadView> {
        may(caller, COUNTER_MONEY, "confirm a load")?;
        let row = self.load_row(id).await?;
        let detail: LoadDetail = parse_detail(&row)?;
        match row.state.as_str() {
            LOAD_AUTHORIZED => {}
            LOAD_COMPLETED if detail.tac.as_deref() == Some(&hex::encode_upper(tac)) => {
                return load_view(&row);
            }
            s => {
                return Err(PlatformError::Conflict(format!(
                    "load {id} is {s} ({}); it cannot be confirmed with this TAC",
                    detail.resolution.as_deref().unwrap_or("-")
                )));
            }
        }
        if !self.load_tac_verifies(&row, &detail, tac).await? {
            return Err(PlatformError::invalid(
                "tac",
                "the TAC does not verify for this load: not this card's CREDIT",
            ));
        }
        let row = self
            .load_finish(caller, row, true, "confirmed", Some(tac))
            .await?;
        load_view(&row)
    }

    async fn load_tac_verifies(
        &self,
        row: &MovementRow,
        detail: &LoadDetail,
        tac: [u8; 4],
    ) -> Result<bool> {
        let number = chip::CardNumber::parse(row.card_number.as_deref().unwrap_or_default())
            .map_err(|e| PlatformError::Unexpected(format!("load {}: {e}", row.id)))?;
        let algorithm = crypto::Algorithm::from_id(detail.algorithm)
            .map_err(|e| PlatformError::Unexpected(format!("load {}: {e}", row.id)))?;
        let fields = detail.fields(row.amount as u32)?;
        let masters = self.master_keys()?.clone();
        let tac_key = KeyRef::transit(MasterPurpose::Tac, detail.key_version);
        let div = number.div_data();
        tokio::task::spawn_blocking(move || {
            masters.verify_load_tac(&tac_key, algorithm, &div, &fields, &tac)
        })
        .await
        .map_err(|e| PlatformError::Unexpected(e.to_string()))?
        .map_err(key_error)
    }

    /// Completes (posts the hold, pending load → e-purse shadow) or returns (voids the hold)
    /// an authorized load.
    async fn load_finish(
        &self,
        caller: &Caller,
        row: MovementRow,
        completed: bool,
        resolution: &str,
        tac: Option<[u8; 4]>,
    ) -> Result<MovementRow> {
        let card = row.card_number.clone().unwrap_or_default();
        let mut detail: LoadDetail = parse_detail(&row)?;
        detail.resolution = Some(resolution.into());
        detail.tac = tac.map(hex::encode_upper);
        let mut transfers = Vec::new();
        if completed {
            let rows = self
                .ledger_accounts(
                    caller,
                    &[
                        AccountKey::epurse_pending_load(&card),
                        AccountKey::epurse_shadow(&card),
                    ],
                )
                .await?;
            transfers.push(Transfer::simple(
                transfer_key("load-credit", &row.request_key),
                TransferKind::Load,
                "load credited on the chip",
                rows[0].id,
                rows[1].id,
                Unit::Cny,
                Amount(row.amount),
            ));
        }
        let to = if completed {
            LOAD_COMPLETED
        } else {
            LOAD_RETURNED
        };
        let transition = Transition {
            id: row.id,
            from: LOAD_AUTHORIZED.into(),
            to: to.into(),
            detail: Some(to_json(&detail)),
            resolves: vec![Resolve {
                key: transfer_key("load", &row.request_key),
                post: completed,
            }],
            transfers,
        };
        let draft = caller.draft(
            &format!("money.load.{to}"),
            format!("card:{card}"),
            format!("load {} by {resolution}", row.id),
        );
        Ok(
            match self
                .store
                .money_transition(&transition, draft, self.clock.now_ms())
                .await?
            {
                Transitioned::Changed(r) | Transitioned::Stale(r) => r,
            },
        )
    }

    /// Resolves the open loads of `card` (except the one named `external`) by the card's
    /// authenticated online counter at this contact.
    async fn loads_resolve_by_contact(
        &self,
        caller: &Caller,
        card: &str,
        counter: u16,
        external: &str,
    ) -> Result<()> {
        let open = self
            .store
            .money_list(
                MovementKind::Load,
                LOAD_AUTHORIZED,
                Some(card),
                i64::MAX,
                0,
                store::money::MOVEMENTS_PAGE_MAX,
            )
            .await?;
        for row in open {
            if row.external_ref.as_deref() == Some(external) {
                continue;
            }
            let d: LoadDetail = parse_detail(&row)?;
            if counter > d.counter {
                self.load_finish(caller, row, true, "counter", None).await?;
            } else if counter == d.counter {
                self.load_finish(caller, row, false, "counter", None)
                    .await?;
            }
        }
        Ok(())
    }

    /// Resolves a load whose TAC never came back, by what a later contact with the card
    /// shows. Completed → e-purse shadow; not completed → back to the online account.
    pub async fn load_resolve(
        &self,
        caller: &Caller,
        id: i64,
        evidence: LoadEvidence,
    ) -> Result<LoadView> {
        may(caller, SWEEPERS, "resolve a load")?;
        let row = self.load_row(id).await?;
        if row.state != LOAD_AUTHORIZED {
            return load_view(&row);
        }
        let d: LoadDetail = parse_detail(&row)?;
        let (completed, how) = match evidence {
            LoadEvidence::OnlineCounter(c) if c > d.counter => (true, "counter"),
            LoadEvidence::OnlineCounter(c) if c == d.counter => (false, "counter"),
            LoadEvidence::OnlineCounter(c) => {
                return Err(PlatformError::invalid(
                    "online_counter",
                    format!(
                        "{c} is below the load's counter {}: not a later contact of this card",
                        d.counter
                    ),
                ));
            }
            LoadEvidence::Balance(b)
                if i64::from(b) == i64::from(d.balance_before) + row.amount =>
            {
                (true, "balance")
            }
            LoadEvidence::Balance(b) if b == d.balance_before => (false, "balance"),
            LoadEvidence::Balance(b) => {
                return Err(PlatformError::Conflict(format!(
                    "a balance of {b} fen matches neither {} (not loaded) nor {} (loaded); \
                     resolve by the card's online counter",
                    d.balance_before,
                    i64::from(d.balance_before) + row.amount
                )));
            }
            LoadEvidence::Tac(tac) => {
                if !self.load_tac_verifies(&row, &d, tac).await? {
                    return Err(PlatformError::invalid(
                        "tac",
                        "the TAC does not verify for this load",
                    ));
                }
                let row = self
                    .load_finish(caller, row, true, "tac", Some(tac))
                    .await?;
                return load_view(&row);
            }
        };
        let row = self.load_finish(caller, row, completed, how, None).await?;
        load_view(&row)
    }

    /// A load by id.
    pub async fn load_get(&self, caller: &Caller, id: i64) -> Result<LoadView> {
        may(caller, MONEY_READERS, "read loads")?;
        load_view(&self.load_row(id).await?)
    }

    // -- payments, fees, refunds, reversals ------------------------------------------------

    /// An online payment from the payer's account to a merchant.
    pub async fn pay(&self, caller: &Caller, req: &PaymentRequest) -> Result<PaymentView> {
        may(caller, PAYMENT_ROLES, "take payments")?;
        let payee = AccountKey::new(
            AccountKind::MerchantPayable,
            Owner::Merchant(req.merchant.clone()),
            Unit::Cny,
        )
        .map_err(|e| PlatformError::invalid("merchant", e.to_string()))?;
        self.take(
            caller,
            MovementKind::Payment,
            &req.key,
            &req.payer,
            payee,
            &req.merchant,
            None,
            req.amount_fen,
            &req.reference,
        )
        .await
    }

    /// A fee or tax paid from the payer's account to a department's collection account.
    pub async fn pay_fee(&self, caller: &Caller, req: &FeeRequest) -> Result<PaymentView> {
        may(caller, FEE_ROLES, "take fees")?;
        let payee = AccountKey::new(
            AccountKind::DepartmentCollection,
            Owner::Department(req.department.clone()),
            Unit::Cny,
        )
        .map_err(|e| PlatformError::invalid("department", e.to_string()))?;
        if req.item.is_empty()
            || req.item.len() > 32
            || !req
                .item
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(PlatformError::invalid(
                "item",
                "must be 1 to 32 characters of a-z, 0-9 or _",
            ));
        }
        self.take(
            caller,
            MovementKind::Fee,
            &req.key,
            &req.payer,
            payee,
            &req.department,
            Some(&req.item),
            req.amount_fen,
            &req.reference,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn take(
        &self,
        caller: &Caller,
        kind: MovementKind,
        key: &str,
        payer: &Payer,
        payee: AccountKey,
        payee_code: &str,
        item: Option<&str>,
        amount_fen: i64,
        reference: &str,
    ) -> Result<PaymentView> {
        // Bad input is named before the payer is looked up.
        check_amount("amount_fen", amount_fen, PAYMENT_FEN_MAX)?;
        check_text("reference", reference, REFERENCE_CHARS_MAX)?;
        request_key(kind, key)?;
        let (resident, card) = self.payer(payer).await?;
        self.take_from(
            caller, kind, key, resident, card, payee, payee_code, item, amount_fen, reference,
        )
        .await
    }

    /// A payment or fee from a known resident's online account (the payer already resolved).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn take_from(
        &self,
        caller: &Caller,
        kind: MovementKind,
        key: &str,
        resident: i64,
        card: Option<String>,
        payee: AccountKey,
        payee_code: &str,
        item: Option<&str>,
        amount_fen: i64,
        reference: &str,
    ) -> Result<PaymentView> {
        // A repeated request is answered by the store (`Recorded::Existing`): the path of an
        // authorization stays one read of the accounts and one write transaction.
        let ids = self
            .account_ids(
                caller,
                &[AccountKey::citizen_online(resident), payee.clone()],
            )
            .await?;
        let p = payment_item(
            caller,
            &PaymentItem {
                kind,
                key,
                resident,
                card,
                payer_account: ids[0],
                payee: &payee,
                payee_account: ids[1],
                payee_code,
                item,
                amount_fen,
                reference,
            },
        )?;
        let (movement, transfer, draft, digest) = (p.movement, p.transfer, p.draft, p.digest);
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.payment_queue()
            .send(PaymentJob {
                movement,
                transfer,
                draft,
                reply,
                queued: std::time::Instant::now(),
            })
            .await
            .map_err(|_| PlatformError::Unexpected("the payment queue stopped".into()))?;
        let recorded = answer.await.map_err(|_| {
            PlatformError::Unexpected("the payment queue dropped a payment".into())
        })??;
        match recorded {
            Recorded::Created(row) => payment_view(&row),
            Recorded::Existing(row) => self.existing_payment(row, digest, key),
            Recorded::Rejected(e) => Err(refused(&format!("the {}", kind.as_str()), e)),
            r => Err(unexpected("recording a payment", r)),
        }
    }

    fn existing_payment(
        &self,
        row: MovementRow,
        digest: [u8; 32],
        key: &str,
    ) -> Result<PaymentView> {
        if row.digest != digest {
            return Err(PlatformError::Conflict(format!(
                "idempotency key {key} was already used for a different {}",
                row.kind.as_str()
            )));
        }
        payment_view(&row)
    }

    async fn payment_row(&self, id: i64) -> Result<MovementRow> {
        self.store
            .money_by_id(id)
            .await?
            .filter(|r| matches!(r.kind, MovementKind::Payment | MovementKind::Fee))
            .ok_or_else(|| PlatformError::NotFound(format!("payment {id}")))
    }

    fn payee_key(row: &MovementRow) -> Result<AccountKey> {
        let (kind, owner) = match row.kind {
            MovementKind::Fee => (
                AccountKind::DepartmentCollection,
                Owner::Department(row.counterparty.clone()),
            ),
            _ => (
                AccountKind::MerchantPayable,
                Owner::Merchant(row.counterparty.clone()),
            ),
        };
        AccountKey::new(kind, owner, Unit::Cny)
            .map_err(|e| PlatformError::Unexpected(format!("payment {}: {e}", row.id)))
    }

    /// A payment or fee with its refunds and reversal.
    pub async fn payment_get(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<(PaymentView, Vec<RefundView>)> {
        may(caller, MONEY_READERS, "read payments")?;
        let row = self.payment_row(id).await?;
        let children = self
            .store
            .money_children(id)
            .await?
            .iter()
            .map(refund_view)
            .collect::<Result<Vec<_>>>()?;
        Ok((payment_view(&row)?, children))
    }

    /// Gives back part of a payment or fee. Refunds together never exceed what was paid.
    pub async fn refund(
        &self,
        caller: &Caller,
        payment_id: i64,
        key: &str,
        amount_fen: i64,
        reason: &str,
    ) -> Result<RefundView> {
        may(caller, PAYMENT_ROLES, "refund payments")?;
        let amount = check_amount("amount_fen", amount_fen, PAYMENT_FEN_MAX)?;
        check_text("reason", reason, REFERENCE_CHARS_MAX)?;
        let rk = request_key(MovementKind::Refund, key)?;
        let digest = digest(&[
            b"refund",
            &payment_id.to_be_bytes(),
            &amount.get().to_be_bytes(),
            reason.as_bytes(),
        ]);
        if let Some(row) = self.store.money_by_key(&rk).await? {
            if row.digest != digest {
                return Err(PlatformError::Conflict(format!(
                    "idempotency key {key} was already used for a different refund"
                )));
            }
            return refund_view(&row);
        }
        let payment = self.payment_row(payment_id).await?;
        let change = ParentChange {
            id: payment.id,
            add: amount.get(),
            require_state: PAYMENT_PAID.into(),
            returned_before: None,
            set_state: None,
        };
        let r = self
            .give_back(
                caller,
                &payment,
                MovementKind::Refund,
                rk,
                digest,
                amount,
                reason,
                &change,
            )
            .await?;
        match r {
            Recorded::Created(row) => refund_view(&row),
            Recorded::Existing(row) if row.digest == digest => refund_view(&row),
            Recorded::Existing(_) => Err(PlatformError::Conflict(format!(
                "idempotency key {key} was already used for a different refund"
            ))),
            Recorded::ParentRefused(now) if now.state != PAYMENT_PAID => Err(
                PlatformError::Conflict(format!("payment {payment_id} is {}", now.state)),
            ),
            Recorded::ParentRefused(now) => Err(PlatformError::Conflict(format!(
                "a refund of {} yuan exceeds what remains of payment {payment_id}: {} of {} \
                 yuan already given back",
                amount.yuan(),
                Amount(now.returned).yuan(),
                Amount(now.amount).yuan()
            ))),
            Recorded::Rejected(e) => Err(refused("the refund", e)),
        }
    }

    /// Reverses a payment or fee: gives back everything not yet refunded, once, and closes
    /// it. Reversing again answers the same reversal.
    pub async fn reverse(&self, caller: &Caller, payment_id: i64) -> Result<RefundView> {
        may(caller, PAYMENT_ROLES, "reverse payments")?;
        let rk = format!("{}:{payment_id}", MovementKind::Reversal.as_str());
        // A refund may land between our read and our write: try again with the new amount.
        for _ in 0..5 {
            if let Some(row) = self.store.money_by_key(&rk).await? {
                return refund_view(&row);
            }
            let payment = self.payment_row(payment_id).await?;
            if payment.state != PAYMENT_PAID {
                return Err(PlatformError::Conflict(format!(
                    "payment {payment_id} is {}",
                    payment.state
                )));
            }
            let rest = payment.amount - payment.returned;
            if rest <= 0 {
                return Err(PlatformError::Conflict(format!(
                    "payment {payment_id} was refunded in full; nothing to reverse"
                )));
            }
            let digest = digest(&[b"reversal", &payment_id.to_be_bytes()]);
            let change = ParentChange {
                id: payment.id,
                add: rest,
                require_state: PAYMENT_PAID.into(),
                returned_before: Some(payment.returned),
                set_state: Some(PAYMENT_REVERSED.into()),
            };
            match self
                .give_back(
                    caller,
                    &payment,
                    MovementKind::Reversal,
                    rk.clone(),
                    digest,
                    Amount(rest),
                    "reversal",
                    &change,
                )
                .await?
            {
                Recorded::Created(row) | Recorded::Existing(row) => return refund_view(&row),
                Recorded::ParentRefused(_) => continue,
                Recorded::Rejected(e) => return Err(refused("the reversal", e)),
            }
        }
        Err(PlatformError::Conflict(format!(
            "payment {payment_id} kept changing under the reversal; try again"
        )))
    }

    #[allow(clippy::too_many_arguments)]
    async fn give_back(
        &self,
        caller: &Caller,
        payment: &MovementRow,
        kind: MovementKind,
        rk: String,
        digest: [u8; 32],
        amount: Amount,
        reason: &str,
        change: &ParentChange,
    ) -> Result<Recorded> {
        let rows = self
            .ledger_accounts(
                caller,
                &[
                    Self::payee_key(payment)?,
                    AccountKey::citizen_online(payment.resident_id),
                ],
            )
            .await?;
        let transfer = Transfer::simple(
            transfer_key(kind.as_str(), &rk),
            match kind {
                MovementKind::Reversal => TransferKind::Reversal,
                _ => TransferKind::Refund,
            },
            format!("{} of payment {}", kind.as_str(), payment.id),
            rows[0].id,
            rows[1].id,
            Unit::Cny,
            amount,
        );
        let movement = NewMovement {
            kind,
            request_key: rk,
            digest,
            resident_id: payment.resident_id,
            card_number: payment.card_number.clone(),
            counterparty: payment.counterparty.clone(),
            amount: amount.get(),
            parent_id: Some(payment.id),
            state: RETURN_DONE.into(),
            external_ref: None,
            detail: to_json(&PaymentDetail {
                reference: reason.to_string(),
                item: None,
            }),
        };
        let draft = caller.draft(
            &format!("money.{}", kind.as_str()),
            format!("resident:{}", payment.resident_id),
            format!("{} fen of payment {}", amount.get(), payment.id),
        );
        Ok(self
            .store
            .money_record(
                &movement,
                Some(change),
                &[transfer],
                draft,
                self.clock.now_ms(),
            )
            .await?)
    }
}

/// `hhmmss`.
fn parse_time(s: &str) -> Result<chip::BcdTime> {
    let bad = || PlatformError::invalid("time", format!("{s:?} is not hhmmss"));
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = |i: usize| s[i..i + 2].parse::<u8>().unwrap_or(u8::MAX);
    chip::BcdTime::new(n(0), n(2), n(4)).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_order_ids_are_stable_and_bounded() {
        let rk = request_key(MovementKind::TopUp, &"k".repeat(128)).unwrap();
        let o = order_id(&rk);
        assert_eq!(o.len(), 32);
        assert!(o.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(o, order_id(&rk));
        assert_ne!(o, order_id("top_up:other"));
        assert!(transfer_key("load-credit", &rk).as_str().len() < 64);
        assert!(request_key(MovementKind::TopUp, "has space").is_err());
        assert!(parse_time("235959").is_ok());
        assert!(parse_time("246000").is_err());
        assert!(check_text("reference", &"1".repeat(25), 64).is_err());
        assert!(check_text("reference", "bill 2026-11 water", 64).is_ok());
        assert_eq!(mask_account("6222020200112233"), "****2233");
    }
}
