//! A simulated day of the terminal network (issue 6, "done when"): `citycard terminal simulate`
//! runs hundreds of terminals — each a real `terminal_agent::Agent` with its own SQLite store,
//! registered and activated through the API — against the platform over HTTP through a TCP
//! proxy that cuts the network (drops open connections, refuses new ones) again and again
//! during the run. Then every tap is posted exactly once (purchases, merchant payable = the
//! fares charged, the ledger check), the simulator's accounting has nothing pending, no
//! duplicate and no refusal, and the fleet (`/api/v1/terminals/fleet` and `/console/terminals`)
//! shows every terminal with its uploads and the counts. On SQLite and on PostgreSQL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use platform::Caller;
use platform::clock::Clock;
use platform::testing::Backend;
use store::Role;

const TERMINALS: u64 = 240;
const TAPS_PER_TERMINAL: u64 = 4;
const RUN: u16 = 4242;

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

async fn get(base: &str, path: &str, token: &str) -> (u16, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::builder()
        .uri(format!("{base}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn day(backend: Backend) {
    let tp = platform::testing::fresh(backend).await;
    // The terminals sign with the real clock: the platform's clock is set to it.
    let now_s = platform::clock::now_in_city().unix_timestamp();
    tp.clock.advance_ms(now_s * 1000 - tp.clock.now_ms());
    // ... and keeps following it during the run (a terminal that has not yet learned the
    // platform's time signs with its own, which must stay within the clock window).
    let ticking = tp.clock.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let real = platform::clock::now_in_city().unix_timestamp() * 1000;
            let behind = real - ticking.now_ms();
            if behind > 0 {
                ticking.advance_ms(behind);
            }
        }
    });
    platform::testing::install_test_master_keys(&tp).unwrap();
    let p = tp.platform.clone();
    let start_ms = tp.clock.now_ms();
    p.create_operator(
        &Caller::cli("test"),
        platform::operators::OperatorRequest {
            username: "admin".into(),
            display_name: "管理员".into(),
            password: "citycard-test-password".into(),
            role: Role::Administrator,
            department: None,
        },
    )
    .await
    .unwrap();
    let token = p
        .create_api_token(&Caller::cli("test"), "admin", "simulator", 1)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let direct = format!("http://{target}");
    tokio::spawn(server::serve(
        listener,
        p.clone(),
        std::future::pending::<()>(),
    ));
    let (url, network) = proxy(target).await;

    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_citycard"))
        .args(["terminal", "simulate", "--server", &url, "--token", &token])
        .args(["--terminals", &TERMINALS.to_string()])
        .args(["--taps-per-terminal", &TAPS_PER_TERMINAL.to_string()])
        .args([
            "--run",
            &RUN.to_string(),
            "--batch-max",
            "2",
            "--upload-every",
            "2",
        ])
        .args(["--tap-interval-ms", "150", "--concurrency", "48"])
        .args(["--timeout-s", "300", "--json"])
        .env("CITYCARD_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Registration and activation go through while the network is up (an activation code
    // lost on the way cannot be asked again); then the network is cut and restored at random
    // moments while the terminals tap and upload.
    loop {
        let active = p
            .terminals(None)
            .await
            .unwrap()
            .iter()
            .filter(|t| t.status == "active")
            .count() as u64;
        if active == TERMINALS {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the simulator stopped during setup"
        );
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "setup too slow"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("setup done after {:?}", started.elapsed());
    let mut seed = (started.elapsed().as_nanos() as u64) | 1;
    let mut rng = move |below: u64| {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    };
    let mut cuts = 0;
    let mut down_ms = 0;
    while child.try_wait().unwrap().is_none() {
        // Down about a third of the time, in cuts of 150–600 ms.
        let cut = 150 + rng(450);
        network.send_replace(false);
        cuts += 1;
        down_ms += cut;
        tokio::time::sleep(Duration::from_millis(cut)).await;
        network.send_replace(true);
        tokio::time::sleep(Duration::from_millis(300 + rng(900))).await;
        assert!(
            started.elapsed() < Duration::from_secs(400),
            "the simulation did not end"
        );
    }
    network.send_replace(true);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    eprintln!(
        "simulated day: {TERMINALS} terminals x {TAPS_PER_TERMINAL} taps in {:?}, {cuts} cuts, \
         {down_ms} ms down",
        started.elapsed()
    );
    assert!(
        cuts >= 2,
        "the network was cut during the run ({cuts} cuts)"
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let acc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let taps = TERMINALS * TAPS_PER_TERMINAL;
    assert_eq!(acc["terminals"], TERMINALS, "{acc}");
    assert_eq!(acc["taps"], taps, "{acc}");
    assert_eq!(acc["refused_taps"], 0, "{acc}");
    assert_eq!(acc["uploaded"], taps, "{acc}");
    assert_eq!(acc["posted"], taps, "{acc}");
    // A resent batch gets the answer stored with its postings: never "duplicate".
    assert_eq!(acc["duplicates"], 0, "{acc}");
    assert_eq!(acc["refused"], 0, "{acc}");
    assert_eq!(acc["pending"], 0, "{acc}");

    // The ledger: every tap once, the merchant owed exactly the fares charged.
    // The run may cross the daily cut-off: the windows of its start and of its end.
    let mut windows = vec![
        p.clearing_calendar().window_of(start_ms).to_string(),
        p.clearing_calendar()
            .window_of(tp.clock.now_ms())
            .to_string(),
    ];
    windows.dedup();
    let mut rows: Vec<store::purchases::PurchaseRow> = Vec::new();
    for window in &windows {
        let mut after = 0;
        loop {
            let page = p
                .store
                .purchases_of_window(window, after, 500)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.id;
            rows.extend(page);
        }
    }
    assert_eq!(rows.len() as u64, taps, "every tap posted");
    let mut keys: Vec<(String, u16)> = rows
        .iter()
        .map(|r| (r.card_number.clone(), r.offline_counter))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len() as u64, taps, "no tap posted twice");
    let mut at: Vec<(String, u32)> = rows
        .iter()
        .map(|r| (r.terminal_id.clone(), r.terminal_serial))
        .collect();
    at.sort();
    at.dedup();
    assert_eq!(at.len() as u64, taps, "one PSAM serial per tap");
    let owed = p
        .store
        .ledger_account(
            &ledger::AccountKey::new(
                ledger::AccountKind::MerchantPayable,
                ledger::Owner::Merchant("sim-bus".into()),
                ledger::Unit::Cny,
            )
            .unwrap(),
        )
        .await
        .unwrap()
        .map_or(0, |a| a.balance);
    assert_eq!(owed, acc["charged_fen"].as_i64().unwrap());
    assert!(owed > 0);
    let check = p.ledger_check().await.unwrap();
    assert!(check.mismatch.is_none(), "{:?}", check.mismatch);

    // The fleet: every terminal, its uploads, nothing waiting.
    let (status, body) = get(&direct, "/api/v1/terminals/fleet", &token).await;
    assert_eq!(status, 200, "{body}");
    let fleet: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        fleet["counts"]["terminals"], TERMINALS,
        "{}",
        fleet["counts"]
    );
    assert_eq!(fleet["counts"]["active"], TERMINALS);
    assert_eq!(fleet["counts"]["records_uploaded"], taps);
    assert_eq!(
        fleet["counts"]["records_pending"],
        0,
        "{:?}",
        fleet["terminals"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["records_pending"] != 0)
            .collect::<Vec<_>>()
    );
    assert_eq!(fleet["counts"]["silent"], 0);
    let terminals = fleet["terminals"].as_array().unwrap();
    assert_eq!(terminals.len() as u64, TERMINALS);
    for t in terminals {
        assert!(t["id"].as_str().unwrap().starts_with("SIM04242-"), "{t}");
        assert_eq!(t["uploaded_records"], TAPS_PER_TERMINAL, "{t}");
        assert_eq!(t["records_pending"], 0, "{t}");
        assert_eq!(t["parameters_version"], fleet["parameters_version"], "{t}");
        assert!(t["alerts"].as_array().unwrap().is_empty(), "{t}");
    }
    let (status, page) = get(&direct, "/console/terminals?lang=en", &token).await;
    assert_eq!(status, 200);
    assert!(page.contains("terminal-SIM04242-00000"), "{page}");
    assert!(page.contains("terminal-SIM04242-00239"));
    assert!(
        page.contains(&format!("id=\"count-terminals\">{TERMINALS}<")),
        "the counts show the fleet"
    );
    assert!(page.contains(&format!("id=\"count-uploaded\">{taps}<")));
    assert!(page.contains("id=\"count-pending\">0<"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_day_every_record_once_sqlite() {
    day(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_day_every_record_once_postgres() {
    day(Backend::Postgres).await;
}
