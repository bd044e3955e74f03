//! Card production (制卡): the personalization data file a batch sends to the card bureau
//! (制卡厂), the bureau's result file coming back, a bureau emulator for tests, and the stock of
//! produced cards at service outlets.
//!
//! Everything here is pure: no clock, no database, and I/O only through the
//! [`std::io::Read`] / [`std::io::Write`] values a caller passes in. Card keys come from a
//! [`MasterKeyStore`] already wrapped under a transport key, so no card key is ever in the
//! clear on the host or in a file.
//!
//! # Framing shared by both files (personalization file version 2, result file version 1)
//!
//! UTF-8 text, one record per line, every line ended by a single LF (`\n`, no CR), fields
//! separated by `|`. No field may contain `|`, CR, LF or another control character; writers
//! refuse such values and readers reject them. A line is at most [`LINE_LEN_MAX`] bytes. Hex
//! is upper case. The last line is the trailer
//!
//! ```text
//! T|<number of body lines>|<SM3 of every byte before the trailer, 64 hex digits>
//! ```
//!
//! and nothing may follow it. The digest covers the header line and every body line with
//! their LFs, so a truncated file (no trailer, or a half line), an edited byte, a dropped,
//! added or reordered line is refused before any record is used. SM3 is unkeyed: it detects
//! damage and truncation, not a deliberate forger, who could recompute it. Against a forged
//! key the card keys' KCVs protect (the bureau checks each unwrapped key against its KCV,
//! and only the holder of the transport key can produce a wrapped value that passes);
//! authenticity of the file as a whole belongs to the transfer channel (or a later SM2
//! signature line).
//!
//! # Personalization file
//!
//! ```text
//! CCPERSO|2|<batch id>|<card count>|<key version>|<transport key>|<transport KCV>|<profile>|DPK,DLK,DTK[,DAMK-CITY][,DAMK-HEALTH][,DAMK-TRANSIT]
//! C|<index>|<card number>|<card type>|<holder name>|<ID sealed>|<start>|<expiry>|<DPK wrapped>|<DPK KCV>|<DLK wrapped>|<DLK KCV>|<DTK wrapped>|<DTK KCV>[|<DAMK wrapped>|<DAMK KCV>]...
//! ...
//! T|<card count>|<SM3>
//! ```
//!
//! - batch id: 1 to [`BATCH_ID_LEN_MAX`] characters `A-Z a-z 0-9 - _` ([`BatchId`]);
//! - card count: 1 to [`BATCH_CARDS_MAX`], equal to the number of `C` lines and to the trailer;
//! - key version: decimal 0–255, the version of the transit purchase, load and TAC master keys
//!   the card keys were diversified from;
//! - transport key: its label (`transit/transport/v1`) and its KCV (6 hex digits) under the
//!   profile cipher, so the bureau can check it holds the same transport key before it starts;
//! - profile: `3DES` (algorithm id `00`) or `SM4` (`04`) of `epurse.md` §3;
//! - the key list names the key columns of each card line, in order: always DPK, DLK, DTK
//!   (transit purchase, load and TAC keys), then the maintenance keys (DAMK) of the
//!   applications whose post-issuance changes the card must accept, in [`MAINTAINED_APPS`]
//!   order (`DAMK-CITY` from `city/maintenance/v1`, `DAMK-HEALTH` from
//!   `health/maintenance/v1`, `DAMK-TRANSIT` from `transit/maintenance/v1`, which lets the
//!   platform rewrite the card type in EF15), each present only when the master-key store
//!   holds its master.
//!
//! Card line: `index` counts from 1 and must follow the previous line's (a reordered file is
//! refused even before the digest is checked); card number 16 digits with its Luhn digit;
//! card type the EF15 code `01`–`06`; holder name as the bureau prints it on the card (1 to
//! [`HOLDER_NAME_LEN_MAX`] UTF-8 bytes; the chip's GBK limit is checked at personalization);
//! the holder's ID number sealed under the transport key (64 hex digits: the ID's ASCII
//! characters right-padded with `00` to 32 bytes — the chip's ID field, `epurse.md` EF16 —,
//! CBC with the profile cipher, IV = the card number's 8 BCD bytes followed by 8 zero bytes,
//! of which 3DES uses the first 8; the IV binds the value to its card, so a sealed ID moved to
//! another line opens to garbage the bureau refuses); start and expiry `YYYYMMDD`, expiry
//! after start; then per key `CBC_TK(DK)` (32 hex digits, see
//! [`keys::master::WrappedCardKey`]) and DK's own KCV (6 hex digits).
//!
//! The bureau writes the ID number into the chip (TRANSIT EF16 and SSSE EF06), so a card
//! leaves production complete; the social security card face carries it too. Version 1
//! carried no ID number and no DAMK (chips came out with `PENDING` in the ID field and could
//! not take post-issuance scripts); its files are refused.
//!
//! Deliberately absent: the PIN (the bureau sets the initial PIN of its profile), any key or
//! the ID number in clear, and a PIN key (a later version adds it as a key column named in the
//! header's key list).
//!
//! # Result file
//!
//! ```text
//! CCRESULT|1|<batch id>|<row count>
//! R|<card number>|OK|<chip serial, 16 hex digits>
//! R|<card number>|FAIL|<reason, 1 to FAILURE_REASON_LEN_MAX bytes>
//! T|<row count>|<SM3>
//! ```
//!
//! Framing errors (header, trailer, digest, line length, UTF-8) refuse the whole file
//! ([`FileError`]). A row that is wrong on its own is rejected with its line number and a
//! [`RowError`] while the other rows are accepted ([`read_results`]): an unknown card, a bad
//! card number, a bad serial, a card given twice or a serial given twice (both rows of a
//! duplicate are rejected: neither can be trusted over the other).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use chip::{
    BcdDate, Card, CardNumber, CardNumberError, CardType, PersonalizationRecord, TransportError,
    TransportedKey, TransportedMaintenanceKey, TransportedPurseKeys, personalize_transported,
};
use crypto::{Algorithm, Key16};
use keys::master::{KeyRef, MasterKeyError, MasterKeyStore, MasterPurpose, expect_transport};
use sm3::{Digest, Sm3};
use thiserror::Error;

use crate::lifecycle::OutletId;

