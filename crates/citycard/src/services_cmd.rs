//! Citizen services on the command line: `citycard bills …` (billers, bill files, agreements,
//! payment, bill runs, payment files), `citycard notifications …` (preferences, delivery,
//! status), the SMS gateway's configuration ([`SmsArgs`]) and `citycard sim sms`.

use anyhow::Context;
use platform::money::Payer;
use platform::notifications::LogSmsGateway;
use platform::{Caller, Platform};
use sms_link::HttpSmsGateway;
use sms_link::sim::SimSms;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct SmsArgs {
    /// The SMS gateway's base URL (docs/sms-gateway.md). Without it, SMS are written to
    /// `sms.log` in the data directory (phones masked) — the embedded default.
    #[arg(long, env = "CITYCARD_SMS_URL")]
    pub sms_url: Option<String>,
    /// How long to wait for the SMS gateway's answer, in milliseconds.
    #[arg(long, env = "CITYCARD_SMS_TIMEOUT_MS", default_value_t = 5_000)]
    pub sms_timeout_ms: u64,
}

/// Attaches the SMS gateway to `p`: the HTTP gateway when configured, else the log file.
pub fn attach_sms(p: &Platform, args: &SmsArgs, data_dir: &Path) -> anyhow::Result<String> {
    match &args.sms_url {
        Some(url) => {
            let t = Duration::from_millis(args.sms_timeout_ms.clamp(100, 120_000));
            p.set_sms_gateway(Arc::new(HttpSmsGateway::new(url, t)));
            Ok(format!("SMS gateway {url}"))
        }
        None => {
            std::fs::create_dir_all(data_dir)?;
            let path = data_dir.join("sms.log");
            let g = LogSmsGateway::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            p.set_sms_gateway(Arc::new(g));
            Ok(format!("SMS written to {}", path.display()))
        }
    }
}

