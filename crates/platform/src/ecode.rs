//! The electronic citizen card (e-code, issue 4.6 and issue 7): phones enrolled on cards,
//! the SM2 root keys that certify them (held by the key store, rotated and withdrawn), the
//! certificates issued to enrolled phones, and the online verification for connected
//! counters. The formats and checks are the pure `ecode` crate's; this module adds storage,
//! keys, the clock and the rules of who gets what.
//!
//! Until citizens sign in themselves (issue 9), a counter clerk or an administrator makes the
//! enrolment and certificate calls for the holder, with the holder's phone at the counter (the
//! phone still proves it holds its key by signing the certificate request).

use crate::{Caller, Platform, PlatformError, Result};
use ::ecode::{
    Certificate, CertificateFields, CertificateRequest, Code, DeviceId, Purpose, Refusal,
    RootKeyId, RootKeys, Uses, Verifier, VerifierConfig,
};
use chip::CardNumber;
use crypto::Sm2PublicKey;
use keys::{KeyStore, Signer, WrappedDataKeys};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use store::{
    CertificateRow, DEVICE_ACTIVE, DeviceRow, NewDevice, ROOT_CURRENT, ROOT_STANDBY,
    ROOT_WITHDRAWN, Role, RootKeyRow, StoreError,
};

/// What certificates are issued with. Defaults follow the spec (7 days) and the city's
/// offline exposure per card type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcodePolicy {
    /// Validity of a certificate (the spec's default: 7 days), cut at the card's validity.
    pub validity_s: u32,
    /// How far `not before` lies before the issuing time, so that a phone whose clock is a
    /// little behind the platform's still makes codes its certificate covers.
    pub not_before_margin_s: u32,
    /// How far a certificate request's time may be from the platform clock.
    pub request_skew_s: u32,
}

impl Default for EcodePolicy {
    fn default() -> Self {
        EcodePolicy {
            validity_s: 7 * 86_400,
            not_before_margin_s: 600,
            request_skew_s: 300,
        }
    }
}

impl EcodePolicy {
    /// The offline limit by card type: what codes may spend before the phone is online again.
    pub fn offline_limit_fen(&self, card_type: &str) -> u32 {
        match card_type {
            "student" | "senior" | "disabled" => 10_000,
            "temporary" => 5_000,
            _ => 20_000,
        }
    }

    /// The uses by card type: a temporary card (issued while the real one is made) pays and
    /// rides but is no proof of identity.
    pub fn uses(&self, card_type: &str) -> Uses {
        match card_type {
            "temporary" => Uses::PAY.union(Uses::TRANSIT),
            _ => Uses::ALL,
        }
    }
}

/// Why a device is revoked on request.
pub const DEVICE_REVOKE_REASONS: [&str; 3] = ["holder_request", "device_lost", "fraud"];

/// The e-code part of a running platform: the key store (to wrap new root keys and open
/// stored ones), the root signers opened so far, and the online verifier with its replay
/// cache and per-certificate spend accounting.
pub struct EcodeState {
    keystore: OnceLock<Arc<dyn KeyStore>>,
    signers: Mutex<HashMap<i64, Arc<Signer>>>,
    verifier: Mutex<Verifier>,
    policy: EcodePolicy,
}

impl Default for EcodeState {
    fn default() -> Self {
        EcodeState {
            keystore: OnceLock::new(),
            signers: Mutex::new(HashMap::new()),
            // The default configuration is inside every bound.
            verifier: Mutex::new(
                Verifier::new(RootKeys::new(), VerifierConfig::default())
                    .expect("the default verifier configuration is valid"),
            ),
            policy: EcodePolicy::default(),
        }
    }
}

/// A device enrolment as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceView {
    pub id: i64,
    pub card_number: String,
    pub device_id: String,
    /// SEC1 compressed, hex.
    pub public_key: String,
    pub state: String,
    pub bound_ms: i64,
    pub bound_by: String,
    pub revoked_ms: Option<i64>,
    pub revoked_reason: Option<String>,
}

impl From<DeviceRow> for DeviceView {
    fn from(r: DeviceRow) -> Self {
        DeviceView {
            id: r.id,
            card_number: r.card_number,
            device_id: r.device_id,
            public_key: hex::encode_upper(&r.public_key),
            state: r.state,
            bound_ms: r.bound_ms,
            bound_by: r.bound_by,
            revoked_ms: r.revoked_ms,
            revoked_reason: r.revoked_reason,
        }
    }
}

