//! Card emulator behaviour: every status word of the profile, order rules, cap, balance, MAC lock, PIN, files.

mod common;

use chip::image::CardImage;
use chip::{Card, Sw};
use common::*;
use crypto::{
    Algorithm, MasterKeys, TransactionType, load_mac2, load_session_key, purchase_mac1,
    purchase_session_key,
};

const DATE_TIME: &str = "20261126143000";

/// Loads `amount` fen through raw APDUs, computing MAC2 as the host would.
fn load_fen(card: &mut Card, alg: Algorithm, amount: u32) {
    select_transit(card);
    let r = check(
        card,
        &format!("805000020B01{amount:08X}{TERMINAL}10"),
        0x9000,
    );
    let counter = u16::from_be_bytes([r[4], r[5]]);
    let random: [u8; 4] = r[8..12].try_into().unwrap();
    let keys = MasterKeys::test_set().diversify(
        alg,
        &chip::CardNumber::parse(CARD_NUMBER).unwrap().div_data(),
    );
    let seslk = load_session_key(alg, &keys.dlk, random, counter);
    let mac2 = load_mac2(
        &seslk,
        amount,
        &unhex(TERMINAL).try_into().unwrap(),
        &[0x20, 0x26, 0x11, 0x26],
        &[0x14, 0x30, 0],
    );
    check(
        card,
        &format!("805200000B{DATE_TIME}{}04", hex::encode_upper(mac2)),
        0x9000,
    );
}

/// INITIALIZE FOR PURCHASE then the right DEBIT MAC1, as a PSAM would compute it.
fn debit_apdu(card: &mut Card, alg: Algorithm, p1: u8, amount: u32, serial: u32) -> String {
    let r = check(
        card,
        &format!("8050{p1:02X}020B01{amount:08X}{TERMINAL}0F"),
        0x9000,
    );
    let counter = u16::from_be_bytes([r[4], r[5]]);
    let random: [u8; 4] = r[11..15].try_into().unwrap();
    let keys = MasterKeys::test_set().diversify(
        alg,
        &chip::CardNumber::parse(CARD_NUMBER).unwrap().div_data(),
    );
    let sespk = purchase_session_key(alg, &keys.dpk, random, counter, serial);
    let tx = if p1 == 3 {
        TransactionType::ComplexPurchase
    } else {
        TransactionType::Purchase
    };
    let mac1 = purchase_mac1(
        &sespk,
        amount,
        tx,
        &unhex(TERMINAL).try_into().unwrap(),
        &[0x20, 0x26, 0x11, 0x26],
        &[0x14, 0x30, 0],
    );
    format!(
        "805401000F{serial:08X}{DATE_TIME}{}08",
        hex::encode_upper(mac1)
    )
}

#[test]
fn class_instruction_and_parameter_errors() {
    let mut c = card(Algorithm::Sm4);
    check(&mut c, "A0A4040008A000000632010105", 0x6E00);
    check(&mut c, "00CA000000", 0x6D00);
    check(&mut c, "80A4040008A000000632010105", 0x6D00);
    check(&mut c, "00A4080008A000000632010105", 0x6A86);
    check(&mut c, "00A4040108A000000632010105", 0x6A86);
    check(&mut c, "00A4040008A000000632010199", 0x6A82);
    check(&mut c, "00A40000021234", 0x6A82);
    // Malformed APDU bytes (Lc says 8, 2 follow).
    check(&mut c, "00A4040008A000", 0x6700);
    check(&mut c, "00", 0x6700);
    select_transit(&mut c);
    // e-deposit (P2 01) and unknown P1.
    check(&mut c, "805000010B010000138811223344556610", 0x6A86);
    check(&mut c, "805002020B010000138811223344556610", 0x6A86);
    check(&mut c, "805C000104", 0x6A86);
    check(&mut c, "805000020A0100001388112233445510", 0x6700);
    check(&mut c, "805C0002", 0x6700);
}

#[test]
fn purse_commands_need_the_transit_application() {
    let mut c = card(Algorithm::Tdes);
    check(&mut c, "805C000204", 0x6985);
    check(&mut c, "00A4040010F0434954594341524401", 0x6700);
    check(&mut c, "00A404000AF0434954594341524401", 0x9000);
    check(&mut c, "805C000204", 0x6985);
    select_transit(&mut c);
    assert_eq!(check(&mut c, "805C000204", 0x9000), vec![0, 0, 0, 0]);
}

