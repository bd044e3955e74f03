//! The card, PSAM, terminal and key-ceremony commands, run as the built `citycard` binary:
//! personalize, converse by APDU lines, load, tap (TAC checked host-side), keys.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use chip::host::{LoadInit, UploadRecord, issue_load_mac2, verify_load_tac, verify_purchase_tac};
use chip::{BcdDate, BcdTime, CardImage, CardNumber, TerminalId};
use crypto::{Algorithm, Key16, MasterKeys, TransactionType};

const CARD_NO: &str = "4101000000000018";
const TERMINAL: &str = "112233445566";
const AT: &str = "2026-11-26 14:30:00";
const SELECT_TRANSIT: &str = "00A4040008A000000632010105";
const GET_BALANCE: &str = "805C000204";

fn citycard(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_citycard"));
    c.current_dir(dir)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("CITYCARD_PRODUCTION")
        .env_remove("CITYCARD_DATA_DIR")
        .env_remove("CITYCARD_CONFIG")
        .env_remove("CITYCARD_HSM_PIN")
        .env("CITYCARD_KEYSTORE_PASSPHRASE", "test passphrase")
        .env("CITYCARD_LOG", "warn");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    citycard(dir).args(args).output().expect("run citycard")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "citycard {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn new_card(dir: &Path, alg: &str, out: &str) {
    ok(
        dir,
        &[
            "card",
            "new",
            "--test-keys",
            "--card-no",
            CARD_NO,
            "--alg",
            alg,
            "--type",
            "ordinary",
            "--holder-name",
            "张三",
            "--id-number",
            "41010219900101123X",
            "--start-date",
            "2025-01-01",
            "--out",
            out,
        ],
    );
}

