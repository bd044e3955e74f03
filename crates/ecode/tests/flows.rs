//! Make → text → parse → verify, and every refusal of steps 6–9, rotation, withdrawal, PEM,
//! device state and the bounds on both sides.

mod common;

use base64::Engine as _;
use common::*;
use ecode::{
    CODE_LEN, Code, ConfigError, Device, DeviceError, FRESHNESS_WINDOW_S_MAX, FormatError,
    PemError, Purpose, REPLAY_ENTRIES_MAX, ROOT_KEYS_MAX, Refusal, RingError, RootKeyId, RootKeys,
    SPEND_LEDGER_ENTRIES_MAX, Staleness, TEXT_LEN_MAX, TEXT_PREFIX, TrustError, Uses, Verifier,
    VerifierConfig, spki_der_from_public_key,
};

const NOW: u32 = T0 + 3600;

#[test]
fn fresh_codes_round_trip_through_text_and_verify() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let mut terminal = verifier(ring.public_keys());
    for i in 0..5u32 {
        let code = device.make_code(NOW + i).expect("make");
        let text = code.to_text();
        assert!(text.starts_with(TEXT_PREFIX));
        assert_eq!(text.len(), TEXT_LEN_MAX);
        let parsed = Code::parse_text(&text).expect("parse");
        assert_eq!(parsed, code);
        let accepted = terminal
            .verify_text(&text, NOW + i + 2, Purpose::Transit)
            .expect("accepted");
        assert_eq!(accepted.sequence, u16::try_from(i + 1).unwrap());
        assert_eq!(accepted.code_time, NOW + i);
        assert_eq!(accepted.card_number, card(1));
    }
    assert_eq!(device.next_sequence(), 6);
}

#[test]
fn a_replayed_code_is_refused_until_it_is_stale_anyway() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let mut terminal = verifier(ring.public_keys());
    let text = device.make_code(NOW).expect("make").to_text();
    terminal
        .verify_text(&text, NOW, Purpose::Transit)
        .expect("first");
    assert_eq!(
        terminal.verify_text(&text, NOW + 60, Purpose::Transit),
        Err(Refusal::Replay)
    );
    // Another terminal has not seen it (the platform catches that one on upload).
    let mut other = verifier(ring.public_keys());
    assert!(other.verify_text(&text, NOW + 1, Purpose::Transit).is_ok());
    // Past the window the code is refused as stale, and its replay entry is gone.
    assert_eq!(
        terminal.verify_text(&text, NOW + 61, Purpose::Transit),
        Err(Refusal::NotFresh(Staleness::Old { age_s: 61 }))
    );
    assert_eq!(terminal.replay_entries(), 0);
}

#[test]
fn a_deny_listed_card_is_refused_before_replay() {
    let ring = ring();
    let mut lost = device(&ring, "phone-lost", 7, 5000, Uses::ALL);
    let mut fine = device(&ring, "phone-fine", 8, 5000, Uses::ALL);
    let mut terminal = verifier(ring.public_keys());
    let lost_code = lost.make_code(NOW).expect("make");
    terminal
        .verify(&lost_code, NOW, Purpose::Transit)
        .expect("not yet listed");
    let hotlist = [card(7)];
    terminal.set_deny_list(move |c| hotlist.contains(c));
    // Deny-list (step 6) comes before replay (step 7).
    assert_eq!(
        terminal.verify(&lost_code, NOW, Purpose::Transit),
        Err(Refusal::DenyListed)
    );
    let code = fine.make_code(NOW).expect("make");
    assert!(terminal.verify(&code, NOW, Purpose::Transit).is_ok());
}