/// Format version of the personalization file.
pub const PERSO_FORMAT_VERSION: u32 = 2;
/// Format version of the result file.
pub const RESULT_FORMAT_VERSION: u32 = 1;
/// First field of a personalization file.
pub const PERSO_MAGIC: &str = "CCPERSO";
/// First field of a result file.
pub const RESULT_MAGIC: &str = "CCRESULT";
/// Cards in one production batch, at most.
pub const BATCH_CARDS_MAX: u32 = 1_000_000;
/// Bytes in one line, LF included, at most.
pub const LINE_LEN_MAX: usize = 512;
/// Characters in a batch id, at most.
pub const BATCH_ID_LEN_MAX: usize = 32;
/// UTF-8 bytes of a printed holder name, at most.
pub const HOLDER_NAME_LEN_MAX: usize = 60;
/// UTF-8 bytes of a bureau failure reason, at most.
pub const FAILURE_REASON_LEN_MAX: usize = 120;
/// The purse key columns every card line starts its keys with, in order.
pub const KEY_COLUMNS: [&str; 3] = ["DPK", "DLK", "DTK"];
/// Applications whose maintenance key (DAMK) a file may carry, in column order: the key-list
/// name, the application code of its master key and the application's AID on the chip.
pub const MAINTAINED_APPS: [(&str, &str, &[u8]); 3] = [
    ("DAMK-CITY", "city", chip::image::AID_CITY),
    ("DAMK-HEALTH", "health", chip::image::AID_HEALTH),
    // Last, so files written before it (CITY and HEALTH only) still read the same.
    ("DAMK-TRANSIT", "transit", chip::image::AID_TRANSIT),
];
/// Version of the application maintenance master keys DAMKs are diversified from.
pub const MAINTENANCE_KEY_VERSION: u8 = 1;
/// Bytes of the sealed ID number field (the chip's ID field length).
pub const SEALED_ID_LEN: usize = 32;

const SEP: char = '|';
const TRAILER_TAG: &str = "T";
const CARD_TAG: &str = "C";
const ROW_TAG: &str = "R";
/// Fields of a card line before its key columns.
const CARD_FIXED_FIELDS: usize = 8;

// ---------------------------------------------------------------------------------------
// Values

/// A production batch's id, as both files carry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(String);

impl BatchId {
    /// 1 to [`BATCH_ID_LEN_MAX`] characters of `A-Z a-z 0-9 - _`.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let ok = !text.is_empty()
            && text.len() <= BATCH_ID_LEN_MAX
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(BatchId(text.to_string()))
        } else {
            Err(FieldError::BatchId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The text name of an algorithm profile in the header.
pub fn profile_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::Tdes => "3DES",
        Algorithm::Sm4 => "SM4",
    }
}

fn parse_profile(text: &str) -> Option<Algorithm> {
    match text {
        "3DES" => Some(Algorithm::Tdes),
        "SM4" => Some(Algorithm::Sm4),
        _ => None,
    }
}

/// What a batch is: the header the writer is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    pub batch_id: BatchId,
    /// Cards the batch holds; the writer refuses an iterator that yields another number.
    pub card_count: u32,
    /// Version of the transit purchase, load and TAC master keys.
    pub key_version: u8,
    /// The transport key (purpose `transport`) the card keys are wrapped under.
    pub transport: KeyRef,
    pub algorithm: Algorithm,
    /// Application codes (of [`MAINTAINED_APPS`], in its order) whose DAMK each card gets.
    pub maintained: Vec<String>,
}

impl BatchHeader {
    /// The key list of the header: purse keys, then the DAMKs of `maintained`.
    pub fn key_list(&self) -> Vec<&'static str> {
        let mut list = KEY_COLUMNS.to_vec();
        list.extend(
            MAINTAINED_APPS
                .iter()
                .filter(|(_, app, _)| self.maintained.iter().any(|m| m == app))
                .map(|(col, _, _)| *col),
        );
        list
    }

    /// The maintenance master keys of `maintained`, in column order.
    pub fn maintenance_masters(&self) -> Result<Vec<KeyRef>, MasterKeyError> {
        MAINTAINED_APPS
            .iter()
            .filter(|(_, app, _)| self.maintained.iter().any(|m| m == app))
            .map(|(_, app, _)| {
                KeyRef::new(app, MasterPurpose::Maintenance, MAINTENANCE_KEY_VERSION)
            })
            .collect()
    }

    /// The master keys the batch's card keys are diversified from, in [`KEY_COLUMNS`] order.
    pub fn masters(&self) -> [KeyRef; 3] {
        [
            KeyRef::transit(MasterPurpose::Purchase, self.key_version),
            KeyRef::transit(MasterPurpose::Load, self.key_version),
            KeyRef::transit(MasterPurpose::Tac, self.key_version),
        ]
    }
}

/// One card to produce. `Debug` masks the holder name.
#[derive(Clone, PartialEq, Eq)]
pub struct CardRecord {
    pub card_number: CardNumber,
    pub card_type: CardType,
    /// The name as the bureau prints it on the card.
    pub holder_name: String,
    /// The holder's ID number (GB 11643, or another ID of up to 32 ASCII letters and digits);
    /// the file carries it sealed under the transport key.
    pub id_number: String,
    pub start_date: BcdDate,
    pub expiry_date: BcdDate,
}

impl fmt::Debug for CardRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardRecord")
            .field("card_number", &self.card_number)
            .field("card_type", &self.card_type)
            .field("holder_name", &"***")
            .field("id_number", &"***")
            .field("start_date", &self.start_date)
            .field("expiry_date", &self.expiry_date)
            .finish()
    }
}

/// What a finished personalization file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    pub batch_id: BatchId,
    pub card_count: u32,
    /// Bytes written, trailer included.
    pub bytes: u64,
    /// The SM3 digest the trailer carries.
    pub digest: [u8; 32],
}

/// One card as read back from a personalization file: what is printed, the sealed ID number
/// and the wrapped keys. Only the holder of the transport key can open the ID
/// ([`PersoCard::open_id`]) and the keys. `Debug` masks the holder name.
#[derive(Clone, PartialEq, Eq)]
pub struct PersoCard {
    pub card_number: CardNumber,
    pub card_type: CardType,
    pub holder_name: String,
    pub sealed_id: [u8; SEALED_ID_LEN],
    pub start_date: BcdDate,
    pub expiry_date: BcdDate,
    pub keys: TransportedPurseKeys,
    /// The DAMKs the header's key list names, with their applications' AIDs.
    pub maintenance: Vec<TransportedMaintenanceKey>,
}

impl fmt::Debug for PersoCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersoCard")
            .field("card_number", &self.card_number)
            .field("card_type", &self.card_type)
            .field("holder_name", &"***")
            .field("start_date", &self.start_date)
            .field("expiry_date", &self.expiry_date)
            .finish_non_exhaustive()
    }
}

