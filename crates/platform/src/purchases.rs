//! Offline purchases uploaded by terminals (脱机消费上传): each record is parsed
//! (`chip::host::UploadRecord::parse`), its TAC recomputed under the TAC master key through the
//! master-key store (two blocking threads, one batch call each), the card looked up on the
//! deny-list, and the batch handed to the store, which ingests it in one transaction
//! (`ledger::offline` rules: one posting per card and offline counter, flags for deny-listed
//! cards, counter gaps, late records and shadow shortfalls) into the clearing window open now.
//!
//! One answer per record, in order: posted (with flags), duplicate (pointing to the first),
//! bad TAC or malformed (with the field and reason). A bad record never stops the others.

use crate::{Caller, Platform, PlatformError, Result};
use ::ledger::offline::Flags;
use ::ledger::{AccountKey, AccountKind, Owner, Unit, WindowCalendar};
use chip::host::{RawUpload, UploadRecord};
use keys::master::{KeyRef, MasterKeyError, MasterPurpose, PurchaseTacCheck, PurchaseTacFields};
use std::sync::Arc;
use store::Role;
use store::purchases::{
    IngestOutcome, KeptBatch, KeptIngest, KeptUpload, NewPurchase, PURCHASE_BATCH_MAX,
    PurchaseBatch, UPLOADS_PER_GROUP_MAX,
};

/// At most this many records per upload.
pub const UPLOAD_RECORDS_MAX: usize = PURCHASE_BATCH_MAX;

/// Threads the TAC checks of one upload are spread over.
const TAC_THREADS: usize = 2;
/// Uploads up to this many records are checked on one blocking thread: a terminal's small
/// batch costs less to check than a second thread hand-off.
const TAC_ONE_THREAD_MAX: usize = 256;

/// The answer for one uploaded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseResult {
    /// Posted now into `window`; `flags` say what to review.
    Posted {
        id: i64,
        window: String,
        transfer_id: Option<i64>,
        flags: Flags,
    },
    /// The same card and offline counter was posted before: the first one.
    Duplicate { id: i64, window: String },
    /// The TAC does not verify: not made by this card, or altered. Nothing posted.
    BadTac,
    /// A field is wrong; nothing posted.
    Malformed { field: String, reason: String },
}

/// What an upload did, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestCounts {
    pub posted: u64,
    pub duplicate: u64,
    pub bad_tac: u64,
    pub malformed: u64,
    pub flagged: u64,
}

impl IngestCounts {
    pub fn of(results: &[PurchaseResult]) -> Self {
        let mut c = IngestCounts::default();
        for r in results {
            match r {
                PurchaseResult::Posted { flags, .. } => {
                    c.posted += 1;
                    if flags.any() {
                        c.flagged += 1;
                    }
                }
                PurchaseResult::Duplicate { .. } => c.duplicate += 1,
                PurchaseResult::BadTac => c.bad_tac += 1,
                PurchaseResult::Malformed { .. } => c.malformed += 1,
            }
        }
        c
    }
}

/// How an answer is made of every record's result, in the upload's order.
pub type Encode = Arc<dyn Fn(&[PurchaseResult]) -> Vec<u8> + Send + Sync>;

/// How the stored answer is made of the store's outcomes, inside its transaction.
type AnswerOf = Arc<dyn Fn(&[IngestOutcome]) -> Vec<u8> + Send + Sync>;

/// A terminal's named batch whose answer is kept with its postings.
pub struct KeepAnswer {
    pub terminal: String,
    pub batch_id: String,
    /// SM3 of the request body, hex.
    pub digest: String,
    /// Records in the upload.
    pub records: usize,
    /// The answer (bytes) made of every record's result, in the upload's order.
    pub encode: Encode,
}

/// One terminal's named upload waiting for the group commit ([`run_upload_queue`]).
pub(crate) struct UploadJob {
    caller: Caller,
    merchant: String,
    purchases: Vec<NewPurchase>,
    /// Records in the terminal's upload (the batch row's count, PSAM refusals included), and
    /// the records checked here and refused before posting (for the audit entry).
    records: usize,
    checked: usize,
    refused: usize,
    windows: WindowCalendar,
    terminal: String,
    batch_id: String,
    digest: String,
    answer: AnswerOf,
    reply: tokio::sync::oneshot::Sender<Result<KeptIngest>>,
}

