//! The terminal network (issue 6, items 1–3): merchants and transit operators, terminals
//! registered for them with a one-time activation code, activation with the terminal's SM2
//! key, every later request authenticated by its signature (`terminals` crate: canonical
//! form, clock window, replay cache), and the parameters a terminal downloads.

use std::sync::{Arc, Mutex};

use crate::{Caller, Platform, PlatformError, Result};
use store::{MerchantRow, Role, StoreError, TerminalRow};
use terminals::{AuthError, ReplayCache, RequestParts};

/// Terminal kinds of the network.
pub const KINDS: [&str; 6] = ["validator", "gate", "pos", "kiosk", "desk", "door"];
/// Merchant categories (the fee schedule's and clearing's categories).
pub const CATEGORIES: [&str; 9] = [
    "transit",
    "canteen",
    "shop",
    "hospital",
    "library",
    "utility",
    "taxi",
    "bike",
    "government",
];

/// The replay cache of terminal nonces, one per process, and the group commit of "last seen".
#[derive(Default)]
pub struct TerminalAuth {
    replay: Mutex<ReplayCache>,
    seen: std::sync::OnceLock<tokio::sync::mpsc::Sender<SeenJob>>,
}

/// An authenticated request's "last seen", waiting for the group commit.
pub(crate) struct SeenJob {
    terminal: String,
    at_ms: i64,
    reply: tokio::sync::oneshot::Sender<Result<()>>,
}

/// "Last seen" updates queued at most this deep before callers wait.
const SEEN_QUEUE_MAX: usize = 4_096;
/// At most this many "last seen" updates in one statement.
const SEEN_GROUP_MAX: usize = 1_024;

/// The group commit of "last seen": whatever is queued when the store is free goes in one
/// statement (`TerminalFleetStore::terminals_seen`), so a fleet's requests do not take the one
/// writer request by request; alone, an update waits for nothing.
async fn run_seen_queue(
    store: Arc<dyn store::Store>,
    mut rx: tokio::sync::mpsc::Receiver<SeenJob>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < SEEN_GROUP_MAX {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let seen: Vec<(String, i64)> = jobs.iter().map(|j| (j.terminal.clone(), j.at_ms)).collect();
        let done = store.terminals_seen(&seen).await;
        if let Err(e) = &done {
            tracing::warn!(error = %e, terminals = jobs.len(), "recording terminals seen failed");
        }
        for j in jobs {
            let _ = j.reply.send(match &done {
                Ok(()) => Ok(()),
                Err(e) => Err(PlatformError::Unexpected(format!(
                    "recording the terminal as seen: {e}"
                ))),
            });
        }
    }
}

/// Who a signed request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalCaller {
    pub terminal: String,
    pub merchant: String,
    pub kind: String,
}

/// A registration: the terminal and its activation code, shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub terminal: TerminalRow,
    pub activation_code: String,
}

/// What a terminal downloads: versioned parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Parameters {
    /// Changes whenever any part changes.
    pub version: String,
    /// Whether anything changed since the version the terminal holds.
    pub changed: bool,
    pub server_time_s: i64,
    pub deny_list_version: i64,
    /// SEC1 compressed SM2 key (hex) deny-lists are signed with.
    pub deny_list_key: String,
    /// The fare tables, when they changed.
    pub fares: Option<fares::FareRules>,
    /// The e-code root public keys (the spec's PEM, standby keys included, withdrawn keys not),
    /// when they changed: a gate verifies e-codes offline with them.
    pub ecode_roots: Option<String>,
    pub merchant: String,
}

fn admin_only(caller: &Caller, what: &str) -> Result<()> {
    if caller.role == Role::Administrator {
        Ok(())
    } else {
        Err(PlatformError::Forbidden(format!(
            "only administrators {what}"
        )))
    }
}

fn conflict(e: StoreError) -> PlatformError {
    match e {
        StoreError::Conflict(m) => PlatformError::Conflict(format!("{m} already exists")),
        e => e.into(),
    }
}

