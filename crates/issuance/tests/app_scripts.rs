//! Post-issuance scripts against the card emulator: the worked example of
//! `docs/app-scripts.md` byte for byte, a full enable/disable through the chip, and the card's
//! refusals (bad MAC, replay, no challenge, plain UPDATE of a protected file).

use chip::image::{AID_CITY, AID_HEALTH};
use chip::{
    BcdDate, Card, CardNumber, CardType, MaintenanceMaster, PersonalizationRecord,
    personalize_with_maintenance,
};
use crypto::{Algorithm, MasterKeys, test_maintenance_master};
use issuance::apps::{self, Application, Function, script_with_master};

const NUMBER: &str = "4101000000000018";
const CHALLENGE: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

fn card(alg: Algorithm) -> Card {
    let record = PersonalizationRecord {
        card_number: CardNumber::parse(NUMBER).unwrap(),
        holder_name: "张三".into(),
        id_number: "41010219900101123X".into(),
        card_type: CardType::Ordinary,
        start_date: BcdDate::new(2026, 11, 26).unwrap(),
        expiry_date: BcdDate::new(2036, 11, 26).unwrap(),
        algorithm: alg,
        employee: false,
        pin: "123456".into(),
        rng_seed: 7,
    };
    let m = test_maintenance_master();
    personalize_with_maintenance(
        &record,
        &MasterKeys::test_set(),
        &[
            MaintenanceMaster {
                aid: AID_CITY,
                master: &m,
            },
            MaintenanceMaster {
                aid: AID_HEALTH,
                master: &m,
            },
        ],
    )
    .unwrap()
}

fn registry(function: &str) -> (Application, Function) {
    let (apps, functions) = apps::seed();
    let f = functions
        .into_iter()
        .find(|f| f.code.as_str() == function)
        .unwrap();
    let a = apps.into_iter().find(|a| a.code == f.app).unwrap();
    (a, f)
}

fn send(card: &mut Card, apdu: &[u8]) -> (Vec<u8>, u16) {
    let r = card.process(apdu);
    let (data, sw) = r.split_at(r.len() - 2);
    (data.to_vec(), u16::from_be_bytes([sw[0], sw[1]]))
}

fn challenge(card: &mut Card, preload: Option<[u8; 4]>) -> [u8; 4] {
    if let Some(c) = preload {
        card.preload_random(&c);
    }
    let (data, sw) = send(card, &[0x00, 0x84, 0x00, 0x00, 0x04]);
    assert_eq!(sw, 0x9000);
    data.try_into().unwrap()
}

fn script(alg: Algorithm, function: &str, enable: bool, challenge: [u8; 4]) -> Vec<Vec<u8>> {
    let (a, f) = registry(function);
    let d = CardNumber::parse(NUMBER).unwrap().div_data();
    script_with_master(
        &a,
        &f,
        enable,
        alg,
        &test_maintenance_master(),
        &d,
        challenge,
    )
    .unwrap()
    .apdus
}

fn hex(b: &[u8]) -> String {
    hex::encode_upper(b)
}

/// The worked example of docs/app-scripts.md: enable `library` (CITY, SFI 03 record 3) on
/// card 4101000000000018 for challenge 11223344, both profiles (values checked with OpenSSL).
#[test]
fn worked_example_matches_the_document() {
    let d = CardNumber::parse(NUMBER).unwrap().div_data();
    let m = test_maintenance_master();
    for (alg, damk, mac) in [
        (
            Algorithm::Tdes,
            "B4B297240587FBD907BE5DEACCF34E79",
            "394B5805",
        ),
        (
            Algorithm::Sm4,
            "0B150342F5C48252159F98F08586340B",
            "9A379C2B",
        ),
    ] {
        let k = crypto::diversify(alg, &m, &d);
        assert_eq!(hex(k.expose()), damk, "{alg:?} DAMK");
        let apdus = script(alg, "library", true, CHALLENGE);
        assert_eq!(hex(&apdus[0]), "00A404000AF0434954594341524401");
        assert_eq!(
            hex(&apdus[1]),
            format!("04DC031C14{}{}{mac}", "01", "00".repeat(15)),
            "{alg:?} update"
        );
    }
}

