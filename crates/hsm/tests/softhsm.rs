//! The PKCS#11 master-key store against SoftHSM2, each test on its own fresh token.
//!
//! SoftHSM2 reads its configuration from `SOFTHSM2_CONF` when the module initializes, and a
//! test may not change its own environment (`set_var` is unsafe), so each test re-runs
//! itself in a child process of this test binary with `SOFTHSM2_CONF` pointing at a temporary
//! `softhsm2.conf` whose token directory holds one token made by `softhsm2-util`. Missing
//! SoftHSM2 fails the test with what to install; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crypto::{Algorithm, Key16, MasterKeys};
use hsm::{HsmConfig, HsmError, HsmPin, Pkcs11MasterKeyStore, SOFTHSM2_MODULE};
use keys::master::conformance::{WORKED_DIV, check_worked_example, import_test_set};
use keys::master::{KeyRef, MasterKeyError, MasterKeyStore, MasterPurpose, PurchaseTacFields};

const LABEL: &str = "citycard-test";
const USER_PIN: &str = "246810";
const SO_PIN: &str = "13579135";
const INNER_ENV: &str = "CITYCARD_HSM_TEST_INNER";

fn require_softhsm() {
    assert!(
        Path::new(SOFTHSM2_MODULE).exists(),
        "SoftHSM2 module {SOFTHSM2_MODULE} is missing: install the Debian package `softhsm2` \
         (apt-get install softhsm2)"
    );
    let util = Command::new("softhsm2-util").arg("--version").output();
    assert!(
        util.is_ok_and(|o| o.status.success()),
        "softhsm2-util is missing: install the Debian package `softhsm2`"
    );
}

/// Creates a token in a temp dir and runs test `name` in a child process against it.
fn on_fresh_token(name: &str, body: fn()) {
    if std::env::var(INNER_ENV).as_deref() == Ok(name) {
        body();
        return;
    }
    require_softhsm();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            LABEL,
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ])
        .output()
        .expect("run softhsm2-util");
    assert!(
        init.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let out = Command::new(std::env::current_exe().unwrap())
        .env("SOFTHSM2_CONF", &conf)
        .env(INNER_ENV, name)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .output()
        .expect("re-run the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} on SoftHSM2 failed:\n{text}");
    assert!(
        text.contains(&format!("test {name} ... ok")),
        "{name} did not run in the child:\n{text}"
    );
}

fn config(pin: &str) -> HsmConfig {
    HsmConfig {
        module: PathBuf::from(SOFTHSM2_MODULE),
        token_label: LABEL.to_string(),
        user_pin: HsmPin::new(pin),
    }
}

fn open() -> Pkcs11MasterKeyStore {
    Pkcs11MasterKeyStore::open(&config(USER_PIN)).unwrap()
}

#[test]
fn worked_example_3des_by_components() {
    on_fresh_token("worked_example_3des_by_components", || {
        let store = open();
        let refs = import_test_set(&store, "transit");
        // DPK/DLK/DTK, load MAC1/MAC2/TAC and purchase TAC of the appendix, in the HSM.
        check_worked_example(&store, &refs, Algorithm::Tdes);
        assert!(store.test_key_set_present().unwrap());
        // KCVs the HSM reports equal the software ones.
        let test = MasterKeys::test_set();
        let listed = store.list().unwrap();
        let kcv_of = |p: MasterPurpose| {
            listed
                .iter()
                .find(|i| i.key.purpose() == p)
                .and_then(|i| i.kcv_tdes)
        };
        assert_eq!(
            kcv_of(MasterPurpose::Tac),
            Some(test.tac.kcv(Algorithm::Tdes))
        );
        assert_eq!(listed.len(), 4);
    });
}

