//! The chip follows the card record (issue 8, item 6) over HTTP on both backends: a student
//! card made through instant issuance (the production keys path, DAMKs included), education
//! reporting the graduation through the feed API, the next contact fetching the EF15 script,
//! the emulated card executing it (EF15 byte 28 reads `01`, an offline fare quote from the
//! chip loses the student concession), the confirmation marking it done and a second contact
//! getting nothing; a tampered MAC or a wrong challenge refused by the card, the change
//! staying pending; a card whose type did not change getting nothing; every script and
//! confirmation audited.

mod common;

use chip::image::AID_TRANSIT;
use chip::{Card, CardType};
use platform::cards::{CardRequest, parse_reason};
use platform::operators::OperatorRequest;
use platform::production::EmulatedWriter;
use platform::testing::Backend;
use platform::{Caller, Platform};
use resident::Source;
use serde_json::{Value, json};
use store::Role;

const OUTLET: &str = "ZZ-CHIP";

async fn education_officer(app: &common::App) -> String {
    let p = &app.tp.platform;
    p.create_operator(
        &Caller::cli("test"),
        OperatorRequest {
            username: "edu-officer".into(),
            display_name: "edu-officer".into(),
            password: common::PASSWORD.into(),
            role: Role::DepartmentOfficer,
            department: Some(Source::Education),
        },
    )
    .await
    .unwrap();
    p.create_api_token(&Caller::cli("test"), "edu-officer", "test", 1)
        .await
        .unwrap()
}

/// A card of `card_type` for resident `id`, approved, then issued at the counter with the
/// emulated card writer: its keys come wrapped under the transport key from the master-key
/// store, like a bureau's, DAMKs of the maintained applications included.
async fn issue(
    p: &Platform,
    clerk: &Caller,
    id: &str,
    card_type: &str,
    alg: &str,
) -> (String, Card) {
    let n = p
        .apply_for_card(clerk, id, card_type, None)
        .await
        .unwrap()
        .number;
    p.card_action(
        clerk,
        &n,
        CardRequest::Approve,
        parse_reason("routine").unwrap(),
    )
    .await
    .unwrap();
    let tk = crypto::Key16::from_hex(keys::master::conformance::TEST_TRANSPORT_KEY).unwrap();
    let writer = EmulatedWriter::new(
        tk,
        0x0C41_0000_0000_0000 + n[8..].parse::<u64>().unwrap(),
        "123456",
    );
    let issued = p
        .instant_issue(clerk, OUTLET, &n, alg, &writer)
        .await
        .unwrap();
    assert_eq!(issued.card.state, "active");
    (n, issued.chip)
}

fn send(card: &mut Card, apdu: &[u8]) -> (Vec<u8>, u16) {
    let r = card.process(apdu);
    let (data, sw) = r.split_at(r.len() - 2);
    (data.to_vec(), u16::from_be_bytes([sw[0], sw[1]]))
}

/// What a counter does first: select TRANSIT and ask the card for a challenge.
fn select_and_challenge(card: &mut Card) -> [u8; 4] {
    assert_eq!(
        send(card, &issuance::apps::select_aid(AID_TRANSIT)).1,
        0x9000
    );
    let (c, sw) = send(card, &[0x00, 0x84, 0x00, 0x00, 0x04]);
    assert_eq!(sw, 0x9000);
    c.try_into().unwrap()
}

/// The card type as an offline terminal reads it from the chip (EF15 byte 28).
fn chip_card_type(card: &mut Card) -> CardType {
    chip::terminal::read_card(card).unwrap().public.card_type
}

/// The offline quote of a 2-yuan bus ride, priced from the chip's card type, as the
/// terminal agent's tap does.
fn offline_bus_fare(card: &mut Card) -> u32 {
    let ride = fares::Ride::Bus {
        line: "B2".into(),
        at_s: 1_000,
    };
    fares::default_rules()
        .quote(chip_card_type(card), &ride, None)
        .unwrap()
        .charged_fen
}

