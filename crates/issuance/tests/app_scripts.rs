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
