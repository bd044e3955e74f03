//! `citycard clearing` as the built binary on a SQLite data directory: a payment and a refund
//! posted two days ago (by a platform on the same directory with its clock set back), the
//! window listed as not closed, closed once into its report (closing again prints the same;
//! today's window is refused), the report as JSON, the settlement file on standard output, the
//! bank's statement imported with a difference, the exceptions queue, and the difference
//! resolved by a named clearing officer, once.

use platform::Caller;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

const PASSPHRASE: &str = "clearing cli passphrase";
const DAY_MS: i64 = 86_400_000;

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
        .env("CITYCARD_KEYSTORE_PASSPHRASE", PASSPHRASE)
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

/// Refused: exit 1 with the reason on standard error.
fn refused(dir: &Path, args: &[&str]) -> String {
    let o = citycard(dir, args);
    assert_eq!(o.status.code(), Some(1), "citycard {args:?}: {}", text(&o));
    String::from_utf8(o.stderr).unwrap()
}

/// Posts, at `at_ms`, 100.00 paid by a resident at the cafe and 20.00 of it refunded, through
/// the platform opened on the data directory with a manual clock; adds the clearing officer
/// `clr`.
async fn seed(dir: &Path, at_ms: i64) {
    let data = dir.join("data");
    let clock = Arc::new(platform::clock::ManualClock::new(at_ms));
    let p = platform::open::open_platform(
        &platform::open::StorageTarget::Sqlite(data.join("citycard.db")),
        &data.join("keys"),
        &platform::open::KeySource::Passphrase(PASSPHRASE.into()),
        false,
        clock,
    )
    .await
    .unwrap();
    let sys = Caller::cli("test");
    let today = time::OffsetDateTime::from_unix_timestamp(at_ms / 1000)
        .unwrap()
        .to_offset(time::macros::offset!(+8))
        .date();
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 0..3, 1, today, 0).unwrap();
    p.import_residents(
        &sys,
        resident::Source::Police,
        "test",
        "0".into(),
        Box::new(std::io::Cursor::new(csv)),
        Arc::new(|_| {}),
    )
    .await
    .unwrap();
    p.create_operator(
        &sys,
        platform::operators::OperatorRequest {
            username: "clr".into(),
            display_name: "清算员".into(),
            password: "clearing-password-1".into(),
            role: store::Role::ClearingOfficer,
            department: None,
        },
    )
    .await
    .unwrap();
    p.merchant_create(&sys, "cafe", "二七咖啡", "shop", "41050100000077")
        .await
        .unwrap();
    let id = platform::demo::id_number(0, 1, today);
    let resident = p.resident_id_of(id.as_str()).await.unwrap();
    let rows = p
        .ledger_accounts(
            &sys,
            &[
                ledger::AccountKey::new(
                    ledger::AccountKind::BankFloat,
                    ledger::Owner::Bank("ICBC".into()),
                    ledger::Unit::Cny,
                )
                .unwrap(),
                ledger::AccountKey::citizen_online(resident),
            ],
        )
        .await
        .unwrap();
    p.transfer(
        &sys,
        ledger::Transfer::simple(
            ledger::IdempotencyKey::parse("fund-0").unwrap(),
            ledger::TransferKind::TopUp,
            "",
            rows[0].id,
            rows[1].id,
            ledger::Unit::Cny,
            ledger::Amount(20_000),
        ),
    )
    .await
    .unwrap();
    let paid = p
        .pay(
            &sys,
            &platform::money::PaymentRequest {
                key: "cafe-1".into(),
                payer: platform::money::Payer::IdNumber(id.as_str().into()),
                merchant: "cafe".into(),
                amount_fen: 10_000,
                reference: "ORDER-1".into(),
            },
        )
        .await
        .unwrap();
    p.refund(&sys, paid.id, "cafe-1-r1", 2_000, "one cup returned")
        .await
        .unwrap();
}

