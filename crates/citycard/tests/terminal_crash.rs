//! `citycard terminal run` killed and restarted at random moments while it taps and uploads,
//! with the network to the platform cut part of the time (a proxy in front of the platform that
//! drops every connection and refuses new ones), then let run to the end: every tap of the
//! script is posted on the platform exactly once, and the merchant is owed exactly the fares.
//! On SQLite and on PostgreSQL (CITYCARD_TEST_DATABASE_URL).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use platform::Caller;
use platform::clock::Clock;
use platform::testing::Backend;

const TAPS: usize = 240;
const CARDS: usize = 20;
const ROUNDS: usize = 8;

/// A TCP proxy that can cut the network: while down it drops its open connections and refuses
/// new ones.
async fn proxy(target: std::net::SocketAddr) -> (String, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(true);
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            if !*rx.borrow() {
                drop(inbound);
                continue;
            }
            let mut rx = rx.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = async { while rx.changed().await.is_ok() { if !*rx.borrow() { break; } } } => {}
                }
            });
        }
    });
    (format!("http://{addr}"), tx)
}

/// xorshift64*, seeded from the clock (printed, to replay a failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    }
}

fn fare(i: usize) -> i64 {
    // Card types of the emulator: index % 10 == 3 a student (half), == 7 a senior (free).
    match (i % CARDS) % 10 {
        3 => 100,
        7 => 0,
        _ => 200,
    }
}

async fn kill_and_cut(backend: Backend) {
    let tp = platform::testing::fresh(backend).await;
    let now_s = platform::clock::now_in_city().unix_timestamp();
    tp.clock.advance_ms(now_s * 1000 - tp.clock.now_ms());
    platform::testing::install_test_master_keys(&tp).unwrap();
    let p = tp.platform.clone();
    let cli = Caller::cli("test");
    p.merchant_create(&cli, "bus", "公交", "transit", "41050100000002")
        .await
        .unwrap();
    let reg = p
        .terminal_register(
            &cli,
            "BUS-0101",
            "bus",
            "validator",
            "B2",
            None,
            Some("000000000101"),
        )
        .await
        .unwrap();
    let secret = [0x41u8; 32];
    let key = crypto::Sm2SigningKey::from_secret(&crypto::Key32::from_bytes(secret)).unwrap();
    p.terminal_activate(
        "BUS-0101",
        &reg.activation_code,
        &key.public_key().to_compressed(),
        "agent-1",
        None,
        "test",
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        p.clone(),
        std::future::pending::<()>(),
    ));
    let (url, network) = proxy(target).await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("terminal.toml");
    std::fs::write(
        &config,
        format!(
            "platform_url = \"{url}\"\nterminal_id = \"BUS-0101\"\nsecret_key = \"{}\"\n\
             psam_terminal_id = \"000000000101\"\ndata_dir = \"{}\"\nbatch_max = 7\n\
             [emulator]\nfirst_sequence = 840000\ncards = {CARDS}\nload_fen = 100000\n",
            hex::encode(secret),
            dir.path().join("terminal").display()
        ),
    )
    .unwrap();
    let taps = dir.path().join("taps.jsonl");
    let lines: Vec<String> = (0..TAPS)
        .map(|i| {
            format!(
                "{{\"ref\":\"t{i}\",\"card_index\":{},\"ride\":{{\"bus\":{{\"line\":\"B2\"}}}},\"at_s\":{}}}",
                i % CARDS,
                now_s + i as i64
            )
        })
        .collect();
    std::fs::write(&taps, lines.join("\n")).unwrap();
    let run = {
        let (unused, config, taps) = (
            dir.path().join("platform-unused"),
            config.clone(),
            taps.clone(),
        );
        move || {
            let mut c = Command::new(env!("CARGO_BIN_EXE_citycard"));
            c.arg("--data-dir")
                .arg(&unused)
                .args(["terminal", "run", "--config"])
                .arg(&config)
                .arg("--taps")
                .arg(&taps)
                .args(["--until-drained", "--upload-interval-ms", "20"])
                .env_remove("CITYCARD_DATABASE_URL")
                .env_remove("CITYCARD_PRODUCTION")
                .env("CITYCARD_LOG", "error");
            c
        }
    };

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill-and-cut seed {seed}");
    let mut rng = Rng(seed);
    for round in 0..ROUNDS {
        // Down a third of the time; the cut may also come in the middle of a round.
        network.send_replace(rng.next(3) != 0);
        let mut child = run()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let life = Duration::from_millis(150 + rng.next(900));
        let cut_at = Duration::from_millis(rng.next(life.as_millis() as u64 + 1));
        let started = Instant::now();
        tokio::time::sleep(cut_at).await;
        if rng.next(2) == 0 {
            let up = *network.borrow();
            network.send_replace(!up);
        }
        tokio::time::sleep(life.saturating_sub(started.elapsed())).await;
        // SIGKILL: no chance to finish a write or a send.
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("round {round}: killed after {life:?}");
    }
    network.send_replace(true);
    // The last run drains the queue; bounded, so a terminal that cannot drain fails the test
    // with what it logged instead of hanging it.
    let (out_path, err_path) = (dir.path().join("drain.out"), dir.path().join("drain.err"));
    let (o, e) = (out_path.clone(), err_path.clone());
    let status = tokio::task::spawn_blocking(move || {
        let mut child = run()
            .env("CITYCARD_LOG", "warn")
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let tail: String = stderr.lines().rev().take(40).collect::<Vec<_>>().join("\n");
    assert!(
        status.is_some_and(|s| s.success()),
        "the terminal did not drain its queue within 180 s (seed {seed}); its log, newest first:\n{tail}"
    );
    let stdout = std::fs::read(&out_path).unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(summary["accepted"], TAPS as u64, "{summary}");
    assert_eq!(summary["refused"], 0, "{summary}");

    // On the platform: every tap once.
    let window = p
        .clearing_calendar()
        .window_of(tp.clock.now_ms())
        .to_string();
    let rows = p
        .store
        .purchases_of_window(&window, 0, 10_000)
        .await
        .unwrap();
    assert_eq!(rows.len(), TAPS, "every tap posted, none twice");
    let mut keys: Vec<(String, u16)> = rows
        .iter()
        .map(|r| (r.card_number.clone(), r.offline_counter))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), TAPS);
    let mut serials: Vec<u32> = rows.iter().map(|r| r.terminal_serial).collect();
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len(), TAPS, "one PSAM serial per tap");
    let owed = p
        .store
        .ledger_account(
            &ledger::AccountKey::new(
                ledger::AccountKind::MerchantPayable,
                ledger::Owner::Merchant("bus".into()),
                ledger::Unit::Cny,
            )
            .unwrap(),
        )
        .await
        .unwrap()
        .map_or(0, |a| a.balance);
    assert_eq!(owed, (0..TAPS).map(fare).sum::<i64>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tap_posted_once_through_kills_and_cuts_sqlite() {
    kill_and_cut(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tap_posted_once_through_kills_and_cuts_postgres() {
    kill_and_cut(Backend::Postgres).await;
}
