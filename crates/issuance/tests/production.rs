//! Production: personalization file round trip and tamper detection, the result file's
//! per-row errors, the emulated bureau end to end (batch → bureau → results → a purchase whose
//! TAC verifies on the host) for both profiles, and outlet stock.

use chip::terminal::{LoadRequest, PurchaseRequest, load, purchase};
use chip::{BcdDate, BcdTime, CardNumber, CardType, Psam, TerminalId};
use crypto::{Algorithm, Key16, MasterKeys};
use issuance::OutletId;
use issuance::production::{
    BatchHeader, BatchId, BureauConfig, CardLineError, CardRecord, ChipSerial, FileError, Outcome,
    OutletStock, RowError, StockError, WriteError, emulate_bureau, read_batch, read_results,
    write_batch,
};
use keys::master::{
    FileMasterKeyStore, KeyComponent, KeyRef, LoadFields, MasterKeyStore, MasterPurpose,
    PurchaseTacFields,
};

const COMPONENT_A: &str = "0123456789ABCDEFFEDCBA9876543210";
const COMPONENT_B: &str = "00112233445566778899AABBCCDDEEFF";

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The transport key the components combine to (A XOR B), as the bureau holds it.
fn transport_key() -> Key16 {
    let a = Key16::from_hex(COMPONENT_A).unwrap();
    let b = Key16::from_hex(COMPONENT_B).unwrap();
    let mut k = [0u8; 16];
    for (i, o) in k.iter_mut().enumerate() {
        *o = a.expose()[i] ^ b.expose()[i];
    }
    Key16::from_bytes(k)
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: FileMasterKeyStore,
    transport: KeyRef,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = FileMasterKeyStore::create(&dir.path().join("master.json"), b"test").unwrap();
    store.load_test_key_set("transit").unwrap();
    // Only CITY's maintenance master: the file carries the DAMKs the store has masters for.
    store.load_test_maintenance_key("city").unwrap();
    let transport = KeyRef::transit(MasterPurpose::Transport, 1);
    let components: Vec<KeyComponent> = [COMPONENT_A, COMPONENT_B]
        .iter()
        .enumerate()
        .map(|(i, hex)| {
            let kcv = Key16::from_hex(hex).unwrap().kcv(Algorithm::Tdes);
            KeyComponent::parse(i + 1, hex, &hex_upper(&kcv), Algorithm::Tdes).unwrap()
        })
        .collect();
    store
        .import_components(&transport, &components, Algorithm::Tdes, None)
        .unwrap();
    Fixture {
        _dir: dir,
        store,
        transport,
    }
}

fn records(n: u32) -> Vec<CardRecord> {
    let start = BcdDate::new(2025, 3, 1).unwrap();
    (1..=n)
        .map(|seq| CardRecord {
            card_number: CardNumber::from_sequence(seq).unwrap(),
            card_type: if seq % 2 == 0 {
                CardType::Student
            } else {
                CardType::Ordinary
            },
            holder_name: format!("张三{seq}"),
            id_number: id_number(seq),
            start_date: start,
            expiry_date: start.plus_years(10).unwrap(),
        })
        .collect()
}

/// A distinct 18-character ID number per sequence (the file checks the shape, not GB 11643).
fn id_number(seq: u32) -> String {
    format!("41010519800501{seq:04}")
}

fn header(f: &Fixture, alg: Algorithm, count: u32) -> BatchHeader {
    BatchHeader {
        batch_id: BatchId::parse("B2025-001").unwrap(),
        card_count: count,
        key_version: 1,
        transport: f.transport.clone(),
        algorithm: alg,
        maintained: vec!["city".into()],
    }
}