#[test]
fn payments_are_held_to_the_offline_limit_per_certificate() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let mut terminal = verifier(ring.public_keys());
    let pay = |terminal: &mut Verifier, device: &mut Device, amount_fen: u32, at: u32| {
        let code = device.make_code(at).expect("make");
        terminal.verify(&code, at, Purpose::Pay { amount_fen })
    };
    let first = pay(&mut terminal, &mut device, 3000, NOW).expect("3000 of 5000");
    assert_eq!(first.offline_remaining_fen, Some(2000));
    assert_eq!(
        pay(&mut terminal, &mut device, 2001, NOW + 1),
        Err(Refusal::OverLimit {
            amount_fen: 2001,
            spent_fen: 3000,
            limit_fen: 5000
        })
    );
    // A refused payment is not counted, and transit or identity use spends nothing.
    let code = device.make_code(NOW + 2).expect("make");
    assert_eq!(
        terminal
            .verify(&code, NOW + 2, Purpose::Transit)
            .expect("transit")
            .offline_remaining_fen,
        None
    );
    let last = pay(&mut terminal, &mut device, 2000, NOW + 3).expect("exactly the rest");
    assert_eq!(last.offline_remaining_fen, Some(0));
    assert!(matches!(
        pay(&mut terminal, &mut device, 1, NOW + 4),
        Err(Refusal::OverLimit { .. })
    ));
    assert!(pay(&mut terminal, &mut device, 0, NOW + 5).is_ok());
    // u32::MAX fen does not overflow the sum.
    assert!(matches!(
        pay(&mut terminal, &mut device, u32::MAX, NOW + 6),
        Err(Refusal::OverLimit { .. })
    ));
}

#[test]
fn uses_not_in_the_certificate_are_refused_after_the_limit_check() {
    let ring = ring();
    let mut id_only = device(
        &ring,
        "phone-id",
        2,
        100,
        Uses::IDENTITY.union(Uses::TRANSIT),
    );
    let mut terminal = verifier(ring.public_keys());
    let code = id_only.make_code(NOW).expect("make");
    assert_eq!(
        terminal.check(&code, NOW, Purpose::Pay { amount_fen: 50 }),
        Err(Refusal::UseNotAllowed(Uses::PAY))
    );
    // Step 8 comes before step 9: an over-limit payment is refused as over the limit.
    assert!(matches!(
        terminal.check(&code, NOW, Purpose::Pay { amount_fen: 101 }),
        Err(Refusal::OverLimit { .. })
    ));
    assert!(terminal.check(&code, NOW, Purpose::Identity).is_ok());
    assert!(terminal.check(&code, NOW, Purpose::Transit).is_ok());

    let mut none = device(&ring, "phone-none", 3, 100, Uses::NONE);
    let code = none.make_code(NOW).expect("make");
    for purpose in [Purpose::Identity, Purpose::Transit] {
        assert_eq!(
            terminal.verify(&code, NOW, purpose),
            Err(Refusal::UseNotAllowed(purpose.use_bit()))
        );
    }
    assert_eq!(
        terminal.replay_entries(),
        0,
        "refused codes are not remembered"
    );
}

#[test]
fn validity_is_checked_against_the_code_time_and_expiry_against_the_clock_too() {
    let ring = ring();
    let device_key = signing_key("phone-a");
    let certificate = ring
        .issue(fields("phone-a", 1, 5000, Uses::ALL))
        .expect("issue");
    let terminal = verifier(ring.public_keys());
    let at = |time: u32| Code::sign(certificate.clone(), time, 1, &device_key);
    assert_eq!(
        terminal.check(&at(T0 - 1), T0, Purpose::Transit),
        Err(Refusal::NotYetValid)
    );
    // A terminal clock behind `not before` within the window still accepts.
    assert!(terminal.check(&at(T0), T0 - 30, Purpose::Transit).is_ok());
    assert!(
        terminal
            .check(&at(T0 + WEEK_S), T0 + WEEK_S, Purpose::Transit)
            .is_ok()
    );
    assert_eq!(
        terminal.check(&at(T0 + WEEK_S + 1), T0 + WEEK_S + 1, Purpose::Transit),
        Err(Refusal::Expired)
    );
    assert_eq!(
        terminal.check(&at(T0 + WEEK_S), T0 + WEEK_S + 1, Purpose::Transit),
        Err(Refusal::Expired)
    );
    // The phone will not make a code outside its certificate.
    let mut device = Device::new(&secret("phone-a"), certificate.clone()).expect("device");
    assert_eq!(
        device.make_code(T0 + WEEK_S + 1).map(|_| ()),
        Err(DeviceError::CertificateNotValid(T0 + WEEK_S + 1))
    );
    // A certificate signed by a key other than the provisioned one.
    let forged = certificate_under(
        &signing_key("not-root"),
        1,
        fields("phone-a", 1, 5000, Uses::ALL),
    );
    let code = Code::sign(forged, NOW, 1, &device_key);
    assert_eq!(
        terminal.check(&code, NOW, Purpose::Transit),
        Err(Refusal::RootSignature)
    );
    // A code signed by a key other than the certified one.
    let code = Code::sign(certificate, NOW, 1, &signing_key("phone-b"));
    assert_eq!(
        terminal.check(&code, NOW, Purpose::Transit),
        Err(Refusal::DeviceSignature)
    );
}