#[test]
fn a_script_enables_and_disables_a_function_on_the_card() {
    for alg in [Algorithm::Tdes, Algorithm::Sm4] {
        let mut c = card(alg);
        let read = [0x00, 0xB2, 0x03, 0x1C, 0x10];
        // Through the kiosk's steps: select, challenge, script.
        assert_eq!(send(&mut c, &chip_select_city()).1, 0x9000);
        let ch = challenge(&mut c, None);
        for apdu in script(alg, "library", true, ch) {
            assert_eq!(send(&mut c, &apdu).1, 0x9000, "{alg:?}");
        }
        let (rec, sw) = send(&mut c, &read);
        assert_eq!(sw, 0x9000);
        assert_eq!(rec[0], 0x01, "{alg:?}: library enabled");
        // Parameters land after the status byte (access groups: a 32-bit mask).
        let ch = challenge(&mut c, None);
        for apdu in script(alg, "access_groups", true, ch) {
            assert_eq!(send(&mut c, &apdu).1, 0x9000);
        }
        let (rec, _) = send(&mut c, &[0x00, 0xB2, 0x04, 0x1C, 0x10]);
        assert_eq!(&rec[..5], &[0x01, 0, 0, 0, 1]);
        let ch = challenge(&mut c, None);
        for apdu in script(alg, "library", false, ch) {
            assert_eq!(send(&mut c, &apdu).1, 0x9000);
        }
        assert_eq!(send(&mut c, &read).0, vec![0u8; 16], "{alg:?}: disabled");
        // HEALTH: hospital, a binary slice under HEALTH's own key.
        let ch = challenge(&mut c, None);
        for apdu in script(alg, "hospital", true, ch) {
            assert_eq!(send(&mut c, &apdu).1, 0x9000);
        }
        let (data, sw) = send(&mut c, &[0x00, 0xB0, 0x82, 0x00, 0x10]);
        assert_eq!((data[0], sw), (0x01, 0x9000));
    }
}

fn chip_select_city() -> Vec<u8> {
    apps::select_aid(AID_CITY)
}

#[test]
fn the_card_refuses_a_bad_mac_a_replay_and_a_missing_challenge() {
    for alg in [Algorithm::Tdes, Algorithm::Sm4] {
        let mut c = card(alg);
        let read = [0x00, 0xB2, 0x03, 0x1C, 0x10];
        send(&mut c, &chip_select_city());
        // No GET CHALLENGE yet: 6984.
        let s = script(alg, "library", true, [0; 4]);
        assert_eq!(send(&mut c, &s[1]).1, 0x6984);
        // A MAC for another challenge, or an altered byte: 6988, nothing written.
        let ch = challenge(&mut c, None);
        let mut wrong = ch;
        wrong[0] ^= 1;
        assert_eq!(
            send(&mut c, &script(alg, "library", true, wrong)[1]).1,
            0x6988
        );
        let ch = challenge(&mut c, None);
        let mut tampered = script(alg, "library", true, ch)[1].clone();
        tampered[6] ^= 0x01; // a parameter byte
        assert_eq!(send(&mut c, &tampered).1, 0x6988);
        assert_eq!(send(&mut c, &read).0, vec![0u8; 16]);
        // A good script works once; the same bytes again meet a used challenge (6984), and
        // after a new GET CHALLENGE a MAC that no longer verifies (6988).
        let ch = challenge(&mut c, None);
        let good = script(alg, "library", true, ch);
        assert_eq!(send(&mut c, &good[1]).1, 0x9000);
        assert_eq!(send(&mut c, &good[1]).1, 0x6984);
        challenge(&mut c, None);
        assert_eq!(send(&mut c, &good[1]).1, 0x6988);
        // A reset forgets the challenge.
        let ch = challenge(&mut c, None);
        let fresh = script(alg, "library", false, ch);
        c.reset();
        send(&mut c, &chip_select_city());
        assert_eq!(send(&mut c, &fresh[1]).1, 0x6984);
        // A plain UPDATE RECORD of the protected file: 6982.
        let mut plain = vec![0x00, 0xDC, 0x03, 0x1C, 0x10];
        plain.extend_from_slice(&[0; 16]);
        assert_eq!(send(&mut c, &plain).1, 0x6982);
        assert_eq!(send(&mut c, &read).0[0], 0x01, "still enabled");
        // CITY's key does not open HEALTH: a script MACed for CITY sent in HEALTH fails.
        send(&mut c, &apps::select_aid(AID_HEALTH));
        let ch = challenge(&mut c, None);
        let wrong_key = crypto::diversify(
            alg,
            &crypto::Key16::from_bytes([0x5A; 16]),
            &CardNumber::parse(NUMBER).unwrap().div_data(),
        );
        let (health, hospital) = registry("hospital");
        let s = apps::script_with_key(&health, &hospital, true, alg, &wrong_key, ch).unwrap();
        assert_eq!(send(&mut c, &s.apdus[1]).1, 0x6988);
    }
}

