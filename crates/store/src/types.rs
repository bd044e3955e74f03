//! The rows the storage layer exchanges. Personal values travel sealed (bytes from the vault)
//! together with their blind indexes; everything in clear here is non-identifying.

use keys::BlindIndex;
use resident::{Field, Residency, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDataKeys {
    pub purpose: String,
    pub kek_id: String,
    pub wrapped: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFeed {
    pub source: Source,
    /// How it arrived: `csv:FILE` or `api`.
    pub channel: String,
    /// SM3 digest of the input, hex, so the same file can be recognised.
    pub digest: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FeedTotals {
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeedRow {
    pub id: i64,
    pub source: String,
    pub channel: String,
    pub digest: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub totals: FeedTotals,
}

/// One reported field, sealed: its blind index (to compare and search) and its sealed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedField {
    pub field: Field,
    pub mac: BlindIndex,
    pub sealed: Vec<u8>,
}

/// One feed row about one resident, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedFacts {
    pub id_blind: BlindIndex,
    pub id_sealed: Vec<u8>,
    /// `YYYY-MM-DD`, derived from the ID number; kept in clear for age-based eligibility.
    pub birth_date: String,
    pub gender: String,
    pub region_code: String,
    pub residency: Option<Residency>,
    pub fields: Vec<SealedField>,
    /// The reported values of this row sealed together, for the history row.
    pub change_sealed: Vec<u8>,
}

impl SealedFacts {
    pub fn field(&self, f: Field) -> Option<&SealedField> {
        self.fields.iter().find(|s| s.field == f)
    }
}

/// What a stored resident's fields are now, as far as comparison needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentMacs {
    pub name: Option<BlindIndex>,
    pub phone: Option<BlindIndex>,
    pub address: Option<BlindIndex>,
    pub residency: Option<Residency>,
    pub assistance: Option<BlindIndex>,
    pub student: Option<BlindIndex>,
}

impl CurrentMacs {
    fn has(&self, f: Field) -> bool {
        match f {
            Field::Residency => self.residency.is_some(),
            _ => self.mac(f).is_some(),
        }
    }
    fn mac(&self, f: Field) -> Option<BlindIndex> {
        match f {
            Field::Name => self.name,
            Field::Phone => self.phone,
            Field::Address => self.address,
            Field::Assistance => self.assistance,
            Field::Student => self.student,
            Field::Residency => None,
        }
    }
}

/// Of the `changed` fields, those `source` may not overwrite: the field has a value and its
/// authority is another department (`Field::authority`). Those are held for review instead of
/// applied; a field without a value yet is filled by whoever reports it first.
pub fn held_fields(current: Option<&CurrentMacs>, changed: u8, source: Source) -> u8 {
    let Some(current) = current else { return 0 };
    Field::ALL
        .into_iter()
        .filter(|f| changed & f.bit() != 0 && current.has(*f) && !f.may_overwrite(source))
        .fold(0, |m, f| m | f.bit())
}

/// Which reported fields differ from what is stored (all reported ones for a new resident), as
/// a bit mask of [`Field::bit`]. Shared by every backend so they decide identically.
pub fn changed_fields(current: Option<&CurrentMacs>, new: &SealedFacts) -> u8 {
    let mut mask = 0u8;
    for f in Field::ALL {
        let differs = match f {
            Field::Residency => match new.residency {
                None => false,
                Some(r) => current.and_then(|c| c.residency) != Some(r),
            },
            _ => match new.field(f) {
                None => false,
                Some(s) => current.and_then(|c| c.mac(f)) != Some(s.mac),
            },
        };
        if differs {
            mask |= f.bit();
        }
    }
    mask
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyCounts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows with at least one field held for review (a non-authoritative source contradicting
    /// a stored value); their other changed fields still apply.
    pub held: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentRow {
    pub id: i64,
    pub id_blind: BlindIndex,
    pub id_sealed: Vec<u8>,
    pub birth_date: String,
    pub gender: String,
    pub region_code: String,
    pub name_sealed: Option<Vec<u8>>,
    pub phone_sealed: Option<Vec<u8>>,
    pub address_sealed: Option<Vec<u8>>,
    pub residency: Option<Residency>,
    pub assistance_sealed: Option<Vec<u8>>,
    pub student_sealed: Option<Vec<u8>>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub version: i64,
}

/// One change of one resident: which fields, from which feed and department, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    pub feed_id: i64,
    pub source: String,
    pub channel: String,
    pub fields_mask: u8,
    pub values_sealed: Vec<u8>,
    pub at_ms: i64,
}

/// Operator roles. Every endpoint names the roles it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 系统管理员: manages operators, sees everything.
    Administrator,
    /// 柜员: counter work at a service outlet.
    CounterClerk,
    /// 清算员: clearing and settlement.
    ClearingOfficer,
    /// 部门经办: a department's officer, scoped to that department.
    DepartmentOfficer,
    /// 审计员: reads, never changes.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Administrator,
        Role::CounterClerk,
        Role::ClearingOfficer,
        Role::DepartmentOfficer,
        Role::Auditor,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::CounterClerk => "counter_clerk",
            Role::ClearingOfficer => "clearing_officer",
            Role::DepartmentOfficer => "department_officer",
            Role::Auditor => "auditor",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
    pub fn name_zh(self) -> &'static str {
        match self {
            Role::Administrator => "系统管理员",
            Role::CounterClerk => "柜员",
            Role::ClearingOfficer => "清算员",
            Role::DepartmentOfficer => "部门经办",
            Role::Auditor => "审计员",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOperator {
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: Role,
    /// Set exactly when the role is department officer.
    pub department: Option<Source>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct OperatorRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: Role,
    pub department: Option<Source>,
    pub created_ms: i64,
    pub disabled: bool,
}

// The password hash stays out of logs.
impl std::fmt::Debug for OperatorRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorRow")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("department", &self.department)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A console sign-in, carried in a cookie; short-lived.
    Session,
    /// A machine client's bearer token; long-lived, revocable.
    ApiToken,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Session => "session",
            CredentialKind::ApiToken => "api_token",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "session" => Some(CredentialKind::Session),
            "api_token" => Some(CredentialKind::ApiToken),
            _ => None,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub token_hash: [u8; 32],
    pub operator_id: i64,
    pub kind: CredentialKind,
    pub label: String,
    pub expires_ms: i64,
}

/// A card as stored. The life-cycle state is kept both as its name (to filter and to enforce
/// one live card per resident in the database) and whole, as JSON of `issuance::CardState`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRow {
    /// 16 digits (`chip::CardNumber`); not personal data.
    pub number: String,
    pub resident_id: i64,
    /// `issuance::StateName::as_str`.
    pub state: String,
    pub state_json: String,
    /// `ordinary`, `student`, `senior`, `disabled`, `employee`, `temporary`.
    pub card_type: String,
    pub valid_until_s: Option<i64>,
    pub version: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One transition of one card, as the card's history shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardEventRow {
    pub number: String,
    pub from_state: String,
    pub to_state: String,
    pub action: String,
    pub reason: String,
    pub actor: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyOp {
    Add,
    Remove,
}

impl DenyOp {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyOp::Add => "add",
            DenyOp::Remove => "remove",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "add" => Some(DenyOp::Add),
            "remove" => Some(DenyOp::Remove),
            _ => None,
        }
    }
}

/// One change of the deny-list; its version is its place in the list's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyChangeRow {
    pub version: i64,
    pub number: String,
    pub op: DenyOp,
    pub at_ms: i64,
}

/// Money to move off a card that stopped being live, once its cooling-off has passed:
/// to `to_number` (replacement, renewal) or, when that is `None`, back to the holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceMoveRow {
    pub from_number: String,
    pub to_number: Option<String>,
    pub not_before_s: i64,
}

/// Everything one card transition writes, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardChange {
    /// The card after the transition; its `version` must be one more than the stored one.
    pub card: CardRow,
    /// A successor created by the transition (replacement, renewal), inserted after `card` is
    /// updated so that the one-live-card rule holds at every step.
    pub successor: Option<CardRow>,
    pub events: Vec<CardEventRow>,
    pub deny: Vec<(String, DenyOp)>,
    pub moves: Vec<BalanceMoveRow>,
}
