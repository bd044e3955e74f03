//! Terminal and host flows end to end on the emulators: purchase checks, gates, loads, TAC verification.

mod common;

use chip::host::{HostError, UploadRecord, issue_load_mac2, verify_purchase_tac};
use chip::records::{TransitFlag, TransitRecord};
use chip::terminal::{
    FlowError, GateTap, LoadRequest, PurchaseRequest, complex_purchase, gate_exit, load, purchase,
    read_card,
};
use chip::{BcdDate, BcdTime, Card, CardChannel, ChannelError, Psam, PsamImage, Sw, TerminalId};
use common::*;
use crypto::{Algorithm, Key16, MasterKeys};

fn date(s: &str) -> BcdDate {
    BcdDate::parse(s).unwrap()
}

fn t(h: u8, m: u8) -> BcdTime {
    BcdTime::new(h, m, 0).unwrap()
}

fn loaded(alg: Algorithm, amount: u32) -> Card {
    let masters = MasterKeys::test_set();
    let mut c = card(alg);
    let req = LoadRequest {
        amount_fen: amount,
        terminal_id: TerminalId::parse("000000000001").unwrap(),
        date: date("20260101"),
        time: t(8, 0),
    };
    load(&mut c, &req, &mut |init| issue_load_mac2(&masters, init)).unwrap();
    c
}

fn buy(
    c: &mut Card,
    p: &mut Psam,
    amount: u32,
    on: &str,
) -> Result<chip::terminal::PurchaseOutcome, FlowError> {
    purchase(
        c,
        p,
        &PurchaseRequest {
            amount_fen: amount,
            date: date(on),
            time: t(12, 0),
        },
        &|_| false,
    )
}

#[test]
fn purchase_checks_validity_dates_and_deny_list() {
    for alg in [Algorithm::Tdes, Algorithm::Sm4] {
        let mut c = loaded(alg, 1_000);
        let mut p = psam();
        assert!(matches!(
            buy(&mut c, &mut p, 1, "20241231"),
            Err(FlowError::CardNotYetValid { .. })
        ));
        assert!(matches!(
            buy(&mut c, &mut p, 1, "20350102"),
            Err(FlowError::CardExpired { .. })
        ));
        buy(&mut c, &mut p, 1, "20350101").unwrap();
        let denied = purchase(
            &mut c,
            &mut p,
            &PurchaseRequest {
                amount_fen: 1,
                date: date("20260101"),
                time: t(9, 0),
            },
            &|n| n.to_string() == CARD_NUMBER,
        );
        assert!(matches!(denied, Err(FlowError::CardDenied(n)) if n.to_string() == CARD_NUMBER));
        assert!(matches!(
            buy(&mut c, &mut p, 1_000, "20260101"),
            Err(FlowError::InsufficientBalance)
        ));
        // None of the refusals touched the purse.
        assert_eq!(balance(&mut c), 999);
        assert_eq!(c.image().purse().unwrap().offline_counter, 1);
    }
}

#[test]
fn uploaded_records_verify_once_and_reject_tampering() {
    let masters = MasterKeys::test_set();
    let mut c = loaded(Algorithm::Sm4, 5_000);
    let mut p = psam();
    let a = buy(&mut c, &mut p, 150, "20260301").unwrap();
    let b = buy(&mut c, &mut p, 250, "20260301").unwrap();
    assert_eq!((a.record.offline_counter, b.record.offline_counter), (0, 1));
    assert_eq!((a.record.terminal_serial, b.record.terminal_serial), (1, 2));
    assert_eq!(b.record.balance_before_fen, 4_850);
    assert_eq!(b.balance_after_fen, 4_600);
    verify_purchase_tac(&masters.tac, &a.record).unwrap();
    verify_purchase_tac(&masters.tac, &b.record).unwrap();
    let tampered: Vec<UploadRecord> = vec![
        UploadRecord {
            amount_fen: 15,
            ..a.record.clone()
        },
        UploadRecord {
            terminal_serial: 9,
            ..a.record.clone()
        },
        UploadRecord {
            date: date("20260302"),
            ..a.record.clone()
        },
        UploadRecord {
            algorithm: Algorithm::Tdes,
            ..a.record.clone()
        },
        UploadRecord {
            card_number: chip::CardNumber::from_sequence(2).unwrap(),
            ..a.record.clone()
        },
    ];
    for r in &tampered {
        assert_eq!(
            verify_purchase_tac(&masters.tac, r),
            Err(HostError::TacInvalid),
            "{r:?}"
        );
    }
    assert_eq!(
        verify_purchase_tac(
            &masters.tac,
            &UploadRecord {
                key_version: 2,
                ..a.record.clone()
            }
        ),
        Err(HostError::KeyVersionUnsupported(2))
    );
    assert_eq!(
        verify_purchase_tac(&masters.purchase, &a.record),
        Err(HostError::TacInvalid),
        "the TAC key is not the purchase key"
    );
}

