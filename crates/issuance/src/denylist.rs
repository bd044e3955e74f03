//! The deny-list (黑名单) terminals download: versioned full lists and deltas
//! in a compact signed binary form, and the terminal-side lookup.
//!
//! Entries are the 9-digit issue sequences of the card numbers: the prefix
//! `410100` and the Luhn digit follow from the chip profile, so they are not
//! sent. Wire form (all integers big-endian):
//!
//! ```text
//! magic "CCDL" (4) | format 01 (1) | kind (1: 00 full, 01 delta)
//! | version (8) | base version (8: 0 for a full list)
//! | add count (4: entries of a full list) | remove count (4: 0 for a full list)
//! | body length (4) | body | signature length (2) | signature
//! ```
//!
//! The body is the adds then the removes, each a strictly increasing run of
//! sequences: the first as an unsigned LEB128 varint, every next one as the
//! varint gap from its predecessor. A gap of 0 is a duplicate; a decreasing
//! run cannot be written at all. A million cards spread over the sequence
//! space take about two bytes each. The signature covers every byte before the
//! signature length; signing is pluggable ([`DenyListSigner`],
//! [`DenyListVerifier`]) and implemented here for SM2.

use chip::CardNumber;
use crypto::{Sm2PublicKey, Sm2SigningKey};
use thiserror::Error;

use crate::allocator::{SEQUENCE_MAX, card_sequence};

/// Most entries a list or delta may hold (a city of ten million cards fits).
pub const DENY_LIST_ENTRIES_MAX: u32 = 10_000_000;
/// Longest signature accepted.
pub const SIGNATURE_LEN_MAX: usize = 1024;

const MAGIC: &[u8; 4] = b"CCDL";
const FORMAT: u8 = 1;
const KIND_FULL: u8 = 0;
const KIND_DELTA: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 1 + 8 + 8 + 4 + 4 + 4;
/// A sequence of at most 999,999,999 needs at most 5 varint bytes.
const VARINT_LEN_MAX: usize = 5;

/// A deny-list version; versions only increase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DenyListVersion(pub u64);

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("deny-list signature does not verify")]
    Invalid,
}

/// Signs the encoded list (everything before the signature trailer).
pub trait DenyListSigner {
    fn sign(&self, message: &[u8]) -> Vec<u8>;
}

/// Checks the signature of an encoded list before anything else is read.
pub trait DenyListVerifier {
    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError>;
}

/// The platform signs with its SM2 deny-list key.
impl DenyListSigner for Sm2SigningKey {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        Sm2SigningKey::sign(self, message).to_vec()
    }
}

/// Terminals verify with the platform's SM2 public key.
impl DenyListVerifier for Sm2PublicKey {
    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        Sm2PublicKey::verify(self, message, signature).map_err(|_| SignatureError::Invalid)
    }
}

/// No signature: as a signer it writes an empty one; as a verifier it accepts
/// only an empty one, so a signed list is never taken for an unsigned one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unsigned;

impl DenyListSigner for Unsigned {
    fn sign(&self, _message: &[u8]) -> Vec<u8> {
        Vec::new()
    }
}

