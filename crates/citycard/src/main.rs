//! `citycard`: one binary for the whole platform. Serves the API and console, imports
//! department feeds, verifies the audit log, builds the demo city and runs the benchmarks.

mod apps_cmd;
mod bank_cmd;
mod bench;
mod bench_billrun;
mod bench_close;
mod bench_denylist;
mod bench_ecode_scan;
mod bench_ingest;
mod bench_ledger;
mod bench_payments;
mod bench_portal;
mod bench_production;
mod bench_terminal;
mod card;
mod clearing_cmd;
mod config;
mod disbursement_cmd;
mod ecode_cmd;
mod exchange_cmd;
mod idp_cmd;
mod keys_cmd;
mod ledger_cmd;
mod points_cmd;
mod production_cmd;
mod services_cmd;
mod terminal;
mod terminal_agent_cmd;
mod terminal_sim;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use config::{Config, GlobalArgs};
use indicatif::{ProgressBar, ProgressStyle};
use platform::clock::{OffsetClock, SystemClock};
use platform::{Caller, Platform};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "citycard",
    version,
    about = "City citizen card platform (市民卡平台)",
    long_about = "City citizen card platform (市民卡平台).\n\nData lives in an embedded SQLite \
database under --data-dir (default ./citycard-data), or in PostgreSQL with --database-url. \
Settings come from defaults, then a TOML config file, then CITYCARD_* environment variables, \
then flags."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the JSON API, the operator console, health checks and metrics.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "CITYCARD_LISTEN")]
        listen: Option<String>,
        /// Build the demo city first when the data directory holds no residents.
        #[arg(long)]
        demo: bool,
        #[command(flatten)]
        bank: bank_cmd::BankArgs,
        #[command(flatten)]
        sms: services_cmd::SmsArgs,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// The resident base database.
    #[command(subcommand)]
    Residents(ResidentsCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Operator accounts and API tokens.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Build a synthetic city in the data directory and simulate days of activity.
    Demo {
        #[arg(long, default_value_t = 3000)]
        residents: u64,
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long, default_value_t = 2021)]
        seed: u64,
    },
    /// Cards (issuance): list them.
    #[command(subcommand)]
    Cards(CardsCommand),
    /// The double-entry ledger: check the books, balances, Beancount export.
    #[command(subcommand)]
    Ledger(ledger_cmd::LedgerCommand),
    /// Clearing (清分结算对账): windows, closing one into its report, the settlement file
    /// (pain.001), the bank's statement (camt.053) and the exceptions queue.
    Clearing(clearing_cmd::ClearingArgs),
    /// Benefit and subsidy batches of departments, with four eyes (待遇发放).
    #[command(subcommand)]
    Disbursements(disbursement_cmd::DisbursementsCommand),
    /// Application management (应用管理): the registry of card applications and functions.
    #[command(subcommand)]
    Apps(apps_cmd::AppsCommand),
    /// Benchmarks (results go to docs/benchmarks.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Card images: personalize a card, drive it by APDUs, put it in the vpcd reader.
    #[command(subcommand)]
    Card(card::CardCommand),
    /// PSAM images (the terminal's secure module): create one, drive it by APDUs.
    #[command(subcommand)]
    Psam(card::PsamCommand),
    /// Tap a card at a terminal: a purchase (消费) in process; prints the upload record.
    Tap(terminal::TapArgs),
    /// The terminal itself (终端): run it against the platform, taps from a script.
    #[command(subcommand)]
    Terminal(terminal_agent_cmd::TerminalCommand),
    /// Load (圈存) a card, authorized by the host; prints the result.
    Load(terminal::LoadArgs),
    /// Master keys of the card company (key ceremony): generate, import, list.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// The electronic citizen card (电子市民卡): device files, enrolment, certificates, codes
    /// as text and QR, offline verification, root keys.
    #[command(subcommand)]
    Ecode(ecode_cmd::EcodeCommand),
    /// Service outlets (服务网点) and their clerks, stock per outlet.
    #[command(subcommand)]
    Outlets(production_cmd::OutletsCommand),
    /// Production batches: create, export the personalization file, import results, distribute.
    #[command(subcommand)]
    Batches(production_cmd::BatchesCommand),
    /// The card bureau (制卡厂), emulated.
    #[command(subcommand)]
    Bureau(production_cmd::BureauCommand),
    /// Counter work at an outlet: hand-over, lost report, replacement, instant issuance,
    /// the daily journal and its closing.
    #[command(subcommand)]
    Counter(production_cmd::CounterCommand),
    /// Simulated outside parties: the bank of the top-up channel, the exchange's department
    /// providers.
    #[command(subcommand)]
    Sim(bank_cmd::SimCommand),
    /// Money movements: resolve top-ups the bank did not answer in time.
    #[command(subcommand)]
    Money(MoneyCommand),
    /// Points (积分): rules, catalogue, charity projects, use events, redemption, expiry.
    #[command(subcommand)]
    Points(points_cmd::PointsCommand),
    /// The opt-in credit service (信用服务): score, history, signals, disputes.
    #[command(subcommand)]
    Credit(points_cmd::CreditCommand),
    /// Bills and auto-debit (公共事业缴费): billers, bill files, agreements, runs.
    #[command(subcommand)]
    Bills(services_cmd::BillsCommand),
    /// Citizen notifications: preferences, SMS delivery, outbox status.
    #[command(subcommand)]
    Notifications(services_cmd::NotificationsCommand),
    /// Citizens' portal and app sign-in: a password set at a counter.
    #[command(subcommand)]
    Citizens(services_cmd::CitizensCommand),
}