#[test]
fn load_refuses_a_card_whose_mac1_does_not_verify() {
    let mut c = card(Algorithm::Tdes);
    let wrong = MasterKeys {
        load: Key16::from_bytes([9; 16]),
        ..MasterKeys::test_set()
    };
    let req = LoadRequest {
        amount_fen: 100,
        terminal_id: TerminalId::parse(TERMINAL).unwrap(),
        date: date("20260101"),
        time: t(8, 0),
    };
    let r = load(&mut c, &req, &mut |init| issue_load_mac2(&wrong, init));
    assert_eq!(r, Err(FlowError::Host(HostError::Mac1Invalid)));
    assert_eq!(balance(&mut c), 0);
    // The host checks the cap as well as the card.
    let masters = MasterKeys::test_set();
    let big = LoadRequest {
        amount_fen: 100_001,
        ..req
    };
    let r = load(&mut c, &big, &mut |init| issue_load_mac2(&masters, init));
    assert!(matches!(
        r,
        Err(FlowError::CardStatus {
            sw: Sw::CONDITIONS_NOT_SATISFIED,
            ..
        })
    ));
}

#[test]
fn psam_with_another_master_key_gets_9302_from_the_card() {
    let mut c = loaded(Algorithm::Sm4, 1_000);
    let mut p = Psam::new(
        TerminalId::parse(TERMINAL).unwrap(),
        Key16::from_bytes([7; 16]),
    );
    let r = buy(&mut c, &mut p, 10, "20260101");
    assert!(matches!(
        r,
        Err(FlowError::CardStatus {
            sw: Sw::MAC_INVALID,
            ..
        })
    ));
    assert_eq!(balance(&mut c), 1_000);
}

/// Flips a bit of the card's MAC2 in the DEBIT response.
struct CorruptMac2(Card);

impl CardChannel for CorruptMac2 {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let mut r = self.0.process(command);
        if command.starts_with(&[0x80, 0x54]) && r.len() == 10 {
            r[7] ^= 1;
        }
        Ok(r)
    }
}

#[test]
fn bad_mac2_still_hands_back_the_record_to_upload() {
    let masters = MasterKeys::test_set();
    let mut c = CorruptMac2(loaded(Algorithm::Tdes, 1_000));
    let mut p = psam();
    let r = purchase(
        &mut c,
        &mut p,
        &PurchaseRequest {
            amount_fen: 10,
            date: date("20260101"),
            time: t(9, 0),
        },
        &|_| false,
    );
    let Err(FlowError::Mac2Invalid { record }) = r else {
        panic!("expected Mac2Invalid, got {r:?}")
    };
    // The card did debit, and the TAC proves it.
    verify_purchase_tac(&masters.tac, &record).unwrap();
    assert_eq!(balance(&mut c.0), 990);
}