impl DenyListVerifier for Unsigned {
    fn verify(&self, _message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        if signature.is_empty() {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

/// Why a deny-list or delta was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DenyListError {
    #[error("deny-list is {available} bytes; at least {needed} are needed")]
    Truncated { needed: usize, available: usize },
    #[error("not a deny-list (bad magic)")]
    BadMagic,
    #[error("unsupported deny-list format {0}")]
    UnsupportedFormat(u8),
    #[error("expected a {expected} deny-list, found kind {found}")]
    WrongKind { expected: &'static str, found: u8 },
    #[error("{count} entries exceed the bound of {DENY_LIST_ENTRIES_MAX}")]
    TooManyEntries { count: u64 },
    #[error("signature of {0} bytes exceeds the bound of {SIGNATURE_LEN_MAX}")]
    SignatureTooLong(usize),
    #[error("{0} bytes follow the signature")]
    TrailingBytes(usize),
    #[error("a full list has base version 0 and no removes")]
    FullListWithDeltaFields,
    #[error("delta base version {base:?} is not before its version {version:?}")]
    BadVersionChain {
        base: DenyListVersion,
        version: DenyListVersion,
    },
    #[error("body is {body_len} bytes, too short for {entries} entries")]
    BodyTooShort { body_len: usize, entries: u64 },
    #[error("varint at body offset {0} is malformed or too long")]
    BadVarint(usize),
    #[error("sequence {0} is beyond the 9-digit card sequence")]
    SequenceOutOfRange(u64),
    #[error("sequence {0} appears twice")]
    Duplicate(u32),
    #[error("sequence {next} follows {previous}: entries must be increasing")]
    Unsorted { previous: u32, next: u32 },
    #[error("the body has {0} bytes left over after the entries")]
    BodyNotConsumed(usize),
    #[error("sequence {0} is both added and removed")]
    AddedAndRemoved(u32),
    #[error("delta from {base:?} cannot apply to the list at {list:?}")]
    VersionMismatch {
        list: DenyListVersion,
        base: DenyListVersion,
    },
    #[error("delta adds sequence {0}, which is already listed")]
    AlreadyListed(u32),
    #[error("delta removes sequence {0}, which is not listed")]
    NotListed(u32),
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// A full deny-list at one version: sorted, unique card sequences. This is
/// also the terminal-side structure: [`DenyList::contains`] is a binary search
/// over 4-byte entries (a million cards take 4 MB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyList {
    version: DenyListVersion,
    sequences: Vec<u32>,
}

/// The changes from one version to a later one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyListDelta {
    base: DenyListVersion,
    version: DenyListVersion,
    adds: Vec<u32>,
    removes: Vec<u32>,
}

fn check_sorted(sequences: &[u32]) -> Result<(), DenyListError> {
    for pair in sequences.windows(2) {
        if pair[0] == pair[1] {
            return Err(DenyListError::Duplicate(pair[0]));
        }
        if pair[0] > pair[1] {
            return Err(DenyListError::Unsorted {
                previous: pair[0],
                next: pair[1],
            });
        }
    }
    match sequences.last() {
        Some(&last) if last > SEQUENCE_MAX => {
            Err(DenyListError::SequenceOutOfRange(u64::from(last)))
        }
        _ => Ok(()),
    }
}

fn check_count(count: usize) -> Result<(), DenyListError> {
    if count > DENY_LIST_ENTRIES_MAX as usize {
        return Err(DenyListError::TooManyEntries {
            count: count as u64,
        });
    }
    Ok(())
}

fn sorted_sequences(cards: impl IntoIterator<Item = CardNumber>) -> Vec<u32> {
    let mut sequences: Vec<u32> = cards.into_iter().map(card_sequence).collect();
    sequences.sort_unstable();
    sequences.dedup();
    sequences
}

impl DenyList {
    /// The list of `cards` (any order, duplicates collapse).
    pub fn from_cards(
        version: DenyListVersion,
        cards: impl IntoIterator<Item = CardNumber>,
    ) -> Self {
        DenyList {
            version,
            sequences: sorted_sequences(cards),
        }
    }

    /// A list from sequences that must already be strictly increasing.
    pub fn from_sorted_sequences(
        version: DenyListVersion,
        sequences: Vec<u32>,
    ) -> Result<Self, DenyListError> {
        check_count(sequences.len())?;
        check_sorted(&sequences)?;
        Ok(DenyList { version, sequences })
    }

    pub fn version(&self) -> DenyListVersion {
        self.version
    }

    pub fn len(&self) -> usize {
        self.sequences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    /// The sorted card sequences.
    pub fn sequences(&self) -> &[u32] {
        &self.sequences
    }

    /// The listed card numbers, in order.
    pub fn cards(&self) -> impl Iterator<Item = CardNumber> + '_ {
        // Every stored sequence was range-checked, so from_sequence succeeds.
        self.sequences
            .iter()
            .filter_map(|&s| CardNumber::from_sequence(s).ok())
    }

    /// Whether a terminal must refuse `card`.
    pub fn contains(&self, card: CardNumber) -> bool {
        self.sequences.binary_search(&card_sequence(card)).is_ok()
    }

    /// The delta that takes this list to `newer`.
    pub fn delta_to(&self, newer: &DenyList) -> Result<DenyListDelta, DenyListError> {
        if newer.version <= self.version {
            return Err(DenyListError::BadVersionChain {
                base: self.version,
                version: newer.version,
            });
        }
        let (mut adds, mut removes) = (Vec::new(), Vec::new());
        let (mut old, mut new) = (
            self.sequences.iter().peekable(),
            newer.sequences.iter().peekable(),
        );
        loop {
            match (old.peek(), new.peek()) {
                (Some(&&o), Some(&&n)) if o == n => {
                    old.next();
                    new.next();
                }
                (Some(&&o), Some(&&n)) if o < n => {
                    removes.push(o);
                    old.next();
                }
                (_, Some(&&n)) => {
                    adds.push(n);
                    new.next();
                }
                (Some(&&o), None) => {
                    removes.push(o);
                    old.next();
                }
                (None, None) => break,
            }
        }
        Ok(DenyListDelta {
            base: self.version,
            version: newer.version,
            adds,
            removes,
        })
    }

    /// Applies `delta` (from this list's version to a later one). Checks
    /// everything first, so a refused delta leaves the list unchanged.
    pub fn apply(&mut self, delta: &DenyListDelta) -> Result<(), DenyListError> {
        if delta.base != self.version {
            return Err(DenyListError::VersionMismatch {
                list: self.version,
                base: delta.base,
            });
        }
        for &add in &delta.adds {
            if self.sequences.binary_search(&add).is_ok() {
                return Err(DenyListError::AlreadyListed(add));
            }
        }
        for &remove in &delta.removes {
            if self.sequences.binary_search(&remove).is_err() {
                return Err(DenyListError::NotListed(remove));
            }
        }
        let len = self.sequences.len() + delta.adds.len() - delta.removes.len();
        check_count(len)?;
        // One merge pass: keep what is not removed, interleave the adds.
        let mut merged = Vec::with_capacity(len);
        let mut adds = delta.adds.iter().copied().peekable();
        let mut removes = delta.removes.iter().copied().peekable();
        for &s in &self.sequences {
            while let Some(a) = adds.next_if(|&a| a < s) {
                merged.push(a);
            }
            if removes.next_if_eq(&s).is_none() {
                merged.push(s);
            }
        }
        merged.extend(adds);
        self.sequences = merged;
        self.version = delta.version;
        Ok(())
    }

    /// The signed wire form.
    pub fn encode(&self, signer: &dyn DenyListSigner) -> Vec<u8> {
        encode(
            KIND_FULL,
            self.version,
            DenyListVersion(0),
            &self.sequences,
            &[],
            signer,
        )
    }

    /// Reads and checks a full list: signature first, then every field.
    pub fn decode(bytes: &[u8], verifier: &dyn DenyListVerifier) -> Result<Self, DenyListError> {
        let parts = decode(bytes, KIND_FULL, verifier)?;
        if parts.base != DenyListVersion(0) || !parts.removes.is_empty() {
            return Err(DenyListError::FullListWithDeltaFields);
        }
        Ok(DenyList {
            version: parts.version,
            sequences: parts.adds,
        })
    }
}

impl DenyListDelta {
    /// A delta from `base` to `version` adding and removing `cards` (any order).
    pub fn new(
        base: DenyListVersion,
        version: DenyListVersion,
        adds: impl IntoIterator<Item = CardNumber>,
        removes: impl IntoIterator<Item = CardNumber>,
    ) -> Result<Self, DenyListError> {
        let adds = sorted_sequences(adds);
        let removes = sorted_sequences(removes);
        Self::from_parts(base, version, adds, removes)
    }

    /// A delta from sorted, duplicate-free card sequences (the platform folds its change log
    /// into these); refused like [`DenyListDelta::new`] when a card is both added and removed.
    pub fn from_sorted_sequences(
        base: DenyListVersion,
        version: DenyListVersion,
        adds: Vec<u32>,
        removes: Vec<u32>,
    ) -> Result<Self, DenyListError> {
        Self::from_parts(base, version, adds, removes)
    }

    fn from_parts(
        base: DenyListVersion,
        version: DenyListVersion,
        adds: Vec<u32>,
        removes: Vec<u32>,
    ) -> Result<Self, DenyListError> {
        if version <= base {
            return Err(DenyListError::BadVersionChain { base, version });
        }
        check_count(adds.len())?;
        check_count(removes.len())?;
        check_sorted(&adds)?;
        check_sorted(&removes)?;
        // Both runs are sorted: one merge walk finds an overlap.
        let (mut i, mut j) = (0, 0);
        while let (Some(&a), Some(&r)) = (adds.get(i), removes.get(j)) {
            match a.cmp(&r) {
                core::cmp::Ordering::Less => i += 1,
                core::cmp::Ordering::Greater => j += 1,
                core::cmp::Ordering::Equal => return Err(DenyListError::AddedAndRemoved(a)),
            }
        }
        Ok(DenyListDelta {
            base,
            version,
            adds,
            removes,
        })
    }

    pub fn base(&self) -> DenyListVersion {
        self.base
    }

    pub fn version(&self) -> DenyListVersion {
        self.version
    }

    pub fn adds(&self) -> &[u32] {
        &self.adds
    }

    pub fn removes(&self) -> &[u32] {
        &self.removes
    }

    /// The signed wire form.
    pub fn encode(&self, signer: &dyn DenyListSigner) -> Vec<u8> {
        encode(
            KIND_DELTA,
            self.version,
            self.base,
            &self.adds,
            &self.removes,
            signer,
        )
    }

    /// Reads and checks a delta: signature first, then every field.
    pub fn decode(bytes: &[u8], verifier: &dyn DenyListVerifier) -> Result<Self, DenyListError> {
        let parts = decode(bytes, KIND_DELTA, verifier)?;
        Self::from_parts(parts.base, parts.version, parts.adds, parts.removes)
    }
}

fn push_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn push_run(out: &mut Vec<u8>, sequences: &[u32]) {
    let mut previous = None;
    for &s in sequences {
        // Callers hold strictly increasing runs, so the gap is positive.
        push_varint(out, previous.map_or(s, |p| s - p));
        previous = Some(s);
    }
}

fn encode(
    kind: u8,
    version: DenyListVersion,
    base: DenyListVersion,
    adds: &[u32],
    removes: &[u32],
    signer: &dyn DenyListSigner,
) -> Vec<u8> {
    let mut body = Vec::with_capacity((adds.len() + removes.len()) * 3);
    push_run(&mut body, adds);
    push_run(&mut body, removes);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 2 + 64);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.push(kind);
    out.extend_from_slice(&version.0.to_be_bytes());
    out.extend_from_slice(&base.0.to_be_bytes());
    // Counts were bounded by DENY_LIST_ENTRIES_MAX when the list was built,
    // and the body of at most 2 x 10^7 x 5 bytes fits in u32.
    out.extend_from_slice(&(adds.len() as u32).to_be_bytes());
    out.extend_from_slice(&(removes.len() as u32).to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    let signature = signer.sign(&out);
    assert!(
        signature.len() <= SIGNATURE_LEN_MAX,
        "signer produced a {}-byte signature",
        signature.len()
    );
    out.extend_from_slice(&(signature.len() as u16).to_be_bytes());
    out.extend_from_slice(&signature);
    out
}

struct Parts {
    version: DenyListVersion,
    base: DenyListVersion,
    adds: Vec<u32>,
    removes: Vec<u32>,
}

/// A bounds-checked reader over the input.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DenyListError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(DenyListError::Truncated {
            needed: self.at.saturating_add(n),
            available: self.bytes.len(),
        })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DenyListError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DenyListError> {
        Ok(self.array::<1>()?[0])
    }
}

