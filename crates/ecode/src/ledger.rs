//! The terminal's offline spend accounting (verification step 8): how much it accepted under
//! each certificate.

use std::collections::{BTreeSet, HashMap};

/// The most certificates a spend ledger may be configured to track.
pub const SPEND_LEDGER_ENTRIES_MAX: usize = 1 << 16;

/// Identifies a certificate by SM3 over its signed bytes, so that two signatures over the same
/// fields share one account.
pub(crate) type CertificateDigest = [u8; crypto::SM3_LEN];

/// Fen accepted per certificate. Entries of certificates past `not_after` are dropped: no code
/// under them passes step 3 any more. Unlike the replay cache, a full ledger never evicts a
/// live entry (that would reset a card's offline limit); a payment under a certificate it
/// cannot track is refused instead.
#[derive(Debug, Clone)]
pub(crate) struct SpendLedger {
    spent_fen: HashMap<CertificateDigest, (u32, u64)>,
    by_expiry: BTreeSet<(u32, CertificateDigest)>,
    entries_max: usize,
}

impl SpendLedger {
    pub(crate) fn new(entries_max: usize) -> SpendLedger {
        assert!((1..=SPEND_LEDGER_ENTRIES_MAX).contains(&entries_max));
        SpendLedger {
            spent_fen: HashMap::new(),
            by_expiry: BTreeSet::new(),
            entries_max,
        }
    }

    /// Fen accepted so far under the certificate.
    pub(crate) fn spent_fen(&self, id: &CertificateDigest) -> u64 {
        self.spent_fen.get(id).map_or(0, |&(_, spent)| spent)
    }

    /// Whether a payment under this certificate can be recorded.
    pub(crate) fn has_room_for(&self, id: &CertificateDigest) -> bool {
        self.spent_fen.contains_key(id) || self.spent_fen.len() < self.entries_max
    }

    /// Drops the certificates that have expired by `now`.
    pub(crate) fn purge(&mut self, now: u32) {
        while let Some(&(not_after, id)) = self.by_expiry.first() {
            if not_after >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.spent_fen.remove(&id);
        }
    }

    /// Adds a payment; the caller has checked [`SpendLedger::has_room_for`].
    pub(crate) fn record(&mut self, id: CertificateDigest, not_after: u32, amount_fen: u32) {
        assert!(self.has_room_for(&id));
        let entry = self.spent_fen.entry(id).or_insert((not_after, 0));
        entry.1 += u64::from(amount_fen);
        self.by_expiry.insert((not_after, id));
    }

    pub(crate) fn len(&self) -> usize {
        self.spent_fen.len()
    }
}
