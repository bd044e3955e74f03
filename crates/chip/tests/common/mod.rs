//! Helpers shared by the chip integration tests: test cards, hex APDUs, one `check` per exchange.

#![allow(dead_code)]

use chip::{
    BcdDate, Card, CardNumber, CardType, PersonalizationRecord, Psam, Sw, TerminalId, personalize,
};
use crypto::{Algorithm, MasterKeys};

pub const CARD_NUMBER: &str = "4101000000000018";
pub const TERMINAL: &str = "112233445566";

pub fn record(alg: Algorithm) -> PersonalizationRecord {
    let start = BcdDate::parse("20250101").unwrap();
    PersonalizationRecord {
        card_number: CardNumber::parse(CARD_NUMBER).unwrap(),
        holder_name: "张三".to_string(),
        id_number: "41010219900101123X".to_string(),
        card_type: CardType::Ordinary,
        start_date: start,
        expiry_date: start.plus_years(10).unwrap(),
        algorithm: alg,
        employee: false,
        pin: "123456".to_string(),
        rng_seed: 42,
    }
}

pub fn card(alg: Algorithm) -> Card {
    personalize(&record(alg), &MasterKeys::test_set()).unwrap()
}

pub fn psam() -> Psam {
    Psam::new(
        TerminalId::parse(TERMINAL).unwrap(),
        MasterKeys::test_set().purchase,
    )
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&s).unwrap_or_else(|e| panic!("bad hex {s}: {e}"))
}

/// Sends a hex APDU, returns (data, SW).
pub fn send(card: &mut Card, apdu: &str) -> (Vec<u8>, Sw) {
    let r = card.process(&unhex(apdu));
    let (data, sw) = r.split_at(r.len() - 2);
    (data.to_vec(), Sw(u16::from_be_bytes([sw[0], sw[1]])))
}

/// Sends a hex APDU and asserts its status word.
#[track_caller]
pub fn check(card: &mut Card, apdu: &str, sw: u16) -> Vec<u8> {
    let (data, got) = send(card, apdu);
    assert_eq!(got, Sw(sw), "APDU {apdu}");
    data
}

pub fn select_transit(card: &mut Card) {
    check(card, "00A4040008A000000632010105", 0x9000);
}

pub fn balance(card: &mut Card) -> u32 {
    select_transit(card);
    let d = check(card, "805C000204", 0x9000);
    u32::from_be_bytes(d.try_into().unwrap())
}
