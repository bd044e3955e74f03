//! Published and worked-example vectors from `test_data/`, run through the public API.

use std::collections::BTreeMap;

use crypto::{
    Algorithm, DivData, Key8, Key16, Key32, MacKey, MasterKeys, Sm2PublicKey, Sm2SigningKey,
    TransactionType, des_decrypt, des_encrypt, diversify, load_mac1, load_mac2, load_session_key,
    load_tac, purchase_mac1, purchase_mac2, purchase_session_key, purchase_tac, sm3, sm4_decrypt,
    sm4_encrypt, tac_key, tdes_decrypt, tdes_encrypt,
};

const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/test_data");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DATA_DIR}/{name}")).expect("test data file")
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    unhex(s)
        .try_into()
        .unwrap_or_else(|_| panic!("{s} is not {N} bytes"))
}

/// `[section]` headers followed by `name = hex` lines; `#` starts a comment.
fn sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').expect("name = value");
        let prev = out
            .entry(current.clone())
            .or_default()
            .insert(k.trim().to_string(), v.trim().to_string());
        assert!(prev.is_none(), "duplicate key {k} in [{current}]");
    }
    out
}

fn u32_of(s: &str) -> u32 {
    u32::from_be_bytes(arr(s))
}

fn u16_of(s: &str) -> u16 {
    u16::from_be_bytes(arr(s))
}

/// One check per worked-example profile: every value the appendix lists.
fn check_worked_example(section: &str, alg: Algorithm) {
    let all = sections(&read("epurse_worked_examples.txt"));
    let v = &all[section];
    let get = |k: &str| -> &str { v.get(k).unwrap_or_else(|| panic!("[{section}] lacks {k}")) };
    assert_eq!(Algorithm::from_id(arr::<1>(get("alg"))[0]).unwrap(), alg);

    let masters = MasterKeys {
        purchase: Key16::from_hex(get("mk_purchase")).unwrap(),
        load: Key16::from_hex(get("mk_load")).unwrap(),
        tac: Key16::from_hex(get("mk_tac")).unwrap(),
    };
    assert_eq!(
        masters,
        MasterKeys::test_set(),
        "test_set() must be the §4 key set"
    );
    let d = DivData(arr(get("d")));
    let keys = masters.diversify(alg, &d);
    assert_eq!(keys.dpk.expose(), &arr::<16>(get("dpk")), "{section} DPK");
    assert_eq!(keys.dlk.expose(), &arr::<16>(get("dlk")), "{section} DLK");
    assert_eq!(keys.dtk.expose(), &arr::<16>(get("dtk")), "{section} DTK");
    assert_eq!(diversify(alg, &masters.purchase, &d), keys.dpk);

    let terminal: [u8; 6] = arr(get("terminal_id"));
    let date: [u8; 4] = arr(get("date"));
    let time: [u8; 3] = arr(get("time"));
    let tac = tac_key(alg, &keys.dtk);

    // Load (圈存).
    let online = u16_of(get("load_online_counter"));
    let balance_before = u32_of(get("load_balance_before"));
    let amount = u32_of(get("load_amount"));
    let seslk = load_session_key(alg, &keys.dlk, arr(get("load_random")), online);
    assert_eq!(seslk.expose(), unhex(get("seslk")), "{section} SESLK");
    assert_eq!(seslk.algorithm(), alg);
    assert_eq!(
        load_mac1(&seslk, balance_before, amount, &terminal),
        arr::<4>(get("load_mac1")),
        "{section} load MAC1"
    );
    assert_eq!(
        load_mac2(&seslk, amount, &terminal, &date, &time),
        arr::<4>(get("load_mac2")),
        "{section} load MAC2"
    );
    assert_eq!(
        load_tac(
            &tac,
            balance_before + amount,
            online,
            amount,
            &terminal,
            &date,
            &time
        ),
        arr::<4>(get("load_tac")),
        "{section} load TAC"
    );

    // Purchase (消费).
    let offline = u16_of(get("purchase_offline_counter"));
    let serial = u32_of(get("purchase_terminal_serial"));
    let amount = u32_of(get("purchase_amount"));
    let sespk = purchase_session_key(alg, &keys.dpk, arr(get("purchase_random")), offline, serial);
    assert_eq!(sespk.expose(), unhex(get("sespk")), "{section} SESPK");
    assert_eq!(
        purchase_mac1(
            &sespk,
            amount,
            TransactionType::Purchase,
            &terminal,
            &date,
            &time
        ),
        arr::<4>(get("purchase_mac1")),
        "{section} purchase MAC1"
    );
    assert_eq!(
        purchase_mac2(&sespk, amount),
        arr::<4>(get("purchase_mac2")),
        "{section} MAC2"
    );
    assert_eq!(
        purchase_tac(
            &tac,
            amount,
            TransactionType::Purchase,
            &terminal,
            serial,
            &date,
            &time
        ),
        arr::<4>(get("purchase_tac")),
        "{section} purchase TAC"
    );
}

