//! The card company's master-key hierarchy: key references, the [`MasterKeyStore`] trait
//! (file backend here, PKCS#11 in the `hsm` crate) and the host-side e-purse operations that
//! run under master keys without any caller ever holding their bytes.
//!
//! A master key is named by a [`KeyRef`]: application (`transit`), purpose
//! ([`MasterPurpose`]) and version. The same 16-byte master key serves both algorithm
//! profiles of `epurse.md` §3 (3DES and SM4) where the backend can run both.
//!
//! What leaves a store:
//! - check values ([`MasterKeyInfo`]),
//! - card keys for personalization only wrapped under a transport key ([`WrappedCardKey`]):
//!   a wrapped value, not an opaque in-process object, because the consumer in production is
//!   another machine (the card bureau's personalization line) and because an HSM can produce
//!   it without the card key ever appearing in the clear on the host,
//! - MAC verdicts and load MAC2s ([`MasterKeyStore::verify_purchase_tac`] and friends).

pub mod conformance;
mod file;
mod input;

pub use file::FileMasterKeyStore;
pub use input::{
    LineCommand, LoadFields, MacDerivation, MacInput, PurchaseTacCheck, PurchaseTacFields,
    software_mac,
};

use core::fmt;

use crypto::{Algorithm, DivData, Key16, MAC_LEN, MasterKeys};
use thiserror::Error;

/// Number of components a key ceremony may enter, at least and at most.
pub const COMPONENTS_MIN: usize = 2;
pub const COMPONENTS_MAX: usize = 3;
/// Length of an application name in a [`KeyRef`].
pub const APP_NAME_LEN_MAX: usize = 16;
/// The application the e-purse keys of `epurse.md` belong to.
pub const APP_TRANSIT: &str = "transit";

/// What a master key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MasterPurpose {
    /// Purchase master key (key index 01): PSAMs and personalization.
    Purchase,
    /// Load master key: the host's load MAC1/MAC2.
    Load,
    /// TAC master key: the host's TAC checks.
    Tac,
    /// PIN key (reserved for PIN offset / reset work).
    Pin,
    /// Root of the e-code key tree.
    EcodeRoot,
    /// Transport key: wraps diversified card keys on their way to personalization.
    Transport,
    /// Application maintenance master key: diversified per card into DAMK, which protects
    /// post-issuance UPDATE commands with a line-protection MAC (`docs/app-scripts.md`).
    Maintenance,
}

impl MasterPurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            MasterPurpose::Purchase => "purchase",
            MasterPurpose::Load => "load",
            MasterPurpose::Tac => "tac",
            MasterPurpose::Pin => "pin",
            MasterPurpose::EcodeRoot => "ecode_root",
            MasterPurpose::Transport => "transport",
            MasterPurpose::Maintenance => "maintenance",
        }
    }

    /// Parses [`MasterPurpose::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        [
            MasterPurpose::Purchase,
            MasterPurpose::Load,
            MasterPurpose::Tac,
            MasterPurpose::Pin,
            MasterPurpose::EcodeRoot,
            MasterPurpose::Transport,
            MasterPurpose::Maintenance,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }
}

/// Names one master key: `transit/tac/v1`. Holds no key material.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyRef {
    app: String,
    purpose: MasterPurpose,
    version: u8,
}

