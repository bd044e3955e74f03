//! Production and counter work through the platform on both backends: the full loop (apply →
//! approve → batch → export → emulated bureau → import with one failure → distribute → hand
//! over → active), the refusals (tampered, truncated or another batch's result file, a second
//! import, a clerk at another outlet), the counter journal and a reconciliation with a
//! difference, and instant issuance whose card image pays at a terminal.

use crate::fixture::{Fixture, admin, caller, id, import};
use crate::on_both_backends;
use chip::terminal::{LoadRequest, PurchaseRequest, load, purchase};
use chip::{BcdDate, BcdTime, CardImage, Psam, TerminalId};
use crypto::{Algorithm, Key16, MasterKeys};
use issuance::production::{BureauConfig, emulate_bureau};
use keys::master::{
    FileMasterKeyStore, KeyComponent, KeyRef, LoadFields, MasterKeyStore, MasterPurpose,
    PurchaseTacFields,
};
use platform::cards::{CardRequest, parse_reason};
use platform::operators::OperatorRequest;
use platform::production::{EmulatedWriter, FEES};
use platform::{Caller, Platform, PlatformError};
use resident::Source;
use std::sync::Arc;
use store::Role;

const COMPONENT_A: &str = "0123456789ABCDEFFEDCBA9876543210";
const COMPONENT_B: &str = "00112233445566778899AABBCCDDEEFF";

/// The transport key as the bureau holds it (A XOR B).
fn transport_key() -> Key16 {
    let a = Key16::from_hex(COMPONENT_A).unwrap();
    let b = Key16::from_hex(COMPONENT_B).unwrap();
    let mut k = [0u8; 16];
    for (i, o) in k.iter_mut().enumerate() {
        *o = a.expose()[i] ^ b.expose()[i];
    }
    Key16::from_bytes(k)
}

struct Setup {
    p: Platform,
    keys: Arc<FileMasterKeyStore>,
    _key_dir: tempfile::TempDir,
    clerk_a: Caller,
    clerk_b: Caller,
    /// Card numbers of approved cards, one per resident.
    cards: Vec<String>,
}

/// `n` adult residents with approved cards, the development key set plus a transport key,
/// outlets ZZ-A and ZZ-B with one clerk each.
async fn setup(f: &Fixture, n: u16) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys = FileMasterKeyStore::create(&dir.path().join("master.json"), b"test").unwrap();
    keys.load_test_key_set("transit").unwrap();
    let components: Vec<KeyComponent> = [COMPONENT_A, COMPONENT_B]
        .iter()
        .enumerate()
        .map(|(i, hex)| {
            let kcv = Key16::from_hex(hex).unwrap().kcv(Algorithm::Tdes);
            KeyComponent::parse(i + 1, hex, &hex::encode_upper(kcv), Algorithm::Tdes).unwrap()
        })
        .collect();
    keys.import_components(
        &KeyRef::transit(MasterPurpose::Transport, 1),
        &components,
        Algorithm::Tdes,
        None,
    )
    .unwrap();
    let keys = Arc::new(keys);
    let p = f.p.clone().with_master_keys(keys.clone());

    let mut csv = String::from("id_number,name,phone,address,residency\n");
    let ids: Vec<String> = (0..n)
        .map(|i| id("410105", 1970 + i32::from(i), 3, 1, 100 + i))
        .collect();
    for (i, x) in ids.iter().enumerate() {
        csv.push_str(&format!("{x},张{i}号,,,resident\n"));
    }
    import(&p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let desk = caller("desk", Role::CounterClerk, None);
    let mut cards = Vec::new();
    for x in &ids {
        let c = p.apply_for_card(&desk, x, "ordinary", None).await.unwrap();
        p.card_action(
            &desk,
            &c.number,
            CardRequest::Approve,
            parse_reason("routine").unwrap(),
        )
        .await
        .unwrap();
        cards.push(c.number);
    }
    for (code, clerk) in [("ZZ-A", "clerk-a"), ("ZZ-B", "clerk-b")] {
        p.outlet_create(
            &admin(),
            code,
            "金水服务网点",
            "Jinshui outlet",
            "金水路 1 号",
        )
        .await
        .unwrap();
        p.create_operator(
            &admin(),
            OperatorRequest {
                username: clerk.into(),
                display_name: clerk.into(),
                password: "clerk-password-1".into(),
                role: Role::CounterClerk,
                department: None,
            },
        )
        .await
        .unwrap();
        p.clerk_assign(&admin(), code, clerk).await.unwrap();
    }
    Setup {
        clerk_a: p.clerk_caller("clerk-a", "test").await.unwrap(),
        clerk_b: p.clerk_caller("clerk-b", "test").await.unwrap(),
        p,
        keys,
        _key_dir: dir,
        cards,
    }
}