#[test]
fn a_card_without_maintenance_keys_refuses_scripts() {
    let record_card = {
        let mut c = card(Algorithm::Tdes).into_image();
        for df in &mut c.apps {
            df.maintenance = None;
        }
        Card::from_image(c)
    };
    let mut c = record_card;
    send(&mut c, &chip_select_city());
    let ch = challenge(&mut c, None);
    assert_eq!(
        send(&mut c, &script(Algorithm::Tdes, "library", true, ch)[1]).1,
        0x6982
    );
}

#[test]
fn a_preloaded_challenge_reproduces_the_example_on_the_card() {
    let mut c = card(Algorithm::Tdes);
    send(&mut c, &chip_select_city());
    let ch = challenge(&mut c, Some(CHALLENGE));
    assert_eq!(ch, CHALLENGE);
    for apdu in script(Algorithm::Tdes, "library", true, ch) {
        assert_eq!(send(&mut c, &apdu).1, 0x9000);
    }
}

/// The platform's path (the master-key store computes the MAC; the key never leaves it) gives
/// the same bytes as the reference, and refuses a key of another purpose.
#[test]
fn the_master_key_store_computes_the_same_mac() {
    use keys::master::{FileMasterKeyStore, KeyRef, MasterKeyError, MasterKeyStore, MasterPurpose};
    let dir = tempfile::tempdir().unwrap();
    let store = FileMasterKeyStore::create(&dir.path().join("m.json"), b"t").unwrap();
    store.load_test_maintenance_key("city").unwrap();
    store.load_test_key_set("transit").unwrap();
    let (a, f) = registry("library");
    let d = CardNumber::parse(NUMBER).unwrap().div_data();
    for alg in [Algorithm::Tdes, Algorithm::Sm4] {
        let update = apps::UpdateCommand::new(&a, &f, true).unwrap();
        let mac = store
            .line_protection_mac(
                &a.maintenance_key().unwrap(),
                alg,
                &d,
                &update.line_command(CHALLENGE),
            )
            .unwrap();
        assert_eq!(
            apps::assemble(&a, &update, mac).apdus,
            script(alg, "library", true, CHALLENGE)
        );
        let wrong = store.line_protection_mac(
            &KeyRef::transit(MasterPurpose::Load, 1),
            alg,
            &d,
            &update.line_command(CHALLENGE),
        );
        assert!(matches!(wrong, Err(MasterKeyError::WrongPurpose { .. })));
    }
    // The maintenance test key counts as a development key (production refuses it).
    let only = FileMasterKeyStore::create(&dir.path().join("n.json"), b"t").unwrap();
    only.load_test_maintenance_key("health").unwrap();
    assert!(only.test_key_set_present().unwrap());
}

// ---- TRANSIT EF15: the card type after issuance (issue 8, item 6) -------------------------

/// A student card carrying the TRANSIT DAMK too (as cards personalized for application
/// management do).
fn student_card_with_transit_key(alg: Algorithm) -> Card {
    let m = test_maintenance_master();
    let mut record_card = personalize_with_maintenance(
        &PersonalizationRecord {
            card_number: CardNumber::parse(NUMBER).unwrap(),
            holder_name: "张三".into(),
            id_number: "41010219900101123X".into(),
            card_type: CardType::Student,
            start_date: BcdDate::new(2026, 11, 26).unwrap(),
            expiry_date: BcdDate::new(2036, 11, 26).unwrap(),
            algorithm: alg,
            employee: false,
            pin: "123456".into(),
            rng_seed: 7,
        },
        &MasterKeys::test_set(),
        &[
            MaintenanceMaster {
                aid: AID_CITY,
                master: &m,
            },
            MaintenanceMaster {
                aid: chip::image::AID_TRANSIT,
                master: &m,
            },
        ],
    )
    .unwrap();
    assert_eq!(ef15_card_type(&mut record_card), 0x02);
    record_card
}

/// EF15 byte 28 as any terminal reads it (`00 B0 95 00 1E`).
fn ef15_card_type(card: &mut Card) -> u8 {
    send(card, &apps::select_aid(chip::image::AID_TRANSIT));
    let (ef15, sw) = send(card, &[0x00, 0xB0, 0x95, 0x00, 0x1E]);
    assert_eq!(sw, 0x9000);
    chip::records::PublicInfo::parse(&ef15)
        .unwrap()
        .card_type
        .code()
}

fn card_type_script(alg: Algorithm, t: CardType, challenge: [u8; 4]) -> Vec<Vec<u8>> {
    let damk = crypto::diversify(
        alg,
        &test_maintenance_master(),
        &CardNumber::parse(NUMBER).unwrap().div_data(),
    );
    apps::card_type_script_with_key(t, alg, &damk, challenge).apdus
}

