//! Application management through the platform on both backends: the seed registry, department
//! scoping, and a function enabled on a card end to end through the card emulator (script,
//! card, confirmation), with the card refusing a bad MAC and a replay.

use crate::fixture::{Fixture, admin, caller, id, import};
use crate::on_both_backends;
use chip::image::{AID_CITY, AID_HEALTH};
use chip::{
    BcdDate, Card, CardNumber, CardType, MaintenanceMaster, PersonalizationRecord,
    personalize_with_maintenance,
};
use crypto::{Algorithm, MasterKeys, test_maintenance_master};
use issuance::apps::{AppFile, Application, Code, FileStructure, Function, Owner, Target};
use keys::master::{FileMasterKeyStore, MasterPurpose};
use platform::cards::{CardRequest, parse_reason};
use platform::{Caller, PlatformError};
use resident::Source;
use std::sync::Arc;
use store::Role;

/// An active card of a fresh resident, through the whole life cycle.
async fn active_card(f: &Fixture) -> String {
    let adult = id("410105", 1980, 5, 1, 21);
    let csv = format!("id_number,name,phone,address,residency\n{adult},王应用,,,resident\n");
    import(&f.p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let clerk = caller("clerk", Role::CounterClerk, None);
    let n =
        f.p.apply_for_card(&clerk, &adult, "ordinary", None)
            .await
            .unwrap()
            .number;
    let steps: [(&Caller, CardRequest, &str); 5] = [
        (&clerk, CardRequest::Approve, "routine"),
        (&admin(), CardRequest::SendToProduction, "routine"),
        (&admin(), CardRequest::ProductionDone, "routine"),
        (&clerk, CardRequest::Post, "routine"),
        (&clerk, CardRequest::Activate, "holder_request"),
    ];
    for (who, req, reason) in steps {
        f.p.card_action(who, &n, req, parse_reason(reason).unwrap())
            .await
            .unwrap();
    }
    n
}

fn chip_card(number: &str, alg: Algorithm) -> Card {
    let m = test_maintenance_master();
    personalize_with_maintenance(
        &PersonalizationRecord {
            card_number: CardNumber::parse(number).unwrap(),
            holder_name: "王应用".into(),
            id_number: "410105198005010021".into(),
            card_type: CardType::Ordinary,
            start_date: BcdDate::new(2026, 11, 26).unwrap(),
            expiry_date: BcdDate::new(2036, 11, 26).unwrap(),
            algorithm: alg,
            employee: false,
            pin: "123456".into(),
            rng_seed: 42,
        },
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

fn install_keys(f: &Fixture) {
    let store = FileMasterKeyStore::create(
        &f.key_dir.path().join("master-keys.json"),
        b"apps test master keys",
    )
    .unwrap();
    store.load_test_maintenance_key("city").unwrap();
    store.load_test_maintenance_key("health").unwrap();
    f.p.set_master_keys(Arc::new(store));
}

fn send(card: &mut Card, apdu: &[u8]) -> (Vec<u8>, u16) {
    let r = card.process(apdu);
    let (data, sw) = r.split_at(r.len() - 2);
    (data.to_vec(), u16::from_be_bytes([sw[0], sw[1]]))
}

fn get_challenge(card: &mut Card) -> [u8; 4] {
    let (c, sw) = send(card, &[0x00, 0x84, 0x00, 0x00, 0x04]);
    assert_eq!(sw, 0x9000);
    c.try_into().unwrap()
}

on_both_backends!(the_seed_registry_and_department_scoping);

async fn the_seed_registry_and_department_scoping(f: Fixture) {
    let p = &f.p;
    assert_eq!(p.apps_seed(&admin()).await.unwrap(), 10);
    // Idempotent.
    assert_eq!(p.apps_seed(&admin()).await.unwrap(), 0);
    let r = p.apps_registry().await.unwrap();
    let owner = |c: &str| r.app(c).unwrap().owner;
    assert_eq!(owner("ssse"), Owner::Department(Source::HrSocialSecurity));
    assert_eq!(owner("transit"), Owner::CardCompany);
    assert_eq!(owner("city"), Owner::CardCompany);
    assert_eq!(owner("health"), Owner::Department(Source::Health));
    let mut codes: Vec<&str> = r.functions.iter().map(|f| f.code.as_str()).collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "access_groups",
            "campus",
            "canteen_wallet",
            "concessions",
            "hospital",
            "library"
        ]
    );
    assert_eq!(r.function("hospital").unwrap().app.as_str(), "health");

    // A department registers its own application; another department may not, nor add
    // functions to it, nor to the card company's.
    let health = caller(
        "health_officer",
        Role::DepartmentOfficer,
        Some(Source::Health),
    );
    let hrss = caller(
        "hrss",
        Role::DepartmentOfficer,
        Some(Source::HrSocialSecurity),
    );
    let vaccine = Application {
        code: Code::parse("vaccine").unwrap(),
        name: "疫苗接种 Vaccination".into(),
        aid: vec![0xF0, 0x56, 0x41, 0x43, 0x43, 0x01],
        owner: Owner::Department(Source::Health),
        files: vec![AppFile {
            sfi: 1,
            structure: FileStructure::Linear {
                record_len: 16,
                records: 4,
            },
        }],
        key_purposes: vec![MasterPurpose::Maintenance],
    };
    let before = crate::fixture::audit_seq(p).await;
    let r = p.app_register(&hrss, &vaccine).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    assert_eq!(
        crate::fixture::audit_seq(p).await,
        before,
        "a refusal writes nothing"
    );
    p.app_register(&health, &vaccine).await.unwrap();
    let dose = Function {
        code: Code::parse("dose_record").unwrap(),
        name: "接种记录 Doses".into(),
        app: vaccine.code.clone(),
        target: Target::Record { sfi: 1, record: 1 },
        parameters: vec![],
    };
    let r = p.function_register(&hrss, &dose).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    p.function_register(&health, &dose).await.unwrap();
    let campus2 = Function {
        code: Code::parse("campus_two").unwrap(),
        name: "校园二 Campus 2".into(),
        app: Code::parse("city").unwrap(),
        target: Target::Record { sfi: 3, record: 6 },
        parameters: vec![],
    };
    let r = p.function_register(&health, &campus2).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    // Invalid entries are refused with a reason and write nothing.
    let mut bad = vaccine.clone();
    bad.code = Code::parse("bad").unwrap();
    bad.aid = vec![1, 2];
    let r = p.app_register(&health, &bad).await;
    assert!(matches!(r, Err(PlatformError::Invalid { .. })), "{r:?}");
    let mut dup = vaccine.clone();
    dup.code = Code::parse("vaccine2").unwrap();
    let r = p.app_register(&health, &dup).await;
    assert!(
        matches!(r, Err(PlatformError::Conflict(_))),
        "same AID: {r:?}"
    );
    assert_eq!(p.apps_registry().await.unwrap().apps.len(), 5);
}

on_both_backends!(a_function_enabled_on_a_card_through_the_emulator);

async fn a_function_enabled_on_a_card_through_the_emulator(f: Fixture) {
    let p = &f.p;
    p.apps_seed(&admin()).await.unwrap();
    let n = active_card(&f).await;
    let clerk = caller("clerk", Role::CounterClerk, None);

    // No master-key store yet: refused, nothing pending.
    let mut card = chip_card(&n, Algorithm::Sm4);
    send(&mut card, &issuance::apps::select_aid(AID_CITY));
    let ch = get_challenge(&mut card);
    let r = p
        .card_function_script(&clerk, &n, "library", true, Algorithm::Sm4, ch)
        .await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");
    assert!(p.card_functions(&clerk, &n).await.unwrap().is_empty());
    install_keys(&f);

    // Enable the library: pending, the card takes the script, confirmed → applied.
    let s = p
        .card_function_script(&clerk, &n, "library", true, Algorithm::Sm4, ch)
        .await
        .unwrap();
    let states = p.card_functions(&clerk, &n).await.unwrap();
    assert_eq!((states[0].enabled, states[0].pending), (false, Some(true)));
    let mut last = 0;
    for apdu in &s.apdus {
        last = send(&mut card, apdu).1;
    }
    assert_eq!(last, 0x9000);
    let c = p
        .card_function_confirm(&clerk, &n, "library", last)
        .await
        .unwrap();
    assert!(c.applied && c.state.enabled && c.state.pending.is_none());
    let (rec, _) = send(&mut card, &[0x00, 0xB2, 0x03, 0x1C, 0x10]);
    assert_eq!(rec[0], 0x01);
    // Enabling again is refused.
    let ch = get_challenge(&mut card);
    let r = p
        .card_function_script(&clerk, &n, "library", true, Algorithm::Sm4, ch)
        .await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");

    // The card refuses a replay of the applied script (its challenge is spent) and a bad MAC.
    assert_eq!(send(&mut card, &s.apdus[1]).1, 0x6988);
    let ch = get_challenge(&mut card);
    let d = p
        .card_function_script(&clerk, &n, "library", false, Algorithm::Sm4, ch)
        .await
        .unwrap();
    let mut bad = d.apdus[1].clone();
    let last_byte = bad.len() - 1;
    bad[last_byte] ^= 0xFF;
    assert_eq!(send(&mut card, &bad).1, 0x6988);
    let c = p
        .card_function_confirm(&clerk, &n, "library", 0x6988)
        .await
        .unwrap();
    assert!(!c.applied && c.state.enabled, "still enabled: {c:?}");
    assert_eq!(send(&mut card, &[0x00, 0xB2, 0x03, 0x1C, 0x10]).0[0], 0x01);
    let r = p.card_function_confirm(&clerk, &n, "library", 0x9000).await;
    assert!(
        matches!(r, Err(PlatformError::Conflict(_))),
        "nothing pending: {r:?}"
    );

    // Department scoping on cards: HR may not touch HEALTH's hospital; health may.
    let hrss = caller(
        "hrss",
        Role::DepartmentOfficer,
        Some(Source::HrSocialSecurity),
    );
    let health = caller(
        "health_officer",
        Role::DepartmentOfficer,
        Some(Source::Health),
    );
    send(&mut card, &issuance::apps::select_aid(AID_HEALTH));
    let ch = get_challenge(&mut card);
    let r = p
        .card_function_script(&hrss, &n, "hospital", true, Algorithm::Sm4, ch)
        .await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    let r = p
        .card_function_script(&health, &n, "library", true, Algorithm::Sm4, ch)
        .await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    let s = p
        .card_function_script(&health, &n, "hospital", true, Algorithm::Sm4, ch)
        .await
        .unwrap();
    for apdu in &s.apdus {
        assert_eq!(send(&mut card, apdu).1, 0x9000);
    }
    p.card_function_confirm(&health, &n, "hospital", 0x9000)
        .await
        .unwrap();

    // The history, in order, and on the audit log.
    let h = p.card_function_history(&clerk, &n).await.unwrap();
    let steps: Vec<(&str, &str, Option<i32>)> = h
        .iter()
        .map(|e| (e.function.as_str(), e.action.as_str(), e.sw))
        .collect();
    assert_eq!(
        steps,
        [
            ("library", "script_enable", None),
            ("library", "applied", Some(0x9000)),
            ("library", "script_disable", None),
            ("library", "failed", Some(0x6988)),
            ("hospital", "script_enable", None),
            ("hospital", "applied", Some(0x9000)),
        ]
    );
    let audit = p
        .store
        .audit_recent(Some("card.function.confirm"), 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 3);
    assert!(p.audit_verify().await.unwrap().is_ok());

    // A card that is not in its holder's hands is not updated.
    p.card_action(
        &caller("officer", Role::Administrator, None),
        &n,
        CardRequest::Freeze,
        parse_reason("fraud").unwrap(),
    )
    .await
    .unwrap();
    let ch = get_challenge(&mut card);
    let r = p
        .card_function_script(&clerk, &n, "campus", true, Algorithm::Sm4, ch)
        .await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("frozen")),
        "{r:?}"
    );
}

