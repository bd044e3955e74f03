//! The platform killed at random moments while terminals upload (issue 6, reliability):
//! `citycard serve` runs as a child process on a SQLite data directory; `citycard terminal
//! simulate` drives simulated terminals against it; the platform is killed with SIGKILL at
//! random moments during the uploads and restarted on the same data directory, again and
//! again. Then every tap is posted exactly once, no terminal got a "duplicate" (a batch's
//! answer is stored in the same transaction as its postings, so a resend after a crash gets
//! either the stored answer or a fresh ingest), nothing is pending, and `citycard ledger check`
//! passes.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TERMINALS: u64 = 40;
const TAPS_PER_TERMINAL: u64 = 10;
const KILLS: usize = 8;

fn citycard(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_citycard"));
    c.arg("--data-dir")
        .arg(dir)
        .env_remove("CITYCARD_DATABASE_URL")
        .env_remove("CITYCARD_PRODUCTION")
        .env_remove("CITYCARD_KEYSTORE_PASSPHRASE")
        .env("CITYCARD_LOG", "error");
    c
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    let out = citycard(dir)
        .args(args)
        .env("CITYCARD_NEW_PASSWORD", "citycard-test-password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "citycard {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn serve(dir: &Path, listen: &str) -> Child {
    citycard(dir)
        .args(["serve", "--listen", listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the platform answers on `listen`.
async fn up(listen: &str) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(listen).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the platform did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn active_terminals(base: &str, token: &str) -> u64 {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = hyper::Request::builder()
        .uri(format!("{base}/api/v1/terminals"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let Ok(resp) = client.request(req).await else {
        return 0;
    };
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    v.as_array().map_or(0, |ts| {
        ts.iter().filter(|t| t["status"] == "active").count() as u64
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tap_posted_once_through_platform_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["migrate"]);
    ok(dir, &["keys", "load-test-set"]);
    ok(dir, &["admin", "create-user", "--username", "admin"]);
    let token = String::from_utf8(
        ok(
            dir,
            &["admin", "token", "--username", "admin", "--label", "sim"],
        )
        .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let listen = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let base = format!("http://{listen}");
    let mut platform = serve(dir, &listen);
    up(&listen).await;

    let started = Instant::now();
    let mut sim = Command::new(env!("CARGO_BIN_EXE_citycard"))
        .args(["terminal", "simulate", "--server", &base, "--token", &token])
        .args(["--terminals", &TERMINALS.to_string()])
        .args(["--taps-per-terminal", &TAPS_PER_TERMINAL.to_string()])
        .args(["--run", "77", "--batch-max", "3", "--upload-every", "2"])
        .args(["--tap-interval-ms", "250", "--timeout-s", "300", "--json"])
        .env("CITYCARD_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The kills start once every terminal is active (an activation code lost in a crash
    // cannot be asked again).
    while active_terminals(&base, &token).await < TERMINALS {
        assert!(sim.try_wait().unwrap().is_none(), "the simulator stopped");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "setup too slow"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("platform-kill seed {seed}");
    let mut s = seed;
    let mut rng = move |below: u64| {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    };
    let mut kills = 0;
    while kills < KILLS && sim.try_wait().unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(150 + rng(500))).await;
        // SIGKILL: no chance to finish a transaction or an answer.
        let _ = platform.kill();
        let _ = platform.wait();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng(300))).await;
        platform = serve(dir, &listen);
        up(&listen).await;
    }
    eprintln!("{kills} kills in {:?}", started.elapsed());
    assert!(
        kills >= 3,
        "the platform was killed during the uploads ({kills})"
    );
    let out = tokio::task::spawn_blocking(move || sim.wait_with_output().unwrap())
        .await
        .unwrap();
    let _ = platform.kill();
    let _ = platform.wait();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let acc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let taps = TERMINALS * TAPS_PER_TERMINAL;
    assert_eq!(acc["taps"], taps, "{acc}");
    assert_eq!(acc["posted"], taps, "{acc}");
    assert_eq!(acc["duplicates"], 0, "{acc}");
    assert_eq!(acc["refused"], 0, "{acc}");
    assert_eq!(acc["pending"], 0, "{acc}");

    // In the platform's database: every tap once, the fares all there, each batch's answer
    // stored with its postings.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("citycard.db").display()))
        .await
        .unwrap();
    let (n, distinct, sum): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT card_number || ':' || offline_counter), \
         COALESCE(SUM(amount_fen), 0) FROM purchases",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(n as u64, taps, "every tap posted");
    assert_eq!(distinct as u64, taps, "no tap posted twice");
    assert_eq!(sum, acc["charged_fen"].as_i64().unwrap());
    let batched: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(records), 0) FROM terminal_batches")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        batched as u64, taps,
        "one stored answer per batch, covering every tap"
    );
    db.close().await;
    let check = ok(dir, &["ledger", "check"]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("ledger intact"));
}