#[derive(Subcommand)]
enum MoneyCommand {
    /// Ask the bank about every pending top-up and post or void it by the answer.
    ResolveTopups {
        /// Only top-ups pending at least this long, in milliseconds.
        #[arg(long, default_value_t = 0)]
        min_age_ms: i64,
        #[command(flatten)]
        bank: bank_cmd::BankArgs,
    },
}

#[derive(Subcommand)]
enum ResidentsCommand {
    /// Import a department feed: CSV with header id_number,name,phone,address,residency.
    Import {
        file: PathBuf,
        /// The reporting department: police, hr_social_security, health, medical_insurance,
        /// civil_affairs, education, tax.
        #[arg(long)]
        source: String,
        /// Write every rejected row as `row,reason` to this CSV file.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CardsCommand {
    /// List cards in number order: card number, state, card type, holder (masked).
    List {
        /// Only cards in this state: applied, approved, in_production, produced, at_outlet,
        /// issued, active, reported_lost, frozen, replaced, cancelled, expired, withdrawn.
        #[arg(long)]
        state: Option<String>,
        /// Output format.
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
    },
    /// The life cycle's scheduled job (run it daily): freeze cards whose lost report can no
    /// longer be undone, expire cards past their validity. Safe to run any number of times.
    Sweep,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; exit 0 when intact, non-zero naming the first bad entry.
    Verify,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an operator. The password is read from CITYCARD_NEW_PASSWORD or, if unset, from
    /// the first line of standard input.
    CreateUser {
        #[arg(long)]
        username: String,
        /// administrator, counter_clerk, clearing_officer, department_officer, auditor
        #[arg(long, default_value = "administrator")]
        role: String,
        /// For department officers: the department.
        #[arg(long)]
        department: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Issue an API token for a machine client acting as an operator.
    Token {
        #[arg(long)]
        username: String,
        #[arg(long)]
        label: String,
        #[arg(long, default_value_t = 90)]
        ttl_days: u32,
    },
}

fn init_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CITYCARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn open(cfg: &Config) -> anyhow::Result<Platform> {
    platform::open::open_platform(
        &cfg.storage()?,
        &cfg.key_dir(),
        &cfg.key_source(),
        cfg.production,
        if cfg.clock_offset_ms == 0 {
            Arc::new(SystemClock) as Arc<dyn platform::clock::Clock>
        } else {
            Arc::new(OffsetClock::new(cfg.clock_offset_ms))
        },
    )
    .await
    .with_context(|| {
        format!(
            "opening {}",
            cfg.storage().map(|s| s.describe()).unwrap_or_default()
        )
    })
}

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>14} [{bar:40}] {percent:>3}% {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn parse_source(s: &str) -> anyhow::Result<resident::Source> {
    resident::Source::parse(s).with_context(|| {
        format!(
            "unknown department {s:?}; one of {}",
            resident::Source::ALL.map(|d| d.as_str()).join(", ")
        )
    })
}

async fn run_demo(p: &Platform, residents: u64, days: u32, seed: u64) -> anyhow::Result<()> {
    let pb = bar(residents, "demo");
    let pb2 = pb.clone();
    let summary = platform::demo::run(
        p,
        residents,
        days,
        seed,
        Arc::new(move |stage, done, total| {
            pb2.set_message(stage.to_string());
            pb2.set_length(total);
            pb2.set_position(done);
        }),
    )
    .await?;
    pb.finish_and_clear();
    println!("demo city ready:");
    println!("  residents           {}", summary.residents);
    println!("  simulated days      {}", summary.days);
    println!("  department feeds    {}", summary.feeds);
    println!("  rows imported       {}", summary.rows_imported);
    println!("  rows updated        {}", summary.rows_updated);
    println!(
        "  rows rejected       {} (deliberately broken rows, reported)",
        summary.rows_rejected
    );
    println!(
        "  operators           {} (password {:?}: admin, clerk, clearing, police, hrss, auditor)",
        summary.operators,
        platform::demo::DEMO_PASSWORD
    );
    println!(
        "  cards               {} active, {} reported lost, {} replaced",
        summary.cards_active, summary.cards_lost, summary.cards_replaced
    );
    println!("  deny-list version   {}", summary.deny_list_version);
    println!(
        "  benefits paid       {} lines, {} yuan (batch by hrss, approved by admin)",
        summary.disbursed_lines,
        ledger::Amount(summary.disbursed_fen).yuan()
    );
    println!("  audit entries       {}", summary.audit_entries);
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The terminal's --config is its own TOML (terminal_agent_cmd), not the platform's.
    let command = match cli.command {
        Command::Terminal(cmd) => return terminal_agent_cmd::main(cmd, cli.global.config).await,
        c => c,
    };
    let cfg = match Config::load(&cli.global) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(&cfg);
    match run(command, cfg).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, cfg: Config) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match command {
        Command::Serve {
            listen,
            demo,
            bank,
            sms,
        } => {
            let listen = listen
                .or(cfg.listen.clone())
                .unwrap_or_else(|| "127.0.0.1:8080".into());
            keys_cmd::refuse_test_keys_in_production(&cfg)?;
            let p = open(&cfg).await?;
            // Batch export, instant issuance and post-issuance scripts compute through the
            // master-key file store, when there is one.
            if demo && p.resident_count().await? == 0 {
                // The demo city makes its cards through a production batch: development keys.
                p.set_master_keys(Arc::new(keys_cmd::development_master_store(&cfg)?));
                run_demo(&p, 3000, 7, 2021).await?;
            } else if let Some(masters) = keys_cmd::master_store_if_present(&cfg)? {
                p.set_master_keys(Arc::new(masters));
            }
            // Held while serving: the in-process simulated bank of development.
            let _sim_bank = bank_cmd::attach(&p, &bank, cfg.production).await?;
            // Citizens may also sign in through the city's identity provider ([oidc]).
            let oidc = idp_cmd::relying_party(&cfg)?;
            if let Some(rp) = &oidc {
                println!("citizens may sign in through {}", rp.config().issuer);
            }
            // The data-sharing exchange reaches providers over HTTP and stamps the audit
            // log's head once a minute.
            p.exchange_attach_transport(Arc::new(exchange_link::HttpProviderTransport::new()));
            let _stamper = p.exchange_spawn_stamper(platform::exchange::STAMP_INTERVAL_MS);
            // Notices: the SMS gateway (or the log file), delivered every few seconds.
            println!("{}", services_cmd::attach_sms(&p, &sms, &cfg.data_dir)?);
            let _notify_worker = p.spawn_notification_worker(std::time::Duration::from_secs(5));
            // Top-ups the bank did not answer in time are asked about again every minute.
            tokio::spawn({
                let p = p.clone();
                async move {
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                    loop {
                        tick.tick().await;
                        match p
                            .resolve_pending_topups(&Caller::cli("sweep"), 30_000)
                            .await
                        {
                            Ok(r) if r.asked > 0 => tracing::info!(
                                asked = r.asked,
                                succeeded = r.succeeded,
                                failed = r.failed,
                                still_pending = r.still_pending,
                                "pending top-ups resolved"
                            ),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "resolving pending top-ups failed")
                            }
                        }
                    }
                }
            });
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let addr = listener.local_addr()?;
            println!(
                "citycard serving on http://{addr}/console/ (API under /api/, OpenAPI at /api/openapi.json)"
            );
            tracing::info!(%addr, storage = %cfg.storage()?.describe(), "serving");
            // Build the deny-list once in the background, so the first terminal to download it
            // gets the cached set (replaying a million-entry log takes seconds).
            tokio::spawn({
                let p = p.clone();
                async move {
                    if let Err(e) = p.deny_list_full().await {
                        tracing::warn!(error = %e, "warming the deny-list failed");
                    }
                }
            });
            server::serve_with_oidc(listener, p, oidc, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            open(&cfg).await?;
            println!("migrations applied to {}", cfg.storage()?.describe());
            Ok(ExitCode::SUCCESS)
        }
        Command::Residents(ResidentsCommand::Import {
            file,
            source,
            report,
        }) => {
            let source = parse_source(&source)?;
            let bytes_total = std::fs::metadata(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .len();
            let digest = {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                platform::residents::digest(&bytes)
            };
            let p = open(&cfg).await?;
            let reader = std::fs::File::open(&file)?;
            let pb = bar(bytes_total, "importing");
            let pb2 = pb.clone();
            let channel = format!(
                "csv:{}",
                file.file_name()
                    .map(|f| f.to_string_lossy().to_string())
                    .unwrap_or_default()
            );
            let r = p
                .import_residents(
                    &Caller::cli("cli"),
                    source,
                    &channel,
                    digest,
                    Box::new(std::io::BufReader::with_capacity(1 << 20, reader)),
                    Arc::new(move |b| pb2.set_position(b)),
                )
                .await?;
            pb.finish_and_clear();
            if let Some(path) = report {
                let mut w = csv::Writer::from_path(&path)
                    .with_context(|| format!("writing {}", path.display()))?;
                w.write_record(["row", "reason"])?;
                for x in &r.rejects {
                    w.write_record([x.row.to_string(), x.reason.clone()])?;
                }
                w.flush()?;
            }
            println!(
                "feed {} from {}: {} rows, {} new, {} updated, {} unchanged, {} rejected{}",
                r.feed_id,
                source.as_str(),
                r.totals.rows,
                r.totals.inserted,
                r.totals.updated,
                r.totals.unchanged,
                r.totals.rejected,
                if r.rejects_truncated {
                    " (report truncated)"
                } else {
                    ""
                }
            );
            for x in r.rejects.iter().take(10) {
                println!("  rejected line {}: {}", x.row, x.reason);
            }
            if r.rejects.len() > 10 {
                println!(
                    "  … {} more rejected rows (use --report FILE)",
                    r.totals.rejected - 10
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify) => {
            let p = open(&cfg).await?;
            match p.audit_verify().await? {
                Ok(n) => {
                    println!("audit chain intact: {n} entries");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("audit chain broken: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Admin(AdminCommand::CreateUser {
            username,
            role,
            department,
            display_name,
        }) => {
            let role = store::Role::parse(&role).with_context(|| {
                format!(
                    "unknown role {role:?}; one of {}",
                    store::Role::ALL.map(|r| r.as_str()).join(", ")
                )
            })?;
            let department = department.as_deref().map(parse_source).transpose()?;
            let password = match std::env::var("CITYCARD_NEW_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    eprintln!("password for {username} (one line on standard input):");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if password.is_empty() {
                bail!("no password given (set CITYCARD_NEW_PASSWORD or type one line)");
            }
            let p = open(&cfg).await?;
            let op = p
                .create_operator(
                    &Caller::cli("cli"),
                    platform::operators::OperatorRequest {
                        display_name: display_name.unwrap_or_else(|| username.clone()),
                        username,
                        password,
                        role,
                        department,
                    },
                )
                .await?;
            println!("created operator {} ({})", op.username, op.role.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::Token {
            username,
            label,
            ttl_days,
        }) => {
            let p = open(&cfg).await?;
            let token = p
                .create_api_token(&Caller::cli("cli"), &username, &label, ttl_days)
                .await?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            residents,
            days,
            seed,
        } => {
            let p = open(&cfg).await?;
            p.set_master_keys(Arc::new(keys_cmd::development_master_store(&cfg)?));
            run_demo(&p, residents, days, seed).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cards(CardsCommand::List { state, format }) => {
            let p = open(&cfg).await?;
            let caller = Caller::cli("cli");
            let mut out = csv::Writer::from_writer(std::io::stdout());
            if format == "csv" {
                out.write_record([
                    "number",
                    "state",
                    "card_type",
                    "holder_name",
                    "holder_id_number",
                ])?;
            }
            let mut after = String::new();
            let mut all = Vec::new();
            loop {
                let page = p
                    .cards(&caller, state.as_deref(), &after, store::PAGE_MAX)
                    .await?;
                let Some(last) = page.last() else { break };
                after = last.number.clone();
                for c in &page {
                    if format == "csv" {
                        out.write_record([
                            &c.number,
                            &c.state,
                            &c.card_type,
                            &c.holder_name,
                            &c.holder_id_number,
                        ])?;
                    }
                }
                let n = page.len();
                if format == "json" {
                    all.extend(page);
                }
                if n < store::PAGE_MAX as usize {
                    break;
                }
            }
            out.flush()?;
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&all)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim(cmd) => bank_cmd::run(cmd).await,
        Command::Money(MoneyCommand::ResolveTopups { min_age_ms, bank }) => {
            let p = open(&cfg).await?;
            if bank.bank_url.is_none() {
                anyhow::bail!("resolve-topups needs --bank-url (the bank the top-ups went to)");
            }
            let _none = bank_cmd::attach(&p, &bank, cfg.production).await?;
            let r = p
                .resolve_pending_topups(&platform::Caller::cli("cli"), min_age_ms)
                .await?;
            println!(
                "pending top-ups asked: {}, succeeded: {}, failed: {}, still pending: {}",
                r.asked, r.succeeded, r.failed, r.still_pending
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Cards(CardsCommand::Sweep) => {
            let p = open(&cfg).await?;
            let r = p.sweep_cards().await?;
            println!(
                "cards frozen after the lost period: {}, expired: {}; balance moves released: {} ({} CNY), waiting on pending transfers: {}",
                r.frozen,
                r.expired,
                r.balances.released,
                ledger::Amount(r.balances.moved_fen).yuan(),
                r.balances.deferred
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger(cmd) => {
            let p = open(&cfg).await?;
            ledger_cmd::run(cmd, &p).await
        }
        Command::Clearing(args) => {
            let p = open(&cfg).await?;
            clearing_cmd::run(args, &p).await
        }
        Command::Disbursements(cmd) => {
            let p = open(&cfg).await?;
            disbursement_cmd::run(cmd, &p).await
        }
        Command::Bills(cmd) => {
            let p = open(&cfg).await?;
            services_cmd::bills(cmd, &p).await
        }
        Command::Points(cmd) => {
            let p = open(&cfg).await?;
            points_cmd::points(cmd, &p).await
        }
        Command::Credit(cmd) => {
            let p = open(&cfg).await?;
            points_cmd::credit(cmd, &p).await
        }
        Command::Notifications(cmd) => {
            let p = open(&cfg).await?;
            services_cmd::notifications(cmd, &p, &cfg.data_dir).await
        }
        Command::Citizens(cmd) => {
            let p = open(&cfg).await?;
            services_cmd::citizens(cmd, &p).await
        }
        Command::Bench(b) => {
            bench::run(b, &cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apps(c) => {
            let p = open(&cfg).await?;
            apps_cmd::run(c, &p).await
        }
        Command::Card(c) => card::run_card(c).await,
        Command::Psam(c) => card::run_psam(c),
        Command::Tap(a) => terminal::tap(a),
        Command::Terminal(_) => anyhow::bail!("the terminal runs from main"),
        Command::Load(a) => terminal::load(a, &cfg),
        Command::Keys(c) => keys_cmd::run(c, &cfg),
        Command::Ecode(c) => ecode_cmd::run(c, &cfg).await,
        Command::Outlets(c) => production_cmd::outlets(c, &cfg)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Batches(c) => production_cmd::batches(c, &cfg)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Bureau(c) => production_cmd::bureau(c).map(|()| ExitCode::SUCCESS),
        Command::Counter(c) => production_cmd::counter(c, &cfg)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}