fn bureau(fail: &[&str]) -> BureauConfig {
    BureauConfig {
        transport_key: transport_key(),
        serial_first: 0x0A0B_0C0D_0000_0001,
        initial_pin: "123456".into(),
        fail: fail
            .iter()
            .map(|n| {
                (
                    chip::CardNumber::parse(n).unwrap(),
                    "print head jam".to_string(),
                )
            })
            .collect(),
    }
}

async fn state(p: &Platform, number: &str) -> String {
    p.card(&admin(), number).await.unwrap().state
}

fn invalid_mentions(r: &Result<impl std::fmt::Debug, PlatformError>, words: &str) -> bool {
    matches!(r, Err(PlatformError::Invalid { message, .. }) if message.contains(words))
}

on_both_backends!(
    production_loop_with_refusals,
    counter_journal_and_reconciliation,
    instant_issuance_makes_a_card_that_pays
);

async fn production_loop_with_refusals(f: Fixture) {
    let s = setup(&f, 4).await;
    let p = &s.p;
    let today = p.clock.today().to_string();

    // A batch of at most 3 takes the first three approved cards.
    let created = p.create_batch(&admin(), 3, "SM4").await.unwrap();
    let b1 = created.batch.id.clone();
    assert_eq!((b1.as_str(), created.batch.card_count), ("B000001", 3));
    assert_eq!(created.batch.state, "created");
    for n in &s.cards[..3] {
        assert_eq!(state(p, n).await, "in_production");
    }
    assert_eq!(state(p, &s.cards[3]).await, "approved");
    // Only administrators make batches; a clerk is refused.
    let r = p.create_batch(&s.clerk_a, 1, "SM4").await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    // Results before the export are refused.
    let r = p.import_results(&admin(), &b1, b"x").await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("never exported")),
        "{r:?}"
    );

    // The export: keys wrapped, never in clear; the same bytes a second time.
    let file = p.export_batch(&admin(), &b1).await.unwrap();
    assert_eq!(file.card_count, 3);
    let text = String::from_utf8(file.bytes.clone()).unwrap();
    assert!(
        text.starts_with("CCPERSO|2|B000001|3|1|transit/transport/v1|"),
        "{text}"
    );
    assert!(text.contains("|张0号|"));
    let test = MasterKeys::test_set();
    for k in [&test.purchase, &test.load, &test.tac] {
        assert!(!text.contains(&hex::encode_upper(k.expose())));
    }
    assert_eq!(
        p.export_batch(&admin(), &b1).await.unwrap().bytes,
        file.bytes
    );
    assert_eq!(p.batch(&admin(), &b1).await.unwrap().exports, 2);

    // The bureau produces two cards and fails the third.
    let mut results = Vec::new();
    let run = emulate_bureau(file.bytes.as_slice(), &bureau(&[&s.cards[2]]), &mut results).unwrap();
    assert_eq!(run.produced.len(), 2);

    // Refused, each changing nothing: tampered, truncated, another batch's file.
    let mut tampered = results.clone();
    let i = tampered.iter().position(|b| *b == b'O').unwrap();
    tampered[i] = b'X';
    let r = p.import_results(&admin(), &b1, &tampered).await;
    assert!(invalid_mentions(&r, "nothing imported"), "{r:?}");
    let r = p
        .import_results(&admin(), &b1, &results[..results.len() - 20])
        .await;
    assert!(invalid_mentions(&r, "truncated"), "{r:?}");
    let b2 = p.create_batch(&admin(), 10, "3DES").await.unwrap().batch.id;
    assert_eq!(b2, "B000002");
    let file2 = p.export_batch(&admin(), &b2).await.unwrap();
    let mut results2 = Vec::new();
    emulate_bureau(file2.bytes.as_slice(), &bureau(&[]), &mut results2).unwrap();
    let r = p.import_results(&admin(), &b1, &results2).await;
    assert!(
        invalid_mentions(&r, "for batch B000002, not B000001"),
        "{r:?}"
    );
    assert_eq!(p.batch(&admin(), &b1).await.unwrap().state, "exported");
    for n in &s.cards[..3] {
        assert_eq!(state(p, n).await, "in_production");
        assert_eq!(p.chip_serial(&admin(), n).await.unwrap(), None);
    }

    // The real import: two produced with serials and validity, one back to approved.
    let report = p.import_results(&admin(), &b1, &results).await.unwrap();
    assert_eq!(report.produced, 2);
    assert_eq!(
        report.failed,
        vec![(s.cards[2].clone(), "print head jam".to_string())]
    );
    assert_eq!(
        (
            report.batch.state.as_str(),
            report.batch.produced,
            report.batch.failed
        ),
        ("imported", 2, 1)
    );
    assert_eq!(state(p, &s.cards[0]).await, "produced");
    assert!(
        p.card(&admin(), &s.cards[0])
            .await
            .unwrap()
            .valid_until_s
            .is_some()
    );
    assert_eq!(state(p, &s.cards[2]).await, "approved");
    assert_eq!(
        p.chip_serial(&admin(), &s.cards[0])
            .await
            .unwrap()
            .as_deref(),
        Some("0A0B0C0D00000001")
    );
    // A second import is refused and changes nothing.
    let r = p.import_results(&admin(), &b1, &results).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("already imported")),
        "{r:?}"
    );
    assert_eq!(state(p, &s.cards[0]).await, "produced");
    // A produced batch's file is not issued again.
    let r = p.export_batch(&admin(), &b1).await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");

    // Distribution to outlet A: stock by state, waiting cards.
    let d = p
        .distribute_batch(&admin(), &b1, "zz-a", None)
        .await
        .unwrap();
    assert_eq!((d.delivered, d.remaining), (2, 0));
    let r = p.distribute_batch(&admin(), &b1, "ZZ-A", None).await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");
    let stock = p.outlet_stock(&s.clerk_a, "ZZ-A").await.unwrap();
    assert_eq!(stock.by_state.get("at_outlet"), Some(&2));
    assert_eq!(stock.waiting.len(), 2);
    assert!(stock.waiting[0].holder_name.contains('*'));
    // A clerk sees only its own outlet.
    let r = p.outlet_stock(&s.clerk_b, "ZZ-A").await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    // Hand-over: not by the clerk of another outlet, not at an outlet the card is not at.
    let r = p.counter_hand_over(&s.clerk_b, "ZZ-A", &s.cards[0]).await;
    assert!(
        matches!(&r, Err(PlatformError::Forbidden(m)) if m.contains("works at outlet ZZ-B")),
        "{r:?}"
    );
    let r = p.counter_hand_over(&s.clerk_b, "ZZ-B", &s.cards[0]).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("waits at outlet ZZ-A")),
        "{r:?}"
    );
    let r = p.counter_hand_over(&admin(), "ZZ-A", &s.cards[0]).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    assert_eq!(state(p, &s.cards[0]).await, "at_outlet");
    let v = p
        .counter_hand_over(&s.clerk_a, "ZZ-A", &s.cards[0])
        .await
        .unwrap();
    assert_eq!(v.state, "active");
    let events: Vec<String> = p
        .store
        .card_events(&s.cards[0])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to_state)
        .collect();
    assert_eq!(
        events,
        [
            "applied",
            "approved",
            "in_production",
            "produced",
            "at_outlet",
            "issued",
            "active"
        ]
    );
    let stock = p.outlet_stock(&admin(), "ZZ-A").await.unwrap();
    assert_eq!(stock.by_state.get("active"), Some(&1));
    assert_eq!(stock.by_state.get("at_outlet"), Some(&1));

    let journal = p.counter_journal(&admin(), "ZZ-A", &today).await.unwrap();
    assert_eq!(journal.counts.get("card_issued"), Some(&1));
    assert_eq!(journal.lines[0].clerk, "clerk-a");
    assert_eq!(
        journal.lines[0].card_number.as_deref(),
        Some(s.cards[0].as_str())
    );
    assert!(p.audit_verify().await.unwrap().is_ok());
}

