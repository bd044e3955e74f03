//! PKCS#11 backend of the master-key store ([`keys::master::MasterKeyStore`]), on the
//! `cryptoki` crate, tested against SoftHSM2.
//!
//! What lives where:
//! - Master keys (purchase, load, TAC) are 2-key 3DES token objects (`CKK_DES2`),
//!   `CKA_SENSITIVE` and not `CKA_EXTRACTABLE`, usable only for `CKA_ENCRYPT` (diversification
//!   *is* `E_MK(D) || E_MK(~D)`, so that is the one usage they need). They never leave the HSM.
//! - Diversification runs inside the HSM: `C_Encrypt(CKM_DES3_ECB, MK, D || ~D)`.
//! - Transport keys are `CKK_DES2` objects with `CKA_ENCRYPT` only (no `CKA_DECRYPT`). A card
//!   key for personalization leaves the store only as `CBC_TK(DK)` (zero IV), computed by the
//!   HSM under the transport key. (`C_WrapKey` would be the textbook call, but SoftHSM2 2.6
//!   wraps only with AES/RSA mechanisms.)
//! - TAC and load MACs: the HSM diversifies; the card key (never a master key) then computes
//!   the MAC in process and is wiped. Generic PKCS#11 has no mechanism for the 3DES TAC key
//!   (`DTK_L XOR DTK_R`), and `cryptoki` 0.12 exposes no `CKM_DES3_ECB_ENCRYPT_DATA`
//!   derivation, so a per-card key is briefly in host memory; a payment-HSM backend would
//!   use its native PBOC TAC command behind the same trait.
//!
//! SM4 (algorithm `04`): neither SoftHSM2 nor PKCS#11 v2.40/v3.0 define SM4 mechanisms, so
//! every SM4 request answers [`MasterKeyError::Unsupported`]. A national-algorithm backend
//! (GM/T 0018 SDF API, or vendor PKCS#11 mechanisms such as `CKM_VENDOR_DEFINED + n` for
//! SM4-ECB) implements the same [`MasterKeyStore`] trait in its own crate; nothing above the
//! trait changes.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crypto::{Algorithm, DivData, Key16, MAC_LEN};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use keys::master::{
    KeyComponent, KeyOrigin, KeyRef, MacInput, MasterKeyError, MasterKeyInfo, MasterKeyStore,
    MasterPurpose, WrappedCardKey, combine_components, expect_card_master, expect_transport,
    software_mac,
};
use thiserror::Error;
use zeroize::Zeroize;

/// Where Debian's `softhsm2` package installs the SoftHSM2 PKCS#11 module.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

const BACKEND: &str = "pkcs11";

/// A token user PIN. `Debug` prints a mask.
#[derive(Clone)]
pub struct HsmPin(String);

impl HsmPin {
    pub fn new(pin: impl Into<String>) -> Self {
        HsmPin(pin.into())
    }
}

impl std::fmt::Debug for HsmPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HsmPin(***)")
    }
}

impl Drop for HsmPin {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// How to reach the HSM: module path, token label, user PIN.
#[derive(Debug, Clone)]
pub struct HsmConfig {
    pub module: PathBuf,
    pub token_label: String,
    pub user_pin: HsmPin,
}

/// Why the HSM could not be opened or used.
#[derive(Debug, Error)]
pub enum HsmError {
    #[error("PKCS#11 module {path} not found; for SoftHSM2 install the Debian package `softhsm2`")]
    ModuleMissing { path: PathBuf },
    #[error("PKCS#11 module {path} could not be loaded: {source}")]
    ModuleLoad { path: PathBuf, source: CkError },
    #[error("no initialized token labelled {0:?} in the PKCS#11 module")]
    TokenNotFound(String),
    #[error("the HSM rejected the user PIN (CKR_PIN_INCORRECT)")]
    WrongPin,
    #[error("the HSM user PIN is locked (CKR_PIN_LOCKED)")]
    PinLocked,
    #[error("PKCS#11 {call}: {source}")]
    Pkcs11 { call: &'static str, source: CkError },
}

impl From<HsmError> for MasterKeyError {
    fn from(e: HsmError) -> Self {
        MasterKeyError::Backend(e.to_string())
    }
}

fn ck(call: &'static str) -> impl FnOnce(CkError) -> HsmError {
    move |source| HsmError::Pkcs11 { call, source }
}

/// Protection attributes of a stored key, for audits and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyProtection {
    pub sensitive: bool,
    pub extractable: bool,
    pub never_extractable: bool,
    pub always_sensitive: bool,
    pub token: bool,
}

/// The master-key store on a PKCS#11 token. One logged-in R/W session, used under a mutex:
/// host operations are short, and a pool can come when measurements ask for it.
pub struct Pkcs11MasterKeyStore {
    session: Mutex<Session>,
    token_label: String,
    // Keeps the library loaded and initialized for the session's lifetime.
    _ctx: Pkcs11,
}

impl std::fmt::Debug for Pkcs11MasterKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11MasterKeyStore")
            .field("token_label", &self.token_label)
            .finish_non_exhaustive()
    }
}

