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
//!
//! **Batch signatures** (as X-Road signs): a sender with several messages waiting signs once
//! over the root of an SM3 hash tree of their digests ([`batch_tree`]); each message carries
//! that signature and, in `x-exchange-batch`, its path from the leaf to the root
//! ([`BatchProof`]). Leaves are SM3(`00` ‖ digest) and nodes SM3(`01` ‖ left ‖ right), so a
//! leaf can never pass for a node, and the root is signed as `CCX1-BATCH\n<root hex>`, which
//! no single message's canonical form (`CCX1\n…`) can equal. Without the header a signature
//! is over the single message's canonical form, as before. A receiver remembers the (key,
//! root, signature) triples it has verified ([`BatchCache`], bounded), so the other messages of
//! a batch cost it no SM2 verification. Because a leaf is built from the digest alone, the
//! digest, the signature and the path recorded in the log are by themselves a checkable proof
//! ([`verify_recorded`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

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
/// A batch-signed message's path in its batch's hash tree (see [`BatchProof`]).
pub const HEADER_BATCH: &str = "x-exchange-batch";
/// A batch proof has at most this many steps (a batch of at most 65,536 messages).
pub const BATCH_DEPTH_MAX: usize = 16;
/// Messages signed together at most (well within [`BATCH_DEPTH_MAX`]).
pub const BATCH_SIGN_MAX: usize = 256;
/// Verified (key, root, signature) triples a [`BatchCache`] remembers at most.
pub const BATCH_CACHE_MAX: usize = 4_096;

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
    #[error("the batch proof is malformed: {0}")]
    Batch(&'static str),
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
        self.check_shapes(now_s)?;
        let sig = hex::decode(signature_hex).map_err(|_| MessageError::Signature)?;
        key.verify(&self.signing_input(), &sig)
            .map_err(|_| MessageError::Signature)
    }

    /// As [`verify`](Self::verify), for a message signed alone (`batch` absent) or in a batch
    /// (`batch`: the `x-exchange-batch` header). A batch's root already verified with this key
    /// and signature (in `cache`) costs no SM2 verification; one verified now is remembered.
    pub fn verify_batched(
        &self,
        key: &Sm2PublicKey,
        signature_hex: &str,
        batch: Option<&str>,
        now_s: i64,
        cache: &BatchCache,
    ) -> Result<(), MessageError> {
        let Some(batch) = batch else {
            return self.verify(key, signature_hex, now_s);
        };
        self.check_shapes(now_s)?;
        let proof = BatchProof::parse(batch)?;
        let sig = hex::decode(signature_hex).map_err(|_| MessageError::Signature)?;
        let root = proof.root(&self.digest());
        cache.verify(key, &root, &sig)
    }

    /// Member and nonce shapes and the clock window.
    fn check_shapes(&self, now_s: i64) -> Result<(), MessageError> {
        crate::check_member(self.member).map_err(|_| MessageError::Member)?;
        check_nonce(self.nonce)?;
        if !self.reply_to.is_empty() {
            check_nonce(self.reply_to)?;
        }
        let skew = self.time_s - now_s;
        if skew.abs() > CLOCK_WINDOW_S {
            return Err(MessageError::Clock(skew));
        }
        Ok(())
    }
}

/// A leaf of a batch's hash tree: SM3(`00` ‖ the message's digest).
pub fn batch_leaf(digest: &[u8; 32]) -> [u8; 32] {
    Sm3::new()
        .chain_update([0x00])
        .chain_update(digest)
        .finalize()
        .into()
}

/// An inner node: SM3(`01` ‖ left ‖ right).
pub fn batch_node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    Sm3::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// What a batch's signature is over: `CCX1-BATCH`, then the root in lower-case hex. No single
/// message's canonical form starts like this, so the two kinds of signature cannot be
/// exchanged for one another.
pub fn batch_signing_input(root: &[u8; 32]) -> Vec<u8> {
    format!("CCX1-BATCH\n{}", hex::encode(root)).into_bytes()
}