/// The second worked example of docs/app-scripts.md: the card type `01` (ordinary) into EF15
/// byte 28 of card 4101000000000018 for challenge 11223344 (values checked with OpenSSL:
/// `-des-ede-ecb` on the one block, and `-des-cbc`/`-des-ecb` step by step; `-sm4-cbc`).
#[test]
fn card_type_worked_example_matches_the_document() {
    for (alg, mac) in [(Algorithm::Tdes, "125A849B"), (Algorithm::Sm4, "0510E3DC")] {
        let update = apps::card_type_update(CardType::Ordinary);
        assert_eq!(hex(&update.mac_input()), "04D6951C0501");
        let apdus = card_type_script(alg, CardType::Ordinary, CHALLENGE);
        assert_eq!(hex(&apdus[0]), "00A4040008A000000632010105");
        assert_eq!(hex(&apdus[1]), format!("04D6951C0501{mac}"), "{alg:?}");
        // And the card takes exactly these bytes for that challenge.
        let mut c = student_card_with_transit_key(alg);
        send(&mut c, &apdus[0]);
        assert_eq!(challenge(&mut c, Some(CHALLENGE)), CHALLENGE);
        assert_eq!(send(&mut c, &apdus[1]).1, 0x9000, "{alg:?}");
        assert_eq!(ef15_card_type(&mut c), 0x01);
    }
}

#[test]
fn the_card_type_in_ef15_follows_only_a_valid_script() {
    for alg in [Algorithm::Tdes, Algorithm::Sm4] {
        let mut c = student_card_with_transit_key(alg);
        let select = apps::select_aid(chip::image::AID_TRANSIT);
        send(&mut c, &select);
        // No challenge: 6984.
        let s = card_type_script(alg, CardType::Ordinary, [0; 4]);
        assert_eq!(send(&mut c, &s[1]).1, 0x6984);
        // A MAC for another challenge: 6988.
        let ch = challenge(&mut c, None);
        let mut wrong = ch;
        wrong[3] ^= 0x80;
        let s = card_type_script(alg, CardType::Ordinary, wrong);
        assert_eq!(send(&mut c, &s[1]).1, 0x6988);
        // A tampered MAC, or another type byte under the MAC: 6988.
        let ch = challenge(&mut c, None);
        let mut s = card_type_script(alg, CardType::Ordinary, ch);
        let last = s[1].len() - 1;
        s[1][last] ^= 0x01;
        assert_eq!(send(&mut c, &s[1]).1, 0x6988);
        let ch = challenge(&mut c, None);
        let mut s = card_type_script(alg, CardType::Ordinary, ch);
        s[1][5] = CardType::Senior.code();
        assert_eq!(send(&mut c, &s[1]).1, 0x6988);
        // A plain UPDATE BINARY of EF15: 6982.
        assert_eq!(
            send(&mut c, &[0x00, 0xD6, 0x95, 0x1C, 0x01, 0x01]).1,
            0x6982
        );
        assert_eq!(
            ef15_card_type(&mut c),
            0x02,
            "{alg:?}: still a student card"
        );
        // The CITY DAMK does not open TRANSIT: a MAC under CITY's key (another master) fails.
        let ch = challenge(&mut c, None);
        let other = crypto::diversify(
            alg,
            &crypto::Key16::from_bytes([0x5A; 16]),
            &CardNumber::parse(NUMBER).unwrap().div_data(),
        );
        let s = apps::card_type_script_with_key(CardType::Ordinary, alg, &other, ch).apdus;
        assert_eq!(send(&mut c, &s[1]).1, 0x6988);
        // The good script: 9000 once, then a replay meets a used challenge.
        let ch = challenge(&mut c, None);
        let s = card_type_script(alg, CardType::Ordinary, ch);
        for apdu in &s {
            assert_eq!(send(&mut c, apdu).1, 0x9000, "{alg:?}");
        }
        assert_eq!(send(&mut c, &s[1]).1, 0x6984);
        assert_eq!(ef15_card_type(&mut c), 0x01, "{alg:?}: ordinary now");
        // The rest of EF15 is untouched.
        let (ef15, _) = send(&mut c, &[0x00, 0xB0, 0x95, 0x00, 0x1E]);
        let info = chip::records::PublicInfo::parse(&ef15).unwrap();
        assert_eq!(info.card_number.to_string(), NUMBER);
    }
}

#[test]
fn a_card_without_the_transit_key_refuses_the_card_type_script() {
    // `card` carries the CITY and HEALTH DAMKs only, as cards made before this change.
    let mut c = card(Algorithm::Tdes);
    send(&mut c, &apps::select_aid(chip::image::AID_TRANSIT));
    let ch = challenge(&mut c, None);
    let s = card_type_script(Algorithm::Tdes, CardType::Student, ch);
    assert_eq!(send(&mut c, &s[1]).1, 0x6982);
}
