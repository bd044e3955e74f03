//! Offline verification throughput, beside its baseline in the same run:
//!
//! - `offline_verification`: the spec appendix's code checked at a terminal (text decoded,
//!   certificate parsed, root and device SM2 signatures verified, steps 1–9), read-only so
//!   every iteration does the same work.
//! - `sm2_verify`: one SM2 verification (the root signature over the certificate's 59 bytes).
//!
//! Run: `cargo bench -p ecode --bench verify`.

use divan::{Bencher, black_box};
use ecode::{Code, Purpose, RootKeys, Verifier, VerifierConfig};

fn main() {
    divan::main();
}

const CODE_TEXT: &str = include_str!("../test_data/appendix_code.txt");
const ROOT_PEM: &str = include_str!("../test_data/appendix_root.pem");
const TERMINAL_CLOCK: u32 = 1_795_000_010;

fn verifier() -> Verifier {
    let roots = RootKeys::from_pem(ROOT_PEM).expect("appendix PEM");
    Verifier::new(roots, VerifierConfig::default()).expect("default config")
}

#[divan::bench]
fn offline_verification(bencher: Bencher) {
    let verifier = verifier();
    let text = CODE_TEXT.trim();
    bencher.bench_local(|| {
        verifier
            .check_text(
                black_box(text),
                black_box(TERMINAL_CLOCK),
                Purpose::Pay { amount_fen: 200 },
            )
            .expect("appendix code accepted")
    });
}

#[divan::bench]
fn sm2_verify(bencher: Bencher) {
    let roots = RootKeys::from_pem(ROOT_PEM).expect("appendix PEM");
    let code = Code::parse_text(CODE_TEXT.trim()).expect("appendix code");
    let certificate = code.certificate().clone();
    let (root_key, _) = roots
        .get(certificate.root_key_id())
        .expect("root provisioned");
    bencher.bench_local(|| {
        assert!(black_box(&certificate).verify_root_signature(black_box(root_key)));
    });
}