#[test]
fn worked_example_3des_matches_appendix() {
    check_worked_example("3des", Algorithm::Tdes);
}

#[test]
fn worked_example_sm4_matches_appendix() {
    check_worked_example("sm4", Algorithm::Sm4);
}

#[test]
fn block_cipher_known_answers() {
    let mut count = 0;
    for line in read("block_ciphers.txt").lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [cipher, key, plain, expected] = f[..] else {
            panic!("bad line {line}")
        };
        match cipher {
            "sm4" => {
                let k = Key16::from_hex(key).unwrap();
                assert_eq!(sm4_encrypt(&k, &arr(plain)), arr::<16>(expected), "{line}");
                assert_eq!(sm4_decrypt(&k, &arr(expected)), arr::<16>(plain), "{line}");
            }
            "des" => {
                let k = Key8::from_hex(key).unwrap();
                assert_eq!(des_encrypt(&k, &arr(plain)), arr::<8>(expected), "{line}");
                assert_eq!(des_decrypt(&k, &arr(expected)), arr::<8>(plain), "{line}");
            }
            "tdes" => {
                let k = Key16::from_hex(key).unwrap();
                assert_eq!(tdes_encrypt(&k, &arr(plain)), arr::<8>(expected), "{line}");
                assert_eq!(tdes_decrypt(&k, &arr(expected)), arr::<8>(plain), "{line}");
            }
            other => panic!("unknown cipher {other}"),
        }
        count += 1;
    }
    assert!(
        count >= 14,
        "expected the whole vector file to be read, got {count}"
    );
}

#[test]
fn sm3_known_answers() {
    let mut count = 0;
    for line in read("sm3.txt").lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (msg, digest) = line.split_once(' ').expect("message digest");
        assert_eq!(sm3(&unhex(msg)), arr::<32>(digest.trim()));
        count += 1;
    }
    assert_eq!(count, 2);
}

/// `Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA)` (GB/T 32918.2 §5.5).
fn z_a(public_uncompressed: &[u8; 65]) -> [u8; 32] {
    let mut data = vec![0x00, 0x80];
    data.extend_from_slice(crypto::SM2_DEFAULT_DISTID.as_bytes());
    for p in [
        "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC",
        "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93",
        "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7",
        "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0",
    ] {
        data.extend_from_slice(&unhex(p));
    }
    data.extend_from_slice(&public_uncompressed[1..]);
    sm3(&data)
}

#[test]
fn sm2_gbt32918_example_verifies_with_intermediate_values() {
    let all = sections(&read("sm2.txt"));
    let v = &all["gbt32918"];
    let sk = Sm2SigningKey::from_secret(&Key32::from_hex(&v["secret"]).unwrap()).unwrap();
    let pk = sk.public_key();
    assert_eq!(pk.to_uncompressed().to_vec(), unhex(&v["public"]));
    let z = z_a(&pk.to_uncompressed());
    assert_eq!(z, arr::<32>(&v["z"]));
    let msg = unhex(&v["message"]);
    let e = sm3(&[z.as_slice(), &msg].concat());
    assert_eq!(e, arr::<32>(&v["e"]));

    let sig = unhex(&v["signature"]);
    pk.verify(&msg, &sig).expect("standard signature verifies");
    pk.verify_digest(&e, &sig)
        .expect("standard signature verifies over e");
    // Through the compressed encoding too, which is our wire form.
    let pk2 = Sm2PublicKey::from_sec1(&pk.to_compressed()).unwrap();
    assert_eq!(pk2, pk);
    pk2.verify(&msg, &sig).unwrap();

    let mut bad = sig.clone();
    bad[63] ^= 1;
    assert_eq!(
        pk.verify(&msg, &bad),
        Err(crypto::CryptoError::SignatureMismatch)
    );
    assert_eq!(
        pk.verify(b"message digesT", &sig),
        Err(crypto::CryptoError::SignatureMismatch)
    );
}

