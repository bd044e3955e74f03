//! `citycard ecode`: the phone side (device file, certificate request, codes as text and QR),
//! the terminal side (offline verification against a roots PEM), and the operator side (enrol
//! a phone, certify it, root keys) on the data directory or a running server.

use crate::config::Config;
use anyhow::{Context, bail};
use ecode::qr::QrSymbol;
use ecode::{
    CardNumber, Certificate, Code, DeviceId, Phone, Purpose, RootKeys, Verifier, VerifierConfig,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use platform::Caller;
use platform::clock::{Clock, SystemClock};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Pixels per QR module in the PNG: 4 px makes a 228-pixel symbol of version 10 with its quiet
/// zone, a phone-screen size that a camera decodes at arm's length.
const PNG_MODULE_PX: u32 = 4;

#[derive(clap::Subcommand)]
pub enum EcodeCommand {
    /// The phone's device file: a new SM2 key pair (the private key stays in the file).
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Enrol the device file's phone on a card (an operator, for the holder).
    Enrol {
        #[arg(long)]
        card_no: String,
        #[arg(long)]
        device: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Request a certificate for the device file's phone and store it in the file: on the data
    /// directory (an operator issuing it), or from a running server with --server.
    #[command(alias = "cert")]
    Certify {
        /// The card; taken from the current certificate when omitted.
        #[arg(long)]
        card_no: Option<String>,
        #[arg(long)]
        device: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print a fresh ZZC1: text from the device file (and count its sequence in the file).
    Text {
        #[arg(long)]
        device: PathBuf,
        /// The phone clock, unix seconds [default: now].
        #[arg(long)]
        now: Option<u32>,
    },
    /// Make a fresh code and draw it as a QR symbol (error-correction level M).
    Show {
        #[arg(long)]
        device: PathBuf,
        #[arg(long)]
        png: Option<PathBuf>,
        #[arg(long)]
        svg: Option<PathBuf>,
        #[arg(long)]
        now: Option<u32>,
    },
    /// Verify a code offline as a terminal would; exit 0 when accepted, 1 when refused.
    Verify {
        /// The root public keys (PEM with `# key-id:` lines).
        #[arg(long)]
        roots: PathBuf,
        /// The code's ZZC1: text.
        #[arg(long, required_unless_present = "image", conflicts_with = "image")]
        text: Option<String>,
        /// A PNG photo or screenshot of the code, read as a gate's scanner reads a frame.
        #[arg(long)]
        image: Option<PathBuf>,
        /// The terminal clock, unix seconds [default: now].
        #[arg(long)]
        now: Option<u32>,
        /// A payment of this many fen (the purpose becomes pay).
        #[arg(long)]
        amount: Option<u32>,
        /// transit or identity, when not paying [default: transit].
        #[arg(long, default_value = "transit")]
        purpose: String,
    },
    /// The phones enrolled on a card.
    Devices {
        #[arg(long)]
        card_no: String,
    },
    /// Revoke a phone's enrolment (reason: holder_request, device_lost, fraud).
    Revoke {
        /// The enrolment's id (see `ecode devices`).
        #[arg(long)]
        id: i64,
        #[arg(long, default_value = "holder_request")]
        reason: String,
    },
    /// The platform's SM2 root keys; `ecode roots --out ROOTS.pem` writes the public roots
    /// for terminals (the same as `ecode roots export --out`).
    Roots(RootsArgs),
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RootsArgs {
    #[command(subcommand)]
    command: Option<RootsCommand>,
    /// Write the public roots as PEM (`# key-id: N` + PUBLIC KEY blocks).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum DeviceCommand {
    /// A new device file with a fresh key and no certificate.
    New {
        #[arg(long)]
        out: PathBuf,
        /// The app's installation id [default: random].
        #[arg(long)]
        device_id: Option<String>,
    },
}

#[derive(clap::Subcommand)]
pub enum RootsCommand {
    /// Every root key with its state.
    List,
    /// A new root key in the key store (current if none is, else standby).
    Generate,
    /// Make a standby key current; the current one retires (still verifies).
    Rotate {
        #[arg(long)]
        key_id: u32,
    },
    /// Withdraw a key: refused from now on.
    Withdraw {
        #[arg(long)]
        key_id: u32,
    },
    /// Write the public roots for terminals as PEM (`# key-id: N` + PUBLIC KEY blocks).
    Export {
        #[arg(long)]
        out: PathBuf,
    },
}

/// A running server to talk to instead of the data directory.
#[derive(clap::Args)]
pub struct Remote {
    /// The platform's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    server: Option<String>,
    /// An API token of a counter clerk or administrator (until citizens sign in).
    #[arg(long, env = "CITYCARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

fn now_s() -> anyhow::Result<u32> {
    u32::try_from(SystemClock.now_ms().div_euclid(1000)).context("clock outside the e-code range")
}

pub(crate) fn random_secret() -> anyhow::Result<crypto::Key32> {
    // A random 256-bit value is a valid scalar except with negligible probability.
    for _ in 0..8 {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|_| anyhow::anyhow!("the system random source failed"))?;
        let k = crypto::Key32::from_bytes(b);
        if crypto::Sm2SigningKey::from_secret(&k).is_ok() {
            return Ok(k);
        }
    }
    bail!("no valid SM2 key from the random source")
}

fn load_phone(path: &Path) -> anyhow::Result<Phone> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a device file", path.display()))
}

/// Writes the device file readable by its owner only, through a temporary file and a rename
/// so that a crash never leaves half a file (the sequence must never go back).
fn save_phone(path: &Path, phone: &Phone) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(phone)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, json.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn make_code(device: &Path, now: Option<u32>) -> anyhow::Result<Code> {
    let mut phone = load_phone(device)?;
    let now = match now {
        Some(n) => n,
        None => now_s()?,
    };
    let code = phone.make_code(now)?;
    save_phone(device, &phone)?;
    Ok(code)
}

async fn post_json(
    remote: &Remote,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let server = remote.server.as_deref().context("--server is needed")?;
    let token = remote
        .token
        .as_deref()
        .context("--token (or CITYCARD_TOKEN) is needed with --server")?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri = format!("{}{path}", server.trim_end_matches('/'));
    let req = hyper::Request::post(&uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("POST {uri}"))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        let detail = value
            .get("detail")
            .and_then(|d| d.as_str())
            .unwrap_or("(no detail)");
        bail!("the server refused ({status}): {detail}");
    }
    Ok(value)
}

pub async fn run(command: EcodeCommand, cfg: &Config) -> anyhow::Result<ExitCode> {
    match command {
        EcodeCommand::Device(DeviceCommand::New { out, device_id }) => {
            if out.exists() {
                bail!(
                    "{} exists: a device file is never overwritten",
                    out.display()
                );
            }
            let id = match device_id {
                Some(id) => id,
                None => format!("cli-{}", hex::encode(crate_random::<6>()?)),
            };
            let id = DeviceId::parse(&id)?;
            let phone = Phone::new(id, &random_secret()?)?;
            save_phone(&out, &phone)?;
            println!(
                "device {} public key {}",
                phone.device_id(),
                hex::encode_upper(phone.public_key().to_compressed())
            );
        }
        EcodeCommand::Enrol {
            card_no,
            device,
            remote,
        } => {
            let phone = load_phone(&device)?;
            let key = hex::encode_upper(phone.public_key().to_compressed());
            if remote.server.is_some() {
                let v = post_json(
                    &remote,
                    &format!("/api/v1/cards/{card_no}/devices"),
                    serde_json::json!({"device_id": phone.device_id().as_str(), "public_key": key}),
                )
                .await?;
                println!("enrolled: {v}");
            } else {
                let p = crate::open(cfg).await?;
                let v = p
                    .ecode_device_bind(
                        &Caller::cli("ecode-enrol"),
                        &card_no,
                        phone.device_id().as_str(),
                        &phone.public_key().to_compressed(),
                    )
                    .await?;
                println!(
                    "enrolment {} of device {} on card {}",
                    v.id, v.device_id, v.card_number
                );
            }
        }
        EcodeCommand::Certify {
            card_no,
            device,
            remote,
        } => {
            let mut phone = load_phone(&device)?;
            let card = match (&card_no, phone.certificate()) {
                (Some(n), _) => CardNumber::parse(n)?,
                (None, Some(c)) => c.card_number(),
                (None, None) => bail!("--card-no is needed for a first certificate"),
            };
            let request = phone.certificate_request(card, now_s()?);
            let certificate = if remote.server.is_some() {
                let v = post_json(
                    &remote,
                    "/api/v1/ecode/certificates",
                    serde_json::json!({
                        "card_number": card.to_string(),
                        "device_id": request.device_id.as_str(),
                        "public_key": hex::encode_upper(request.device_public_key.to_compressed()),
                        "time": request.time,
                        "signature": hex::encode_upper(request.signature),
                    }),
                )
                .await?;
                let hex_text = v
                    .get("certificate")
                    .and_then(|c| c.as_str())
                    .context("the server's answer has no certificate")?;
                Certificate::parse(&hex::decode(hex_text)?)?
            } else {
                // An operator at the data directory issues the certificate for the holder, so
                // the phone is enrolled on the card first when it is not yet (the platform
                // refuses both for a card that may not have an e-code).
                let p = crate::open(cfg).await?;
                let caller = Caller::cli("ecode-certify");
                let number = card.to_string();
                let key = request.device_public_key.to_compressed();
                let enrolled = p.ecode_devices(&caller, &number).await?.iter().any(|d| {
                    d.device_id == request.device_id.as_str()
                        && d.state == store::DEVICE_ACTIVE
                        && d.public_key.eq_ignore_ascii_case(&hex::encode(key))
                });
                if !enrolled {
                    let v = p
                        .ecode_device_bind(&caller, &number, request.device_id.as_str(), &key)
                        .await?;
                    println!("enrolled device {} on card {}", v.device_id, v.card_number);
                }
                p.ecode_certify(&caller, &request).await?.certificate
            };
            phone.install_certificate(certificate)?;
            save_phone(&device, &phone)?;
            let cert = phone.certificate().context("installed")?;
            let f = cert.fields();
            println!(
                "certificate for card {} under root {}: valid {}..{}, offline limit {} fen, {:?}",
                f.card_number,
                cert.root_key_id(),
                f.not_before,
                f.not_after,
                f.offline_limit_fen,
                f.uses
            );
        }
        EcodeCommand::Text { device, now } => {
            println!("{}", make_code(&device, now)?.to_text());
        }
        EcodeCommand::Show {
            device,
            png,
            svg,
            now,
        } => {
            if png.is_none() && svg.is_none() {
                bail!("say where to draw the symbol: --png FILE and/or --svg FILE");
            }
            let text = make_code(&device, now)?.to_text();
            let symbol = QrSymbol::encode(&text)?;
            if let Some(path) = &png {
                std::fs::write(path, symbol.to_png(PNG_MODULE_PX)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &svg {
                std::fs::write(path, symbol.to_svg(PNG_MODULE_PX)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!(
                "QR version {} level {}, {} modules",
                symbol.version(),
                symbol.ec_level(),
                symbol.width()
            );
            println!("{text}");
        }
        EcodeCommand::Verify {
            roots,
            text,
            image,
            now,
            amount,
            purpose,
        } => {
            let text = match (text, image) {
                (Some(text), _) => text,
                (None, Some(path)) => {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let scanned = ecode::scan::frame_from_png(&bytes).and_then(|(w, h, px)| {
                        ecode::scan::read_frame(ecode::scan::GrayFrame {
                            width: w,
                            height: h,
                            pixels: &px,
                        })
                    });
                    match scanned {
                        Ok(text) => text,
                        Err(e) => {
                            println!("refused: {} (scan): {e}", e.code());
                            return Ok(ExitCode::from(1));
                        }
                    }
                }
                (None, None) => bail!("give the code as --text ZZC1:… or --image FILE.png"),
            };
            let pem = std::fs::read_to_string(&roots)
                .with_context(|| format!("reading {}", roots.display()))?;
            let keys = RootKeys::from_pem(&pem)?;
            let mut verifier = Verifier::new(keys, VerifierConfig::default())?;
            let purpose = match (amount, purpose.as_str()) {
                (Some(amount_fen), _) => Purpose::Pay { amount_fen },
                (None, "transit") => Purpose::Transit,
                (None, "identity") => Purpose::Identity,
                (None, other) => bail!("--purpose {other:?}: transit or identity (or --amount)"),
            };
            let now = match now {
                Some(n) => n,
                None => now_s()?,
            };
            return Ok(match verifier.verify_text(text.trim(), now, purpose) {
                Ok(a) => {
                    println!(
                        "accepted: card {} root {} sequence {}{}",
                        a.card_number,
                        a.root_key_id,
                        a.sequence,
                        a.offline_remaining_fen
                            .map(|r| format!(", {r} fen left offline"))
                            .unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Err(r) => {
                    println!("refused: {} (check {}): {r}", r.code(), r.step());
                    ExitCode::from(1)
                }
            });
        }
        EcodeCommand::Devices { card_no } => {
            let p = crate::open(cfg).await?;
            for d in p.ecode_devices(&Caller::cli("ecode"), &card_no).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    d.id,
                    d.device_id,
                    d.state,
                    d.revoked_reason.as_deref().unwrap_or("-"),
                    d.public_key
                );
            }
        }
        EcodeCommand::Revoke { id, reason } => {
            let p = crate::open(cfg).await?;
            let d = p
                .ecode_device_revoke(&Caller::cli("ecode-revoke"), id, &reason)
                .await?;
            println!("enrolment {} of card {} revoked", d.id, d.card_number);
        }
        EcodeCommand::Roots(RootsArgs { command, out }) => {
            let r = match (command, out) {
                (Some(c), _) => c,
                (None, Some(out)) => RootsCommand::Export { out },
                (None, None) => bail!(
                    "say what to do: --out ROOTS.pem, or one of list, generate, rotate, withdraw, export"
                ),
            };
            let p = crate::open(cfg).await?;
            let caller = Caller::cli("ecode-roots");
            match r {
                RootsCommand::List => {
                    for k in p.ecode_roots(&caller).await? {
                        println!("{}\t{}\t{}", k.key_id, k.state, k.public_key);
                    }
                }
                RootsCommand::Generate => {
                    let k = p.ecode_root_generate(&caller).await?;
                    println!("root key {} ({})", k.key_id, k.state);
                }
                RootsCommand::Rotate { key_id } => {
                    p.ecode_root_rotate(&caller, key_id).await?;
                    println!("root key {key_id} is current");
                }
                RootsCommand::Withdraw { key_id } => {
                    p.ecode_root_withdraw(&caller, key_id).await?;
                    println!("root key {key_id} withdrawn");
                }
                RootsCommand::Export { out } => {
                    let pem = p.ecode_roots_pem().await?;
                    if pem.is_empty() {
                        bail!("no root keys to export: `citycard ecode roots generate` first");
                    }
                    std::fs::write(&out, pem)
                        .with_context(|| format!("writing {}", out.display()))?;
                    println!("wrote {}", out.display());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn crate_random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(b)
}

/// `citycard bench ecode`'s settings.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Certificates to issue through the platform.
    #[arg(long, default_value_t = 2_000)]
    certificates: u32,
    /// Codes to verify online through the platform (and offline with the Verifier).
    #[arg(long, default_value_t = 2_000)]
    verifications: u32,
    /// Concurrent callers of the platform.
    #[arg(long, default_value_t = 4)]
    concurrency: u32,
}

fn per_s(n: u32, start: std::time::Instant) -> f64 {
    f64::from(n) / start.elapsed().as_secs_f64()
}

/// Certificates issued per second and online verifications per second through the platform,
/// offline verifications per second with the terminal's `Verifier`, each beside the raw SM2
/// sign and verify rates of the same run (one core).
pub async fn bench(args: BenchArgs, cfg: &Config) -> anyhow::Result<()> {
    use platform::cards::{CardRequest, parse_reason};
    use std::sync::Arc;
    use std::time::Instant;

    let (n_cert, n_verify, conc) = (args.certificates, args.verifications, args.concurrency);
    anyhow::ensure!(conc >= 1, "--concurrency must be at least 1");
    // Online codes must be verified within the 60 s freshness window of their making.
    anyhow::ensure!(
        n_verify <= 20_000,
        "--verifications above 20000 would outlive the 60 s freshness window"
    );
    let scratch = crate::bench::scratch(cfg).await?;
    let backend = match &scratch.target {
        platform::StorageTarget::Sqlite(_) => "sqlite",
        platform::StorageTarget::Postgres(_) => "postgres",
    };

    // The baseline: raw SM2 with SM3 over a certificate-sized message, one core.
    let key = crypto::Sm2SigningKey::from_secret(&random_secret()?)?;
    let public = key.public_key();
    let message = [0x5Au8; ecode::CERTIFICATE_SIGNED_LEN];
    let start = Instant::now();
    let mut signature = [0u8; 64];
    for _ in 0..n_cert {
        signature = key.sign(&message);
    }
    let raw_sign = per_s(n_cert, start);
    let start = Instant::now();
    for _ in 0..n_verify {
        public.verify(&message, &signature)?;
    }
    let raw_verify = per_s(n_verify, start);

    // A platform on scratch storage with one active card, a root key and an enrolled phone.
    let p = platform::open::open_platform(
        &scratch.target,
        &scratch._dir.path().join("keys"),
        &platform::KeySource::Passphrase("bench".into()),
        false,
        Arc::new(SystemClock),
    )
    .await?;
    let system = Caller::cli("bench");
    let clerk = Caller {
        operator_id: Some(1),
        username: "bench-clerk".into(),
        role: store::Role::CounterClerk,
        department: None,
        origin: "bench".into(),
    };
    let today = SystemClock.today();
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 0..50, 7, today, 0)?;
    p.import_residents(
        &system,
        resident::Source::Police,
        "bench",
        "bench".into(),
        Box::new(std::io::Cursor::new(csv)),
        Arc::new(|_| {}),
    )
    .await?;
    let mut card = None;
    for i in 0..50 {
        let id = platform::demo::id_number(i, 7, today);
        if let Ok(c) = p
            .apply_for_card(&clerk, id.as_str(), "ordinary", None)
            .await
        {
            card = Some(c.number);
            break;
        }
    }
    let card = card.context("no eligible resident among the bench's 50")?;
    for (who, req, reason) in [
        (&clerk, CardRequest::Approve, "routine"),
        (&system, CardRequest::SendToProduction, "routine"),
        (&system, CardRequest::ProductionDone, "routine"),
        (&clerk, CardRequest::Post, "routine"),
        (&clerk, CardRequest::Activate, "holder_request"),
    ] {
        p.card_action(who, &card, req, parse_reason(reason)?)
            .await?;
    }
    p.ecode_root_generate(&system).await?;
    let mut phone = Phone::new(DeviceId::parse("bench-phone")?, &random_secret()?)?;
    p.ecode_device_bind(
        &clerk,
        &card,
        phone.device_id().as_str(),
        &phone.public_key().to_compressed(),
    )
    .await?;
    let number = CardNumber::parse(&card)?;

    // Certificate issuance: the phone's signed requests are made beforehand.
    let now = now_s()?;
    let requests: Vec<_> = (0..n_cert)
        .map(|_| phone.certificate_request(number, now))
        .collect();
    let requests = Arc::new(std::sync::Mutex::new(requests));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (p, clerk, requests) = (p.clone(), clerk.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            let mut last = None;
            loop {
                let next = requests.lock().expect("requests").pop();
                let Some(r) = next else { break };
                last = Some(p.ecode_certify(&clerk, &r).await?.certificate);
            }
            anyhow::Ok(last)
        }));
    }
    let mut certificate = None;
    for t in tasks {
        if let Some(c) = t.await?? {
            certificate = Some(c);
        }
    }
    let cert_rate = per_s(n_cert, start);
    phone.install_certificate(certificate.context("no certificate issued")?)?;

    // Offline verification with the terminal's Verifier (2 SM2 verifications a code).
    let roots = RootKeys::from_pem(&p.ecode_roots_pem().await?)?;
    let now = now_s()?;
    let codes: Vec<Code> = (0..n_verify)
        .map(|_| phone.make_code(now))
        .collect::<Result<_, _>>()?;
    let mut gate = Verifier::new(roots, VerifierConfig::default())?;
    let start = Instant::now();
    for c in &codes {
        gate.verify(c, now, Purpose::Transit)?;
    }
    let offline_rate = per_s(n_verify, start);

    // Online verification through the platform (the same codes: a fresh replay cache there).
    let texts: Vec<String> = codes.iter().map(Code::to_text).collect();
    let texts = Arc::new(std::sync::Mutex::new(texts));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (p, clerk, texts) = (p.clone(), clerk.clone(), texts.clone());
        tasks.push(tokio::spawn(async move {
            let mut refused = 0u32;
            loop {
                let next = texts.lock().expect("texts").pop();
                let Some(t) = next else { break };
                if !p.ecode_verify(&clerk, &t, Purpose::Transit).await?.accepted {
                    refused += 1;
                }
            }
            anyhow::Ok(refused)
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await??;
    }
    let online_rate = per_s(n_verify, start);
    anyhow::ensure!(refused == 0, "{refused} online verifications refused");
    scratch.cleanup().await?;

    println!(
        "| benchmark ({backend}, concurrency {conc}) | result | baseline (same run, one core) | ratio |"
    );
    println!("|---|---|---|---|");
    println!(
        "| certificate issuance ×{n_cert} (request signature check, card and device reads, root SM2 signature, insert + audit) | {cert_rate:.0} /s | raw SM2 sign: {raw_sign:.0} /s | {:.2} |",
        cert_rate / raw_sign
    );
    println!(
        "| online verify ×{n_verify} (`POST /api/v1/ecode/verify` path without HTTP: checks 1–9, card and device reads, audit) | {online_rate:.0} /s | raw SM2 verify: {raw_verify:.0} /s | {:.2} |",
        online_rate / raw_verify
    );
    println!(
        "| offline verify ×{n_verify} (terminal `Verifier`: 2 SM2 verifications, replay cache) | {offline_rate:.0} /s | raw SM2 verify ÷ 2: {:.0} /s | {:.2} |",
        raw_verify / 2.0,
        offline_rate / (raw_verify / 2.0)
    );
    Ok(())
}
