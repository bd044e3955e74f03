//! The signed message form of the exchange. Every hop carries the headers `x-exchange-member`,
//! `x-exchange-time` (Unix seconds), `x-exchange-nonce` (16 to 64 hex digits, never reused),
//! `x-exchange-reply-to` (on answers: the nonce of the message answered) and
//! `x-exchange-signature` (hex of the SM2 signature with SM3 and the default identifier over
//! [`Envelope::signing_input`]). The canonical form binds the kind of hop, the member, time,
//! nonce, service, the message answered and the SM3 of the body, so nothing can be changed,
//! replayed as another kind, or attached to another request without breaking the signature.
//!
//! [`Envelope::digest`] (SM3 of the canonical form) is what the audit log keeps of each
//! message, with the signature: with it a member can later prove what it sent and received.

use std::collections::{HashMap, VecDeque};

use crypto::{Sm2PublicKey, Sm2SigningKey};
use sm3::{Digest, Sm3};
use thiserror::Error;

/// How far a member's clock may be from the platform's, in seconds.
pub const CLOCK_WINDOW_S: i64 = 300;
/// Nonces the in-memory replay cache keeps at most.
pub const REPLAY_CACHE_MAX: usize = 1_000_000;

pub const HEADER_MEMBER: &str = "x-exchange-member";
pub const HEADER_TIME: &str = "x-exchange-time";
pub const HEADER_NONCE: &str = "x-exchange-nonce";
pub const HEADER_REPLY_TO: &str = "x-exchange-reply-to";
pub const HEADER_SIGNATURE: &str = "x-exchange-signature";

/// Which hop a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Consumer → platform.
    Request,
    /// Platform → provider.
    Forward,
    /// Provider → platform.
    Response,
    /// Platform → consumer.
    Delivery,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Request => "request",
            MessageKind::Forward => "forward",
            MessageKind::Response => "response",
            MessageKind::Delivery => "delivery",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    #[error("the member code is malformed")]
    Member,
    #[error("the nonce must be 16 to 64 hex digits")]
    Nonce,
    #[error("the sender's clock is {0} s away from the platform's (at most {CLOCK_WINDOW_S})")]
    Clock(i64),
    #[error("this nonce was already used: a replayed message")]
    Replay,
    #[error("the signature does not verify with the member's key")]
    Signature,
    #[error("the answer is for another message")]
    ReplyTo,
}

/// One message's signed parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub kind: MessageKind,
    pub member: &'a str,
    pub time_s: i64,
    pub nonce: &'a str,
    pub service: &'a str,
    /// The nonce of the message this one answers; empty for requests and forwards.
    pub reply_to: &'a str,
    pub body: &'a [u8],
}

/// A fresh nonce's text from 16 random bytes.
pub fn nonce_hex(random: &[u8; 16]) -> String {
    hex::encode(random)
}

fn check_nonce(n: &str) -> Result<(), MessageError> {
    if (16..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(MessageError::Nonce)
    }
}

impl Envelope<'_> {
    /// `CCX1`, kind, member, time, nonce (lower case), service, reply-to (lower case) and the
    /// body's SM3 in hex, one per line.
    pub fn signing_input(&self) -> Vec<u8> {
        format!(
            "CCX1\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.kind.as_str(),
            self.member,
            self.time_s,
            self.nonce.to_ascii_lowercase(),
            self.service,
            self.reply_to.to_ascii_lowercase(),
            hex::encode(Sm3::digest(self.body))
        )
        .into_bytes()
    }

    /// SM3 of the canonical form: what the audit log records of the message.
    pub fn digest(&self) -> [u8; 32] {
        Sm3::digest(self.signing_input()).into()
    }

    /// The sender's side: the signature header's value.
    pub fn sign(&self, key: &Sm2SigningKey) -> String {
        hex::encode_upper(key.sign(&self.signing_input()))
    }

    /// Signs with a raw signer (the platform's key held by the keys crate).
    pub fn sign_with(&self, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> String {
        hex::encode_upper(sign(&self.signing_input()))
    }

    /// The receiver's side, before the replay check: shapes, the clock window, the signature.
    pub fn verify(
        &self,
        key: &Sm2PublicKey,
        signature_hex: &str,
        now_s: i64,
    ) -> Result<(), MessageError> {
        crate::check_member(self.member).map_err(|_| MessageError::Member)?;
        check_nonce(self.nonce)?;
        if !self.reply_to.is_empty() {
            check_nonce(self.reply_to)?;
        }
        let skew = self.time_s - now_s;
        if skew.abs() > CLOCK_WINDOW_S {
            return Err(MessageError::Clock(skew));
        }
        let sig = hex::decode(signature_hex).map_err(|_| MessageError::Signature)?;
        key.verify(&self.signing_input(), &sig)
            .map_err(|_| MessageError::Signature)
    }
}

