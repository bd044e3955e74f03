//! Post-issuance script generation for `docs/benchmarks.md`: scripts per second, each with
//! DAMK diversified from the maintenance master key for its card
//! ([`issuance::apps::script_with_master`]: diversify, build the UPDATE, line-protection MAC,
//! assemble SELECT + UPDATE), for both profiles. Beside it, in the same run:
//!
//! - `baseline_line_mac`: the raw line-protection MAC over the same 25-byte command under a
//!   DAMK already in hand (what the MAC alone costs);
//! - `through_file_store`: the same script with the MAC from the file master-key store's
//!   `line_protection_mac` (what the platform does per request, minus storage).
//!
//! Run: `cargo bench -p issuance --bench app_scripts`. The `items/s` column is scripts (or
//! MACs) per second.

use chip::CardNumber;
use crypto::{Algorithm, test_maintenance_master};
use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use issuance::apps::{self, UpdateCommand};
use keys::master::{FileMasterKeyStore, MasterKeyStore};

fn main() {
    divan::main();
}

const CARDS: u32 = 10_000;
const PROFILES: [Algorithm; 2] = [Algorithm::Tdes, Algorithm::Sm4];

fn library() -> (apps::Application, apps::Function) {
    let (a, f) = apps::seed();
    let f = f
        .into_iter()
        .find(|f| f.code.as_str() == "library")
        .unwrap();
    let a = a.into_iter().find(|a| a.code == f.app).unwrap();
    (a, f)
}

fn numbers() -> Vec<crypto::DivData> {
    (1..=CARDS)
        .map(|s| CardNumber::from_sequence(s).unwrap().div_data())
        .collect()
}

#[divan::bench(args = PROFILES)]
fn script_with_diversification(bencher: Bencher, alg: Algorithm) {
    let (app, f) = library();
    let master = test_maintenance_master();
    let cards = numbers();
    bencher.counter(ItemsCount::new(CARDS as usize)).bench(|| {
        for (i, d) in cards.iter().enumerate() {
            let challenge = (i as u32).to_be_bytes();
            black_box(
                apps::script_with_master(&app, &f, true, alg, &master, d, challenge).unwrap(),
            );
        }
    });
}

#[divan::bench(args = PROFILES)]
fn baseline_line_mac(bencher: Bencher, alg: Algorithm) {
    let (app, f) = library();
    let damk = crypto::diversify(alg, &test_maintenance_master(), &numbers()[0]);
    let data = UpdateCommand::new(&app, &f, true).unwrap().mac_input();
    bencher.counter(ItemsCount::new(CARDS as usize)).bench(|| {
        for i in 0..CARDS {
            black_box(crypto::line_mac(alg, &damk, i.to_be_bytes(), &data));
        }
    });
}

#[divan::bench(args = PROFILES)]
fn through_file_store(bencher: Bencher, alg: Algorithm) {
    let (app, f) = library();
    let dir = tempfile::tempdir().unwrap();
    let store = FileMasterKeyStore::create(&dir.path().join("m.json"), b"bench").unwrap();
    store.load_test_maintenance_key("city").unwrap();
    let key = app.maintenance_key().unwrap();
    let cards = numbers();
    bencher.counter(ItemsCount::new(CARDS as usize)).bench(|| {
        for (i, d) in cards.iter().enumerate() {
            let update = UpdateCommand::new(&app, &f, true).unwrap();
            let line = update.line_command((i as u32).to_be_bytes());
            let mac = store.line_protection_mac(&key, alg, d, &line).unwrap();
            black_box(apps::assemble(&app, &update, mac));
        }
    });
}