impl KeyRef {
    /// A reference; `app` is 1 to [`APP_NAME_LEN_MAX`] lowercase ASCII letters, digits or `_`.
    pub fn new(app: &str, purpose: MasterPurpose, version: u8) -> Result<Self, MasterKeyError> {
        let ok = !app.is_empty()
            && app.len() <= APP_NAME_LEN_MAX
            && app
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(MasterKeyError::InvalidKeyRef(app.to_string()));
        }
        Ok(KeyRef {
            app: app.to_string(),
            purpose,
            version,
        })
    }

    /// A key of the transit (e-purse) application.
    pub fn transit(purpose: MasterPurpose, version: u8) -> Self {
        KeyRef {
            app: APP_TRANSIT.to_string(),
            purpose,
            version,
        }
    }

    /// Parses the `app/purpose/vN` label form.
    pub fn parse(label: &str) -> Result<Self, MasterKeyError> {
        let bad = || MasterKeyError::InvalidKeyRef(label.to_string());
        let mut parts = label.split('/');
        let (Some(app), Some(purpose), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let purpose = MasterPurpose::parse(purpose).ok_or_else(bad)?;
        let version = version
            .strip_prefix('v')
            .and_then(|v| v.parse::<u8>().ok())
            .ok_or_else(bad)?;
        KeyRef::new(app, purpose, version)
    }

    pub fn app(&self) -> &str {
        &self.app
    }
    pub fn purpose(&self) -> MasterPurpose {
        self.purpose
    }
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The label backends store the key under (`transit/tac/v1`).
    pub fn label(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/v{}",
            self.app,
            self.purpose.as_str(),
            self.version
        )
    }
}

/// How a key came into the store (shown in listings; ceremonies audit it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOrigin {
    Generated,
    Components,
    /// The development key set of `epurse.md` §4.
    TestKeySet,
    /// Found in a backend without our metadata (e.g. created by a vendor tool).
    Unknown,
}

/// What may be shown about a master key: never its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyInfo {
    pub key: KeyRef,
    /// KCV under 2-key 3DES (first 3 bytes of `E_K(0^8)`), when the backend holds a 3DES key.
    pub kcv_tdes: Option<[u8; 3]>,
    /// KCV under SM4 (first 3 bytes of `E_K(0^16)`), when the backend can run SM4.
    pub kcv_sm4: Option<[u8; 3]>,
    pub origin: KeyOrigin,
}

impl MasterKeyInfo {
    /// The KCV for `alg`, if the backend can use the key with it.
    pub fn kcv(&self, alg: Algorithm) -> Option<[u8; 3]> {
        match alg {
            Algorithm::Tdes => self.kcv_tdes,
            Algorithm::Sm4 => self.kcv_sm4,
        }
    }
}

/// One key component as custodians enter it: 32 hex digits and the component's own KCV
/// (6 hex digits, under 3DES or SM4 as `kcv_alg` says). `Debug` masks the value.
#[derive(Clone)]
pub struct KeyComponent {
    value: Key16,
    kcv: [u8; 3],
}

impl KeyComponent {
    /// Parses a component and checks its KCV; `index` (from 1) names it in errors.
    pub fn parse(
        index: usize,
        value_hex: &str,
        kcv_hex: &str,
        kcv_alg: Algorithm,
    ) -> Result<Self, MasterKeyError> {
        let value =
            Key16::from_hex(value_hex).map_err(|_| MasterKeyError::InvalidComponent { index })?;
        let kcv: [u8; 3] = hex::decode(kcv_hex.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(MasterKeyError::InvalidComponent { index })?;
        if value.kcv(kcv_alg) != kcv {
            return Err(MasterKeyError::ComponentKcvMismatch { index });
        }
        Ok(KeyComponent { value, kcv })
    }

    /// The component's check value.
    pub fn kcv(&self) -> [u8; 3] {
        self.kcv
    }
}

impl fmt::Debug for KeyComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyComponent(kcv {})", hex::encode_upper(self.kcv))
    }
}

/// XORs 2 or 3 components into the key. Backends call it right before storing.
pub fn combine_components(components: &[KeyComponent]) -> Result<Key16, MasterKeyError> {
    if !(COMPONENTS_MIN..=COMPONENTS_MAX).contains(&components.len()) {
        return Err(MasterKeyError::ComponentCount(components.len()));
    }
    let mut out = [0u8; 16];
    for c in components {
        for (o, b) in out.iter_mut().zip(c.value.expose()) {
            *o ^= b;
        }
    }
    let key = Key16::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    Ok(key)
}