/// A root key's public side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootView {
    pub key_id: u32,
    /// standby, current, retired, withdrawn
    pub state: String,
    /// SEC1 compressed, hex.
    pub public_key: String,
    pub created_ms: i64,
    pub changed_ms: i64,
}

impl From<&RootKeyRow> for RootView {
    fn from(r: &RootKeyRow) -> Self {
        RootView {
            key_id: r.key_id as u32,
            state: r.state.clone(),
            public_key: hex::encode_upper(&r.public_key),
            created_ms: r.created_ms,
            changed_ms: r.changed_ms,
        }
    }
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub certificate: Certificate,
    pub device: i64,
}

/// The online decision on a code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyOutcome {
    pub accepted: bool,
    /// `accepted`, or the refusal's reason code (`Refusal::code`, or `device_revoked`).
    pub reason: String,
    /// The check that refused (1–9), none when accepted.
    pub step: Option<u8>,
    /// In words.
    pub message: String,
    /// The card the code stands for, when the code could be read.
    pub card_number: Option<String>,
    /// For a payment: what is left of the offline limit as accounted here.
    pub offline_remaining_fen: Option<u64>,
}

/// The reason code of a code that passes every check of the spec but whose device the
/// platform has revoked (online only: a terminal cannot know it before the certificate ends).
pub const REASON_DEVICE_REVOKED: &str = "device_revoked";

fn signer_purpose(key_id: i64) -> String {
    format!("ecode-root:{key_id}")
}

fn may_enrol(caller: &Caller) -> Result<()> {
    if matches!(caller.role, Role::Administrator | Role::CounterClerk) {
        Ok(())
    } else {
        Err(PlatformError::Forbidden(
            "only counter clerks and administrators enrol phones and issue e-code certificates \
             (for the holder, until citizens sign in themselves)"
                .into(),
        ))
    }
}

fn may_manage_roots(caller: &Caller) -> Result<()> {
    if caller.role == Role::Administrator {
        Ok(())
    } else {
        Err(PlatformError::Forbidden(
            "only administrators manage e-code root keys".into(),
        ))
    }
}

/// Storage conflicts carry their own sentence here (the generic mapping says "already exists").
fn conflict(e: StoreError) -> PlatformError {
    match e {
        StoreError::Conflict(m) => PlatformError::Conflict(m),
        e => e.into(),
    }
}

fn parse_card(number: &str) -> Result<CardNumber> {
    CardNumber::parse(number).map_err(|e| PlatformError::invalid("card_number", e.to_string()))
}

/// A public key as the spec carries it: SEC1 compressed, 33 bytes, on the curve.
pub fn parse_device_key(bytes: &[u8]) -> Result<Sm2PublicKey> {
    if bytes.len() != crypto::SM2_PUBLIC_KEY_LEN || !matches!(bytes[0], 0x02 | 0x03) {
        return Err(PlatformError::invalid(
            "public_key",
            "an SM2 public key, SEC1 compressed (33 bytes, 02 or 03 first)",
        ));
    }
    Sm2PublicKey::from_sec1(bytes)
        .map_err(|_| PlatformError::invalid("public_key", "not a point on the SM2 curve"))
}

impl Platform {
    pub(crate) fn now_u32(&self) -> Result<u32> {
        u32::try_from(self.clock.now_ms().div_euclid(1000)).map_err(|_| {
            PlatformError::Unexpected("the clock is outside the e-code's range".into())
        })
    }

    /// Gives the platform the key store that wraps e-code root keys. `open_platform` does this;
    /// without it root keys can be listed but not generated nor used.
    pub fn attach_keystore(&self, keystore: Arc<dyn KeyStore>) {
        // A second attachment keeps the first: one process has one key store.
        let _ = self.ecode.keystore.set(keystore);
    }

    fn keystore(&self) -> Result<&Arc<dyn KeyStore>> {
        self.ecode.keystore.get().ok_or_else(|| {
            PlatformError::Unexpected("no key store attached for the e-code root keys".into())
        })
    }

    /// The settings certificates are issued with.
    pub fn ecode_policy(&self) -> &EcodePolicy {
        &self.ecode.policy
    }