#[test]
fn rotation_keeps_old_certificates_valid_and_withdrawal_ends_them() {
    let mut ring = ring();
    let mut old = device(&ring, "phone-old", 1, 5000, Uses::ALL);
    ring.add(RootKeyId(2), &secret("root-2")).expect("add 2");
    // Terminals are provisioned with key 2 before anything is signed under it.
    let mut terminal = verifier(ring.public_keys());
    ring.rotate_to(RootKeyId(2)).expect("rotate");
    assert_eq!(ring.current(), Some(RootKeyId(2)));
    let mut new = device(&ring, "phone-new", 2, 5000, Uses::ALL);
    assert_eq!(old.certificate().root_key_id(), RootKeyId(1));
    assert_eq!(new.certificate().root_key_id(), RootKeyId(2));
    assert!(
        terminal
            .verify(&old.make_code(NOW).unwrap(), NOW, Purpose::Transit)
            .is_ok()
    );
    assert!(
        terminal
            .verify(&new.make_code(NOW).unwrap(), NOW, Purpose::Transit)
            .is_ok()
    );

    // A terminal not yet provisioned with key 2.
    let mut only_1 = RootKeys::new();
    only_1
        .insert(RootKeyId(1), signing_key("root-1").public_key())
        .expect("insert");
    assert_eq!(
        verifier(only_1).check(&new.make_code(NOW).unwrap(), NOW, Purpose::Transit),
        Err(Refusal::UnknownRoot(RootKeyId(2)))
    );

    // Withdrawing key 1: its certificates are refused, key 2's are not.
    ring.withdraw(RootKeyId(1)).expect("withdraw");
    assert_eq!(
        ring.rotate_to(RootKeyId(1)),
        Err(RingError::Withdrawn(RootKeyId(1)))
    );
    assert_eq!(
        ring.public_keys().get(RootKeyId(1)).map(|(_, w)| w),
        Some(true)
    );
    terminal
        .roots_mut()
        .withdraw(RootKeyId(1))
        .expect("withdraw at terminal");
    assert_eq!(
        terminal.verify(&old.make_code(NOW + 1).unwrap(), NOW + 1, Purpose::Transit),
        Err(Refusal::RootWithdrawn(RootKeyId(1)))
    );
    assert!(
        terminal
            .verify(&new.make_code(NOW + 1).unwrap(), NOW + 1, Purpose::Transit)
            .is_ok()
    );
    // The old certificate is renewed under key 2; the sequence keeps counting.
    let renewed = ring
        .issue(old.certificate().fields().clone())
        .expect("issue");
    let sequence = old.next_sequence();
    old.renew(renewed).expect("renew");
    let code = old.make_code(NOW + 2).unwrap();
    assert_eq!(code.sequence(), sequence);
    assert!(terminal.verify(&code, NOW + 2, Purpose::Transit).is_ok());

    // Withdrawing the current key leaves the ring without a signer.
    ring.withdraw(RootKeyId(2)).expect("withdraw 2");
    assert_eq!(
        ring.issue(old.certificate().fields().clone()).map(|_| ()),
        Err(RingError::NoCurrentKey)
    );
    assert_eq!(
        ring.add(RootKeyId(2), &secret("x")).map(|_| ()),
        Err(RingError::Duplicate(RootKeyId(2)))
    );
    assert_eq!(
        ring.rotate_to(RootKeyId(9)),
        Err(RingError::Unknown(RootKeyId(9)))
    );
}

