//! Test keys, certificates and devices shared by the integration tests.
#![allow(dead_code)]

use crypto::{Key32, Sm2SigningKey};
use ecode::{
    CardNumber, Certificate, CertificateFields, Device, RootKeyId, RootKeyRing, RootKeys, Uses,
    Verifier, VerifierConfig,
};

/// The appendix's test keys and values.
pub const APPENDIX_ROOT_SECRET: &str =
    "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8";
pub const APPENDIX_DEVICE_SECRET: &str =
    "128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263";
pub const APPENDIX_CODE: &str = include_str!("../../test_data/appendix_code.txt");
pub const APPENDIX_ROOT_PEM: &str = include_str!("../../test_data/appendix_root.pem");

/// Certificate validity start used by the flow tests, and a week after it.
pub const T0: u32 = 1_800_000_000;
pub const WEEK_S: u32 = 7 * 24 * 3600;

/// A deterministic test secret: SM3 of a label (below the curve order for any label used here).
pub fn secret(label: &str) -> Key32 {
    Key32::from_bytes(crypto::sm3(label.as_bytes()))
}

pub fn signing_key(label: &str) -> Sm2SigningKey {
    Sm2SigningKey::from_secret(&secret(label)).expect("test secret in range")
}

pub fn card(sequence: u32) -> CardNumber {
    CardNumber::from_sequence(sequence).expect("9-digit sequence")
}

pub fn fields(
    device_label: &str,
    card_sequence: u32,
    limit_fen: u32,
    uses: Uses,
) -> CertificateFields {
    CertificateFields {
        card_number: card(card_sequence),
        device_public_key: signing_key(device_label).public_key(),
        not_before: T0,
        not_after: T0 + WEEK_S,
        offline_limit_fen: limit_fen,
        uses,
    }
}

/// A ring whose current key is `root-1` under id 1.
pub fn ring() -> RootKeyRing {
    let mut ring = RootKeyRing::new();
    ring.add(RootKeyId(1), &secret("root-1")).expect("add");
    ring.rotate_to(RootKeyId(1)).expect("rotate");
    ring
}

/// A device for `label` with a certificate from `ring`.
pub fn device(
    ring: &RootKeyRing,
    label: &str,
    card_sequence: u32,
    limit_fen: u32,
    uses: Uses,
) -> Device {
    let certificate = ring
        .issue(fields(label, card_sequence, limit_fen, uses))
        .expect("issue");
    Device::new(&secret(label), certificate).expect("device")
}

pub fn verifier(roots: RootKeys) -> Verifier {
    Verifier::new(roots, VerifierConfig::default()).expect("default config")
}

pub fn certificate_under(root: &Sm2SigningKey, id: u32, fields: CertificateFields) -> Certificate {
    Certificate::sign(RootKeyId(id), fields, root)
}
