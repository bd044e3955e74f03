//! Property tests: no byte string makes the APDU parser, the card or the PSAM panic.

mod common;

use chip::{APDU_LEN_MAX, CommandApdu};
use common::*;
use crypto::Algorithm;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(apdu) = CommandApdu::parse(&bytes) {
            prop_assert_eq!(apdu.to_bytes(), bytes);
        }
    }

    #[test]
    fn card_never_panics(commands in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..20)) {
        let mut c = card(Algorithm::Sm4);
        for cmd in &commands {
            let r = c.process(cmd);
            prop_assert!(r.len() >= 2);
        }
    }

    /// Commands with a valid header and realistic classes reach deeper code.
    #[test]
    fn card_never_panics_on_plausible_headers(
        cla in prop::sample::select(vec![0x00u8, 0x80]),
        ins in prop::sample::select(vec![0xA4u8, 0xB0, 0xB2, 0xD6, 0xDC, 0x20, 0x84, 0x50, 0x52, 0x54, 0x5C]),
        p1 in any::<u8>(), p2 in any::<u8>(),
        data in proptest::collection::vec(any::<u8>(), 0..60),
        le in proptest::option::of(any::<u8>()),
        select_first in any::<bool>(),
    ) {
        let mut c = card(Algorithm::Tdes);
        if select_first {
            select_transit(&mut c);
            check(&mut c, "0020000003123456", 0x9000);
        }
        let mut apdu = CommandApdu::new(cla, ins, p1, p2).with_data(data);
        if let Some(le) = le { apdu = apdu.with_le(u32::from(le).max(1)); }
        let r = c.process(&apdu.to_bytes());
        prop_assert!(r.len() >= 2);
        let mut p = psam();
        prop_assert!(p.process(&apdu.to_bytes()).len() >= 2);
    }
}

#[test]
fn oversized_input_is_refused_not_processed() {
    let mut c = card(Algorithm::Sm4);
    let big = vec![0u8; APDU_LEN_MAX + 1];
    assert_eq!(c.process(&big), vec![0x67, 0x00]);
}