/// One step up the tree: the sibling's hash and on which side it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStep {
    pub sibling: [u8; 32],
    /// The sibling is the left child (the path's node is the right one).
    pub sibling_left: bool,
}

/// A message's path from its leaf to its batch's root. Header form: the steps from the leaf
/// up, separated by `.`, each `l` or `r` (which side the sibling stands) and the sibling's 64
/// hex digits; 1 to [`BATCH_DEPTH_MAX`] steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchProof {
    pub steps: Vec<BatchStep>,
}

impl BatchProof {
    pub fn parse(header: &str) -> Result<Self, MessageError> {
        if header.len() > BATCH_DEPTH_MAX * 66 {
            return Err(MessageError::Batch("deeper than 16 levels"));
        }
        let mut steps = Vec::new();
        for part in header.split('.') {
            if steps.len() == BATCH_DEPTH_MAX {
                return Err(MessageError::Batch("deeper than 16 levels"));
            }
            let (side, sibling) = part.split_at_checked(1).unwrap_or(("", ""));
            let sibling_left = match side {
                "l" => true,
                "r" => false,
                _ => return Err(MessageError::Batch("a step must start with l or r")),
            };
            let mut h = [0u8; 32];
            if sibling.len() != 64 || hex::decode_to_slice(sibling, &mut h).is_err() {
                return Err(MessageError::Batch("a sibling must be 64 hex digits"));
            }
            steps.push(BatchStep {
                sibling: h,
                sibling_left,
            });
        }
        Ok(BatchProof { steps })
    }

