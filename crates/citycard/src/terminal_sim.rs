//! `citycard terminal simulate`: many simulated bus validators against a running platform —
//! the load generator of the terminal network (issue 6, item 8) and its demo.
//!
//! Each simulated terminal is registered (with its PSAM's terminal id) and activated over the
//! platform's HTTP API like a real one, then runs as a real `terminal_agent::Agent` with its own
//! SQLite store: taps are written durably before they count, uploads are signed batches resent
//! under the same id until answered, parameters and the deny-list are downloaded. The cards are
//! one city's emulated cards (`chip::fleet`, development key set) shared by every terminal, so a
//! card rides many buses. A platform that cannot be reached (network cut, restarted) only delays
//! the uploads: the simulation keeps tapping offline and drains the queues when it comes back,
//! until `--timeout-s`.
//!
//! The final accounting counts what the terminals hold: taps taken, records answered by the
//! platform (posted, duplicate, refused) and records still pending.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chip::{BcdDate, BcdTime, Card, TerminalId};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use terminal_agent::{Agent, Limits, PlatformClient, Ride, TapError, TapRequest};

/// Simulated terminals per run, at most.
pub const TERMINALS_MAX: u32 = 20_000;
/// Taps per terminal, at most.
pub const TAPS_PER_TERMINAL_MAX: u32 = 10_000;
/// Emulated cards per run, at most (card sequences are reserved per run).
pub const CARDS_MAX: u32 = 5_000;
/// What every card is loaded with (the purse cap).
const CARD_LOAD_FEN: u32 = 100_000;
/// The dearest bus fare of the default tables, for the balance check.
const FARE_MAX_FEN: u32 = 200;
/// The bus lines the simulated validators serve, in turn (B1 and B32 at the default fare).
const LINES: [&str; 4] = ["B1", "B2", "B906", "B32"];

#[derive(clap::Args, Clone)]
pub struct SimulateArgs {
    /// The platform's base URL.
    #[arg(
        long,
        alias = "url",
        env = "CITYCARD_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// An administrator's API token (`citycard admin token`): registers the terminals.
    #[arg(long, env = "CITYCARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Simulated terminals.
    #[arg(long, default_value_t = 10)]
    pub terminals: u32,
    /// Taps each terminal takes.
    #[arg(long, default_value_t = 20)]
    pub taps_per_terminal: u32,
    /// The merchant (transit operator) the terminals belong to; created when missing.
    #[arg(long, default_value = "sim-bus")]
    pub merchant: String,
    /// Emulated cards shared by the terminals [default: one per ~8 taps, at most 5,000].
    #[arg(long)]
    pub cards: Option<u32>,
    /// This run's number (0–65535): names the terminals (`SIM{run}-{k}`), their PSAMs and the
    /// cards, so runs against one platform do not collide [default: random].
    #[arg(long)]
    pub run: Option<u16>,
    /// Terminals tapping or uploading at the same moment, at most.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Records per upload batch.
    #[arg(long, default_value_t = 5)]
    pub batch_max: u32,
    /// A terminal tries to upload after every this many taps (and drains at the end).
    #[arg(long, default_value_t = 4)]
    pub upload_every: u32,
    /// Pause between two taps of a terminal, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub tap_interval_ms: u64,
    /// Give up draining the queues after this many seconds (the accounting then shows pending).
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
    /// Keep the terminals' stores here [default: a temporary directory, removed at the end].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Print the accounting as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What the simulation did, counted from the terminals' own stores.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Accounting {
    pub run: u16,
    pub terminals: u64,
    /// Taps taken (records written).
    pub taps: u64,
    /// Taps the terminal refused (insufficient balance, a deny-listed card, a full queue).
    pub refused_taps: u64,
    /// Fares charged on the cards, in fen.
    pub charged_fen: u64,
    /// Records the platform answered.
    pub uploaded: u64,
    pub posted: u64,
    pub duplicates: u64,
    /// Records the platform refused (bad TAC, malformed, …).
    pub refused: u64,
    /// Records still waiting in the terminals (the platform never answered them).
    pub pending: u64,
    pub elapsed_ms: u64,
}