#[test]
fn key_index_other_than_01_is_9403() {
    let mut c = card(Algorithm::Sm4);
    select_transit(&mut c);
    check(&mut c, &format!("805000020B0200001388{TERMINAL}10"), 0x9403);
    check(&mut c, &format!("805001020B0200000000{TERMINAL}0F"), 0x9403);
}

#[test]
fn load_cap_and_insufficient_balance() {
    let alg = Algorithm::Tdes;
    let mut c = card(alg);
    select_transit(&mut c);
    // Over the 100 000 fen cap in one load.
    check(&mut c, &format!("805000020B01000186A1{TERMINAL}10"), 0x6985);
    load_fen(&mut c, alg, 99_000);
    check(&mut c, &format!("805000020B01000003E9{TERMINAL}10"), 0x6985); // 1001 fen: over
    load_fen(&mut c, alg, 1_000); // exactly the cap
    assert_eq!(balance(&mut c), 100_000);
    check(&mut c, &format!("805000020B0100000001{TERMINAL}10"), 0x6985);
    // Purchase more than the balance.
    check(&mut c, &format!("805001020B01000186A1{TERMINAL}0F"), 0x9401);
    let debit = debit_apdu(&mut c, alg, 1, 100_000, 1);
    check(&mut c, &debit, 0x9000);
    assert_eq!(balance(&mut c), 0);
    check(&mut c, &format!("805001020B0100000001{TERMINAL}0F"), 0x9401);
    // A zero-fen purchase is allowed (an entry tap uses it).
    let debit = debit_apdu(&mut c, alg, 1, 0, 2);
    check(&mut c, &debit, 0x9000);
}

#[test]
fn debit_and_credit_must_directly_follow_their_initialize() {
    let alg = Algorithm::Sm4;
    let mut c = card(alg);
    load_fen(&mut c, alg, 1_000);
    // DEBIT with nothing pending.
    check(
        &mut c,
        &format!("805401000F00000001{DATE_TIME}0000000008"),
        0x6985,
    );
    // CREDIT with nothing pending.
    check(&mut c, &format!("805200000B{DATE_TIME}0000000004"), 0x6985);
    // Another command in between.
    let debit = debit_apdu(&mut c, alg, 1, 100, 1);
    check(&mut c, "805C000204", 0x9000);
    check(&mut c, &debit, 0x6985);
    // CREDIT after a purchase INITIALIZE, DEBIT after a load INITIALIZE.
    check(&mut c, &format!("805001020B0100000064{TERMINAL}0F"), 0x9000);
    check(&mut c, &format!("805200000B{DATE_TIME}0000000004"), 0x6985);
    check(&mut c, &format!("805000020B0100000064{TERMINAL}10"), 0x9000);
    check(
        &mut c,
        &format!("805401000F00000001{DATE_TIME}0000000008"),
        0x6985,
    );
    // Cache update outside a complex purchase.
    check(&mut c, &format!("805001020B0100000064{TERMINAL}0F"), 0x9000);
    check(&mut c, &format!("80DC01C830{}", "00".repeat(48)), 0x6985);
    // A reset loses the pending INITIALIZE.
    let debit = debit_apdu(&mut c, alg, 1, 100, 2);
    c.reset();
    select_transit(&mut c);
    check(&mut c, &debit, 0x6985);
    // Nothing was debited by any of this.
    assert_eq!(balance(&mut c), 1_000);
    let p = c.image().purse().unwrap();
    assert_eq!(
        (p.offline_counter, p.online_counter, p.mac_failures),
        (0, 1, 0)
    );
}

