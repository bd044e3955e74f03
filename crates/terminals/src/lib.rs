//! The terminal network's rules (issue 6, item 2), pure.
//!
//! **Signed requests.** Every request of an activated terminal carries four headers:
//! `x-terminal-id`, `x-terminal-time` (Unix seconds), `x-terminal-nonce` (16 to 64 hex digits,
//! never reused) and `x-terminal-signature` (hex of the SM2 signature, GB/T 32918 with SM3 and
//! the default identifier, over [`signing_input`]). The platform refuses a request outside
//! [`CLOCK_WINDOW_S`] of its clock, a nonce it has seen within the window (the
//! [`ReplayCache`]), and a signature that does not verify with the terminal's key. The
//! canonical form binds the method, the path with its query and the SM3 of the body, so
//! nothing of the request can be changed without breaking the signature.
//!
//! **Activation.** A terminal is registered with a one-time activation code (shown once to
//! the installer); the terminal presents it with its new public key. Only the code's digest
//! ([`activation_digest`], SM3 bound to the terminal id) is stored.

use std::collections::{HashMap, VecDeque};

use crypto::{Sm2PublicKey, Sm2SigningKey};
use sm3::{Digest, Sm3};
use thiserror::Error;

/// How far a terminal's clock may be from the platform's, in seconds.
pub const CLOCK_WINDOW_S: i64 = 300;
/// Entries the replay cache holds at most (older ones leave first; a nonce older than the
/// window is refused by the clock check anyway).
pub const REPLAY_CACHE_MAX: usize = 1_000_000;

/// The parts of a request the terminal signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestParts<'a> {
    pub terminal_id: &'a str,
    pub time_s: i64,
    pub nonce: &'a str,
    pub method: &'a str,
    /// Path with its query string, as sent (`/api/v1/terminal/parameters?since=3`).
    pub path_and_query: &'a str,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("terminal id must be 1 to 32 characters A-Z a-z 0-9 - _")]
    TerminalId,
    #[error("the nonce must be 16 to 64 hex digits")]
    Nonce,
    #[error("the terminal's clock is {0} s away from the platform's (at most {CLOCK_WINDOW_S})")]
    Clock(i64),
    #[error("this nonce was already used: a replayed request")]
    Replay,
    #[error("the signature does not verify with the terminal's key")]
    Signature,
}

pub fn check_terminal_id(id: &str) -> Result<(), AuthError> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AuthError::TerminalId)
    }
}

fn check_nonce(n: &str) -> Result<(), AuthError> {
    if (16..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(AuthError::Nonce)
    }
}

/// The canonical form that is signed: lines of `CCT1`, terminal id, time, nonce (lower case),
/// method (upper case), path and query, and the body's SM3 in hex.
pub fn signing_input(r: &RequestParts<'_>) -> Vec<u8> {
    format!(
        "CCT1\n{}\n{}\n{}\n{}\n{}\n{}",
        r.terminal_id,
        r.time_s,
        r.nonce.to_ascii_lowercase(),
        r.method.to_ascii_uppercase(),
        r.path_and_query,
        hex::encode(Sm3::digest(r.body))
    )
    .into_bytes()
}

/// The terminal's side: the signature header's value.
pub fn sign(key: &Sm2SigningKey, r: &RequestParts<'_>) -> String {
    hex::encode_upper(key.sign(&signing_input(r)))
}

/// The platform's side, before the replay check: id and nonce shapes, the clock window, the
/// signature.
pub fn verify(
    key: &Sm2PublicKey,
    r: &RequestParts<'_>,
    signature_hex: &str,
    now_s: i64,
) -> Result<(), AuthError> {
    check_terminal_id(r.terminal_id)?;
    check_nonce(r.nonce)?;
    let skew = r.time_s - now_s;
    if skew.abs() > CLOCK_WINDOW_S {
        return Err(AuthError::Clock(skew));
    }
    let sig = hex::decode(signature_hex).map_err(|_| AuthError::Signature)?;
    key.verify(&signing_input(r), &sig)
        .map_err(|_| AuthError::Signature)
}

/// Nonces seen within the clock window, per terminal, bounded in memory.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: HashMap<(String, String), i64>,
    order: VecDeque<((String, String), i64)>,
}

