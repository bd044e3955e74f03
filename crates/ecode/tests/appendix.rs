//! The spec's appendix example, exactly: its text, its root PEM, its four terminal clocks.

mod common;

use common::*;
use crypto::{Key32, Sm2SigningKey};
use ecode::{
    CODE_LEN, Code, FormatError, Purpose, Refusal, RootKeyId, RootKeys, Staleness, Uses,
    spki_der_from_public_key,
};

fn appendix_code() -> Code {
    Code::parse_text(APPENDIX_CODE.trim()).expect("appendix text parses")
}

fn appendix_roots() -> RootKeys {
    RootKeys::from_pem(APPENDIX_ROOT_PEM).expect("appendix PEM parses")
}

fn key_from_hex(hex: &str) -> Sm2SigningKey {
    Sm2SigningKey::from_secret(&Key32::from_hex(hex).expect("hex")).expect("scalar")
}

#[test]
fn appendix_text_has_the_stated_fields() {
    let code = appendix_code();
    let cert = code.certificate();
    let f = cert.fields();
    assert_eq!(cert.root_key_id(), RootKeyId(1));
    assert_eq!(f.card_number.to_string(), "4101000000000018");
    assert_eq!(f.not_before, 1_794_996_400);
    assert_eq!(f.not_after, 1_795_604_800);
    assert_eq!(f.offline_limit_fen, 5000);
    assert_eq!(f.uses, Uses::ALL);
    assert_eq!(code.time(), 1_795_000_000);
    assert_eq!(code.sequence(), 1);
    // The certified device key is the one of the given device private key.
    assert_eq!(
        f.device_public_key,
        key_from_hex(APPENDIX_DEVICE_SECRET).public_key()
    );
    // Text form round-trips byte for byte.
    assert_eq!(code.to_text(), APPENDIX_CODE.trim());
}

#[test]
fn appendix_pem_is_the_given_root_private_keys_public_key() {
    let roots = appendix_roots();
    assert_eq!(roots.ids().collect::<Vec<_>>(), vec![RootKeyId(1)]);
    let (key, withdrawn) = roots.get(RootKeyId(1)).expect("key 1");
    assert!(!withdrawn);
    let derived = key_from_hex(APPENDIX_ROOT_SECRET).public_key();
    assert_eq!(*key, derived);
    // Our DER is the appendix's DER; our PEM differs only by RFC 7468 line wrapping.
    let mut exported = RootKeys::new();
    exported
        .insert(RootKeyId(1), derived.clone())
        .expect("insert");
    let strip = |pem: &str| -> String {
        pem.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("-----"))
            .collect::<String>()
    };
    assert_eq!(strip(&exported.to_pem()), strip(APPENDIX_ROOT_PEM));
    assert_eq!(spki_der_from_public_key(&derived).len(), 91);
}

#[test]
fn appendix_four_terminal_clocks_reach_the_four_decisions() {
    let cases: [(u32, Result<(), Refusal>); 4] = [
        (1_795_000_010, Ok(())),
        (
            1_795_000_061,
            Err(Refusal::NotFresh(Staleness::Old { age_s: 61 })),
        ),
        (
            1_794_999_939,
            Err(Refusal::NotFresh(Staleness::Future { ahead_s: 61 })),
        ),
        (1_795_604_805, Err(Refusal::Expired)),
    ];
    for (clock, expected) in cases {
        for purpose in [
            Purpose::Pay { amount_fen: 200 },
            Purpose::Identity,
            Purpose::Transit,
        ] {
            // A fresh terminal each time, so that no decision rests on another's replay entry.
            let mut terminal = verifier(appendix_roots());
            let got = terminal
                .verify_text(APPENDIX_CODE.trim(), clock, purpose)
                .map(|accepted| {
                    assert_eq!(accepted.card_number.to_string(), "4101000000000018");
                    assert_eq!(accepted.sequence, 1);
                });
            assert_eq!(got, expected, "clock {clock}, {purpose:?}");
        }
    }
}

/// Which refusals a changed byte at `offset` may give, by the field it lies in. The spec says
/// "root or device signature invalid, or a format error"; two fields give other refusals
/// earlier in the spec's own order: the root key id (step 2, unknown root) and the code time
/// (steps 3 and 4, validity and freshness, before the device signature in step 5).
fn allowed(offset: usize, refusal: &Refusal) -> bool {
    match offset {
        0 | 1 => matches!(refusal, Refusal::Format(_)),
        2..=5 => matches!(refusal, Refusal::UnknownRoot(_)),
        6..=59 => matches!(refusal, Refusal::Format(_) | Refusal::RootSignature),
        60..=123 => matches!(refusal, Refusal::RootSignature),
        124..=127 => matches!(
            refusal,
            Refusal::NotYetValid
                | Refusal::Expired
                | Refusal::NotFresh(_)
                | Refusal::DeviceSignature
        ),
        _ => matches!(refusal, Refusal::DeviceSignature),
    }
}

#[test]
fn every_changed_byte_of_the_appendix_code_is_refused() {
    let original = *appendix_code().as_bytes();
    let terminal = verifier(appendix_roots());
    let mut refused = 0;
    for offset in 0..CODE_LEN {
        for mask in [0xFF, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80] {
            let mut bytes = original;
            bytes[offset] ^= mask;
            let refusal = match Code::parse(&bytes) {
                Err(e) => Refusal::Format(e),
                Ok(code) => terminal
                    .check(&code, 1_795_000_010, Purpose::Transit)
                    .expect_err("a changed code must be refused"),
            };
            assert!(
                allowed(offset, &refusal),
                "byte {offset} ^ {mask:#04x}: unexpected {refusal:?}"
            );
            refused += 1;
        }
    }
    assert_eq!(refused, CODE_LEN * 9);
}

#[test]
fn every_changed_character_of_the_appendix_text_is_refused() {
    let text = APPENDIX_CODE.trim();
    let terminal = verifier(appendix_roots());
    for (i, c) in text.char_indices() {
        let replacement = if c == '0' { '1' } else { '0' };
        let mut changed = String::from(&text[..i]);
        changed.push(replacement);
        changed.push_str(&text[i + 1..]);
        let got = terminal.check_text(&changed, 1_795_000_010, Purpose::Transit);
        assert!(
            got.is_err(),
            "character {i} changed to {replacement} was accepted"
        );
    }
    // And the prefix must be exact.
    assert_eq!(
        terminal.check_text(
            &text.replacen("ZZC1:", "ZZC2:", 1),
            1_795_000_010,
            Purpose::Transit
        ),
        Err(Refusal::Format(FormatError::WrongPrefix))
    );
}