#[test]
fn hsm_diversification_equals_crypto_for_many_cards() {
    on_fresh_token("hsm_diversification_equals_crypto_for_many_cards", || {
        let store = open();
        let refs = import_test_set(&store, "transit");
        let tk = Key16::from_hex(keys::master::conformance::TEST_TRANSPORT_KEY).unwrap();
        let test = MasterKeys::test_set();
        for seq in [1u32, 2, 99, 123_456_789] {
            let card = chip_div(seq);
            for (r, mk) in [
                (&refs[0], &test.purchase),
                (&refs[1], &test.load),
                (&refs[2], &test.tac),
            ] {
                let w = store
                    .diversify_wrapped(r, Algorithm::Tdes, &card, &refs[3])
                    .unwrap();
                let got = keys::master::unwrap_card_key(Algorithm::Tdes, &tk, &w.wrapped);
                assert_eq!(
                    got,
                    crypto::diversify(Algorithm::Tdes, mk, &card),
                    "{r} card {seq}"
                );
            }
        }
    });
}

/// D for a card number with sequence `seq` (Luhn digit irrelevant to diversification).
fn chip_div(seq: u32) -> crypto::DivData {
    let digits = format!("410100{seq:09}0");
    let mut d = [0u8; 8];
    for (i, pair) in digits.as_bytes().chunks(2).enumerate() {
        d[i] = ((pair[0] - b'0') << 4) | (pair[1] - b'0');
    }
    crypto::DivData(d)
}

#[test]
fn master_keys_are_not_extractable() {
    on_fresh_token("master_keys_are_not_extractable", || {
        let store = open();
        let refs = import_test_set(&store, "transit");
        let generated = KeyRef::transit(MasterPurpose::Tac, 2);
        store.generate(&generated).unwrap();
        for r in refs.iter().chain([&generated]) {
            let p = store.protection(r).unwrap();
            assert!(p.sensitive && !p.extractable && p.token, "{r}: {p:?}");
            // Imported keys were once outside the HSM, so PKCS#11 rightly reports them as not
            // "always sensitive"; a key generated inside is both.
            if *r == generated {
                assert!(p.never_extractable && p.always_sensitive, "{r}: {p:?}");
            }
            assert_eq!(store.try_read_value(r).unwrap(), None, "{r} value readable");
        }
        // A generated key is a real 3DES key: it diversifies.
        assert!(
            store
                .diversify_wrapped(&generated, Algorithm::Tdes, &WORKED_DIV, &refs[3])
                .is_ok()
        );
        assert!(!format!("{store:?}").contains(USER_PIN));
    });
}

#[test]
fn wrong_pin_is_a_clear_error() {
    on_fresh_token("wrong_pin_is_a_clear_error", || {
        let err = Pkcs11MasterKeyStore::open(&config("000000")).unwrap_err();
        assert!(matches!(err, HsmError::WrongPin), "{err}");
        assert!(err.to_string().contains("PIN"), "{err}");
        let missing = Pkcs11MasterKeyStore::open(&HsmConfig {
            token_label: "no-such-token".into(),
            ..config(USER_PIN)
        })
        .unwrap_err();
        assert!(matches!(missing, HsmError::TokenNotFound(_)), "{missing}");
        let no_module = Pkcs11MasterKeyStore::open(&HsmConfig {
            module: "/nonexistent/libpkcs11.so".into(),
            ..config(USER_PIN)
        })
        .unwrap_err();
        assert!(no_module.to_string().contains("softhsm2"), "{no_module}");
    });
}