fn write(f: &Fixture, alg: Algorithm, cards: &[CardRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    let count = u32::try_from(cards.len()).unwrap();
    let summary = write_batch(
        &mut out,
        &header(f, alg, count),
        cards.iter().cloned(),
        &f.store,
    )
    .unwrap();
    assert_eq!(summary.card_count, count);
    assert_eq!(summary.bytes, out.len() as u64);
    out
}

#[test]
fn round_trip_both_profiles() {
    let f = fixture();
    for alg in [Algorithm::Tdes, Algorithm::Sm4] {
        let cards = records(5);
        let bytes = write(&f, alg, &cards);
        let file = read_batch(bytes.as_slice()).unwrap();
        assert_eq!(file.header, header(&f, alg, 5));
        assert_eq!(file.transport_kcv, transport_key().kcv(alg));
        assert_eq!(file.cards.len(), cards.len());
        for (back, sent) in file.cards.iter().zip(&cards) {
            assert_eq!(back.card_number, sent.card_number);
            assert_eq!(back.card_type, sent.card_type);
            assert_eq!(back.holder_name, sent.holder_name);
            assert_eq!(
                (back.start_date, back.expiry_date),
                (sent.start_date, sent.expiry_date)
            );
            // The ID number opens with the transport key, and only with it.
            assert_eq!(back.open_id(alg, &transport_key()).unwrap(), sent.id_number);
            assert!(back.open_id(alg, &Key16::from_bytes([9; 16])).is_err());
        }
        // A sealed ID moved to another card's line does not open there (the IV binds it).
        let mut moved = file.cards[1].clone();
        moved.sealed_id = file.cards[0].sealed_id;
        assert!(moved.open_id(alg, &transport_key()).is_err());
        // The keys are exactly what the store wraps for each card.
        let masters = file.header.masters();
        let city = KeyRef::new("city", MasterPurpose::Maintenance, 1).unwrap();
        for card in &file.cards {
            let div = card.card_number.div_data();
            let damk = f
                .store
                .diversify_wrapped(&city, alg, &div, &f.transport)
                .unwrap();
            assert_eq!(card.maintenance.len(), 1);
            assert_eq!(card.maintenance[0].aid, chip::image::AID_CITY.to_vec());
            assert_eq!(card.maintenance[0].key.wrapped, damk.wrapped);
            assert_eq!(card.maintenance[0].key.kcv, damk.kcv);
            let expect: Vec<_> = masters
                .iter()
                .map(|m| {
                    f.store
                        .diversify_wrapped(m, alg, &div, &f.transport)
                        .unwrap()
                })
                .collect();
            for (got, want) in [&card.keys.dpk, &card.keys.dlk, &card.keys.dtk]
                .into_iter()
                .zip(&expect)
            {
                assert_eq!(got.wrapped, want.wrapped);
                assert_eq!(got.kcv, want.kcv);
            }
        }
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("CCPERSO|2|B2025-001|5|1|transit/transport/v1|"));
        assert!(
            text.lines()
                .next()
                .unwrap()
                .ends_with("|DPK,DLK,DTK,DAMK-CITY")
        );
        assert!(text.contains("|张三2|"), "the printed name is in the file");
    }
}

#[test]
fn no_key_and_no_id_number_in_clear() {
    let f = fixture();
    let test = MasterKeys::test_set();
    for alg in [Algorithm::Tdes, Algorithm::Sm4] {
        let cards = records(20);
        let text = String::from_utf8(write(&f, alg, &cards)).unwrap();
        let upper = text.to_uppercase();
        let mut wrapped_seen = 0;
        for card in &cards {
            let div = card.card_number.div_data();
            for master in [&test.purchase, &test.load, &test.tac] {
                let dk = crypto::diversify(alg, master, &div);
                let clear = hex_upper(dk.expose());
                assert!(!upper.contains(&clear), "a card key is in clear");
                // Nor either half of it (the 3DES halves are separate DES keys).
                assert!(!upper.contains(&clear[..16]));
                assert!(!upper.contains(&clear[16..]));
                // But its KCV is there, so the search above looks at the right file.
                if upper.contains(&hex_upper(&dk.kcv(alg))) {
                    wrapped_seen += 1;
                }
            }
        }
        assert_eq!(wrapped_seen, 60);
        for master in [&test.purchase, &test.load, &test.tac] {
            assert!(!upper.contains(&hex_upper(master.expose())));
        }
        assert!(!upper.contains(&hex_upper(transport_key().expose())));
        // Eight fixed fields and four keys per card line; no ID number in clear (nor its
        // hex), while the printed name is there.
        for (line, card) in text
            .lines()
            .skip(1)
            .filter(|l| l.starts_with("C|"))
            .zip(&cards)
        {
            assert_eq!(line.split('|').count(), 16);
            assert!(!line.contains(&card.id_number));
            assert!(!upper.contains(&hex_upper(card.id_number.as_bytes())));
            assert!(line.contains(&card.holder_name));
        }
    }
}