impl ReplayCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `(terminal, nonce)` used at `time_s`; `Err(Replay)` when it was seen already.
    /// Entries older than the window are forgotten (the clock check refuses them).
    pub fn check_and_insert(
        &mut self,
        terminal: &str,
        nonce: &str,
        time_s: i64,
        now_s: i64,
    ) -> Result<(), AuthError> {
        while let Some((k, t)) = self.order.front() {
            if *t < now_s - CLOCK_WINDOW_S || self.order.len() >= REPLAY_CACHE_MAX {
                if self.seen.get(k) == Some(t) {
                    self.seen.remove(k);
                }
                self.order.pop_front();
            } else {
                break;
            }
        }
        let key = (terminal.to_string(), nonce.to_ascii_lowercase());
        if self.seen.contains_key(&key) {
            return Err(AuthError::Replay);
        }
        self.seen.insert(key.clone(), time_s);
        self.order.push_back((key, time_s));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The stored form of an activation code: SM3 over the terminal id and the code, hex.
pub fn activation_digest(terminal_id: &str, code: &str) -> String {
    let mut h = Sm3::new();
    h.update(b"citycard terminal activation\n");
    h.update(terminal_id.as_bytes());
    h.update(b"\n");
    h.update(code.trim().to_ascii_uppercase().as_bytes());
    hex::encode_upper(h.finalize())
}

/// An activation code from 10 random bytes: 16 characters of Crockford base32 in groups of
/// four (`7K3M-Q9XA-…`), easy to type on a terminal's keypad.
pub fn activation_code(random: &[u8; 10]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut bits: u128 = 0;
    for b in random {
        bits = (bits << 8) | u128::from(*b);
    }
    let chars: Vec<char> = (0..16)
        .rev()
        .map(|k| char::from(ALPHABET[((bits >> (5 * k)) & 31) as usize]))
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::Key32;

    fn key() -> Sm2SigningKey {
        Sm2SigningKey::from_secret(&Key32::from_bytes([0x21; 32])).unwrap()
    }

    fn parts(body: &[u8]) -> RequestParts<'_> {
        RequestParts {
            terminal_id: "BUS-0101",
            time_s: 1_795_665_600,
            nonce: "00112233445566778899aabbccddeeff",
            method: "post",
            path_and_query: "/api/v1/terminal/uploads?batch=7",
            body,
        }
    }

    #[test]
    fn signed_requests_verify_and_any_change_breaks_them() {
        let k = key();
        let p = parts(b"{\"records\":[]}");
        let sig = sign(&k, &p);
        let pk = k.public_key();
        let now = p.time_s + 10;
        verify(&pk, &p, &sig, now).unwrap();
        // Body, path, method, time, nonce, id: each change refuses the signature.
        for changed in [
            RequestParts {
                body: b"{\"records\":[1]}",
                ..p.clone()
            },
            RequestParts {
                path_and_query: "/api/v1/terminal/uploads?batch=8",
                ..p.clone()
            },
            RequestParts {
                method: "PUT",
                ..p.clone()
            },
            RequestParts {
                time_s: p.time_s + 1,
                ..p.clone()
            },
            RequestParts {
                nonce: "00112233445566778899aabbccddeef0",
                ..p.clone()
            },
            RequestParts {
                terminal_id: "BUS-0102",
                ..p.clone()
            },
        ] {
            assert_eq!(verify(&pk, &changed, &sig, now), Err(AuthError::Signature));
        }
        // Another terminal's key; the clock window; shapes.
        let other = Sm2SigningKey::from_secret(&Key32::from_bytes([0x22; 32])).unwrap();
        assert_eq!(
            verify(&other.public_key(), &p, &sig, now),
            Err(AuthError::Signature)
        );
        assert_eq!(
            verify(&pk, &p, &sig, p.time_s + CLOCK_WINDOW_S + 1),
            Err(AuthError::Clock(-CLOCK_WINDOW_S - 1))
        );
        assert_eq!(
            verify(
                &pk,
                &RequestParts {
                    nonce: "xyz",
                    ..p.clone()
                },
                &sig,
                now
            ),
            Err(AuthError::Nonce)
        );
        assert_eq!(verify(&pk, &p, "zz", now), Err(AuthError::Signature));
    }

    #[test]
    fn the_replay_cache_refuses_a_nonce_twice_and_forgets_old_ones() {
        let mut c = ReplayCache::new();
        c.check_and_insert("T1", "AA00AA00AA00AA00", 1_000, 1_000)
            .unwrap();
        assert_eq!(
            c.check_and_insert("T1", "aa00aa00aa00aa00", 1_001, 1_001),
            Err(AuthError::Replay)
        );
        // Another terminal may use the same nonce.
        c.check_and_insert("T2", "AA00AA00AA00AA00", 1_001, 1_001)
            .unwrap();
        assert_eq!(c.len(), 2);
        // Past the window the old entries leave.
        c.check_and_insert("T1", "BB00BB00BB00BB00", 2_000, 2_000)
            .unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn activation_codes() {
        let code = activation_code(&[0xFF; 10]);
        assert_eq!(code, "ZZZZ-ZZZZ-ZZZZ-ZZZZ");
        let code = activation_code(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(code.len(), 19);
        assert_eq!(
            activation_digest("BUS-1", &code),
            activation_digest("BUS-1", &format!(" {} ", code.to_lowercase()))
        );
        assert_ne!(
            activation_digest("BUS-1", &code),
            activation_digest("BUS-2", &code)
        );
        assert!(check_terminal_id("BUS 1").is_err());
    }
}