#[test]
fn root_keys_refuse_conflicts_and_bound_their_count() {
    let mut keys = RootKeys::new();
    let k1 = signing_key("root-1").public_key();
    keys.insert(RootKeyId(1), k1.clone()).expect("insert");
    keys.insert(RootKeyId(1), k1)
        .expect("same key again is fine");
    assert_eq!(
        keys.insert(RootKeyId(1), signing_key("root-x").public_key()),
        Err(TrustError::Conflict(RootKeyId(1)))
    );
    assert_eq!(
        keys.withdraw(RootKeyId(5)),
        Err(TrustError::Unknown(RootKeyId(5)))
    );
    for id in 2..=ROOT_KEYS_MAX as u32 {
        keys.insert(
            RootKeyId(id),
            signing_key(&format!("root-{id}")).public_key(),
        )
        .expect("up to the bound");
    }
    assert_eq!(keys.len(), ROOT_KEYS_MAX);
    assert_eq!(
        keys.insert(RootKeyId(1000), signing_key("root-1000").public_key()),
        Err(TrustError::Full)
    );
}

#[test]
fn pem_round_trips_and_refuses_malformed_files() {
    let mut ring = ring();
    ring.add(RootKeyId(2), &secret("root-2")).expect("add");
    ring.add(RootKeyId(4_000_000_000), &secret("root-big"))
        .expect("add");
    let pem = ring.to_pem();
    assert_eq!(pem.matches("# key-id: ").count(), 3);
    assert!(pem.contains("# key-id: 4000000000\n-----BEGIN PUBLIC KEY-----\n"));
    assert!(pem.lines().all(|l| l.len() <= 64));
    let parsed = RootKeys::from_pem(&pem).expect("parse");
    assert_eq!(parsed, ring.public_keys());

    let block = |id: &str| {
        format!(
            "# key-id: {id}\n{}",
            APPENDIX_ROOT_PEM
                .lines()
                .skip(1)
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    let body_line = APPENDIX_ROOT_PEM.lines().nth(2).unwrap();
    let mut p256_oid = spki_der_from_public_key(&signing_key("root-1").public_key());
    assert_eq!(
        p256_oid[15..23],
        [0x2A, 0x81, 0x1C, 0xCF, 0x55, 0x01, 0x82, 0x2D]
    );
    p256_oid[15..23].copy_from_slice(&[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]);
    let pem_of_der = |der: &[u8]| {
        format!(
            "# key-id: 1\n-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let cases: Vec<(String, PemError)> = vec![
        (
            APPENDIX_ROOT_PEM
                .lines()
                .skip(1)
                .collect::<Vec<_>>()
                .join("\n"),
            PemError::BlockWithoutKeyId(1),
        ),
        (block("one"), PemError::BadKeyId(1)),
        (block("-1"), PemError::BadKeyId(1)),
        (block("4294967296"), PemError::BadKeyId(1)),
        (
            format!("{}\n{}", block("1"), block("1")),
            PemError::DuplicateKeyId(RootKeyId(1)),
        ),
        ("# key-id: 1\n".to_string(), PemError::KeyIdWithoutBlock(1)),
        (
            "# key-id: 1\n-----BEGIN PUBLIC KEY-----\n".to_string() + body_line,
            PemError::Unterminated(2),
        ),
        ("hello".to_string(), PemError::Stray(1)),
        (
            "# key-id: 1\n-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n".to_string(),
            PemError::Base64(2),
        ),
        (block("1").replace("MFkw", "MFkx"), PemError::NotSm2Spki(2)),
        // An EC key on another curve (prime256v1's OID in place of SM2's).
        (pem_of_der(&p256_oid), PemError::NotSm2Spki(2)),
        // The right shape, a point off the curve (last byte of y changed).
        (
            block("1").replace("tEw==", "tEA=="),
            PemError::InvalidPoint(2),
        ),
        ("#".repeat(64 * 1024 + 1), PemError::TooLong(64 * 1024 + 1)),
    ];
    for (text, expected) in cases {
        assert_eq!(RootKeys::from_pem(&text), Err(expected), "{text}");
    }
    // Comments and blank lines are ignored; CRLF is fine.
    let with_comments = format!(
        "# root keys of the test city\n\n{}",
        block("7").replace('\n', "\r\n")
    );
    assert_eq!(
        RootKeys::from_pem(&with_comments)
            .expect("parse")
            .ids()
            .collect::<Vec<_>>(),
        vec![RootKeyId(7)]
    );
}

#[test]
fn pem_key_count_is_bounded_on_both_sides() {
    let key = signing_key("root-1").public_key();
    let mut keys = RootKeys::new();
    for id in 0..ROOT_KEYS_MAX as u32 {
        keys.insert(RootKeyId(id), key.clone()).expect("insert");
    }
    let pem = keys.to_pem();
    assert_eq!(
        RootKeys::from_pem(&pem).expect("at the bound").len(),
        ROOT_KEYS_MAX
    );
    let mut one_more = RootKeys::new();
    one_more.insert(RootKeyId(999), key).expect("insert");
    let too_many = format!("{pem}{}", one_more.to_pem());
    assert_eq!(
        RootKeys::from_pem(&too_many),
        Err(PemError::TooManyKeys(ROOT_KEYS_MAX))
    );
}

#[test]
fn replay_cache_is_bounded_on_both_sides() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let config = VerifierConfig {
        replay_entries_max: 3,
        ..VerifierConfig::default()
    };
    let mut terminal = Verifier::new(ring.public_keys(), config).expect("config");
    let codes: Vec<Code> = (0..4).map(|i| device.make_code(NOW + i).unwrap()).collect();
    let now = NOW + 4;
    for code in &codes[..3] {
        terminal
            .verify(code, now, Purpose::Transit)
            .expect("accepted");
    }
    // At the bound every entry is remembered.
    assert_eq!(terminal.replay_entries(), 3);
    for code in &codes[..3] {
        assert_eq!(
            terminal.check(code, now, Purpose::Transit),
            Err(Refusal::Replay)
        );
    }
    // One more evicts the oldest code time, and only that one.
    terminal
        .verify(&codes[3], now, Purpose::Transit)
        .expect("accepted");
    assert_eq!(terminal.replay_entries(), 3);
    assert!(terminal.check(&codes[0], now, Purpose::Transit).is_ok());
    for code in &codes[1..] {
        assert_eq!(
            terminal.check(code, now, Purpose::Transit),
            Err(Refusal::Replay)
        );
    }
}

#[test]
fn spend_ledger_is_bounded_on_both_sides_and_drops_expired_certificates() {
    let ring = ring();
    let config = VerifierConfig {
        spend_ledger_entries_max: 2,
        ..VerifierConfig::default()
    };
    let mut terminal = Verifier::new(ring.public_keys(), config).expect("config");
    let mut short = {
        let mut f = fields("phone-short", 1, 5000, Uses::ALL);
        f.not_after = NOW + 100;
        Device::new(&secret("phone-short"), ring.issue(f).unwrap()).unwrap()
    };
    let mut b = device(&ring, "phone-b", 2, 5000, Uses::ALL);
    let mut c = device(&ring, "phone-c", 3, 5000, Uses::ALL);
    let pay = Purpose::Pay { amount_fen: 10 };
    terminal
        .verify(&short.make_code(NOW).unwrap(), NOW, pay)
        .expect("1st certificate");
    terminal
        .verify(&b.make_code(NOW).unwrap(), NOW, pay)
        .expect("2nd certificate");
    assert_eq!(terminal.spend_ledger_entries(), 2);
    // At the bound, known certificates still pay; a third is refused, but may still travel.
    terminal
        .verify(&b.make_code(NOW + 1).unwrap(), NOW + 1, pay)
        .expect("known certificate");
    assert_eq!(
        terminal.verify(&c.make_code(NOW + 1).unwrap(), NOW + 1, pay),
        Err(Refusal::SpendLedgerFull)
    );
    assert!(
        terminal
            .verify(&c.make_code(NOW + 2).unwrap(), NOW + 2, Purpose::Transit)
            .is_ok()
    );
    // Once the short certificate has expired its entry goes, and the third pays.
    terminal
        .verify(&c.make_code(NOW + 101).unwrap(), NOW + 101, pay)
        .expect("room again");
    assert_eq!(terminal.spend_ledger_entries(), 2);
}

#[test]
fn verifier_config_is_bounded_on_both_sides() {
    let roots = || ring().public_keys();
    let at_max = VerifierConfig {
        freshness_window_s: FRESHNESS_WINDOW_S_MAX,
        replay_entries_max: REPLAY_ENTRIES_MAX,
        spend_ledger_entries_max: SPEND_LEDGER_ENTRIES_MAX,
    };
    assert!(Verifier::new(roots(), at_max).is_ok());
    let over = |change: fn(&mut VerifierConfig)| {
        let mut config = at_max;
        change(&mut config);
        Verifier::new(roots(), config).map(|_| ())
    };
    assert_eq!(
        over(|c| c.freshness_window_s += 1),
        Err(ConfigError::FreshnessWindow(FRESHNESS_WINDOW_S_MAX + 1))
    );
    assert_eq!(
        over(|c| c.replay_entries_max += 1),
        Err(ConfigError::ReplayEntries(REPLAY_ENTRIES_MAX + 1))
    );
    assert_eq!(
        over(|c| c.replay_entries_max = 0),
        Err(ConfigError::ReplayEntries(0))
    );
    assert_eq!(
        over(|c| c.spend_ledger_entries_max += 1),
        Err(ConfigError::SpendLedgerEntries(
            SPEND_LEDGER_ENTRIES_MAX + 1
        ))
    );
}

#[test]
fn freshness_window_is_configurable() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let code = device.make_code(NOW).unwrap();
    let config = VerifierConfig {
        freshness_window_s: 10,
        ..VerifierConfig::default()
    };
    let terminal = Verifier::new(ring.public_keys(), config).expect("config");
    assert!(terminal.check(&code, NOW + 10, Purpose::Transit).is_ok());
    assert!(terminal.check(&code, NOW - 10, Purpose::Transit).is_ok());
    assert_eq!(
        terminal.check(&code, NOW + 11, Purpose::Transit),
        Err(Refusal::NotFresh(Staleness::Old { age_s: 11 }))
    );
    assert_eq!(
        terminal.check(&code, NOW - 11, Purpose::Transit),
        Err(Refusal::NotFresh(Staleness::Future { ahead_s: 11 }))
    );
}

#[test]
fn text_is_bounded_on_both_sides_and_strict() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let text = device.make_code(NOW).unwrap().to_text();
    assert_eq!(text.len(), TEXT_LEN_MAX);
    assert!(Code::parse_text(&text).is_ok());
    assert_eq!(
        Code::parse_text(&format!("{text}0")),
        Err(FormatError::TextTooLong(TEXT_LEN_MAX + 1))
    );
    assert_eq!(
        Code::parse_text(&"x".repeat(1 << 20)),
        Err(FormatError::TextTooLong(1 << 20))
    );
    // Two characters short: 193 bytes.
    assert_eq!(
        Code::parse_text(&text[..TEXT_LEN_MAX - 3]),
        Err(FormatError::WrongLength {
            what: "code",
            expected: CODE_LEN,
            actual: 192
        })
    );
    assert_eq!(
        Code::parse_text(&text[..TEXT_LEN_MAX - 1]),
        Err(FormatError::WrongLength {
            what: "code",
            expected: CODE_LEN,
            actual: 193
        })
    );
    assert_eq!(
        Code::parse_text(&text.to_lowercase()),
        Err(FormatError::WrongPrefix)
    );
    assert_eq!(
        Code::parse_text(&format!("ZZC1:{}", text[5..].to_lowercase())),
        Err(FormatError::Base45)
    );
    assert_eq!(Code::parse_text(""), Err(FormatError::WrongPrefix));
    assert_eq!(
        Code::parse_text("ZZC1:"),
        Err(FormatError::WrongLength {
            what: "code",
            expected: CODE_LEN,
            actual: 0
        })
    );
    // A 3-character group above 65535 ("GGW" = 65536) is not Base45.
    assert_eq!(
        Code::parse_text(&format!("{}GGW", &text[..TEXT_LEN_MAX - 3])),
        Err(FormatError::Base45)
    );
}

