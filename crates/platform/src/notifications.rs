//! Citizen notifications (issue 9, item 5): one outbox for SMS and in-app messages
//! (`NotificationStore`), texts from the `notices` templates in the citizen's language,
//! per-citizen preferences (language, SMS on or off, a phone for notices), and delivery through
//! a pluggable [`SmsGateway`] with retries and backoff.
//!
//! Nothing is sent twice: every notice has an idempotency key (a second enqueue of the key
//! does nothing), a claim holds a row for a lease so two workers do not take it, and the
//! gateway call carries [`notices::message_id`] of the key, so a retry after a timeout is
//! answered by the gateway with the first send instead of a second message.
//!
//! Phones are sealed at rest under the context `notify-phone:{resident}`; logs and views show
//! them masked; opening them to send is on the audit log (one entry per delivery batch).

use crate::{Caller, Platform, PlatformError, Result};
use notices::{Language, Notice, Phone};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use store::Role;
use store::notifications::*;

/// How long a claimed SMS is held before another worker may take it.
pub const CLAIM_LEASE_MS: i64 = 60_000;
/// Deliveries in flight at once per batch.
pub const SEND_CONCURRENCY: usize = 16;
/// At most this many SMS per delivery batch.
pub const DELIVERY_BATCH_MAX: u32 = 1_000;

const PREFS_ROLES: &[Role] = &[Role::Administrator, Role::CounterClerk];
const READERS: &[Role] = &[Role::Administrator, Role::CounterClerk, Role::Auditor];
const DELIVERERS: &[Role] = &[Role::Administrator];

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

/// One SMS as a gateway receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsMessage {
    /// The gateway's idempotency key: the same for every attempt of one notice.
    pub message_id: String,
    pub phone: Phone,
    pub text: String,
}

/// A gateway's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsAnswer {
    Accepted {
        gateway_ref: String,
    },
    /// Refused for good (an invalid or barred number): not tried again.
    Rejected {
        reason: String,
    },
}

/// A gateway call that may be tried again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    #[error("the SMS gateway did not answer within {0} ms")]
    Timeout(u64),
    #[error("the SMS gateway is unreachable: {0}")]
    Unreachable(String),
    #[error("the SMS gateway's answer is not the protocol: {0}")]
    Protocol(String),
}

/// Where SMS go: an operator's HTTP gateway (`sms-link`), or the embedded log.
#[async_trait::async_trait]
pub trait SmsGateway: Send + Sync {
    fn name(&self) -> &str;
    /// Sends once per `message_id`: a repeated id is answered with the first outcome.
    async fn send(&self, m: &SmsMessage) -> std::result::Result<SmsAnswer, SmsError>;
}

/// The embedded default: appends each message (phone masked) to a local log file as a JSON
/// line, once per message id (ids already in the file are remembered at open).
pub struct LogSmsGateway {
    path: PathBuf,
    state: Mutex<(std::fs::File, std::collections::HashSet<String>)>,
}

/// Message ids the log gateway remembers, at most.
pub const LOG_IDS_MAX: usize = 2_000_000;

impl LogSmsGateway {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut seen = std::collections::HashSet::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                    && let Some(id) = v.get("message_id").and_then(|x| x.as_str())
                    && seen.len() < LOG_IDS_MAX
                {
                    seen.insert(id.to_string());
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(LogSmsGateway {
            path: path.to_path_buf(),
            state: Mutex::new((file, seen)),
        })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait::async_trait]
impl SmsGateway for LogSmsGateway {
    fn name(&self) -> &str {
        "log"
    }
    async fn send(&self, m: &SmsMessage) -> std::result::Result<SmsAnswer, SmsError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.1.contains(&m.message_id) {
            return Ok(SmsAnswer::Accepted {
                gateway_ref: format!("log:{}", m.message_id),
            });
        }
        let line = serde_json::json!({
            "message_id": m.message_id,
            "phone": m.phone.masked(),
            "text": m.text,
        });
        writeln!(st.0, "{line}").map_err(|e| SmsError::Unreachable(e.to_string()))?;
        if st.1.len() < LOG_IDS_MAX {
            st.1.insert(m.message_id.clone());
        }
        Ok(SmsAnswer::Accepted {
            gateway_ref: format!("log:{}", m.message_id),
        })
    }
}