/// A camt.053 statement with one debit booked on `day` for `end_to_end_id`.
fn statement(id: &str, day: &str, end_to_end_id: &str, amount: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
 <BkToCstmrStmt>
  <GrpHdr><MsgId>{id}</MsgId><CreDtTm>{day}T18:00:00+08:00</CreDtTm></GrpHdr>
  <Stmt>
   <Id>{id}</Id>
   <CreDtTm>{day}T18:00:00+08:00</CreDtTm>
   <Acct><Id><Othr><Id>1702020109000012345</Id></Othr></Id><Ccy>CNY</Ccy></Acct>
   <Ntry>
    <NtryRef>BK1</NtryRef>
    <Amt Ccy="CNY">{amount}</Amt>
    <CdtDbtInd>DBIT</CdtDbtInd>
    <Sts><Cd>BOOK</Cd></Sts>
    <BookgDt><Dt>{day}</Dt></BookgDt>
    <AcctSvcrRef>BK1</AcctSvcrRef>
    <BkTxCd><Prtry><Cd>TRF</Cd></Prtry></BkTxCd>
    <NtryDtls><TxDtls><Refs><EndToEndId>{end_to_end_id}</EndToEndId></Refs></TxDtls></NtryDtls>
   </Ntry>
  </Stmt>
 </BkToCstmrStmt>
</Document>
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["migrate"]);
    // Two days ago at noon, so the window has ended whatever the day the test runs.
    let cal = ledger::WindowCalendar::default();
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let today = cal.window_of(now_ms);
    let w = cal.window_of(now_ms - 2 * DAY_MS);
    let at = cal.start_ms(w) + 13 * 3_600_000;
    assert_eq!(cal.window_of(at), w);
    seed(dir, at).await;
    let (window, next) = (w.to_string(), w.next().to_string());

    let help = ok(dir, &["clearing", "--help"]);
    for sub in [
        "windows",
        "close",
        "report",
        "settlement",
        "import-statement",
        "exceptions",
        "resolve",
    ] {
        assert!(help.contains(sub), "{sub} in {help}");
    }

    // Listed before the close: not closed, with what was posted.
    let out = ok(dir, &["clearing", "windows", "--days", "3"]);
    assert!(out.contains(&format!("open window {today}")), "{out}");
    assert!(
        out.contains(&format!(
            "window {window}  not closed  count 2  gross so far 80.00"
        )),
        "{out}"
    );

    // Closed once: the shop's 0.60 % of 100.00, none on the refund.
    let closed = ok(dir, &["clearing", "--officer", "clr", "close", &window]);
    assert!(closed.contains(&format!("window {window}")), "{closed}");
    assert!(closed.contains("by operator:clr"), "{closed}");
    let cafe = closed
        .lines()
        .find(|l| l.trim_start().starts_with("cafe"))
        .unwrap_or_else(|| panic!("{closed}"));
    assert_eq!(
        cafe.split_whitespace().collect::<Vec<_>>(),
        ["cafe", "shop", "2", "80.00", "0.60", "79.40"]
    );
    assert_eq!(ok(dir, &["clearing", "close", &window]), closed);
    let err = refused(dir, &["clearing", "close", &today.to_string()]);
    assert!(err.contains("has not ended"), "{err}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(dir, &["clearing", "report", &window, "--json"])).unwrap();
    assert_eq!(
        (
            json["gross_fen"].as_i64(),
            json["fee_fen"].as_i64(),
            json["net_fen"].as_i64(),
            json["lines"][0]["count"].as_i64()
        ),
        (Some(8_000), Some(60), Some(7_940), Some(2))
    );
    let digest = json["digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 64);
    assert!(ok(dir, &["clearing", "report", &window]).contains(&digest));
    let out = ok(dir, &["clearing", "windows", "--days", "3"]);
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("window {window}")))
        .unwrap();
    assert!(
        line.contains("closed") && line.contains("gross 80.00  fee 0.60  net 79.40"),
        "{line}"
    );
    assert!(line.contains(&digest[..16]), "{line}");
    let err = refused(dir, &["clearing", "report", &next]);
    assert!(err.contains(&format!("closed window {next}")), "{err}");

    // The settlement file, executed the day after the window by default.
    let xml = ok(dir, &["clearing", "settlement", &window]);
    let e2e = format!("W{}-cafe", window.replace('-', ""));
    assert!(
        xml.contains("pain.001.001.09")
            && xml.contains(&format!("<EndToEndId>{e2e}</EndToEndId>"))
            && xml.contains("<InstdAmt Ccy=\"CNY\">79.40</InstdAmt>")
            && xml.contains(&next),
        "{xml}"
    );

    // The bank booked 1.00 less: one exception, resolved by the officer with a note, once.
    let file = dir.join("camt053.xml");
    std::fs::write(&file, statement("STMT-CLI-1", &next, &e2e, "78.40")).unwrap();
    let out = ok(
        dir,
        &["clearing", "import-statement", file.to_str().unwrap()],
    );
    assert!(
        out.contains("statement STMT-CLI-1")
            && out.contains("1 entries, 0 matched, 1 exception(s)"),
        "{out}"
    );
    let again = ok(
        dir,
        &["clearing", "import-statement", file.to_str().unwrap()],
    );
    assert!(again.contains("imported before"), "{again}");
    let open = ok(dir, &["clearing", "exceptions", "--open"]);
    let lines: Vec<&str> = open.lines().collect();
    assert_eq!(lines.len(), 1, "{open}");
    assert!(
        lines[0].contains("open")
            && lines[0].contains("amount_mismatch")
            && lines[0].contains("sent 79.40  booked 78.40"),
        "{open}"
    );
    let id = lines[0].split_whitespace().nth(1).unwrap().to_string();
    let note = "bank corrected the amount on the next day";
    let done = ok(
        dir,
        &[
            "clearing",
            "resolve",
            &id,
            "--note",
            note,
            "--officer",
            "clr",
        ],
    );
    assert!(
        done.contains("resolved") && done.contains("resolved by clr at") && done.contains(note),
        "{done}"
    );
    assert_eq!(ok(dir, &["clearing", "exceptions", "--open"]), "");
    let all = ok(dir, &["clearing", "exceptions"]);
    assert!(
        all.contains(note) && all.contains("resolved by clr"),
        "{all}"
    );
    let err = refused(dir, &["clearing", "resolve", &id, "--note", "again"]);
    assert!(err.starts_with("refused:"), "{err}");
    let o = citycard(dir, &["clearing", "resolve", &id, "--note", "  "]);
    assert!(!o.status.success(), "{}", text(&o));
    ok(dir, &["audit", "verify"]);
}