/// A diversified card key wrapped under a transport key, for personalization.
///
/// `wrapped` is `CBC_TK(DK)` with a zero IV under the profile's cipher: 2-key 3DES (two
/// blocks) or SM4 (one block, so plain ECB). `kcv` is the card key's own check value under
/// the same cipher, which the personalization side checks after unwrapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedCardKey {
    pub master: KeyRef,
    pub transport: KeyRef,
    pub algorithm: Algorithm,
    pub wrapped: [u8; 16],
    pub kcv: [u8; 3],
}

/// Why a master-key operation failed. No variant carries key material.
#[derive(Debug, Error)]
pub enum MasterKeyError {
    #[error("invalid key reference {0:?}")]
    InvalidKeyRef(String),
    #[error("master key {0} is not in the store")]
    UnknownKey(KeyRef),
    #[error("master key {0} already exists")]
    Exists(KeyRef),
    #[error("key {key} has purpose {actual}, the operation needs {expected}")]
    WrongPurpose {
        key: KeyRef,
        expected: &'static str,
        actual: &'static str,
    },
    #[error("component {index} is not 32 hex digits with a 6-hex-digit KCV")]
    InvalidComponent { index: usize },
    #[error("component {index} does not match its check value")]
    ComponentKcvMismatch { index: usize },
    #[error("{0} components given; a key needs {COMPONENTS_MIN} to {COMPONENTS_MAX}")]
    ComponentCount(usize),
    #[error("combined key check value {actual} differs from the expected {expected}")]
    KeyKcvMismatch { expected: String, actual: String },
    /// The backend cannot do this at all (e.g. SM4 on a PKCS#11 token without SM4).
    #[error("{backend} backend does not support {what}")]
    Unsupported { backend: &'static str, what: String },
    /// A load MAC1 that does not verify: no MAC2 is issued.
    #[error("load MAC1 invalid")]
    Mac1Invalid,
    #[error("load of {amount_fen} fen onto {balance_fen} fen exceeds the purse cap")]
    CapExceeded { balance_fen: u32, amount_fen: u32 },
    #[error("key store: {0}")]
    Store(#[from] crate::KeyError),
    /// Data given to an operation has the wrong shape (the text names sizes, never content).
    #[error("{0}")]
    InvalidData(String),
    /// The backend (HSM, PKCS#11 library) failed; the text names the call, not data.
    #[error("key backend: {0}")]
    Backend(String),
    /// A production start found keys of the development key set (`epurse.md` §4).
    #[error(
        "the {backend} master-key store holds keys of the development test key set \
         (epurse.md §4); production refuses to start with them"
    )]
    TestKeySetInProduction { backend: &'static str },
}

/// The purse cap of `epurse.md` §2 (1,000 yuan): no MAC2 for a load past it.
pub const BALANCE_MAX_FEN: u32 = 100_000;

/// The master-key store: file today, PKCS#11 HSMs in the `hsm` crate, a national-algorithm
/// (GM/T 0018) HSM later. Callers hold [`KeyRef`]s, never key bytes.
///
/// Backends implement the key management methods and [`MasterKeyStore::card_mac`], the one
/// cryptographic primitive; the provided methods hold the policy (purpose checks, MAC1 before
/// MAC2, cap check, constant-time comparison) once for every backend.
pub trait MasterKeyStore: Send + Sync {
    /// A short name of the backend, for logs and listings.
    fn backend(&self) -> &'static str;

    /// Every master key with its check values.
    fn list(&self) -> Result<Vec<MasterKeyInfo>, MasterKeyError>;

    /// Generates a random master key inside the backend.
    fn generate(&self, key: &KeyRef) -> Result<MasterKeyInfo, MasterKeyError>;

    /// Imports a key from 2–3 custodian components (each already KCV-checked by
    /// [`KeyComponent::parse`]), XORed together. `expected_kcv`, when given, is checked
    /// against the combined key under `kcv_alg` before anything is stored.
    fn import_components(
        &self,
        key: &KeyRef,
        components: &[KeyComponent],
        kcv_alg: Algorithm,
        expected_kcv: Option<[u8; 3]>,
    ) -> Result<MasterKeyInfo, MasterKeyError>;

