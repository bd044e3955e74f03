//! The spec's worked examples replayed through the card and PSAM emulators, with golden APDU transcripts.

mod common;

use chip::host::{
    LoadInit, check_load_mac1, issue_load_mac2, verify_load_tac, verify_purchase_tac,
};
use chip::terminal::{LoadRequest, PurchaseRequest, load, purchase};
use chip::{BcdDate, BcdTime, Card, Psam, PsamImage, Recorder, TerminalId};
use common::*;
use crypto::{Algorithm, MasterKeys};

struct Expected {
    name: &'static str,
    alg: Algorithm,
    load_mac1: &'static str,
    load_mac2: &'static str,
    load_tac: &'static str,
    purchase_mac1: &'static str,
    purchase_mac2: &'static str,
    purchase_tac: &'static str,
}

const TDES: Expected = Expected {
    name: "3des",
    alg: Algorithm::Tdes,
    load_mac1: "69D93206",
    load_mac2: "A7A92C92",
    load_tac: "0DE58309",
    purchase_mac1: "671F074B",
    purchase_mac2: "6E40D5E3",
    purchase_tac: "576613F0",
};

const SM4: Expected = Expected {
    name: "sm4",
    alg: Algorithm::Sm4,
    load_mac1: "B5E7F8A1",
    load_mac2: "9F2C3024",
    load_tac: "25F4F5AE",
    purchase_mac1: "98BF40E0",
    purchase_mac2: "3A88F94C",
    purchase_tac: "629B5799",
};

fn transcript(label: &str, log: &[(Vec<u8>, Vec<u8>)], out: &mut String) {
    for (c, r) in log {
        out.push_str(&format!(
            "{label}> {}\n{label}< {}\n",
            hex::encode_upper(c),
            hex::encode_upper(r)
        ));
    }
}

/// Compares with `test_data/<name>`; `UPDATE_GOLDEN=1` rewrites the file.
fn golden(name: &str, actual: &str) {
    let path = format!("{}/test_data/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "transcript {name} changed; rerun with UPDATE_GOLDEN=1 if intended"
    );
}

fn run(e: &Expected) {
    let masters = MasterKeys::test_set();
    let mut card = Recorder::new(card(e.alg));
    let date = BcdDate::parse("20261126").unwrap();
    let time = BcdTime::new(14, 30, 0).unwrap();
    let terminal = TerminalId::parse(TERMINAL).unwrap();

    // Load 50.00 yuan with the example's card random.
    card.inner.preload_random(&[0x01, 0x02, 0x03, 0x04]);
    let mut seen_init: Option<LoadInit> = None;
    let outcome = load(
        &mut card,
        &LoadRequest {
            amount_fen: 0x1388,
            terminal_id: terminal,
            date,
            time,
        },
        &mut |init| {
            assert_eq!(
                hex::encode_upper(init.mac1),
                e.load_mac1,
                "{} load MAC1 from card",
                e.name
            );
            check_load_mac1(&masters, init)?;
            seen_init = Some(init.clone());
            issue_load_mac2(&masters, init)
        },
    )
    .unwrap();
    let init = seen_init.unwrap();
    assert_eq!(init.balance_before_fen, 0);
    assert_eq!(init.online_counter, 0);
    assert_eq!(init.random, [1, 2, 3, 4]);
    assert_eq!(
        hex::encode_upper(issue_load_mac2(&masters, &init).unwrap()),
        e.load_mac2
    );
    assert_eq!(
        hex::encode_upper(outcome.tac),
        e.load_tac,
        "{} load TAC",
        e.name
    );
    verify_load_tac(&masters, &init, &outcome.tac).unwrap();
    assert_eq!(outcome.balance_after_fen, 5000);

    // Purchase 2.00 yuan: card random A1B2C3D4, PSAM serial 7.
    card.inner.preload_random(&[0xA1, 0xB2, 0xC3, 0xD4]);
    let mut psam = Recorder::new(Psam::from_image(PsamImage {
        terminal_id: terminal,
        purchase_master_key: masters.purchase.clone(),
        next_serial: 7,
    }));
    let card_log_start = card.log.len();
    let outcome = purchase(
        &mut card,
        &mut psam,
        &PurchaseRequest {
            amount_fen: 0xC8,
            date,
            time,
        },
        &|_| false,
    )
    .unwrap();
    let r = &outcome.record;
    assert_eq!(r.terminal_serial, 7);
    assert_eq!(r.offline_counter, 0);
    assert_eq!(r.balance_before_fen, 5000);
    assert_eq!(outcome.balance_after_fen, 4800);
    assert_eq!(
        hex::encode_upper(r.tac),
        e.purchase_tac,
        "{} purchase TAC",
        e.name
    );
    verify_purchase_tac(&masters.tac, r).unwrap();
    // PSAM MAC1 response: serial || MAC1; DEBIT response: TAC || MAC2.
    let (_, mac1_resp) = psam
        .log
        .iter()
        .find(|(c, _)| c[..2] == [0x80, 0x70])
        .unwrap();
    assert_eq!(
        hex::encode_upper(&mac1_resp[4..8]),
        e.purchase_mac1,
        "{} purchase MAC1",
        e.name
    );
    let (_, debit_resp) = card
        .log
        .iter()
        .find(|(c, _)| c[..2] == [0x80, 0x54])
        .unwrap();
    assert_eq!(hex::encode_upper(&debit_resp[..4]), e.purchase_tac);
    assert_eq!(
        hex::encode_upper(&debit_resp[4..8]),
        e.purchase_mac2,
        "{} purchase MAC2",
        e.name
    );
    assert!(card.log.len() > card_log_start);

    let mut text = format!(
        "# {} worked example (epurse.md appendix): load 5000 fen, purchase 200 fen\n",
        e.name
    );
    text.push_str("# card> / card< : card APDUs; psam> / psam< : PSAM APDUs (purchase part)\n");
    transcript("card", &card.log, &mut text);
    transcript("psam", &psam.log, &mut text);
    golden(&format!("transcript_{}.txt", e.name), &text);
}

#[test]
fn worked_example_3des_through_the_emulators() {
    run(&TDES);
}

#[test]
fn worked_example_sm4_through_the_emulators() {
    run(&SM4);
}

#[test]
fn load_apdu_bytes_match_the_appendix() {
    // Raw APDUs, no flow helpers: INITIALIZE FOR LOAD returns the appendix MAC1,
    // CREDIT FOR LOAD with the appendix MAC2 returns the appendix TAC.
    for (alg, mac1, mac2, tac) in [
        (Algorithm::Tdes, "69D93206", "A7A92C92", "0DE58309"),
        (Algorithm::Sm4, "B5E7F8A1", "9F2C3024", "25F4F5AE"),
    ] {
        let mut c: Card = card(alg);
        c.preload_random(&[1, 2, 3, 4]);
        select_transit(&mut c);
        let r = check(&mut c, "805000020B010000138811223344556610", 0x9000);
        assert_eq!(
            hex::encode_upper(&r),
            format!("00000000000001{:02X}01020304{mac1}", alg.id())
        );
        let r = check(&mut c, &format!("805200000B20261126143000{mac2}04"), 0x9000);
        assert_eq!(hex::encode_upper(r), tac);
        assert_eq!(balance(&mut c), 5000);
    }
}