async fn counter_journal_and_reconciliation(f: Fixture) {
    let s = setup(&f, 2).await;
    let p = &s.p;
    let today = p.clock.today().to_string();
    let b = p.create_batch(&admin(), 2, "SM4").await.unwrap().batch.id;
    let file = p.export_batch(&admin(), &b).await.unwrap();
    let mut results = Vec::new();
    emulate_bureau(file.bytes.as_slice(), &bureau(&[]), &mut results).unwrap();
    p.import_results(&admin(), &b, &results).await.unwrap();
    p.distribute_batch(&admin(), &b, "ZZ-A", None)
        .await
        .unwrap();
    let (c1, c2) = (&s.cards[0], &s.cards[1]);
    p.counter_hand_over(&s.clerk_a, "ZZ-A", c1).await.unwrap();
    p.counter_hand_over(&s.clerk_a, "ZZ-A", c2).await.unwrap();
    // The holder's phone is bound to the card; a lost report at the counter revokes it, with
    // its audit entry, in the same transaction.
    let phone = ecode::Phone::new(
        ecode::DeviceId::parse("phone-c1").unwrap(),
        &crypto::Key32::from_bytes([0x21; 32]),
    )
    .unwrap();
    p.ecode_device_bind(
        &s.clerk_a,
        c1,
        phone.device_id().as_str(),
        &phone.public_key().to_compressed(),
    )
    .await
    .unwrap();
    // A lost report at the other outlet is journaled there.
    let lost = p.counter_report_lost(&s.clerk_b, "ZZ-B", c1).await.unwrap();
    assert_eq!(lost.state, "reported_lost");
    let devices = p.ecode_devices(&admin(), c1).await.unwrap();
    assert!(devices.iter().all(|d| d.state != "active"), "{devices:?}");
    let revoked = p
        .store
        .audit_recent(Some("ecode.device.revoke"), 10)
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].draft.record, format!("card:{c1}"));
    let rep = p
        .counter_replace(&s.clerk_a, "ZZ-A", c1, parse_reason("lost").unwrap())
        .await
        .unwrap();
    assert_eq!(
        (rep.card.state.as_str(), rep.fee_fen),
        ("replaced", FEES.replacement_fen)
    );
    assert_eq!(state(p, &rep.successor).await, "approved");
    // A refused act writes no journal line.
    let r = p.counter_report_lost(&s.clerk_a, "ZZ-A", c1).await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");

    let j = p.counter_journal(&s.clerk_a, "ZZ-A", &today).await.unwrap();
    assert_eq!(
        j.lines
            .iter()
            .map(|l| (l.act.as_str(), l.fee_fen))
            .collect::<Vec<_>>(),
        vec![
            ("card_issued", 0),
            ("card_issued", 0),
            ("replacement", 2_000)
        ]
    );
    assert_eq!(j.fees_fen, 2_000);
    assert_eq!(j.closing, None);
    let jb = p.counter_journal(&s.clerk_b, "ZZ-B", &today).await.unwrap();
    assert_eq!(jb.counts.get("lost_report"), Some(&1));
    let r = p.counter_journal(&s.clerk_b, "ZZ-A", &today).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    // Reconciliation: the clerk declares 15.00 yuan, the journal says 20.00.
    let r = p.close_day(&s.clerk_b, "ZZ-A", &today, 1_500).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    let r = p.close_day(&s.clerk_a, "ZZ-A", "2099-01-01", 0).await;
    assert!(matches!(r, Err(PlatformError::Invalid { .. })), "{r:?}");
    let r = p.close_day(&s.clerk_a, "ZZ-A", &today, -1).await;
    assert!(matches!(r, Err(PlatformError::Invalid { .. })), "{r:?}");
    let closing = p
        .close_day(&s.clerk_a, "ZZ-A", &today, 1_500)
        .await
        .unwrap();
    assert_eq!(
        (
            closing.acts,
            closing.expected_fen,
            closing.declared_fen,
            closing.difference_fen,
            closing.balanced
        ),
        (3, 2_000, 1_500, -500, false)
    );
    let recent = p
        .store
        .audit_recent(Some("counter.close"), 1)
        .await
        .unwrap();
    assert!(
        recent[0].draft.detail.contains("difference -500 fen"),
        "{:?}",
        recent[0].draft
    );
    // Closing twice is refused, naming the first closing; the closed day takes no more acts.
    let r = p.close_day(&s.clerk_a, "ZZ-A", &today, 2_000).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("already closed") && m.contains("difference -500")),
        "{r:?}"
    );
    let r = p.counter_report_lost(&s.clerk_a, "ZZ-A", c2).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("closed")),
        "{r:?}"
    );
    assert_eq!(state(p, c2).await, "active");
    let j = p.counter_journal(&admin(), "ZZ-A", &today).await.unwrap();
    assert_eq!(j.lines.len(), 3);
    assert_eq!(j.closing.unwrap().difference_fen, -500);
    // The other outlet balances.
    let c = p.close_day(&s.clerk_b, "ZZ-B", &today, 0).await.unwrap();
    assert!(c.balanced);
    // The next business day is open again.
    f.clock.advance_ms(86_400_000);
    let tomorrow = p.clock.today().to_string();
    p.counter_report_lost(&s.clerk_a, "ZZ-A", c2).await.unwrap();
    let j = p
        .counter_journal(&s.clerk_a, "ZZ-A", &tomorrow)
        .await
        .unwrap();
    assert_eq!(j.counts.get("lost_report"), Some(&1));
}

