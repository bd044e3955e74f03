//! `citycard terminal run --config FILE`: the terminal agent (`terminal-agent` crate) as a
//! process — taps from a script, uploads and downloads in the background while the platform is
//! reachable.
//!
//! Taps are driven by a script (`--taps FILE`, JSON lines) rather than a control socket: a
//! script is deterministic, needs no listening port on the terminal, and is safe to replay after
//! a crash — each line's reference is written with its record, so a restarted terminal skips
//! the taps it took already and takes the rest exactly once.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chip::{CardNumber, TerminalId};
use serde::Deserialize;
use terminal_agent::{Agent, Limits, PlatformClient, Ride, TapError, TapRequest};

#[derive(clap::Subcommand)]
pub enum TerminalCommand {
    /// Run a terminal: taps from --taps, uploads and parameter/deny-list downloads whenever
    /// the platform is reachable.
    Run(RunArgs),
    /// Drive many simulated terminals with emulated cards against a running platform
    /// (registered and activated through its API), with a progress bar and a final accounting.
    Simulate(crate::terminal_sim::SimulateArgs),
}

#[derive(clap::Args)]
#[command(after_help = "--config FILE names the terminal's configuration (TOML):

  platform_url = \"http://127.0.0.1:8080\"
  terminal_id = \"BUS-0101\"
  secret_key = \"<64 hex digits: the terminal's SM2 key, activated on the platform>\"
  psam_terminal_id = \"000000000101\"
  data_dir = \"/var/lib/citycard-terminal\"
  card_source = \"emulator\"          # or \"pcsc\"
  # pcsc_reader = \"ACS\"             # part of the reader's name
  # deny_list_key = \"<SEC1 hex>\"    # trust anchor for deny-lists [default: from parameters]
  # ecode_roots = \"roots.pem\"       # e-code root keys
  # fares = \"fares.json\"            # fare tables until the first download
  # queue_max = 100000
  # batch_max = 2000
  [emulator]
  first_sequence = 1000
  cards = 100
  load_fen = 100000