#[test]
fn tampering_is_detected() {
    let f = fixture();
    let bytes = write(&f, Algorithm::Sm4, &records(4));
    let text = String::from_utf8(bytes.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);

    // One hex digit of a wrapped key changed.
    let mut edited = bytes.clone();
    let line2_start = lines[0].len() + 1;
    let pos = line2_start + lines[1].rfind('|').unwrap() - 10;
    edited[pos] = if edited[pos] == b'0' { b'1' } else { b'0' };
    assert!(matches!(
        read_batch(edited.as_slice()),
        Err(FileError::DigestMismatch)
    ));

    // A byte of the header (the key version).
    let edited = text.replacen("|B2025-001|4|1|", "|B2025-001|4|2|", 1);
    assert!(matches!(
        read_batch(edited.as_bytes()),
        Err(FileError::DigestMismatch)
    ));

    // Truncated in the middle of a line, and at a line boundary before the trailer.
    let cut = &bytes[..bytes.len() - 40];
    assert!(matches!(
        read_batch(cut),
        Err(FileError::Truncated { line: 6 })
    ));
    let cut = lines[..5].join("\n") + "\n";
    assert!(matches!(
        read_batch(cut.as_bytes()),
        Err(FileError::TrailerMissing)
    ));
    assert!(matches!(read_batch(&b""[..]), Err(FileError::Empty)));

    // Two card lines swapped.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    let swapped = swapped.join("\n") + "\n";
    assert!(matches!(
        read_batch(swapped.as_bytes()),
        Err(FileError::CardLine {
            line: 3,
            reason: CardLineError::Index { expected: 2, .. }
        })
    ));

    // A card line dropped (indices renumbered would still break the digest and the count).
    let mut dropped: Vec<&str> = lines.clone();
    dropped.remove(4);
    let dropped = dropped.join("\n") + "\n";
    assert!(matches!(
        read_batch(dropped.as_bytes()),
        Err(FileError::TrailerCount { .. })
    ));

    // A card line added: no more lines than the header declares are read.
    let mut added: Vec<&str> = lines.clone();
    added.insert(4, lines[4]);
    let added = added.join("\n") + "\n";
    assert!(matches!(
        read_batch(added.as_bytes()),
        Err(FileError::TooManyLines(4))
    ));

    // Data after the trailer.
    let extra = text.clone() + "C|5|x\n";
    assert!(matches!(
        read_batch(extra.as_bytes()),
        Err(FileError::DataAfterTrailer { line: 7 })
    ));

    // A different kind of file, an unknown version, a line too long.
    assert!(matches!(
        read_batch(&b"CCRESULT|1|B|1\n"[..]),
        Err(FileError::WrongKind { .. })
    ));
    let v1 = text.replacen("CCPERSO|2|", "CCPERSO|1|", 1);
    assert!(matches!(
        read_batch(v1.as_bytes()),
        Err(FileError::UnsupportedVersion(v)) if v == "1"
    ));
    // A key list naming an unknown key, the DAMKs out of order, or a purse key missing.
    for list in [
        "DPK,DLK,DTK,PIN",
        "DPK,DLK,DTK,DAMK-HEALTH,DAMK-CITY",
        "DPK,DLK",
    ] {
        let bad = text.replacen("|DPK,DLK,DTK,DAMK-CITY\n", &format!("|{list}\n"), 1);
        assert_ne!(bad, text);
        assert!(matches!(
            read_batch(bad.as_bytes()),
            Err(FileError::Header("key list"))
        ));
    }
    let long = format!("CCPERSO|2|{}\n", "x".repeat(600));
    assert!(matches!(
        read_batch(long.as_bytes()),
        Err(FileError::LineTooLong { line: 1 })
    ));

    // The untouched file still reads.
    assert!(read_batch(bytes.as_slice()).is_ok());
}