/// Loads 50.00 yuan (MAC2 from the master-key store) and buys for 12.34 at a PSAM terminal;
/// the purchase TAC verifies on the host.
fn load_and_buy(keys: &FileMasterKeyStore, alg: Algorithm, card: &mut chip::Card) {
    let date = BcdDate::new(2026, 11, 26).unwrap();
    let time = BcdTime::new(10, 0, 0).unwrap();
    load(
        card,
        &LoadRequest {
            amount_fen: 5_000,
            terminal_id: TerminalId::parse("000000000042").unwrap(),
            date,
            time,
        },
        &mut |init| {
            keys.issue_load_mac2(
                &KeyRef::transit(MasterPurpose::Load, 1),
                alg,
                &init.card_number.div_data(),
                &LoadFields {
                    balance_before_fen: init.balance_before_fen,
                    online_counter: init.online_counter,
                    random: init.random,
                    amount_fen: init.amount_fen,
                    terminal_id: *init.terminal_id.as_bytes(),
                    date: init.date.to_bcd(),
                    time: init.time.to_bcd(),
                },
                &init.mac1,
            )
            .map_err(|_| chip::host::HostError::Mac1Invalid)
        },
    )
    .unwrap();
    let mut psam = Psam::new(
        TerminalId::parse("000000000099").unwrap(),
        MasterKeys::test_set().purchase,
    );
    let out = purchase(
        card,
        &mut psam,
        &PurchaseRequest {
            amount_fen: 1_234,
            date,
            time,
        },
        &|_| false,
    )
    .unwrap();
    assert_eq!(out.balance_after_fen, 3_766);
    let r = &out.record;
    let div = card_div(card);
    assert!(
        keys.verify_purchase_tac(
            &KeyRef::transit(MasterPurpose::Tac, 1),
            alg,
            &div,
            &PurchaseTacFields {
                amount_fen: r.amount_fen,
                tx_type: r.tx_type,
                terminal_id: *r.terminal_id.as_bytes(),
                terminal_serial: r.terminal_serial,
                date: r.date.to_bcd(),
                time: r.time.to_bcd(),
            },
            &r.tac,
        )
        .unwrap()
    );
}