#[test]
fn format_errors_name_the_field() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let good = *device.make_code(NOW).unwrap().as_bytes();
    let with = |offset: usize, value: u8| {
        let mut bytes = good;
        bytes[offset] = value;
        Code::parse(&bytes).map(|_| ())
    };
    assert_eq!(with(0, 0xC2), Err(FormatError::UnknownFormat(0xC2)));
    assert_eq!(with(1, 0x02), Err(FormatError::UnknownVersion(0x02)));
    assert!(matches!(with(6, 0x51), Err(FormatError::CardNumber(_))));
    assert!(matches!(with(13, 0x1A), Err(FormatError::CardNumber(_))));
    assert_eq!(with(14, 0x04), Err(FormatError::DevicePublicKey));
    assert_eq!(with(59, 0x08), Err(FormatError::UnknownUses(0x08)));
    assert!(with(59, 0x07).is_ok());
    assert_eq!(
        Code::parse(&good[..CODE_LEN - 1]),
        Err(FormatError::WrongLength {
            what: "code",
            expected: CODE_LEN,
            actual: CODE_LEN - 1
        })
    );
}

#[test]
fn device_state_round_trips_as_json_and_debug_hides_the_key() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    device.make_code(NOW).unwrap();
    let json = serde_json::to_string(&device).expect("serialize");
    let secret_hex = hex::encode_upper(secret("phone-a").expose());
    assert!(
        json.contains(&secret_hex),
        "the state carries the private key"
    );
    let mut restored: Device = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(restored.next_sequence(), 2);
    assert_eq!(restored.certificate(), device.certificate());
    assert_eq!(restored.public_key(), device.public_key());
    let code = restored.make_code(NOW + 1).unwrap();
    assert_eq!(code.sequence(), 2);
    assert!(
        verifier(ring.public_keys())
            .check(&code, NOW + 1, Purpose::Transit)
            .is_ok()
    );

    let debug = format!("{device:?}");
    assert!(!debug.contains(&secret_hex));
    assert!(!debug.to_lowercase().contains(&secret_hex.to_lowercase()));
    assert!(debug.contains("***"));

    // State for another key than the certificate's is refused.
    let other = serde_json::to_string(&device)
        .unwrap()
        .replace(&secret_hex, &hex::encode_upper(secret("phone-b").expose()));
    let err = serde_json::from_str::<Device>(&other)
        .unwrap_err()
        .to_string();
    assert!(err.contains("another device key"), "{err}");
    assert!(
        serde_json::from_str::<Device>(
            "{\"secret_key\":\"00\",\"certificate\":\"\",\"next_sequence\":1}"
        )
        .is_err()
    );
    assert!(matches!(
        Device::new(&secret("phone-b"), device.certificate().clone()),
        Err(DeviceError::KeyMismatch)
    ));
}