/// A `card apdu` / `psam apdu` process conversed with line by line.
struct Session {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Session {
    fn start(dir: &Path, what: &str, image: &str) -> Session {
        let mut child = citycard(dir)
            .args([what, "apdu", "--image", image])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn citycard");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Session {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one line, returns the answer line (the process flushes after each).
    fn send(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        answer.trim_end().to_string()
    }

    fn finish(self) -> Output {
        drop(self.stdin);
        let mut out = self.child.wait_with_output().unwrap();
        let mut rest = String::new();
        let mut stdout = self.stdout;
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        out.stdout = rest.into_bytes();
        out
    }
}

fn split_sw(answer: &str) -> (Vec<u8>, String) {
    let (data, sw) = answer.split_at(answer.len() - 4);
    (hex::decode(data).unwrap(), sw.to_string())
}

#[test]
fn card_new_checks_luhn_and_reports_space() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(
        d,
        &[
            "card",
            "new",
            "--test-keys",
            "--card-no",
            CARD_NO,
            "--alg",
            "sm4",
            "--holder-name",
            "张三",
            "--id-number",
            "41010219900101123X",
            "--out",
            "card.json",
            "--report",
        ],
    );
    for app in ["MF", "SSSE", "TRANSIT", "HEALTH", "CITY", "81920"] {
        assert!(out.contains(app), "report lacks {app}:\n{out}");
    }
    let image =
        CardImage::from_json(&std::fs::read_to_string(d.join("card.json")).unwrap()).unwrap();
    let purse = image.purse().unwrap();
    assert_eq!(purse.algorithm, Algorithm::Sm4);
    assert_eq!(purse.balance_fen, 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("card.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "a card image holds keys: owner-only");
    }

    // Same number with the wrong check digit: refused, nothing written.
    let bad = run(
        d,
        &[
            "card",
            "new",
            "--test-keys",
            "--card-no",
            "4101000000000017",
            "--alg",
            "3des",
            "--holder-name",
            "张三",
            "--id-number",
            "41010219900101123X",
            "--out",
            "bad.json",
        ],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("Luhn") && err.contains("4101000000000017"),
        "{err}"
    );
    assert!(!d.join("bad.json").exists());
    // An existing image is not overwritten without --force.
    let again = run(
        d,
        &[
            "card",
            "new",
            "--test-keys",
            "--card-no",
            CARD_NO,
            "--alg",
            "3des",
            "--holder-name",
            "x",
            "--id-number",
            "1",
            "--out",
            "card.json",
        ],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn card_apdu_session_loads_and_persists_across_invocations() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    new_card(d, "3des", "card.json");

    let mut s = Session::start(d, "card", "card.json");
    assert!(s.send(SELECT_TRANSIT).ends_with("9000"));
    let (ef15, sw) = split_sw(&s.send("00B095001E"));
    assert_eq!(sw, "9000");
    assert_eq!(ef15.len(), 30);
    assert_eq!(ef15[12..20], CardNumber::parse(CARD_NO).unwrap().to_bcd());
    assert_eq!(s.send(GET_BALANCE), "000000009000");
    // INITIALIZE FOR LOAD of 5000 fen at terminal 112233445566.
    let (init, sw) = split_sw(&s.send(&format!("805000020B0100001388{TERMINAL}10")));
    assert_eq!(sw, "9000");
    assert_eq!(init.len(), 16);
    let date = BcdDate::parse("20261126").unwrap();
    let time = BcdTime::new(14, 30, 0).unwrap();
    let load = LoadInit {
        card_number: CardNumber::parse(CARD_NO).unwrap(),
        algorithm: Algorithm::from_id(init[7]).unwrap(),
        key_version: init[6],
        balance_before_fen: 0,
        online_counter: u16::from_be_bytes([init[4], init[5]]),
        random: init[8..12].try_into().unwrap(),
        mac1: init[12..16].try_into().unwrap(),
        amount_fen: 5_000,
        terminal_id: TerminalId::parse(TERMINAL).unwrap(),
        date,
        time,
    };
    // The host checks MAC1 and issues MAC2; CREDIT FOR LOAD returns the TAC.
    let mac2 = issue_load_mac2(&MasterKeys::test_set(), &load).unwrap();
    let (tac, sw) = split_sw(&s.send(&format!("805200000B20261126143000{}04", hex::encode(mac2))));
    assert_eq!(sw, "9000");
    verify_load_tac(&MasterKeys::test_set(), &load, &tac.try_into().unwrap()).unwrap();
    assert_eq!(s.send(GET_BALANCE), "000013889000");
    let out = s.finish();
    assert!(out.status.success());

    // A second invocation is a fresh power-up on the saved image: the balance stayed.
    let mut s = Session::start(d, "card", "card.json");
    assert!(s.send(SELECT_TRANSIT).ends_with("9000"));
    assert_eq!(s.send(GET_BALANCE), "000013889000");
    // A line that is not hex gets 6700 (never reaching the card) and an error on stderr.
    assert_eq!(s.send("80 5C 00 02 0Z"), "6700");
    assert_eq!(s.send("805C000204"), "000013889000");
    let out = s.finish();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));
}

#[test]
fn psam_new_and_apdu_persist_the_serial() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad = run(
        d,
        &[
            "psam",
            "new",
            "--test-keys",
            "--terminal-id",
            "11223344556A",
            "--out",
            "p.json",
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("12 decimal digits"));
    ok(
        d,
        &[
            "psam",
            "new",
            "--test-keys",
            "--terminal-id",
            TERMINAL,
            "--out",
            "psam.json",
        ],
    );
    // MAC1 request of the worked example: random, counter, amount, type 06, date, time,
    // key version, algorithm 00, D, issuer id.
    let mac1 = format!(
        "8070000024A1B2C3D40000000000C806{}{}0100{CARD_NO}4101000000000000",
        "20261126", "143000"
    );
    for expected_serial in ["00000001", "00000002"] {
        let mut s = Session::start(d, "psam", "psam.json");
        assert_eq!(s.send("00B0960006"), format!("{TERMINAL}9000"));
        let (data, sw) = split_sw(&s.send(&mac1));
        assert_eq!(sw, "9000");
        assert_eq!(hex::encode_upper(&data[..4]), expected_serial);
        assert!(s.finish().status.success());
    }
}

fn record_from_json(v: &serde_json::Value) -> UploadRecord {
    let s = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {v}"))
            .to_string()
    };
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    let byte = |k: &str| u8::from_str_radix(&s(k), 16).unwrap();
    UploadRecord {
        card_number: CardNumber::parse(&s("card_number")).unwrap(),
        algorithm: Algorithm::from_id(byte("algorithm_id")).unwrap(),
        key_version: byte("key_version"),
        offline_counter: n("offline_counter") as u16,
        amount_fen: n("amount_fen") as u32,
        tx_type: TransactionType::from_code(byte("transaction_type")).unwrap(),
        terminal_id: TerminalId::parse(&s("terminal_id")).unwrap(),
        terminal_serial: n("terminal_serial") as u32,
        date: BcdDate::parse(&s("date")).unwrap(),
        time: BcdTime::from_bcd(hex::decode(s("time")).unwrap().try_into().unwrap()).unwrap(),
        balance_before_fen: n("balance_before_fen") as u32,
        tac: hex::decode(s("tac")).unwrap().try_into().unwrap(),
    }
}

