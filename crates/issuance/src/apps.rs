//! Application management (应用管理), pure: the registry of card applications and of the
//! functions a card can carry, who may manage them, the per-card change rule, and the host
//! side of post-issuance scripts (line-protected UPDATE commands, `docs/app-scripts.md`).
//!
//! The registry says where each function lives on the chip (application, file, record or
//! offset) and what it writes there; a script is `SELECT <AID>` followed by one
//! `UPDATE BINARY` or `UPDATE RECORD` with CLA `04` and a 4-byte MAC under the application's
//! maintenance key DAMK, for one card challenge. The MAC itself is computed by the caller's
//! master-key store ([`keys::master::MasterKeyStore::line_protection_mac`]) or, for tests
//! and benchmarks, by [`script_with_key`] from a card key in hand.

use core::fmt;

use crypto::{Algorithm, DivData, Key16, MAC_LEN};
use keys::master::{KeyRef, LineCommand, MasterKeyError, MasterPurpose};
use resident::Source;
use thiserror::Error;

/// Bounds of the registry's texts and sizes.
pub const CODE_LEN_MAX: usize = 16;
pub const NAME_LEN_MAX: usize = 64;
pub const AID_LEN_MIN: usize = 5;
pub const AID_LEN_MAX: usize = 16;
pub const FILES_MAX: usize = 16;
/// Largest data an update in a script carries (short APDU: Lc ≤ 255 with the MAC).
pub const UPDATE_DATA_MAX: usize = 64;
/// The maintenance key version every card of this profile carries.
pub const MAINTENANCE_KEY_VERSION: u8 = 1;
/// Status byte of an enabled function; a disabled one is `00` followed by zeros.
pub const FUNCTION_ON: u8 = 0x01;

/// CLA of a line-protected command.
pub const CLA_LINE: u8 = 0x04;

/// Why a registry entry, a change or a script was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AppError {
    #[error("code {0:?} must be 1 to {CODE_LEN_MAX} lowercase ASCII letters, digits or _")]
    InvalidCode(String),
    #[error("name must be 1 to {NAME_LEN_MAX} characters")]
    InvalidName,
    #[error("AID must be {AID_LEN_MIN} to {AID_LEN_MAX} bytes, got {0}")]
    InvalidAid(usize),
    #[error("owner {0:?} is neither card_company nor a department")]
    InvalidOwner(String),
    #[error("file SFI {0} must be 1 to 30 and appear once")]
    InvalidSfi(u8),
    #[error("file SFI {sfi}: {reason}")]
    InvalidFile { sfi: u8, reason: &'static str },
    #[error("an application has at most {FILES_MAX} files")]
    TooManyFiles,
    #[error("unknown key purpose {0:?}")]
    InvalidKeyPurpose(String),
    #[error("function {function}: application {app} has no file with SFI {sfi}")]
    NoSuchFile {
        function: String,
        app: String,
        sfi: u8,
    },
    #[error("function {function}: {reason}")]
    InvalidTarget {
        function: String,
        reason: &'static str,
    },
    #[error("application {0} has no maintenance key purpose, so no script can update it")]
    NotMaintainable(String),
    #[error("function {0} is already enabled on this card")]
    AlreadyEnabled(String),
    #[error("function {0} is not enabled on this card")]
    NotEnabled(String),
    #[error("no change of function {0} is pending on this card")]
    NothingPending(String),
    #[error("maintenance key: {0}")]
    Key(String),
}

impl From<MasterKeyError> for AppError {
    fn from(e: MasterKeyError) -> Self {
        AppError::Key(e.to_string())
    }
}

/// A registry code (`city`, `canteen_wallet`): also the application name in the master-key
/// store, so an application's maintenance master key is `<code>/maintenance/v1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(String);

impl Code {
    pub fn parse(text: &str) -> Result<Self, AppError> {
        let ok = !text.is_empty()
            && text.len() <= CODE_LEN_MAX
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Code(text.to_string()))
        } else {
            Err(AppError::InvalidCode(text.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who owns an application: the card company or one department.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    CardCompany,
    Department(Source),
}

impl Owner {
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::CardCompany => "card_company",
            Owner::Department(d) => d.as_str(),
        }
    }
    pub fn parse(text: &str) -> Result<Self, AppError> {
        if text == "card_company" {
            return Ok(Owner::CardCompany);
        }
        Source::parse(text)
            .map(Owner::Department)
            .ok_or_else(|| AppError::InvalidOwner(text.to_string()))
    }
}