The taps script has one JSON object per line:
  {\"ref\": \"t1\", \"card_index\": 3, \"ride\": {\"bus\": {\"line\": \"B2\"}}, \"at_s\": 1796083200}
  {\"ref\": \"t2\", \"card\": \"4101000000010009\", \"ride\": {\"metro_entry\": {\"station\": \"M1-01\"}}}
  {\"ref\": \"e1\", \"ecode\": \"ZZC1:...\", \"amount_fen\": 300}
at_s defaults to now.")]
pub struct RunArgs {
    /// Taps to take, JSON lines (see above).
    #[arg(long)]
    taps: Option<PathBuf>,
    /// Exit once the script is done and every record is answered by the platform.
    #[arg(long)]
    until_drained: bool,
    /// Between upload rounds, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    upload_interval_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmulatorConfig {
    first_sequence: u32,
    cards: u32,
    #[serde(default = "default_load")]
    load_fen: u32,
}

fn default_load() -> u32 {
    100_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    platform_url: String,
    terminal_id: String,
    secret_key: String,
    psam_terminal_id: String,
    data_dir: PathBuf,
    #[serde(default = "default_source")]
    card_source: String,
    #[serde(default)]
    pcsc_reader: Option<String>,
    #[serde(default)]
    deny_list_key: Option<String>,
    #[serde(default)]
    ecode_roots: Option<PathBuf>,
    #[serde(default)]
    fares: Option<PathBuf>,
    #[serde(default)]
    queue_max: Option<u64>,
    #[serde(default)]
    batch_max: Option<u32>,
    #[serde(default)]
    emulator: Option<EmulatorConfig>,
}

fn default_source() -> String {
    "emulator".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TapLine {
    #[serde(rename = "ref")]
    tap_ref: Option<String>,
    card: Option<String>,
    card_index: Option<u32>,
    ride: Option<Ride>,
    ecode: Option<String>,
    amount_fen: Option<u32>,
    at_s: Option<i64>,
}

/// Longest taps script line.
const TAP_LINE_MAX: usize = 4_096;

fn now_s() -> i64 {
    platform::clock::now_in_city().unix_timestamp()
}

pub fn load_config(path: &Path) -> anyhow::Result<AgentConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the terminal configuration {}", path.display()))?;
    let c: AgentConfig = toml::from_str(&text)
        .with_context(|| format!("terminal configuration {}", path.display()))?;
    if !matches!(c.card_source.as_str(), "emulator" | "pcsc") {
        bail!("card_source must be emulator or pcsc");
    }
    Ok(c)
}

async fn open_agent(c: &AgentConfig) -> anyhow::Result<(Arc<Agent>, PlatformClient)> {
    std::fs::create_dir_all(&c.data_dir)
        .with_context(|| format!("creating {}", c.data_dir.display()))?;
    let psam = TerminalId::parse(&c.psam_terminal_id).context("psam_terminal_id")?;
    let mut limits = Limits::default();
    if let Some(q) = c.queue_max {
        limits.queue_max = q;
    }
    if let Some(b) = c.batch_max {
        limits.batch_max = b;
    }
    let agent = Agent::open(&c.data_dir.join("terminal.sqlite"), psam, limits).await?;
    if let Some(e) = &c.emulator {
        agent
            .emulator_provision(e.first_sequence, e.cards, e.load_fen)
            .await?;
    }
    if let Some(p) = &c.ecode_roots {
        agent
            .set_ecode_roots(&std::fs::read_to_string(p).with_context(|| p.display().to_string())?)
            .await?;
    }
    if let Some(f) = &c.fares
        && agent.parameters_version().await?.is_none()
    {
        let rules: fares::FareRules = serde_json::from_str(
            &std::fs::read_to_string(f).with_context(|| f.display().to_string())?,
        )
        .context("fare tables")?;
        rules.validate()?;
        agent.set_initial_fares(rules).await?;
    }
    let key = crypto::Key32::from_hex(c.secret_key.trim()).context("secret_key: 64 hex digits")?;
    let key = crypto::Sm2SigningKey::from_secret(&key).context("secret_key")?;
    let client = PlatformClient::new(&c.platform_url, &c.terminal_id, key)?;
    Ok((Arc::new(agent), client))
}

/// A tap of the card on the PC/SC reader (waiting up to 30 s for it).
#[cfg(feature = "pcsc")]
async fn pcsc_tap(
    agent: &Agent,
    reader: Option<String>,
    req: &TapRequest,
) -> anyhow::Result<Result<terminal_agent::TapDone, TapError>> {
    let mut ch = tokio::task::spawn_blocking(move || {
        pcsc_link::PcscChannel::connect(reader.as_deref(), 30_000)
    })
    .await??;
    Ok(agent.tap_channel(&mut ch, req).await)
}

#[cfg(not(feature = "pcsc"))]
async fn pcsc_tap(
    _agent: &Agent,
    _reader: Option<String>,
    _req: &TapRequest,
) -> anyhow::Result<Result<terminal_agent::TapDone, TapError>> {
    bail!(
        "card_source = \"pcsc\" needs a build with the pcsc feature (cargo build --features pcsc)"
    )
}

/// `citycard terminal …`: logs to stderr (`CITYCARD_LOG`), runs, answers the exit code.
pub async fn main(cmd: TerminalCommand, config: Option<PathBuf>) -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CITYCARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let TerminalCommand::Simulate(a) = cmd {
        return match crate::terminal_sim::main(a).await {
            Ok(true) => std::process::ExitCode::SUCCESS,
            Ok(false) => std::process::ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::from(2)
            }
        };
    }
    match run(cmd, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the terminal.
pub async fn run(cmd: TerminalCommand, config: Option<PathBuf>) -> anyhow::Result<()> {
    let TerminalCommand::Run(args) = cmd else {
        bail!("citycard terminal simulate runs from main");
    };
    let config = config.context("citycard terminal run needs --config FILE")?;
    let c = load_config(&config)?;
    let (agent, client) = open_agent(&c).await?;
    let client = Arc::new(client);
    let deny_key = c.deny_list_key.clone();
    let interval = Duration::from_millis(args.upload_interval_ms.clamp(10, 600_000));
    let background = {
        let (agent, client) = (agent.clone(), client.clone());
        tokio::spawn(async move {
            loop {
                if let Err(e) = agent.sync(&client, deny_key.as_deref()).await {
                    tracing::warn!(error = %e, "parameter download");
                }
                match agent.upload_once(&client).await {
                    Ok(r) if r.batches > 0 => {
                        tracing::info!(
                            batches = r.batches,
                            accepted = r.accepted,
                            refused = r.refused,
                            "uploaded"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "upload"),
                }
                tokio::time::sleep(interval).await;
            }
        })
    };
    let (mut taken, mut skipped, mut refused) = (0u64, 0u64, 0u64);
    if let Some(path) = &args.taps {
        let cards = agent.emulated_cards().await?;
        let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            if line.len() > TAP_LINE_MAX {
                bail!("taps line {}: longer than {TAP_LINE_MAX} bytes", i + 1);
            }
            let t: TapLine =
                serde_json::from_str(&line).with_context(|| format!("taps line {}", i + 1))?;
            let tap_ref = t
                .tap_ref
                .clone()
                .unwrap_or_else(|| format!("line:{}", i + 1));
            let at_s = t.at_s.unwrap_or_else(now_s);
            let result = if let Some(text) = &t.ecode {
                agent
                    .tap_ecode(text, t.amount_fen.unwrap_or(0), Some(&tap_ref), at_s)
                    .await
            } else {
                let ride = t
                    .ride
                    .clone()
                    .with_context(|| format!("taps line {}: a ride or an ecode", i + 1))?;
                let req = TapRequest {
                    tap_ref: Some(tap_ref.clone()),
                    ride,
                    at_s,
                };
                if c.card_source == "pcsc" {
                    pcsc_tap(&agent, c.pcsc_reader.clone(), &req).await?
                } else {
                    let number = match (&t.card, t.card_index) {
                        (Some(n), _) => CardNumber::parse(n)
                            .with_context(|| format!("taps line {}: card", i + 1))?,
                        (None, Some(k)) => *cards.get(k as usize).with_context(|| {
                            format!("taps line {}: no emulated card {k}", i + 1)
                        })?,
                        (None, None) => bail!("taps line {}: card or card_index", i + 1),
                    };
                    agent.tap_emulated(number, &req).await
                }
            };
            match result {
                Ok(d) if d.already => skipped += 1,
                Ok(_) => taken += 1,
                Err(TapError::QueueFull { max }) => {
                    bail!(
                        "taps line {}: the offline queue is full ({max} records)",
                        i + 1
                    )
                }
                Err(e) => {
                    refused += 1;
                    tracing::warn!(line = i + 1, error = %e, "tap refused");
                }
            }
        }
    }
    if args.until_drained {
        while agent.pending() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        background.abort();
        let counts = agent.counts().await?;
        println!(
            "{}",
            serde_json::json!({
                "taken": taken, "skipped": skipped, "refused_taps": refused,
                "accepted": counts.accepted, "refused": counts.refused,
                "queued": counts.queued, "batched": counts.batched,
            })
        );
        return Ok(());
    }
    tokio::signal::ctrl_c().await?;
    background.abort();
    Ok(())
}
