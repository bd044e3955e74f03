//! E-purse throughput for `docs/benchmarks.md`, each figure beside its baseline in the same run:
//!
//! - `purchase`: a whole in-process purchase (terminal flow + card emulator + PSAM emulator:
//!   SELECT, READ EF15/EF16, INITIALIZE, PSAM MAC1, DEBIT, PSAM MAC2; APDUs encoded and
//!   parsed), against `block`, one block encryption of the same cipher with its key schedule.
//! - `tac_verify`: the host's check of an uploaded purchase (diversify DTK from the TAC master
//!   key, derive the TAC key, recompute, compare), against `tac_mac`, the raw TAC CBC-MAC
//!   under a ready TAC key.
//!
//! Run: `cargo bench -p chip --bench epurse` (release profile).

use chip::host::{UploadRecord, verify_purchase_tac};
use chip::terminal::{PurchaseRequest, purchase};
use chip::{
    BcdDate, BcdTime, Card, CardNumber, CardType, PersonalizationRecord, Psam, TerminalId,
    personalize,
};
use crypto::{Algorithm, Key16, MasterKeys, TransactionType, diversify, purchase_tac, tac_key};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

const ALGS: [Algorithm; 2] = [Algorithm::Tdes, Algorithm::Sm4];

fn date() -> BcdDate {
    BcdDate::parse("20261126").unwrap()
}

fn time() -> BcdTime {
    BcdTime::new(14, 30, 0).unwrap()
}

fn terminal() -> TerminalId {
    TerminalId::parse("112233445566").unwrap()
}

/// A personalized card holding the purse cap, and a PSAM.
fn card_and_psam(alg: Algorithm) -> (Card, Psam) {
    let start = BcdDate::parse("20250101").unwrap();
    let record = PersonalizationRecord {
        card_number: CardNumber::parse("4101000000000018").unwrap(),
        holder_name: "张三".into(),
        id_number: "41010219900101123X".into(),
        card_type: CardType::Ordinary,
        start_date: start,
        expiry_date: start.plus_years(10).unwrap(),
        algorithm: alg,
        employee: false,
        pin: "123456".into(),
        rng_seed: 42,
    };
    let mut image = personalize(&record, &MasterKeys::test_set())
        .unwrap()
        .into_image();
    for app in &mut image.apps {
        if let Some(p) = &mut app.purse {
            p.balance_fen = chip::BALANCE_MAX_FEN;
        }
    }
    (
        Card::from_image(image),
        Psam::new(terminal(), MasterKeys::test_set().purchase),
    )
}

/// A purchase record with a correct TAC, as a terminal uploads it.
fn uploaded(alg: Algorithm) -> UploadRecord {
    let (mut card, mut psam) = card_and_psam(alg);
    let request = PurchaseRequest {
        amount_fen: 200,
        date: date(),
        time: time(),
    };
    purchase(&mut card, &mut psam, &request, &|_| false)
        .unwrap()
        .record
}

#[divan::bench(args = ALGS)]
fn purchase_in_process(bencher: Bencher, alg: Algorithm) {
    let (card, psam) = card_and_psam(alg);
    let request = PurchaseRequest {
        amount_fen: 1,
        date: date(),
        time: time(),
    };
    // Each purchase starts from the same fresh card (counters never run out); the clone is
    // made outside the timed span.
    bencher
        .with_inputs(|| (card.clone(), psam.clone()))
        .bench_local_refs(|(card, psam)| {
            purchase(card, psam, black_box(&request), &|_| false).unwrap()
        });
}

#[divan::bench(args = ALGS)]
fn block(bencher: Bencher, alg: Algorithm) {
    let key = Key16::from_hex("11223344556677889900AABBCCDDEEFF").unwrap();
    match alg {
        Algorithm::Tdes => bencher.bench_local(|| crypto::tdes_encrypt(black_box(&key), &[7; 8])),
        Algorithm::Sm4 => bencher.bench_local(|| crypto::sm4_encrypt(black_box(&key), &[7; 16])),
    }
}

#[divan::bench(args = ALGS)]
fn tac_verify(bencher: Bencher, alg: Algorithm) {
    let tac_master = MasterKeys::test_set().tac;
    let record = uploaded(alg);
    assert!(verify_purchase_tac(&tac_master, &record).is_ok());
    bencher.bench_local(|| verify_purchase_tac(black_box(&tac_master), black_box(&record)));
}

#[divan::bench(args = ALGS)]
fn tac_mac(bencher: Bencher, alg: Algorithm) {
    let record = uploaded(alg);
    let dtk = diversify(
        alg,
        &MasterKeys::test_set().tac,
        &record.card_number.div_data(),
    );
    let key = tac_key(alg, &dtk);
    let (date, time) = (record.date.to_bcd(), record.time.to_bcd());
    assert_eq!(
        purchase_tac(
            &key,
            record.amount_fen,
            TransactionType::Purchase,
            record.terminal_id.as_bytes(),
            record.terminal_serial,
            &date,
            &time
        ),
        record.tac
    );
    bencher.bench_local(|| {
        purchase_tac(
            black_box(&key),
            record.amount_fen,
            TransactionType::Purchase,
            record.terminal_id.as_bytes(),
            record.terminal_serial,
            &date,
            &time,
        )
    });
}
