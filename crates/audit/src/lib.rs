//! The audit log's chain: how an entry's hash is computed from its fields and its predecessor's
//! hash, and how a sequence of stored entries is checked.
//!
//! The log answers "who did what to which record, when and from where". Each entry's hash covers
//! its own fields and the previous entry's hash (SM3, GB/T 32905), so altering, removing or
//! reordering any stored row breaks the chain at that row. Storage lives elsewhere; this crate
//! only computes, so it is trivially testable.

use sm3::{Digest, Sm3};

pub type Hash = [u8; 32];

/// The hash that precedes the first entry.
pub const GENESIS: Hash = [0u8; 32];

/// Bounds on the free-text parts of an entry, so one entry cannot bloat the log.
pub const ACTOR_LEN_MAX: usize = 128;
pub const ACTION_LEN_MAX: usize = 64;
pub const RECORD_LEN_MAX: usize = 256;
pub const ORIGIN_LEN_MAX: usize = 128;
pub const DETAIL_LEN_MAX: usize = 2048;

/// What a caller wants to record, before it is placed in the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Draft {
    /// `operator:alice`, `system`, `citizen:…` — never a raw ID number.
    pub actor: String,
    /// A dotted verb: `resident.import`, `resident.unmask`, `operator.create`.
    pub action: String,
    /// The record acted on: `resident:<blind index hex>`, `feed:12`.
    pub record: String,
    /// Where the request came from: an IP address, `cli`, `demo`.
    pub origin: String,
    /// Free text; personal data never goes here, only references and counts.
    pub detail: String,
}

impl Draft {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        record: impl Into<String>,
        origin: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        let clip = |s: String, max: usize| -> String {
            if s.len() <= max {
                return s;
            }
            let mut end = max;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        };
        Draft {
            actor: clip(actor.into(), ACTOR_LEN_MAX),
            action: clip(action.into(), ACTION_LEN_MAX),
            record: clip(record.into(), RECORD_LEN_MAX),
            origin: clip(origin.into(), ORIGIN_LEN_MAX),
            detail: clip(detail.into(), DETAIL_LEN_MAX),
        }
    }
}

/// An entry as stored: its place in the chain, its time, and both hashes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub seq: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    #[serde(flatten)]
    pub draft: Draft,
    #[serde(with = "hex::serde")]
    pub prev_hash: Hash,
    #[serde(with = "hex::serde")]
    pub hash: Hash,
}

/// The hash of an entry: SM3 over the previous hash and every field, each field length-prefixed
/// so that no two different entries can serialise to the same bytes.
pub fn entry_hash(prev: &Hash, seq: i64, at_ms: i64, d: &Draft) -> Hash {
    let mut h = Sm3::new();
    h.update(b"citycard-audit-v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    for part in [&d.actor, &d.action, &d.record, &d.origin, &d.detail] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// Places a draft after `prev` (the current head, or `None` for the first entry).
pub fn chain_next(prev: Option<(i64, Hash)>, at_ms: i64, draft: Draft) -> Entry {
    let (seq, prev_hash) = match prev {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS),
    };
    let hash = entry_hash(&prev_hash, seq, at_ms, &draft);
    Entry {
        seq,
        at_ms,
        draft,
        prev_hash,
        hash,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("entry {seq}: its content does not match its hash (altered)")]
    Altered { seq: i64 },
    #[error("entry {seq}: it does not follow entry {expected_prev} (removed or reordered)")]
    Broken { seq: i64, expected_prev: i64 },
    #[error("entry {seq}: expected sequence number {expected} (an entry is missing or moved)")]
    Sequence { seq: i64, expected: i64 },
    #[error(
        "the chain ends at entry {last} but its head says {head} (entries removed from the end)"
    )]
    Truncated { last: i64, head: i64 },
}

/// Walks stored entries in sequence order, one at a time, so a chain of any length is checked
/// in constant memory.
#[derive(Debug, Default)]
pub struct Verifier {
    last: Option<(i64, Hash)>,
    count: u64,
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, e: &Entry) -> Result<(), ChainError> {
        let (expected_seq, expected_prev) = match self.last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS),
        };
        if e.seq != expected_seq {
            return Err(ChainError::Sequence {
                seq: e.seq,
                expected: expected_seq,
            });
        }
        if entry_hash(&e.prev_hash, e.seq, e.at_ms, &e.draft) != e.hash {
            return Err(ChainError::Altered { seq: e.seq });
        }
        if e.prev_hash != expected_prev {
            return Err(ChainError::Broken {
                seq: e.seq,
                expected_prev: expected_seq - 1,
            });
        }
        self.last = Some((e.seq, e.hash));
        self.count += 1;
        Ok(())
    }

    /// Checks the end of the chain against the stored head (the last sequence number and hash
    /// the log recorded), which catches entries cut from the end.
    pub fn finish(self, head: Option<(i64, Hash)>) -> Result<u64, ChainError> {
        let last = self.last.map(|(s, _)| s).unwrap_or(0);
        match head {
            Some((head_seq, head_hash)) => {
                if last != head_seq {
                    return Err(ChainError::Truncated {
                        last,
                        head: head_seq,
                    });
                }
                if self.last.map(|(_, h)| h) != Some(head_hash) {
                    return Err(ChainError::Altered { seq: last });
                }
            }
            None if last != 0 => return Err(ChainError::Truncated { last, head: 0 }),
            None => {}
        }
        Ok(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| (e.seq, e.hash));
            let d = Draft::new("operator:a", "resident.read", format!("r{i}"), "cli", "");
            out.push(chain_next(prev, 1000 + i as i64, d));
        }
        out
    }

    fn verify(entries: &[Entry], head: Option<(i64, Hash)>) -> Result<u64, ChainError> {
        let mut v = Verifier::new();
        for e in entries {
            v.push(e)?;
        }
        v.finish(head)
    }

    fn head(entries: &[Entry]) -> Option<(i64, Hash)> {
        entries.last().map(|e| (e.seq, e.hash))
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        assert_eq!(verify(&c, head(&c)), Ok(5));
        assert_eq!(verify(&[], None), Ok(0));
    }

    #[test]
    fn alteration_removal_reorder_and_truncation_are_named() {
        let c = chain(5);
        let h = head(&c);

        let mut altered = c.clone();
        altered[2].draft.detail = "changed".into();
        assert_eq!(verify(&altered, h), Err(ChainError::Altered { seq: 3 }));

        let mut removed = c.clone();
        removed.remove(2);
        assert_eq!(
            verify(&removed, h),
            Err(ChainError::Sequence {
                seq: 4,
                expected: 3
            })
        );

        // Reordering with renumbering and rehashing of the moved rows still breaks the link.
        let mut reordered = c.clone();
        reordered.swap(1, 2);
        reordered[1].seq = 2;
        reordered[2].seq = 3;
        for e in &mut reordered[1..3] {
            e.hash = entry_hash(&e.prev_hash, e.seq, e.at_ms, &e.draft);
        }
        assert_eq!(
            verify(&reordered, h),
            Err(ChainError::Broken {
                seq: 2,
                expected_prev: 1
            })
        );

        assert_eq!(
            verify(&c[..4], h),
            Err(ChainError::Truncated { last: 4, head: 5 })
        );
    }

    #[test]
    fn drafts_are_bounded() {
        let d = Draft::new("a", "b", "c", "d", "é".repeat(DETAIL_LEN_MAX));
        assert!(d.detail.len() <= DETAIL_LEN_MAX);
    }
}