#[test]
fn sm2_openssl_signature_verifies_and_ours_round_trips() {
    let all = sections(&read("sm2.txt"));
    let v = &all["openssl"];
    let pk = Sm2PublicKey::from_sec1(&unhex(&v["public"])).unwrap();
    let msg = unhex(&v["message"]);
    pk.verify(&msg, &unhex(&v["signature"]))
        .expect("OpenSSL signature verifies");

    let sk = Sm2SigningKey::from_secret(&Key32::from_hex(&v["secret"]).unwrap()).unwrap();
    let ours = sk.sign(&msg);
    pk.verify(&msg, &ours).unwrap();
    // Deterministic nonce: same key and message, same signature.
    assert_eq!(sk.sign(&msg), ours);
    assert_eq!(sk.to_secret(), Key32::from_hex(&v["secret"]).unwrap());
}

#[test]
fn sm2_our_signature_is_pinned_and_openssl_accepted() {
    let all = sections(&read("sm2.txt"));
    let v = &all["ours"];
    let sk = Sm2SigningKey::from_secret(&Key32::from_hex(&v["secret"]).unwrap()).unwrap();
    assert_eq!(
        sk.public_key().to_compressed().to_vec(),
        unhex(&v["public_compressed"])
    );
    assert_eq!(
        sk.sign(&unhex(&v["message"])).to_vec(),
        unhex(&v["signature"])
    );
}

#[test]
fn sm2_rejects_bad_inputs() {
    assert_eq!(
        Sm2SigningKey::from_secret(&Key32::from_bytes([0; 32])).unwrap_err(),
        crypto::CryptoError::InvalidSecretKey
    );
    // n itself is out of range.
    let n = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123";
    assert!(Sm2SigningKey::from_secret(&Key32::from_hex(n).unwrap()).is_err());
    assert_eq!(
        Sm2PublicKey::from_sec1(&[2; 33]).unwrap_err(),
        crypto::CryptoError::InvalidPublicKey
    );
    assert_eq!(
        Sm2PublicKey::from_sec1(&[]).unwrap_err(),
        crypto::CryptoError::InvalidPublicKey
    );

    let sk = Sm2SigningKey::from_secret(&Key32::from_bytes([7; 32])).unwrap();
    let pk = sk.public_key();
    assert!(matches!(
        pk.verify(b"x", &[1; 63]),
        Err(crypto::CryptoError::InvalidLength {
            expected: 64,
            actual: 63,
            ..
        })
    ));
    assert_eq!(
        pk.verify(b"x", &[0; 64]),
        Err(crypto::CryptoError::MalformedSignature)
    );
    let printed = format!("{sk:?}");
    assert!(!printed.contains(&hex::encode_upper([7u8; 32])) && printed.contains("***"));
}

#[test]
fn kcv_is_first_three_bytes_of_encrypted_zero_block() {
    let mk = MasterKeys::test_set().purchase;
    assert_eq!(mk.kcv(Algorithm::Sm4), [0x2D, 0x5C, 0x72]);
    assert_eq!(mk.kcv(Algorithm::Tdes), [0x5E, 0xD7, 0xEA]);
    assert_eq!(
        Key8::from_hex("0101010101010101").unwrap().kcv(),
        [0x8C, 0xA6, 0x4D]
    );
}

#[test]
fn tac_key_3des_is_xor_of_halves_and_sm4_is_dtk() {
    let dtk = Key16::from_hex("E9D6C886B6534FECAF3819A6B9B16EFA").unwrap();
    match tac_key(Algorithm::Tdes, &dtk) {
        MacKey::Des(k) => assert_eq!(k.expose(), &arr::<8>("46EED1200FE22116")),
        other => panic!("expected a DES key, got {other:?}"),
    }
    assert_eq!(tac_key(Algorithm::Sm4, &dtk), MacKey::Sm4(dtk.clone()));
}

#[test]
fn complex_purchase_uses_type_09_in_mac1_and_tac() {
    let alg = Algorithm::Sm4;
    let keys = MasterKeys::test_set().diversify(alg, &DivData(arr("4101000000000018")));
    let sespk = purchase_session_key(alg, &keys.dpk, [1, 2, 3, 4], 0, 7);
    let (t, d, h) = ([1u8; 6], [0x20, 0x26, 0x11, 0x26], [0x14, 0x30, 0x00]);
    assert_ne!(
        purchase_mac1(&sespk, 200, TransactionType::Purchase, &t, &d, &h),
        purchase_mac1(&sespk, 200, TransactionType::ComplexPurchase, &t, &d, &h)
    );
}