    /// Diversifies `master` for card `div` (`epurse.md` §3) and returns the card key
    /// wrapped under `transport` for the personalization line.
    fn diversify_wrapped(
        &self,
        master: &KeyRef,
        alg: Algorithm,
        div: &DivData,
        transport: &KeyRef,
    ) -> Result<WrappedCardKey, MasterKeyError>;

    /// Encrypts holder data for the personalization file under the transport key: CBC with
    /// the profile cipher and `iv` (its first 8 bytes for 3DES), `data` a whole number of
    /// blocks, at most [`TRANSPORT_DATA_MAX`] bytes. Only the card bureau, which holds the
    /// transport key, can read it.
    fn encrypt_for_transport(
        &self,
        transport: &KeyRef,
        alg: Algorithm,
        iv: &[u8; 16],
        data: &[u8],
    ) -> Result<Vec<u8>, MasterKeyError>;

    /// The primitive: a MAC under a key derived from `master` for card `div` as `input`
    /// says. `MacInput` can only be built by this module, so callers go through the
    /// provided methods below.
    fn card_mac(
        &self,
        master: &KeyRef,
        alg: Algorithm,
        div: &DivData,
        input: &MacInput,
    ) -> Result<[u8; MAC_LEN], MasterKeyError>;

    /// The primitive for many cards under one master key: one MAC per item, in order. The
    /// default calls [`MasterKeyStore::card_mac`] per item; a backend that unseals the master
    /// key or opens a session per call overrides it to do that once per batch.
    fn card_macs(
        &self,
        master: &KeyRef,
        items: &[(Algorithm, DivData, MacInput)],
    ) -> Result<Vec<[u8; MAC_LEN]>, MasterKeyError> {
        items
            .iter()
            .map(|(alg, div, input)| self.card_mac(master, *alg, div, input))
            .collect()
    }

    /// Whether any key of the store is a key of the development key set (§4), compared by
    /// check value. Production start refuses a store for which this is true.
    fn test_key_set_present(&self) -> Result<bool, MasterKeyError> {
        let test = MasterKeys::test_set();
        let maintenance = crypto::test_maintenance_master();
        let test_kcvs: Vec<[u8; 3]> = [&test.purchase, &test.load, &test.tac, &maintenance]
            .iter()
            .map(|k| k.kcv(Algorithm::Tdes))
            .collect();
        let test_kcvs_sm4: Vec<[u8; 3]> = [&test.purchase, &test.load, &test.tac, &maintenance]
            .iter()
            .map(|k| k.kcv(Algorithm::Sm4))
            .collect();
        Ok(self.list()?.iter().any(|info| {
            info.origin == KeyOrigin::TestKeySet
                || info.kcv_tdes.is_some_and(|k| test_kcvs.contains(&k))
                || info.kcv_sm4.is_some_and(|k| test_kcvs_sm4.contains(&k))
        }))
    }

    /// Recomputes a purchase TAC (§5 upload check) under the TAC master key.
    fn verify_purchase_tac(
        &self,
        tac_master: &KeyRef,
        alg: Algorithm,
        div: &DivData,
        fields: &PurchaseTacFields,
        tac: &[u8; MAC_LEN],
    ) -> Result<bool, MasterKeyError> {
        expect_purpose(tac_master, MasterPurpose::Tac)?;
        let mac = self.card_mac(tac_master, alg, div, &MacInput::purchase_tac(fields))?;
        Ok(mac_eq(&mac, tac))
    }