struct Admin {
    base: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A transport failure (retried) or an answer.
enum Call {
    Unreachable(String),
    Answer(u16, Value),
}

impl Admin {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Call> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.filter(|b| !b.is_null())
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
            )))?;
        let sent = tokio::time::timeout(Duration::from_secs(30), async {
            let resp = self.client.request(req).await?;
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, bytes))
        })
        .await;
        Ok(match sent {
            Ok(Ok((status, bytes))) => Call::Answer(
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ),
            Ok(Err(e)) => Call::Unreachable(e.to_string()),
            Err(_) => Call::Unreachable("no answer within 30 s".into()),
        })
    }

    /// Calls until the platform answers (transport failures retried with backoff until
    /// `deadline`). `retried` tells whether an earlier attempt may have reached it.
    async fn answer(
        &self,
        method: &str,
        path: &str,
        body: Value,
        deadline: Instant,
    ) -> anyhow::Result<(u16, Value, bool)> {
        let mut pause = Duration::from_millis(50);
        let mut retried = false;
        loop {
            match self.call(method, path, Some(body.clone())).await? {
                Call::Answer(status, v) => return Ok((status, v, retried)),
                Call::Unreachable(e) => {
                    if Instant::now() + pause > deadline {
                        bail!("{method} {path}: the platform stayed unreachable: {e}");
                    }
                    retried = true;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

fn detail(v: &Value) -> String {
    v["detail"].as_str().unwrap_or("").to_string()
}

/// One simulated terminal.
struct Sim {
    id: String,
    line: &'static str,
    agent: Agent,
    client: PlatformClient,
}

/// xorshift64*: which card taps where (seeded from the run, so a run is repeatable).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn now_s() -> i64 {
    platform::clock::now_in_city().unix_timestamp()
}

/// The PSAM terminal id of terminal `k` of `run`: `5E`, the run, the terminal.
fn psam_of(run: u16, k: u32) -> TerminalId {
    let [r1, r0] = run.to_be_bytes();
    let [_, k2, k1, k0] = k.to_be_bytes();
    TerminalId([0x5E, r1, r0, k2, k1, k0])
}

/// Registers terminal `k` for the merchant with its PSAM, activates it with a fresh key, and
/// opens its agent.
async fn setup(
    admin: &Admin,
    a: &SimulateArgs,
    run: u16,
    k: u32,
    dir: &std::path::Path,
    deadline: Instant,
) -> anyhow::Result<Sim> {
    let id = format!("SIM{run:05}-{k:05}");
    let psam = psam_of(run, k);
    let line = LINES[k as usize % LINES.len()];
    let (status, v, retried) = admin
        .answer(
            "POST",
            "/api/v1/terminals",
            json!({"id": id, "merchant": a.merchant, "kind": "validator", "site": line,
                   "psam_terminal_id": psam.to_string()}),
            deadline,
        )
        .await?;
    if status == 409 && retried {
        bail!(
            "terminal {id}: registered, but the answer (its activation code) was lost on the way; \
             run again with another --run"
        );
    }
    if status != 201 {
        bail!("registering {id}: HTTP {status} {}", detail(&v));
    }
    let code = v["activation_code"]
        .as_str()
        .context("no activation code in the answer")?
        .to_string();
    let key = loop {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        if let Ok(k) = crypto::Sm2SigningKey::from_secret(&crypto::Key32::from_bytes(secret)) {
            break k;
        }
    };
    let (status, v, retried) = admin
        .answer(
            "POST",
            "/api/v1/terminal/activation",
            json!({"id": id, "activation_code": code,
                   "public_key": hex::encode_upper(key.public_key().to_compressed()),
                   "software_version": "simulator-1"}),
            deadline,
        )
        .await?;
    // A lost answer to an activation that went through: the code is spent, the key is ours.
    if status != 200 && !(status == 403 && retried) {
        bail!("activating {id}: HTTP {status} {}", detail(&v));
    }
    let agent = Agent::open(
        &dir.join(format!("{id}.sqlite")),
        psam,
        Limits {
            batch_max: a.batch_max,
            ..Limits::default()
        },
    )
    .await?;
    let client = PlatformClient::new(&admin.base, &id, key)?;
    Ok(Sim {
        id,
        line,
        agent,
        client,
    })
}

/// Shared counters of the run (progress and the taps' side of the accounting).
#[derive(Default)]
struct Tally {
    taps: AtomicU64,
    refused_taps: AtomicU64,
    charged_fen: AtomicU64,
}

/// Answered records of an agent now.
async fn answered(agent: &Agent) -> u64 {
    agent
        .counts()
        .await
        .map(|c| c.accepted + c.refused)
        .unwrap_or(0)
}

/// One upload attempt: with `sync`, parameters first (they carry the pending count the fleet
/// page shows), then the queue. Failures are the network's: the records wait.
async fn upload_round(s: &Sim, answered_bar: &indicatif::ProgressBar, sync: bool) -> bool {
    let before = answered(&s.agent).await;
    if sync && let Err(e) = s.agent.sync(&s.client, None).await {
        tracing::debug!(terminal = %s.id, error = %e, "parameters");
    }
    let ok = match s.agent.upload_once(&s.client).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(terminal = %s.id, error = %e, "upload");
            false
        }
    };
    answered_bar.inc(answered(&s.agent).await.saturating_sub(before));
    ok
}

/// Runs the simulation; the accounting at the end.
pub async fn simulate(a: SimulateArgs) -> anyhow::Result<Accounting> {
    if a.terminals == 0 || a.terminals > TERMINALS_MAX {
        bail!("--terminals must be 1 to {TERMINALS_MAX}");
    }
    if a.taps_per_terminal == 0 || a.taps_per_terminal > TAPS_PER_TERMINAL_MAX {
        bail!("--taps-per-terminal must be 1 to {TAPS_PER_TERMINAL_MAX}");
    }
    if a.batch_max == 0 || a.batch_max > terminal_agent::BATCH_MAX_LIMIT {
        bail!(
            "--batch-max must be 1 to {}",
            terminal_agent::BATCH_MAX_LIMIT
        );
    }
    if a.concurrency == 0 || a.upload_every == 0 {
        bail!("--concurrency and --upload-every must be positive");
    }
    let total_taps = u64::from(a.terminals) * u64::from(a.taps_per_terminal);
    let cards = a
        .cards
        .unwrap_or_else(|| (total_taps / 8).clamp(10, u64::from(CARDS_MAX)) as u32);
    if cards == 0 || cards > CARDS_MAX {
        bail!("--cards must be 1 to {CARDS_MAX}");
    }
    if total_taps * u64::from(FARE_MAX_FEN) > u64::from(cards) * u64::from(CARD_LOAD_FEN) / 2 {
        bail!("too many taps for {cards} cards of 1,000 yuan: give more --cards");
    }
    let run = match a.run {
        Some(r) => r,
        None => {
            let mut b = [0u8; 2];
            getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
            u16::from_be_bytes(b)
        }
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.timeout_s.max(1));
    let base = a.server.trim_end_matches('/').to_string();
    let admin = Arc::new(Admin {
        base: base.clone(),
        token: a.token.clone(),
        client: Client::builder(TokioExecutor::new()).build_http(),
    });

    // The merchant, created when missing.
    let (status, v, _) = admin
        .answer("GET", "/api/v1/merchants", Value::Null, deadline)
        .await?;
    if status != 200 {
        bail!("listing merchants: HTTP {status} {}", detail(&v));
    }
    let known = v
        .as_array()
        .is_some_and(|ms| ms.iter().any(|m| m["code"] == a.merchant.as_str()));
    if !known {
        let (status, v, retried) = admin
            .answer(
                "POST",
                "/api/v1/merchants",
                json!({"code": a.merchant, "name": "模拟公交 simulated buses",
                       "category": "transit", "settlement_account": "41050100000099"}),
                deadline,
            )
            .await?;
        if status != 201 && !(status == 409 && retried) {
            bail!(
                "creating merchant {}: HTTP {status} {}",
                a.merchant,
                detail(&v)
            );
        }
    }

    // The city's cards: personalized and loaded once (not timed as taps).
    let first_sequence = 500_000_000 + u32::from(run) * CARDS_MAX;
    let city_cards: Vec<Card> = tokio::task::spawn_blocking(move || {
        let date = BcdDate::new(2026, 1, 1)?;
        let time = BcdTime::new(6, 0, 0)?;
        let mut fleet = chip::fleet::Fleet::new(
            first_sequence,
            cards,
            crypto::Algorithm::Sm4,
            TerminalId([0, 0, 0, 0, 0, 1]),
        );
        for c in 0..fleet.len() {
            fleet.load(c, CARD_LOAD_FEN, date, time)?;
        }
        Ok::<_, anyhow::Error>(fleet.into_cards())
    })
    .await??;
    let city_cards: Arc<Vec<tokio::sync::Mutex<Card>>> = Arc::new(
        city_cards
            .into_iter()
            .map(tokio::sync::Mutex::new)
            .collect(),
    );

    let temp;
    let dir = match &a.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };

    let bars = indicatif::MultiProgress::new();
    let setup_bar = bars.add(crate::bar(u64::from(a.terminals), "terminals"));
    let tap_bar = bars.add(crate::bar(total_taps, "taps"));
    let answered_bar = bars.add(crate::bar(total_taps, "answered"));
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let tally = Arc::new(Tally::default());

    // Setup: every terminal registered and activated (bounded concurrency).
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..a.terminals {
        let (admin, a2, dir, sem, bar) = (
            admin.clone(),
            a.clone(),
            dir.clone(),
            sem.clone(),
            setup_bar.clone(),
        );
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            let s = setup(&admin, &a2, run, k, &dir, deadline).await?;
            bar.inc(1);
            Ok::<_, anyhow::Error>((k, s))
        });
    }
    let mut sims: Vec<Option<Sim>> = (0..a.terminals).map(|_| None).collect();
    while let Some(r) = tasks.join_next().await {
        let (k, s) = r??;
        sims[k as usize] = Some(s);
    }
    let sims: Vec<Arc<Sim>> = sims
        .into_iter()
        .map(|s| Arc::new(s.expect("every terminal set up")))
        .collect();
    setup_bar.finish();

    // The day: every terminal taps and uploads on its own; an unreachable platform only delays.
    let mut tasks = tokio::task::JoinSet::new();
    for (k, s) in sims.iter().enumerate() {
        let (s, sem, tally, cards) = (s.clone(), sem.clone(), tally.clone(), city_cards.clone());
        let (tap_bar, answered_bar) = (tap_bar.clone(), answered_bar.clone());
        let (m, every, pause) = (a.taps_per_terminal, a.upload_every, a.tap_interval_ms);
        tasks.spawn(async move {
            let mut rng = Rng((u64::from(run) << 32 | k as u64).wrapping_mul(0x9E37_79B9) | 1);
            {
                let _permit = sem.acquire().await?;
                upload_round(&s, &answered_bar, true).await;
            }
            for j in 0..m {
                {
                    let _permit = sem.acquire().await?;
                    let c = rng.below(cards.len() as u64) as usize;
                    let mut card = cards[c].lock().await;
                    let req = TapRequest {
                        tap_ref: Some(format!("sim:{j}")),
                        ride: Ride::Bus {
                            line: s.line.to_string(),
                        },
                        at_s: now_s(),
                    };
                    match s.agent.tap_channel(&mut *card, &req).await {
                        Ok(done) => {
                            tally.taps.fetch_add(1, Ordering::Relaxed);
                            tally
                                .charged_fen
                                .fetch_add(u64::from(done.charged_fen), Ordering::Relaxed);
                        }
                        Err(TapError::Agent(e)) => return Err(anyhow::Error::from(e)),
                        Err(e) => {
                            tracing::debug!(terminal = %s.id, error = %e, "tap refused");
                            tally.refused_taps.fetch_add(1, Ordering::Relaxed);
                            answered_bar.inc(1);
                        }
                    }
                    drop(card);
                    tap_bar.inc(1);
                    if (j + 1) % every == 0 {
                        upload_round(&s, &answered_bar, false).await;
                    }
                }
                if pause > 0 {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
            // Drain: keep trying until the queue is empty (or the run's deadline).
            let mut backoff = Duration::from_millis(50);
            let mut round = 0u32;
            loop {
                let ok = {
                    let _permit = sem.acquire().await?;
                    // Parameters now and then: a terminal says how it stands.
                    upload_round(&s, &answered_bar, round.is_multiple_of(8)).await
                };
                round += 1;
                if ok && s.agent.pending() == 0 {
                    // The last word: parameters once more, so the fleet page shows nothing
                    // pending.
                    // A report states what the terminal held before the answer: until an
                    // answer says "unchanged", the platform has not heard the version it holds.
                    let mut pause = Duration::from_millis(50);
                    loop {
                        match s.agent.sync(&s.client, None).await {
                            Ok(r) if !r.parameters_changed => break,
                            Ok(_) => continue,
                            Err(_) if Instant::now() + pause < deadline => {
                                tokio::time::sleep(pause).await;
                                pause = (pause * 2).min(Duration::from_secs(1));
                            }
                            Err(_) => break,
                        }
                    }
                    break;
                }
                if Instant::now() + backoff > deadline {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = if ok {
                    Duration::from_millis(50)
                } else {
                    (backoff * 2).min(Duration::from_secs(1))
                };
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    tap_bar.finish();
    answered_bar.finish();

    let mut acc = Accounting {
        run,
        terminals: sims.len() as u64,
        taps: tally.taps.load(Ordering::Relaxed),
        refused_taps: tally.refused_taps.load(Ordering::Relaxed),
        charged_fen: tally.charged_fen.load(Ordering::Relaxed),
        ..Accounting::default()
    };
    for s in &sims {
        let c = s.agent.counts().await?;
        acc.pending += c.queued + c.batched;
        for (result, n) in s.agent.result_counts().await? {
            acc.uploaded += n;
            match result.as_str() {
                "posted" => acc.posted += n,
                "duplicate" => acc.duplicates += n,
                _ => acc.refused += n,
            }
        }
    }
    acc.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(acc)
}

/// `citycard terminal simulate`: runs, prints the accounting, exit 1 when records are pending
/// or were refused.
pub async fn main(a: SimulateArgs) -> anyhow::Result<bool> {
    let json = a.json;
    let acc = simulate(a).await?;
    if json {
        println!("{}", serde_json::to_string(&acc)?);
    } else {
        let s = acc.elapsed_ms as f64 / 1e3;
        println!("run {}: {} terminals in {s:.1} s", acc.run, acc.terminals);
        println!(
            "taps           {:>10}   ({} refused at the terminal, {:.2} yuan charged)",
            acc.taps,
            acc.refused_taps,
            acc.charged_fen as f64 / 100.0
        );
        println!(
            "uploaded       {:>10}   answered by the platform",
            acc.uploaded
        );
        println!("  posted       {:>10}", acc.posted);
        println!("  duplicates   {:>10}", acc.duplicates);
        println!("  refused      {:>10}", acc.refused);
        println!(
            "pending        {:>10}   still in the terminals",
            acc.pending
        );
        if s > 0.0 {
            println!(
                "throughput     {:>10.0}   records answered per second",
                acc.uploaded as f64 / s
            );
        }
    }
    Ok(acc.pending == 0 && acc.refused == 0 && acc.uploaded == acc.taps)
}
