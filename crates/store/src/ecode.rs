//! Storage of the electronic citizen card (e-code): phones enrolled on cards (devices), the
//! platform's SM2 root keys (wrapped by the key store) and the certificates issued.

use async_trait::async_trait;

use crate::Result;

/// Device states.
pub const DEVICE_ACTIVE: &str = "active";
pub const DEVICE_REVOKED: &str = "revoked";

/// Root key states: `standby` (provisioned to terminals, signs nothing yet), `current` (signs
/// new certificates; at most one), `retired` (signs nothing, its certificates still verify),
/// `withdrawn` (refused everywhere).
pub const ROOT_STANDBY: &str = "standby";
pub const ROOT_CURRENT: &str = "current";
pub const ROOT_RETIRED: &str = "retired";
pub const ROOT_WITHDRAWN: &str = "withdrawn";

/// A phone enrolled on a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// The platform's id of this enrolment.
    pub id: i64,
    pub card_number: String,
    /// The app's installation id.
    pub device_id: String,
    /// SEC1 compressed SM2 public key (33 bytes).
    pub public_key: Vec<u8>,
    pub state: String,
    pub bound_ms: i64,
    pub bound_by: String,
    pub revoked_ms: Option<i64>,
    pub revoked_reason: Option<String>,
    pub revoked_by: Option<String>,
}

/// A device to enrol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub card_number: String,
    pub device_id: String,
    pub public_key: Vec<u8>,
    pub bound_by: String,
}

/// An e-code root key: its public half and its secret wrapped under a key-encryption key of
/// the key store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKeyRow {
    pub key_id: i64,
    /// SEC1 compressed SM2 public key (33 bytes).
    pub public_key: Vec<u8>,
    pub kek_id: String,
    pub wrapped: Vec<u8>,
    pub state: String,
    pub created_ms: i64,
    pub changed_ms: i64,
}

/// A certificate issued to an enrolled device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    /// The enrolment ([`DeviceRow::id`]) it certifies.
    pub device: i64,
    pub card_number: String,
    pub root_key_id: i64,
    pub not_before_s: i64,
    pub not_after_s: i64,
    pub offline_limit_fen: i64,
    pub uses: i64,
    /// The 123 bytes.
    pub certificate: Vec<u8>,
    pub issued_by: String,
}

/// E-code storage. Every write appends its audit entries in the same transaction.
///
/// A card change that leaves the state `active` revokes the card's active devices in the
/// same transaction, whoever makes the change: the database does it (a trigger on `cards`),
/// so no path can leave a phone enrolled on a lost, frozen, replaced, cancelled or expired card.
#[async_trait]
pub trait EcodeStore: Send + Sync {
    /// Enrols a device on an `active` card. When `replaces` names the card's active device,
    /// that device is revoked first (reason `replaced`); the card's active device must be
    /// exactly `replaces` (none for `None`), else `Conflict` (someone enrolled meanwhile). Also
    /// `Conflict` when the card is not active or the key is active on another enrolment;
    /// `NotFound` when the card does not exist.
    async fn device_bind(
        &self,
        device: &NewDevice,
        replaces: Option<i64>,
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<DeviceRow>;

    /// Revokes an active device. `NotFound` for an unknown id, `Conflict` when already revoked.
    async fn device_revoke(
        &self,
        id: i64,
        reason: &str,
        by: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<DeviceRow>;

    async fn device_by_id(&self, id: i64) -> Result<Option<DeviceRow>>;

    /// Every enrolment of a card, oldest first.
    async fn devices_of_card(&self, card_number: &str) -> Result<Vec<DeviceRow>>;

    /// Every root key, by id.
    async fn ecode_roots(&self) -> Result<Vec<RootKeyRow>>;

    /// Stores a new root key (`standby`, or `current` when no key is current). `Conflict` when
    /// the id exists or a second key would be current.
    async fn ecode_root_insert(
        &self,
        row: &RootKeyRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// Makes a `standby` key current; the current one (if any) becomes `retired`. `NotFound`
    /// for an unknown id, `Conflict` for a key in another state.
    async fn ecode_root_rotate(&self, key_id: i64, audit: audit::Draft, now_ms: i64) -> Result<()>;

    /// Withdraws a key in any other state. `NotFound`, or `Conflict` when already withdrawn.
    async fn ecode_root_withdraw(
        &self,
        key_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// Records an issued certificate, if its device is still active, its card still `active`
    /// and its root key still current (else `Conflict`, naming which).
    async fn ecode_certificate_insert(
        &self,
        row: &CertificateRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// Certificates issued for a card, newest first, at most `limit`.
    async fn ecode_certificates_of_card(
        &self,
        card_number: &str,
        limit: u32,
    ) -> Result<Vec<CertificateRow>>;

    /// The e-code payment uploaded under `key`, if any.
    async fn ecode_payment(&self, key: &str) -> Result<Option<EcodePaymentRow>>;

    /// Records an uploaded e-code payment (`paid` or `debt`). `Conflict` when the key exists.
    async fn ecode_payment_insert(
        &self,
        row: &EcodePaymentRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// What payments under one certificate add up to, in fen (the offline limit across all
    /// terminals).
    async fn ecode_spent_on_certificate(&self, certificate_digest: &str) -> Result<i64>;

    /// A card's payments in state `debt`, oldest first.
    async fn ecode_debts_of_card(&self, card_number: &str) -> Result<Vec<EcodePaymentRow>>;

    /// `debt` → `settled` with the payment that settled it. `Conflict` when not a debt.
    async fn ecode_debt_settle(
        &self,
        key: &str,
        payment_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// Counts one verification decision of `day` (`YYYY-MM-DD`), for the usage page.
    async fn ecode_stat_add(&self, day: &str, purpose: &str, reason: &str) -> Result<()>;

    /// The counts of the days `from_day..=to_day`, by day, purpose and reason.
    async fn ecode_stats(&self, from_day: &str, to_day: &str) -> Result<Vec<EcodeStatRow>>;
}

/// An e-code payment a terminal accepted offline and uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcodePaymentRow {
    /// `ecode:{card}:{root key id}:{code time}:{sequence}`: one code pays once.
    pub key: String,
    pub card_number: String,
    /// SM3 of the certificate, hex: payments under one certificate count against its limit.
    pub certificate_digest: String,
    pub merchant: String,
    pub terminal: String,
    pub amount_fen: i64,
    pub code_time: i64,
    /// paid, debt (the account could not pay), settled (a debt paid later)
    pub state: String,
    pub payment_id: Option<i64>,
    /// Whether this payment took the certificate past its offline limit.
    pub over_limit: bool,
    /// Authorised online by a connected terminal at the scan (not offline risk: it does not
    /// count against the offline limit).
    pub online: bool,
    pub created_ms: i64,
    pub settled_ms: Option<i64>,
}

/// How many verifications of one day, purpose and outcome (`accepted` or a reason code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcodeStatRow {
    pub day: String,
    pub purpose: String,
    pub reason: String,
    pub count: i64,
}
