//! Clearing killed at random moments (issue 5, reliability), on SQLite and PostgreSQL:
//! `citycard serve` runs as a child process; a large set of offline purchases (real TACs from
//! the card emulator's fleet) is uploaded through `POST /api/v1/purchases` while the platform
//! is killed with SIGKILL again and again and restarted on the same data; after each failed
//! upload the uploader goes back and sends the two uploads before it again. Then the window
//! is closed (`POST /api/v1/clearing/windows/{w}/close`), the platform killed while the close
//! request is in flight, up to three times (a close of this window takes tens of
//! milliseconds, so a kill may land before, within or after its transaction). Afterwards every purchase is posted exactly once, `citycard
//! ledger check` passes, and the window's report — digest and lines — is the one the same
//! uploads give without any crash (a second platform, never killed), and the one the day's
//! own figures give.
//!
//! The purchases are posted into a window two days back: the platform serves the uploads with
//! `--clock-offset-s` (development only), and the close runs on the real clock, after that
//! window's cut-off.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chip::fleet::Fleet;
use chip::{BcdDate, BcdTime, TerminalId};
use serde_json::{Value, json};

/// Cards of the fleet, and purchases per card: 20,000 purchases.
const CARDS: u32 = 400;
const ROUNDS: usize = 50;
/// Records per upload: ten uploads.
const UPLOAD: usize = 2_000;
/// Kills during the uploads (at most: the uploads may finish first), and during the close.
const UPLOAD_KILLS: usize = 6;
const CLOSE_KILLS: usize = 3;
const MERCHANTS: [(&str, &str, &str, &str); 3] = [
    ("metro", "郑州地铁", "transit", "41050100000001"),
    ("bus", "郑州公交", "transit", "41050100000002"),
    ("market", "丹尼斯超市", "shop", "41050100000003"),
];
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// One platform's storage: a data directory (SQLite, and the key store either way) and, for
/// PostgreSQL, a fresh schema of the test database.
struct Data {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    url: Option<String>,
}

