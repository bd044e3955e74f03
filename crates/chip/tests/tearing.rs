//! Image consistency: JSON round trips at every step, and no image shows a debit without its record.

mod common;

use chip::host::issue_load_mac2;
use chip::image::{CardImage, EfBody};
use chip::records::TransactionRecord;
use chip::terminal::{LoadRequest, PurchaseRequest, load, purchase};
use chip::{BcdDate, BcdTime, Card, CardChannel, ChannelError, TerminalId};
use common::*;
use crypto::{Algorithm, MasterKeys, TransactionType};

/// Saves the image (as JSON) after every APDU, as a power cut could.
struct Snapshots {
    card: Card,
    images: Vec<String>,
}

impl CardChannel for Snapshots {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let r = self.card.process(command);
        self.images.push(self.card.image().to_json());
        Ok(r)
    }
}

fn ef18(image: &CardImage) -> Vec<TransactionRecord> {
    let transit = image.apps.iter().find(|a| a.purse.is_some()).unwrap();
    let ef = transit.files.iter().find(|f| f.sfi == 0x18).unwrap();
    let EfBody::Records { records, .. } = &ef.body else {
        panic!("EF18 is a record file")
    };
    records
        .iter()
        .map(|r| TransactionRecord::parse(&r.0).unwrap())
        .collect()
}

/// The invariant: with fewer than 10 transactions, the EF18 records account
/// for the balance and both counters exactly.
fn assert_consistent(image: &CardImage) {
    let purse = image.purse().unwrap();
    let records = ef18(image);
    let loads: Vec<_> = records
        .iter()
        .filter(|r| r.tx_type == TransactionType::Load)
        .collect();
    let debits: Vec<_> = records
        .iter()
        .filter(|r| r.tx_type != TransactionType::Load)
        .collect();
    assert_eq!(loads.len(), usize::from(purse.online_counter));
    assert_eq!(debits.len(), usize::from(purse.offline_counter));
    let sum = |v: &[&TransactionRecord]| v.iter().map(|r| i64::from(r.amount_fen)).sum::<i64>();
    assert_eq!(i64::from(purse.balance_fen), sum(&loads) - sum(&debits));
}

#[test]
fn every_saved_image_is_consistent_and_round_trips() {
    for alg in [Algorithm::Tdes, Algorithm::Sm4] {
        let masters = MasterKeys::test_set();
        let mut ch = Snapshots {
            card: card(alg),
            images: vec![],
        };
        let (d, tm) = (
            BcdDate::parse("20260101").unwrap(),
            BcdTime::new(10, 0, 0).unwrap(),
        );
        let req = LoadRequest {
            amount_fen: 3_000,
            terminal_id: TerminalId::parse(TERMINAL).unwrap(),
            date: d,
            time: tm,
        };
        load(&mut ch, &req, &mut |i| issue_load_mac2(&masters, i)).unwrap();
        let mut p = psam();
        for amount in [100, 250, 0, 2_000] {
            purchase(
                &mut ch,
                &mut p,
                &PurchaseRequest {
                    amount_fen: amount,
                    date: d,
                    time: tm,
                },
                &|_| false,
            )
            .unwrap();
        }
        assert!(ch.images.len() > 20);
        for json in &ch.images {
            let image = CardImage::from_json(json).unwrap();
            assert_eq!(&image.to_json(), json);
            assert_consistent(&image);
        }
        assert_eq!(ch.card.image().purse().unwrap().balance_fen, 650);
    }
}

#[test]
fn a_card_restored_between_initialize_and_debit_has_not_debited() {
    let alg = Algorithm::Sm4;
    let mut c = card(alg);
    let masters = MasterKeys::test_set();
    let (d, tm) = (
        BcdDate::parse("20260101").unwrap(),
        BcdTime::new(10, 0, 0).unwrap(),
    );
    let req = LoadRequest {
        amount_fen: 500,
        terminal_id: TerminalId::parse(TERMINAL).unwrap(),
        date: d,
        time: tm,
    };
    load(&mut c, &req, &mut |i| issue_load_mac2(&masters, i)).unwrap();
    select_transit(&mut c);
    check(&mut c, &format!("805001020B0100000064{TERMINAL}0F"), 0x9000);
    // Power cut: the card comes back from its saved image.
    let mut restored = Card::from_image(CardImage::from_json(&c.image().to_json()).unwrap());
    assert_consistent(restored.image());
    select_transit(&mut restored);
    check(
        &mut restored,
        "805401000F0000000120260101100000DEADBEEF08",
        0x6985,
    );
    assert_eq!(balance(&mut restored), 500);
}

#[test]
fn image_json_keeps_keys_and_debug_masks_them() {
    let c = card(Algorithm::Tdes);
    let json = c.image().to_json();
    // DPK of the worked example is in the image (the chip holds it)...
    assert!(json.contains("EADC26959BFE2F7101D3BC07751ECC7E"));
    // ...but never in Debug output, and neither is the PIN.
    let debug = format!("{:?}", c.image());
    assert!(!debug.contains("EADC26959BFE2F71"));
    assert!(!debug.contains("123456"));
    // Nor the holder's ID number or name, which the files hold.
    assert!(!debug.contains("3431303130323139"));
    assert!(!debug.contains("D5C5C8FD"));
    assert!(debug.contains("TRANSIT"));
    // A corrupted image is refused, not half-loaded.
    assert!(CardImage::from_json(&json.replace("EADC26959BFE2F71", "ZZ")).is_err());
}
