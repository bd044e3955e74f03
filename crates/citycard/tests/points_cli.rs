//! Points and the credit service as the built `citycard` binary on a demo data directory: a
//! catalogue item and a project, volunteer hours earned once per event, a redemption answered
//! once per request and a refusal exiting 1, the expiry run; a citizen opted in, a fare
//! evasion record explained in the score, opting out and the score refused afterwards.

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
        .env("CITYCARD_KEYSTORE_PASSPHRASE", "points cli passphrase")
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
fn points_and_credit_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(
        dir,
        &["demo", "--residents", "20", "--days", "1", "--seed", "5"],
    );
    let today = time::OffsetDateTime::now_utc()
        .to_offset(time::macros::offset!(+8))
        .date();
    let id = platform::demo::id_number(1, 5, today);
    let id = id.as_str();

    let out = ok(dir, &["points", "rules"]);
    assert!(
        out.contains("volunteer_hour\t20 per unit\tcap 160 a day"),
        "{out}"
    );
    ok(
        dir,
        &[
            "points",
            "item",
            "bus-2",
            "--name-zh",
            "公交乘车券",
            "--name-en",
            "Bus voucher",
            "--kind",
            "ride_voucher",
            "--cost",
            "50",
        ],
    );
    ok(
        dir,
        &[
            "points",
            "project",
            "trees",
            "--name-zh",
            "植树",
            "--name-en",
            "Trees",
        ],
    );
    let args = [
        "points",
        "event",
        "volunteer_hour",
        "--event-id",
        "civil-1",
        "--resident-id",
        id,
        "--units",
        "3",
    ];
    assert!(ok(dir, &args).starts_with("60 points,"));
    assert!(ok(dir, &args).contains("(earned before)"));
    let redeem = [
        "points",
        "redeem",
        "bus-2",
        "--resident-id",
        id,
        "--request-id",
        "r1",
    ];
    assert!(ok(dir, &redeem).contains("redeemed bus-2: 50 points"));
    ok(dir, &redeem);
    let o = citycard(
        dir,
        &[
            "points",
            "redeem",
            "bus-2",
            "--resident-id",
            id,
            "--request-id",
            "r2",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("50 points are needed and 10 are available")
    );
    let out = ok(dir, &["points", "show", "--resident-id", id]);
    assert!(
        out.starts_with("balance 10 (earned 60, redeemed 50"),
        "{out}"
    );
    assert!(ok(dir, &["points", "expire"]).contains("0 points expired"));

    // Credit: opt in, a record, the score explained; opt out and nothing is scored.
    let o = citycard(dir, &["credit", "score", "--resident-id", id]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    ok(dir, &["credit", "opt-in", "--resident-id", id]);
    let out = ok(
        dir,
        &[
            "credit",
            "signal",
            "fare_evasion",
            "--event-id",
            "m-1",
            "--resident-id",
            id,
        ],
    );
    assert_eq!(out.trim(), "recorded");
    let out = ok(
        dir,
        &["credit", "score", "--resident-id", id, "--lang", "en"],
    );
    // Signals count only from opting in (the volunteer hours before do not): 600 − 30.
    assert!(out.starts_with("score 570 (base 600)"), "{out}");
    assert!(
        out.contains("1 fare evasion records in the last year, -30 each: -30"),
        "{out}"
    );
    let out = ok(dir, &["credit", "score", "--resident-id", id]);
    assert!(out.contains("逃票记录1次"), "{out}");
    ok(dir, &["credit", "opt-out", "--resident-id", id]);
    let o = citycard(dir, &["credit", "history", "--resident-id", id]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}