#[test]
fn three_invalid_macs_lock_the_purse_for_good() {
    let alg = Algorithm::Tdes;
    let mut c = card(alg);
    load_fen(&mut c, alg, 500);
    for _ in 0..2 {
        check(&mut c, &format!("805001020B0100000064{TERMINAL}0F"), 0x9000);
        check(
            &mut c,
            &format!("805401000F00000001{DATE_TIME}DEADBEEF08"),
            0x9302,
        );
    }
    // A valid MAC resets the count...
    let debit = debit_apdu(&mut c, alg, 1, 100, 1);
    check(&mut c, &debit, 0x9000);
    assert_eq!(c.image().purse().unwrap().mac_failures, 0);
    // ...so it takes three more in a row; a bad load MAC2 counts too.
    check(&mut c, &format!("805001020B0100000064{TERMINAL}0F"), 0x9000);
    check(
        &mut c,
        &format!("805401000F00000002{DATE_TIME}DEADBEEF08"),
        0x9302,
    );
    check(&mut c, &format!("805000020B0100000064{TERMINAL}10"), 0x9000);
    check(&mut c, &format!("805200000B{DATE_TIME}DEADBEEF04"), 0x9302);
    check(&mut c, &format!("805001020B0100000064{TERMINAL}0F"), 0x9000);
    check(
        &mut c,
        &format!("805401000F00000003{DATE_TIME}DEADBEEF08"),
        0x9302,
    );
    assert!(c.image().purse().unwrap().locked);
    check(&mut c, &format!("805001020B0100000064{TERMINAL}0F"), 0x9303);
    check(&mut c, &format!("805000020B0100000064{TERMINAL}10"), 0x9303);
    check(&mut c, "805C000204", 0x9303);
    // Permanently: survives a reset and an image round trip.
    let mut c = Card::from_image(CardImage::from_json(&c.image().to_json()).unwrap());
    select_transit(&mut c);
    check(&mut c, "805C000204", 0x9303);
    // Free-read files stay readable, so a terminal can tell the holder why.
    check(&mut c, "00B095001E", 0x9000);
}

#[test]
fn counters_exhausted_answer_6985() {
    let alg = Algorithm::Sm4;
    let c = card(alg);
    let mut image = c.into_image();
    for app in &mut image.apps {
        if let Some(p) = app.purse.as_mut() {
            p.offline_counter = u16::MAX;
            p.online_counter = u16::MAX;
            p.balance_fen = 1_000;
        }
    }
    let mut c = Card::from_image(image);
    select_transit(&mut c);
    check(&mut c, &format!("805001020B0100000001{TERMINAL}0F"), 0x6985);
    check(&mut c, &format!("805000020B0100000001{TERMINAL}10"), 0x6985);
}

#[test]
fn successful_transactions_write_ef18_newest_first_and_advance_counters() {
    let alg = Algorithm::Sm4;
    let mut c = card(alg);
    check(&mut c, "00A4040008A000000632010105", 0x9000);
    check(&mut c, "00B201C417", 0x6A83);
    load_fen(&mut c, alg, 5_000);
    let debit = debit_apdu(&mut c, alg, 1, 200, 9);
    let r = check(&mut c, &debit, 0x9000);
    assert_eq!(r.len(), 8);
    let rec1 = check(&mut c, "00B201C417", 0x9000);
    assert_eq!(
        hex::encode_upper(&rec1),
        format!("0000000000000000C806{TERMINAL}20261126143000")
    );
    let rec2 = check(&mut c, "00B202C417", 0x9000);
    assert_eq!(
        hex::encode_upper(&rec2),
        format!("00000000000000138802{TERMINAL}20261126143000")
    );
    check(&mut c, "00B203C417", 0x6A83);
    // Le other than the record length (or 00) is a length error.
    check(&mut c, "00B201C410", 0x6700);
    check(&mut c, "00B201C400", 0x9000);
    // Record number 0 and P2 mode other than "record number in P1".
    check(&mut c, "00B200C417", 0x6A86);
    check(&mut c, "00B201C017", 0x6A86);
    let p = c.image().purse().unwrap();
    assert_eq!(
        (p.balance_fen, p.online_counter, p.offline_counter),
        (4_800, 1, 1)
    );

    // The cyclic file keeps the newest 10.
    for i in 0..12u32 {
        let debit = debit_apdu(&mut c, alg, 1, 1, 100 + i);
        check(&mut c, &debit, 0x9000);
    }
    check(&mut c, "00B20AC417", 0x9000);
    check(&mut c, "00B20BC417", 0x6A83);
    let newest = check(&mut c, "00B201C417", 0x9000);
    assert_eq!(&newest[..2], &[0x00, 0x0C]);
}