/// Who may manage an application (register it, its functions, enable or disable them on
/// cards): an administrator any; a department officer only its own department's; the card
/// company's applications only administrators and, for per-card changes, counter clerks.
pub fn may_manage(owner: Owner, caller: Manager) -> bool {
    match caller {
        Manager::Administrator => true,
        Manager::Department(d) => owner == Owner::Department(d),
        Manager::Counter => false,
    }
}

/// Who may change a function on one card: whoever may manage the application, and counter
/// clerks (the counter or kiosk is where cards are updated) for every application.
pub fn may_change_card(owner: Owner, caller: Manager) -> bool {
    caller == Manager::Counter || may_manage(owner, caller)
}

/// The caller as application management sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Administrator,
    /// A department officer of this department.
    Department(Source),
    /// A counter clerk (or kiosk operator).
    Counter,
}

/// How an elementary file is structured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStructure {
    /// Transparent, `size` bytes.
    Binary { size: u16 },
    /// Linear fixed records.
    Linear { record_len: u8, records: u8 },
    /// Cyclic records (written by the application itself, never by a script).
    Cyclic { record_len: u8, records: u8 },
}

impl FileStructure {
    pub fn size_bytes(self) -> usize {
        match self {
            FileStructure::Binary { size } => usize::from(size),
            FileStructure::Linear {
                record_len,
                records,
            }
            | FileStructure::Cyclic {
                record_len,
                records,
            } => usize::from(record_len) * usize::from(records),
        }
    }
}

/// One file of an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFile {
    pub sfi: u8,
    pub structure: FileStructure,
}

/// A card application: AID, owner, files and the purposes of its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub code: Code,
    pub name: String,
    pub aid: Vec<u8>,
    pub owner: Owner,
    pub files: Vec<AppFile>,
    pub key_purposes: Vec<MasterPurpose>,
}

fn check_name(name: &str) -> Result<(), AppError> {
    let n = name.chars().count();
    if n == 0 || n > NAME_LEN_MAX || name.trim().is_empty() {
        return Err(AppError::InvalidName);
    }
    Ok(())
}

impl Application {
    /// Checks bounds: name, AID length, SFIs unique in 1..=30, non-empty files.
    pub fn validate(&self) -> Result<(), AppError> {
        check_name(&self.name)?;
        if !(AID_LEN_MIN..=AID_LEN_MAX).contains(&self.aid.len()) {
            return Err(AppError::InvalidAid(self.aid.len()));
        }
        if self.files.len() > FILES_MAX {
            return Err(AppError::TooManyFiles);
        }
        for (i, f) in self.files.iter().enumerate() {
            if !(1..=30).contains(&f.sfi) || self.files[..i].iter().any(|g| g.sfi == f.sfi) {
                return Err(AppError::InvalidSfi(f.sfi));
            }
            if f.structure.size_bytes() == 0 {
                return Err(AppError::InvalidFile {
                    sfi: f.sfi,
                    reason: "the file holds no bytes",
                });
            }
        }
        Ok(())
    }

    pub fn file(&self, sfi: u8) -> Option<&AppFile> {
        self.files.iter().find(|f| f.sfi == sfi)
    }

    /// The maintenance master key of this application (`<code>/maintenance/v1`), if it has
    /// a maintenance purpose.
    pub fn maintenance_key(&self) -> Result<KeyRef, AppError> {
        if !self.key_purposes.contains(&MasterPurpose::Maintenance) {
            return Err(AppError::NotMaintainable(self.code.to_string()));
        }
        Ok(KeyRef::new(
            self.code.as_str(),
            MasterPurpose::Maintenance,
            MAINTENANCE_KEY_VERSION,
        )?)
    }
}

/// Where a function's state lives on the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A whole record of a linear fixed file.
    Record { sfi: u8, record: u8 },
    /// `len` bytes of a binary file from `offset`.
    Binary { sfi: u8, offset: u8, len: u8 },
}

