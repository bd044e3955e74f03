//! `citycard bench ecode-offline`: what a gate does with an e-code, on one core, beside
//! OpenSSL in the same command.
//!
//! 1. Scan to decision: a camera-sized frame (1280 × 720, the symbol rotated, low contrast,
//!    noisy, drawn by `ecode::scan::camera_frame`) read by the terminal's scanner and the code
//!    verified offline (two SM2 verifications, replay cache, offline limit). Median, p90, max
//!    per frame, with the scan and the checks also timed apart.
//! 2. Offline verifications per second on one core, and per signature, beside
//!    `openssl speed -seconds S sm2` (verify/s) run right after in the same command.
//! 3. How often one frame reads, by module size, for our scanner and for zbar (Debian's
//!    `zbarimg`, when installed) on the same frames: a gate reads ~30 frames a second, so a
//!    missed frame costs 33 ms, not a refusal.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ecode::qr::QrSymbol;
use ecode::scan::{CameraView, GrayFrame, camera_frame, read_frame};
use ecode::{
    CardNumber, CertificateFields, DeviceId, Phone, Purpose, RootKeyId, RootKeyRing, Uses,
    Verifier, VerifierConfig,
};

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Frames scanned to a decision, each with a fresh code.
    #[arg(long, default_value_t = 200)]
    frames: usize,
    /// Seconds of the per-core verification loop, and of `openssl speed`.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Pixels per QR module in the scan-to-decision frames.
    #[arg(long, default_value_t = 6.0)]
    module_px: f32,
    /// Frames per module size in the read-rate table (0 skips it).
    #[arg(long, default_value_t = 30)]
    read_rate_frames: usize,
}

fn view(i: usize, module_px: f32) -> CameraView {
    CameraView {
        module_px,
        // −30° … +30°, spread over the frames; the symbol wanders around the middle.
        angle_deg: ((i * 37) % 61) as f32 - 30.0,
        centre: (0.4 + (i % 5) as f32 * 0.05, 0.45 + (i % 3) as f32 * 0.05),
        seed: i as u64 + 1,
        ..CameraView::default()
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// OpenSSL's single-core SM2 verifications per second.
fn openssl_sm2_verify_rate(seconds: u32) -> anyhow::Result<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "sm2"])
        .output()
        .context("running `openssl speed` (Debian package openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl speed sm2 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("SM2 ("))
        .with_context(|| format!("no SM2 line in `openssl speed` output:\n{text}"))?;
    line.split_whitespace()
        .last()
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no verify/s figure in {line:?}"))
}

fn zbar_reads(pixels: &[u8], v: &CameraView, dir: &std::path::Path, text: &str) -> Option<bool> {
    let path = dir.join("frame.pgm");
    let mut pgm = format!("P5\n{} {}\n255\n", v.width, v.height).into_bytes();
    pgm.extend_from_slice(pixels);
    std::fs::write(&path, pgm).ok()?;
    let out = Command::new("zbarimg")
        .args(["--raw", "--quiet"])
        .arg(&path)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim() == text)
}