fn unsupported_sm4() -> MasterKeyError {
    MasterKeyError::Unsupported {
        backend: BACKEND,
        what: "SM4 (algorithm 04): PKCS#11 has no SM4 mechanism; use a national-algorithm \
               (GM/T 0018) HSM backend"
            .to_string(),
    }
}

fn origin_id(origin: KeyOrigin) -> &'static [u8] {
    match origin {
        KeyOrigin::Generated => b"generated",
        KeyOrigin::Components => b"components",
        KeyOrigin::TestKeySet => b"test_key_set",
        KeyOrigin::Unknown => b"unknown",
    }
}

fn origin_from_id(id: &[u8]) -> KeyOrigin {
    match id {
        b"generated" => KeyOrigin::Generated,
        b"components" => KeyOrigin::Components,
        b"test_key_set" => KeyOrigin::TestKeySet,
        _ => KeyOrigin::Unknown,
    }
}

/// The template of a master key object: sensitive, never extractable, one usage.
fn master_template(key: &KeyRef, origin: KeyOrigin) -> Result<Vec<Attribute>, MasterKeyError> {
    let (encrypt, wrap): (bool, bool) = match key.purpose() {
        MasterPurpose::Purchase
        | MasterPurpose::Load
        | MasterPurpose::Tac
        | MasterPurpose::Maintenance => (true, false),
        MasterPurpose::Transport => (true, false),
        other => {
            return Err(MasterKeyError::Unsupported {
                backend: BACKEND,
                what: format!(
                    "{} keys (this backend holds e-purse 3DES keys)",
                    other.as_str()
                ),
            });
        }
    };
    Ok(vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::DES2),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(key.label().into_bytes()),
        Attribute::Id(origin_id(origin).to_vec()),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(encrypt),
        Attribute::Decrypt(false),
        Attribute::Wrap(wrap),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
    ])
}

impl Pkcs11MasterKeyStore {
    /// Loads the module, finds the token by label and logs the user in.
    pub fn open(config: &HsmConfig) -> Result<Self, HsmError> {
        if !Path::new(&config.module).exists() {
            return Err(HsmError::ModuleMissing {
                path: config.module.clone(),
            });
        }
        let ctx = Pkcs11::new(&config.module).map_err(|source| HsmError::ModuleLoad {
            path: config.module.clone(),
            source,
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(ck("C_Initialize")(e)),
        }
        let slots = ctx
            .get_slots_with_initialized_token()
            .map_err(ck("C_GetSlotList"))?;
        let mut found = None;
        for slot in slots {
            let info = ctx.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
            if info.label().trim_end() == config.token_label {
                found = Some(slot);
                break;
            }
        }
        let slot = found.ok_or_else(|| HsmError::TokenNotFound(config.token_label.clone()))?;
        let session = ctx.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
        let pin = AuthPin::new(config.user_pin.0.clone().into());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => return Err(HsmError::WrongPin),
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => return Err(HsmError::PinLocked),
            Err(e) => return Err(ck("C_Login")(e)),
        }
        Ok(Pkcs11MasterKeyStore {
            session: Mutex::new(session),
            token_label: config.token_label.clone(),
            _ctx: ctx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        // PKCS#11 calls leave no half-done state in our struct, so a poisoned lock is usable.
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The protection attributes of a stored key (the "non-extractable" audit).
    pub fn protection(&self, key: &KeyRef) -> Result<KeyProtection, MasterKeyError> {
        let session = self.lock();
        let handle = find(&session, key)?;
        let attrs = session
            .get_attributes(
                handle,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::Token,
                ],
            )
            .map_err(ck("C_GetAttributeValue"))?;
        let mut p = KeyProtection {
            sensitive: false,
            extractable: true,
            never_extractable: false,
            always_sensitive: false,
            token: false,
        };
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => p.sensitive = v,
                Attribute::Extractable(v) => p.extractable = v,
                Attribute::NeverExtractable(v) => p.never_extractable = v,
                Attribute::AlwaysSensitive(v) => p.always_sensitive = v,
                Attribute::Token(v) => p.token = v,
                _ => {}
            }
        }
        Ok(p)
    }

