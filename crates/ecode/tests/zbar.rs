//! Interop with an independent QR decoder: Debian's `zbarimg` (package zbar-tools) reads the
//! PNG the project draws back to the exact `ZZC1:` text, which then verifies. The symbol is
//! at the spec's error-correction level M.

mod common;

use std::process::Command;

use common::*;
use ecode::qr::{QrError, QrSymbol};
use ecode::{Purpose, TEXT_LEN_MAX, Uses};

const NOW: u32 = T0 + 3600;

fn zbarimg(png: &std::path::Path) -> String {
    let output = match Command::new("zbarimg")
        .args(["--raw", "--quiet"])
        .arg(png)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run `zbarimg` ({e}): this interop test needs Debian's zbar-tools package \
             (apt-get install zbar-tools)"
        ),
    };
    assert!(
        output.status.success(),
        "zbarimg found no symbol in {}: {}",
        png.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("zbarimg prints text")
}

#[test]
fn zbarimg_reads_our_png_back_to_the_exact_text() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let dir = tempfile::tempdir().unwrap();
    for (i, module_px) in [2u32, 4, 8].into_iter().enumerate() {
        let code = device.make_code(NOW + i as u32).unwrap();
        let text = code.to_text();
        let symbol = QrSymbol::encode(&text).unwrap();
        assert_eq!(symbol.ec_level(), 'M');
        // 296 alphanumeric characters: version 10 at level M (311 fit, version 9 holds 262).
        assert_eq!(symbol.version(), 10);
        assert_eq!(symbol.width(), 57);
        let png = dir.path().join(format!("code-{module_px}.png"));
        std::fs::write(&png, symbol.to_png(module_px).unwrap()).unwrap();
        let read = zbarimg(&png);
        assert_eq!(read.trim_end_matches('\n'), text);
        verifier(ring.public_keys())
            .verify_text(read.trim_end(), NOW + i as u32, Purpose::Transit)
            .unwrap();
    }
}

#[test]
fn svg_has_the_symbol_and_bounds_hold() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let text = device.make_code(NOW).unwrap().to_text();
    let symbol = QrSymbol::encode(&text).unwrap();
    let svg = symbol.to_svg(4).unwrap();
    assert!(svg.starts_with("<?xml"), "{}", &svg[..40]);
    assert!(svg.contains("<svg") && svg.contains("<path"));
    assert_eq!(symbol.to_png(0).unwrap_err(), QrError::ModuleSize(0));
    assert_eq!(symbol.to_svg(33).unwrap_err(), QrError::ModuleSize(33));
    let long = "A".repeat(TEXT_LEN_MAX + 1);
    assert_eq!(
        QrSymbol::encode(&long).err(),
        Some(QrError::TooLong(TEXT_LEN_MAX + 1))
    );
}
