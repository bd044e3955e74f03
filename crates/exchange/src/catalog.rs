//! The catalog: services with their fields' sensitivity, grants and consents, as values.

use serde::{Deserialize, Serialize};

/// Fields an output may have at most; grants name at most this many.
pub const FIELDS_MAX: usize = 32;

/// How sensitive a field is (数据分级): public and internal values pass as they are; personal
/// and sensitive personal information (PIPL) is masked unless the grant allows the full value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    Public,
    Internal,
    Personal,
    Sensitive,
}

impl Sensitivity {
    pub fn as_str(self) -> &'static str {
        match self {
            Sensitivity::Public => "public",
            Sensitivity::Internal => "internal",
            Sensitivity::Personal => "personal",
            Sensitivity::Sensitive => "sensitive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "public" => Sensitivity::Public,
            "internal" => Sensitivity::Internal,
            "personal" => Sensitivity::Personal,
            "sensitive" => Sensitivity::Sensitive,
            _ => return None,
        })
    }

    /// Whether a value of this level is masked unless the grant allows it in full.
    pub fn masked_by_default(self) -> bool {
        self >= Sensitivity::Personal
    }
}

/// How a masked value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskStyle {
    /// `410***********1234`
    IdNumber,
    /// `张*明`
    Name,
    /// `138****5678`
    Phone,
    /// The district stays.
    Address,
    /// Replaced by `***` whatever it was (amounts, statuses, dates).
    Redact,
}

impl MaskStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            MaskStyle::IdNumber => "id_number",
            MaskStyle::Name => "name",
            MaskStyle::Phone => "phone",
            MaskStyle::Address => "address",
            MaskStyle::Redact => "redact",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "id_number" => MaskStyle::IdNumber,
            "name" => MaskStyle::Name,
            "phone" => MaskStyle::Phone,
            "address" => MaskStyle::Address,
            "redact" => MaskStyle::Redact,
            _ => return None,
        })
    }
}

/// One output field of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    pub name: String,
    pub sensitivity: Sensitivity,
    pub mask: MaskStyle,
    pub description: String,
}

impl FieldSpec {
    pub fn new(name: &str, sensitivity: Sensitivity, mask: MaskStyle, description: &str) -> Self {
        FieldSpec {
            name: name.into(),
            sensitivity,
            mask,
            description: description.into(),
        }
    }
}

/// A service in the catalog, published by its provider member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub code: String,
    pub provider: String,
    pub name: String,
    pub description: String,
    /// What a call carries: the subject's ID number (`id_number`), always, for these services.
    pub input: String,
    pub fields: Vec<FieldSpec>,
    /// `http://host:port/path` of the provider's endpoint.
    pub endpoint: String,
    /// Calls about a citizen need that citizen's consent.
    pub consent_required: bool,
}

impl Service {
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A consumer's right to call a service for some of its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: i64,
    pub consumer: String,
    pub service: String,
    pub fields: Vec<String>,
    /// Fields the consumer sees unmasked (a subset of `fields`).
    pub full_fields: Vec<String>,
    pub purpose: String,
    /// The law or agreement that allows the sharing (`《社会救助暂行办法》第十一条`).
    pub legal_basis: String,
    pub valid_from_ms: i64,
    pub valid_until_ms: i64,
    pub withdrawn_ms: Option<i64>,
}

impl Grant {
    pub fn state(&self, now_ms: i64) -> GrantState {
        if self.withdrawn_ms.is_some_and(|w| w <= now_ms) {
            GrantState::Withdrawn
        } else if now_ms < self.valid_from_ms {
            GrantState::NotYetValid
        } else if now_ms >= self.valid_until_ms {
            GrantState::Expired
        } else {
            GrantState::Active
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantState {
    Active,
    NotYetValid,
    Expired,
    Withdrawn,
}

/// A citizen's consent: this consumer may call this service about them, for this purpose,
/// until it expires or they revoke it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub id: i64,
    /// The resident's internal id (never the ID number).
    pub resident_id: i64,
    pub consumer: String,
    pub service: String,
    pub purpose: String,
    pub given_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
}