#[test]
fn metro_entry_then_exit_charges_the_fare_from_the_entry_record() {
    let masters = MasterKeys::test_set();
    for alg in [Algorithm::Tdes, Algorithm::Sm4] {
        let mut c = loaded(alg, 2_000);
        let mut entry_gate = Psam::new(
            TerminalId::parse("0000000000A1").unwrap(),
            masters.purchase.clone(),
        );
        let mut exit_gate = Psam::new(
            TerminalId::parse("0000000000B2").unwrap(),
            masters.purchase.clone(),
        );
        let tap = GateTap {
            flag: TransitFlag::Entry,
            line: 1,
            station: 5,
        };
        let e = complex_purchase(
            &mut c,
            &mut entry_gate,
            &PurchaseRequest {
                amount_fen: 0,
                date: date("20260315"),
                time: t(8, 1),
            },
            &tap,
            &|_| false,
        )
        .unwrap();
        assert_eq!(e.record.tx_type, crypto::TransactionType::ComplexPurchase);
        verify_purchase_tac(&masters.tac, &e.record).unwrap();

        let fare = |entry: Option<&TransitRecord>| match entry {
            Some(r) if r.line == 1 => 300 + 50 * u32::from(r.station.abs_diff(9)),
            _ => 900, // no entry: maximum fare
        };
        let x = gate_exit(
            &mut c,
            &mut exit_gate,
            date("20260315"),
            t(8, 40),
            (1, 9),
            &fare,
            &|_| false,
        )
        .unwrap();
        assert_eq!(x.record.amount_fen, 500);
        assert_eq!(x.balance_after_fen, 1_500);
        verify_purchase_tac(&masters.tac, &x.record).unwrap();

        // The exit record is now newest, the entry behind it.
        read_card(&mut c).unwrap();
        let newest = chip::terminal::read_transit_record(&mut c)
            .unwrap()
            .unwrap();
        assert_eq!(
            (newest.flag, newest.station, newest.amount_fen),
            (TransitFlag::Exit, 9, 500)
        );
        let r2 = check(&mut c, "00B202CC30", 0x9000);
        assert_eq!(
            TransitRecord::parse(&r2).unwrap().unwrap().flag,
            TransitFlag::Entry
        );
        // A second exit without a new entry pays the maximum fare.
        let x2 = gate_exit(
            &mut c,
            &mut exit_gate,
            date("20260315"),
            t(9, 0),
            (1, 9),
            &fare,
            &|_| false,
        )
        .unwrap();
        assert_eq!(x2.record.amount_fen, 900);
    }
}

#[test]
fn psam_commands_and_serials() {
    let mut p = psam();
    let send = |p: &mut Psam, h: &str| {
        let r = p.process(&unhex(h));
        let n = r.len();
        (
            r[..n - 2].to_vec(),
            u16::from_be_bytes([r[n - 2], r[n - 1]]),
        )
    };
    assert_eq!(send(&mut p, "00B0960006"), (unhex(TERMINAL), 0x9000));
    assert_eq!(send(&mut p, "00B0970006").1, 0x6A82);
    assert_eq!(send(&mut p, "00B0960007").1, 0x6700);
    assert_eq!(send(&mut p, "8072000003112233").1, 0x6700);
    assert_eq!(send(&mut p, "807200000411223344").1, 0x6985);
    let mac1 = "A1B2C3D40000000000C806202611261430000100410100000000001841010000FFFFFFFF";
    let (r, sw) = send(&mut p, &format!("8070000024{mac1}08"));
    assert_eq!((r[..4].to_vec(), sw), (vec![0, 0, 0, 1], 0x9000));
    assert_eq!(send(&mut p, "807200000411223344").1, 0x9302);
    let (r, _) = send(&mut p, &format!("8070000024{mac1}08"));
    assert_eq!(r[..4], [0, 0, 0, 2]);
    assert_eq!(p.image().next_serial, 3);
    // Unknown algorithm, transaction type and key version.
    let bad_alg = mac1.replace("0100410100", "0107410100");
    assert_eq!(send(&mut p, &format!("8070000024{bad_alg}08")).1, 0x6A80);
    let bad_version = mac1.replace("0100410100", "0200410100");
    assert_eq!(
        send(&mut p, &format!("8070000024{bad_version}08")).1,
        0x9403
    );
    let bad_type = mac1.replacen("C806", "C802", 1);
    assert_eq!(send(&mut p, &format!("8070000024{bad_type}08")).1, 0x6A80);
    assert_eq!(send(&mut p, "A070000000").1, 0x6E00);
    assert_eq!(send(&mut p, "8099000000").1, 0x6D00);
    // The image round-trips through JSON, master key included.
    let json = serde_json::to_string(p.image()).unwrap();
    let back: PsamImage = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, p.image());
    assert!(!format!("{:?}", p.image()).contains("11223344556677889900"));
}