/// The process's SMS gateway.
#[derive(Default)]
pub struct NotifyState {
    gateway: RwLock<Option<Arc<dyn SmsGateway>>>,
}

/// A citizen's preferences as shown (phone masked).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrefsView {
    pub language: String,
    pub sms_enabled: bool,
    /// The phone notices go to, masked; `None` when the citizen has none.
    pub phone_masked: Option<String>,
    /// `preferences` or `resident_record`.
    pub phone_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotificationView {
    pub id: i64,
    pub key: String,
    pub resident_id: i64,
    pub channel: String,
    pub template: String,
    pub language: String,
    pub body: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub gateway_ref: Option<String>,
    pub created_ms: i64,
    pub done_ms: Option<i64>,
}

fn view(r: NotificationRow) -> NotificationView {
    NotificationView {
        id: r.id,
        key: r.key,
        resident_id: r.resident_id,
        channel: r.channel,
        template: r.template,
        language: r.language,
        body: if r.body.starts_with(SEALED_BODY) {
            SEALED_BODY.trim_end_matches(':').into()
        } else {
            r.body
        },
        status: r.status,
        attempts: r.attempts,
        last_error: r.last_error,
        gateway_ref: r.gateway_ref,
        created_ms: r.created_ms,
        done_ms: r.done_ms,
    }
}

/// What one delivery batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct DeliveryReport {
    pub claimed: u64,
    pub sent: u64,
    pub retried: u64,
    pub failed: u64,
}

/// One notice to enqueue: its idempotency key (unique per notice; the channel is appended),
/// the resident, and what to say.
#[derive(Debug, Clone)]
pub struct NoticeItem {
    pub key: String,
    pub resident_id: i64,
    pub notice: Notice,
}

fn phone_ctx(resident_id: i64) -> Vec<u8> {
    format!("notify-phone:{resident_id}").into_bytes()
}

/// An SMS that carries a live one-time code is kept sealed in the outbox: its body is this
/// prefix and the hex of the vault's sealing (bound to the row's key), opened only to hand the
/// text to the gateway. Operators' views show the prefix alone.
const SEALED_BODY: &str = "sealed:";

fn body_ctx(key: &str) -> Vec<u8> {
    format!("notify-body:{key}").into_bytes()
}

