//! Interop with Debian's `openssl` (3.x): it verifies our root and device signatures with our
//! PEM, and we verify its signatures with its PEM. OpenSSL wants DER signatures, so raw
//! `r || s` is converted both ways here.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use ecode::{Code, RootKeyId, RootKeys, Uses, spki_der_from_public_key};

const DISTID: &str = "distid:1234567812345678";

fn openssl(args: &[&str]) -> Output {
    match Command::new("openssl").args(args).output() {
        Ok(output) => output,
        Err(e) => panic!(
            "cannot run `openssl` ({e}): these interop tests need Debian's openssl package \
             (apt-get install openssl)"
        ),
    }
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from raw `r || s`.
fn der_from_raw(rs: &[u8]) -> Vec<u8> {
    let integer = |x: &[u8]| {
        let mut x: Vec<u8> = x.iter().copied().skip_while(|&b| b == 0).collect();
        if x.first().is_none_or(|&b| b & 0x80 != 0) {
            x.insert(0, 0);
        }
        let mut out = vec![0x02, u8::try_from(x.len()).unwrap()];
        out.extend(x);
        out
    };
    let mut body = integer(&rs[..32]);
    body.extend(integer(&rs[32..]));
    let mut out = vec![0x30, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

/// Raw `r || s` from DER (short-form lengths only, as SM2 signatures always have).
fn raw_from_der(der: &[u8]) -> [u8; 64] {
    assert_eq!(der[0], 0x30, "not a DER SEQUENCE");
    let mut out = [0u8; 64];
    let mut at = 2;
    for half in 0..2 {
        assert_eq!(der[at], 0x02, "not a DER INTEGER");
        let len = usize::from(der[at + 1]);
        let value = &der[at + 2..at + 2 + len];
        let value = &value[value.len().saturating_sub(32)..];
        out[half * 32 + 32 - value.len()..half * 32 + 32].copy_from_slice(value);
        at += 2 + len;
    }
    out
}

fn public_key_pem(key: &crypto::Sm2PublicKey) -> String {
    let mut keys = RootKeys::new();
    keys.insert(RootKeyId(1), key.clone()).unwrap();
    keys.to_pem()
}

/// Asks OpenSSL whether `signature` (raw) over `message` verifies under the PEM.
fn openssl_verifies(dir: &Path, name: &str, pem: &str, message: &[u8], signature: &[u8]) -> bool {
    let key = dir.join(format!("{name}.pem"));
    let msg = dir.join(format!("{name}.bin"));
    let sig = dir.join(format!("{name}.der"));
    std::fs::write(&key, pem).unwrap();
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&sig, der_from_raw(signature)).unwrap();
    let out = openssl(&[
        "pkeyutl",
        "-verify",
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        DISTID,
        "-pubin",
        "-inkey",
        key.to_str().unwrap(),
        "-sigfile",
        sig.to_str().unwrap(),
        "-in",
        msg.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verified = out.status.success() && stdout.contains("Signature Verified Successfully");
    if !verified {
        eprintln!(
            "openssl {name}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    verified
}

#[test]
fn openssl_verifies_the_appendix_signatures_with_the_appendix_pem() {
    let dir = tempfile::tempdir().unwrap();
    let code = Code::parse_text(APPENDIX_CODE.trim()).unwrap();
    let cert = code.certificate();
    assert!(openssl_verifies(
        dir.path(),
        "root",
        APPENDIX_ROOT_PEM,
        cert.signed_bytes(),
        cert.root_signature()
    ));
    let device_pem = public_key_pem(&cert.fields().device_public_key);
    assert!(openssl_verifies(
        dir.path(),
        "device",
        &device_pem,
        code.signed_bytes(),
        code.device_signature()
    ));
}

#[test]
fn openssl_verifies_our_certificates_with_our_pem_and_refuses_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let pem = ring.to_pem();
    let cert = device.certificate().clone();
    assert!(openssl_verifies(
        dir.path(),
        "cert",
        &pem,
        cert.signed_bytes(),
        cert.root_signature()
    ));
    let mut changed = cert.signed_bytes().to_vec();
    changed[58] ^= 0x01;
    assert!(!openssl_verifies(
        dir.path(),
        "changed",
        &pem,
        &changed,
        cert.root_signature()
    ));

    let code = device.make_code(T0 + 10).unwrap();
    let device_pem = public_key_pem(&device.public_key());
    assert!(openssl_verifies(
        dir.path(),
        "code",
        &device_pem,
        code.signed_bytes(),
        code.device_signature()
    ));
}

#[test]
fn we_verify_openssl_signatures_under_openssl_pem() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let public = dir.path().join("public.pem");
    let msg = dir.path().join("msg.bin");
    let sig = dir.path().join("sig.der");
    let message = b"certificate bytes 0..59 or any message";
    std::fs::write(&msg, message).unwrap();
    let p = |path: &Path| path.to_str().unwrap().to_string();
    for args in [
        vec![
            "genpkey".into(),
            "-algorithm".into(),
            "SM2".into(),
            "-out".into(),
            p(&key),
        ],
        vec![
            "pkey".into(),
            "-in".into(),
            p(&key),
            "-pubout".into(),
            "-out".into(),
            p(&public),
        ],
        vec![
            "pkeyutl".into(),
            "-sign".into(),
            "-rawin".into(),
            "-digest".into(),
            "sm3".into(),
            "-pkeyopt".into(),
            DISTID.into(),
            "-inkey".into(),
            p(&key),
            "-in".into(),
            p(&msg),
            "-out".into(),
            p(&sig),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = openssl(&args);
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pem = format!("# key-id: 9\n{}", std::fs::read_to_string(&public).unwrap());
    let keys = RootKeys::from_pem(&pem).expect("OpenSSL's SM2 PEM parses");
    let (key, _) = keys.get(RootKeyId(9)).unwrap();
    // Our export of the key is byte for byte OpenSSL's.
    assert_eq!(RootKeys::from_pem(&keys.to_pem()).unwrap(), keys);
    let der = std::fs::read(&sig).unwrap();
    let raw = raw_from_der(&der);
    assert!(key.verify(message, &raw).is_ok());
    assert!(key.verify(b"another message", &raw).is_err());
    let spki_pem_body: String = std::fs::read_to_string(&public)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    use base64::Engine;
    let ours = base64::engine::general_purpose::STANDARD.encode(spki_der_from_public_key(key));
    assert_eq!(ours, spki_pem_body);
}