    pub fn to_header(&self) -> String {
        self.steps
            .iter()
            .map(|s| {
                format!(
                    "{}{}",
                    if s.sibling_left { 'l' } else { 'r' },
                    hex::encode(s.sibling)
                )
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The root this path leads to from a message's digest.
    pub fn root(&self, digest: &[u8; 32]) -> [u8; 32] {
        self.steps.iter().fold(batch_leaf(digest), |h, s| {
            if s.sibling_left {
                batch_node(&s.sibling, &h)
            } else {
                batch_node(&h, &s.sibling)
            }
        })
    }
}

/// The hash tree over `digests` (at least two, at most [`BATCH_SIGN_MAX`]): its root and
/// each message's path, in order. Pairs are hashed level by level from the left; an odd node
/// out moves up a level unchanged (its path has no step there).
pub fn batch_tree(digests: &[[u8; 32]]) -> ([u8; 32], Vec<BatchProof>) {
    assert!(
        (2..=BATCH_SIGN_MAX).contains(&digests.len()),
        "a batch is 2 to {BATCH_SIGN_MAX} messages"
    );
    let mut level: Vec<[u8; 32]> = digests.iter().map(batch_leaf).collect();
    // Which node of the current level each message's path is at.
    let mut at: Vec<usize> = (0..digests.len()).collect();
    let mut proofs = vec![BatchProof { steps: Vec::new() }; digests.len()];
    while level.len() > 1 {
        for (proof, i) in proofs.iter_mut().zip(at.iter_mut()) {
            let sibling = *i ^ 1;
            if sibling < level.len() {
                proof.steps.push(BatchStep {
                    sibling: level[sibling],
                    sibling_left: sibling < *i,
                });
            }
            *i /= 2;
        }
        level = level
            .chunks(2)
            .map(|p| match p {
                [l, r] => batch_node(l, r),
                [one] => *one,
                _ => unreachable!("chunks of two"),
            })
            .collect();
    }
    (level[0], proofs)
}

/// How one message of a group was signed: the signature (hex) and, for a batch, its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub signature: String,
    /// The `x-exchange-batch` header; `None` for a message signed alone.
    pub batch: Option<String>,
}

/// Signs a group of messages by their canonical forms (`Envelope::signing_input`): one alone
/// as a single message, two or more (at most [`BATCH_SIGN_MAX`]) with one signature over
/// their tree's root. One answer per message, in order.
pub fn sign_group(inputs: &[Vec<u8>], sign: impl FnOnce(&[u8]) -> [u8; 64]) -> Vec<Signed> {
    match inputs {
        [] => vec![],
        [one] => vec![Signed {
            signature: hex::encode_upper(sign(one)),
            batch: None,
        }],
        _ => {
            let digests: Vec<[u8; 32]> = inputs.iter().map(|i| Sm3::digest(i).into()).collect();
            let (root, proofs) = batch_tree(&digests);
            let signature = hex::encode_upper(sign(&batch_signing_input(&root)));
            proofs
                .into_iter()
                .map(|p| Signed {
                    signature: signature.clone(),
                    batch: Some(p.to_header()),
                })
                .collect()
        }
    }
}

/// Checks a proof as the log records it: a message's digest, the signature and the batch path
/// (`None`: the message was signed alone, and its signature can only be checked against its
/// whole canonical form, which the digest does not replace).
pub fn verify_recorded(
    key: &Sm2PublicKey,
    digest: &[u8; 32],
    signature: &[u8],
    batch: &BatchProof,
) -> Result<(), MessageError> {
    key.verify(&batch_signing_input(&batch.root(digest)), signature)
        .map_err(|_| MessageError::Signature)
}

/// The batch signatures a receiver has verified, by SM3 of (key's `Z_A`, root, signature),
/// at most [`BATCH_CACHE_MAX`] (the oldest forgotten first). Only verified triples enter it,
/// so a hit is the answer the SM2 verification would give again.
#[derive(Debug)]
pub struct BatchCache {
    max: usize,
    inner: Mutex<BatchCacheInner>,
}

impl Default for BatchCache {
    fn default() -> Self {
        Self::with_max(BATCH_CACHE_MAX)
    }
}

#[derive(Debug, Default)]
struct BatchCacheInner {
    seen: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl BatchCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache of at most `max` triples (at least one).
    pub fn with_max(max: usize) -> Self {
        BatchCache {
            max: max.max(1),
            inner: Mutex::default(),
        }
    }

    fn slot(key: &Sm2PublicKey, root: &[u8; 32], signature: &[u8]) -> [u8; 32] {
        Sm3::new()
            .chain_update(key.z_a())
            .chain_update(root)
            .chain_update(signature)
            .finalize()
            .into()
    }

    /// Verifies `signature` over the batch `root` with `key`, unless already verified.
    pub fn verify(
        &self,
        key: &Sm2PublicKey,
        root: &[u8; 32],
        signature: &[u8],
    ) -> Result<(), MessageError> {
        let slot = Self::slot(key, root, signature);
        if self.lock().seen.contains(&slot) {
            return Ok(());
        }
        // Verified outside the lock: other receivers go on meanwhile.
        key.verify(&batch_signing_input(root), signature)
            .map_err(|_| MessageError::Signature)?;
        let mut inner = self.lock();
        if inner.seen.insert(slot) {
            inner.order.push_back(slot);
            while inner.order.len() > self.max {
                if let Some(old) = inner.order.pop_front() {
                    inner.seen.remove(&old);
                }
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BatchCacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    fn batch_of(n: usize) -> Vec<Envelope<'static>> {
        let nonces: Vec<&'static str> = (0..n)
            .map(|i| &*Box::leak(format!("{i:032x}").into_boxed_str()))
            .collect();
        nonces
            .into_iter()
            .map(|nonce| Envelope {
                nonce,
                ..env(b"{\"id_number\":\"410105199001011234\"}")
            })
            .collect()
    }

    #[test]
    fn every_message_of_a_batch_verifies_with_its_path() {
        let k = key(0x34);
        let pk = k.public_key();
        for n in [2, 3, 5, 8, 13, BATCH_SIGN_MAX] {
            let msgs = batch_of(n);
            let inputs: Vec<Vec<u8>> = msgs.iter().map(Envelope::signing_input).collect();
            let signed = sign_group(&inputs, |m| k.sign(m));
            assert_eq!(signed.len(), n);
            let cache = BatchCache::new();
            for (e, s) in msgs.iter().zip(&signed) {
                let batch = s.batch.as_deref().unwrap();
                // The header round-trips.
                let proof = BatchProof::parse(batch).unwrap();
                assert_eq!(proof.to_header(), batch);
                assert!(proof.steps.len() <= BATCH_DEPTH_MAX);
                e.verify_batched(&pk, &s.signature, Some(batch), e.time_s, &cache)
                    .unwrap();
                // The recorded form (digest, signature, path) is a proof by itself.
                let sig = hex::decode(&s.signature).unwrap();
                verify_recorded(&pk, &e.digest(), &sig, &proof).unwrap();
                // A batch signature is no single message's signature.
                assert_eq!(
                    e.verify(&pk, &s.signature, e.time_s),
                    Err(MessageError::Signature)
                );
            }
            // One root verified, then remembered for the rest of the batch.
            assert_eq!(cache.len(), 1);
        }
    }

    #[test]
    fn a_lone_message_is_signed_alone_and_verifies_as_before() {
        let k = key(0x35);
        let e = env(b"{}");
        let signed = sign_group(&[e.signing_input()], |m| k.sign(m));
        assert_eq!(signed[0].batch, None);
        e.verify(&k.public_key(), &signed[0].signature, e.time_s)
            .unwrap();
        let cache = BatchCache::new();
        e.verify_batched(
            &k.public_key(),
            &signed[0].signature,
            None,
            e.time_s,
            &cache,
        )
        .unwrap();
        assert!(cache.is_empty());
        // A single signature presented as a batch does not verify.
        let other = env(b"[]");
        let fake = format!("r{}", hex::encode(other.digest()));
        assert_eq!(
            e.verify_batched(
                &k.public_key(),
                &signed[0].signature,
                Some(&fake),
                e.time_s,
                &cache
            ),
            Err(MessageError::Signature)
        );
    }

    #[test]
    fn every_tampering_of_a_batch_proof_is_refused() {
        let k = key(0x36);
        let pk = k.public_key();
        let msgs = batch_of(5);
        let inputs: Vec<Vec<u8>> = msgs.iter().map(Envelope::signing_input).collect();
        let signed = sign_group(&inputs, |m| k.sign(m));
        let (e, s) = (&msgs[2], &signed[2]);
        let batch = s.batch.clone().unwrap();
        let now = e.time_s;
        let check = |e: &Envelope<'_>, sig: &str, batch: &str| {
            // A fresh cache each time, and one that has the genuine root already.
            let warm = BatchCache::new();
            msgs[0]
                .verify_batched(
                    &pk,
                    &signed[0].signature,
                    signed[0].batch.as_deref(),
                    now,
                    &warm,
                )
                .unwrap();
            let a = e.verify_batched(&pk, sig, Some(batch), now, &BatchCache::new());
            let b = e.verify_batched(&pk, sig, Some(batch), now, &warm);
            assert_eq!(a, b);
            a
        };
        assert_eq!(check(e, &s.signature, &batch), Ok(()));
        // Another message (body, nonce) with this message's signature and path.
        let body = Envelope {
            body: b"{}",
            ..e.clone()
        };
        assert_eq!(
            check(&body, &s.signature, &batch),
            Err(MessageError::Signature)
        );
        // Another message's path.
        assert_eq!(
            check(e, &s.signature, signed[3].batch.as_deref().unwrap()),
            Err(MessageError::Signature)
        );
        // A sibling changed, a side swapped, a step dropped, a step added.
        let mut p = BatchProof::parse(&batch).unwrap();
        p.steps[0].sibling[5] ^= 1;
        assert_eq!(
            check(e, &s.signature, &p.to_header()),
            Err(MessageError::Signature)
        );
        let mut p = BatchProof::parse(&batch).unwrap();
        p.steps[1].sibling_left = !p.steps[1].sibling_left;
        assert_eq!(
            check(e, &s.signature, &p.to_header()),
            Err(MessageError::Signature)
        );
        let mut p = BatchProof::parse(&batch).unwrap();
        p.steps.pop();
        assert_eq!(
            check(e, &s.signature, &p.to_header()),
            Err(MessageError::Signature)
        );
        let mut p = BatchProof::parse(&batch).unwrap();
        p.steps.push(BatchStep {
            sibling: [9; 32],
            sibling_left: false,
        });
        assert_eq!(
            check(e, &s.signature, &p.to_header()),
            Err(MessageError::Signature)
        );
        // The signature altered, or another batch's signature (another root).
        let mut sig = hex::decode(&s.signature).unwrap();
        sig[10] ^= 1;
        assert_eq!(
            check(e, &hex::encode(&sig), &batch),
            Err(MessageError::Signature)
        );
        let others = sign_group(&inputs[..4], |m| k.sign(m));
        assert_eq!(
            check(e, &others[2].signature, &batch),
            Err(MessageError::Signature)
        );
        // Another key's signature over the same root.
        let forged = sign_group(&inputs, |m| key(0x37).sign(m));
        assert_eq!(forged[2].batch.as_deref(), Some(batch.as_str()));
        assert_eq!(
            check(e, &forged[2].signature, &batch),
            Err(MessageError::Signature)
        );
        // A leaf can never pass for a node: the root of a one-step path over two leaves is not
        // reachable by presenting an inner node as a message's digest.
        let d0 = msgs[0].digest();
        let d1 = msgs[1].digest();
        let (root2, _) = batch_tree(&[d0, d1]);
        assert_ne!(
            batch_leaf(&batch_node(&batch_leaf(&d0), &batch_leaf(&d1))),
            root2
        );
        // Malformed headers, and one deeper than the bound.
        for bad in ["", "x00", "l12", &format!("l{}.", "0".repeat(64)), "l€"] {
            assert!(
                matches!(check(e, &s.signature, bad), Err(MessageError::Batch(_))),
                "{bad}"
            );
        }
        let deep = vec![format!("l{}", "0".repeat(64)); BATCH_DEPTH_MAX + 1].join(".");
        assert!(matches!(
            check(e, &s.signature, &deep),
            Err(MessageError::Batch(_))
        ));
        let max = vec![format!("l{}", "0".repeat(64)); BATCH_DEPTH_MAX].join(".");
        assert_eq!(
            BatchProof::parse(&max).unwrap().steps.len(),
            BATCH_DEPTH_MAX
        );
        // The clock window still applies to each message of a batch.
        assert_eq!(
            e.verify_batched(
                &pk,
                &s.signature,
                Some(&batch),
                now + CLOCK_WINDOW_S + 1,
                &BatchCache::new()
            ),
            Err(MessageError::Clock(-CLOCK_WINDOW_S - 1))
        );
    }

    #[test]
    fn the_batch_cache_is_bounded() {
        let k = key(0x38);
        let pk = k.public_key();
        const MAX: usize = 8;
        let cache = BatchCache::with_max(MAX);
        let roots: Vec<([u8; 32], [u8; 64])> = (0..MAX as u8 + 3)
            .map(|i| {
                let root = [i; 32];
                (root, k.sign(&batch_signing_input(&root)))
            })
            .collect();
        for (i, (root, sig)) in roots.iter().enumerate() {
            cache.verify(&pk, root, sig).unwrap();
            assert_eq!(cache.len(), (i + 1).min(MAX));
        }
        // A triple that did not verify never enters it.
        let mut bad = roots[0].1;
        bad[3] ^= 1;
        assert_eq!(
            cache.verify(&pk, &roots[0].0, &bad),
            Err(MessageError::Signature)
        );
        assert_eq!(cache.len(), MAX);
        // The oldest were forgotten and are verified (and remembered) again.
        cache.verify(&pk, &roots[0].0, &roots[0].1).unwrap();
        assert_eq!(cache.len(), MAX);
        assert_eq!(BatchCache::new().max, BATCH_CACHE_MAX);
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