    /// Tries to read a key's value, as an attacker with the PIN would; `Ok(None)` when the
    /// HSM refuses (the expected answer for every master key).
    pub fn try_read_value(&self, key: &KeyRef) -> Result<Option<usize>, MasterKeyError> {
        let session = self.lock();
        let handle = find(&session, key)?;
        match session.get_attributes(handle, &[AttributeType::Value]) {
            Ok(attrs) => Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(mut v) => {
                    let len = v.len();
                    v.zeroize();
                    Some(len)
                }
                _ => None,
            })),
            Err(CkError::Pkcs11(RvError::AttributeSensitive, _)) => Ok(None),
            Err(e) => Err(ck("C_GetAttributeValue")(e).into()),
        }
    }
}

fn find(session: &Session, key: &KeyRef) -> Result<ObjectHandle, MasterKeyError> {
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(key.label().into_bytes()),
        ])
        .map_err(ck("C_FindObjects"))?;
    match handles.as_slice() {
        [] => Err(MasterKeyError::UnknownKey(key.clone())),
        [one] => Ok(*one),
        _ => Err(MasterKeyError::Backend(format!(
            "{} objects labelled {key} on the token",
            handles.len()
        ))),
    }
}

fn info(session: &Session, handle: ObjectHandle) -> Result<Option<MasterKeyInfo>, MasterKeyError> {
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::Label,
                AttributeType::Id,
                AttributeType::CheckValue,
                AttributeType::KeyType,
            ],
        )
        .map_err(ck("C_GetAttributeValue"))?;
    let (mut label, mut id, mut kcv, mut des2) = (None, Vec::new(), None, false);
    for a in attrs {
        match a {
            Attribute::Label(l) => label = String::from_utf8(l).ok(),
            Attribute::Id(i) => id = i,
            Attribute::CheckValue(c) => kcv = c.get(..3).and_then(|c| c.try_into().ok()),
            Attribute::KeyType(t) => des2 = t == KeyType::DES2,
            _ => {}
        }
    }
    let Some(key) = label.and_then(|l| KeyRef::parse(&l).ok()) else {
        return Ok(None);
    };
    Ok(Some(MasterKeyInfo {
        key,
        kcv_tdes: if des2 { kcv } else { None },
        kcv_sm4: None,
        origin: origin_from_id(&id),
    }))
}

fn not8(x: &[u8; 8]) -> [u8; 8] {
    x.map(|b| !b)
}

/// `E_MK(D) || E_MK(~D)` inside the HSM.
fn diversify_in_hsm(
    session: &Session,
    master: ObjectHandle,
    div: &DivData,
) -> Result<Key16, MasterKeyError> {
    let mut input = [0u8; 16];
    input[..8].copy_from_slice(div.as_bytes());
    input[8..].copy_from_slice(&not8(div.as_bytes()));
    let mut out = session
        .encrypt(&Mechanism::Des3Ecb, master, &input)
        .map_err(ck("C_Encrypt(CKM_DES3_ECB)"))?;
    let key = Key16::from_slice(&out)
        .map_err(|_| MasterKeyError::Backend("C_Encrypt returned a wrong length".into()));
    out.zeroize();
    key
}

impl Pkcs11MasterKeyStore {
    fn store(
        &self,
        key: &KeyRef,
        value: Option<&Key16>,
        origin: KeyOrigin,
    ) -> Result<MasterKeyInfo, MasterKeyError> {
        let session = self.lock();
        match find(&session, key) {
            Err(MasterKeyError::UnknownKey(_)) => {}
            Ok(_) => return Err(MasterKeyError::Exists(key.clone())),
            Err(e) => return Err(e),
        }
        let mut template = master_template(key, origin)?;
        let handle = match value {
            Some(value) => {
                let mut bytes = value.expose().to_vec();
                template.push(Attribute::Value(bytes.clone()));
                bytes.zeroize();
                let handle = session.create_object(&template);
                for a in &mut template {
                    if let Attribute::Value(v) = a {
                        v.zeroize();
                    }
                }
                handle.map_err(ck("C_CreateObject"))?
            }
            None => {
                template.retain(|a| !matches!(a, Attribute::KeyType(_)));
                session
                    .generate_key(&Mechanism::Des2KeyGen, &template)
                    .map_err(ck("C_GenerateKey(CKM_DES2_KEY_GEN)"))?
            }
        };
        info(&session, handle)?
            .ok_or_else(|| MasterKeyError::Backend(format!("stored {key} but cannot read it back")))
    }
}