#[test]
fn binary_reads_sfi_form_offsets_and_lengths() {
    let mut c = card(Algorithm::Tdes);
    // SFI form reads EF15 and makes it current.
    let ef15 = check(&mut c, "00B095001E", 0x6A82); // MF has no SFI 15
    assert!(ef15.is_empty());
    select_transit(&mut c);
    let ef15 = check(&mut c, "00B095001E", 0x9000);
    assert_eq!(&ef15[12..20], &unhex(CARD_NUMBER)[..]);
    check(&mut c, "00B0000A04", 0x9000);
    assert_eq!(check(&mut c, "00B0001C00", 0x9000).len(), 2);
    check(&mut c, "00B0001C03", 0x6700);
    check(&mut c, "00B0001E01", 0x6B00);
    check(&mut c, "00B0B50001", 0x6A86);
    // No current EF right after selecting the application.
    select_transit(&mut c);
    check(&mut c, "00B0000001", 0x6985);
    // Select EF by FID, then read it.
    let fcp = check(&mut c, "00A40000020016", 0x9000);
    assert_eq!(fcp, unhex("6208830200168002 0037"));
    assert_eq!(check(&mut c, "00B0000037", 0x9000).len(), 55);
    // READ RECORD on a binary file.
    check(&mut c, "00B201AC17", 0x6981);
    // READ BINARY on a record file.
    check(&mut c, "00B0980001", 0x6981);
    // Extended Le works the same.
    assert_eq!(check(&mut c, "00B0950000001E", 0x9000).len(), 30);
}