#[derive(clap::Subcommand)]
pub enum BillsCommand {
    /// Register a merchant of the utility category as a biller of a kind (water,
    /// electricity, gas, heating, telephone, broadband, cable_tv).
    Biller { code: String, kind: String },
    /// List billers.
    Billers,
    /// Upload a biller's bill file (CSV: bill_number,customer_no,period,amount_fen,due_date);
    /// a file with a bad line stores nothing and every bad line is named.
    Upload { biller: String, file: PathBuf },
    /// Sign an auto-debit agreement for a household with a per-bill limit in fen.
    Agree {
        /// The citizen's ID number.
        #[arg(long)]
        resident_id: String,
        #[arg(long)]
        biller: String,
        #[arg(long)]
        customer_no: String,
        #[arg(long)]
        limit_fen: i64,
    },
    /// Pay a bill from the citizen's online account (once).
    Pay {
        biller: String,
        bill_number: String,
        /// The payer's ID number.
        #[arg(long)]
        resident_id: String,
    },
    /// Show one bill.
    Show { biller: String, bill_number: String },
    /// Run the auto-debit of the bills due on or before a date (default: today in the city).
    Run {
        #[arg(long)]
        due_on: Option<String>,
    },
    /// The latest bill runs.
    Runs,
    /// Write a biller's payment file of a city day.
    PaymentFile {
        biller: String,
        /// YYYY-MM-DD
        #[arg(long)]
        day: String,
        /// Where to write it (standard output when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Subcommand)]
pub enum NotificationsCommand {
    /// Set a citizen's notice preferences.
    Prefs {
        #[arg(long)]
        resident_id: String,
        /// zh-CN or en
        #[arg(long, default_value = "zh-CN")]
        language: String,
        /// on or off
        #[arg(long, default_value = "on")]
        sms: String,
        /// A mobile number for notices ("" clears it).
        #[arg(long)]
        phone: Option<String>,
    },
    /// Deliver every due SMS now, batch by batch, and print what happened.
    Deliver {
        #[command(flatten)]
        sms: SmsArgs,
    },
    /// Counts per channel and status.
    Status,
    /// The latest notices, by status (pending, sent, failed, unread, read).
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

pub async fn bills(cmd: BillsCommand, p: &Platform) -> anyhow::Result<ExitCode> {
    let c = Caller::cli("cli");
    match cmd {
        BillsCommand::Biller { code, kind } => {
            let b = p.biller_create(&c, &code, &kind).await?;
            println!("biller {} ({}) registered", b.code, b.kind);
        }
        BillsCommand::Billers => {
            for b in p.billers(&c).await? {
                println!("{}\t{}", b.code, b.kind);
            }
        }
        BillsCommand::Upload { biller, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            match p.bills_upload_file(&c, &biller, &bytes).await {
                Ok(u) => println!(
                    "{} bills stored, {} already stored unchanged",
                    u.inserted, u.unchanged
                ),
                Err(platform::PlatformError::Invalid { message, fields }) => {
                    eprintln!("{message}");
                    for f in fields {
                        eprintln!("  {}: {}", f.field, f.message);
                    }
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            }
        }
        BillsCommand::Agree {
            resident_id,
            biller,
            customer_no,
            limit_fen,
        } => {
            let a = p
                .agreement_sign(&c, &resident_id, &biller, &customer_no, limit_fen)
                .await?;
            println!(
                "agreement {}: {} {} up to {} fen per bill",
                a.id, a.biller, a.customer_no, a.limit_fen
            );
        }
        BillsCommand::Pay {
            biller,
            bill_number,
            resident_id,
        } => {
            let v = p
                .bill_pay(&c, &Payer::IdNumber(resident_id), &biller, &bill_number)
                .await?;
            println!("payment {}: {} fen to {}", v.id, v.amount_fen, v.payee);
        }
        BillsCommand::Show {
            biller,
            bill_number,
        } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&p.bill_get(&c, &biller, &bill_number).await?)?
            );
        }
        BillsCommand::Run { due_on } => {
            let due_on = due_on.unwrap_or_else(|| p.clock.today().to_string());
            let r = p.bill_run(&c, &due_on).await?;
            println!(
                "bill run {} (due on {}): {} bills, {} debited ({} fen), {} short of funds, {} over the limit, {} notices",
                r.id,
                r.due_on,
                r.considered,
                r.debited,
                r.debited_fen,
                r.short_of_funds,
                r.over_limit,
                r.notices
            );
        }
        BillsCommand::Runs => {
            for r in p.bill_runs(&c, 20).await? {
                println!(
                    "{}\t{}\t{} bills\t{} debited\t{} fen\t{} short\t{} over limit\t{} notices",
                    r.id,
                    r.due_on,
                    r.considered,
                    r.debited,
                    r.debited_fen,
                    r.short_of_funds,
                    r.over_limit,
                    r.notices
                );
            }
        }
        BillsCommand::PaymentFile { biller, day, out } => {
            let f = p.biller_payment_file(&c, &biller, &day).await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, f)?;
                    println!("written {}", path.display());
                }
                None => print!("{f}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn notifications(
    cmd: NotificationsCommand,
    p: &Platform,
    data_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let c = Caller::cli("cli");
    match cmd {
        NotificationsCommand::Prefs {
            resident_id,
            language,
            sms,
            phone,
        } => {
            let on = match sms.as_str() {
                "on" => true,
                "off" => false,
                _ => anyhow::bail!("--sms is on or off"),
            };
            let v = p
                .notify_prefs_set(&c, &resident_id, &language, on, phone.as_deref())
                .await?;
            println!(
                "language {}, SMS {}, phone {}",
                v.language,
                if v.sms_enabled { "on" } else { "off" },
                v.phone_masked.as_deref().unwrap_or("none")
            );
        }
        NotificationsCommand::Deliver { sms } => {
            println!("{}", attach_sms(p, &sms, data_dir)?);
            let mut total = platform::notifications::DeliveryReport::default();
            loop {
                let r = p
                    .deliver_notifications(&c, platform::notifications::DELIVERY_BATCH_MAX)
                    .await?;
                if r.claimed == 0 {
                    break;
                }
                total.claimed += r.claimed;
                total.sent += r.sent;
                total.retried += r.retried;
                total.failed += r.failed;
            }
            println!(
                "{} SMS: {} sent, {} to retry later, {} failed",
                total.claimed, total.sent, total.retried, total.failed
            );
        }
        NotificationsCommand::Status => {
            for n in p.notify_counts(&c).await? {
                println!("{}\t{}\t{}", n.channel, n.status, n.count);
            }
        }
        NotificationsCommand::List { status, limit } => {
            for n in p.notifications_page(&c, status.as_deref(), limit).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    n.id, n.channel, n.status, n.template, n.body
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `citycard sim sms`: the simulated SMS gateway until Ctrl-C.
pub async fn sim_sms(listen: &str) -> anyhow::Result<ExitCode> {
    let sim = SimSms::new();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let server = sim.spawn(listener);
    println!(
        "simulated SMS gateway on {} (POST /v1/messages; PUT /sim/mode; GET /sim/messages)",
        server.url()
    );
    tokio::signal::ctrl_c().await?;
    drop(server);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Subcommand)]
pub enum CitizensCommand {
    /// Set a citizen's sign-in password at a counter, after checking their ID card in person
    /// (audited). The password is read from CITYCARD_NEW_PASSWORD or, if unset, from the
    /// first line of standard input. Citizens can also set one themselves at /portal/password
    /// with a code sent to their phone on file.
    Password {
        #[arg(long)]
        id_number: String,
    },
}

pub async fn citizens(cmd: CitizensCommand, p: &Platform) -> anyhow::Result<ExitCode> {
    match cmd {
        CitizensCommand::Password { id_number } => {
            let password = match std::env::var("CITYCARD_NEW_PASSWORD") {
                Ok(pw) => pw,
                Err(_) => {
                    eprintln!("the citizen's new password (one line on standard input):");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            p.citizen_password_set_by(&Caller::cli("cli"), &id_number, &password)
                .await?;
            println!("password set");
        }
    }
    Ok(ExitCode::SUCCESS)
}