impl MasterKeyStore for Pkcs11MasterKeyStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn list(&self) -> Result<Vec<MasterKeyInfo>, MasterKeyError> {
        let session = self.lock();
        let handles = session
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
            .map_err(ck("C_FindObjects"))?;
        let mut out = Vec::new();
        for h in handles {
            if let Some(i) = info(&session, h)? {
                out.push(i);
            }
        }
        out.sort_by_key(|i| i.key.label());
        Ok(out)
    }

    fn generate(&self, key: &KeyRef) -> Result<MasterKeyInfo, MasterKeyError> {
        self.store(key, None, KeyOrigin::Generated)
    }

    fn import_components(
        &self,
        key: &KeyRef,
        components: &[KeyComponent],
        kcv_alg: Algorithm,
        expected_kcv: Option<[u8; 3]>,
    ) -> Result<MasterKeyInfo, MasterKeyError> {
        if kcv_alg == Algorithm::Sm4 {
            return Err(unsupported_sm4());
        }
        // The components meet in host memory for the moment of the import (a zeroized
        // `Key16`); an HSM with a component-entry ceremony would take them one by one.
        let value = combine_components(components)?;
        let actual = value.kcv(Algorithm::Tdes);
        if let Some(expected) = expected_kcv.filter(|e| *e != actual) {
            return Err(MasterKeyError::KeyKcvMismatch {
                expected: hex::encode_upper(expected),
                actual: hex::encode_upper(actual),
            });
        }
        let info = self.store(key, Some(&value), KeyOrigin::Components)?;
        if info.kcv_tdes.is_some_and(|k| k != actual) {
            return Err(MasterKeyError::KeyKcvMismatch {
                expected: hex::encode_upper(actual),
                actual: info.kcv_tdes.map(hex::encode_upper).unwrap_or_default(),
            });
        }
        Ok(info)
    }

    fn diversify_wrapped(
        &self,
        master: &KeyRef,
        alg: Algorithm,
        div: &DivData,
        transport: &KeyRef,
    ) -> Result<WrappedCardKey, MasterKeyError> {
        expect_card_master(master)?;
        expect_transport(transport)?;
        if alg == Algorithm::Sm4 {
            return Err(unsupported_sm4());
        }
        let session = self.lock();
        let master_handle = find(&session, master)?;
        let transport_handle = find(&session, transport)?;
        let card_key = diversify_in_hsm(&session, master_handle, div)?;
        let kcv = card_key.kcv(Algorithm::Tdes);
        // SoftHSM2 2.6 wraps only with AES and RSA mechanisms, so the transport key encrypts
        // (CBC, zero IV) rather than wraps; it has CKA_ENCRYPT and no CKA_DECRYPT, so the
        // host cannot turn it around to read a wrapped key.
        let mut wrapped = session
            .encrypt(
                &Mechanism::Des3Cbc([0; 8]),
                transport_handle,
                card_key.expose(),
            )
            .map_err(ck("C_Encrypt(CKM_DES3_CBC, transport)"))?;
        let out: Result<[u8; 16], _> = wrapped.as_slice().try_into();
        wrapped.zeroize();
        let wrapped =
            out.map_err(|_| MasterKeyError::Backend("C_Encrypt returned a wrong length".into()))?;
        Ok(WrappedCardKey {
            master: master.clone(),
            transport: transport.clone(),
            algorithm: alg,
            wrapped,
            kcv,
        })
    }

    fn encrypt_for_transport(
        &self,
        transport: &KeyRef,
        alg: Algorithm,
        iv: &[u8; 16],
        data: &[u8],
    ) -> Result<Vec<u8>, MasterKeyError> {
        expect_transport(transport)?;
        keys::master::check_transport_data(alg, data)?;
        if alg == Algorithm::Sm4 {
            return Err(unsupported_sm4());
        }
        let session = self.lock();
        let handle = find(&session, transport)?;
        let mut chain = [0u8; 8];
        chain.copy_from_slice(&iv[..8]);
        Ok(session
            .encrypt(&Mechanism::Des3Cbc(chain), handle, data)
            .map_err(ck("C_Encrypt(CKM_DES3_CBC, transport)"))?)
    }

    fn card_mac(
        &self,
        master: &KeyRef,
        alg: Algorithm,
        div: &DivData,
        input: &MacInput,
    ) -> Result<[u8; MAC_LEN], MasterKeyError> {
        if alg == Algorithm::Sm4 {
            return Err(unsupported_sm4());
        }
        let session = self.lock();
        let handle = find(&session, master)?;
        let card_key = diversify_in_hsm(&session, handle, div)?;
        drop(session);
        Ok(software_mac(alg, &card_key, input))
    }
}