#[test]
fn load_then_tap_gives_records_whose_tac_verifies_on_the_host() {
    for alg in ["3des", "sm4"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        new_card(d, alg, "card.json");
        ok(
            d,
            &[
                "psam",
                "new",
                "--test-keys",
                "--terminal-id",
                TERMINAL,
                "--out",
                "psam.json",
            ],
        );
        let loaded: serde_json::Value = serde_json::from_str(&ok(
            d,
            &[
                "load",
                "--card",
                "card.json",
                "--amount",
                "5000",
                "--terminal-id",
                TERMINAL,
                "--test-keys",
                "--at",
                AT,
            ],
        ))
        .unwrap();
        assert_eq!(loaded["balance_after_fen"], 5_000, "{loaded}");
        assert_eq!(loaded["tac_valid"], true);
        // The card draws its own random, so the TAC differs per card; the host checked it.
        let tac = loaded["tac"].as_str().unwrap();
        assert_eq!(tac.len(), 8);

        let tap = ok(
            d,
            &[
                "tap",
                "--card",
                "card.json",
                "--psam",
                "psam.json",
                "--amount",
                "200",
                "--at",
                AT,
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&tap).unwrap();
        assert_eq!(v["balance_after_fen"], 4_800);
        let record = record_from_json(&v);
        assert_eq!(record.tx_type, TransactionType::Purchase);
        assert_eq!(record.balance_before_fen, 5_000);
        verify_purchase_tac(&MasterKeys::test_set().tac, &record).unwrap();
        // The TAC binds the amount.
        let forged = UploadRecord {
            amount_fen: 2,
            ..record.clone()
        };
        assert!(verify_purchase_tac(&MasterKeys::test_set().tac, &forged).is_err());

        // A metro trip: entry (0 fen), exit (300 fen); both TACs verify.
        for args in [
            vec!["--complex", "entry", "--line", "1", "--station", "5"],
            vec![
                "--complex",
                "exit",
                "--line",
                "1",
                "--station",
                "9",
                "--amount",
                "300",
            ],
        ] {
            let mut all = vec![
                "tap",
                "--card",
                "card.json",
                "--psam",
                "psam.json",
                "--at",
                AT,
            ];
            all.extend(args);
            let v: serde_json::Value = serde_json::from_str(&ok(d, &all)).unwrap();
            let r = record_from_json(&v);
            assert_eq!(r.tx_type, TransactionType::ComplexPurchase);
            verify_purchase_tac(&MasterKeys::test_set().tac, &r).unwrap();
        }

        // The balance on the card image, read back by APDU.
        let mut s = Session::start(d, "card", "card.json");
        s.send(SELECT_TRANSIT);
        assert_eq!(s.send(GET_BALANCE), format!("{:08X}9000", 4_500));
        assert!(s.finish().status.success());
    }
}

fn component(key_xor: &mut [u8; 16], seed: u8) -> String {
    let bytes: [u8; 16] = std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7));
    for (k, b) in key_xor.iter_mut().zip(bytes) {
        *k ^= b;
    }
    let kcv = Key16::from_bytes(bytes).kcv(Algorithm::Tdes);
    format!("{}:{}", hex::encode_upper(bytes), hex::encode_upper(kcv))
}

#[test]
fn keys_ceremony_checks_kcvs_and_never_prints_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut key = [0u8; 16];
    let c1 = component(&mut key, 1);
    let c2 = component(&mut key, 2);
    // Component 2 with a wrong check value: refused, nothing stored.
    let wrong = format!("{}:000000", c2.split_once(':').unwrap().0);
    let out = run(
        d,
        &[
            "keys",
            "import",
            "--purpose",
            "tac",
            "--version",
            "3",
            "--component",
            &c1,
            "--component",
            &wrong,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("component 2") && err.contains("check value"),
        "{err}"
    );
    assert!(ok(d, &["keys", "list"]).contains("0 key(s)"));

    // Correct components: stored, the combined KCV printed.
    let expected_kcv = hex::encode_upper(Key16::from_bytes(key).kcv(Algorithm::Tdes));
    let out = ok(
        d,
        &[
            "keys",
            "import",
            "--purpose",
            "tac",
            "--version",
            "3",
            "--component",
            &c1,
            "--component",
            &c2,
            "--kcv",
            &expected_kcv,
        ],
    );
    assert!(out.contains(&expected_kcv), "{out}");
    ok(
        d,
        &[
            "keys",
            "generate",
            "--purpose",
            "purchase",
            "--version",
            "2",
        ],
    );
    ok(d, &["keys", "load-test-set"]);
    let refused = run(d, &["--production", "keys", "load-test-set"]);
    assert!(!refused.status.success());

    let list = ok(d, &["keys", "list"]);
    assert!(list.contains("transit/tac/v3") && list.contains("transit/purchase/v2"));
    assert!(list.contains(&expected_kcv));
    // No key, component or test master key in any form appears.
    let upper = list.to_uppercase();
    let test = MasterKeys::test_set();
    for secret in [
        hex::encode_upper(key),
        c1.split_once(':').unwrap().0.to_string(),
        c2.split_once(':').unwrap().0.to_string(),
        hex::encode_upper(test.purchase.expose()),
        hex::encode_upper(test.load.expose()),
        hex::encode_upper(test.tac.expose()),
    ] {
        assert!(
            !upper.contains(&secret),
            "key material in `keys list`:\n{list}"
        );
        assert!(
            !upper.contains(&secret[..12]),
            "key material in `keys list`:\n{list}"
        );
    }

    // A production start refuses the store that holds the test key set.
    let serve = run(d, &["--production", "serve", "--listen", "127.0.0.1:0"]);
    assert!(!serve.status.success());
    assert!(
        String::from_utf8_lossy(&serve.stderr).contains("test key set"),
        "{}",
        String::from_utf8_lossy(&serve.stderr)
    );
}