#[test]
fn pin_verify_try_counter_and_protected_files() {
    let mut c = card(Algorithm::Sm4);
    check(&mut c, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF", 0x9000);
    check(&mut c, "00B0850020", 0x9000);
    check(&mut c, "00B0860035", 0x6982);
    check(&mut c, "00200000", 0x63C3);
    check(&mut c, "0020000003123457", 0x63C2);
    check(&mut c, "0020000103123456", 0x6A86);
    check(&mut c, "0020000003123456", 0x9000);
    check(&mut c, "00200000", 0x63C3);
    let ef06 = check(&mut c, "00B0860035", 0x9000);
    assert_eq!(&ef06[..18], b"41010219900101123X");
    // Updating a never-updatable file stays forbidden after VERIFY.
    check(&mut c, "00D6850001FF", 0x6982);
    // Leaving the application drops the PIN status.
    select_transit(&mut c);
    check(&mut c, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF", 0x9000);
    check(&mut c, "00B0860035", 0x6982);
    // Three wrong PINs block it; the right one no longer helps.
    check(&mut c, "0020000003000000", 0x63C2);
    check(&mut c, "0020000003000000", 0x63C1);
    check(&mut c, "0020000003000000", 0x63C0);
    check(&mut c, "0020000003123456", 0x6983);
    check(&mut c, "00200000", 0x6983);
}

#[test]
fn city_application_updates_need_the_pin() {
    let mut c = card(Algorithm::Tdes);
    check(&mut c, "00A404000AF0434954594341524401", 0x9000);
    check(&mut c, "00D6810802AABB", 0x6982);
    check(&mut c, &format!("00DC0114 10{}", "11".repeat(16)), 0x6982);
    check(&mut c, "0020000003123456", 0x9000);
    check(&mut c, "00D6810802AABB", 0x9000);
    assert_eq!(check(&mut c, "00B0810804", 0x9000), unhex("AABB0000"));
    check(&mut c, "00D6810F02AABB", 0x6700);
    check(&mut c, "00D6811001AA", 0x6B00);
    check(&mut c, &format!("00DC0114 10{}", "11".repeat(16)), 0x9000);
    check(&mut c, &format!("00DC0614 10{}", "11".repeat(16)), 0x6A83);
    check(&mut c, &format!("00DC0114 0F{}", "11".repeat(15)), 0x6700);
    assert_eq!(check(&mut c, "00B2011410", 0x9000), vec![0x11; 16]);
    // The purse's own cyclic files are never written by UPDATE RECORD.
    select_transit(&mut c);
    check(&mut c, "0020000003123456", 0x9000);
    check(&mut c, &format!("00DC01C417{}", "00".repeat(23)), 0x6982);
}

#[test]
fn ef_dir_lists_the_applications() {
    let mut c = card(Algorithm::Sm4);
    let r = check(&mut c, "00B2010C20", 0x9000);
    assert_eq!(&r[..4], &[0x61, 0x17, 0x4F, 0x0F]);
    let r = check(&mut c, "00B2020C20", 0x9000);
    assert_eq!(&r[4..12], &unhex("A000000632010105")[..]);
    check(&mut c, "00B2050C20", 0x6A83);
}

#[test]
fn get_challenge_is_deterministic_per_seed() {
    let mut a = card(Algorithm::Sm4);
    let mut b = card(Algorithm::Sm4);
    let ra = check(&mut a, "0084000008", 0x9000);
    assert_eq!(ra, check(&mut b, "0084000008", 0x9000));
    assert_ne!(ra, check(&mut a, "0084000008", 0x9000));
    check(&mut a, "0084000005", 0x6700);
    check(&mut a, "0084010004", 0x6A86);
}

#[test]
fn complex_purchase_commits_the_transit_record_only_with_the_debit() {
    let alg = Algorithm::Tdes;
    let mut c = card(alg);
    load_fen(&mut c, alg, 1_000);
    let record = format!("01000100020{}", "0".repeat(85));
    assert_eq!(record.len(), 96);
    // Bad MAC1: the staged record must not appear.
    check(&mut c, &format!("805003020B0100000000{TERMINAL}0F"), 0x9000);
    check(&mut c, &format!("80DC01C830{record}"), 0x9000);
    check(
        &mut c,
        &format!("805401000F00000001{DATE_TIME}DEADBEEF08"),
        0x9302,
    );
    check(&mut c, "00B201CC30", 0x6A83);
    // Wrong P1/P2 and length of the cache update.
    check(&mut c, &format!("805003020B0100000000{TERMINAL}0F"), 0x9000);
    check(&mut c, &format!("80DC02C830{record}"), 0x6A86);
    check(&mut c, &format!("805003020B0100000000{TERMINAL}0F"), 0x9000);
    check(&mut c, &format!("80DC01C82F{}", &record[..94]), 0x6700);
    // Good path: the debit commits record and EF18 type 09.
    let debit = debit_apdu(&mut c, alg, 3, 0, 5);
    check(&mut c, &format!("80DC01C830{record}"), 0x9000);
    check(&mut c, &debit, 0x9000);
    assert_eq!(
        hex::encode_upper(check(&mut c, "00B201CC30", 0x9000)),
        record.to_uppercase()
    );
    assert_eq!(check(&mut c, "00B201C417", 0x9000)[9], 0x09);
    // A second cache update in one transaction is refused.
    let _ = debit_apdu(&mut c, alg, 3, 0, 6);
    check(&mut c, &format!("80DC01C830{record}"), 0x9000);
    check(&mut c, &format!("80DC01C830{record}"), 0x6985);
}

#[test]
fn mac_of_complex_purchase_must_use_type_09() {
    let alg = Algorithm::Sm4;
    let mut c = card(alg);
    load_fen(&mut c, alg, 1_000);
    // A MAC1 computed with type 06 for a complex purchase fails.
    let r = check(&mut c, &format!("805003020B0100000064{TERMINAL}0F"), 0x9000);
    let random: [u8; 4] = r[11..15].try_into().unwrap();
    let keys = MasterKeys::test_set().diversify(
        alg,
        &chip::CardNumber::parse(CARD_NUMBER).unwrap().div_data(),
    );
    let sespk = purchase_session_key(alg, &keys.dpk, random, 0, 1);
    let mac1 = purchase_mac1(
        &sespk,
        100,
        TransactionType::Purchase,
        &unhex(TERMINAL).try_into().unwrap(),
        &[0x20, 0x26, 0x11, 0x26],
        &[0x14, 0x30, 0],
    );
    check(
        &mut c,
        &format!("805401000F00000001{DATE_TIME}{}08", hex::encode_upper(mac1)),
        0x9302,
    );
    assert_eq!(balance(&mut c), 1_000);
}

#[test]
fn sw_constants_cover_the_profile() {
    for (sw, v) in [
        (Sw::OK, 0x9000),
        (Sw::WRONG_LENGTH, 0x6700),
        (Sw::FILE_NOT_FOUND, 0x6A82),
        (Sw::WRONG_P1P2, 0x6A86),
        (Sw::INS_NOT_SUPPORTED, 0x6D00),
        (Sw::CLA_NOT_SUPPORTED, 0x6E00),
        (Sw::SECURITY_NOT_SATISFIED, 0x6982),
        (Sw::CONDITIONS_NOT_SATISFIED, 0x6985),
        (Sw::BALANCE_INSUFFICIENT, 0x9401),
        (Sw::KEY_INDEX_UNSUPPORTED, 0x9403),
        (Sw::MAC_INVALID, 0x9302),
        (Sw::APPLICATION_LOCKED, 0x9303),
        (Sw::PIN_BLOCKED, 0x6983),
    ] {
        assert_eq!(sw.0, v);
    }
}