impl Target {
    pub fn sfi(self) -> u8 {
        match self {
            Target::Record { sfi, .. } | Target::Binary { sfi, .. } => sfi,
        }
    }
}

/// A function a card can carry (campus, canteen wallet, …): the application it belongs to,
/// where it is written, and the parameter bytes an enabled function holds after its status
/// byte (e.g. the access-control groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub code: Code,
    pub name: String,
    pub app: Code,
    pub target: Target,
    pub parameters: Vec<u8>,
}

impl Function {
    /// The bytes the function's target holds: `01 || parameters || 00…` when enabled,
    /// all zeros when disabled; as long as the record (or the binary slice).
    pub fn payload(&self, app: &Application, enable: bool) -> Result<Vec<u8>, AppError> {
        let len = self.target_len(app)?;
        let mut out = vec![0u8; len];
        if enable {
            out[0] = FUNCTION_ON;
            out[1..=self.parameters.len()].copy_from_slice(&self.parameters);
        }
        Ok(out)
    }

    fn target_len(&self, app: &Application) -> Result<usize, AppError> {
        let bad = |reason| AppError::InvalidTarget {
            function: self.code.to_string(),
            reason,
        };
        let file = app
            .file(self.target.sfi())
            .ok_or_else(|| AppError::NoSuchFile {
                function: self.code.to_string(),
                app: app.code.to_string(),
                sfi: self.target.sfi(),
            })?;
        let len = match (self.target, file.structure) {
            (
                Target::Record { record, .. },
                FileStructure::Linear {
                    record_len,
                    records,
                },
            ) => {
                if record == 0 || record > records {
                    return Err(bad("record number outside the file"));
                }
                usize::from(record_len)
            }
            (Target::Record { .. }, FileStructure::Cyclic { .. }) => {
                return Err(bad("cyclic files are written by their application only"));
            }
            (Target::Binary { offset, len, .. }, FileStructure::Binary { size }) => {
                if len == 0 || usize::from(offset) + usize::from(len) > usize::from(size) {
                    return Err(bad("binary slice outside the file"));
                }
                usize::from(len)
            }
            _ => return Err(bad("target kind does not match the file structure")),
        };
        if len > UPDATE_DATA_MAX {
            return Err(bad("target longer than one update carries"));
        }
        if self.parameters.len() + 1 > len {
            return Err(bad("parameters do not fit after the status byte"));
        }
        Ok(len)
    }

    /// Checks the function against its application.
    pub fn validate(&self, app: &Application) -> Result<(), AppError> {
        check_name(&self.name)?;
        if app.code != self.app {
            return Err(AppError::InvalidTarget {
                function: self.code.to_string(),
                reason: "belongs to another application",
            });
        }
        self.target_len(app)?;
        app.maintenance_key()?;
        Ok(())
    }
}

/// A function's state on one card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardFunction {
    pub enabled: bool,
    /// A change produced as a script and not yet confirmed by the card: the target state.
    pub pending: Option<bool>,
}

/// Decides a requested change: enabling what is enabled (or disabling what is not), with
/// nothing pending, is refused; otherwise the change becomes (or replaces) the pending one,
/// so a kiosk that lost a script can ask again with a new challenge.
pub fn request_change(
    function: &Code,
    current: CardFunction,
    enable: bool,
) -> Result<CardFunction, AppError> {
    if current.pending.is_none() && current.enabled == enable {
        return Err(if enable {
            AppError::AlreadyEnabled(function.to_string())
        } else {
            AppError::NotEnabled(function.to_string())
        });
    }
    Ok(CardFunction {
        enabled: current.enabled,
        pending: Some(enable),
    })
}

/// Applies the card's answer to the pending change: `9000` makes it the state; any other
/// status word drops it (the card did not change) and the caller records the failure.
pub fn confirm_change(
    function: &Code,
    current: CardFunction,
    sw: u16,
) -> Result<(CardFunction, bool), AppError> {
    let target = current
        .pending
        .ok_or_else(|| AppError::NothingPending(function.to_string()))?;
    let applied = sw == 0x9000;
    Ok((
        CardFunction {
            enabled: if applied { target } else { current.enabled },
            pending: None,
        },
        applied,
    ))
}