#[test]
fn sm4_is_unsupported_and_says_so() {
    on_fresh_token("sm4_is_unsupported_and_says_so", || {
        let store = open();
        let refs = import_test_set(&store, "transit");
        let err = store
            .diversify_wrapped(&refs[0], Algorithm::Sm4, &WORKED_DIV, &refs[3])
            .unwrap_err();
        assert!(matches!(err, MasterKeyError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("SM4"), "{err}");
        let fields = PurchaseTacFields {
            amount_fen: 1,
            tx_type: crypto::TransactionType::Purchase,
            terminal_id: [0; 6],
            terminal_serial: 1,
            date: [0x20, 0x26, 0x01, 0x01],
            time: [0; 3],
        };
        assert!(matches!(
            store.verify_purchase_tac(&refs[2], Algorithm::Sm4, &WORKED_DIV, &fields, &[0; 4]),
            Err(MasterKeyError::Unsupported { .. })
        ));
        // Duplicate import is refused, the original stays.
        assert!(matches!(
            store.generate(&refs[0]),
            Err(MasterKeyError::Exists(_))
        ));
    });
}

#[test]
fn card_personalized_from_hsm_keys_passes_hsm_tac_check() {
    on_fresh_token(
        "card_personalized_from_hsm_keys_passes_hsm_tac_check",
        || {
            use chip::terminal::{PurchaseRequest, purchase};
            let store = open();
            let [purchase_ref, load_ref, tac_ref, transport] = import_test_set(&store, "transit");
            let number = chip::CardNumber::parse("4101000000000018").unwrap();
            let div = number.div_data();
            let deliver = |r: &KeyRef| {
                let w = store
                    .diversify_wrapped(r, Algorithm::Tdes, &div, &transport)
                    .unwrap();
                chip::TransportedKey {
                    wrapped: w.wrapped,
                    kcv: w.kcv,
                }
            };
            let keys = chip::TransportedPurseKeys {
                dpk: deliver(&purchase_ref),
                dlk: deliver(&load_ref),
                dtk: deliver(&tac_ref),
            };
            let start = chip::BcdDate::parse("20250101").unwrap();
            let record = chip::PersonalizationRecord {
                card_number: number,
                holder_name: "Zhang San".into(),
                id_number: "41010219900101123X".into(),
                card_type: chip::CardType::Ordinary,
                start_date: start,
                expiry_date: start.plus_years(10).unwrap(),
                algorithm: Algorithm::Tdes,
                employee: false,
                pin: "123456".into(),
                rng_seed: 9,
            };
            let tk = Key16::from_hex(keys::master::conformance::TEST_TRANSPORT_KEY).unwrap();
            // The wrong transport key is caught by the KCVs.
            assert!(matches!(
                chip::personalize_transported(&record, &keys, &[], &Key16::from_bytes([7; 16])),
                Err(chip::TransportError::KcvMismatch { .. })
            ));
            let mut card = chip::personalize_transported(&record, &keys, &[], &tk).unwrap();
            assert_eq!(
                card.image().purse().unwrap().keys,
                MasterKeys::test_set().diversify(Algorithm::Tdes, &div)
            );
            // Give the card a balance through its own image, then buy.
            let mut image = card.into_image();
            for app in &mut image.apps {
                if let Some(p) = &mut app.purse {
                    p.balance_fen = 1_000;
                }
            }
            card = chip::Card::from_image(image);
            let terminal = chip::TerminalId::parse("112233445566").unwrap();
            let mut psam = chip::Psam::new(terminal, MasterKeys::test_set().purchase);
            let outcome = purchase(
                &mut card,
                &mut psam,
                &PurchaseRequest {
                    amount_fen: 150,
                    date: chip::BcdDate::parse("20261126").unwrap(),
                    time: chip::BcdTime::new(9, 0, 0).unwrap(),
                },
                &|_| false,
            )
            .unwrap();
            let r = &outcome.record;
            let fields = PurchaseTacFields {
                amount_fen: r.amount_fen,
                tx_type: r.tx_type,
                terminal_id: *r.terminal_id.as_bytes(),
                terminal_serial: r.terminal_serial,
                date: r.date.to_bcd(),
                time: r.time.to_bcd(),
            };
            assert!(
                store
                    .verify_purchase_tac(&tac_ref, Algorithm::Tdes, &div, &fields, &r.tac)
                    .unwrap()
            );
        },
    );
}