/// Nonces seen within the clock window, per member, bounded in memory. The platform also
/// keeps them in storage so a restart does not forget them.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: HashMap<(String, String), i64>,
    order: VecDeque<((String, String), i64)>,
}

impl ReplayCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `(member, nonce)` used at `time_s`; `Err(Replay)` when seen already.
    pub fn check_and_insert(
        &mut self,
        member: &str,
        nonce: &str,
        time_s: i64,
        now_s: i64,
    ) -> Result<(), MessageError> {
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
        let key = (member.to_string(), nonce.to_ascii_lowercase());
        if self.seen.contains_key(&key) {
            return Err(MessageError::Replay);
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

/// The head of the audit log at a moment, signed by the platform (batch time-stamping): once a
/// head is stamped, changing any earlier row breaks either the chain or the stamp, and the
/// operator cannot rewrite the chain without a new signature it would have to date back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadStamp {
    pub seq: i64,
    pub hash: [u8; 32],
    pub stamped_ms: i64,
}

impl HeadStamp {
    pub fn signing_input(&self) -> Vec<u8> {
        format!(
            "CCXH1\n{}\n{}\n{}",
            self.seq,
            hex::encode(self.hash),
            self.stamped_ms
        )
        .into_bytes()
    }

    pub fn verify(&self, key: &Sm2PublicKey, signature: &[u8]) -> Result<(), MessageError> {
        key.verify(&self.signing_input(), signature)
            .map_err(|_| MessageError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::Key32;

    fn key(b: u8) -> Sm2SigningKey {
        Sm2SigningKey::from_secret(&Key32::from_bytes([b; 32])).unwrap()
    }

    fn env(body: &[u8]) -> Envelope<'_> {
        Envelope {
            kind: MessageKind::Request,
            member: "card-company",
            time_s: 1_795_665_600,
            nonce: "00112233445566778899aabbccddeeff",
            service: "police.traffic-violations",
            reply_to: "",
            body,
        }
    }

    #[test]
    fn a_signed_message_verifies_and_any_change_breaks_it() {
        let k = key(0x31);
        let e = env(b"{\"id_number\":\"410105199001011234\"}");
        let sig = e.sign(&k);
        let pk = k.public_key();
        let now = e.time_s + 5;
        e.verify(&pk, &sig, now).unwrap();
        for changed in [
            Envelope {
                body: b"{}",
                ..e.clone()
            },
            Envelope {
                kind: MessageKind::Delivery,
                ..e.clone()
            },
            Envelope {
                member: "hr",
                ..e.clone()
            },
            Envelope {
                time_s: e.time_s + 1,
                ..e.clone()
            },
            Envelope {
                nonce: "00112233445566778899aabbccddeef0",
                ..e.clone()
            },
            Envelope {
                service: "fund.balance",
                ..e.clone()
            },
            Envelope {
                reply_to: "ffeeddccbbaa99887766554433221100",
                ..e.clone()
            },
        ] {
            assert_eq!(changed.verify(&pk, &sig, now), Err(MessageError::Signature));
            assert_ne!(changed.digest(), e.digest());
        }
        assert_eq!(
            e.verify(&key(0x32).public_key(), &sig, now),
            Err(MessageError::Signature)
        );
        assert_eq!(
            e.verify(&pk, &sig, e.time_s + CLOCK_WINDOW_S + 1),
            Err(MessageError::Clock(-CLOCK_WINDOW_S - 1))
        );
        assert_eq!(
            Envelope {
                nonce: "short",
                ..e.clone()
            }
            .verify(&pk, &sig, now),
            Err(MessageError::Nonce)
        );
        // The raw-signer path signs the same canonical form.
        let sig2 = e.sign_with(|m| k.sign(m));
        e.verify(&pk, &sig2, now).unwrap();
    }

    #[test]
    fn replay_cache() {
        let mut c = ReplayCache::new();
        c.check_and_insert("fund", "AA00AA00AA00AA00", 1_000, 1_000)
            .unwrap();
        assert_eq!(
            c.check_and_insert("fund", "aa00aa00aa00aa00", 1_001, 1_001),
            Err(MessageError::Replay)
        );
        c.check_and_insert("hr", "AA00AA00AA00AA00", 1_001, 1_001)
            .unwrap();
        c.check_and_insert("fund", "BB00BB00BB00BB00", 2_000, 2_000)
            .unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn head_stamps() {
        let k = key(0x33);
        let h = HeadStamp {
            seq: 12,
            hash: [7; 32],
            stamped_ms: 1_795_665_600_000,
        };
        let sig = k.sign(&h.signing_input());
        h.verify(&k.public_key(), &sig).unwrap();
        let moved = HeadStamp {
            hash: [8; 32],
            ..h.clone()
        };
        assert_eq!(
            moved.verify(&k.public_key(), &sig),
            Err(MessageError::Signature)
        );
    }
}
