//! Personalization data throughput for `docs/benchmarks.md`: a batch of 100,000 cards written
//! by [`issuance::production::write_batch`] with the file master-key store (DPK, DLK and DTK
//! diversified and wrapped under the transport key for every card), for the 3DES and the SM4
//! profile. Target: at least 2,000 cards/s. Beside it, in the same run:
//!
//! - `baseline_store_diversify_wrapped`: the same 300,000 `diversify_wrapped` calls alone,
//!   without building or writing the file (what the key store costs);
//! - `baseline_software_diversify_wrap`: diversification and wrapping in plain software, no
//!   store (what the cryptography costs).
//!
//! Run: `cargo bench -p issuance --bench personalization` (release profile). Divan reports
//! the `items/s` column in cards per second.

use chip::{BcdDate, CardNumber, CardType};
use crypto::{Algorithm, Key16, MasterKeys};
use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use issuance::production::{BatchHeader, BatchId, CardRecord, write_batch};
use keys::master::{
    FileMasterKeyStore, KeyComponent, KeyRef, MasterKeyStore, MasterPurpose, unwrap_card_key,
    wrap_card_key,
};

fn main() {
    divan::main();
}

const CARDS: u32 = 100_000;
const PROFILES: [Algorithm; 2] = [Algorithm::Tdes, Algorithm::Sm4];
const COMPONENT_A: &str = "0123456789ABCDEFFEDCBA9876543210";
const COMPONENT_B: &str = "00112233445566778899AABBCCDDEEFF";

struct Setup {
    _dir: tempfile::TempDir,
    store: FileMasterKeyStore,
    transport: KeyRef,
    cards: Vec<CardRecord>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FileMasterKeyStore::create(&dir.path().join("master.json"), b"bench")
        .expect("create store");
    store.load_test_key_set("transit").expect("test key set");
    let transport = KeyRef::transit(MasterPurpose::Transport, 1);
    let components: Vec<KeyComponent> = [COMPONENT_A, COMPONENT_B]
        .iter()
        .enumerate()
        .map(|(i, hex)| {
            let kcv = Key16::from_hex(hex).expect("hex").kcv(Algorithm::Tdes);
            KeyComponent::parse(i + 1, hex, &hex_upper(&kcv), Algorithm::Tdes).expect("component")
        })
        .collect();
    store
        .import_components(&transport, &components, Algorithm::Tdes, None)
        .expect("transport key");
    let start = BcdDate::new(2025, 3, 1).expect("date");
    let expiry = start.plus_years(10).expect("date");
    let cards = (1..=CARDS)
        .map(|seq| CardRecord {
            card_number: CardNumber::from_sequence(seq).expect("card number"),
            card_type: CardType::Ordinary,
            holder_name: format!("张三{}", seq % 1000),
            id_number: format!("410105198005{seq:06}"),
            start_date: start,
            expiry_date: expiry,
        })
        .collect();
    Setup {
        _dir: dir,
        store,
        transport,
        cards,
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn header(s: &Setup, alg: Algorithm) -> BatchHeader {
    BatchHeader {
        batch_id: BatchId::parse("BENCH-1").expect("batch id"),
        card_count: CARDS,
        key_version: 1,
        transport: s.transport.clone(),
        algorithm: alg,
        maintained: Vec::new(),
    }
}

#[divan::bench(args = PROFILES, sample_count = 5, sample_size = 1)]
fn write_batch_100k(bencher: Bencher, alg: Algorithm) {
    let s = setup();
    let header = header(&s, alg);
    bencher.counter(ItemsCount::new(CARDS)).bench_local(|| {
        write_batch(std::io::sink(), &header, s.cards.iter().cloned(), &s.store)
            .expect("write batch")
    });
}

#[divan::bench(args = PROFILES, sample_count = 5, sample_size = 1)]
fn baseline_store_diversify_wrapped(bencher: Bencher, alg: Algorithm) {
    let s = setup();
    let masters = header(&s, alg).masters();
    bencher.counter(ItemsCount::new(CARDS)).bench_local(|| {
        for card in &s.cards {
            let div = card.card_number.div_data();
            for m in &masters {
                black_box(
                    s.store
                        .diversify_wrapped(m, alg, &div, &s.transport)
                        .expect("diversify"),
                );
            }
        }
    });
}

#[divan::bench(args = PROFILES, sample_count = 5, sample_size = 1)]
fn baseline_software_diversify_wrap(bencher: Bencher, alg: Algorithm) {
    let s = setup();
    let test = MasterKeys::test_set();
    let transport = Key16::from_hex(COMPONENT_A).expect("hex");
    // Only to keep the transport helpers honest in the same run: unwrap(wrap(k)) == k.
    let probe = Key16::from_hex(COMPONENT_B).expect("hex");
    let round = unwrap_card_key(alg, &transport, &wrap_card_key(alg, &transport, &probe));
    assert_eq!(round.expose(), probe.expose());
    bencher.counter(ItemsCount::new(CARDS)).bench_local(|| {
        for card in &s.cards {
            let div = card.card_number.div_data();
            for m in [&test.purchase, &test.load, &test.tac] {
                let dk = crypto::diversify(alg, m, &div);
                black_box((wrap_card_key(alg, &transport, &dk), dk.kcv(alg)));
            }
        }
    });
}
