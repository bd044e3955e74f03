//! The emulated card on the real PC/SC stack: pcscd + vsmartcard-vpcd + the `pcsc` crate.
//!
//! pcscd is one per machine, so everything that touches it runs in this one test,
//! step by step. It starts pcscd itself when none is running, and fails (never skips) with
//! the packages to install when pcscd, the vpcd driver or the outside tools are missing.

use std::process::Command;

use chip::host::UploadRecord;
use chip::terminal::{LoadRequest, PurchaseRequest, load, purchase};
use chip::{
    BcdDate, BcdTime, CardChannel, CardImage, CardNumber, CardType, PersonalizationRecord, Psam,
    TerminalId, personalize,
};
use crypto::{Algorithm, MasterKeys};
use keys::master::{
    FileMasterKeyStore, KeyRef, LoadFields, MasterKeyStore, MasterPurpose, PurchaseTacFields,
};
use pcsc_link::PcscChannel;
use pcsc_link::bench::measure_purchases;
use pcsc_link::daemon::{PACKAGES, ensure_pcscd, require_tool};
use pcsc_link::vpcd::{VirtualCard, spawn};

const READER: &str = "Virtual PCD 00 00";
const CARD_NUMBER: &str = "4101000000000018";

fn record() -> PersonalizationRecord {
    let start = BcdDate::parse("20250101").unwrap();
    PersonalizationRecord {
        card_number: CardNumber::parse(CARD_NUMBER).unwrap(),
        holder_name: "Zhang San".to_string(),
        id_number: "41010219900101123X".to_string(),
        card_type: CardType::Ordinary,
        start_date: start,
        expiry_date: start.plus_years(10).unwrap(),
        algorithm: Algorithm::Tdes,
        employee: false,
        pin: "123456".to_string(),
        rng_seed: 42,
    }
}

fn tac_fields(r: &UploadRecord) -> PurchaseTacFields {
    PurchaseTacFields {
        amount_fen: r.amount_fen,
        tx_type: r.tx_type,
        terminal_id: *r.terminal_id.as_bytes(),
        terminal_serial: r.terminal_serial,
        date: r.date.to_bcd(),
        time: r.time.to_bcd(),
    }
}

/// `opensc-tool --send-apdu` output → (data, SW) per APDU.
fn parse_opensc(out: &str) -> Vec<(Vec<u8>, u16)> {
    let mut replies = Vec::new();
    let mut lines = out.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("Received (SW1=0x") else {
            continue;
        };
        let sw1 = u16::from_str_radix(&rest[..2], 16).unwrap();
        let sw2_at = rest.find("SW2=0x").unwrap() + 6;
        let sw2 = u16::from_str_radix(&rest[sw2_at..sw2_at + 2], 16).unwrap();
        let mut data = Vec::new();
        while let Some(next) = lines.peek() {
            if next.starts_with("Sending") || next.starts_with("Received") || next.is_empty() {
                break;
            }
            // "00 01 02 ... ascii" — hex pairs until the first token that is not hex.
            let hex_part = next.get(..next.len().min(48)).unwrap_or("");
            for tok in hex_part.split_whitespace() {
                match u8::from_str_radix(tok, 16) {
                    Ok(b) if tok.len() == 2 => data.push(b),
                    _ => break,
                }
            }
            lines.next();
        }
        replies.push((data, (sw1 << 8) | sw2));
    }
    replies
}