pub fn run(args: ScanArgs) -> anyhow::Result<()> {
    if args.frames == 0 || args.seconds == 0 {
        bail!("--frames and --seconds must be at least 1");
    }
    let now = u32::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    let mut ring = RootKeyRing::new();
    ring.add(RootKeyId(1), &crate::ecode_cmd::random_secret()?)?;
    ring.rotate_to(RootKeyId(1))?;
    let mut phone = Phone::new(
        DeviceId::parse("bench-phone")?,
        &crate::ecode_cmd::random_secret()?,
    )?;
    let certificate = ring.issue(CertificateFields {
        card_number: CardNumber::from_sequence(1)?,
        device_public_key: phone.public_key(),
        not_before: now - 60,
        not_after: now + 7 * 24 * 3600,
        offline_limit_fen: 100_000_000,
        uses: Uses::ALL,
    })?;
    phone.install_certificate(certificate)?;

    // Codes and their frames, made before any timing.
    let bar = crate::bar(args.frames as u64, "drawing camera frames");
    let mut texts = Vec::with_capacity(args.frames);
    let mut frames = Vec::with_capacity(args.frames);
    for i in 0..args.frames {
        let text = phone.make_code(now + i as u32)?.to_text();
        frames.push(camera_frame(
            &QrSymbol::encode(&text)?,
            &view(i, args.module_px),
        ));
        texts.push(text);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let first = CameraView::default();
    fn frame(px: &[u8]) -> GrayFrame<'_> {
        let v = CameraView::default();
        GrayFrame {
            width: v.width,
            height: v.height,
            pixels: px,
        }
    }

    // 1. Scan to decision, one core.
    let mut verifier = Verifier::new(ring.public_keys(), VerifierConfig::default())?;
    let (mut total, mut scan, mut check) = (Vec::new(), Vec::new(), Vec::new());
    let mut read = 0usize;
    for (i, px) in frames.iter().enumerate() {
        let t0 = Instant::now();
        let scanned = read_frame(frame(px));
        let t1 = Instant::now();
        if let Ok(text) = scanned {
            verifier
                .verify_text(&text, now + i as u32, Purpose::Pay { amount_fen: 200 })
                .map_err(|r| anyhow::anyhow!("frame {i}: refused {}", r.code()))?;
            read += 1;
            check.push(t1.elapsed());
        }
        scan.push(t1 - t0);
        total.push(t0.elapsed());
    }
    for v in [&mut total, &mut scan, &mut check] {
        v.sort();
    }
    println!(
        "\nScan to decision: {} frames of {}×{}, {} px per module, rotated ±30°; {} read ({:.1} %)\n",
        args.frames,
        first.width,
        first.height,
        args.module_px,
        read,
        100.0 * read as f64 / args.frames as f64
    );
    println!("| step (one core) | median | p90 | max |");
    println!("|---|---|---|---|");
    for (name, v) in [
        ("scan to decision (frame → text → checks 1–9)", &total),
        ("scan alone (frame → text)", &scan),
        (
            "checks alone (text → decision, two SM2 verifications)",
            &check,
        ),
    ] {
        if v.is_empty() {
            continue;
        }
        println!(
            "| {name} | {} | {} | {} |",
            ms(quantile(v, 0.5)),
            ms(quantile(v, 0.9)),
            ms(*v.last().expect("non-empty"))
        );
    }

    // 2. Offline verifications per second on one core, then OpenSSL. A fresh verifier: the
    // codes above sit in the first one's replay cache.
    let verifier = Verifier::new(ring.public_keys(), VerifierConfig::default())?;
    let budget = Duration::from_secs(u64::from(args.seconds));
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for (i, text) in texts.iter().enumerate() {
            verifier
                .check_text(text, now + i as u32, Purpose::Transit)
                .map_err(|r| anyhow::anyhow!("refused {}", r.code()))?;
            n += 1;
        }
    }
    let ours = n as f64 / start.elapsed().as_secs_f64();
    let openssl = openssl_sm2_verify_rate(args.seconds)?;
    println!(
        "\nOffline verification, one core, {} s each:\n",
        args.seconds
    );
    println!("| | per second | SM2 verifications/s | ratio to OpenSSL |");
    println!("|---|---|---|---|");
    println!(
        "| offline verification of a code (two SM2 verifications) | {ours:.0} | {:.0} | {:.2}× |",
        2.0 * ours,
        2.0 * ours / openssl
    );
    println!(
        "| baseline: `openssl speed -seconds {} sm2`, verify | | {openssl:.0} | 1.00× |",
        args.seconds
    );

    // 3. Read rate per frame by module size.
    if args.read_rate_frames > 0 {
        let dir = tempfile::tempdir()?;
        println!(
            "\nOne frame read, {} frames per size, rotated ±30°, noise ±20:\n",
            args.read_rate_frames
        );
        println!("| px per module | ours (rqrr, two passes) | zbar 0.23 (`zbarimg`) |");
        println!("|---|---|---|");
        let text = phone.make_code(now)?.to_text();
        let symbol = QrSymbol::encode(&text)?;
        for module_px in [4.0f32, 5.0, 6.0, 8.0] {
            let (mut ours, mut zbar, mut zbar_ran) = (0, 0, true);
            for i in 0..args.read_rate_frames {
                let v = view(i + 1000, module_px);
                let px = camera_frame(&symbol, &v);
                if read_frame(frame(&px)).as_deref() == Ok(text.as_str()) {
                    ours += 1;
                }
                match zbar_reads(&px, &v, dir.path(), &text) {
                    Some(true) => zbar += 1,
                    Some(false) => {}
                    None => zbar_ran = false,
                }
            }
            let pct = |k: usize| 100.0 * k as f64 / args.read_rate_frames as f64;
            println!(
                "| {module_px} | {:.0} % | {} |",
                pct(ours),
                if zbar_ran {
                    format!("{:.0} %", pct(zbar))
                } else {
                    "zbarimg not installed".into()
                }
            );
        }
    }
    Ok(())
}
