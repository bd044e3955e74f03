//! Byte layouts of the profile's files: EF15, EF16, EF18 records and the SFI 19 transit record.

use crypto::TransactionType;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{BcdDate, BcdError, BcdTime, CardNumber, CardNumberError, TerminalId};

/// EF15 length.
pub const EF15_LEN: usize = 30;
/// EF16 length.
pub const EF16_LEN: usize = 55;
/// EF18 record length.
pub const EF18_RECORD_LEN: usize = 23;
/// EF18 record count (cyclic).
pub const EF18_RECORDS: usize = 10;
/// SFI 19 transit record length.
pub const TRANSIT_RECORD_LEN: usize = 48;
/// SFI 19 record count (cyclic). The profile leaves the count open; five keep
/// an entry plus a few past trips.
pub const TRANSIT_RECORDS: usize = 5;
/// Holder name field in EF16, GBK bytes.
pub const HOLDER_NAME_LEN: usize = 20;
/// ID number field in EF16, ASCII bytes.
pub const ID_NUMBER_LEN: usize = 32;
/// Issuer id: BCD `4101` + `0000` + `FFFFFFFF`.
pub const ISSUER_ID: [u8; 8] = [0x41, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF];

/// Why file bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("{what}: expected {expected} bytes, got {actual}")]
    Length {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("{what}: {source}")]
    Bcd {
        what: &'static str,
        source: BcdError,
    },
    #[error("application serial: {0}")]
    CardNumber(#[from] CardNumberError),
    #[error("unknown card type {0:#04x}")]
    CardType(u8),
    #[error("unknown transaction type {0:#04x}")]
    TransactionType(u8),
    #[error("holder name is not valid GBK")]
    Name,
}

fn take<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N], RecordError> {
    bytes.try_into().map_err(|_| RecordError::Length {
        what,
        expected: N,
        actual: bytes.len(),
    })
}

/// Card type byte of EF15 offset 28.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CardType {
    Ordinary,
    Student,
    Senior,
    Disabled,
    Employee,
    Temporary,
}

impl CardType {
    /// The EF15 code (`01`..`06`).
    pub const fn code(self) -> u8 {
        match self {
            CardType::Ordinary => 0x01,
            CardType::Student => 0x02,
            CardType::Senior => 0x03,
            CardType::Disabled => 0x04,
            CardType::Employee => 0x05,
            CardType::Temporary => 0x06,
        }
    }

    /// Parses an EF15 code.
    pub fn from_code(code: u8) -> Result<Self, RecordError> {
        Ok(match code {
            0x01 => CardType::Ordinary,
            0x02 => CardType::Student,
            0x03 => CardType::Senior,
            0x04 => CardType::Disabled,
            0x05 => CardType::Employee,
            0x06 => CardType::Temporary,
            other => return Err(RecordError::CardType(other)),
        })
    }
}

/// EF15 public information (30 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicInfo {
    pub issuer_id: [u8; 8],
    pub app_type: u8,
    pub app_version: u8,
    pub card_number: CardNumber,
    pub start_date: BcdDate,
    pub expiry_date: BcdDate,
    pub card_type: CardType,
}

impl PublicInfo {
    /// The 30 bytes of EF15.
    pub fn to_bytes(&self) -> [u8; EF15_LEN] {
        let mut out = [0u8; EF15_LEN];
        out[0..8].copy_from_slice(&self.issuer_id);
        out[8] = self.app_type;
        out[9] = self.app_version;
        // Application serial: 0000 then the card number in BCD.
        out[12..20].copy_from_slice(&self.card_number.to_bcd());
        out[20..24].copy_from_slice(&self.start_date.to_bcd());
        out[24..28].copy_from_slice(&self.expiry_date.to_bcd());
        out[28] = self.card_type.code();
        out
    }

    /// Decodes EF15.
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        let b: [u8; EF15_LEN] = take("EF15", bytes)?;
        let bcd = |what, r: Result<BcdDate, BcdError>| {
            r.map_err(|source| RecordError::Bcd { what, source })
        };
        Ok(PublicInfo {
            issuer_id: take("issuer id", &b[0..8])?,
            app_type: b[8],
            app_version: b[9],
            card_number: CardNumber::from_bcd(take("application serial", &b[12..20])?)?,
            start_date: bcd(
                "start date",
                BcdDate::from_bcd(take("start date", &b[20..24])?),
            )?,
            expiry_date: bcd(
                "expiry date",
                BcdDate::from_bcd(take("expiry date", &b[24..28])?),
            )?,
            card_type: CardType::from_code(b[28])?,
        })
    }
}

/// EF16 holder information (55 bytes). The name is kept as GBK bytes and the
/// ID number as ASCII; `Debug` masks both.
#[derive(Clone, PartialEq, Eq)]
pub struct HolderInfo {
    pub holder_flag: u8,
    pub employee_flag: u8,
    /// GBK, right-padded with 00.
    pub name_gbk: [u8; HOLDER_NAME_LEN],
    /// ASCII, right-padded with 00.
    pub id_number: [u8; ID_NUMBER_LEN],
    /// `00` resident ID card.
    pub id_type: u8,
}

impl HolderInfo {
    /// The 55 bytes of EF16.
    pub fn to_bytes(&self) -> [u8; EF16_LEN] {
        let mut out = [0u8; EF16_LEN];
        out[0] = self.holder_flag;
        out[1] = self.employee_flag;
        out[2..22].copy_from_slice(&self.name_gbk);
        out[22..54].copy_from_slice(&self.id_number);
        out[54] = self.id_type;
        out
    }

