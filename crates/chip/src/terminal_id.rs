//! The 6-byte terminal id that terminals and PSAMs put into MACs, TACs and records.

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Why text is not a terminal id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("terminal id must be 12 hex digits, got {0:?}")]
pub struct TerminalIdError(pub String);

/// A terminal id (PSAM number), 6 bytes, written as 12 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TerminalId(pub [u8; 6]);

impl TerminalId {
    /// Parses 12 hex digits.
    pub fn parse(text: &str) -> Result<Self, TerminalIdError> {
        hex::decode(text)
            .ok()
            .and_then(|v| <[u8; 6]>::try_from(v).ok())
            .map(TerminalId)
            .ok_or_else(|| TerminalIdError(text.to_string()))
    }

    /// The 6 bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }
}

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TerminalId({self})")
    }
}

impl Serialize for TerminalId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TerminalId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TerminalId::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