impl Data {
    async fn new(backend: Backend) -> Data {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let base = platform::testing::postgres_test_url();
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).unwrap();
                let schema = format!("k_{:016x}", u64::from_le_bytes(b));
                let admin = sqlx::PgPool::connect(&base).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL at {base}: {e}. Run ./scripts/test (it starts PostgreSQL and \
                         creates the test database) or set CITYCARD_TEST_DATABASE_URL."
                    )
                });
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
            }
        };
        Data {
            _tmp: tmp,
            dir,
            url,
        }
    }

    fn citycard(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_citycard"));
        c.arg("--data-dir")
            .arg(&self.dir)
            .env_remove("CITYCARD_DATABASE_URL")
            .env_remove("CITYCARD_PRODUCTION")
            .env_remove("CITYCARD_KEYSTORE_PASSPHRASE")
            .env_remove("CITYCARD_CLOCK_OFFSET_S")
            .env("CITYCARD_LOG", "error");
        if let Some(url) = &self.url {
            c.arg("--database-url").arg(url);
        }
        c
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self
            .citycard()
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

    /// `citycard serve`, its clock `offset_s` seconds off the real time when given.
    fn serve(&self, listen: &str, offset_s: Option<i64>) -> Child {
        let mut c = self.citycard();
        if let Some(s) = offset_s {
            c.arg(format!("--clock-offset-s={s}"));
        }
        c.args(["serve", "--listen", listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Every stored purchase: (count, distinct card and offline counter, sum in fen).
    async fn purchases(&self) -> (i64, i64, i64) {
        const Q: &str = "SELECT COUNT(*), COUNT(DISTINCT card_number || ':' || offline_counter), \
                         COALESCE(SUM(amount_fen), 0) FROM purchases";
        match &self.url {
            None => {
                let db = sqlx::SqlitePool::connect(&format!(
                    "sqlite://{}",
                    self.dir.join("citycard.db").display()
                ))
                .await
                .unwrap();
                let r: (i64, i64, i64) = sqlx::query_as(Q).fetch_one(&db).await.unwrap();
                db.close().await;
                r
            }
            Some(url) => {
                let db = sqlx::PgPool::connect(url).await.unwrap();
                let r: (i64, i64, i64) = sqlx::query_as(&Q.replace(
                    "COALESCE(SUM(amount_fen), 0)",
                    "COALESCE(SUM(amount_fen), 0)::BIGINT",
                ))
                .fetch_one(&db)
                .await
                .unwrap();
                db.close().await;
                r
            }
        }
    }
}

fn free_listen() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
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

fn kill(child: &mut Child) {
    // SIGKILL: no chance to finish a transaction or an answer.
    let _ = child.kill();
    let _ = child.wait();
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<hyper::body::Bytes>,
>;

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// A request to the platform: its status and JSON body, or `Err` when the connection failed
/// (the platform was killed, or is not up yet).
async fn call(
    client: &Client,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    use http_body_util::BodyExt;
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"));
    let bytes = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            v.to_string()
        }
        None => String::new(),
    };
    let req = b
        .body(http_body_util::Full::new(hyper::body::Bytes::from(bytes)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(120), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((status, v))
}

/// A report line: merchant, category, count, gross, fee, net.
type Line = (String, String, i64, i64, i64, i64);

/// The purchases of the day, uploaded per merchant in the order they were made: upload `i`
/// goes to merchant `i % 3`. Returns the uploads and the expected lines of the report
/// (merchant, category, count, gross fen, fee fen, net fen) from the day's own figures.
fn the_day(date: BcdDate) -> (Vec<Value>, Vec<Line>) {
    let mut fleet = Fleet::new(
        800_000,
        CARDS,
        crypto::Algorithm::Sm4,
        TerminalId([0x44; 6]),
    );
    let time = BcdTime::new(12, 0, 0).unwrap();
    for c in 0..CARDS as usize {
        fleet.load(c, 20_000, date, time).unwrap();
    }
    let mut records = Vec::new();
    for r in 0..ROUNDS {
        for c in 0..CARDS as usize {
            let fen = 100 + ((c * 37 + r * 101) % 300) as u32;
            let raw = fleet.buy(c, fen, date, time).unwrap().to_raw();
            records.push(json!({
                "card_number": raw.card_number,
                "algorithm_id": raw.algorithm_id,
                "key_version": raw.key_version,
                "offline_counter": raw.offline_counter,
                "amount_fen": raw.amount_fen,
                "tx_type": raw.tx_type,
                "terminal_id": raw.terminal_id,
                "terminal_serial": raw.terminal_serial,
                "date": raw.date,
                "time": raw.time,
                "balance_before_fen": raw.balance_before_fen,
                "tac": raw.tac,
            }));
        }
    }
    let mut per: std::collections::BTreeMap<&str, (i64, i64, i64)> = Default::default();
    let mut uploads = Vec::new();
    for (i, chunk) in records.chunks(UPLOAD).enumerate() {
        let (merchant, _, category, _) = MERCHANTS[i % 3];
        let bp = if category == "shop" { 60 } else { 30 };
        let e = per.entry(merchant).or_default();
        for r in chunk {
            let fen = r["amount_fen"].as_i64().unwrap();
            *e = (e.0 + 1, e.1 + fen, e.2 + (fen * bp + 5_000) / 10_000);
        }
        uploads.push(json!({"merchant": merchant, "records": chunk}));
    }
    let lines = per
        .into_iter()
        .map(|(m, (n, gross, fee))| {
            let category = MERCHANTS.iter().find(|x| x.0 == m).unwrap().2;
            (
                m.to_string(),
                category.to_string(),
                n,
                gross,
                fee,
                gross - fee,
            )
        })
        .collect();
    (uploads, lines)
}

/// A small xorshift for the kill times, seeded from the clock and printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

struct Outcome {
    report: Value,
    close_ms: u64,
    upload_kills: usize,
    close_kills: usize,
    /// Uploads sent again: each failed one, and the two before it after an answer.
    resent: usize,
}

/// One platform through the day: set up, the uploads at the shifted clock, the close at the
/// real one. With `chaos`, killed during both as described above.
async fn run(
    backend: Backend,
    uploads: &[Value],
    offset_s: i64,
    window: &str,
    mut chaos: Option<(&mut Rng, u64)>,
) -> (Data, Outcome) {
    let data = Data::new(backend).await;
    data.ok(&["migrate"]);
    data.ok(&["keys", "load-test-set"]);
    data.ok(&["admin", "create-user", "--username", "admin"]);
    let token = String::from_utf8(
        data.ok(&["admin", "token", "--username", "admin", "--label", "kill"])
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let listen = free_listen();
    let base = format!("http://{listen}");
    let http = client();
    let mut platform = data.serve(&listen, Some(offset_s));
    up(&listen).await;
    for (code, name, category, account) in MERCHANTS {
        let v = json!({"code": code, "name": name, "category": category,
                       "settlement_account": account});
        let (s, b) = call(
            &http,
            "POST",
            &format!("{base}/api/v1/merchants"),
            &token,
            Some(&v),
        )
        .await
        .unwrap();
        assert!(s == 201 || s == 200, "{s} {b}");
    }

    // The uploads. A failed upload is sent again with the two before it (already answered:
    // their records are duplicates now).
    let uploader = {
        let (uploads, base, token) = (uploads.to_vec(), base.clone(), token.clone());
        let window = window.to_string();
        tokio::spawn(async move {
            let http = client();
            let url = format!("{base}/api/v1/purchases");
            let (mut i, mut resent, mut down, started) = (0, 0, false, Instant::now());
            while i < uploads.len() {
                assert!(
                    started.elapsed() < Duration::from_secs(300),
                    "uploads too slow"
                );
                match call(&http, "POST", &url, &token, Some(&uploads[i])).await {
                    Ok((200, v)) => {
                        let results = v["results"].as_array().unwrap();
                        assert_eq!(
                            results.len(),
                            uploads[i]["records"].as_array().unwrap().len()
                        );
                        for r in results {
                            let result = r["result"].as_str().unwrap();
                            assert!(
                                result == "posted" || result == "duplicate",
                                "upload {i}: {r}"
                            );
                            assert_eq!(r["window"], window.as_str(), "{r}");
                        }
                        i += 1;
                        down = false;
                    }
                    Ok((status, v)) if status < 500 => panic!("upload {i}: {status} {v}"),
                    Ok(_) | Err(_) => {
                        // The first failure after an answer: go back two uploads. While the
                        // platform is down, keep asking with the same one.
                        resent += 1;
                        if !down {
                            resent += i - i.saturating_sub(2);
                            i = i.saturating_sub(2);
                        }
                        down = true;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
            }
            resent
        })
    };
    let mut upload_kills = 0;
    if let Some((rng, _)) = chaos.as_mut() {
        while upload_kills < UPLOAD_KILLS && !uploader.is_finished() {
            tokio::time::sleep(Duration::from_millis(50 + rng.below(300))).await;
            if uploader.is_finished() {
                break;
            }
            kill(&mut platform);
            upload_kills += 1;
            tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
            platform = data.serve(&listen, Some(offset_s));
            up(&listen).await;
        }
    }
    let resent = uploader.await.unwrap();

    // The close, on the real clock: the window two days back has ended.
    kill(&mut platform);
    let mut platform = data.serve(&listen, None);
    up(&listen).await;
    let close = format!("{base}/api/v1/clearing/windows/{window}/close");
    let mut close_kills = 0;
    let (report, close_ms) = loop {
        let started = Instant::now();
        let req = {
            let (close, token) = (close.clone(), token.clone());
            tokio::spawn(async move { call(&client(), "POST", &close, &token, None).await })
        };
        if let Some((rng, close_hint_ms)) = chaos.as_mut()
            && close_kills < CLOSE_KILLS
        {
            // Within the time a close took without a crash: the kill lands while it runs.
            // The first kill comes early, so at least one close is surely cut short.
            let hint = (*close_hint_ms).max(20);
            let delay = if close_kills == 0 {
                rng.below(hint / 4)
            } else {
                hint / 10 + rng.below(hint / 2)
            };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if !req.is_finished() {
                kill(&mut platform);
                close_kills += 1;
                let _ = req.await.unwrap();
                platform = data.serve(&listen, None);
                up(&listen).await;
                continue;
            }
        }
        match req.await.unwrap() {
            Ok((200, v)) => break (v, started.elapsed().as_millis() as u64),
            Ok((s, v)) if s < 500 => panic!("close: {s} {v}"),
            // Not up yet after a restart: ask again.
            _ => tokio::time::sleep(Duration::from_millis(30)).await,
        }
    };
    // Read back from storage, the report is the one the close answered.
    let (s, stored) = call(
        &http,
        "GET",
        &format!("{base}/api/v1/clearing/windows/{window}"),
        &token,
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{stored}");
    assert_eq!(stored["digest"], report["digest"]);
    assert_eq!(stored["lines"], report["lines"]);
    kill(&mut platform);
    (
        data,
        Outcome {
            report,
            close_ms,
            upload_kills,
            close_kills,
            resent,
        },
    )
}

fn lines(report: &Value) -> Vec<Line> {
    report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["merchant"].as_str().unwrap().to_string(),
                l["category"].as_str().unwrap().to_string(),
                l["count"].as_i64().unwrap(),
                l["gross_fen"].as_i64().unwrap(),
                l["fee_fen"].as_i64().unwrap(),
                l["net_fen"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn every_purchase_once_and_the_same_report_through_kills(backend: Backend) {
    let started = Instant::now();
    // The platform's clock during the uploads: 12:00 in the city two days ago.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let cst = 8 * HOUR_MS;
    let midnight = (now_ms + cst).div_euclid(DAY_MS) * DAY_MS - cst;
    let target_ms = midnight - 2 * DAY_MS + 12 * HOUR_MS;
    let offset_s = (target_ms - now_ms).div_euclid(1_000);
    let day = time::OffsetDateTime::from_unix_timestamp(target_ms / 1_000)
        .unwrap()
        .to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap())
        .date();
    let window = day.to_string();
    let date = BcdDate::new(day.year() as u16, u8::from(day.month()), day.day()).unwrap();
    let (uploads, expected) = the_day(date);
    let purchases = (CARDS as usize * ROUNDS) as i64;
    let fen: i64 = expected.iter().map(|l| l.3).sum();
    eprintln!(
        "{backend:?}: the day's purchases made in {:?}",
        started.elapsed()
    );

    // Without a crash.
    let (calm, reference) = run(backend, &uploads, offset_s, &window, None).await;
    assert_eq!(lines(&reference.report), expected, "the day's own figures");
    assert_eq!(calm.purchases().await, (purchases, purchases, fen));
    eprintln!(
        "{backend:?}: reference run in {:?}, its close {} ms",
        started.elapsed(),
        reference.close_ms
    );

    // Killed again and again.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("{backend:?}: clearing-kill seed {seed}");
    let mut rng = Rng(seed);
    let (killed, chaos) = run(
        backend,
        &uploads,
        offset_s,
        &window,
        Some((&mut rng, reference.close_ms)),
    )
    .await;
    eprintln!(
        "{backend:?}: {} kills during the uploads ({} uploads resent), {} during the close, \
         in {:?}",
        chaos.upload_kills,
        chaos.resent,
        chaos.close_kills,
        started.elapsed()
    );
    assert!(
        chaos.upload_kills >= 2,
        "killed during the uploads ({})",
        chaos.upload_kills
    );
    assert!(
        chaos.close_kills >= 1,
        "killed during the close ({})",
        chaos.close_kills
    );
    assert_eq!(
        killed.purchases().await,
        (purchases, purchases, fen),
        "every purchase posted exactly once"
    );
    assert_eq!(chaos.report["digest"], reference.report["digest"]);
    assert_eq!(lines(&chaos.report), lines(&reference.report));
    for (name, data) in [("calm", &calm), ("killed", &killed)] {
        let check = data.ok(&["ledger", "check"]);
        assert!(
            String::from_utf8_lossy(&check.stdout).contains("ledger intact"),
            "{name}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_purchase_once_and_the_same_report_through_kills() {
    every_purchase_once_and_the_same_report_through_kills(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_purchase_once_and_the_same_report_through_kills() {
    every_purchase_once_and_the_same_report_through_kills(Backend::Postgres).await;
}

/// The clock offset is a development switch: production mode refuses it, and the help says so.
#[test]
fn the_clock_offset_is_refused_in_production() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_citycard"))
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["--production", "--clock-offset-s=-86400", "migrate"])
        .env_remove("CITYCARD_CLOCK_OFFSET_S")
        .env_remove("CITYCARD_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--clock-offset-s"), "{err}");
    assert!(err.contains("production"), "{err}");
    let help = Command::new(env!("CARGO_BIN_EXE_citycard"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--clock-offset-s"), "{help}");
    assert!(help.contains("Refused in production mode"), "{help}");
}