#[test]
fn sequence_wraps_after_65535() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let json = serde_json::to_string(&device)
        .unwrap()
        .replace("\"next_sequence\":1", "\"next_sequence\":65535");
    device = serde_json::from_str(&json).unwrap();
    assert_eq!(device.make_code(NOW).unwrap().sequence(), 65535);
    assert_eq!(device.make_code(NOW).unwrap().sequence(), 0);
}

#[test]
fn refusal_codes_and_steps_are_distinct() {
    let refusals = [
        Refusal::Format(FormatError::WrongPrefix),
        Refusal::UnknownRoot(RootKeyId(1)),
        Refusal::RootWithdrawn(RootKeyId(1)),
        Refusal::RootSignature,
        Refusal::NotYetValid,
        Refusal::Expired,
        Refusal::NotFresh(Staleness::Old { age_s: 61 }),
        Refusal::NotFresh(Staleness::Future { ahead_s: 61 }),
        Refusal::DeviceSignature,
        Refusal::DenyListed,
        Refusal::Replay,
        Refusal::OverLimit {
            amount_fen: 1,
            spent_fen: 0,
            limit_fen: 0,
        },
        Refusal::SpendLedgerFull,
        Refusal::UseNotAllowed(Uses::PAY),
    ];
    let mut codes: Vec<&str> = refusals.iter().map(Refusal::code).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), refusals.len());
    let steps: Vec<u8> = refusals.iter().map(Refusal::step).collect();
    assert_eq!(steps, [1, 2, 2, 2, 3, 3, 4, 4, 5, 6, 7, 8, 8, 9]);
}