#[test]
fn writer_refuses_bad_batches() {
    let f = fixture();
    let cards = records(3);
    let mut sink = Vec::new();
    let h = header(&f, Algorithm::Tdes, 2);
    assert!(matches!(
        write_batch(&mut sink, &h, cards.iter().cloned(), &f.store),
        Err(WriteError::TooManyCards { declared: 2 })
    ));
    let h = header(&f, Algorithm::Tdes, 4);
    assert!(matches!(
        write_batch(&mut sink, &h, cards.iter().cloned(), &f.store),
        Err(WriteError::TooFewCards {
            declared: 4,
            actual: 3
        })
    ));
    let h = header(&f, Algorithm::Tdes, 2);
    let dup = vec![cards[0].clone(), cards[0].clone()];
    assert!(matches!(
        write_batch(&mut sink, &h, dup.into_iter(), &f.store),
        Err(WriteError::DuplicateCard(_))
    ));
    let mut bad = cards[0].clone();
    bad.holder_name = "张|三".to_string();
    let h = header(&f, Algorithm::Tdes, 1);
    assert!(matches!(
        write_batch(&mut sink, &h, std::iter::once(bad), &f.store),
        Err(WriteError::InvalidCard { .. })
    ));
    let mut h = header(&f, Algorithm::Tdes, 1);
    h.transport = KeyRef::transit(MasterPurpose::Transport, 9);
    assert!(matches!(
        write_batch(&mut sink, &h, cards.iter().take(1).cloned(), &f.store),
        Err(WriteError::TransportKeyUnavailable { .. })
    ));
    h.transport = KeyRef::transit(MasterPurpose::Tac, 1);
    assert!(matches!(
        write_batch(&mut sink, &h, cards.iter().take(1).cloned(), &f.store),
        Err(WriteError::Keys(_))
    ));
}

/// A result file with a correct trailer around `rows`, the way a bureau would send it.
fn result_file(batch: &str, rows: &[&str]) -> Vec<u8> {
    let mut body = format!("CCRESULT|1|{batch}|{}\n", rows.len());
    for r in rows {
        body.push_str(r);
        body.push('\n');
    }
    let digest = crypto::sm3(body.as_bytes());
    body.push_str(&format!("T|{}|{}\n", rows.len(), hex_upper(&digest)));
    body.into_bytes()
}