fn read_run(
    body: &[u8],
    at: &mut usize,
    count: u32,
    out: &mut Vec<u32>,
) -> Result<(), DenyListError> {
    let mut previous: Option<u32> = None;
    for _ in 0..count {
        let start = *at;
        let mut value: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = *body.get(*at).ok_or(DenyListError::BadVarint(start))?;
            *at += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if *at - start >= VARINT_LEN_MAX {
                return Err(DenyListError::BadVarint(start));
            }
        }
        let sequence = match previous {
            None => value,
            Some(p) if value == 0 => return Err(DenyListError::Duplicate(p)),
            Some(p) => u64::from(p) + value,
        };
        if sequence > u64::from(SEQUENCE_MAX) {
            return Err(DenyListError::SequenceOutOfRange(sequence));
        }
        // In range, so it fits in u32.
        let sequence = sequence as u32;
        out.push(sequence);
        previous = Some(sequence);
    }
    Ok(())
}

fn decode(
    bytes: &[u8],
    expected_kind: u8,
    verifier: &dyn DenyListVerifier,
) -> Result<Parts, DenyListError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != MAGIC {
        return Err(DenyListError::BadMagic);
    }
    let format = r.u8()?;
    if format != FORMAT {
        return Err(DenyListError::UnsupportedFormat(format));
    }
    let kind = r.u8()?;
    if kind != expected_kind {
        return Err(DenyListError::WrongKind {
            expected: if expected_kind == KIND_FULL {
                "full"
            } else {
                "delta"
            },
            found: kind,
        });
    }
    let version = DenyListVersion(u64::from_be_bytes(r.array()?));
    let base = DenyListVersion(u64::from_be_bytes(r.array()?));
    let adds_len = u32::from_be_bytes(r.array()?);
    let removes_len = u32::from_be_bytes(r.array()?);
    let body_len = u32::from_be_bytes(r.array()?) as usize;
    for count in [adds_len, removes_len] {
        check_count(count as usize)?;
    }
    let body = r.take(body_len)?;
    let signed_len = r.at;
    let signature_len = usize::from(u16::from_be_bytes(r.array()?));
    if signature_len > SIGNATURE_LEN_MAX {
        return Err(DenyListError::SignatureTooLong(signature_len));
    }
    let signature = r.take(signature_len)?;
    if r.at != bytes.len() {
        return Err(DenyListError::TrailingBytes(bytes.len() - r.at));
    }
    verifier.verify(&bytes[..signed_len], signature)?;

    // Every entry takes at least one byte: refuse counts the body cannot hold
    // before allocating for them.
    let entries = u64::from(adds_len) + u64::from(removes_len);
    if entries > body_len as u64 {
        return Err(DenyListError::BodyTooShort { body_len, entries });
    }
    let mut at = 0;
    let mut adds = Vec::with_capacity(adds_len as usize);
    read_run(body, &mut at, adds_len, &mut adds)?;
    let mut removes = Vec::with_capacity(removes_len as usize);
    read_run(body, &mut at, removes_len, &mut removes)?;
    if at != body.len() {
        return Err(DenyListError::BodyNotConsumed(body.len() - at));
    }
    Ok(Parts {
        version,
        base,
        adds,
        removes,
    })
}