/// The UPDATE command of a change, without its MAC: header and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateCommand {
    pub header: [u8; 4],
    pub data: Vec<u8>,
}

impl UpdateCommand {
    /// The command for `function` set to `enable`.
    pub fn new(app: &Application, function: &Function, enable: bool) -> Result<Self, AppError> {
        let data = function.payload(app, enable)?;
        let header = match function.target {
            Target::Record { sfi, record } => [CLA_LINE, 0xDC, record, (sfi << 3) | 0x04],
            Target::Binary { sfi, offset, .. } => [CLA_LINE, 0xD6, 0x80 | sfi, offset],
        };
        Ok(UpdateCommand { header, data })
    }

    /// What the MAC covers: `CLA INS P1 P2 Lc data`, Lc counting the MAC.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.data.len());
        out.extend_from_slice(&self.header);
        // Bounded by UPDATE_DATA_MAX, so Lc fits one byte.
        out.push((self.data.len() + MAC_LEN) as u8);
        out.extend_from_slice(&self.data);
        out
    }

    /// The request to a master-key store for this command and card challenge.
    pub fn line_command(&self, challenge: [u8; 4]) -> LineCommand {
        LineCommand {
            challenge,
            command: self.mac_input(),
        }
    }

    /// The complete command APDU with its MAC appended.
    pub fn with_mac(&self, mac: [u8; MAC_LEN]) -> Vec<u8> {
        let mut out = self.mac_input();
        out.extend_from_slice(&mac);
        out
    }
}

/// A script: the APDUs a terminal sends, in order, after its GET CHALLENGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub apdus: Vec<Vec<u8>>,
}

/// `00 A4 04 00 Lc AID`: select the application by name.
pub fn select_aid(aid: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00, 0xA4, 0x04, 0x00, aid.len() as u8];
    out.extend_from_slice(aid);
    out
}

/// Assembles the script from the update and its MAC: `SELECT AID`, then the update.
pub fn assemble(app: &Application, update: &UpdateCommand, mac: [u8; MAC_LEN]) -> Script {
    Script {
        apdus: vec![select_aid(&app.aid), update.with_mac(mac)],
    }
}

/// Code of the TRANSIT application (also its name in the master-key store).
pub const TRANSIT_APP: &str = keys::master::APP_TRANSIT;

/// The TRANSIT application's maintenance master key, `transit/maintenance/v1`: the card's
/// TRANSIT DAMK is diversified from it, and it protects updates of EF15.
pub fn transit_maintenance_key() -> Result<KeyRef, AppError> {
    Ok(KeyRef::new(
        TRANSIT_APP,
        MasterPurpose::Maintenance,
        MAINTENANCE_KEY_VERSION,
    )?)
}

/// The line-protected update of the card type in TRANSIT EF15 (`epurse.md` §1, byte 28):
/// `04 D6 95 1C 05 <type> <MAC(4)>` — UPDATE BINARY with the SFI in P1 and offset 28 in P2.
pub fn card_type_update(card_type: chip::CardType) -> UpdateCommand {
    UpdateCommand {
        header: [
            CLA_LINE,
            0xD6,
            0x80 | chip::SFI_EF15,
            chip::EF15_CARD_TYPE_OFFSET,
        ],
        data: vec![card_type.code()],
    }
}

/// The script that writes `card_type` into EF15: `SELECT TRANSIT`, then the update with its
/// MAC.
pub fn assemble_card_type(update: &UpdateCommand, mac: [u8; MAC_LEN]) -> Script {
    Script {
        apdus: vec![select_aid(chip::image::AID_TRANSIT), update.with_mac(mac)],
    }
}

/// The card type script under the card's TRANSIT DAMK held in hand (tests, and the reference
/// the master-key stores are checked against).
pub fn card_type_script_with_key(
    card_type: chip::CardType,
    alg: Algorithm,
    damk: &Key16,
    challenge: [u8; 4],
) -> Script {
    let update = card_type_update(card_type);
    let mac = crypto::line_mac(alg, damk, challenge, &update.mac_input());
    assemble_card_type(&update, mac)
}