fn card_div(card: &mut chip::Card) -> crypto::DivData {
    chip::terminal::read_card(card)
        .unwrap()
        .public
        .card_number
        .div_data()
}

async fn instant_issuance_makes_a_card_that_pays(f: Fixture) {
    let s = setup(&f, 2).await;
    let p = &s.p;
    let writer = EmulatedWriter::new(transport_key(), 0x0000_0000_0000_0100, "123456");
    let n = &s.cards[0];
    // Only the clerk of the outlet, and only with a card the state machine lets through.
    let r = p.instant_issue(&admin(), "ZZ-A", n, "SM4", &writer).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    let issued = p
        .instant_issue(&s.clerk_a, "ZZ-A", n, "SM4", &writer)
        .await
        .unwrap();
    assert_eq!(issued.card.state, "active");
    assert_eq!(issued.chip_serial, "0000000000000100");
    assert_eq!(
        p.chip_serial(&admin(), n).await.unwrap(),
        Some(issued.chip_serial.clone())
    );
    let r = p.instant_issue(&s.clerk_a, "ZZ-A", n, "SM4", &writer).await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");
    let stock = p.outlet_stock(&admin(), "ZZ-A").await.unwrap();
    assert_eq!(stock.by_state.get("active"), Some(&1));
    let j = p
        .counter_journal(&admin(), "ZZ-A", &p.clock.today().to_string())
        .await
        .unwrap();
    assert_eq!(j.counts.get("instant_issued"), Some(&1));

    // The image, as the CLI writes it for `citycard card apdu` / `vpcd`, pays at a terminal.
    let json = issued.chip.image().to_json();
    let mut card = chip::Card::from_image(CardImage::from_json(&json).unwrap());
    let info = chip::terminal::read_card(&mut card).unwrap();
    assert_eq!(info.public.card_number.to_string(), *n);
    assert_eq!(info.holder.name().unwrap(), "张0号");
    load_and_buy(&s.keys, Algorithm::Sm4, &mut card);

    // A writer holding another transport key refuses the card; nothing changes.
    let wrong = EmulatedWriter::new(Key16::from_hex(COMPONENT_A).unwrap(), 1, "123456");
    let r = p
        .instant_issue(&s.clerk_a, "ZZ-A", &s.cards[1], "3DES", &wrong)
        .await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("card writer")),
        "{r:?}"
    );
    assert_eq!(state(p, &s.cards[1]).await, "approved");
    let ok = p
        .instant_issue(&s.clerk_a, "ZZ-A", &s.cards[1], "3DES", &writer)
        .await
        .unwrap();
    let mut card = ok.chip;
    load_and_buy(&s.keys, Algorithm::Tdes, &mut card);
}
