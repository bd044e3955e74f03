//! Root public keys as PEM: `PUBLIC KEY` blocks (SM2 SubjectPublicKeyInfo), each preceded by
//! a `# key-id: N` line, as in the spec's appendix and as OpenSSL reads them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto::Sm2PublicKey;
use thiserror::Error;

use crate::RootKeyId;

/// Length of an SM2 SubjectPublicKeyInfo with an uncompressed point.
pub const SPKI_DER_LEN: usize = 91;

/// The DER of SubjectPublicKeyInfo up to the point: SEQUENCE { SEQUENCE { id-ecPublicKey
/// (1.2.840.10045.2.1), sm2 (1.2.156.10197.1.301) }, BIT STRING (no unused bits) `04`...}.
/// Every SM2 key has this same prefix, so parsing compares bytes instead of walking ASN.1.
const SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A,
    0x81, 0x1C, 0xCF, 0x55, 0x01, 0x82, 0x2D, 0x03, 0x42, 0x00, 0x04,
];

const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const END: &str = "-----END PUBLIC KEY-----";
const KEY_ID: &str = "# key-id:";
/// Base64 characters per PEM line (RFC 7468).
const LINE_LEN: usize = 64;
/// The longest PEM file accepted: generous for [`ROOT_KEYS_MAX`](crate::ROOT_KEYS_MAX) keys.
pub(crate) const PEM_TEXT_LEN_MAX: usize = 64 * 1024;

/// Why text is not a root key PEM file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PemError {
    #[error("PEM text of {0} bytes is longer than the {PEM_TEXT_LEN_MAX}-byte maximum")]
    TooLong(usize),
    #[error("line {0}: `# key-id:` needs a decimal 32-bit key id")]
    BadKeyId(usize),
    #[error("line {0}: a `# key-id:` line must be followed by a PUBLIC KEY block")]
    KeyIdWithoutBlock(usize),
    #[error("line {0}: PUBLIC KEY block without a preceding `# key-id:` line")]
    BlockWithoutKeyId(usize),
    #[error("line {0}: PUBLIC KEY block is not closed")]
    Unterminated(usize),
    #[error("line {0}: unexpected text outside a PUBLIC KEY block")]
    Stray(usize),
    #[error("line {0}: block body is not Base64")]
    Base64(usize),
    #[error("line {0}: not an SM2 SubjectPublicKeyInfo with an uncompressed point")]
    NotSm2Spki(usize),
    #[error("line {0}: not a point on the SM2 curve")]
    InvalidPoint(usize),
    #[error("key id {0} appears twice")]
    DuplicateKeyId(RootKeyId),
    #[error("more than {0} keys")]
    TooManyKeys(usize),
}

/// The SubjectPublicKeyInfo DER of an SM2 public key (uncompressed point, as OpenSSL writes).
pub fn spki_der_from_public_key(key: &Sm2PublicKey) -> [u8; SPKI_DER_LEN] {
    let mut der = [0u8; SPKI_DER_LEN];
    der[..SPKI_PREFIX.len()].copy_from_slice(&SPKI_PREFIX);
    der[SPKI_PREFIX.len() - 1..].copy_from_slice(&key.to_uncompressed());
    der
}

/// Reads an SM2 SubjectPublicKeyInfo with an uncompressed point. `None` if the DER is not
/// that shape or the point is not on the curve.
pub fn spki_der_to_public_key(der: &[u8]) -> Option<Sm2PublicKey> {
    parse_spki(der, 0).ok()
}

/// Writes `# key-id: N` and a PEM block per key, in the order given.
pub(crate) fn write<'a>(keys: impl IntoIterator<Item = (RootKeyId, &'a Sm2PublicKey)>) -> String {
    let mut out = String::new();
    for (id, key) in keys {
        let body = STANDARD.encode(spki_der_from_public_key(key));
        out.push_str(&format!("{KEY_ID} {id}\n{BEGIN}\n"));
        // Base64 is ASCII, so byte chunks are character chunks.
        for line in body.as_bytes().chunks(LINE_LEN) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
    }
    out
}

/// Reads the keys of a PEM file in file order. Blank lines and other `#` comment lines are
/// ignored; body lines may be wrapped at any width (the spec's appendix does not wrap).
pub(crate) fn read(
    text: &str,
    keys_max: usize,
) -> Result<Vec<(RootKeyId, Sm2PublicKey)>, PemError> {
    if text.len() > PEM_TEXT_LEN_MAX {
        return Err(PemError::TooLong(text.len()));
    }
    let mut keys: Vec<(RootKeyId, Sm2PublicKey)> = Vec::new();
    let mut pending_id: Option<(usize, RootKeyId)> = None;
    let mut body: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if let Some((start, text)) = body.as_mut() {
            if line == END {
                let start = *start;
                let der = STANDARD
                    .decode(text.as_bytes())
                    .map_err(|_| PemError::Base64(start))?;
                let key = parse_spki(&der, start)?;
                let Some((_, id)) = pending_id.take() else {
                    return Err(PemError::BlockWithoutKeyId(start));
                };
                if keys.iter().any(|(known, _)| *known == id) {
                    return Err(PemError::DuplicateKeyId(id));
                }
                if keys.len() >= keys_max {
                    return Err(PemError::TooManyKeys(keys_max));
                }
                keys.push((id, key));
                body = None;
            } else {
                text.push_str(line);
            }
        } else if line == BEGIN {
            if pending_id.is_none() {
                return Err(PemError::BlockWithoutKeyId(number));
            }
            body = Some((number, String::new()));
        } else if let Some(rest) = line.strip_prefix(KEY_ID) {
            if let Some((at, _)) = pending_id {
                return Err(PemError::KeyIdWithoutBlock(at));
            }
            let id = rest
                .trim()
                .parse::<u32>()
                .map_err(|_| PemError::BadKeyId(number))?;
            pending_id = Some((number, RootKeyId(id)));
        } else if line.is_empty() || line.starts_with('#') {
            continue;
        } else {
            return Err(PemError::Stray(number));
        }
    }
    if let Some((start, _)) = body {
        return Err(PemError::Unterminated(start));
    }
    if let Some((at, _)) = pending_id {
        return Err(PemError::KeyIdWithoutBlock(at));
    }
    Ok(keys)
}

fn parse_spki(der: &[u8], line: usize) -> Result<Sm2PublicKey, PemError> {
    let point = der
        .strip_prefix(&SPKI_PREFIX[..SPKI_PREFIX.len() - 1])
        .filter(|p| p.len() == 65 && p[0] == 0x04)
        .ok_or(PemError::NotSm2Spki(line))?;
    let key = Sm2PublicKey::from_sec1(point).map_err(|_| PemError::InvalidPoint(line))?;
    // A root verifies every certificate a gate sees: build its table once.
    key.precompute();
    Ok(key)
}