/// The whole script under a card's DAMK held in hand (tests, benchmarks, and the reference
/// the master-key stores are checked against).
pub fn script_with_key(
    app: &Application,
    function: &Function,
    enable: bool,
    alg: Algorithm,
    damk: &Key16,
    challenge: [u8; 4],
) -> Result<Script, AppError> {
    let update = UpdateCommand::new(app, function, enable)?;
    let mac = crypto::line_mac(alg, damk, challenge, &update.mac_input());
    Ok(assemble(app, &update, mac))
}

/// Like [`script_with_key`], diversifying DAMK from the maintenance master key first.
pub fn script_with_master(
    app: &Application,
    function: &Function,
    enable: bool,
    alg: Algorithm,
    master: &Key16,
    div: &DivData,
    challenge: [u8; 4],
) -> Result<Script, AppError> {
    let damk = crypto::diversify(alg, master, div);
    script_with_key(app, function, enable, alg, &damk, challenge)
}

/// The registry every deployment starts from (`epurse.md` §1 plus the application
/// management files of `docs/app-scripts.md`).
pub fn seed() -> (Vec<Application>, Vec<Function>) {
    use chip::image::{AID_CITY, AID_HEALTH, AID_SSSE, AID_TRANSIT};
    let code = |c: &str| Code(c.to_string());
    let bin = |sfi, size| AppFile {
        sfi,
        structure: FileStructure::Binary { size },
    };
    let apps = vec![
        Application {
            code: code("ssse"),
            name: "社会保障 Social security".into(),
            aid: AID_SSSE.to_vec(),
            owner: Owner::Department(Source::HrSocialSecurity),
            files: vec![bin(0x05, 32), bin(0x06, 53)],
            key_purposes: vec![MasterPurpose::Pin],
        },
        Application {
            code: code("transit"),
            name: "电子钱包 Transit e-purse".into(),
            aid: AID_TRANSIT.to_vec(),
            owner: Owner::CardCompany,
            files: vec![
                bin(0x15, 30),
                bin(0x16, 55),
                AppFile {
                    sfi: 0x18,
                    structure: FileStructure::Cyclic {
                        record_len: 23,
                        records: 10,
                    },
                },
                AppFile {
                    sfi: 0x19,
                    structure: FileStructure::Cyclic {
                        record_len: 48,
                        records: chip::records::TRANSIT_RECORDS as u8,
                    },
                },
            ],
            // Maintenance: the card type in EF15 follows the platform's record after
            // issuance (a line-protected UPDATE BINARY under the TRANSIT DAMK).
            key_purposes: vec![
                MasterPurpose::Purchase,
                MasterPurpose::Load,
                MasterPurpose::Tac,
                MasterPurpose::Maintenance,
            ],
        },
        Application {
            code: code("health"),
            name: "健康 Health".into(),
            aid: AID_HEALTH.to_vec(),
            owner: Owner::Department(Source::Health),
            files: vec![bin(0x01, 64), bin(chip::SFI_HEALTH_SERVICES, 16)],
            key_purposes: vec![MasterPurpose::Pin, MasterPurpose::Maintenance],
        },
        Application {
            code: code("city"),
            name: "市民卡 Citycard".into(),
            aid: AID_CITY.to_vec(),
            owner: Owner::CardCompany,
            files: vec![
                bin(0x01, 16),
                AppFile {
                    sfi: 0x02,
                    structure: FileStructure::Linear {
                        record_len: 16,
                        records: 5,
                    },
                },
                AppFile {
                    sfi: chip::SFI_CITY_FUNCTIONS,
                    structure: FileStructure::Linear {
                        record_len: chip::FUNCTION_RECORD_LEN as u8,
                        records: chip::FUNCTION_RECORDS as u8,
                    },
                },
            ],
            key_purposes: vec![MasterPurpose::Maintenance],
        },
    ];
    let city = |c: &str, name: &str, record: u8, parameters: Vec<u8>| Function {
        code: code(c),
        name: name.into(),
        app: code("city"),
        target: Target::Record {
            sfi: chip::SFI_CITY_FUNCTIONS,
            record,
        },
        parameters,
    };
    let functions = vec![
        city("campus", "校园 Campus", 1, vec![]),
        city("canteen_wallet", "食堂钱包 Canteen wallet", 2, vec![]),
        city("library", "图书馆 Library", 3, vec![]),
        // Access-control groups: a 32-bit group mask.
        city("access_groups", "门禁组 Access groups", 4, vec![0, 0, 0, 1]),
        // Concessions: the concession class (01 senior, 02 student, 03 disabled).
        city("concessions", "优惠 Concessions", 5, vec![0x01]),
        Function {
            code: code("hospital"),
            name: "医院 Hospital".into(),
            app: code("health"),
            target: Target::Binary {
                sfi: chip::SFI_HEALTH_SERVICES,
                offset: 0,
                len: 16,
            },
            parameters: vec![],
        },
    ];
    (apps, functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_registry_is_valid() {
        let (apps, functions) = seed();
        for a in &apps {
            a.validate().unwrap();
        }
        for f in &functions {
            let app = apps.iter().find(|a| a.code == f.app).unwrap();
            f.validate(app).unwrap();
        }
        let owner = |c: &str| apps.iter().find(|a| a.code.as_str() == c).unwrap().owner;
        assert_eq!(owner("ssse"), Owner::Department(Source::HrSocialSecurity));
        assert_eq!(owner("transit"), Owner::CardCompany);
        assert_eq!(owner("city"), Owner::CardCompany);
        assert_eq!(owner("health"), Owner::Department(Source::Health));
    }

    #[test]
    fn a_department_manages_only_its_own_applications() {
        let health = Owner::Department(Source::Health);
        assert!(may_manage(health, Manager::Department(Source::Health)));
        assert!(!may_manage(
            health,
            Manager::Department(Source::HrSocialSecurity)
        ));
        assert!(!may_manage(
            Owner::CardCompany,
            Manager::Department(Source::Health)
        ));
        assert!(may_manage(Owner::CardCompany, Manager::Administrator));
        assert!(!may_manage(health, Manager::Counter));
        assert!(may_change_card(health, Manager::Counter));
    }

    #[test]
    fn changes_go_through_pending() {
        let f = Code::parse("library").unwrap();
        let off = CardFunction {
            enabled: false,
            pending: None,
        };
        assert_eq!(
            request_change(&f, off, false),
            Err(AppError::NotEnabled("library".into()))
        );
        let p = request_change(&f, off, true).unwrap();
        assert_eq!(p.pending, Some(true));
        // Asking again (a lost script) is allowed and keeps it pending.
        assert_eq!(request_change(&f, p, true).unwrap(), p);
        let (failed, applied) = confirm_change(&f, p, 0x6988).unwrap();
        assert!(!applied);
        assert_eq!(failed, off);
        let (on, applied) = confirm_change(&f, p, 0x9000).unwrap();
        assert!(applied && on.enabled && on.pending.is_none());
        assert_eq!(
            confirm_change(&f, on, 0x9000),
            Err(AppError::NothingPending("library".into()))
        );
    }

    #[test]
    fn targets_outside_their_files_are_refused() {
        let (apps, functions) = seed();
        let city = apps.iter().find(|a| a.code.as_str() == "city").unwrap();
        let mut f = functions[0].clone();
        f.target = Target::Record {
            sfi: chip::SFI_CITY_FUNCTIONS,
            record: 9,
        };
        assert!(matches!(
            f.validate(city),
            Err(AppError::InvalidTarget { .. })
        ));
        f.target = Target::Record {
            sfi: 0x07,
            record: 1,
        };
        assert!(matches!(f.validate(city), Err(AppError::NoSuchFile { .. })));
        f.target = Target::Record {
            sfi: chip::SFI_CITY_FUNCTIONS,
            record: 1,
        };
        f.parameters = vec![0; 16];
        assert!(matches!(
            f.validate(city),
            Err(AppError::InvalidTarget { .. })
        ));
        let ssse = apps.iter().find(|a| a.code.as_str() == "ssse").unwrap();
        assert!(matches!(
            ssse.maintenance_key(),
            Err(AppError::NotMaintainable(_))
        ));
    }
}