    /// Recomputes the TACs of many uploaded purchases (§5) under one TAC master key, each
    /// card's DTK diversified from it: one verdict per check, in order.
    fn verify_purchase_tacs(
        &self,
        tac_master: &KeyRef,
        checks: &[PurchaseTacCheck],
    ) -> Result<Vec<bool>, MasterKeyError> {
        expect_purpose(tac_master, MasterPurpose::Tac)?;
        let items: Vec<(Algorithm, DivData, MacInput)> = checks
            .iter()
            .map(|c| (c.algorithm, c.div, MacInput::purchase_tac(&c.fields)))
            .collect();
        let macs = self.card_macs(tac_master, &items)?;
        if macs.len() != checks.len() {
            return Err(MasterKeyError::Backend(format!(
                "{} MACs for {} TAC checks",
                macs.len(),
                checks.len()
            )));
        }
        Ok(macs
            .iter()
            .zip(checks)
            .map(|(mac, c)| mac_eq(mac, &c.tac))
            .collect())
    }

    /// Checks a card's load MAC1 under the load master key.
    fn check_load_mac1(
        &self,
        load_master: &KeyRef,
        alg: Algorithm,
        div: &DivData,
        fields: &LoadFields,
        mac1: &[u8; MAC_LEN],
    ) -> Result<bool, MasterKeyError> {
        expect_purpose(load_master, MasterPurpose::Load)?;
        let mac = self.card_mac(load_master, alg, div, &MacInput::load_mac1(fields))?;
        Ok(mac_eq(&mac, mac1))
    }

    /// Authorizes a load: checks MAC1 and the purse cap, then issues MAC2. Never issues a MAC2
    /// for an unverified MAC1.
    fn issue_load_mac2(
        &self,
        load_master: &KeyRef,
        alg: Algorithm,
        div: &DivData,
        fields: &LoadFields,
        mac1: &[u8; MAC_LEN],
    ) -> Result<[u8; MAC_LEN], MasterKeyError> {
        if !self.check_load_mac1(load_master, alg, div, fields, mac1)? {
            return Err(MasterKeyError::Mac1Invalid);
        }
        match fields.balance_before_fen.checked_add(fields.amount_fen) {
            Some(b) if b <= BALANCE_MAX_FEN => {}
            _ => {
                return Err(MasterKeyError::CapExceeded {
                    balance_fen: fields.balance_before_fen,
                    amount_fen: fields.amount_fen,
                });
            }
        }
        self.card_mac(load_master, alg, div, &MacInput::load_mac2(fields))
    }

    /// The line-protection MAC of a post-issuance command (`docs/app-scripts.md`) under the
    /// card's DAMK, diversified from the maintenance master key `maintenance_master` for card
    /// `div`, with the card's challenge in the initial value.
    fn line_protection_mac(
        &self,
        maintenance_master: &KeyRef,
        alg: Algorithm,
        div: &DivData,
        command: &LineCommand,
    ) -> Result<[u8; MAC_LEN], MasterKeyError> {
        expect_purpose(maintenance_master, MasterPurpose::Maintenance)?;
        self.card_mac(
            maintenance_master,
            alg,
            div,
            &MacInput::line_protection(command),
        )
    }

