//! The foundation's command-line contract, run as a user would: create an operator, import a
//! feed with a rejects report, verify the audit log, detect tampering, build the demo city.

use std::path::Path;
use std::process::{Command, Output};

fn citycard(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_citycard"));
    c.arg("--data-dir").arg(data).args(args);
    c.env("CITYCARD_KEYSTORE_PASSPHRASE", "cli test passphrase");
    c.env_remove("CITYCARD_DATABASE_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run citycard")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A valid ID number for line `n` (region 410105, born 1980 + n days).
fn id(n: u16) -> String {
    let birth = time::macros::date!(1980 - 01 - 01) + time::Duration::days(i64::from(n));
    resident::ResidentId::from_parts("410105", birth, n % 1000)
        .as_str()
        .to_string()
}

#[test]
fn import_report_verify_and_tamper() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let o = citycard(
        &data,
        &[
            "admin",
            "create-user",
            "--username",
            "alice",
            "--role",
            "administrator",
        ],
        &[("CITYCARD_NEW_PASSWORD", "alice-password-1")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = citycard(
        &data,
        &["admin", "create-user", "--username", "x"],
        &[("CITYCARD_NEW_PASSWORD", "alice-password-1")],
    );
    assert!(!o.status.success(), "a too-short username must be refused");
    assert!(text(&o).contains("username"), "{}", text(&o));

    let feed = dir.path().join("feed.csv");
    let mut bad_check = id(3);
    let last = bad_check.pop().unwrap();
    bad_check.push(if last == '1' { '2' } else { '1' });
    std::fs::write(
        &feed,
        format!(
            "id_number,name,phone,address,residency\n\
             {},张三,13800000001,郑州市金水区花园路1号,resident\n\
             {},李四,,,non_resident\n\
             {bad_check},王五,,,\n\
             {},赵六,12345,,\n",
            id(1),
            id(2),
            id(4)
        ),
    )
    .unwrap();
    let report = dir.path().join("rejects.csv");
    let o = citycard(
        &data,
        &[
            "residents",
            "import",
            feed.to_str().unwrap(),
            "--source",
            "police",
            "--report",
            report.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("4 rows, 2 new, 0 updated, 0 unchanged, 2 rejected"),
        "{out}"
    );
    let rejects = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines[0], "row,reason");
    assert!(
        lines[1].starts_with("4,") && lines[1].contains("check character"),
        "{rejects}"
    );
    assert!(
        lines[2].starts_with("5,") && lines[2].contains("phone"),
        "{rejects}"
    );
    assert_eq!(lines.len(), 3);

    // Again: nothing changes.
    let o = citycard(
        &data,
        &[
            "residents",
            "import",
            feed.to_str().unwrap(),
            "--source",
            "police",
        ],
        &[],
    );
    assert!(
        text(&o).contains("0 new, 0 updated, 2 unchanged"),
        "{}",
        text(&o)
    );
    // An unknown department is refused before anything is read.
    let o = citycard(
        &data,
        &[
            "residents",
            "import",
            feed.to_str().unwrap(),
            "--source",
            "army",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown department"), "{}", text(&o));

    let o = citycard(&data, &["audit", "verify"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("audit chain intact"), "{}", text(&o));

    // Someone with the database file edits an entry: verify names it and exits non-zero.
    let db = data.join("citycard.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("DROP TRIGGER audit_log_no_update")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET actor = 'operator:mallory' WHERE seq = 2")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let o = citycard(&data, &["audit", "verify"], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("entry 2"), "{}", text(&o));

    // The database holds no name or ID number in clear.
    let mut bytes = std::fs::read(&db).unwrap();
    if let Ok(wal) = std::fs::read(data.join("citycard.db-wal")) {
        bytes.extend(wal);
    }
    for needle in [id(1), id(2), "张三".to_string(), "13800000001".to_string()] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} found in the database file"
        );
    }

    // A wrong key store passphrase is a clear error, not garbage.
    let o = citycard(
        &data,
        &["audit", "verify"],
        &[("CITYCARD_KEYSTORE_PASSPHRASE", "wrong")],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("wrong passphrase"), "{}", text(&o));
}

#[test]
fn demo_and_config_layers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("city");
    let o = citycard(
        &data,
        &["demo", "--residents", "200", "--days", "1", "--seed", "5"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("residents           200"), "{out}");
    assert!(out.contains("rows rejected       2"), "{out}");
    assert!(out.contains(" active, "), "{out}");

    // The demo issued cards: `cards list` shows them with the holder masked.
    let o = citycard(&data, &["cards", "list"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let listing = String::from_utf8_lossy(&o.stdout).to_string();
    let mut lines = listing.lines();
    assert_eq!(
        lines.next(),
        Some("number,state,card_type,holder_name,holder_id_number")
    );
    let rows: Vec<&str> = lines.collect();
    assert!(!rows.is_empty(), "{listing}");
    for r in &rows {
        let cells: Vec<&str> = r.split(',').collect();
        assert_eq!(cells[0].len(), 16, "{r}");
        assert!(
            cells[4].contains("***********"),
            "holder ID must be masked: {r}"
        );
    }
    let o = citycard(
        &data,
        &["cards", "list", "--state", "active", "--format", "json"],
        &[],
    );
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "active"),
        "{json}"
    );
    let o = citycard(&data, &["cards", "sweep"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("expired: 0"), "{}", text(&o));
    let o = citycard(&data, &["cards", "list", "--state", "bogus"], &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("state"), "{}", text(&o));

    // The config file names the data directory; a flag overrides it.
    let cfg = dir.path().join("citycard.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\nlog_format = \"json\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_citycard"))
        .args(["--config", cfg.to_str().unwrap(), "audit", "verify"])
        .env("CITYCARD_KEYSTORE_PASSPHRASE", "cli test passphrase")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(&cfg, "log_format = \"yaml\"\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_citycard"))
        .args(["--config", cfg.to_str().unwrap(), "audit", "verify"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("log format"), "{}", text(&o));
    std::fs::write(&cfg, "colour = \"blue\"\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_citycard"))
        .args(["--config", cfg.to_str().unwrap(), "audit", "verify"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("colour"), "{}", text(&o));
}

/// A counter sets a citizen's portal password: the resident must exist and the password be
/// long enough; the change is on the audit log, which stays intact.
#[test]
fn citizens_password_at_a_counter() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = dir.path().join("feed.csv");
    std::fs::write(
        &feed,
        format!(
            "id_number,name,phone,address,residency\n{},张三,13800000001,,resident\n",
            id(1)
        ),
    )
    .unwrap();
    let o = citycard(
        &data,
        &[
            "residents",
            "import",
            feed.to_str().unwrap(),
            "--source",
            "police",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let set = |id_number: &str, password: &str| {
        citycard(
            &data,
            &["citizens", "password", "--id-number", id_number],
            &[("CITYCARD_NEW_PASSWORD", password)],
        )
    };
    let o = set(&id(1), "portal-pass-1");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("password set"), "{}", text(&o));
    let o = set(&id(1), "short");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("password"), "{}", text(&o));
    let o = set(&id(2), "portal-pass-1");
    assert!(!o.status.success(), "an unknown resident: {}", text(&o));
    let o = citycard(&data, &["audit", "verify"], &[]);
    assert!(o.status.success(), "{}", text(&o));
}
