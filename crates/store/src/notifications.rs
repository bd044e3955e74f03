//! The notification outbox (issue 9, item 5): per-citizen preferences, and one row per
//! notice and channel (SMS or in-app), written once by its idempotency key, claimed for
//! delivery with a lease, and finished once.

use crate::Result;
use async_trait::async_trait;

/// At most this many notices are enqueued or claimed in one call.
pub const NOTIFY_BATCH_MAX: usize = 10_000;

/// Notification statuses: an SMS is `pending` until `sent` or `failed`; an in-app message is
/// `unread` until `read`.
pub const NOTIFY_PENDING: &str = "pending";
pub const NOTIFY_SENT: &str = "sent";
pub const NOTIFY_FAILED: &str = "failed";
pub const NOTIFY_UNREAD: &str = "unread";
pub const NOTIFY_READ: &str = "read";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyPrefsRow {
    pub resident_id: i64,
    /// `zh-CN` or `en`.
    pub language: String,
    pub sms_enabled: bool,
    /// A phone for notices, sealed by the vault; without it the resident record's phone.
    pub phone_sealed: Option<Vec<u8>>,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// Unique per notice and channel.
    pub key: String,
    pub resident_id: i64,
    /// `sms` or `inapp`.
    pub channel: String,
    pub template: String,
    pub language: String,
    /// The rendered text; holds no name, ID number or phone.
    pub body: String,
    /// SMS only: the number, sealed.
    pub phone_sealed: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    pub id: i64,
    pub key: String,
    pub resident_id: i64,
    pub channel: String,
    pub template: String,
    pub language: String,
    pub body: String,
    pub phone_sealed: Option<Vec<u8>>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub gateway_ref: Option<String>,
    pub created_ms: i64,
    pub done_ms: Option<i64>,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Sent {
        gateway_ref: String,
    },
    /// Try again at `next_attempt_ms`.
    Retry {
        error: String,
        next_attempt_ms: i64,
    },
    Failed {
        error: String,
    },
}

/// Counts per channel and status, for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyCount {
    pub channel: String,
    pub status: String,
    pub count: i64,
}

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Sets a resident's preferences (replacing earlier ones) with its audit entry.
    async fn notify_prefs_set(
        &self,
        prefs: &NotifyPrefsRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;
    async fn notify_prefs(&self, resident_id: i64) -> Result<Option<NotifyPrefsRow>>;
    /// Preferences of many residents (those without any are absent).
    async fn notify_prefs_many(&self, resident_ids: &[i64]) -> Result<Vec<NotifyPrefsRow>>;

    /// Enqueues notices in one transaction: SMS rows `pending` due now, in-app rows `unread`.
    /// A key already stored is left as it is. Returns how many rows were new. `TooMany` above
    /// [`NOTIFY_BATCH_MAX`].
    async fn notify_enqueue(&self, items: &[NewNotification], now_ms: i64) -> Result<u64>;

    /// Claims up to `limit` pending SMS due at `now_ms`, oldest first: each claimed row's
    /// `attempts` goes up by one and its `next_attempt_ms` moves to `now_ms + lease_ms`, so a
    /// concurrent claimer does not take it while it is being sent.
    async fn notify_claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRow>>;

    /// Records a delivery attempt's outcome, only while the row is `pending` and its attempts
    /// are still `attempts` (the claim it came from). False when it was not.
    async fn notify_finish(
        &self,
        id: i64,
        attempts: i32,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> Result<bool>;

    async fn notification_by_key(&self, key: &str) -> Result<Option<NotificationRow>>;
    /// A resident's notices, newest first (at most `limit`, ≤ `PAGE_MAX`).
    async fn notifications_of(
        &self,
        resident_id: i64,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRow>>;
    /// Notices by status (any when `None`), newest first.
    async fn notifications_page(
        &self,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRow>>;
    /// Marks an in-app message read (its resident's only). False when not `unread`.
    async fn notification_read(&self, id: i64, resident_id: i64, now_ms: i64) -> Result<bool>;
    /// How many of a resident's in-app messages are still `unread` (the portal's badge).
    async fn notifications_unread(&self, resident_id: i64) -> Result<i64>;
    async fn notify_counts(&self) -> Result<Vec<NotifyCount>>;
}
