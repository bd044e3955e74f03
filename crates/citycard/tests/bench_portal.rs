//! `citycard bench portal` as the built binary, on a small run: a demo city, three citizens
//! signed in through the portal's forms, a second of pages and of the style sheet baseline.
//! It exits 0 only when every answer was the citizen's page (or the style sheet); the table
//! rows must be there, each page answered at a non-zero rate.

use std::process::Command;

/// The "per s" column of the table row whose first cell is `name`.
fn per_s(stdout: &str, name: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("no row {name:?} in\n{stdout}"));
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    // | name | requests | per s | p50 | p99 | max | errors |
    assert_eq!(cells.len(), 9, "{line}");
    assert_eq!(cells[7], "0", "errors in {line}");
    assert!(cells[2].parse::<u64>().unwrap() > 0, "{line}");
    cells[3].parse().unwrap()
}

#[test]
fn a_small_portal_bench_runs_and_prints_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_citycard"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["bench", "portal", "--citizens", "3", "--seconds", "1"])
        .args(["--concurrency", "4"])
        .env_remove("CITYCARD_PRODUCTION")
        .env_remove("CITYCARD_DATABASE_URL")
        .env("CITYCARD_KEYSTORE_PASSPHRASE", "test passphrase")
        .env("CITYCARD_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("## portal on sqlite (3 citizens, 4 connections, 1 s each)"));
    assert!(per_s(&stdout, "GET /portal/assets/portal.css (baseline)") > 0.0);
    assert!(per_s(&stdout, "portal pages, all") > 0.0);
    for page in [
        "/portal/",
        "/portal/transactions",
        "/portal/bills",
        "/portal/benefits",
        "/portal/messages",
        "/portal/points",
        "/portal/credit",
    ] {
        assert!(per_s(&stdout, &format!("GET {page}")) > 0.0, "{page}");
    }
    assert!(stdout.contains("pages/s"), "{stdout}");
}
