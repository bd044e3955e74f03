//! The terminal's replay cache (verification step 7): which (card number, sequence, code time)
//! it accepted within the freshness window.

use std::collections::BTreeSet;

use chip::CardNumber;

/// The most entries a replay cache may be configured to hold. A gate accepts at most a few
/// codes a second, so even an hour's window stays far below this.
pub const REPLAY_ENTRIES_MAX: usize = 1 << 16;

/// Accepted codes, ordered by code time so that expired ones drop off the front.
///
/// An entry matters only while its code is fresh: a code made at `t` passes step 4 only
/// while `now <= t + window`, so after that the entry is dropped. When the cache is full of
/// live entries, the one with the oldest code time is evicted: it is the closest to going
/// stale anyway, and a gate that stopped accepting would be worse. Filling the default cache
/// within one window would take over a thousand accepted codes a second at one terminal.
#[derive(Debug, Clone)]
pub(crate) struct ReplayCache {
    entries: BTreeSet<(u32, CardNumber, u16)>,
    entries_max: usize,
}

impl ReplayCache {
    pub(crate) fn new(entries_max: usize) -> ReplayCache {
        assert!((1..=REPLAY_ENTRIES_MAX).contains(&entries_max));
        ReplayCache {
            entries: BTreeSet::new(),
            entries_max,
        }
    }

    pub(crate) fn contains(&self, card: CardNumber, sequence: u16, time: u32) -> bool {
        self.entries.contains(&(time, card, sequence))
    }

    /// Drops the entries whose codes can no longer be fresh at `now`.
    pub(crate) fn purge(&mut self, now: u32, window_s: u32) {
        while let Some(&(time, _, _)) = self.entries.first() {
            if u64::from(time) + u64::from(window_s) >= u64::from(now) {
                break;
            }
            self.entries.pop_first();
        }
    }

    pub(crate) fn insert(&mut self, card: CardNumber, sequence: u16, time: u32) {
        if self.entries.len() >= self.entries_max {
            self.entries.pop_first();
        }
        self.entries.insert((time, card, sequence));
        debug_assert!(self.entries.len() <= self.entries_max);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
