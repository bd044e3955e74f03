//! The phone side: a device file's state before and after its certificate, the certificate
//! request's proof of possession, and a certificate signed through `sign_with` (a key store's
//! signer) verifying like one signed with the key.

mod common;

use common::*;
use ecode::{
    Certificate, CertificateRequest, DEVICE_ID_LEN_MAX, DeviceId, DeviceIdError, Phone, PhoneError,
    Purpose, RootKeyId, Uses,
};

const NOW: u32 = T0 + 3600;

fn phone(label: &str) -> Phone {
    Phone::new(DeviceId::parse(label).unwrap(), &secret(label)).unwrap()
}

#[test]
fn a_phone_requests_installs_and_makes_codes_that_verify() {
    let ring = ring();
    let mut p = phone("phone-a");
    assert_eq!(p.make_code(NOW).unwrap_err(), PhoneError::NoCertificate);

    let request = p.certificate_request(card(7), NOW);
    assert!(request.verify_signature());
    assert_eq!(request.device_public_key, p.public_key());

    // Another phone's certificate is refused; its own is taken.
    let other = ring.issue(fields("phone-b", 7, 5000, Uses::ALL)).unwrap();
    assert_eq!(p.install_certificate(other), Err(PhoneError::KeyMismatch));
    let mine = ring.issue(fields("phone-a", 7, 5000, Uses::ALL)).unwrap();
    p.install_certificate(mine).unwrap();

    let mut gate = verifier(ring.public_keys());
    for i in 0..3u32 {
        let code = p.make_code(NOW + i).unwrap();
        assert_eq!(u32::from(code.sequence()), i + 1);
        gate.verify_text(&code.to_text(), NOW + i, Purpose::Transit)
            .unwrap();
    }
    assert_eq!(
        p.make_code(T0 + WEEK_S + 1).unwrap_err(),
        PhoneError::CertificateNotValid(T0 + WEEK_S + 1)
    );

    // The device file round-trips with its sequence; Debug hides the key.
    let json = serde_json::to_string(&p).unwrap();
    let back: Phone = serde_json::from_str(&json).unwrap();
    assert_eq!(back.next_sequence(), 4);
    assert_eq!(back.public_key(), p.public_key());
    assert_eq!(back.certificate(), p.certificate());
    let secret_hex = hex::encode_upper(secret("phone-a").expose());
    assert!(json.contains(&secret_hex));
    assert!(!format!("{p:?}").contains(&secret_hex));
    let fresh: Phone = serde_json::from_str(&serde_json::to_string(&phone("x")).unwrap()).unwrap();
    assert!(fresh.certificate().is_none());
}

#[test]
fn a_request_binds_card_device_key_and_time() {
    let p = phone("phone-a");
    let request = p.certificate_request(card(7), NOW);
    let changed = [
        CertificateRequest {
            card_number: card(8),
            ..request.clone()
        },
        CertificateRequest {
            device_id: DeviceId::parse("phone-b").unwrap(),
            ..request.clone()
        },
        CertificateRequest {
            device_public_key: signing_key("phone-b").public_key(),
            ..request.clone()
        },
        CertificateRequest {
            time: NOW + 1,
            ..request.clone()
        },
    ];
    for c in changed {
        assert!(!c.verify_signature(), "{c:?}");
    }
    assert!(request.verify_signature());
}

#[test]
fn device_ids_are_bounded_on_both_sides() {
    let longest = "a".repeat(DEVICE_ID_LEN_MAX);
    assert!(DeviceId::parse(&longest).is_ok());
    assert_eq!(
        DeviceId::parse(&format!("{longest}a")),
        Err(DeviceIdError::Length(DEVICE_ID_LEN_MAX + 1))
    );
    assert_eq!(DeviceId::parse(""), Err(DeviceIdError::Length(0)));
    assert_eq!(DeviceId::parse("手机"), Err(DeviceIdError::Characters));
    assert_eq!(DeviceId::parse("a b"), Err(DeviceIdError::Characters));
    assert!(DeviceId::parse("iPhone_15.pro-2").is_ok());
}

#[test]
fn sign_with_makes_the_same_certificate_as_the_key() {
    let root = signing_key("root-1");
    let f = fields("phone-a", 7, 5000, Uses::ALL);
    let outside = Certificate::sign_with(RootKeyId(1), f.clone(), |m| root.sign(m));
    let inside = Certificate::sign(RootKeyId(1), f, &root);
    assert_eq!(outside.signed_bytes(), inside.signed_bytes());
    assert!(outside.verify_root_signature(&root.public_key()));
    let parsed = Certificate::parse(outside.as_bytes()).unwrap();
    assert_eq!(parsed, outside);
}
