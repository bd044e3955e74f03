//! Scanning: an e-code read from a camera-sized frame (rotated, low contrast, noisy) comes back
//! as the exact text and verifies; the same frames read with Debian's `zbarimg` give the same
//! text, so the frames are fair; and each way a frame can fail names its reason.

mod common;

use std::process::Command;

use common::*;
use ecode::qr::QrSymbol;
use ecode::scan::{CameraView, GrayFrame, ScanError, camera_frame, read_frame};
use ecode::{Purpose, Uses};

const NOW: u32 = T0 + 3600;

fn frame<'a>(pixels: &'a [u8], view: &CameraView) -> GrayFrame<'a> {
    GrayFrame {
        width: view.width,
        height: view.height,
        pixels,
    }
}

/// The frame as a binary PGM, which zbarimg reads.
fn zbarimg(pixels: &[u8], view: &CameraView, dir: &std::path::Path) -> String {
    let path = dir.join(format!("frame-{}.pgm", view.seed));
    let mut pgm = format!("P5\n{} {}\n255\n", view.width, view.height).into_bytes();
    pgm.extend_from_slice(pixels);
    std::fs::write(&path, pgm).unwrap();
    let output = Command::new("zbarimg")
        .args(["--raw", "--quiet"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `zbarimg` ({e}): install Debian's zbar-tools (apt-get install zbar-tools)")
        });
    assert!(
        output.status.success(),
        "zbarimg read nothing in {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_owned()
}

#[test]
fn codes_in_camera_frames_read_back_exactly_and_verify_and_zbar_agrees() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let mut verifier = verifier(ring.public_keys());
    let dir = tempfile::tempdir().unwrap();
    let views = [
        CameraView::default(),
        CameraView {
            angle_deg: -20.0,
            module_px: 6.5,
            centre: (0.6, 0.45),
            seed: 2,
            ..CameraView::default()
        },
        CameraView {
            angle_deg: 15.0,
            module_px: 7.0,
            centre: (0.5, 0.5),
            dark: 60,
            light: 170,
            noise: 12,
            seed: 3,
            ..CameraView::default()
        },
        CameraView {
            width: 640,
            height: 480,
            angle_deg: 3.0,
            module_px: 6.0,
            centre: (0.5, 0.5),
            seed: 4,
            ..CameraView::default()
        },
    ];
    for (i, view) in views.iter().enumerate() {
        let now = NOW + i as u32;
        let text = device.make_code(now).unwrap().to_text();
        let pixels = camera_frame(&QrSymbol::encode(&text).unwrap(), view);
        assert_eq!(zbarimg(&pixels, view, dir.path()), text, "zbar, view {i}");
        let read = read_frame(frame(&pixels, view)).unwrap_or_else(|e| panic!("view {i}: {e}"));
        assert_eq!(read, text, "view {i}");
        let accepted = verifier
            .verify_text(&read, now, Purpose::Pay { amount_fen: 200 })
            .unwrap();
        assert_eq!(accepted.card_number, card(1));
    }
}

#[test]
fn frames_without_one_readable_ecode_are_refused_with_their_reason() {
    let ring = ring();
    let mut a = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let mut b = device(&ring, "phone-b", 2, 5000, Uses::ALL);
    let view = CameraView::default();

    // An empty gate.
    let blank = vec![128u8; view.width * view.height];
    assert_eq!(read_frame(frame(&blank, &view)), Err(ScanError::NoSymbol));

    // A poster's QR code: read, but not an e-code.
    let poster = camera_frame(&QrSymbol::encode("HTTPS://EXAMPLE.ORG/").unwrap(), &view);
    let err = read_frame(frame(&poster, &view)).unwrap_err();
    assert_eq!(err, ScanError::NotAnEcode { found: 1 });
    assert_eq!(err.code(), "SCAN_NOT_ECODE");

    // Two phones in view: which one pays? Refused.
    let left = CameraView {
        centre: (0.25, 0.5),
        angle_deg: 0.0,
        ..view
    };
    let right = CameraView {
        centre: (0.75, 0.5),
        angle_deg: 0.0,
        ..view
    };
    let ta = a.make_code(NOW).unwrap().to_text();
    let tb = b.make_code(NOW).unwrap().to_text();
    let fa = camera_frame(&QrSymbol::encode(&ta).unwrap(), &left);
    let fb = camera_frame(&QrSymbol::encode(&tb).unwrap(), &right);
    let both: Vec<u8> = fa
        .iter()
        .zip(&fb)
        .enumerate()
        .map(|(i, (&pa, &pb))| {
            if i % view.width < view.width / 2 {
                pa
            } else {
                pb
            }
        })
        .collect();
    assert_eq!(read_frame(frame(&both, &view)), Err(ScanError::Several(2)));

    // The same phone beside a poster still reads.
    let fp = camera_frame(
        &QrSymbol::encode("HTTPS://EXAMPLE.ORG/").unwrap(),
        &CameraView { seed: 9, ..right },
    );
    let beside: Vec<u8> = fa
        .iter()
        .zip(&fp)
        .enumerate()
        .map(|(i, (&pa, &pp))| {
            if i % view.width < view.width / 2 {
                pa
            } else {
                pp
            }
        })
        .collect();
    assert_eq!(read_frame(frame(&beside, &view)).unwrap(), ta);

    // Glare over the middle of the symbol: found, not readable.
    let mut glare = camera_frame(
        &QrSymbol::encode(&ta).unwrap(),
        &CameraView {
            angle_deg: 0.0,
            centre: (0.5, 0.5),
            ..view
        },
    );
    let (cx, cy) = (view.width / 2, view.height / 2);
    for y in cy - 60..cy + 60 {
        for x in cx - 100..cx + 100 {
            glare[y * view.width + x] = 255;
        }
    }
    let err = read_frame(frame(&glare, &view)).unwrap_err();
    assert!(matches!(err, ScanError::Unreadable(_)), "{err:?}");

    // Bounds before any work.
    assert_eq!(
        read_frame(GrayFrame {
            width: 10,
            height: 10,
            pixels: &[0; 99]
        }),
        Err(ScanError::Dimensions {
            width: 10,
            height: 10,
            len: 99,
            expected: 100
        })
    );
    assert_eq!(
        read_frame(GrayFrame {
            width: 5000,
            height: 10,
            pixels: &[]
        }),
        Err(ScanError::TooLarge {
            width: 5000,
            height: 10
        })
    );
}

#[test]
fn a_png_photo_reads_like_a_frame_and_garbage_is_named() {
    let ring = ring();
    let mut device = device(&ring, "phone-a", 1, 5000, Uses::ALL);
    let text = device.make_code(NOW).unwrap().to_text();
    // The phone's own PNG (8-bit grey), as `citycard ecode show --png` writes it.
    let png = QrSymbol::encode(&text).unwrap().to_png(4).unwrap();
    let (w, h, pixels) = ecode::scan::frame_from_png(&png).unwrap();
    let read = read_frame(GrayFrame {
        width: w,
        height: h,
        pixels: &pixels,
    })
    .unwrap();
    assert_eq!(read, text);
    let err = ecode::scan::frame_from_png(b"\x89PNG\r\n\x1a\nnot really").unwrap_err();
    assert!(matches!(err, ScanError::Image(_)), "{err:?}");
    assert_eq!(err.code(), "SCAN_FRAME");
}