    // -- devices -------------------------------------------------------------------------

    /// Enrols a phone on an active card. One active device per card: enrolling another
    /// revokes the one before (reason `replaced`) in the same transaction, because a holder who
    /// changes phones rarely still has the old one to unbind. Audited.
    pub async fn ecode_device_bind(
        &self,
        caller: &Caller,
        card_number: &str,
        device_id: &str,
        public_key: &[u8],
    ) -> Result<DeviceView> {
        may_enrol(caller)?;
        let number = parse_card(card_number)?;
        let device_id = DeviceId::parse(device_id)
            .map_err(|e| PlatformError::invalid("device_id", e.to_string()))?;
        let key = parse_device_key(public_key)?;
        let card = self
            .store
            .card_by_number(&number.to_string())
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("card {number}")))?;
        if card.state != "active" {
            return Err(PlatformError::Conflict(format!(
                "card {number} is {}: only an active card takes a phone",
                card.state
            )));
        }
        let active = self
            .store
            .devices_of_card(&card.number)
            .await?
            .into_iter()
            .find(|d| d.state == DEVICE_ACTIVE);
        let mut drafts = Vec::new();
        if let Some(old) = &active {
            drafts.push(caller.draft(
                "ecode.device.revoke",
                format!("card:{number}"),
                format!("device {} ({}) reason=replaced", old.id, old.device_id),
            ));
        }
        drafts.push(caller.draft(
            "ecode.device.bind",
            format!("card:{number}"),
            format!(
                "device_id={device_id} key={}",
                hex::encode_upper(key.to_compressed())
            ),
        ));
        let row = self
            .store
            .device_bind(
                &NewDevice {
                    card_number: number.to_string(),
                    device_id: device_id.to_string(),
                    public_key: key.to_compressed().to_vec(),
                    bound_by: caller.actor(),
                },
                active.map(|d| d.id),
                drafts,
                self.clock.now_ms(),
            )
            .await
            .map_err(conflict)?;
        Ok(row.into())
    }

    /// Revokes an enrolled phone on request (`holder_request`, `device_lost`, `fraud`).
    pub async fn ecode_device_revoke(
        &self,
        caller: &Caller,
        device: i64,
        reason: &str,
    ) -> Result<DeviceView> {
        may_enrol(caller)?;
        if !DEVICE_REVOKE_REASONS.contains(&reason) {
            return Err(PlatformError::invalid(
                "reason",
                format!("one of {}", DEVICE_REVOKE_REASONS.join(", ")),
            ));
        }
        let row = self
            .store
            .device_by_id(device)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("device {device}")))?;
        let row = self
            .store
            .device_revoke(
                device,
                reason,
                &caller.actor(),
                caller.draft(
                    "ecode.device.revoke",
                    format!("card:{}", row.card_number),
                    format!("device {device} ({}) reason={reason}", row.device_id),
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(conflict)?;
        Ok(row.into())
    }

    /// Every enrolment of a card, oldest first (revoked ones included).
    pub async fn ecode_devices(
        &self,
        caller: &Caller,
        card_number: &str,
    ) -> Result<Vec<DeviceView>> {
        if !matches!(
            caller.role,
            Role::Administrator | Role::CounterClerk | Role::Auditor
        ) {
            return Err(PlatformError::Forbidden(
                "the devices of a card are for clerks, administrators and auditors".into(),
            ));
        }
        let number = parse_card(card_number)?;
        let rows = self.store.devices_of_card(&number.to_string()).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Audit entries for the phones that leave with a card changing to `new_state`: the
    /// storage revokes them in the card's transaction (whatever path changes the card), and
    /// these entries, appended in that same transaction, say so on the record.
    pub(crate) async fn ecode_devices_leaving(
        &self,
        caller: &Caller,
        old_state: &str,
        card: &store::CardRow,
    ) -> Result<Vec<audit::Draft>> {
        // Phones are enrolled on active cards only, so only a change away from active has any.
        if old_state != "active" || card.state == "active" {
            return Ok(Vec::new());
        }
        let (card_number, new_state) = (&card.number, &card.state);
        Ok(self
            .store
            .devices_of_card(card_number)
            .await?
            .into_iter()
            .filter(|d| d.state == DEVICE_ACTIVE)
            .map(|d| {
                caller.draft(
                    "ecode.device.revoke",
                    format!("card:{card_number}"),
                    format!("device {} ({}) reason=card_{new_state}", d.id, d.device_id),
                )
            })
            .collect())
    }

    // -- root keys -----------------------------------------------------------------------

    /// Every root key, by id.
    pub async fn ecode_roots(&self, caller: &Caller) -> Result<Vec<RootView>> {
        may_manage_roots(caller).or_else(|_| {
            if caller.role == Role::Auditor {
                Ok(())
            } else {
                Err(PlatformError::Forbidden(
                    "root keys are listed for administrators and auditors".into(),
                ))
            }
        })?;
        Ok(self
            .store
            .ecode_roots()
            .await?
            .iter()
            .map(Into::into)
            .collect())
    }

    /// A new SM2 root key, generated and wrapped by the key store. The first key becomes
    /// current at once; later ones wait in `standby` so that terminals learn them (in the
    /// exported PEM) before any certificate under them is shown — then
    /// [`Platform::ecode_root_rotate`].
    pub async fn ecode_root_generate(&self, caller: &Caller) -> Result<RootView> {
        may_manage_roots(caller)?;
        let keystore = self.keystore()?.clone();
        let roots = self.store.ecode_roots().await?;
        let key_id = roots.iter().map(|r| r.key_id).max().unwrap_or(0) + 1;
        if key_id > i64::from(u32::MAX) || roots.len() >= ::ecode::ROOT_KEYS_MAX {
            return Err(PlatformError::Conflict(format!(
                "at most {} e-code root keys",
                ::ecode::ROOT_KEYS_MAX
            )));
        }
        let state = if roots.iter().any(|r| r.state == ROOT_CURRENT) {
            ROOT_STANDBY
        } else {
            ROOT_CURRENT
        };
        let (signer, wrapped) =
            Signer::generate(&*keystore, crate::open::PII_KEK, &signer_purpose(key_id))?;
        let now = self.clock.now_ms();
        let row = RootKeyRow {
            key_id,
            public_key: signer.public_key().to_vec(),
            kek_id: wrapped.kek_id,
            wrapped: wrapped.wrapped,
            state: state.into(),
            created_ms: now,
            changed_ms: now,
        };
        self.store
            .ecode_root_insert(
                &row,
                caller.draft(
                    "ecode.root.generate",
                    format!("ecode-root:{key_id}"),
                    format!(
                        "state={state} key={}",
                        hex::encode_upper(signer.public_key())
                    ),
                ),
                now,
            )
            .await
            .map_err(conflict)?;
        self.ecode
            .signers
            .lock()
            .expect("signer cache lock")
            .insert(key_id, Arc::new(signer));
        Ok((&row).into())
    }

    /// Makes a standby key current; the current one retires: it signs nothing more, and its
    /// certificates keep verifying until they expire.
    pub async fn ecode_root_rotate(&self, caller: &Caller, key_id: u32) -> Result<()> {
        may_manage_roots(caller)?;
        self.store
            .ecode_root_rotate(
                i64::from(key_id),
                caller.draft(
                    "ecode.root.rotate",
                    format!("ecode-root:{key_id}"),
                    "current; the previous current key retires",
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(conflict)
    }

    /// Withdraws a key (e.g. compromised): it signs nothing more, the online verifier refuses
    /// its certificates at once, and it leaves the exported PEM so that terminals that reload
    /// the roots refuse them too.
    pub async fn ecode_root_withdraw(&self, caller: &Caller, key_id: u32) -> Result<()> {
        may_manage_roots(caller)?;
        self.store
            .ecode_root_withdraw(
                i64::from(key_id),
                caller.draft(
                    "ecode.root.withdraw",
                    format!("ecode-root:{key_id}"),
                    "withdrawn",
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(conflict)?;
        self.ecode
            .signers
            .lock()
            .expect("signer cache lock")
            .remove(&i64::from(key_id));
        Ok(())
    }

    /// The root public keys terminals trust, as the spec's PEM (`# key-id: N` and a `PUBLIC
    /// KEY` block each): every key that is not withdrawn, standby keys included.
    pub async fn ecode_roots_pem(&self) -> Result<String> {
        let mut keys = RootKeys::new();
        for r in self.store.ecode_roots().await? {
            if r.state == ROOT_WITHDRAWN {
                continue;
            }
            let key = Sm2PublicKey::from_sec1(&r.public_key).map_err(|_| {
                PlatformError::Unexpected(format!("stored root key {} is not a key", r.key_id))
            })?;
            keys.insert(RootKeyId(r.key_id as u32), key)
                .map_err(|e| PlatformError::Unexpected(e.to_string()))?;
        }
        Ok(keys.to_pem())
    }

    fn root_signer(&self, row: &RootKeyRow) -> Result<Arc<Signer>> {
        if let Some(s) = self
            .ecode
            .signers
            .lock()
            .expect("signer cache lock")
            .get(&row.key_id)
        {
            return Ok(s.clone());
        }
        let signer = Arc::new(Signer::open(
            &**self.keystore()?,
            &WrappedDataKeys {
                kek_id: row.kek_id.clone(),
                wrapped: row.wrapped.clone(),
            },
            &signer_purpose(row.key_id),
        )?);
        if signer.public_key()[..] != row.public_key[..] {
            return Err(PlatformError::Unexpected(format!(
                "root key {} does not match its stored public key",
                row.key_id
            )));
        }
        self.ecode
            .signers
            .lock()
            .expect("signer cache lock")
            .insert(row.key_id, signer.clone());
        Ok(signer)
    }

    // -- certificates --------------------------------------------------------------------

    /// Issues a certificate to an enrolled phone that proved it holds its key. Validity,
    /// offline limit and uses come from the card (its type, its own validity) and the policy;
    /// refused with the reason for a card that is not active (lost, frozen, cancelled, …), a
    /// phone not enrolled on the card or revoked, a request too far from the platform clock,
    /// or a signature that is not the phone's.
    pub async fn ecode_certify(
        &self,
        caller: &Caller,
        request: &CertificateRequest,
    ) -> Result<IssuedCertificate> {
        may_enrol(caller)?;
        let policy = &self.ecode.policy;
        let now = self.now_u32()?;
        if now.abs_diff(request.time) > policy.request_skew_s {
            return Err(PlatformError::invalid(
                "time",
                format!(
                    "the request was made at {}, more than {} s from the platform clock ({now}): \
                     set the phone's clock and ask again",
                    request.time, policy.request_skew_s
                ),
            ));
        }
        if !request.verify_signature() {
            return Err(PlatformError::invalid(
                "signature",
                "not the device key's signature over this request",
            ));
        }
        let number = request.card_number.to_string();
        let card = self
            .store
            .card_by_number(&number)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("card {number}")))?;
        if card.state != "active" {
            return Err(PlatformError::Conflict(format!(
                "card {number} is {}: no e-code certificate for a card that is not active",
                card.state
            )));
        }
        let debts = self.store.ecode_debts_of_card(&number).await?;
        if !debts.is_empty() {
            let fen: i64 = debts.iter().map(|d| d.amount_fen).sum();
            return Err(PlatformError::Conflict(format!(
                "card {number} has {} unpaid e-code payment(s) of {fen} fen: no new certificate \
                 until they are settled (top up the account, then settle)",
                debts.len()
            )));
        }
        let key = request.device_public_key.to_compressed();
        let devices = self.store.devices_of_card(&number).await?;
        let device = devices
            .iter()
            .rev()
            .find(|d| d.public_key[..] == key[..] && d.device_id == request.device_id.as_str())
            .ok_or_else(|| {
                PlatformError::Conflict(format!(
                    "this phone is not enrolled on card {number}: enrol it first"
                ))
            })?;
        if device.state != DEVICE_ACTIVE {
            return Err(PlatformError::Conflict(format!(
                "this phone's enrolment on card {number} is revoked ({}): enrol it again",
                device.revoked_reason.as_deref().unwrap_or("revoked")
            )));
        }
        let roots = self.store.ecode_roots().await?;
        let root = roots
            .iter()
            .find(|r| r.state == ROOT_CURRENT)
            .ok_or_else(|| {
                PlatformError::Conflict(
                    "no current e-code root key: an administrator generates one \
                     (`citycard ecode roots generate`)"
                        .into(),
                )
            })?;
        let signer = self.root_signer(root)?;
        let mut not_after = now.saturating_add(policy.validity_s);
        if let Some(card_end) = card.valid_until_s {
            let card_end = u32::try_from(card_end.max(0)).unwrap_or(u32::MAX);
            not_after = not_after.min(card_end);
        }
        let not_before = now.saturating_sub(policy.not_before_margin_s);
        if not_after <= now {
            return Err(PlatformError::Conflict(format!(
                "card {number} is at the end of its validity: renew it first"
            )));
        }
        let fields = CertificateFields {
            card_number: request.card_number,
            device_public_key: request.device_public_key.clone(),
            not_before,
            not_after,
            offline_limit_fen: policy.offline_limit_fen(&card.card_type),
            uses: policy.uses(&card.card_type),
        };
        let root_key_id = RootKeyId(root.key_id as u32);
        let certificate =
            Certificate::sign_with(root_key_id, fields.clone(), |message| signer.sign(message));
        self.store
            .ecode_certificate_insert(
                &CertificateRow {
                    device: device.id,
                    card_number: number.clone(),
                    root_key_id: root.key_id,
                    not_before_s: i64::from(not_before),
                    not_after_s: i64::from(not_after),
                    offline_limit_fen: i64::from(fields.offline_limit_fen),
                    uses: i64::from(fields.uses.bits()),
                    certificate: certificate.as_bytes().to_vec(),
                    issued_by: caller.actor(),
                },
                caller.draft(
                    "ecode.certify",
                    format!("card:{number}"),
                    format!(
                        "device {} root={root_key_id} valid {not_before}..{not_after} \
                         limit={} uses={}",
                        device.id,
                        fields.offline_limit_fen,
                        fields.uses.bits()
                    ),
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(conflict)?;
        Ok(IssuedCertificate {
            certificate,
            device: device.id,
        })
    }

    // -- online verification -------------------------------------------------------------

    /// Verifies a scanned code for a connected counter: the spec's checks 1–9 with the same
    /// `Verifier` a terminal runs (replay cache and offline spend accounting kept here, in
    /// memory), the deny-list being the card's current state, plus the platform's own check
    /// that the phone is still enrolled. Every decision is audited.
    pub async fn ecode_verify(
        &self,
        caller: &Caller,
        text: &str,
        purpose: Purpose,
    ) -> Result<VerifyOutcome> {
        let now = self.now_u32()?;
        let code = match Code::parse_text(text) {
            Ok(c) => c,
            Err(e) => {
                let outcome = refused(&Refusal::Format(e), None);
                self.audit(caller.draft(
                    "ecode.verify",
                    "ecode",
                    format!("refused reason={}", outcome.reason),
                ))
                .await?;
                self.ecode_count(purpose, &outcome.reason).await?;
                return Ok(outcome);
            }
        };
        let number = code.certificate().card_number().to_string();
        let roots = self.store.ecode_roots().await?;
        let card = self.store.card_by_number(&number).await?;
        let denied = card.as_ref().is_none_or(|c| c.state != "active");
        let key = code
            .certificate()
            .fields()
            .device_public_key
            .to_compressed();
        let enrolled = self
            .store
            .devices_of_card(&number)
            .await?
            .iter()
            .any(|d| d.state == DEVICE_ACTIVE && d.public_key[..] == key[..]);
        let decision = {
            let mut verifier = self.ecode.verifier.lock().expect("verifier lock");
            for r in &roots {
                let id = RootKeyId(r.key_id as u32);
                let Ok(public) = Sm2PublicKey::from_sec1(&r.public_key) else {
                    continue;
                };
                // A key id never changes its key (ids are not reused), so a conflict cannot
                // happen; a withdrawal is sticky.
                let _ = verifier.roots_mut().insert(id, public);
                if r.state == ROOT_WITHDRAWN {
                    let _ = verifier.roots_mut().withdraw(id);
                }
            }
            verifier.set_deny_list(move |_| denied);
            verifier.verify(&code, now, purpose)
        };
        let outcome = match decision {
            Ok(_) if !enrolled => VerifyOutcome {
                accepted: false,
                reason: REASON_DEVICE_REVOKED.into(),
                step: Some(6),
                message: "the phone's enrolment on this card is revoked".into(),
                card_number: Some(number.clone()),
                offline_remaining_fen: None,
            },
            Ok(a) => VerifyOutcome {
                accepted: true,
                reason: "accepted".into(),
                step: None,
                message: "accepted".into(),
                card_number: Some(number.clone()),
                offline_remaining_fen: a.offline_remaining_fen,
            },
            Err(r) => refused(&r, Some(number.clone())),
        };
        self.audit(caller.draft(
            "ecode.verify",
            format!("card:{number}"),
            format!(
                "{} reason={} purpose={purpose:?} sequence={}",
                if outcome.accepted {
                    "accepted"
                } else {
                    "refused"
                },
                outcome.reason,
                code.sequence()
            ),
        ))
        .await?;
        self.ecode_count(purpose, &outcome.reason).await?;
        Ok(outcome)
    }

    async fn ecode_count(&self, purpose: Purpose, reason: &str) -> Result<()> {
        let day = self.clock.today().to_string();
        Ok(self
            .store
            .ecode_stat_add(&day, purpose_name(purpose), reason)
            .await?)
    }

    /// Online verifications of the last `days` days (today included): per day accepted and
    /// refused, and the refusals by reason — the e-code usage page.
    pub async fn ecode_usage(&self, caller: &Caller, days: u32) -> Result<EcodeUsage> {
        match caller.role {
            Role::Administrator | Role::CounterClerk | Role::Auditor => {}
            _ => {
                return Err(PlatformError::Forbidden(
                    "e-code usage is for administrators, counters and auditors".into(),
                ));
            }
        }
        let days = days.clamp(1, 92);
        let today = self.clock.today();
        let first = today - time::Duration::days(i64::from(days) - 1);
        let rows = self
            .store
            .ecode_stats(&first.to_string(), &today.to_string())
            .await?;
        let mut per_day: Vec<UsageDay> = (0..days)
            .map(|k| UsageDay {
                day: (first + time::Duration::days(i64::from(k))).to_string(),
                accepted: 0,
                refused: 0,
            })
            .collect();
        let mut reasons: std::collections::BTreeMap<String, i64> = Default::default();
        let mut purposes: std::collections::BTreeMap<String, i64> = Default::default();
        for r in rows {
            if let Some(d) = per_day.iter_mut().find(|d| d.day == r.day) {
                if r.reason == "accepted" {
                    d.accepted += r.count;
                } else {
                    d.refused += r.count;
                }
            }
            *purposes.entry(r.purpose).or_default() += r.count;
            if r.reason != "accepted" {
                *reasons.entry(r.reason).or_default() += r.count;
            }
        }
        let mut by_reason: Vec<(String, i64)> = reasons.into_iter().collect();
        by_reason.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(EcodeUsage {
            days: per_day,
            refusals_by_reason: by_reason,
            by_purpose: purposes.into_iter().collect(),
        })
    }
}

/// The API's name of a purpose.
pub fn purpose_name(p: Purpose) -> &'static str {
    match p {
        Purpose::Pay { .. } => "pay",
        Purpose::Identity => "identity",
        Purpose::Transit => "transit",
    }
}

/// One day of online verifications.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageDay {
    pub day: String,
    pub accepted: i64,
    pub refused: i64,
}

/// E-code usage over some days.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EcodeUsage {
    pub days: Vec<UsageDay>,
    /// Refusal reason codes with their counts, most frequent first.
    pub refusals_by_reason: Vec<(String, i64)>,
    /// Verifications per purpose (pay, identity, transit).
    pub by_purpose: Vec<(String, i64)>,
}

fn refused(r: &Refusal, card_number: Option<String>) -> VerifyOutcome {
    VerifyOutcome {
        accepted: false,
        reason: r.code().into(),
        step: Some(r.step()),
        message: r.to_string(),
        card_number,
        offline_remaining_fen: None,
    }
}

/// Parses the API's purpose (`pay` with an amount, `identity`, `transit`).
pub fn parse_purpose(name: &str, amount_fen: Option<u32>) -> Result<Purpose> {
    match (name, amount_fen) {
        ("pay", Some(amount_fen)) => Ok(Purpose::Pay { amount_fen }),
        ("pay", None) => Err(PlatformError::invalid(
            "amount_fen",
            "a payment needs its amount in fen",
        )),
        ("identity", None) => Ok(Purpose::Identity),
        ("transit", None) => Ok(Purpose::Transit),
        ("identity" | "transit", Some(_)) => Err(PlatformError::invalid(
            "amount_fen",
            "only a payment has an amount",
        )),
        _ => Err(PlatformError::invalid(
            "purpose",
            "one of pay, identity, transit",
        )),
    }
}