#[test]
fn result_file_row_errors() {
    let cards: Vec<CardNumber> = (1..=6)
        .map(|s| CardNumber::from_sequence(s).unwrap())
        .collect();
    let c = |i: usize| cards[i].to_string();
    let outside = CardNumber::from_sequence(99).unwrap().to_string();
    let mut bad_luhn = c(0);
    let last = bad_luhn.pop().unwrap();
    bad_luhn.push(if last == '9' { '0' } else { '9' });
    let rows = [
        format!("R|{}|OK|00000000000000A1", c(0)), // line 2: accepted
        format!("R|{}|FAIL|chip defect", c(1)),    // line 3: accepted (failure)
        format!("R|{outside}|OK|00000000000000A2"), // line 4: unknown card
        format!("R|{}|OK|00000000000000A3", c(2)), // line 5: duplicate card
        format!("R|{}|OK|00000000000000A4", c(2)), // line 6: duplicate card
        format!("R|{}|OK|00000000000000ZZ", c(3)), // line 7: bad serial
        format!("R|{bad_luhn}|OK|00000000000000A5"), // line 8: bad Luhn
        format!("R|{}|OK|00000000000000A1", c(4)), // line 9: serial of line 2
        format!("R|{}|MAYBE|x", c(5)),             // line 10: malformed
    ];
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    let batch = BatchId::parse("B1").unwrap();
    let import = read_results(result_file("B1", &rows).as_slice(), &batch, &cards).unwrap();

    let accepted: Vec<(u64, CardNumber)> = import
        .accepted
        .iter()
        .map(|a| (a.line, a.row.card_number))
        .collect();
    assert_eq!(accepted, vec![(3, cards[1])]);
    assert_eq!(
        import.accepted[0].row.outcome,
        Outcome::Failed("chip defect".into())
    );
    let rejects: Vec<(u64, RowError)> = import
        .rejects
        .iter()
        .map(|r| (r.line, r.reason.clone()))
        .collect();
    let a1 = ChipSerial::parse("00000000000000A1").unwrap();
    assert_eq!(
        rejects,
        vec![
            (
                2,
                RowError::DuplicateSerial {
                    serial: a1,
                    other_line: 9
                }
            ),
            (
                4,
                RowError::UnknownCard(CardNumber::from_sequence(99).unwrap())
            ),
            (
                5,
                RowError::DuplicateCard {
                    card: cards[2],
                    other_line: 6
                }
            ),
            (
                6,
                RowError::DuplicateCard {
                    card: cards[2],
                    other_line: 5
                }
            ),
            (7, RowError::BadSerial("00000000000000ZZ".into())),
            (
                8,
                RowError::BadCardNumber(CardNumber::parse(&bad_luhn).unwrap_err())
            ),
            (
                9,
                RowError::DuplicateSerial {
                    serial: a1,
                    other_line: 2
                }
            ),
            (10, RowError::Malformed),
        ]
    );
    // Everything but the reported failure still needs an answer from the bureau.
    let mut unresolved = cards.clone();
    unresolved.remove(1);
    assert_eq!(import.unresolved, unresolved);

    // File-level: another batch, an edited row, a missing trailer.
    let good = result_file("B1", &rows);
    assert!(matches!(
        read_results(good.as_slice(), &BatchId::parse("B2").unwrap(), &cards),
        Err(FileError::BatchMismatch { .. })
    ));
    let mut edited = good.clone();
    let pos = edited.iter().position(|b| *b == b'A').unwrap();
    edited[pos] = b'B';
    assert!(matches!(
        read_results(edited.as_slice(), &batch, &cards),
        Err(FileError::DigestMismatch)
    ));
    let text = String::from_utf8(good).unwrap();
    let cut = text.rsplit_once("T|").unwrap().0;
    assert!(matches!(
        read_results(cut.as_bytes(), &batch, &cards),
        Err(FileError::TrailerMissing)
    ));
}