on_both_backends!(a_bureau_made_card_carries_its_holder_id_and_takes_scripts);

/// A card made the production way — batch, personalization file (ID number sealed, DAMKs
/// wrapped under the transport key), emulated bureau, results, outlet, counter — comes out with
/// its holder's ID number on the chip and takes post-issuance scripts under its DAMK.
async fn a_bureau_made_card_carries_its_holder_id_and_takes_scripts(f: Fixture) {
    let p = &f.p;
    f.install_master_keys();
    p.apps_seed(&admin()).await.unwrap();
    let adult = id("410105", 1981, 6, 2, 31);
    let csv = format!("id_number,name,phone,address,residency\n{adult},赵制卡,,,resident\n");
    import(p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let clerk = caller("clerk", Role::CounterClerk, None);
    let n = p
        .apply_for_card(&clerk, &adult, "ordinary", None)
        .await
        .unwrap()
        .number;
    p.card_action(
        &clerk,
        &n,
        CardRequest::Approve,
        parse_reason("routine").unwrap(),
    )
    .await
    .unwrap();
    let batch = p.create_batch(&admin(), 10, "SM4").await.unwrap().batch.id;
    let file = p.export_batch(&admin(), &batch).await.unwrap();
    let config = issuance::production::BureauConfig {
        transport_key: crypto::Key16::from_hex(keys::master::conformance::TEST_TRANSPORT_KEY)
            .unwrap(),
        serial_first: 0x0B0C_0000_0000_0001,
        initial_pin: "123456".into(),
        fail: Vec::new(),
    };
    let mut results = Vec::new();
    let mut run =
        issuance::production::emulate_bureau(file.bytes.as_slice(), &config, &mut results).unwrap();
    p.import_results(&admin(), &batch, &results).await.unwrap();
    let desk = p
        .ensure_outlet_with_clerk(&admin(), "ZZ-P1", "desk", "desk-password-1")
        .await
        .unwrap();
    p.distribute_batch(&admin(), &batch, "ZZ-P1", None)
        .await
        .unwrap();
    assert_eq!(
        p.counter_hand_over(&desk, "ZZ-P1", &n).await.unwrap().state,
        "active"
    );

    let card = &mut run.produced[0].card;
    let info = chip::terminal::read_card(card).unwrap();
    assert_eq!(info.public.card_number.to_string(), n);
    assert_eq!(info.holder.name().unwrap(), "赵制卡");
    assert_eq!(&info.holder.id_number[..18], adult.as_bytes());
    assert!(info.holder.id_number[18..].iter().all(|&b| b == 0));

    let ch = get_challenge(card);
    let s = p
        .card_function_script(&clerk, &n, "campus", true, Algorithm::Sm4, ch)
        .await
        .unwrap();
    let mut last = 0;
    for apdu in &s.apdus {
        last = send(card, apdu).1;
    }
    assert_eq!(last, 0x9000);
    let c = p
        .card_function_confirm(&clerk, &n, "campus", last)
        .await
        .unwrap();
    assert!(c.applied && c.state.enabled);
    let (rec, _) = send(card, &[0x00, 0xB2, 0x01, 0x1C, 0x10]);
    assert_eq!(rec[0], 0x01);
}