fn code_ok(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 32
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Platform {
    pub async fn merchant_create(
        &self,
        caller: &Caller,
        code: &str,
        name: &str,
        category: &str,
        settlement_account: &str,
    ) -> Result<MerchantRow> {
        admin_only(caller, "register merchants")?;
        if !code_ok(code) {
            return Err(PlatformError::invalid(
                "code",
                "1 to 32 characters a-z 0-9 - _",
            ));
        }
        if !CATEGORIES.contains(&category) {
            return Err(PlatformError::invalid(
                "category",
                format!("one of {}", CATEGORIES.join(", ")),
            ));
        }
        let (name, account) = (name.trim(), settlement_account.trim());
        if name.is_empty() || name.chars().count() > 100 || account.is_empty() || account.len() > 34
        {
            return Err(PlatformError::invalid(
                "name",
                "a name of 1 to 100 characters and a settlement account of 1 to 34",
            ));
        }
        let m = MerchantRow {
            code: code.into(),
            name: name.into(),
            category: category.into(),
            settlement_account: account.into(),
            created_ms: self.clock.now_ms(),
        };
        self.store
            .merchant_insert(
                &m,
                caller.draft("merchant.create", format!("merchant:{code}"), category),
                m.created_ms,
            )
            .await
            .map_err(conflict)?;
        Ok(m)
    }

    pub async fn merchants(&self) -> Result<Vec<MerchantRow>> {
        Ok(self.store.merchants().await?)
    }

    /// Registers a terminal for a merchant; the answer holds the activation code, shown once.
    #[allow(clippy::too_many_arguments)]
    pub async fn terminal_register(
        &self,
        caller: &Caller,
        id: &str,
        merchant: &str,
        kind: &str,
        site: &str,
        psam_serial: Option<&str>,
        psam_terminal_id: Option<&str>,
    ) -> Result<Registered> {
        admin_only(caller, "register terminals")?;
        let psam = psam_terminal_id.map(parse_psam).transpose()?;
        terminals::check_terminal_id(id)
            .map_err(|e| PlatformError::invalid("id", e.to_string()))?;
        if !KINDS.contains(&kind) {
            return Err(PlatformError::invalid(
                "kind",
                format!("one of {}", KINDS.join(", ")),
            ));
        }
        let site = site.trim();
        if site.is_empty() || site.chars().count() > 64 {
            return Err(PlatformError::invalid("site", "1 to 64 characters"));
        }
        let mut random = [0u8; 10];
        getrandom::fill(&mut random).map_err(|_| {
            PlatformError::Unexpected("no randomness for the activation code".into())
        })?;
        let code = terminals::activation_code(&random);
        let now = self.clock.now_ms();
        let t = TerminalRow {
            id: id.into(),
            merchant: merchant.into(),
            kind: kind.into(),
            site: site.into(),
            status: "registered".into(),
            activation_digest: Some(terminals::activation_digest(id, &code)),
            public_key: None,
            psam_serial: psam_serial.map(str::to_string),
            software_version: None,
            registered_ms: now,
            activated_ms: None,
        };
        self.store
            .terminal_insert(
                &t,
                caller.draft(
                    "terminal.register",
                    format!("terminal:{id}"),
                    format!(
                        "merchant {merchant}, {kind} at {site}, PSAM {}",
                        psam.as_deref().unwrap_or("to bind at activation")
                    ),
                ),
                now,
            )
            .await
            .map_err(conflict)?;
        if let Some(psam) = &psam {
            self.store
                .terminal_psam_bind(id, psam, now)
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(m) => PlatformError::Conflict(m),
                    e => e.into(),
                })?;
        }
        Ok(Registered {
            terminal: t,
            activation_code: code,
        })
    }

    pub async fn terminals(&self, merchant: Option<&str>) -> Result<Vec<TerminalRow>> {
        Ok(self.store.terminals_of(merchant).await?)
    }

    /// The terminal's first call: its activation code and its new SM2 public key. The code is
    /// spent; a wrong or spent code changes nothing.
    pub async fn terminal_activate(
        &self,
        id: &str,
        code: &str,
        public_key: &[u8],
        software_version: &str,
        psam_terminal_id: Option<&str>,
        origin: &str,
    ) -> Result<TerminalRow> {
        terminals::check_terminal_id(id)
            .map_err(|e| PlatformError::invalid("id", e.to_string()))?;
        let psam = psam_terminal_id.map(parse_psam).transpose()?;
        // The PSAM is checked before the code is spent: a terminal presenting another PSAM than
        // the one it was registered with is refused and may try again with the right one.
        if let Some(psam) = &psam
            && let Some(bound) = self.store.terminal_psam(id).await?
            && &bound != psam
        {
            return Err(PlatformError::Forbidden(format!(
                "terminal {id} is registered with PSAM {bound}, not {psam}"
            )));
        }
        crypto::Sm2PublicKey::from_sec1(public_key)
            .map_err(|e| PlatformError::invalid("public_key", e.to_string()))?;
        let version = software_version.trim();
        if version.is_empty() || version.len() > 32 {
            return Err(PlatformError::invalid(
                "software_version",
                "1 to 32 characters",
            ));
        }
        let system = Caller::cli(origin);
        let row = self
            .store
            .terminal_activate(
                id,
                &terminals::activation_digest(id, code),
                public_key,
                version,
                system.draft(
                    "terminal.activate",
                    format!("terminal:{id}"),
                    format!("software {version}"),
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => PlatformError::Forbidden(format!(
                    "terminal {id}: unknown, already active, or a wrong activation code"
                )),
                e => e.into(),
            })?;
        if let Some(psam) = &psam {
            self.store
                .terminal_psam_bind(id, psam, self.clock.now_ms())
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(m) => PlatformError::Conflict(m),
                    e => e.into(),
                })?;
        }
        Ok(row)
    }

    /// Authenticates a signed terminal request: an active terminal, the clock window, its
    /// signature, a nonce never seen in the window.
    pub async fn terminal_authenticate(
        &self,
        parts: &RequestParts<'_>,
        signature_hex: &str,
    ) -> Result<TerminalCaller> {
        let refuse = |e: AuthError| PlatformError::TerminalRefused(format!("terminal: {e}"));
        terminals::check_terminal_id(parts.terminal_id).map_err(refuse)?;
        let t = self
            .store
            .terminal(parts.terminal_id)
            .await?
            .filter(|t| t.status == "active")
            .ok_or_else(|| {
                PlatformError::TerminalRefused(format!(
                    "terminal {} is not an active terminal",
                    parts.terminal_id
                ))
            })?;
        let key = t
            .public_key
            .as_deref()
            .map(crypto::Sm2PublicKey::from_sec1)
            .transpose()
            .map_err(|e| PlatformError::Unexpected(format!("stored terminal key: {e}")))?
            .ok_or_else(|| PlatformError::Unexpected("an active terminal without a key".into()))?;
        let now_s = self.clock.now_ms().div_euclid(1000);
        terminals::verify(&key, parts, signature_hex, now_s).map_err(refuse)?;
        self.terminal_auth
            .replay
            .lock()
            .expect("replay cache lock")
            .check_and_insert(parts.terminal_id, parts.nonce, parts.time_s, now_s)
            .map_err(refuse)?;
        self.terminal_seen_now(&t.id).await?;
        Ok(TerminalCaller {
            terminal: t.id,
            merchant: t.merchant,
            kind: t.kind,
        })
    }

    /// Records that the terminal made an authenticated request now, group-committed with the
    /// fleet's concurrent requests; returns once it is stored.
    async fn terminal_seen_now(&self, terminal: &str) -> Result<()> {
        let queue = self.terminal_auth.seen.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(SEEN_QUEUE_MAX);
            tokio::spawn(run_seen_queue(self.store.clone(), rx));
            tx
        });
        let (reply, done) = tokio::sync::oneshot::channel();
        let job = SeenJob {
            terminal: terminal.to_string(),
            at_ms: self.clock.now_ms(),
            reply,
        };
        queue
            .send(job)
            .await
            .map_err(|_| PlatformError::Unexpected("the last-seen writer has stopped".into()))?;
        done.await.map_err(|_| {
            PlatformError::Unexpected("the last-seen writer dropped an update".into())
        })?
    }

    /// The parameters a terminal downloads (fares, deny-list version and key, clock). With
    /// `since` equal to the current version, only "unchanged" and the clock are answered.
    /// `report` is what the terminal says of itself (pending records, versions held), kept for
    /// fleet monitoring.
    pub async fn terminal_parameters(
        &self,
        t: &TerminalCaller,
        since: Option<&str>,
        report: Option<&store::TerminalReport>,
    ) -> Result<Parameters> {
        let (version, fares, deny, roots) = self.parameters_now().await?;
        let now = self.clock.now_ms();
        if let Some(r) = report {
            if r.parameters_version.as_ref().is_some_and(|v| v.len() > 64)
                || r.records_pending.is_some_and(|n| n < 0)
                || r.deny_list_version.is_some_and(|n| n < 0)
            {
                return Err(PlatformError::invalid(
                    "report",
                    "pending and deny-list version not negative, version at most 64 characters",
                ));
            }
            self.store.terminal_seen(&t.terminal, now, Some(r)).await?;
        }
        let changed = since != Some(version.as_str());
        Ok(Parameters {
            version,
            changed,
            server_time_s: now.div_euclid(1000),
            deny_list_version: deny,
            deny_list_key: hex::encode_upper(self.deny_list_public_key()),
            fares: changed.then_some(fares),
            ecode_roots: changed.then_some(roots),
            merchant: t.merchant.clone(),
        })
    }

    /// The current parameter version, fare tables, deny-list version and e-code roots (PEM).
    async fn parameters_now(&self) -> Result<(String, fares::FareRules, i64, String)> {
        let fares = fares::default_rules();
        let deny = self.store.deny_list_version().await?;
        let roots = self.ecode_roots_pem().await?;
        let fares_json =
            serde_json::to_vec(&fares).map_err(|e| PlatformError::Unexpected(e.to_string()))?;
        let version = {
            use sm3::Digest;
            let mut h = sm3::Sm3::new();
            h.update(&fares_json);
            h.update(deny.to_be_bytes());
            h.update(roots.as_bytes());
            hex::encode_upper(&h.finalize()[..8])
        };
        Ok((version, fares, deny, roots))
    }

    /// The fleet for monitoring: every terminal with its last report and its alerts, and the
    /// counts. `caller` must be allowed to read merchants' terminals.
    pub async fn terminal_fleet_view(&self) -> Result<FleetView> {
        let (parameters_version, _, deny, _) = self.parameters_now().await?;
        let now = self.clock.now_ms();
        let mut counts = FleetCounts::default();
        let rows: Vec<FleetRow> = self
            .terminal_fleet()
            .await?
            .into_iter()
            .map(|e| {
                let alerts = fleet_alerts(&e, now, &parameters_version, deny);
                counts.terminals += 1;
                if e.terminal.status == "active" {
                    counts.active += 1;
                }
                if let Some(st) = &e.status {
                    counts.records_pending += st.records_pending.unwrap_or(0).max(0) as u64;
                    counts.records_uploaded += st.uploaded_records.max(0) as u64;
                }
                if alerts.contains(&Alert::Silent) {
                    counts.silent += 1;
                }
                if alerts.contains(&Alert::Behind) {
                    counts.behind += 1;
                }
                if alerts.contains(&Alert::Backlog) {
                    counts.backlog += 1;
                }
                FleetRow { entry: e, alerts }
            })
            .collect();
        Ok(FleetView {
            now_ms: now,
            parameters_version,
            deny_list_version: deny,
            rows,
            counts,
        })
    }

    /// An upload batch this terminal sent before: the answer it got then, when `digest` (SM3 of
    /// the body) matches; `Conflict` when the batch id was used for another body.
    pub async fn terminal_batch_answer(
        &self,
        t: &TerminalCaller,
        batch_id: &str,
        digest: &str,
    ) -> Result<Option<Vec<u8>>> {
        check_batch_id(batch_id)?;
        match self.store.terminal_batch(&t.terminal, batch_id).await? {
            Some(b) if b.digest == digest => Ok(Some(b.answer)),
            Some(_) => Err(PlatformError::Conflict(format!(
                "batch {batch_id} was sent before with other records: a batch id names one upload"
            ))),
            None => Ok(None),
        }
    }

    /// Keeps the answer to a batch, so a resend gets it again; returns the answer that stands
    /// (the first one, when two sends of the batch raced).
    pub async fn terminal_batch_keep(
        &self,
        t: &TerminalCaller,
        batch_id: &str,
        kind: &str,
        digest: &str,
        records: usize,
        answer: Vec<u8>,
    ) -> Result<Vec<u8>> {
        check_batch_id(batch_id)?;
        let row = self
            .store
            .terminal_batch_insert(&store::TerminalBatchRow {
                terminal: t.terminal.clone(),
                batch_id: batch_id.into(),
                kind: kind.into(),
                digest: digest.into(),
                records: records as i64,
                answer,
                received_ms: self.clock.now_ms(),
            })
            .await?;
        Ok(row.answer)
    }

    /// The fleet as the terminals last reported, with each terminal's registration.
    pub async fn terminal_fleet(&self) -> Result<Vec<FleetEntry>> {
        let statuses: std::collections::HashMap<String, store::TerminalStatusRow> = self
            .store
            .terminal_statuses()
            .await?
            .into_iter()
            .map(|s| (s.terminal.clone(), s))
            .collect();
        let mut out = Vec::new();
        for t in self.store.terminals_of(None).await? {
            let psam = self.store.terminal_psam(&t.id).await?;
            let status = statuses.get(&t.id).cloned();
            out.push(FleetEntry {
                terminal: t,
                psam_terminal_id: psam,
                status,
            });
        }
        Ok(out)
    }

    /// Ingests an upload from an authenticated terminal: its merchant's payable account is
    /// credited; the audit names the terminal. Per record, the same answers as
    /// [`Platform::ingest_purchases`] (a re-sent upload answers `duplicate` for every record it
    /// already posted, so a broken connection is resumed by sending the same upload again).
    /// Every record must carry the terminal id of the PSAM the terminal is bound to; one that
    /// does not is answered malformed and nothing of it is posted.
    pub async fn terminal_upload(
        &self,
        t: &TerminalCaller,
        records: Vec<chip::host::RawUpload>,
    ) -> Result<Vec<crate::purchases::PurchaseResult>> {
        match self.terminal_upload_kept(t, records, None).await? {
            crate::purchases::Kept::Ingested { results, .. } => Ok(results),
            crate::purchases::Kept::Stored(_) => unreachable!("no stored batch without a batch"),
        }
    }

    /// A terminal's upload under a batch id: the answer `encode` makes of the results is stored
    /// in the same transaction as the postings, so a crash cannot leave postings without the
    /// answer a resend gets, nor an answer without its postings. A batch id answered before
    /// (same body) gets its stored answer and nothing is ingested.
    pub async fn terminal_upload_batch(
        &self,
        t: &TerminalCaller,
        records: Vec<chip::host::RawUpload>,
        batch_id: &str,
        digest: &str,
        encode: crate::purchases::Encode,
    ) -> Result<Vec<u8>> {
        check_batch_id(batch_id)?;
        let keep = crate::purchases::KeepAnswer {
            terminal: t.terminal.clone(),
            batch_id: batch_id.to_string(),
            digest: digest.to_string(),
            records: records.len(),
            encode,
        };
        match self.terminal_upload_kept(t, records, Some(keep)).await? {
            crate::purchases::Kept::Ingested { answer, .. } => Ok(answer),
            crate::purchases::Kept::Stored(answer) => Ok(answer),
        }
    }

    async fn terminal_upload_kept(
        &self,
        t: &TerminalCaller,
        records: Vec<chip::host::RawUpload>,
        keep: Option<crate::purchases::KeepAnswer>,
    ) -> Result<crate::purchases::Kept> {
        use crate::purchases::{KeepAnswer, Kept, PurchaseResult, UPLOAD_RECORDS_MAX};
        if records.len() > UPLOAD_RECORDS_MAX {
            return Err(PlatformError::TooLarge {
                what: format!("an upload of {} purchase records", records.len()),
                limit: format!("{UPLOAD_RECORDS_MAX} records"),
            });
        }
        let psam = self
            .store
            .terminal_psam(&t.terminal)
            .await?
            .ok_or_else(|| {
                PlatformError::Conflict(format!(
                    "terminal {} has no PSAM bound: bind one at registration or activation before \
                 uploading",
                    t.terminal
                ))
            })?;
        let acting = Caller {
            operator_id: None,
            username: format!("terminal:{}", t.terminal),
            role: Role::ClearingOfficer,
            department: None,
            origin: format!("terminal:{}", t.terminal),
        };
        let mut own = Vec::with_capacity(records.len());
        let mut slots: Vec<Option<PurchaseResult>> = Vec::with_capacity(records.len());
        for r in records {
            if r.terminal_id.eq_ignore_ascii_case(&psam) {
                own.push(r);
                slots.push(None);
            } else {
                slots.push(Some(PurchaseResult::Malformed {
                    field: "terminal_id".into(),
                    reason: format!(
                        "made with PSAM {}, not with this terminal's PSAM {psam}",
                        r.terminal_id
                    ),
                }));
            }
        }
        let slots = Arc::new(slots);
        let inner = keep.map(|k| {
            let (slots, encode) = (slots.clone(), k.encode.clone());
            KeepAnswer {
                encode: Arc::new(move |r: &[PurchaseResult]| encode(&fill(&slots, r))),
                ..k
            }
        });
        let own_count = own.len();
        match self
            .ingest_purchases_kept(&acting, &t.merchant, own, inner)
            .await?
        {
            Kept::Ingested { results, answer } => {
                if results.len() != own_count {
                    return Err(PlatformError::Unexpected(
                        "another number of answers than records".into(),
                    ));
                }
                Ok(Kept::Ingested {
                    results: fill(&slots, &results),
                    answer,
                })
            }
            stored => Ok(stored),
        }
    }
}

