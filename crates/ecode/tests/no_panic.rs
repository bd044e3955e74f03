//! Parsing never panics, whatever the input.

use ecode::{CERTIFICATE_LEN, CODE_LEN, Certificate, Code, RootKeys, TEXT_LEN_MAX};
use proptest::prelude::*;

const BASE45: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

proptest! {
    #[test]
    fn any_text(text in ".{0,400}") {
        let _ = Code::parse_text(&text);
        let _ = RootKeys::from_pem(&text);
    }

    #[test]
    fn any_base45_body(indices in proptest::collection::vec(0usize..45, 0..=TEXT_LEN_MAX)) {
        let body: String = indices.iter().map(|&i| char::from(BASE45.as_bytes()[i])).collect();
        let _ = Code::parse_text(&format!("ZZC1:{body}"));
    }

    #[test]
    fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Code::parse(&bytes);
        let _ = Certificate::parse(&bytes);
    }

    #[test]
    fn any_code_sized_bytes(mut bytes in proptest::collection::vec(any::<u8>(), CODE_LEN), valid_prefix: bool) {
        if valid_prefix {
            // Format, version and a valid card number, so parsing reaches the key and uses.
            bytes[..14].copy_from_slice(&[0xC1, 0x01, 0, 0, 0, 1, 0x41, 0x01, 0, 0, 0, 0, 0, 0x18]);
        }
        let _ = Code::parse(&bytes);
        let _ = Certificate::parse(&bytes[1..=CERTIFICATE_LEN]);
    }

    #[test]
    fn any_pem_like(lines in proptest::collection::vec(
        prop_oneof![
            Just("# key-id: 1".to_string()),
            Just("-----BEGIN PUBLIC KEY-----".to_string()),
            Just("-----END PUBLIC KEY-----".to_string()),
            "[A-Za-z0-9+/=]{0,80}",
        ], 0..12)) {
        let _ = RootKeys::from_pem(&lines.join("\n"));
    }
}