#[test]
fn card_on_pcscd_purchase_load_outside_tool_and_latency() {
    let pcscd = ensure_pcscd().unwrap_or_else(|e| panic!("{e}"));
    require_tool("opensc-tool").unwrap_or_else(|e| panic!("{e}"));

    // Host side: the master-key store with the development key set.
    let dir = tempfile::tempdir().unwrap();
    let store = FileMasterKeyStore::create(&dir.path().join("master.json"), b"dev").unwrap();
    store.load_test_key_set("transit").unwrap();
    let load_key = KeyRef::transit(MasterPurpose::Load, 1);
    let tac_key = KeyRef::transit(MasterPurpose::Tac, 1);

    // The card, served to pcscd through vpcd; its image file follows every change.
    let image_path = dir.path().join("card.json");
    let card = personalize(&record(), &MasterKeys::test_set()).unwrap();
    std::fs::write(&image_path, card.image().to_json()).unwrap();
    let virtual_card = VirtualCard::from_file(&image_path).unwrap();
    let link = spawn(virtual_card, pcscd.vpcd_config()).unwrap_or_else(|e| {
        panic!("{e}\n(needs pcscd with the vpcd driver: apt-get install {PACKAGES})")
    });

    let mut channel = PcscChannel::connect(Some(READER), 15_000).unwrap_or_else(|e| panic!("{e}"));
    let terminal = TerminalId::parse("112233445566").unwrap();
    let date = BcdDate::parse("20261126").unwrap();
    let time = BcdTime::new(14, 30, 0).unwrap();
    let div = CardNumber::parse(CARD_NUMBER).unwrap().div_data();

    // Load 50.00 yuan through PC/SC, authorized by the master-key store.
    let loaded = load(
        &mut channel,
        &LoadRequest {
            amount_fen: 5_000,
            terminal_id: terminal,
            date,
            time,
        },
        &mut |init| {
            let fields = LoadFields {
                balance_before_fen: init.balance_before_fen,
                online_counter: init.online_counter,
                random: init.random,
                amount_fen: init.amount_fen,
                terminal_id: *init.terminal_id.as_bytes(),
                date: init.date.to_bcd(),
                time: init.time.to_bcd(),
            };
            store
                .issue_load_mac2(&load_key, init.algorithm, &div, &fields, &init.mac1)
                .map_err(|_| chip::host::HostError::Mac1Invalid)
        },
    )
    .unwrap();
    assert_eq!(loaded.balance_after_fen, 5_000);
    chip::host::verify_load_tac(&MasterKeys::test_set(), &loaded.init, &loaded.tac).unwrap();

    // A full purchase through pcscd with an in-process PSAM; the TAC checks host-side.
    let mut psam = Psam::new(terminal, MasterKeys::test_set().purchase);
    let request = PurchaseRequest {
        amount_fen: 200,
        date,
        time,
    };
    let outcome = purchase(&mut channel, &mut psam, &request, &|_| false).unwrap();
    assert_eq!(outcome.balance_after_fen, 4_800);
    assert!(
        store
            .verify_purchase_tac(
                &tac_key,
                outcome.record.algorithm,
                &div,
                &tac_fields(&outcome.record),
                &outcome.record.tac
            )
            .unwrap(),
        "purchase TAC from the card over PC/SC must verify"
    );
    chip::host::verify_purchase_tac(&MasterKeys::test_set().tac, &outcome.record).unwrap();

    // Latency of purchases through pcscd/vpcd (printed for docs/benchmarks.md).
    let small = PurchaseRequest {
        amount_fen: 1,
        ..request
    };
    let report = measure_purchases(&mut channel, &mut psam, &small, 50, &mut |o| {
        assert!(chip::host::verify_purchase_tac(&MasterKeys::test_set().tac, &o.record).is_ok());
    })
    .unwrap();
    println!("pcscd/vpcd purchase latency: {report:?}");
    assert!(report.median <= report.p99);

    // The image file followed the card.
    let saved = CardImage::from_json(&std::fs::read_to_string(&image_path).unwrap()).unwrap();
    assert_eq!(saved.purse().unwrap().balance_fen, 4_750);
    // Release the card so an outside tool can take the reader.
    let mut probe = channel;
    let balance_now = probe.transmit(&[0x80, 0x5C, 0x00, 0x02, 0x04]).unwrap();
    assert_eq!(balance_now, [0x00, 0x00, 0x12, 0x8E, 0x90, 0x00]);
    drop(probe);

    // An outside tool drives the same card: read EF15, GET BALANCE.
    let out = Command::new("opensc-tool")
        .args([
            "--reader",
            READER,
            "--send-apdu",
            "00A4040008A000000632010105",
            "--send-apdu",
            "00B095001E",
            "--send-apdu",
            "805C000204",
        ])
        .output()
        .expect("run opensc-tool");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "opensc-tool failed:\n{text}");
    let replies = parse_opensc(&text);
    assert_eq!(replies.len(), 3, "opensc-tool output:\n{text}");
    assert!(replies.iter().all(|(_, sw)| *sw == 0x9000), "{text}");
    let ef15 = &replies[1].0;
    assert_eq!(ef15.len(), 30, "{text}");
    // Application serial carries the card number in BCD (bytes 12..20).
    assert_eq!(
        ef15[12..20],
        CardNumber::parse(CARD_NUMBER).unwrap().to_bcd(),
        "{text}"
    );
    assert_eq!(replies[2].0, 4_750u32.to_be_bytes(), "{text}");

    let (served, result) = link.stop();
    result.unwrap();
    assert_eq!(served.card().image().purse().unwrap().balance_fen, 4_750);
}