/// Uploads queued at most this deep before callers wait.
const UPLOAD_QUEUE_MAX: usize = 4_096;

/// Writes a group of uploads in one store transaction, each into the window open now.
async fn ingest_group(
    store: &dyn store::Store,
    jobs: &[UploadJob],
    now_ms: i64,
) -> store::Result<Vec<KeptIngest>> {
    let windows: Vec<(String, i64)> = jobs
        .iter()
        .map(|j| {
            let w = j.windows.window_of(now_ms);
            (w.to_string(), j.windows.start_ms(w))
        })
        .collect();
    let uploads: Vec<KeptUpload<'_>> = jobs
        .iter()
        .zip(&windows)
        .map(|(j, (window, start))| KeptUpload {
            batch: PurchaseBatch {
                merchant: &j.merchant,
                purchases: &j.purchases,
                window,
                window_start_ms: *start,
            },
            kept: KeptBatch {
                terminal: &j.terminal,
                batch_id: &j.batch_id,
                kind: "card",
                digest: &j.digest,
                records: j.records as i64,
                answer: &*j.answer,
            },
            audit: j.caller.draft(
                "purchase.ingest",
                format!("merchant:{}", j.merchant),
                format!(
                    "{} records ({} refused before posting), batch {}, window {window}",
                    j.checked, j.refused, j.batch_id
                ),
            ),
        })
        .collect();
    store.purchases_ingest_uploads(&uploads, now_ms).await
}