/// The IV that binds a sealed ID number to its card: the card number's BCD, then zeros.
pub fn id_iv(card: CardNumber) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&card.to_bcd());
    iv
}

/// The ID number as the chip's ID field holds it: ASCII right-padded with zeros.
fn id_field(id: &str) -> [u8; SEALED_ID_LEN] {
    let mut out = [0u8; SEALED_ID_LEN];
    out[..id.len()].copy_from_slice(id.as_bytes());
    out
}

impl PersoCard {
    /// Opens the sealed ID number with the transport key (the bureau's side). Refuses a value
    /// that does not open to an ID number: a wrong transport key, or a value moved from another
    /// card's line.
    pub fn open_id(&self, alg: Algorithm, transport_key: &Key16) -> Result<String, FieldError> {
        let clear = crypto::cbc_decrypt(
            alg,
            transport_key,
            &id_iv(self.card_number),
            &self.sealed_id,
        )
        .map_err(|_| FieldError::IdNumber)?;
        let end = clear.iter().position(|&b| b == 0).unwrap_or(clear.len());
        let id = std::str::from_utf8(&clear[..end]).map_err(|_| FieldError::IdNumber)?;
        if clear[end..].iter().any(|&b| b != 0) {
            return Err(FieldError::IdNumber);
        }
        check_id(id)?;
        Ok(id.to_string())
    }
}

/// A personalization file, fully validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersoFile {
    pub header: BatchHeader,
    /// KCV of the transport key under the batch's profile, as the header states it.
    pub transport_kcv: [u8; 3],
    pub cards: Vec<PersoCard>,
    pub digest: [u8; 32],
}

/// A chip serial number as the bureau reads it from the chip (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChipSerial(pub [u8; 8]);

impl ChipSerial {
    /// Exactly 16 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let bytes: [u8; 8] = hex::decode(text).ok()?.try_into().ok()?;
        Some(ChipSerial(bytes))
    }
}

impl fmt::Display for ChipSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

// ---------------------------------------------------------------------------------------
// Errors

/// Why one field value is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    #[error("batch id must be 1 to {BATCH_ID_LEN_MAX} characters A-Z a-z 0-9 - _")]
    BatchId,
    #[error("holder name is empty")]
    NameEmpty,
    #[error("holder name is {0} bytes, at most {HOLDER_NAME_LEN_MAX}")]
    NameTooLong(usize),
    #[error("holder name contains '|' or a control character")]
    NameForbiddenChar,
    #[error("ID number must be 1 to 32 ASCII letters and digits")]
    IdNumber,
    #[error("expiry date {expiry} is not after start date {start}")]
    ExpiryNotAfterStart { start: BcdDate, expiry: BcdDate },
    #[error(
        "failure reason must be 1 to {FAILURE_REASON_LEN_MAX} bytes without '|' or control characters"
    )]
    Reason,
}

fn check_text(text: &str) -> bool {
    !text.chars().any(|c| c == SEP || c.is_control())
}

fn check_name(name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::NameEmpty);
    }
    if name.len() > HOLDER_NAME_LEN_MAX {
        return Err(FieldError::NameTooLong(name.len()));
    }
    if !check_text(name) {
        return Err(FieldError::NameForbiddenChar);
    }
    Ok(())
}

fn check_id(id: &str) -> Result<(), FieldError> {
    if id.is_empty() || id.len() > SEALED_ID_LEN || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(FieldError::IdNumber);
    }
    Ok(())
}

fn check_printed(name: &str, start: BcdDate, expiry: BcdDate) -> Result<(), FieldError> {
    check_name(name)?;
    if expiry <= start {
        return Err(FieldError::ExpiryNotAfterStart { start, expiry });
    }
    Ok(())
}

fn check_record(r: &CardRecord) -> Result<(), FieldError> {
    check_printed(&r.holder_name, r.start_date, r.expiry_date)?;
    check_id(&r.id_number)
}

fn check_reason(reason: &str) -> Result<(), FieldError> {
    if reason.is_empty() || reason.len() > FAILURE_REASON_LEN_MAX || !check_text(reason) {
        return Err(FieldError::Reason);
    }
    Ok(())
}