/// Every record's result: the PSAM refusals in place, the ingest's results in order.
fn fill(
    slots: &[Option<crate::purchases::PurchaseResult>],
    posted: &[crate::purchases::PurchaseResult],
) -> Vec<crate::purchases::PurchaseResult> {
    let mut posted = posted.iter();
    slots
        .iter()
        .map(|s| match s {
            Some(r) => r.clone(),
            None => posted
                .next()
                .cloned()
                .unwrap_or(crate::purchases::PurchaseResult::Malformed {
                    field: "record".into(),
                    reason: "no answer from the ingest".into(),
                }),
        })
        .collect()
}

/// One terminal of the fleet: registration, bound PSAM, last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetEntry {
    pub terminal: TerminalRow,
    pub psam_terminal_id: Option<String>,
    pub status: Option<store::TerminalStatusRow>,
}

/// A PSAM's terminal id: 12 hex digits (as its records carry it), upper case.
fn parse_psam(text: &str) -> Result<String> {
    chip::TerminalId::parse(text.trim())
        .map(|t| t.to_string())
        .map_err(|e| PlatformError::invalid("psam_terminal_id", e.to_string()))
}

/// Batch ids: 1 to 64 characters A-Z a-z 0-9 - _.
fn check_batch_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PlatformError::invalid(
            "batch_id",
            "1 to 64 characters A-Z a-z 0-9 - _",
        ))
    }
}