/// The group commit of terminals' named uploads: whatever is queued when the store is free goes
/// in one transaction (`PurchaseStore::purchases_ingest_uploads`: the uploads of one merchant
/// planned and written together, each with its own batch row, answer and audit entry), so a
/// fleet uploading at once shares reads, writes and commits instead of queueing for the one
/// writer upload by upload; alone, an upload waits for nothing. A group that fails is retried
/// upload by upload, so one failing upload fails alone.
async fn run_upload_queue(
    store: Arc<dyn store::Store>,
    clock: Arc<dyn crate::clock::Clock>,
    mut rx: tokio::sync::mpsc::Receiver<UploadJob>,
) {
    let mut held: Option<UploadJob> = None;
    loop {
        let first = match held.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let mut records = first.purchases.len();
        let mut jobs = vec![first];
        while jobs.len() < UPLOADS_PER_GROUP_MAX {
            match rx.try_recv() {
                Ok(j) if records + j.purchases.len() > PURCHASE_BATCH_MAX => {
                    held = Some(j);
                    break;
                }
                Ok(j) => {
                    records += j.purchases.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let now = clock.now_ms();
        tracing::debug!(uploads = jobs.len(), records, "upload group");
        match ingest_group(&*store, &jobs, now).await {
            Ok(answers) if answers.len() == jobs.len() => {
                for (j, a) in jobs.into_iter().zip(answers) {
                    let _ = j.reply.send(Ok(a));
                }
            }
            group => {
                if let Err(e) = &group {
                    tracing::warn!(error = %e, uploads = jobs.len(), "upload group failed");
                }
                for j in jobs {
                    let one = ingest_group(&*store, std::slice::from_ref(&j), now)
                        .await
                        .map_err(PlatformError::from)
                        .and_then(|mut a| {
                            a.pop().ok_or_else(|| {
                                PlatformError::Unexpected("no answer for the upload".into())
                            })
                        });
                    let _ = j.reply.send(one);
                }
            }
        }
    }
}

/// Every record's result: the checks' refusals in place, the store's outcomes in order.
fn merge_results(checked: &[Checked], outcomes: &[IngestOutcome]) -> Vec<PurchaseResult> {
    let mut outcomes = outcomes.iter();
    checked
        .iter()
        .map(|c| match c {
            Checked::Bad(r) => r.clone(),
            Checked::Good(..) => match outcomes.next() {
                Some(IngestOutcome::Posted {
                    id,
                    window,
                    transfer_id,
                    flags,
                }) => PurchaseResult::Posted {
                    id: *id,
                    window: window.clone(),
                    transfer_id: *transfer_id,
                    flags: *flags,
                },
                Some(IngestOutcome::Duplicate { id, window }) => PurchaseResult::Duplicate {
                    id: *id,
                    window: window.clone(),
                },
                // The store answers every purchase it is given; the caller checks the count.
                None => PurchaseResult::Malformed {
                    field: "record".into(),
                    reason: "no answer from the store".into(),
                },
            },
        })
        .collect()
}

/// What an ingest with a kept batch did.
pub enum Kept {
    /// Ingested now: every record's result and the answer stored with them.
    Ingested {
        results: Vec<PurchaseResult>,
        answer: Vec<u8>,
    },
    /// The batch was answered before: its stored answer, nothing ingested.
    Stored(Vec<u8>),
}

/// A record after parsing and its TAC check.
enum Checked {
    Good(UploadRecord, i64),
    Bad(PurchaseResult),
}

fn may_ingest(caller: &Caller) -> Result<()> {
    match caller.role {
        Role::Administrator | Role::ClearingOfficer => Ok(()),
        _ => Err(PlatformError::Forbidden(
            "only a clearing officer or an administrator uploads purchases".into(),
        )),
    }
}

fn tac_error(e: MasterKeyError) -> PlatformError {
    match e {
        MasterKeyError::UnknownKey(k) => PlatformError::Conflict(format!(
            "the TAC master key {k} is not in the master-key store"
        )),
        other => PlatformError::Unexpected(format!("master-key store: {other}")),
    }
}

/// Parses and TAC-checks one slice of an upload (runs on a blocking thread).
fn check_slice(
    masters: &dyn keys::master::MasterKeyStore,
    calendar: WindowCalendar,
    raws: &[RawUpload],
) -> std::result::Result<Vec<Checked>, MasterKeyError> {
    let mut out = Vec::with_capacity(raws.len());
    let mut checks = Vec::with_capacity(raws.len());
    let mut at = Vec::with_capacity(raws.len());
    for raw in raws {
        let rec = match UploadRecord::parse(raw) {
            Ok(r) => r,
            Err(e) => {
                out.push(Checked::Bad(PurchaseResult::Malformed {
                    field: e.field.into(),
                    reason: e.reason,
                }));
                continue;
            }
        };
        let (d, t) = (rec.date, rec.time);
        let Some(tx_ms) = calendar.local_ms(
            d.year(),
            d.month(),
            d.day(),
            t.hour(),
            t.minute(),
            t.second(),
        ) else {
            out.push(Checked::Bad(PurchaseResult::Malformed {
                field: "date".into(),
                reason: "not a time of the city".into(),
            }));
            continue;
        };
        checks.push(PurchaseTacCheck {
            algorithm: rec.algorithm,
            div: rec.card_number.div_data(),
            fields: PurchaseTacFields {
                amount_fen: rec.amount_fen,
                tx_type: rec.tx_type,
                terminal_id: *rec.terminal_id.as_bytes(),
                terminal_serial: rec.terminal_serial,
                date: rec.date.to_bcd(),
                time: rec.time.to_bcd(),
            },
            tac: rec.tac,
        });
        at.push(out.len());
        out.push(Checked::Good(rec, tx_ms));
    }
    if !checks.is_empty() {
        // Every record of this profile uses key version 01 (`UploadRecord::parse` refuses
        // others), so one TAC master key serves the batch.
        let ok = masters.verify_purchase_tacs(&KeyRef::transit(MasterPurpose::Tac, 1), &checks)?;
        for (i, ok) in at.into_iter().zip(ok) {
            if !ok {
                out[i] = Checked::Bad(PurchaseResult::BadTac);
            }
        }
    }
    Ok(out)
}

impl Platform {
    /// This handle (and its clones) cut clearing windows by `calendar`.
    /// The store assigns online payments their windows by the same calendar.
    pub fn with_clearing_calendar(mut self, calendar: WindowCalendar) -> Self {
        self.windows = calendar;
        store::money::MoneyStore::money_windows_set(&*self.store, calendar);
        self
    }

    pub fn clearing_calendar(&self) -> WindowCalendar {
        self.windows
    }

    /// Ingests an upload of offline purchases made at `merchant`'s terminals (the merchant's
    /// payable account is credited): one result per record, in order, and one audit entry for
    /// the upload. At most [`UPLOAD_RECORDS_MAX`] records.
    pub async fn ingest_purchases(
        &self,
        caller: &Caller,
        merchant: &str,
        records: Vec<RawUpload>,
    ) -> Result<Vec<PurchaseResult>> {
        match self
            .ingest_purchases_kept(caller, merchant, records, None)
            .await?
        {
            Kept::Ingested { results, .. } => Ok(results),
            Kept::Stored(_) => unreachable!("no stored batch without a kept batch"),
        }
    }

    /// As [`Platform::ingest_purchases`]; with `keep`, the answer `keep.encode` makes of the
    /// results is stored in the same transaction as the postings (or, when the batch id is
    /// stored already, the stored answer is returned and nothing is ingested).
    pub(crate) async fn ingest_purchases_kept(
        &self,
        caller: &Caller,
        merchant: &str,
        records: Vec<RawUpload>,
        keep: Option<KeepAnswer>,
    ) -> Result<Kept> {
        may_ingest(caller)?;
        if records.len() > UPLOAD_RECORDS_MAX {
            return Err(PlatformError::TooLarge {
                what: format!("an upload of {} purchase records", records.len()),
                limit: format!("{UPLOAD_RECORDS_MAX} records"),
            });
        }
        AccountKey::new(
            AccountKind::MerchantPayable,
            Owner::Merchant(merchant.into()),
            Unit::Cny,
        )
        .map_err(|e| PlatformError::invalid("merchant", e.to_string()))?;
        if records.is_empty() && keep.is_none() {
            return Ok(Kept::Ingested {
                results: Vec::new(),
                answer: Vec::new(),
            });
        }
        let began = std::time::Instant::now();
        let checked = if records.is_empty() {
            Vec::new()
        } else {
            let masters = self.master_keys()?.clone();
            self.check_records(masters, records).await?
        };
        let tac_done = std::time::Instant::now();

        let good: Vec<(&UploadRecord, i64)> = checked
            .iter()
            .filter_map(|c| match c {
                Checked::Good(r, ms) => Some((r, *ms)),
                Checked::Bad(_) => None,
            })
            .collect();
        let numbers: Vec<String> = good
            .iter()
            .map(|(r, _)| r.card_number.to_string())
            .collect();
        let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
        let denied = self.deny_listed_many(&refs).await?;
        let deny_done = std::time::Instant::now();
        let purchases: Vec<NewPurchase> = good
            .iter()
            .zip(numbers)
            .zip(denied)
            .map(|(((r, tx_ms), card_number), deny_listed)| NewPurchase {
                card_number,
                offline_counter: r.offline_counter,
                amount_fen: r.amount_fen,
                tx_type: r.tx_type.code(),
                algorithm_id: r.algorithm.id(),
                terminal_id: r.terminal_id.to_string(),
                terminal_serial: r.terminal_serial,
                tx_ms: *tx_ms,
                balance_before_fen: r.balance_before_fen,
                tac: r.tac,
                deny_listed,
            })
            .collect();

        let bad = checked.len() - purchases.len();
        // Every ride the platform holds earns points once: earning is idempotent by the ride's
        // event id (card and offline counter), so a duplicate or a stored answer earns what a
        // crash between the posting and the earning may have left unearned, and no more.
        let rides: Vec<(String, u16)> = purchases
            .iter()
            .map(|p| (p.card_number.clone(), p.offline_counter))
            .collect();
        let out = match keep {
            None => {
                let now = self.clock.now_ms();
                let window = self.windows.window_of(now);
                let window_text = window.to_string();
                let draft = caller.draft(
                    "purchase.ingest",
                    format!("merchant:{merchant}"),
                    format!(
                        "{} records ({} refused before posting), window {window_text}",
                        checked.len(),
                        bad
                    ),
                );
                let batch = PurchaseBatch {
                    merchant,
                    purchases: &purchases,
                    window: &window_text,
                    window_start_ms: self.windows.start_ms(window),
                };
                let outcomes = self.store.purchases_ingest(&batch, draft, now).await?;
                if outcomes.len() != purchases.len() {
                    return Err(PlatformError::Unexpected(
                        "the store answered another number of purchases than it was given".into(),
                    ));
                }
                Ok(Kept::Ingested {
                    results: merge_results(&checked, &outcomes),
                    answer: Vec::new(),
                })
            }
            Some(k) => {
                let checked = Arc::new(checked);
                let answer: AnswerOf = {
                    let (checked, encode) = (checked.clone(), k.encode.clone());
                    Arc::new(move |o: &[IngestOutcome]| encode(&merge_results(&checked, o)))
                };
                let own = purchases.len();
                let (reply, answered) = tokio::sync::oneshot::channel();
                let job = UploadJob {
                    caller: caller.clone(),
                    merchant: merchant.to_string(),
                    purchases,
                    records: k.records,
                    checked: checked.len(),
                    refused: bad,
                    windows: self.windows,
                    terminal: k.terminal.clone(),
                    batch_id: k.batch_id.clone(),
                    digest: k.digest.clone(),
                    answer,
                    reply,
                };
                self.upload_queue().send(job).await.map_err(|_| {
                    PlatformError::Unexpected("the upload writer has stopped".into())
                })?;
                let done = answered.await.map_err(|_| {
                    PlatformError::Unexpected("the upload writer dropped an upload".into())
                })?;
                match done? {
                    KeptIngest::Ingested { outcomes, answer } => {
                        if outcomes.len() != own {
                            return Err(PlatformError::Unexpected(
                                "the store answered another number of purchases than it was \
                                 given"
                                    .into(),
                            ));
                        }
                        Ok(Kept::Ingested {
                            results: merge_results(&checked, &outcomes),
                            answer,
                        })
                    }
                    KeptIngest::Stored(row) => {
                        if row.digest == k.digest {
                            Ok(Kept::Stored(row.answer))
                        } else {
                            Err(PlatformError::Conflict(format!(
                                "batch {} was sent before with other records: a batch id names \
                                 one upload",
                                k.batch_id
                            )))
                        }
                    }
                }
            }
        };
        let stored = std::time::Instant::now();
        if out.is_ok() {
            self.rides_earned(caller, merchant, &rides).await;
        }
        tracing::debug!(
            records = rides.len(),
            tac_us = (tac_done - began).as_micros() as u64,
            deny_us = (deny_done - tac_done).as_micros() as u64,
            store_us = (stored - deny_done).as_micros() as u64,
            points_us = stored.elapsed().as_micros() as u64,
            "upload ingested"
        );
        out
    }

    fn upload_queue(&self) -> &tokio::sync::mpsc::Sender<UploadJob> {
        self.uploads.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(UPLOAD_QUEUE_MAX);
            tokio::spawn(run_upload_queue(self.store.clone(), self.clock.clone(), rx));
            tx
        })
    }

    /// Parses and TAC-checks an upload on [`TAC_THREADS`] blocking threads (one up to
    /// [`TAC_ONE_THREAD_MAX`] records; key stores may
    /// block, and the checks are the CPU-heavy part), keeping the records' order.
    async fn check_records(
        &self,
        masters: Arc<dyn keys::master::MasterKeyStore>,
        records: Vec<RawUpload>,
    ) -> Result<Vec<Checked>> {
        let records = Arc::new(records);
        let threads = if records.len() <= TAC_ONE_THREAD_MAX {
            1
        } else {
            TAC_THREADS
        };
        let per = records.len().div_ceil(threads).max(1);
        let calendar = self.windows;
        let mut tasks = Vec::new();
        for start in (0..records.len()).step_by(per) {
            let (records, masters) = (records.clone(), masters.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                let end = (start + per).min(records.len());
                check_slice(&*masters, calendar, &records[start..end])
            }));
        }
        let mut out = Vec::with_capacity(records.len());
        for t in tasks {
            out.extend(
                t.await
                    .map_err(|e| PlatformError::Unexpected(e.to_string()))?
                    .map_err(tac_error)?,
            );
        }
        Ok(out)
    }
}