/// Loads 50.00 yuan with the host's MAC2 from the store, buys for 12.34 yuan at a PSAM
/// terminal, and checks the purchase TAC and the load TAC on the host.
fn load_and_buy(f: &Fixture, alg: Algorithm, card: &mut chip::Card) {
    let load_master = KeyRef::transit(MasterPurpose::Load, 1);
    let tac_master = KeyRef::transit(MasterPurpose::Tac, 1);
    let date = BcdDate::new(2025, 6, 1).unwrap();
    let time = BcdTime::new(9, 30, 0).unwrap();
    let terminal_id = TerminalId::parse("000000000042").unwrap();
    let request = LoadRequest {
        amount_fen: 5_000,
        terminal_id,
        date,
        time,
    };
    let mut fields_seen = None;
    let loaded = load(card, &request, &mut |init| {
        let fields = LoadFields {
            balance_before_fen: init.balance_before_fen,
            online_counter: init.online_counter,
            random: init.random,
            amount_fen: init.amount_fen,
            terminal_id: *init.terminal_id.as_bytes(),
            date: init.date.to_bcd(),
            time: init.time.to_bcd(),
        };
        fields_seen = Some(fields.clone());
        f.store
            .issue_load_mac2(
                &load_master,
                alg,
                &init.card_number.div_data(),
                &fields,
                &init.mac1,
            )
            .map_err(|_| chip::host::HostError::Mac1Invalid)
    })
    .unwrap();
    assert_eq!(loaded.balance_after_fen, 5_000);
    let div = loaded.init.card_number.div_data();
    assert!(
        f.store
            .verify_load_tac(&tac_master, alg, &div, &fields_seen.unwrap(), &loaded.tac)
            .unwrap()
    );

    let mut psam = Psam::new(
        TerminalId::parse("000000000099").unwrap(),
        MasterKeys::test_set().purchase,
    );
    let outcome = purchase(
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
    assert_eq!(outcome.balance_after_fen, 3_766);
    let r = &outcome.record;
    let mut fields = PurchaseTacFields {
        amount_fen: r.amount_fen,
        tx_type: r.tx_type,
        terminal_id: *r.terminal_id.as_bytes(),
        terminal_serial: r.terminal_serial,
        date: r.date.to_bcd(),
        time: r.time.to_bcd(),
    };
    assert_eq!(r.algorithm, alg);
    assert!(
        f.store
            .verify_purchase_tac(&tac_master, alg, &div, &fields, &r.tac)
            .unwrap()
    );
    // The check can fail: another amount does not verify.
    fields.amount_fen += 1;
    assert!(
        !f.store
            .verify_purchase_tac(&tac_master, alg, &div, &fields, &r.tac)
            .unwrap()
    );
}

#[test]
fn batch_bureau_results_purchase_both_profiles() {
    let f = fixture();
    for alg in [Algorithm::Tdes, Algorithm::Sm4] {
        let cards = records(4);
        let numbers: Vec<CardNumber> = cards.iter().map(|c| c.card_number).collect();
        let perso = write(&f, alg, &cards);
        let config = BureauConfig {
            transport_key: transport_key(),
            serial_first: 0x0102_0304_0000_0001,
            initial_pin: "123456".into(),
            fail: vec![(numbers[3], "print head jam".into())],
        };
        let mut result_bytes = Vec::new();
        let mut run = emulate_bureau(perso.as_slice(), &config, &mut result_bytes).unwrap();
        assert_eq!(run.produced.len(), 3);
        assert_eq!(run.failed, vec![(numbers[3], "print head jam".to_string())]);

        let batch = BatchId::parse("B2025-001").unwrap();
        let import = read_results(result_bytes.as_slice(), &batch, &numbers).unwrap();
        assert!(import.rejects.is_empty());
        assert!(import.unresolved.is_empty());
        let produced: Vec<(CardNumber, ChipSerial)> = import.produced().collect();
        let expected: Vec<(CardNumber, ChipSerial)> = run
            .produced
            .iter()
            .map(|p| (p.card_number, p.serial))
            .collect();
        assert_eq!(produced, expected);
        assert_eq!(produced[0].1.to_string(), "0102030400000001");

        // The card as the bureau made it: holder name and ID number on the chip, CITY ready
        // for post-issuance scripts under its DAMK (HEALTH not: no master was given), purse
        // works.
        let card = &mut run.produced[0].card;
        let info = chip::terminal::read_card(card).unwrap();
        assert_eq!(info.public.card_number, numbers[0]);
        assert_eq!(info.holder.name().unwrap(), "张三1");
        let id = id_number(1);
        assert_eq!(&info.holder.id_number[..id.len()], id.as_bytes());
        assert!(info.holder.id_number[id.len()..].iter().all(|&b| b == 0));
        let damk = |aid: &[u8]| {
            card.image()
                .apps
                .iter()
                .find(|df| df.aid.as_ref().is_some_and(|a| a.0 == aid))
                .unwrap()
                .maintenance
                .as_ref()
                .map(|m| m.damk.clone())
        };
        let expected = crypto::diversify(
            alg,
            &crypto::test_maintenance_master(),
            &numbers[0].div_data(),
        );
        assert_eq!(damk(chip::image::AID_CITY), Some(expected));
        assert_eq!(damk(chip::image::AID_HEALTH), None);
        load_and_buy(&f, alg, card);
    }
}

#[test]
fn bureau_refuses_another_transport_key_and_bad_keys() {
    let f = fixture();
    let perso = write(&f, Algorithm::Tdes, &records(2));
    let mut config = BureauConfig {
        transport_key: Key16::from_hex(COMPONENT_A).unwrap(),
        serial_first: 1,
        initial_pin: "123456".into(),
        fail: Vec::new(),
    };
    let mut out = Vec::new();
    assert!(matches!(
        emulate_bureau(perso.as_slice(), &config, &mut out),
        Err(issuance::production::BureauError::TransportKeyMismatch)
    ));

    // A wrapped key altered and the digest recomputed (a forger, not line noise): the
    // digest passes, the KCV check at the bureau fails that card.
    let text = String::from_utf8(perso).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut fields: Vec<String> = lines[1].split('|').map(str::to_string).collect();
    fields[8] = "00".repeat(16);
    lines[1] = fields.join("|");
    let body = lines[..3].join("\n") + "\n";
    let forged = format!("{body}T|2|{}\n", hex_upper(&crypto::sm3(body.as_bytes())));
    config.transport_key = transport_key();
    let run = emulate_bureau(forged.as_bytes(), &config, &mut out).unwrap();
    assert_eq!(run.produced.len(), 1);
    assert_eq!(run.failed.len(), 1);
    assert!(run.failed[0].1.contains("DPK"), "{}", run.failed[0].1);
}

#[test]
fn outlet_stock() {
    let mut stock = OutletStock::new();
    let cards: Vec<CardNumber> = (1..=5)
        .map(|s| CardNumber::from_sequence(s).unwrap())
        .collect();
    let (east, west) = (OutletId(1), OutletId(2));

    assert_eq!(stock.deliver(east, cards[..3].iter().copied()), Ok(3));
    assert_eq!(stock.deliver(west, cards[3..].iter().copied()), Ok(2));
    assert_eq!(stock.stock(east), 3);

    // A delivery with a card already in stock changes nothing.
    assert_eq!(
        stock.deliver(west, [cards[0]]),
        Err(StockError::AlreadyInStock {
            card: cards[0],
            outlet: east
        })
    );
    assert_eq!(
        stock.deliver(OutletId(3), [CardNumber::from_sequence(9).unwrap(); 2]),
        Err(StockError::DuplicateInDelivery(
            CardNumber::from_sequence(9).unwrap()
        ))
    );
    assert_eq!(stock.stock(west), 2);
    assert_eq!(stock.stock(OutletId(3)), 0);

    // Issuing decrements; a card not at this outlet cannot be issued there.
    stock.issue(east, cards[0]).unwrap();
    assert_eq!(stock.stock(east), 2);
    assert!(stock.is_issued(cards[0]));
    assert_eq!(
        stock.issue(east, cards[3]),
        Err(StockError::NotInStock {
            card: cards[3],
            outlet: east
        })
    );
    assert_eq!(
        stock.issue(west, cards[0]),
        Err(StockError::AlreadyIssued(cards[0]))
    );
    assert_eq!(
        stock.deliver(west, [cards[0]]),
        Err(StockError::AlreadyIssued(cards[0]))
    );

    // Moving stock between outlets.
    stock.transfer(cards[1], east, west).unwrap();
    assert_eq!(stock.outlet_of(cards[1]), Some(west));
    assert_eq!(stock.stock(east), 1);
    assert_eq!(stock.stock(west), 3);
    assert_eq!(
        stock.transfer(cards[1], east, west),
        Err(StockError::NotInStock {
            card: cards[1],
            outlet: east
        })
    );
    stock.issue(west, cards[1]).unwrap();
    assert_eq!(
        stock.cards_at(west).collect::<Vec<_>>(),
        vec![cards[3], cards[4]]
    );
    assert_eq!(stock.cards_at(east).collect::<Vec<_>>(), vec![cards[2]]);
}