    /// Checks the TAC a card returned from CREDIT FOR LOAD.
    fn verify_load_tac(
        &self,
        tac_master: &KeyRef,
        alg: Algorithm,
        div: &DivData,
        fields: &LoadFields,
        tac: &[u8; MAC_LEN],
    ) -> Result<bool, MasterKeyError> {
        expect_purpose(tac_master, MasterPurpose::Tac)?;
        let Some(input) = MacInput::load_tac(fields) else {
            return Ok(false);
        };
        let mac = self.card_mac(tac_master, alg, div, &input)?;
        Ok(mac_eq(&mac, tac))
    }
}

/// Bytes of holder data [`MasterKeyStore::encrypt_for_transport`] takes at once, at most.
pub const TRANSPORT_DATA_MAX: usize = 256;

/// Checks what [`MasterKeyStore::encrypt_for_transport`] is given, for every backend.
pub fn check_transport_data(alg: Algorithm, data: &[u8]) -> Result<(), MasterKeyError> {
    if data.is_empty()
        || data.len() > TRANSPORT_DATA_MAX
        || !data.len().is_multiple_of(alg.block_len())
    {
        return Err(MasterKeyError::InvalidData(format!(
            "holder data of {} bytes: a whole number of {}-byte blocks, 1 to {TRANSPORT_DATA_MAX} bytes",
            data.len(),
            alg.block_len()
        )));
    }
    Ok(())
}

/// The production start check: refuses a store that holds any key of the development key set
/// ([`MasterKeyStore::test_key_set_present`]). Servers call it before serving in production.
pub fn refuse_test_key_set(store: &dyn MasterKeyStore) -> Result<(), MasterKeyError> {
    if store.test_key_set_present()? {
        return Err(MasterKeyError::TestKeySetInProduction {
            backend: store.backend(),
        });
    }
    Ok(())
}

fn expect_purpose(key: &KeyRef, expected: MasterPurpose) -> Result<(), MasterKeyError> {
    if key.purpose == expected {
        Ok(())
    } else {
        Err(MasterKeyError::WrongPurpose {
            key: key.clone(),
            expected: expected.as_str(),
            actual: key.purpose.as_str(),
        })
    }
}

/// Checks that `key` may be diversified for a card (purchase, load, TAC or maintenance master
/// key).
pub fn expect_card_master(key: &KeyRef) -> Result<(), MasterKeyError> {
    match key.purpose {
        MasterPurpose::Purchase
        | MasterPurpose::Load
        | MasterPurpose::Tac
        | MasterPurpose::Maintenance => Ok(()),
        other => Err(MasterKeyError::WrongPurpose {
            key: key.clone(),
            expected: "purchase, load, tac or maintenance",
            actual: other.as_str(),
        }),
    }
}

/// Checks that `key` is a transport key.
pub fn expect_transport(key: &KeyRef) -> Result<(), MasterKeyError> {
    expect_purpose(key, MasterPurpose::Transport)
}

/// Compares two MACs without an early exit.
fn mac_eq(a: &[u8; MAC_LEN], b: &[u8; MAC_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The transport wrapping of [`WrappedCardKey`] in software: `CBC_TK(DK)`, zero IV.
pub fn wrap_card_key(alg: Algorithm, transport: &Key16, card_key: &Key16) -> [u8; 16] {
    let k = card_key.expose();
    let mut out = [0u8; 16];
    match alg {
        Algorithm::Tdes => {
            let mut first = [0u8; 8];
            first.copy_from_slice(&k[..8]);
            let c1 = crypto::tdes_encrypt(transport, &first);
            let mut second = [0u8; 8];
            for i in 0..8 {
                second[i] = k[8 + i] ^ c1[i];
            }
            let c2 = crypto::tdes_encrypt(transport, &second);
            out[..8].copy_from_slice(&c1);
            out[8..].copy_from_slice(&c2);
            first.fill(0);
            second.fill(0);
        }
        Algorithm::Sm4 => out = crypto::sm4_encrypt(transport, k),
    }
    out
}

/// The inverse of [`wrap_card_key`], for personalization lines that hold the transport key
/// (in this project: tests and the development personalization tool).
pub fn unwrap_card_key(alg: Algorithm, transport: &Key16, wrapped: &[u8; 16]) -> Key16 {
    let mut out = [0u8; 16];
    match alg {
        Algorithm::Tdes => {
            let mut c1 = [0u8; 8];
            let mut c2 = [0u8; 8];
            c1.copy_from_slice(&wrapped[..8]);
            c2.copy_from_slice(&wrapped[8..]);
            let p1 = crypto::tdes_decrypt(transport, &c1);
            let p2 = crypto::tdes_decrypt(transport, &c2);
            out[..8].copy_from_slice(&p1);
            for i in 0..8 {
                out[8 + i] = p2[i] ^ c1[i];
            }
        }
        Algorithm::Sm4 => out = crypto::sm4_decrypt(transport, wrapped),
    }
    let key = Key16::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    key
}

#[cfg(test)]
mod tests;