/// Why a personalization file could not be written. The caller discards what was written.
#[derive(Debug, Error)]
pub enum WriteError {
    #[error("writing: {0}")]
    Io(#[from] io::Error),
    #[error("master-key store: {0}")]
    Keys(#[from] MasterKeyError),
    #[error("transport key {key} is not in the store or has no {profile} check value")]
    TransportKeyUnavailable { key: KeyRef, profile: &'static str },
    #[error("a batch holds 1 to {BATCH_CARDS_MAX} cards, the header declares {0}")]
    CardCountOutOfRange(u32),
    #[error("the header declares {declared} cards, more were given")]
    TooManyCards { declared: u32 },
    #[error("the header declares {declared} cards, {actual} were given")]
    TooFewCards { declared: u32, actual: u32 },
    #[error("card {card}: {reason}")]
    InvalidCard {
        card: CardNumber,
        reason: FieldError,
    },
    #[error("card {0} appears twice in the batch")]
    DuplicateCard(CardNumber),
}

/// Why a line of a personalization file is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CardLineError {
    #[error("not a card line (tag or {0} fields expected)")]
    Malformed(usize),
    #[error("sealed ID number is not 64 hex digits")]
    SealedId,
    #[error("index {found}, expected {expected} (lines reordered, dropped or added)")]
    Index { expected: u32, found: String },
    #[error("card number: {0}")]
    CardNumber(#[from] CardNumberError),
    #[error("card type {0:?} is not a code 01 to 06")]
    CardType(String),
    #[error("{field} date {text:?} is not YYYYMMDD")]
    Date { field: &'static str, text: String },
    #[error("{0}")]
    Field(#[from] FieldError),
    #[error("{key} wrapped value is not 32 hex digits")]
    Wrapped { key: &'static str },
    #[error("{key} KCV is not 6 hex digits")]
    Kcv { key: &'static str },
    #[error("card {0} appears twice")]
    Duplicate(CardNumber),
}

/// Why a file (either kind) is refused as a whole.
#[derive(Debug, Error)]
pub enum FileError {
    #[error("reading: {0}")]
    Io(#[from] io::Error),
    #[error("the file is empty")]
    Empty,
    #[error("line {line} is longer than {LINE_LEN_MAX} bytes")]
    LineTooLong { line: u64 },
    #[error("line {line} is not UTF-8")]
    NotUtf8 { line: u64 },
    #[error("line {line} does not end with LF: the file is truncated")]
    Truncated { line: u64 },
    #[error("not a {expected} file")]
    WrongKind { expected: &'static str },
    #[error("format version {0:?} is not supported")]
    UnsupportedVersion(String),
    #[error("header field {0} is missing or invalid")]
    Header(&'static str),
    #[error("the file ends without a trailer: it is truncated")]
    TrailerMissing,
    #[error("line {line}: the trailer is malformed")]
    TrailerMalformed { line: u64 },
    #[error("the trailer counts {trailer} lines, the file has {found}")]
    TrailerCount { trailer: String, found: u64 },
    #[error("the SM3 digest does not match the content: the file was altered")]
    DigestMismatch,
    #[error("line {line}: data after the trailer")]
    DataAfterTrailer { line: u64 },
    #[error("more than {0} lines")]
    TooManyLines(u32),
    #[error("the header declares {declared} records, the file has {found}")]
    CountMismatch { declared: u32, found: u64 },
    #[error("line {line}: {reason}")]
    CardLine { line: u64, reason: CardLineError },
    #[error("the result file is for batch {found}, not {expected}")]
    BatchMismatch { expected: BatchId, found: BatchId },
}

// ---------------------------------------------------------------------------------------
// Framing

fn hex_upper_into(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    hex::decode(text).ok()?.try_into().ok()
}

/// Writes lines, hashing each, and the trailer.
struct FrameWriter<W: Write> {
    out: BufWriter<W>,
    hasher: Sm3,
    body_lines: u64,
    bytes: u64,
}

impl<W: Write> FrameWriter<W> {
    fn new(w: W) -> Self {
        FrameWriter {
            out: BufWriter::with_capacity(64 * 1024, w),
            hasher: Sm3::new(),
            body_lines: 0,
            bytes: 0,
        }
    }

    /// Writes `line` (without LF) and its LF into the digest and the output.
    fn line(&mut self, line: &str) -> io::Result<()> {
        // Writers build lines from validated fields, so this bound holds by construction.
        assert!(line.len() < LINE_LEN_MAX, "line longer than LINE_LEN_MAX");
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.bytes += line.len() as u64 + 1;
        Ok(())
    }

    fn body(&mut self, line: &str) -> io::Result<()> {
        self.line(line)?;
        self.body_lines += 1;
        Ok(())
    }

    fn finish(mut self) -> io::Result<([u8; 32], u64)> {
        let digest: [u8; 32] = self.hasher.finalize_reset().into();
        let mut trailer = format!("{TRAILER_TAG}{SEP}{}{SEP}", self.body_lines);
        hex_upper_into(&mut trailer, &digest);
        trailer.push('\n');
        self.out.write_all(trailer.as_bytes())?;
        self.out.flush()?;
        Ok((digest, self.bytes + trailer.len() as u64))
    }
}

/// Reads bounded lines, hashing everything before the trailer and checking the trailer.
struct FrameReader<R: Read> {
    input: BufReader<R>,
    buf: Vec<u8>,
    line_no: u64,
    hasher: Sm3,
    body_lines: u64,
    body_lines_max: u32,
}

/// A line of a framed file.
enum Frame {
    Body {
        line: u64,
        text: String,
    },
    /// The trailer matched and nothing follows it.
    End {
        digest: [u8; 32],
    },
}

impl<R: Read> FrameReader<R> {
    fn new(r: R, body_lines_max: u32) -> Self {
        FrameReader {
            input: BufReader::with_capacity(64 * 1024, r),
            buf: Vec::with_capacity(LINE_LEN_MAX + 1),
            line_no: 0,
            hasher: Sm3::new(),
            body_lines: 0,
            body_lines_max,
        }
    }

    /// The next raw line without its LF, or `None` at end of input.
    fn raw_line(&mut self) -> Result<Option<String>, FileError> {
        self.buf.clear();
        let n = (&mut self.input)
            .take(LINE_LEN_MAX as u64)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        let line = self.line_no;
        if self.buf.last() != Some(&b'\n') {
            return Err(if n >= LINE_LEN_MAX {
                FileError::LineTooLong { line }
            } else {
                FileError::Truncated { line }
            });
        }
        let text = std::str::from_utf8(&self.buf[..n - 1])
            .map_err(|_| FileError::NotUtf8 { line })?
            .to_string();
        Ok(Some(text))
    }

    /// The header line's fields, hashed.
    fn header(&mut self) -> Result<Vec<String>, FileError> {
        let text = self.raw_line()?.ok_or(FileError::Empty)?;
        self.hasher.update(text.as_bytes());
        self.hasher.update(b"\n");
        Ok(text.split(SEP).map(str::to_string).collect())
    }

    fn next(&mut self) -> Result<Frame, FileError> {
        let Some(text) = self.raw_line()? else {
            return Err(FileError::TrailerMissing);
        };
        let line = self.line_no;
        if text.starts_with("T|") {
            let mut parts = text.split(SEP);
            let (Some(_), Some(count), Some(digest_hex), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(FileError::TrailerMalformed { line });
            };
            let digest = parse_hex::<32>(digest_hex).ok_or(FileError::TrailerMalformed { line })?;
            if count.parse::<u64>().ok() != Some(self.body_lines) {
                return Err(FileError::TrailerCount {
                    trailer: count.to_string(),
                    found: self.body_lines,
                });
            }
            let actual: [u8; 32] = self.hasher.finalize_reset().into();
            if actual != digest {
                return Err(FileError::DigestMismatch);
            }
            let mut rest = [0u8; 1];
            if self.input.read(&mut rest)? != 0 {
                return Err(FileError::DataAfterTrailer { line: line + 1 });
            }
            return Ok(Frame::End { digest });
        }
        if self.body_lines >= u64::from(self.body_lines_max) {
            return Err(FileError::TooManyLines(self.body_lines_max));
        }
        self.hasher.update(text.as_bytes());
        self.hasher.update(b"\n");
        self.body_lines += 1;
        Ok(Frame::Body { line, text })
    }
}

fn check_version(
    fields: &[String],
    magic: &str,
    version: u32,
    kind: &'static str,
) -> Result<(), FileError> {
    if fields.first().map(String::as_str) != Some(magic) {
        return Err(FileError::WrongKind { expected: kind });
    }
    match fields.get(1) {
        Some(v) if v == &version.to_string() => Ok(()),
        Some(v) => Err(FileError::UnsupportedVersion(v.clone())),
        None => Err(FileError::Header("version")),
    }
}

fn parse_count(text: Option<&String>, max: u32) -> Result<u32, FileError> {
    text.and_then(|t| t.parse::<u32>().ok())
        .filter(|n| (1..=max).contains(n))
        .ok_or(FileError::Header("count"))
}

// ---------------------------------------------------------------------------------------
// Personalization file: writer

/// Writes the personalization file of a batch: header, one line per card with its DPK, DLK
/// and DTK diversified and wrapped under the transport key by `store`, and the trailer.
///
/// `cards` must yield exactly `header.card_count` cards, each card number once. On an error
/// the output is incomplete (it has no trailer, so a reader refuses it) and must be discarded.
pub fn write_batch<W: Write>(
    w: W,
    header: &BatchHeader,
    cards: impl Iterator<Item = CardRecord>,
    store: &dyn MasterKeyStore,
) -> Result<BatchSummary, WriteError> {
    if !(1..=BATCH_CARDS_MAX).contains(&header.card_count) {
        return Err(WriteError::CardCountOutOfRange(header.card_count));
    }
    let alg = header.algorithm;
    expect_transport(&header.transport)?;
    let transport_kcv = store
        .list()?
        .into_iter()
        .find(|info| info.key == header.transport)
        .and_then(|info| info.kcv(alg))
        .ok_or_else(|| WriteError::TransportKeyUnavailable {
            key: header.transport.clone(),
            profile: profile_name(alg),
        })?;
    let mut masters = header.masters().to_vec();
    masters.extend(header.maintenance_masters()?);

    let mut out = FrameWriter::new(w);
    let mut line = String::with_capacity(LINE_LEN_MAX);
    write!(
        line,
        "{PERSO_MAGIC}|{PERSO_FORMAT_VERSION}|{}|{}|{}|{}|",
        header.batch_id, header.card_count, header.key_version, header.transport
    )
    .map_err(io::Error::other)?;
    hex_upper_into(&mut line, &transport_kcv);
    write!(
        line,
        "|{}|{}",
        profile_name(alg),
        header.key_list().join(",")
    )
    .map_err(io::Error::other)?;
    out.line(&line)?;

    let mut seen: HashSet<CardNumber> = HashSet::with_capacity(header.card_count as usize);
    let mut index: u32 = 0;
    for card in cards {
        if index == header.card_count {
            return Err(WriteError::TooManyCards {
                declared: header.card_count,
            });
        }
        index += 1;
        check_record(&card).map_err(|reason| WriteError::InvalidCard {
            card: card.card_number,
            reason,
        })?;
        if !seen.insert(card.card_number) {
            return Err(WriteError::DuplicateCard(card.card_number));
        }
        let div = card.card_number.div_data();
        line.clear();
        write!(
            line,
            "{CARD_TAG}|{index}|{}|{:02X}|{}|",
            card.card_number,
            card.card_type.code(),
            card.holder_name
        )
        .map_err(io::Error::other)?;
        let sealed = store.encrypt_for_transport(
            &header.transport,
            alg,
            &id_iv(card.card_number),
            &id_field(&card.id_number),
        )?;
        hex_upper_into(&mut line, &sealed);
        line.push(SEP);
        hex_upper_into(&mut line, &card.start_date.to_bcd());
        line.push(SEP);
        hex_upper_into(&mut line, &card.expiry_date.to_bcd());
        for master in &masters {
            let wrapped = store.diversify_wrapped(master, alg, &div, &header.transport)?;
            line.push(SEP);
            hex_upper_into(&mut line, &wrapped.wrapped);
            line.push(SEP);
            hex_upper_into(&mut line, &wrapped.kcv);
        }
        out.body(&line)?;
    }
    if index != header.card_count {
        return Err(WriteError::TooFewCards {
            declared: header.card_count,
            actual: index,
        });
    }
    let (digest, bytes) = out.finish()?;
    Ok(BatchSummary {
        batch_id: header.batch_id.clone(),
        card_count: header.card_count,
        bytes,
        digest,
    })
}

// ---------------------------------------------------------------------------------------
// Personalization file: reader

fn parse_perso_header(fields: &[String]) -> Result<(BatchHeader, [u8; 3]), FileError> {
    check_version(fields, PERSO_MAGIC, PERSO_FORMAT_VERSION, "personalization")?;
    if fields.len() != 9 {
        return Err(FileError::Header("field count"));
    }
    let batch_id = BatchId::parse(&fields[2]).map_err(|_| FileError::Header("batch id"))?;
    let card_count = parse_count(fields.get(3), BATCH_CARDS_MAX)?;
    let key_version = fields[4]
        .parse::<u8>()
        .map_err(|_| FileError::Header("key version"))?;
    let transport = KeyRef::parse(&fields[5])
        .ok()
        .filter(|k| k.purpose() == MasterPurpose::Transport)
        .ok_or(FileError::Header("transport key"))?;
    let transport_kcv = parse_hex::<3>(&fields[6]).ok_or(FileError::Header("transport KCV"))?;
    let algorithm = parse_profile(&fields[7]).ok_or(FileError::Header("profile"))?;
    let maintained = parse_key_list(&fields[8]).ok_or(FileError::Header("key list"))?;
    Ok((
        BatchHeader {
            batch_id,
            card_count,
            key_version,
            transport,
            algorithm,
            maintained,
        },
        transport_kcv,
    ))
}

/// The maintained applications a key list names: the purse keys, then known DAMK columns in
/// [`MAINTAINED_APPS`] order, each at most once.
fn parse_key_list(text: &str) -> Option<Vec<String>> {
    let cols: Vec<&str> = text.split(',').collect();
    if cols.len() < KEY_COLUMNS.len() || cols[..KEY_COLUMNS.len()] != KEY_COLUMNS {
        return None;
    }
    let mut apps = Vec::new();
    let mut next = 0;
    for col in &cols[KEY_COLUMNS.len()..] {
        let at = MAINTAINED_APPS[next..]
            .iter()
            .position(|(c, _, _)| c == col)?
            + next;
        apps.push(MAINTAINED_APPS[at].1.to_string());
        next = at + 1;
    }
    Some(apps)
}

fn parse_card_line(
    text: &str,
    expected_index: u32,
    header: &BatchHeader,
) -> Result<PersoCard, CardLineError> {
    let f: Vec<&str> = text.split(SEP).collect();
    let key_names = header.key_list();
    let fields = CARD_FIXED_FIELDS + 2 * key_names.len();
    if f.len() != fields || f[0] != CARD_TAG {
        return Err(CardLineError::Malformed(fields));
    }
    if f[1].parse::<u32>().ok() != Some(expected_index) {
        return Err(CardLineError::Index {
            expected: expected_index,
            found: f[1].to_string(),
        });
    }
    let card_number = CardNumber::parse(f[2])?;
    let card_type = parse_hex::<1>(f[3])
        .and_then(|[code]| CardType::from_code(code).ok())
        .ok_or_else(|| CardLineError::CardType(f[3].to_string()))?;
    let date = |field: &'static str, text: &str| {
        BcdDate::parse(text).map_err(|_| CardLineError::Date {
            field,
            text: text.to_string(),
        })
    };
    let holder_name = f[4].to_string();
    let sealed_id = parse_hex::<SEALED_ID_LEN>(f[5]).ok_or(CardLineError::SealedId)?;
    let start_date = date("start", f[6])?;
    let expiry_date = date("expiry", f[7])?;
    check_printed(&holder_name, start_date, expiry_date)?;
    let key = |i: usize| -> Result<TransportedKey, CardLineError> {
        let name = key_names[i];
        let at = CARD_FIXED_FIELDS + 2 * i;
        Ok(TransportedKey {
            wrapped: parse_hex::<16>(f[at]).ok_or(CardLineError::Wrapped { key: name })?,
            kcv: parse_hex::<3>(f[at + 1]).ok_or(CardLineError::Kcv { key: name })?,
        })
    };
    let maintenance = MAINTAINED_APPS
        .iter()
        .filter(|(_, app, _)| header.maintained.iter().any(|m| m == app))
        .enumerate()
        .map(|(i, (_, _, aid))| {
            Ok(TransportedMaintenanceKey {
                aid: aid.to_vec(),
                key: key(KEY_COLUMNS.len() + i)?,
            })
        })
        .collect::<Result<Vec<_>, CardLineError>>()?;
    Ok(PersoCard {
        card_number,
        card_type,
        holder_name,
        sealed_id,
        start_date,
        expiry_date,
        keys: TransportedPurseKeys {
            dpk: key(0)?,
            dlk: key(1)?,
            dtk: key(2)?,
        },
        maintenance,
    })
}

/// Reads and validates a whole personalization file: header, every card line, counts and the
/// trailer's digest. Returns nothing unless all of it holds.
pub fn read_batch<R: Read>(r: R) -> Result<PersoFile, FileError> {
    let mut frames = FrameReader::new(r, BATCH_CARDS_MAX);
    let (header, transport_kcv) = parse_perso_header(&frames.header()?)?;
    // No more card lines than the header declares are even read.
    frames.body_lines_max = header.card_count;
    let mut cards: Vec<PersoCard> = Vec::with_capacity(header.card_count.min(100_000) as usize);
    let mut seen: HashSet<CardNumber> = HashSet::new();
    loop {
        match frames.next()? {
            Frame::Body { line, text } => {
                let card_line = |reason| FileError::CardLine { line, reason };
                let expected = u32::try_from(cards.len() + 1)
                    .map_err(|_| FileError::TooManyLines(BATCH_CARDS_MAX))?;
                let card = parse_card_line(&text, expected, &header).map_err(card_line)?;
                if !seen.insert(card.card_number) {
                    return Err(card_line(CardLineError::Duplicate(card.card_number)));
                }
                cards.push(card);
            }
            Frame::End { digest } => {
                if cards.len() as u64 != u64::from(header.card_count) {
                    return Err(FileError::CountMismatch {
                        declared: header.card_count,
                        found: cards.len() as u64,
                    });
                }
                return Ok(PersoFile {
                    header,
                    transport_kcv,
                    cards,
                    digest,
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Result file

/// What the bureau reports for one card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Produced: the chip's serial.
    Produced(ChipSerial),
    /// Not produced, with the bureau's reason.
    Failed(String),
}

/// One row of a result file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    pub card_number: CardNumber,
    pub outcome: Outcome,
}

/// Writes a result file (the bureau's side; the emulator uses it).
pub fn write_results<W: Write>(
    w: W,
    batch_id: &BatchId,
    rows: &[ResultRow],
) -> Result<[u8; 32], ResultWriteError> {
    let count = u32::try_from(rows.len())
        .ok()
        .filter(|n| (1..=BATCH_CARDS_MAX).contains(n))
        .ok_or(ResultWriteError::RowCount(rows.len()))?;
    let mut out = FrameWriter::new(w);
    out.line(&format!(
        "{RESULT_MAGIC}|{RESULT_FORMAT_VERSION}|{batch_id}|{count}"
    ))?;
    for row in rows {
        let line = match &row.outcome {
            Outcome::Produced(serial) => format!("{ROW_TAG}|{}|OK|{serial}", row.card_number),
            Outcome::Failed(reason) => {
                check_reason(reason).map_err(|_| ResultWriteError::Reason(row.card_number))?;
                format!("{ROW_TAG}|{}|FAIL|{reason}", row.card_number)
            }
        };
        out.body(&line)?;
    }
    Ok(out.finish()?.0)
}

/// Why a result file could not be written.
#[derive(Debug, Error)]
pub enum ResultWriteError {
    #[error("writing: {0}")]
    Io(#[from] io::Error),
    #[error("a result file holds 1 to {BATCH_CARDS_MAX} rows, not {0}")]
    RowCount(usize),
    #[error(
        "card {0}: the failure reason must be 1 to {FAILURE_REASON_LEN_MAX} bytes without '|' or control characters"
    )]
    Reason(CardNumber),
}

/// Why one row of a result file is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RowError {
    #[error("not a result row (`R|card|OK|serial` or `R|card|FAIL|reason`)")]
    Malformed,
    #[error("card number: {0}")]
    BadCardNumber(CardNumberError),
    #[error("card {0} is not in this batch")]
    UnknownCard(CardNumber),
    #[error("serial {0:?} is not 16 hex digits")]
    BadSerial(String),
    #[error("{0}")]
    BadReason(FieldError),
    #[error("card {card} is also reported on line {other_line}")]
    DuplicateCard { card: CardNumber, other_line: u64 },
    #[error("serial {serial} is also reported on line {other_line}")]
    DuplicateSerial { serial: ChipSerial, other_line: u64 },
}

/// A rejected row: its line number in the file (the header is line 1) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReject {
    pub line: u64,
    pub reason: RowError,
}

/// An accepted row with its line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedRow {
    pub line: u64,
    pub row: ResultRow,
}

/// The result of importing a result file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultImport {
    pub batch_id: BatchId,
    /// Rows accepted, in file order.
    pub accepted: Vec<AcceptedRow>,
    pub rejects: Vec<RowReject>,
    /// Cards of the batch with no accepted row (never reported, or only in rejected rows).
    pub unresolved: Vec<CardNumber>,
}

impl ResultImport {
    /// The produced cards and their serials.
    pub fn produced(&self) -> impl Iterator<Item = (CardNumber, ChipSerial)> + '_ {
        self.accepted.iter().filter_map(|a| match a.row.outcome {
            Outcome::Produced(s) => Some((a.row.card_number, s)),
            Outcome::Failed(_) => None,
        })
    }
}

fn parse_row(text: &str, batch: &HashSet<CardNumber>) -> Result<ResultRow, RowError> {
    let f: Vec<&str> = text.split(SEP).collect();
    if f.len() != 4 || f[0] != ROW_TAG {
        return Err(RowError::Malformed);
    }
    let card_number = CardNumber::parse(f[1]).map_err(RowError::BadCardNumber)?;
    if !batch.contains(&card_number) {
        return Err(RowError::UnknownCard(card_number));
    }
    let outcome = match f[2] {
        "OK" => Outcome::Produced(
            ChipSerial::parse(f[3]).ok_or_else(|| RowError::BadSerial(f[3].to_string()))?,
        ),
        "FAIL" => {
            check_reason(f[3]).map_err(RowError::BadReason)?;
            Outcome::Failed(f[3].to_string())
        }
        _ => return Err(RowError::Malformed),
    };
    Ok(ResultRow {
        card_number,
        outcome,
    })
}

/// Reads the bureau's result file for batch `batch_id` holding `cards`. Framing errors refuse
/// the file; rows wrong on their own are returned as rejects beside the accepted rows.
pub fn read_results<R: Read>(
    r: R,
    batch_id: &BatchId,
    cards: &[CardNumber],
) -> Result<ResultImport, FileError> {
    let mut frames = FrameReader::new(r, BATCH_CARDS_MAX);
    let header = frames.header()?;
    check_version(&header, RESULT_MAGIC, RESULT_FORMAT_VERSION, "result")?;
    if header.len() != 4 {
        return Err(FileError::Header("field count"));
    }
    let found = BatchId::parse(&header[2]).map_err(|_| FileError::Header("batch id"))?;
    if &found != batch_id {
        return Err(FileError::BatchMismatch {
            expected: batch_id.clone(),
            found,
        });
    }
    let declared = parse_count(header.get(3), BATCH_CARDS_MAX)?;
    frames.body_lines_max = declared;
    let batch: HashSet<CardNumber> = cards.iter().copied().collect();

    // First pass: every row on its own. The digest is checked before any row is used.
    let mut parsed: Vec<(u64, Result<ResultRow, RowError>)> = Vec::new();
    while let Frame::Body { line, text } = frames.next()? {
        parsed.push((line, parse_row(&text, &batch)));
    }
    if parsed.len() as u64 != u64::from(declared) {
        return Err(FileError::CountMismatch {
            declared,
            found: parsed.len() as u64,
        });
    }

    // Second pass: a card or a serial on more than one row rejects all those rows.
    let mut card_lines: HashMap<CardNumber, Vec<u64>> = HashMap::new();
    let mut serial_lines: HashMap<ChipSerial, Vec<u64>> = HashMap::new();
    for (line, row) in &parsed {
        if let Ok(row) = row {
            card_lines.entry(row.card_number).or_default().push(*line);
            if let Outcome::Produced(s) = row.outcome {
                serial_lines.entry(s).or_default().push(*line);
            }
        }
    }
    let other = |lines: &[u64], me: u64| lines.iter().copied().find(|l| *l != me);
    let mut accepted = Vec::new();
    let mut rejects = Vec::new();
    let mut resolved: HashSet<CardNumber> = HashSet::new();
    for (line, row) in parsed {
        let verdict = row.and_then(|row| {
            if let Some(other_line) = card_lines
                .get(&row.card_number)
                .and_then(|ls| other(ls, line))
            {
                return Err(RowError::DuplicateCard {
                    card: row.card_number,
                    other_line,
                });
            }
            if let Outcome::Produced(serial) = row.outcome
                && let Some(other_line) = serial_lines.get(&serial).and_then(|ls| other(ls, line))
            {
                return Err(RowError::DuplicateSerial { serial, other_line });
            }
            Ok(row)
        });
        match verdict {
            Ok(row) => {
                resolved.insert(row.card_number);
                accepted.push(AcceptedRow { line, row });
            }
            Err(reason) => rejects.push(RowReject { line, reason }),
        }
    }
    let unresolved = cards
        .iter()
        .copied()
        .filter(|c| !resolved.contains(c))
        .collect();
    Ok(ResultImport {
        batch_id: found,
        accepted,
        rejects,
        unresolved,
    })
}

// ---------------------------------------------------------------------------------------
// Bureau emulator

/// How the emulated bureau works. `Debug` masks the transport key and the PIN.
#[derive(Clone)]
pub struct BureauConfig {
    /// The transport key the bureau received by key ceremony.
    pub transport_key: Key16,
    /// Serial of the first chip; the next chips count up from it.
    pub serial_first: u64,
    /// The initial PIN the bureau sets.
    pub initial_pin: String,
    /// Cards to report as failed, with the reason (a spoiled print, a bad chip).
    pub fail: Vec<(CardNumber, String)>,
}

impl fmt::Debug for BureauConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BureauConfig")
            .field("transport_key", &self.transport_key)
            .field("serial_first", &self.serial_first)
            .field("initial_pin", &"***")
            .field("fail", &self.fail)
            .finish()
    }
}

/// A card the emulated bureau produced.
#[derive(Debug, Clone)]
pub struct ProducedCard {
    pub card_number: CardNumber,
    pub serial: ChipSerial,
    pub card: Card,
}

/// What one emulated production run made.
#[derive(Debug, Clone)]
pub struct BureauRun {
    pub batch_id: BatchId,
    pub produced: Vec<ProducedCard>,
    pub failed: Vec<(CardNumber, String)>,
}

/// Why the emulated bureau refused a whole file.
#[derive(Debug, Error)]
pub enum BureauError {
    #[error("personalization file: {0}")]
    File(#[from] FileError),
    #[error("the header's transport key KCV does not match the bureau's transport key")]
    TransportKeyMismatch,
    #[error("result file: {0}")]
    Write(#[from] ResultWriteError),
}

/// The card bureau, emulated for tests and demos: reads a personalization file, checks its
/// transport key against the header's KCV, personalizes each card with
/// [`personalize_transported`] (which unwraps and KCV-checks every key), and writes a result
/// file with one row per card: the chip serial, or the reason it failed.
pub fn emulate_bureau<R: Read, W: Write>(
    personalization: R,
    config: &BureauConfig,
    results: W,
) -> Result<BureauRun, BureauError> {
    let file = read_batch(personalization)?;
    let alg = file.header.algorithm;
    if config.transport_key.kcv(alg) != file.transport_kcv {
        return Err(BureauError::TransportKeyMismatch);
    }
    let forced: HashMap<CardNumber, &String> = config.fail.iter().map(|(c, r)| (*c, r)).collect();
    let mut rows = Vec::with_capacity(file.cards.len());
    let mut produced = Vec::new();
    let mut failed = Vec::new();
    let mut serial = config.serial_first;
    for card in &file.cards {
        let number = card.card_number;
        let outcome = if let Some(reason) = forced.get(&number) {
            Err((*reason).clone())
        } else {
            card.open_id(alg, &config.transport_key)
                .map_err(|e| format!("sealed ID number: {e}"))
                .and_then(|id_number| {
                    let record = PersonalizationRecord {
                        card_number: number,
                        holder_name: card.holder_name.clone(),
                        id_number,
                        card_type: card.card_type,
                        start_date: card.start_date,
                        expiry_date: card.expiry_date,
                        algorithm: alg,
                        employee: card.card_type == CardType::Employee,
                        pin: config.initial_pin.clone(),
                        rng_seed: serial,
                    };
                    personalize_transported(
                        &record,
                        &card.keys,
                        &card.maintenance,
                        &config.transport_key,
                    )
                    .map_err(|e: TransportError| e.to_string())
                })
        };
        match outcome {
            Ok(chip_card) => {
                let s = ChipSerial(serial.to_be_bytes());
                serial = serial.wrapping_add(1);
                rows.push(ResultRow {
                    card_number: number,
                    outcome: Outcome::Produced(s),
                });
                produced.push(ProducedCard {
                    card_number: number,
                    serial: s,
                    card: chip_card,
                });
            }
            Err(reason) => {
                let mut reason: String = reason
                    .chars()
                    .map(|c| if c == SEP || c.is_control() { ' ' } else { c })
                    .collect();
                while reason.len() > FAILURE_REASON_LEN_MAX {
                    reason.pop();
                }
                if reason.is_empty() {
                    reason.push_str("failed");
                }
                rows.push(ResultRow {
                    card_number: number,
                    outcome: Outcome::Failed(reason.clone()),
                });
                failed.push((number, reason));
            }
        }
    }
    write_results(results, &file.header.batch_id, &rows)?;
    Ok(BureauRun {
        batch_id: file.header.batch_id,
        produced,
        failed,
    })
}

// ---------------------------------------------------------------------------------------
// Outlet stock

/// Why a stock movement is refused. Nothing changes when one is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StockError {
    #[error("card {card} is already in stock at outlet {}", outlet.0)]
    AlreadyInStock { card: CardNumber, outlet: OutletId },
    #[error("card {0} was already issued")]
    AlreadyIssued(CardNumber),
    #[error("card {0} is given twice in one delivery")]
    DuplicateInDelivery(CardNumber),
    #[error("card {card} is not in stock at outlet {}", outlet.0)]
    NotInStock { card: CardNumber, outlet: OutletId },
}

/// Produced cards held at service outlets (网点库存): delivered, moved between outlets,
/// issued from stock. A card is at most at one outlet, and an issued card never comes back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutletStock {
    at: BTreeMap<CardNumber, OutletId>,
    by_outlet: BTreeMap<OutletId, BTreeSet<CardNumber>>,
    issued: BTreeSet<CardNumber>,
}

impl OutletStock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivers produced cards to `outlet`, all or none; returns the outlet's new stock.
    pub fn deliver(
        &mut self,
        outlet: OutletId,
        cards: impl IntoIterator<Item = CardNumber>,
    ) -> Result<usize, StockError> {
        let mut delivery = BTreeSet::new();
        for card in cards {
            if self.issued.contains(&card) {
                return Err(StockError::AlreadyIssued(card));
            }
            if let Some(&at) = self.at.get(&card) {
                return Err(StockError::AlreadyInStock { card, outlet: at });
            }
            if !delivery.insert(card) {
                return Err(StockError::DuplicateInDelivery(card));
            }
        }
        for &card in &delivery {
            self.at.insert(card, outlet);
        }
        let stock = self.by_outlet.entry(outlet).or_default();
        stock.extend(delivery);
        Ok(stock.len())
    }

    /// Moves a card from one outlet's stock to another's.
    pub fn transfer(
        &mut self,
        card: CardNumber,
        from: OutletId,
        to: OutletId,
    ) -> Result<(), StockError> {
        self.take(card, from)?;
        self.at.insert(card, to);
        self.by_outlet.entry(to).or_default().insert(card);
        Ok(())
    }

    /// Issues a card from `outlet`'s stock to its holder: the stock goes down by one.
    pub fn issue(&mut self, outlet: OutletId, card: CardNumber) -> Result<(), StockError> {
        self.take(card, outlet)?;
        self.issued.insert(card);
        Ok(())
    }

    fn take(&mut self, card: CardNumber, outlet: OutletId) -> Result<(), StockError> {
        if self.issued.contains(&card) {
            return Err(StockError::AlreadyIssued(card));
        }
        if self.at.get(&card) != Some(&outlet) {
            return Err(StockError::NotInStock { card, outlet });
        }
        self.at.remove(&card);
        if let Some(stock) = self.by_outlet.get_mut(&outlet) {
            stock.remove(&card);
        }
        Ok(())
    }

    /// Cards in stock at `outlet`.
    pub fn stock(&self, outlet: OutletId) -> usize {
        self.by_outlet.get(&outlet).map_or(0, BTreeSet::len)
    }

    /// The cards in stock at `outlet`, in card-number order.
    pub fn cards_at(&self, outlet: OutletId) -> impl Iterator<Item = CardNumber> + '_ {
        self.by_outlet.get(&outlet).into_iter().flatten().copied()
    }

    /// Where a card is in stock, if anywhere.
    pub fn outlet_of(&self, card: CardNumber) -> Option<OutletId> {
        self.at.get(&card).copied()
    }

    /// Whether a card was issued from stock.
    pub fn is_issued(&self, card: CardNumber) -> bool {
        self.issued.contains(&card)
    }
}