    /// Decodes EF16.
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        let b: [u8; EF16_LEN] = take("EF16", bytes)?;
        Ok(HolderInfo {
            holder_flag: b[0],
            employee_flag: b[1],
            name_gbk: take("name", &b[2..22])?,
            id_number: take("ID number", &b[22..54])?,
            id_type: b[54],
        })
    }

    /// The holder name decoded from GBK, padding removed.
    pub fn name(&self) -> Result<String, RecordError> {
        let end = self
            .name_gbk
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(HOLDER_NAME_LEN);
        let (text, had_errors) =
            encoding_rs::GBK.decode_without_bom_handling(&self.name_gbk[..end]);
        if had_errors {
            return Err(RecordError::Name);
        }
        Ok(text.into_owned())
    }
}

impl core::fmt::Debug for HolderInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HolderInfo")
            .field("holder_flag", &self.holder_flag)
            .field("employee_flag", &self.employee_flag)
            .field("name_gbk", &"***")
            .field("id_number", &"***")
            .field("id_type", &self.id_type)
            .finish()
    }
}

/// One EF18 transaction detail record (23 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    /// Online counter (load) or offline counter (purchase) before the transaction.
    pub counter: u16,
    /// Always `000000` in this profile.
    pub overdraft_limit: [u8; 3],
    pub amount_fen: u32,
    pub tx_type: TransactionType,
    pub terminal_id: TerminalId,
    pub date: [u8; 4],
    pub time: [u8; 3],
}

impl TransactionRecord {
    /// The 23 bytes.
    pub fn to_bytes(&self) -> [u8; EF18_RECORD_LEN] {
        let mut out = [0u8; EF18_RECORD_LEN];
        out[0..2].copy_from_slice(&self.counter.to_be_bytes());
        out[2..5].copy_from_slice(&self.overdraft_limit);
        out[5..9].copy_from_slice(&self.amount_fen.to_be_bytes());
        out[9] = self.tx_type.code();
        out[10..16].copy_from_slice(self.terminal_id.as_bytes());
        out[16..20].copy_from_slice(&self.date);
        out[20..23].copy_from_slice(&self.time);
        out
    }

    /// Decodes a record.
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        let b: [u8; EF18_RECORD_LEN] = take("EF18 record", bytes)?;
        Ok(TransactionRecord {
            counter: u16::from_be_bytes([b[0], b[1]]),
            overdraft_limit: take("overdraft", &b[2..5])?,
            amount_fen: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
            tx_type: TransactionType::from_code(b[9]).ok_or(RecordError::TransactionType(b[9]))?,
            terminal_id: TerminalId(take("terminal id", &b[10..16])?),
            date: take("date", &b[16..20])?,
            time: take("time", &b[20..23])?,
        })
    }
}

/// Entry or exit, byte 0 of a transit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitFlag {
    /// `01` entered the network.
    Entry,
    /// `02` left the network.
    Exit,
}

impl TransitFlag {
    pub const fn code(self) -> u8 {
        match self {
            TransitFlag::Entry => 0x01,
            TransitFlag::Exit => 0x02,
        }
    }
}

/// One SFI 19 transit record (48 bytes): where a metro trip entered or left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitRecord {
    pub flag: TransitFlag,
    pub line: u16,
    pub station: u16,
    pub terminal_id: TerminalId,
    pub date: BcdDate,
    pub time: BcdTime,
    pub amount_fen: u32,
}

impl TransitRecord {
    /// The 48 bytes (reserved tail zero).
    pub fn to_bytes(&self) -> [u8; TRANSIT_RECORD_LEN] {
        let mut out = [0u8; TRANSIT_RECORD_LEN];
        out[0] = self.flag.code();
        out[1..3].copy_from_slice(&self.line.to_be_bytes());
        out[3..5].copy_from_slice(&self.station.to_be_bytes());
        out[5..11].copy_from_slice(self.terminal_id.as_bytes());
        out[11..15].copy_from_slice(&self.date.to_bcd());
        out[15..18].copy_from_slice(&self.time.to_bcd());
        out[18..22].copy_from_slice(&self.amount_fen.to_be_bytes());
        out
    }

    /// Decodes a record; `Ok(None)` for a flag that is neither entry nor exit.
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>, RecordError> {
        let b: [u8; TRANSIT_RECORD_LEN] = take("transit record", bytes)?;
        let flag = match b[0] {
            0x01 => TransitFlag::Entry,
            0x02 => TransitFlag::Exit,
            _ => return Ok(None),
        };
        let bcd = |what| move |source| RecordError::Bcd { what, source };
        Ok(Some(TransitRecord {
            flag,
            line: u16::from_be_bytes([b[1], b[2]]),
            station: u16::from_be_bytes([b[3], b[4]]),
            terminal_id: TerminalId(take("terminal id", &b[5..11])?),
            date: BcdDate::from_bcd(take("date", &b[11..15])?).map_err(bcd("date"))?,
            time: BcdTime::from_bcd(take("time", &b[15..18])?).map_err(bcd("time"))?,
            amount_fen: u32::from_be_bytes([b[18], b[19], b[20], b[21]]),
        }))
    }
}
