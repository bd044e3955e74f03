//! Disbursements run as the built `citycard` binary on a demo data directory: a department's
//! funding booked, its officer's batch submitted, the same officer refused as approver (four
//! eyes), an administrator approving and paying, the line report and a citizen's receipts.

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
        .env(
            "CITYCARD_KEYSTORE_PASSPHRASE",
            "disbursement cli passphrase",
        )
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

#[test]
fn a_batch_from_file_to_citizen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(
        dir,
        &["demo", "--residents", "60", "--days", "1", "--seed", "7"],
    );
    let today = {
        let now = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+8));
        now.date()
    };
    let (a, b) = (
        platform::demo::id_number(1, 7, today),
        platform::demo::id_number(2, 7, today),
    );
    let file = dir.join("batch.csv");
    std::fs::write(
        &file,
        format!(
            "id_number,amount,benefit\n{},800.00,minimum_living\n{},66.60,agricultural\n",
            a.as_str(),
            b.as_str()
        ),
    )
    .unwrap();
    let out = ok(
        dir,
        &[
            "disbursements",
            "fund",
            "--department",
            "hr_social_security",
            "--amount",
            "10000",
            "--key",
            "fund-1",
        ],
    );
    assert!(out.contains("10000.00"), "{out}");
    let out = ok(
        dir,
        &[
            "disbursements",
            "submit",
            "--officer",
            "hrss",
            "--label",
            "2026-11",
            "--file",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.contains("submitted"), "{out}");
    // The demo paid its own batch first: this one's id is on the submit line.
    let id = out.split_whitespace().nth(1).expect("batch id").to_string();
    assert_ne!(id, "1", "{out}");
    let o = citycard(
        dir,
        &[
            "disbursements",
            "decide",
            "--officer",
            "hrss",
            "--batch",
            &id,
            "--approve",
        ],
    );
    assert!(!o.status.success(), "four eyes: {}", text(&o));
    assert!(text(&o).contains("four eyes"), "{}", text(&o));
    let out = ok(
        dir,
        &[
            "disbursements",
            "decide",
            "--officer",
            "admin",
            "--batch",
            &id,
            "--approve",
        ],
    );
    assert!(out.contains("paid") && out.contains("866.60"), "{out}");
    let out = ok(dir, &["disbursements", "show", "--batch", &id]);
    let paid_lines = out
        .lines()
        .filter(|l| l.trim_start().starts_with("line") && l.contains(" paid"))
        .count();
    assert_eq!(paid_lines, 2, "{out}");
    assert!(!out.contains(a.as_str()), "recipients masked: {out}");
    let out = ok(
        dir,
        &["disbursements", "received", "--id-number", a.as_str()],
    );
    assert!(
        out.contains("最低生活保障金") && out.contains("800.00"),
        "{out}"
    );
    let out = ok(dir, &["ledger", "check"]);
    assert!(out.contains("ledger intact"), "{out}");
}