async fn contact(app: &common::App, token: &str, n: &str, challenge: [u8; 4], alg: &str) -> Value {
    let r = app
        .post_json(
            &format!("/api/v1/cards/{n}/contact"),
            Some(token),
            json!({ "challenge": hex::encode_upper(challenge), "algorithm": alg }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

async fn confirm(app: &common::App, token: &str, n: &str, version: i64, sw: u16) -> Value {
    let r = app
        .post_json(
            &format!("/api/v1/cards/{n}/contact/confirm"),
            Some(token),
            json!({ "item": "card_type", "version": version, "sw": format!("{sw:04X}") }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn apdus(script: &Value) -> Vec<Vec<u8>> {
    script["apdus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| hex::decode(a.as_str().unwrap()).unwrap())
        .collect()
}

/// Sends a script's APDUs; the last status word.
fn run(card: &mut Card, apdus: &[Vec<u8>]) -> u16 {
    let mut last = 0;
    for a in apdus {
        last = send(card, a).1;
    }
    last
}

async fn audited(app: &common::App, token: &str, action: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/api/v1/audit?action={action}&limit=50"),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().unwrap().clone()
}

/// Funds the holder's online account and runs a load's authorization (圈存) on the chip,
/// the platform over HTTP as the host; the answer's `chip_update_pending`.
async fn load_says_chip_update_pending(
    app: &common::App,
    token: &str,
    n: &str,
    card: &mut Card,
) -> bool {
    let p = &app.tp.platform;
    let resident = p
        .store
        .card_by_number(n)
        .await
        .unwrap()
        .unwrap()
        .resident_id;
    common::fund(
        p,
        ledger::AccountKey::citizen_online(resident),
        ledger::TransferKind::TopUp,
        1_000,
        &format!("fund-{n}"),
    )
    .await;
    let request = chip::terminal::LoadRequest {
        amount_fen: 500,
        terminal_id: chip::TerminalId::parse("112233445566").unwrap(),
        date: chip::BcdDate::parse("20261126").unwrap(),
        time: chip::BcdTime::new(12, 0, 0).unwrap(),
    };
    let mut pending = None;
    let rt = tokio::runtime::Handle::current();
    let outcome = chip::terminal::load(card, &request, &mut |init| {
        let mut body = init.balance_before_fen.to_be_bytes().to_vec();
        body.extend_from_slice(&init.online_counter.to_be_bytes());
        body.extend_from_slice(&[init.key_version, init.algorithm.id()]);
        body.extend_from_slice(&init.random);
        body.extend_from_slice(&init.mac1);
        let r = tokio::task::block_in_place(|| {
            rt.block_on(app.post_json(
                &format!("/api/v1/cards/{n}/loads"),
                Some(token),
                json!({
                    "idempotency_key": format!("load-{n}"),
                    "amount_fen": 500,
                    "initialize_response": hex::encode(&body),
                    "terminal_id": "112233445566",
                    "date": "20261126",
                    "time": "120000",
                }),
            ))
        });
        assert_eq!(r.status, 201, "{}", r.body);
        let v = r.json();
        pending = v["chip_update_pending"].as_bool();
        let mac2 = hex::decode(v["mac2"].as_str().unwrap()).unwrap();
        Ok(mac2.try_into().unwrap())
    });
    outcome.unwrap();
    pending.unwrap()
}

async fn graduation_rewrites_the_chip_at_the_next_contact(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    platform::testing::install_test_master_keys(&app.tp).unwrap();
    let admin = app.token(Role::Administrator).await;
    let clerk_token = app.token(Role::CounterClerk).await;
    let auditor = app.token(Role::Auditor).await;
    let police = app.token(Role::DepartmentOfficer).await;
    let education = education_officer(&app).await;
    let clerk = p
        .ensure_outlet_with_clerk(
            &Caller::cli("test"),
            OUTLET,
            "chip-clerk",
            "chip-clerk-pw-1",
        )
        .await
        .unwrap();

    let student_id = common::seeded_id(1);
    let (n, mut card) = issue(p, &clerk, &student_id, "student", "3DES").await;
    let (other, mut other_card) = issue(p, &clerk, &common::seeded_id(2), "ordinary", "SM4").await;
    assert_eq!(chip_card_type(&mut card), CardType::Student);
    assert_eq!(
        offline_bus_fare(&mut card),
        100,
        "half fare on a student chip"
    );

    // Nothing pending yet: a contact answers no script.
    let ch = select_and_challenge(&mut card);
    let c = contact(&app, &clerk_token, &n, ch, "3des").await;
    assert_eq!(
        (c["scripts"].clone(), c["pending"].clone()),
        (json!([]), json!(0))
    );

    // Education reports the graduation through the feed API: the record becomes ordinary,
    // and a chip update is pending for this card only.
    let r = app
        .post_json(
            "/api/v1/residents/changes?source=education",
            Some(&education),
            json!({ "changes": [{ "id_number": student_id, "student": "graduated" }] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["concessions_ended"], json!([n.clone()]));
    let u = app
        .get(&format!("/api/v1/cards/{n}/chip-updates"), Some(&auditor))
        .await;
    assert_eq!(u.status, 200, "{}", u.body);
    let u = u.json();
    assert_eq!(u["updates"][0]["item"], "card_type");
    assert_eq!(u["updates"][0]["value"], "ordinary");
    assert_eq!(u["updates"][0]["pending"], true);
    let version = u["updates"][0]["version"].as_i64().unwrap();
    // The chip still says student until the card is in a terminal's field.
    assert_eq!(chip_card_type(&mut card), CardType::Student);

    // A top-up terminal loading the card learns that a chip update is pending (the answer to
    // the load's authorization says so), so it runs a contact while the card is in its field.
    assert!(load_says_chip_update_pending(&app, &clerk_token, &n, &mut card).await);
    assert!(!load_says_chip_update_pending(&app, &clerk_token, &other, &mut other_card).await);

    // A card whose type did not change gets nothing.
    let ch = select_and_challenge(&mut other_card);
    let c = contact(&app, &clerk_token, &other, ch, "sm4").await;
    assert_eq!(
        (c["scripts"].clone(), c["pending"].clone()),
        (json!([]), json!(0))
    );

    // Only the counter's operators (and administrators) run contacts.
    let ch = select_and_challenge(&mut card);
    for token in [&auditor, &police, &education] {
        let r = app
            .post_json(
                &format!("/api/v1/cards/{n}/contact"),
                Some(token),
                json!({ "challenge": hex::encode_upper(ch), "algorithm": "3des" }),
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    // Bad input is named.
    let r = app
        .post_json(
            &format!("/api/v1/cards/{n}/contact"),
            Some(&clerk_token),
            json!({ "challenge": "1234", "algorithm": "3des" }),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("challenge"), "{}", r.body);

    // A tampered MAC: the card refuses (6988), the confirmation leaves the change pending.
    let c = contact(&app, &clerk_token, &n, ch, "3des").await;
    assert_eq!(c["pending"], 1);
    let script = &c["scripts"][0];
    assert_eq!(
        (
            script["item"].clone(),
            script["value"].clone(),
            script["version"].as_i64()
        ),
        (json!("card_type"), json!("ordinary"), Some(version))
    );
    let mut tampered = apdus(script);
    assert_eq!(hex::encode_upper(&tampered[1][..6]), "04D6951C0501");
    let last = tampered[1].len() - 1;
    tampered[1][last] ^= 0x01;
    let sw = run(&mut card, &tampered);
    assert_eq!(sw, 0x6988);
    let k = confirm(&app, &clerk_token, &n, version, sw).await;
    assert_eq!(
        (k["applied"].clone(), k["pending"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(chip_card_type(&mut card), CardType::Student);

    // A script for a wrong challenge: the card refuses it too.
    let mut wrong = select_and_challenge(&mut card);
    wrong[0] ^= 0xFF;
    let c = contact(&app, &clerk_token, &n, wrong, "3des").await;
    let sw = run(&mut card, &apdus(&c["scripts"][0]));
    assert_eq!(sw, 0x6988);
    let k = confirm(&app, &clerk_token, &n, version, sw).await;
    assert_eq!(
        (k["applied"].clone(), k["pending"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(chip_card_type(&mut card), CardType::Student);

    // The next good contact: the card takes the script, EF15 byte 28 reads 01.
    let ch = select_and_challenge(&mut card);
    let c = contact(&app, &clerk_token, &n, ch, "3des").await;
    let sw = run(&mut card, &apdus(&c["scripts"][0]));
    assert_eq!(sw, 0x9000);
    let (ef15, _) = send(&mut card, &[0x00, 0xB0, 0x95, 0x00, 0x1E]);
    assert_eq!(ef15[28], 0x01, "EF15 byte 28: ordinary");
    assert_eq!(
        offline_bus_fare(&mut card),
        200,
        "no student concession offline"
    );
    let k = confirm(&app, &clerk_token, &n, version, sw).await;
    assert_eq!(
        (k["applied"].clone(), k["pending"].clone()),
        (json!(true), json!(false))
    );
    // The same confirmation again (a retry) answers the same and writes nothing.
    let k = confirm(&app, &clerk_token, &n, version, sw).await;
    assert_eq!(k["applied"], true);

    // A second contact gets nothing.
    let ch = select_and_challenge(&mut card);
    let c = contact(&app, &clerk_token, &n, ch, "3des").await;
    assert_eq!(
        (c["scripts"].clone(), c["pending"].clone()),
        (json!([]), json!(0))
    );

    // Every script and every confirmation is in the card's history and on the audit chain.
    let h = app
        .get(&format!("/api/v1/cards/{n}/chip-updates"), Some(&auditor))
        .await
        .json();
    assert_eq!(h["updates"][0]["pending"], false);
    let steps: Vec<(String, Option<String>)> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["sw"].as_str().map(str::to_string),
            )
        })
        .collect();
    let step = |a: &str, sw: Option<&str>| (a.to_string(), sw.map(str::to_string));
    assert_eq!(
        steps,
        [
            step("script", None),
            step("failed", Some("6988")),
            step("script", None),
            step("failed", Some("6988")),
            step("script", None),
            step("applied", Some("9000")),
        ]
    );
    assert_eq!(audited(&app, &admin, "card.chip.script").await.len(), 3);
    let confirms = audited(&app, &admin, "card.chip.confirm").await;
    assert_eq!(confirms.len(), 3);
    assert!(
        confirms.iter().any(|e| e["detail"]
            .as_str()
            .unwrap()
            .contains("sw=9000 outcome=applied")),
        "{confirms:?}"
    );
    let v = app.get("/api/v1/audit/verify", Some(&admin)).await;
    assert_eq!(v.status, 200, "{}", v.body);
}

both_backends!(graduation_rewrites_the_chip_at_the_next_contact);