/// An active terminal not heard from for this long is silent.
pub const SILENT_AFTER_MS: i64 = 30 * 60 * 1000;
/// A terminal more deny-list versions behind than this is behind.
pub const DENY_BEHIND_MAX: i64 = 5;
/// A terminal reporting more records waiting than this has a backlog.
pub const PENDING_ALERT: i64 = 1_000;

/// What is wrong with a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// Active but not heard from within [`SILENT_AFTER_MS`] (or never).
    Silent,
    /// Its deny-list is more than [`DENY_BEHIND_MAX`] versions old, or its parameters are not
    /// the current ones.
    Behind,
    /// More than [`PENDING_ALERT`] records wait in it for upload.
    Backlog,
}

impl Alert {
    pub fn code(self) -> &'static str {
        match self {
            Alert::Silent => "silent",
            Alert::Behind => "behind",
            Alert::Backlog => "backlog",
        }
    }
}

/// One terminal with its alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRow {
    pub entry: FleetEntry,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetCounts {
    pub terminals: u64,
    pub active: u64,
    pub silent: u64,
    pub behind: u64,
    pub backlog: u64,
    pub records_pending: u64,
    pub records_uploaded: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetView {
    pub now_ms: i64,
    pub parameters_version: String,
    pub deny_list_version: i64,
    pub rows: Vec<FleetRow>,
    pub counts: FleetCounts,
}

/// The alerts of one terminal at `now_ms` (pure).
pub fn fleet_alerts(
    e: &FleetEntry,
    now_ms: i64,
    parameters_version: &str,
    deny: i64,
) -> Vec<Alert> {
    let mut out = Vec::new();
    if e.terminal.status != "active" {
        return out;
    }
    let Some(st) = &e.status else {
        out.push(Alert::Silent);
        return out;
    };
    if now_ms - st.last_seen_ms > SILENT_AFTER_MS {
        out.push(Alert::Silent);
    }
    let deny_behind = st
        .deny_list_version
        .is_some_and(|v| deny - v > DENY_BEHIND_MAX);
    let params_behind = st
        .parameters_version
        .as_deref()
        .is_some_and(|v| v != parameters_version);
    if deny_behind || params_behind {
        out.push(Alert::Behind);
    }
    if st.records_pending.is_some_and(|n| n > PENDING_ALERT) {
        out.push(Alert::Backlog);
    }
    out
}