fn key_ok(key: &str) -> bool {
    (1..=120).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

impl Platform {
    /// Attaches the SMS gateway (replacing an earlier one).
    pub fn set_sms_gateway(&self, g: Arc<dyn SmsGateway>) {
        *self
            .notify
            .gateway
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(g);
    }

    fn sms_gateway(&self) -> Result<Arc<dyn SmsGateway>> {
        self.notify
            .gateway
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| PlatformError::Conflict("no SMS gateway is attached".into()))
    }

    /// The internal resident id of an ID number (not a read of personal data: the id
    /// reveals nothing).
    pub async fn resident_id_of(&self, id_number: &str) -> Result<i64> {
        let id = resident::ResidentId::parse(id_number, self.clock.today())
            .map_err(|e| PlatformError::invalid("id_number", e.to_string()))?;
        Ok(self
            .store
            .resident_by_blind(&self.vault.blind("id_number", id.as_str()))
            .await?
            .ok_or_else(|| PlatformError::NotFound("resident".into()))?
            .id)
    }

    /// Sets a citizen's notice preferences; `phone` (when given) replaces the resident
    /// record's phone for notices, `Some("")` clears it.
    pub async fn notify_prefs_set(
        &self,
        caller: &Caller,
        id_number: &str,
        language: &str,
        sms_enabled: bool,
        phone: Option<&str>,
    ) -> Result<PrefsView> {
        may(caller, PREFS_ROLES, "change notice preferences")?;
        let lang = Language::parse(language)
            .map_err(|e| PlatformError::invalid("language", e.to_string()))?;
        let resident_id = self.resident_id_of(id_number).await?;
        let old = self.store.notify_prefs(resident_id).await?;
        let phone_sealed = match phone {
            Some("") => None,
            Some(p) => {
                let p =
                    Phone::parse(p).map_err(|e| PlatformError::invalid("phone", e.to_string()))?;
                Some(
                    self.vault
                        .seal(&phone_ctx(resident_id), p.expose().as_bytes())?,
                )
            }
            None => old.and_then(|o| o.phone_sealed),
        };
        let row = NotifyPrefsRow {
            resident_id,
            language: lang.as_str().into(),
            sms_enabled,
            phone_sealed,
            updated_ms: self.clock.now_ms(),
        };
        self.store
            .notify_prefs_set(
                &row,
                caller.draft(
                    "notify.prefs",
                    format!("resident:{resident_id}"),
                    format!("language {} sms {sms_enabled}", lang.as_str()),
                ),
                self.clock.now_ms(),
            )
            .await?;
        self.notify_prefs_get(caller, id_number).await
    }

    /// A citizen's preferences (defaults when never set), the phone masked; audited.
    pub async fn notify_prefs_get(&self, caller: &Caller, id_number: &str) -> Result<PrefsView> {
        may(caller, READERS, "read notice preferences")?;
        let resident_id = self.resident_id_of(id_number).await?;
        self.audit(caller.draft("notify.prefs.read", format!("resident:{resident_id}"), ""))
            .await?;
        let prefs = self.store.notify_prefs(resident_id).await?;
        let (phone, source) = self.notice_phone(resident_id, prefs.as_ref()).await?;
        Ok(PrefsView {
            language: prefs
                .as_ref()
                .map_or(Language::default().as_str().into(), |p| p.language.clone()),
            sms_enabled: prefs.as_ref().is_none_or(|p| p.sms_enabled),
            phone_masked: phone.map(|p| p.masked()),
            phone_source: source.map(str::to_string),
        })
    }

    /// The phone notices go to: the preferences' one, else the resident record's.
    pub(crate) async fn notice_phone(
        &self,
        resident_id: i64,
        prefs: Option<&NotifyPrefsRow>,
    ) -> Result<(Option<Phone>, Option<&'static str>)> {
        if let Some(sealed) = prefs.and_then(|p| p.phone_sealed.as_ref()) {
            let p = self.vault.open_string(&phone_ctx(resident_id), sealed)?;
            return Ok((Phone::parse(&p).ok(), Some("preferences")));
        }
        let Some(row) = self.store.resident_by_id(resident_id).await? else {
            return Ok((None, None));
        };
        Ok(match self.record_phone(&row)? {
            Some(p) => (Some(p), Some("resident_record")),
            None => (None, None),
        })
    }

    /// The mobile phone of a resident's record; landlines receive no SMS.
    fn record_phone(&self, row: &store::ResidentRow) -> Result<Option<Phone>> {
        let Some(sealed) = &row.phone_sealed else {
            return Ok(None);
        };
        let p = self
            .vault
            .open_string(&crate::residents::ctx(&row.id_blind, "phone"), sealed)?;
        Ok(Phone::parse(&p).ok())
    }

    /// Enqueues notices: always an in-app message, and an SMS when the citizen has SMS on and
    /// a mobile number. A key already enqueued changes nothing. Returns the rows written.
    pub async fn notify_residents(&self, caller: &Caller, items: &[NoticeItem]) -> Result<u64> {
        if items.len() > NOTIFY_BATCH_MAX / 2 {
            return Err(PlatformError::TooLarge {
                what: format!("{} notices", items.len()),
                limit: (NOTIFY_BATCH_MAX / 2).to_string(),
            });
        }
        for i in items {
            if !key_ok(&i.key) {
                return Err(PlatformError::invalid(
                    "key",
                    "1 to 120 visible ASCII characters",
                ));
            }
        }
        let mut ids: Vec<i64> = items.iter().map(|i| i.resident_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let prefs: std::collections::HashMap<i64, NotifyPrefsRow> = self
            .store
            .notify_prefs_many(&ids)
            .await?
            .into_iter()
            .map(|p| (p.resident_id, p))
            .collect();
        // The sealed SMS phone per resident (None: no SMS), worked out once per batch; the
        // residents without a phone in their preferences are read in one go.
        let from_record: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|r| {
                prefs
                    .get(r)
                    .is_none_or(|p| p.sms_enabled && p.phone_sealed.is_none())
            })
            .collect();
        let mut records: std::collections::HashMap<i64, store::ResidentRow> = Default::default();
        for chunk in from_record.chunks(store::RESIDENTS_BY_IDS_MAX) {
            for row in self.store.residents_by_ids(chunk).await? {
                records.insert(row.id, row);
            }
        }
        let mut phones: std::collections::HashMap<i64, Option<Vec<u8>>> = Default::default();
        for &r in &ids {
            let p = prefs.get(&r);
            if p.is_some_and(|p| !p.sms_enabled) {
                phones.insert(r, None);
                continue;
            }
            let sealed = match p.and_then(|p| p.phone_sealed.clone()) {
                Some(s) => Some(s),
                None => match records
                    .get(&r)
                    .map(|row| self.record_phone(row))
                    .transpose()?
                {
                    Some(Some(phone)) => {
                        Some(self.vault.seal(&phone_ctx(r), phone.expose().as_bytes())?)
                    }
                    _ => None,
                },
            };
            phones.insert(r, sealed);
        }
        // The phones were read to seal them into the outbox: on the record.
        if phones.values().any(Option::is_some) {
            self.audit(caller.draft(
                "notify.enqueue",
                "outbox",
                format!("{} notices for {} residents", items.len(), ids.len()),
            ))
            .await?;
        }
        let mut rows = Vec::with_capacity(items.len() * 2);
        for i in items {
            let lang = prefs
                .get(&i.resident_id)
                .and_then(|p| Language::parse(&p.language).ok())
                .unwrap_or_default();
            let bad = |e: notices::NoticeError| PlatformError::invalid("notice", e.to_string());
            // The inbox's copy never holds a one-time code (`Notice::render_inbox`).
            let base = NewNotification {
                key: format!("{}:inapp", i.key),
                resident_id: i.resident_id,
                channel: "inapp".into(),
                template: i.notice.template().into(),
                language: lang.as_str().into(),
                body: i.notice.render_inbox(lang).map_err(bad)?,
                phone_sealed: None,
            };
            if let Some(Some(sealed)) = phones.get(&i.resident_id) {
                let key = format!("{}:sms", i.key);
                let text = i.notice.render(lang).map_err(bad)?;
                let body = if matches!(i.notice, Notice::OneTimeCode { .. }) {
                    let s = self.vault.seal(&body_ctx(&key), text.as_bytes())?;
                    format!("{SEALED_BODY}{}", hex::encode(s))
                } else {
                    text
                };
                rows.push(NewNotification {
                    key,
                    channel: "sms".into(),
                    body,
                    phone_sealed: Some(sealed.clone()),
                    ..base.clone()
                });
            }
            rows.push(base);
        }
        Ok(self
            .store
            .notify_enqueue(&rows, self.clock.now_ms())
            .await?)
    }

    /// One delivery batch: claims due SMS, sends them through the gateway (up to
    /// [`SEND_CONCURRENCY`] at once) and records each outcome; a failure that may pass is
    /// tried again after `notices::retry_delay_ms`, until `notices::ATTEMPTS_MAX`.
    pub async fn deliver_notifications(
        &self,
        caller: &Caller,
        limit: u32,
    ) -> Result<DeliveryReport> {
        may(caller, DELIVERERS, "deliver notifications")?;
        let gateway = self.sms_gateway()?;
        let now = self.clock.now_ms();
        let claimed = self
            .store
            .notify_claim(now, CLAIM_LEASE_MS, limit.min(DELIVERY_BATCH_MAX))
            .await?;
        let mut report = DeliveryReport {
            claimed: claimed.len() as u64,
            ..Default::default()
        };
        if claimed.is_empty() {
            return Ok(report);
        }
        // Phones are opened to send: on the record before any leaves.
        self.audit(caller.draft(
            "notify.deliver",
            "outbox",
            format!("{} SMS through {}", claimed.len(), gateway.name()),
        ))
        .await?;
        let mut set = tokio::task::JoinSet::new();
        let mut queue = claimed.into_iter();
        let mut outcomes = Vec::new();
        loop {
            while set.len() < SEND_CONCURRENCY {
                let Some(row) = queue.next() else { break };
                let phone = row
                    .phone_sealed
                    .as_ref()
                    .map(|s| self.vault.open_string(&phone_ctx(row.resident_id), s))
                    .transpose()?
                    .and_then(|p| Phone::parse(&p).ok());
                let text = match row.body.strip_prefix(SEALED_BODY) {
                    Some(h) => {
                        let sealed = hex::decode(h).map_err(|_| {
                            PlatformError::Unexpected(format!(
                                "notification {}: sealed body",
                                row.id
                            ))
                        })?;
                        self.vault.open_string(&body_ctx(&row.key), &sealed)?
                    }
                    None => row.body.clone(),
                };
                let g = gateway.clone();
                set.spawn(async move {
                    let answer = match phone {
                        Some(phone) => {
                            g.send(&SmsMessage {
                                message_id: notices::message_id(&row.key),
                                phone,
                                text,
                            })
                            .await
                        }
                        None => Ok(SmsAnswer::Rejected {
                            reason: "no valid mobile number".into(),
                        }),
                    };
                    (row, answer)
                });
            }
            match set.join_next().await {
                Some(Ok(x)) => outcomes.push(x),
                Some(Err(e)) => return Err(PlatformError::Unexpected(format!("sending: {e}"))),
                None => break,
            }
        }
        let done = self.clock.now_ms();
        for (row, answer) in outcomes {
            let outcome = match answer {
                Ok(SmsAnswer::Accepted { gateway_ref }) => {
                    report.sent += 1;
                    DeliveryOutcome::Sent { gateway_ref }
                }
                Ok(SmsAnswer::Rejected { reason }) => {
                    report.failed += 1;
                    tracing::warn!(notice = row.id, %reason, "SMS rejected by the gateway");
                    DeliveryOutcome::Failed { error: reason }
                }
                Err(e) => match notices::retry_delay_ms(row.attempts.max(0) as u32) {
                    Some(d) => {
                        report.retried += 1;
                        DeliveryOutcome::Retry {
                            error: e.to_string(),
                            next_attempt_ms: done + d,
                        }
                    }
                    None => {
                        report.failed += 1;
                        DeliveryOutcome::Failed {
                            error: e.to_string(),
                        }
                    }
                },
            };
            self.store
                .notify_finish(row.id, row.attempts, &outcome, done)
                .await?;
        }
        Ok(report)
    }

    /// Delivers due SMS every `interval` until the returned task is aborted.
    pub fn spawn_notification_worker(
        &self,
        interval: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let p = self.clone();
        tokio::spawn(async move {
            let caller = Caller::cli("notify-worker");
            loop {
                match p.deliver_notifications(&caller, DELIVERY_BATCH_MAX).await {
                    Ok(r) if r.claimed > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "notification delivery failed"),
                }
                tokio::time::sleep(interval).await;
            }
        })
    }

    /// A citizen's notices, newest first; audited.
    pub async fn notifications_of(
        &self,
        caller: &Caller,
        id_number: &str,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationView>> {
        may(caller, READERS, "read a citizen's notices")?;
        if let Some(c) = channel
            && c != "sms"
            && c != "inapp"
        {
            return Err(PlatformError::invalid("channel", "sms or inapp"));
        }
        let resident_id = self.resident_id_of(id_number).await?;
        self.audit(caller.draft("notify.read", format!("resident:{resident_id}"), ""))
            .await?;
        Ok(self
            .store
            .notifications_of(resident_id, channel, limit)
            .await?
            .into_iter()
            .map(view)
            .collect())
    }

    /// The outbox by status, newest first (no phones).
    pub async fn notifications_page(
        &self,
        caller: &Caller,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationView>> {
        may(caller, READERS, "read the outbox")?;
        if let Some(s) = status
            && ![
                NOTIFY_PENDING,
                NOTIFY_SENT,
                NOTIFY_FAILED,
                NOTIFY_UNREAD,
                NOTIFY_READ,
            ]
            .contains(&s)
        {
            return Err(PlatformError::invalid(
                "status",
                "pending, sent, failed, unread or read",
            ));
        }
        Ok(self
            .store
            .notifications_page(status, limit)
            .await?
            .into_iter()
            .map(view)
            .collect())
    }

    pub async fn notify_counts(&self, caller: &Caller) -> Result<Vec<NotifyCount>> {
        may(caller, READERS, "read the outbox")?;
        Ok(self.store.notify_counts().await?)
    }
}
