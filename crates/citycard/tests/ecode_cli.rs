//! The e-code command line (issue 7, item 9) run as the built `citycard` binary on a demo data
//! directory: a device file made, certified for an active card by an operator, a code printed
//! and drawn, the roots exported, and the code verified offline from its text and from its
//! picture — accepted, then refused when replayed into the past, tampered with, or out of its
//! limit; a card that may not have an e-code is refused a certificate.

use std::path::Path;
use std::process::{Command, Output};

fn citycard(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_citycard"))
        .current_dir(dir)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env_remove("CITYCARD_PRODUCTION")
        .env_remove("CITYCARD_DATA_DIR")
        .env_remove("CITYCARD_DATABASE_URL")
        .env_remove("CITYCARD_CONFIG")
        .env("CITYCARD_KEYSTORE_PASSPHRASE", "ecode cli passphrase")
        .env("CITYCARD_LOG", "warn")
        .output()
        .expect("run citycard")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = citycard(dir, args);
    assert!(o.status.success(), "citycard {args:?}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn refused(dir: &Path, args: &[&str]) -> String {
    let o = citycard(dir, args);
    assert_eq!(o.status.code(), Some(1), "citycard {args:?}: {}", text(&o));
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Card numbers in `state`, from `cards list`.
fn cards(dir: &Path, state: &str) -> Vec<String> {
    ok(dir, &["cards", "list", "--state", state])
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next().map(str::to_owned))
        .collect()
}

fn now() -> u32 {
    u32::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[test]
fn device_certify_text_show_roots_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(
        dir,
        &["demo", "--residents", "100", "--days", "1", "--seed", "11"],
    );
    let active = cards(dir, "active");
    assert!(!active.is_empty(), "the demo has active cards");
    let card = &active[0];

    // A root key, then the phone.
    ok(dir, &["ecode", "roots", "generate"]);
    let device = dir.join("phone.json");
    let out = ok(
        dir,
        &["ecode", "device", "new", "--out", device.to_str().unwrap()],
    );
    assert!(out.starts_with("device "), "{out}");

    // The operator certifies it for the active card (enrolling the phone on the way).
    let out = ok(
        dir,
        &[
            "ecode",
            "certify",
            "--card-no",
            card,
            "--device",
            device.to_str().unwrap(),
        ],
    );
    assert!(
        out.contains(&format!("certificate for card {card}")),
        "{out}"
    );

    // The roots for terminals, in the form.
    let roots = dir.join("roots.pem");
    ok(dir, &["ecode", "roots", "--out", roots.to_str().unwrap()]);
    let pem = std::fs::read_to_string(&roots).unwrap();
    assert!(pem.starts_with("# key-id: "), "{pem}");
    assert!(pem.contains("-----BEGIN PUBLIC KEY-----"), "{pem}");

    // A code as text verifies offline; its sequence counts in the device file.
    let t = now();
    let code = ok(
        dir,
        &[
            "ecode",
            "text",
            "--device",
            device.to_str().unwrap(),
            "--now",
            &t.to_string(),
        ],
    )
    .trim()
    .to_owned();
    assert!(code.starts_with("ZZC1:"), "{code}");
    let verify = |code: &str, at: u32, extra: &[&str]| {
        let mut args = vec![
            "ecode",
            "verify",
            "--roots",
            roots.to_str().unwrap(),
            "--text",
            code,
        ];
        let at = at.to_string();
        args.extend(["--now", &at]);
        args.extend(extra);
        citycard(dir, &args)
    };
    let o = verify(&code, t + 5, &["--amount", "200"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with(&format!("accepted: card {card}")),
        "{}",
        text(&o)
    );

    // Refusals, each with its reason code; exit status 1.
    let stale = verify(&code, t + 24 * 3600, &[]);
    assert_eq!(stale.status.code(), Some(1), "{}", text(&stale));
    assert!(
        String::from_utf8_lossy(&stale.stdout).starts_with("refused: "),
        "{}",
        text(&stale)
    );
    let mut forged = code.clone().into_bytes();
    let last = forged.len() - 10;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let o = verify(&forged, t + 5, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = verify(&code, t + 5, &["--amount", "99999999"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("refused"),
        "{}",
        text(&o)
    );

    // The picture: `show` draws a fresh code; zbar (independent) and our scanner both read it.
    let png = dir.join("code.png");
    let shown = ok(
        dir,
        &[
            "ecode",
            "show",
            "--device",
            device.to_str().unwrap(),
            "--png",
            png.to_str().unwrap(),
            "--now",
            &t.to_string(),
        ],
    );
    let shown_text = shown.lines().last().unwrap().trim().to_owned();
    assert!(
        shown_text.starts_with("ZZC1:") && shown_text != code,
        "{shown}"
    );
    let zbar = Command::new("zbarimg")
        .args(["--raw", "--quiet"])
        .arg(&png)
        .output()
        .expect("zbarimg (Debian zbar-tools) runs");
    assert_eq!(String::from_utf8_lossy(&zbar.stdout).trim(), shown_text);
    let o = citycard(
        dir,
        &[
            "ecode",
            "verify",
            "--roots",
            roots.to_str().unwrap(),
            "--image",
            png.to_str().unwrap(),
            "--now",
            &(t + 5).to_string(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // A picture without a code.
    let blank = dir.join("blank.png");
    std::fs::write(&blank, {
        let mut out = Vec::new();
        let mut e = png_encoder(&mut out, 64, 64);
        e.write_image_data(&[255u8; 64 * 64]).unwrap();
        e.finish().unwrap();
        out
    })
    .unwrap();
    let out = refused(
        dir,
        &[
            "ecode",
            "verify",
            "--roots",
            roots.to_str().unwrap(),
            "--image",
            blank.to_str().unwrap(),
        ],
    );
    assert!(out.contains("SCAN_NO_SYMBOL"), "{out}");

    // A card that may not have an e-code: a card not active is refused a certificate.
    let other = dir.join("other.json");
    ok(
        dir,
        &["ecode", "device", "new", "--out", other.to_str().unwrap()],
    );
    let listing = ok(dir, &["cards", "list"]);
    let not_active = listing
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.len() > 1 && f[1] != "active")
        .map(|f| f[0].to_owned())
        .unwrap_or_else(|| panic!("the demo has a card that is not active:\n{listing}"));
    let before = std::fs::read_to_string(&other).unwrap();
    let o = citycard(
        dir,
        &[
            "ecode",
            "certify",
            "--card-no",
            &not_active,
            "--device",
            other.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&other).unwrap(),
        before,
        "the device file is unchanged"
    );
}

fn png_encoder(out: &mut Vec<u8>, w: u32, h: u32) -> png::Writer<&mut Vec<u8>> {
    let mut e = png::Encoder::new(out, w, h);
    e.set_color(png::ColorType::Grayscale);
    e.set_depth(png::BitDepth::Eight);
    e.write_header().unwrap()
}
