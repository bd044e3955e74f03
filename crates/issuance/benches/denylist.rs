//! Deny-list throughput for `docs/benchmarks.md`, each figure beside its baseline in the same run:
//!
//! - `full_build_encode`: build a full list of 1,000,000 cards from unsorted card numbers and
//!   encode it, against `baseline_sort_u64`, sorting 1,000,000 random u64 alone (target < 2 s).
//! - `full_decode`: decode (signature check skipped with `Unsigned`) the same list.
//! - `delta_encode` for 1,000 and 10,000 changes: should scale with the changes, not the list.
//! - `delta_decode_apply`: decode a delta and apply it to the 1,000,000-entry list
//!   (applying is one merge pass over the list, so it carries an O(n) floor).
//! - `lookup`: one terminal-side "is this card denied" check.
//!
//! Run: `cargo bench -p issuance --bench denylist` (release profile).

use chip::CardNumber;
use divan::{Bencher, black_box};
use issuance::{DenyList, DenyListDelta, DenyListVersion, Unsigned};

fn main() {
    divan::main();
}

const FULL: usize = 1_000_000;

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn sequence(&mut self) -> u32 {
        (self.next() % 999_999_999) as u32 + 1
    }
}

fn cards(n: usize, seed: u64) -> Vec<CardNumber> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| CardNumber::from_sequence(rng.sequence()).unwrap())
        .collect()
}

fn full_list() -> DenyList {
    DenyList::from_cards(DenyListVersion(1), cards(FULL, 0x5EED))
}

/// `changes` changes against `list`: half removes of listed cards, half adds of new ones.
fn delta(list: &DenyList, changes: usize) -> DenyListDelta {
    let removes: Vec<CardNumber> = list
        .cards()
        .step_by(list.len() / (changes / 2))
        .take(changes / 2)
        .collect();
    let adds: Vec<CardNumber> = cards(changes * 2, 0xADD)
        .into_iter()
        .filter(|c| !list.contains(*c))
        .take(changes / 2)
        .collect();
    DenyListDelta::new(list.version(), DenyListVersion(2), adds, removes).unwrap()
}

#[divan::bench(sample_count = 10)]
fn baseline_sort_u64(bencher: Bencher) {
    let mut rng = Rng(0x5EED);
    let values: Vec<u64> = (0..FULL).map(|_| rng.next()).collect();
    bencher
        .with_inputs(|| values.clone())
        .bench_local_values(|mut v| {
            v.sort_unstable();
            v
        });
}

#[divan::bench(sample_count = 10)]
fn full_build_encode(bencher: Bencher) {
    let input = cards(FULL, 0x5EED);
    bencher
        .with_inputs(|| input.clone())
        .bench_local_values(|c| {
            let list = DenyList::from_cards(DenyListVersion(1), c);
            list.encode(&Unsigned)
        });
}

#[divan::bench(sample_count = 10)]
fn full_decode(bencher: Bencher) {
    let bytes = full_list().encode(&Unsigned);
    bencher.bench_local(|| DenyList::decode(black_box(&bytes), &Unsigned).unwrap());
}

#[divan::bench(args = [1_000, 10_000])]
fn delta_encode(bencher: Bencher, changes: usize) {
    let d = delta(&full_list(), changes);
    bencher.bench_local(|| black_box(&d).encode(&Unsigned));
}

#[divan::bench(args = [1_000, 10_000], sample_count = 20)]
fn delta_decode_apply(bencher: Bencher, changes: usize) {
    let list = full_list();
    let bytes = delta(&list, changes).encode(&Unsigned);
    bencher
        .with_inputs(|| list.clone())
        .bench_local_values(|mut l| {
            let d = DenyListDelta::decode(&bytes, &Unsigned).unwrap();
            l.apply(&d).unwrap();
            l
        });
}

#[divan::bench]
fn lookup(bencher: Bencher) {
    let list = full_list();
    let probe = cards(1, 0xBEEF)[0];
    bencher.bench_local(|| list.contains(black_box(probe)));
}
