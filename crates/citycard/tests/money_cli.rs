//! The money commands run as the built binary: `citycard sim bank` serves the simulated bank
//! on a free port (its protocol answered over plain HTTP), and `citycard money
//! resolve-topups` asks it about pending top-ups of a data directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn http(addr: &str, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_simulated_bank_serves_and_the_sweep_asks_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut bank = Command::new(env!("CARGO_BIN_EXE_citycard"))
        .args(["sim", "bank", "--listen", "127.0.0.1:0", "--accounts", "3"])
        .args(["--balance-fen", "5000"])
        .env("CITYCARD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(bank.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let addr = url.trim_start_matches("http://");
    let balance = http(
        addr,
        "GET /sim/accounts/6222000000000003 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(balance.contains("{\"balance_fen\":5000}"), "{balance}");
    let status = http(
        addr,
        "GET /v1/debits/CC1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        status.contains("\"status\":\"failed\"") && status.contains("not_received"),
        "{status}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_citycard"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["money", "resolve-topups", "--bank-url", &url])
        .env_remove("CITYCARD_PRODUCTION")
        .env_remove("CITYCARD_DATABASE_URL")
        .env("CITYCARD_KEYSTORE_PASSPHRASE", "test passphrase")
        .env("CITYCARD_LOG", "warn")
        .output()
        .unwrap();
    let _ = bank.kill();
    let _ = bank.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pending top-ups asked: 0, succeeded: 0, failed: 0, still pending: 0"
    );
}
