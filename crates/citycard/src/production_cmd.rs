//! `citycard outlets …`, `citycard batches …`, `citycard bureau emulate` and
//! `citycard counter …`: service outlets and their clerks, production batches (create, export
//! the personalization file, import the bureau's results, distribute), the card bureau
//! emulator, and counter work (hand-over, lost report, replacement, instant issuance, the
//! daily journal and its closing).
//!
//! Counter commands act as the clerk named by `--clerk` (an operator with the counter_clerk
//! role, assigned to the outlet): whoever runs the command line holds the data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use crypto::{Algorithm, Key16};
use indicatif::{ProgressBar, ProgressStyle};
use issuance::production::{BureauConfig, emulate_bureau};
use keys::master::{KeyComponent, combine_components};
use platform::production::{EmulatedWriter, FEES};
use platform::{Caller, Platform};

use crate::card::{AlgArg, save_card, write_atomic};
use crate::config::Config;
use crate::keys_cmd::{StoreArgs, open_store};

#[derive(clap::Subcommand)]
pub enum OutletsCommand {
    /// Open a service outlet (服务网点).
    Add {
        /// 2 to 16 characters A-Z 0-9 - (e.g. ZZ-JINSHUI).
        #[arg(long)]
        code: String,
        #[arg(long)]
        name_zh: String,
        #[arg(long)]
        name_en: String,
        #[arg(long)]
        address: String,
    },
    /// List outlets with their clerks.
    List {
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Assign a counter clerk (an operator with the counter_clerk role) to an outlet.
    Assign {
        #[arg(long)]
        outlet: String,
        #[arg(long)]
        clerk: String,
    },
    /// Close an outlet (no deliveries, no counter acts) or open it again.
    SetActive {
        #[arg(long)]
        outlet: String,
        #[arg(long, action = clap::ArgAction::Set)]
        active: bool,
    },
    /// Stock at an outlet: cards by state and those waiting for collection (holders masked).
    Stock {
        #[arg(long)]
        outlet: String,
    },
}

#[derive(clap::Subcommand)]
pub enum BatchesCommand {
    /// Put up to --max approved cards into a new production batch (each → in_production).
    Create {
        #[arg(long)]
        max: u32,
        /// Algorithm profile of the cards.
        #[arg(long, value_enum, default_value = "sm4")]
        alg: AlgArg,
    },
    /// The newest batches.
    List,
    /// Write a batch's personalization file for the card bureau: card keys diversified in
    /// the master-key store and wrapped under the transport key, never in clear.
    Export {
        #[arg(long)]
        batch: String,
        #[arg(long)]
        out: PathBuf,
        /// Overwrite --out if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Import the bureau's result file: serials and validity for produced cards, failed
    /// cards back to approved. A wrong, damaged or second file is refused and changes nothing.
    Import {
        #[arg(long)]
        batch: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Deliver a batch's produced cards (or the first --count) to an outlet.
    Distribute {
        #[arg(long)]
        batch: String,
        #[arg(long)]
        outlet: String,
        #[arg(long)]
        count: Option<u32>,
    },
}

/// The transport key as the bureau (or an outlet's writer) received it at the key ceremony.
#[derive(clap::Args, Debug, Clone)]
pub struct TransportArgs {
    /// A transport-key component as HEX:KCV (32 hex digits, a colon, the 6-hex-digit check
    /// value under --kcv-alg); give it 2 or 3 times, as at `citycard keys import`.
    #[arg(long = "component", required = true, num_args = 1)]
    pub components: Vec<String>,
    /// Cipher of the components' check values.
    #[arg(long, value_enum, default_value = "3des")]
    pub kcv_alg: AlgArg,
}

impl TransportArgs {
    fn key(&self) -> anyhow::Result<Key16> {
        let alg: Algorithm = self.kcv_alg.into();
        let parsed = self
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (value, check) = c
                    .split_once(':')
                    .ok_or(keys::master::MasterKeyError::InvalidComponent { index: i + 1 })?;
                KeyComponent::parse(i + 1, value, check, alg)
            })
            .collect::<Result<Vec<_>, _>>()
            .context("transport key components refused")?;
        combine_components(&parsed).context("combining the transport key components")
    }
}

#[derive(clap::Subcommand)]
pub enum BureauCommand {
    /// The card bureau (制卡厂), emulated: read a personalization file, personalize every
    /// card with the transport key, write the result file (chip serial or failure per card).
    Emulate {
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        transport: TransportArgs,
        /// Report this card as failed: CARD or CARD:REASON (repeatable).
        #[arg(long = "fail")]
        fail: Vec<String>,
        /// Serial of the first chip, 16 hex digits [default: random].
        #[arg(long)]
        serial_first: Option<String>,
        /// The initial PIN the bureau sets.
        #[arg(long, default_value = "123456")]
        pin: String,
        /// Also write each produced card's image (JSON, holds the card keys) here.
        #[arg(long)]
        cards_dir: Option<PathBuf>,
    },
}

#[derive(clap::Subcommand)]
pub enum CounterCommand {
    /// Hand a card waiting at the outlet to its holder, who activates it (→ issued → active).
    HandOver {
        #[arg(long)]
        outlet: String,
        #[arg(long)]
        clerk: String,
        #[arg(long)]
        card: String,
    },
    /// Report a card lost (挂失) at the counter.
    ReportLost {
        #[arg(long)]
        outlet: String,
        #[arg(long)]
        clerk: String,
        #[arg(long)]
        card: String,
    },
    /// Replace a card (补卡); the fee is journaled.
    Replace {
        #[arg(long)]
        outlet: String,
        #[arg(long)]
        clerk: String,
        #[arg(long)]
        card: String,
        /// lost, damaged or fraud
        #[arg(long, default_value = "lost")]
        reason: String,
    },
    /// Instant issuance (即时制卡): personalize an approved card on the spot with the
    /// emulated card writer and hand it over; writes the card image for `card apdu`/`vpcd`.
    Instant {
        #[arg(long)]
        outlet: String,
        #[arg(long)]
        clerk: String,
        #[arg(long)]
        card: String,
        #[arg(long, value_enum, default_value = "sm4")]
        alg: AlgArg,
        /// Where to write the card image (JSON; holds the card keys).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
        /// The initial PIN the writer sets.
        #[arg(long, default_value = "123456")]
        pin: String,
        #[command(flatten)]
        transport: TransportArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// An outlet's counter journal for a business day: acts, counts, fees, closing.
    Journal {
        #[arg(long)]
        outlet: String,
        /// YYYY-MM-DD [default: today in the city].
        #[arg(long)]
        date: Option<String>,
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Close a business day: declare the cash taken; the platform reports the difference.
    Close {
        #[arg(long)]
        outlet: String,
        #[arg(long)]
        clerk: String,
        /// YYYY-MM-DD [default: today in the city].
        #[arg(long)]
        date: Option<String>,
        /// Cash counted, in fen.
        #[arg(long)]
        declared_fen: i64,
    },
}

fn spinner(what: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn today() -> String {
    let now = platform::clock::now_in_city();
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

fn alg_text(a: AlgArg) -> &'static str {
    match a {
        AlgArg::Tdes => "3DES",
        AlgArg::Sm4 => "SM4",
    }
}

/// The platform with the master-key store the arguments name attached.
async fn open_with_keys(cfg: &Config, store: &StoreArgs) -> anyhow::Result<Platform> {
    let keys: Arc<dyn keys::master::MasterKeyStore> = Arc::from(open_store(store, cfg)?);
    Ok(crate::open(cfg).await?.with_master_keys(keys))
}

fn refuse_overwrite(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", path.display());
    }
    Ok(())
}

pub async fn outlets(cmd: OutletsCommand, cfg: &Config) -> anyhow::Result<()> {
    let p = crate::open(cfg).await?;
    let cli = Caller::cli("cli");
    match cmd {
        OutletsCommand::Add {
            code,
            name_zh,
            name_en,
            address,
        } => {
            let o = p
                .outlet_create(&cli, &code, &name_zh, &name_en, &address)
                .await?;
            println!("outlet {} opened: {} / {}", o.code, o.name_zh, o.name_en);
        }
        OutletsCommand::List { format } => {
            let list = p.outlets(&cli).await?;
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for o in &list {
                    println!(
                        "{:<16} {:<6} {} / {} — {} — clerks: {}",
                        o.code,
                        if o.active { "open" } else { "closed" },
                        o.name_zh,
                        o.name_en,
                        o.address,
                        if o.clerks.is_empty() {
                            "none".to_string()
                        } else {
                            o.clerks.join(", ")
                        }
                    );
                }
                println!("{} outlet(s)", list.len());
            }
        }
        OutletsCommand::Assign { outlet, clerk } => {
            let o = p.clerk_assign(&cli, &outlet, &clerk).await?;
            println!("{clerk} now works at outlet {}", o.code);
        }
        OutletsCommand::SetActive { outlet, active } => {
            let o = p.outlet_set_active(&cli, &outlet, active).await?;
            println!(
                "outlet {} is {}",
                o.code,
                if o.active { "open" } else { "closed" }
            );
        }
        OutletsCommand::Stock { outlet } => {
            let s = p.outlet_stock(&cli, &outlet).await?;
            println!("outlet {}: cards by state", s.outlet.code);
            for (state, n) in &s.by_state {
                println!("  {state:<14} {n}");
            }
            println!("waiting for collection: {}", s.waiting.len());
            for c in &s.waiting {
                println!("  {} {} {}", c.number, c.holder_name, c.holder_id_number);
            }
        }
    }
    Ok(())
}

pub async fn batches(cmd: BatchesCommand, cfg: &Config) -> anyhow::Result<()> {
    let cli = Caller::cli("cli");
    match cmd {
        BatchesCommand::Create { max, alg } => {
            let p = crate::open(cfg).await?;
            let pb = spinner("creating the batch");
            let r = p.create_batch(&cli, max, alg_text(alg)).await;
            pb.finish_and_clear();
            let r = r?;
            println!(
                "batch {} created: {} card(s) in production ({}), valid {}–{}{}",
                r.batch.id,
                r.batch.card_count,
                r.batch.algorithm,
                r.batch.start_date,
                r.batch.expiry_date,
                if r.skipped_unprintable > 0 {
                    format!(
                        "; {} approved card(s) left out: no printable holder name",
                        r.skipped_unprintable
                    )
                } else {
                    String::new()
                }
            );
        }
        BatchesCommand::List => {
            let p = crate::open(cfg).await?;
            let list = p.batches(&cli, store::PAGE_MAX).await?;
            println!(
                "{:<8} {:<9} {:<5} {:>7} {:>8} {:>6} {:>11} created",
                "batch", "state", "alg", "cards", "produced", "failed", "distributed"
            );
            for b in &list {
                println!(
                    "{:<8} {:<9} {:<5} {:>7} {:>8} {:>6} {:>11} {}",
                    b.id,
                    b.state,
                    b.algorithm,
                    b.card_count,
                    b.produced,
                    b.failed,
                    b.distributed,
                    platform::clock::format_ms(b.created_ms)
                );
            }
        }
        BatchesCommand::Export {
            batch,
            out,
            force,
            store,
        } => {
            refuse_overwrite(&out, force)?;
            let p = open_with_keys(cfg, &store).await?;
            let pb = spinner("diversifying and wrapping card keys");
            let f = p.export_batch(&cli, &batch).await;
            pb.finish_and_clear();
            let f = f?;
            let text =
                String::from_utf8(f.bytes).context("the personalization file is not UTF-8")?;
            write_atomic(&out, &text)?;
            println!(
                "batch {}: {} card(s) written to {} (SM3 {})",
                f.batch,
                f.card_count,
                out.display(),
                f.digest
            );
        }
        BatchesCommand::Import { batch, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let p = crate::open(cfg).await?;
            let pb = spinner("importing the bureau's results");
            let r = p.import_results(&cli, &batch, &bytes).await;
            pb.finish_and_clear();
            let r = r?;
            println!(
                "batch {}: {} produced, {} failed (back to approved)",
                r.batch.id,
                r.produced,
                r.failed.len()
            );
            for (card, why) in &r.failed {
                println!("  failed {card}: {why}");
            }
        }
        BatchesCommand::Distribute {
            batch,
            outlet,
            count,
        } => {
            let p = crate::open(cfg).await?;
            let pb = spinner("distributing");
            let r = p.distribute_batch(&cli, &batch, &outlet, count).await;
            pb.finish_and_clear();
            let r = r?;
            println!(
                "batch {}: {} card(s) delivered to outlet {}, {} produced card(s) left",
                r.batch, r.delivered, r.outlet, r.remaining
            );
        }
    }
    Ok(())
}

fn random_serial() -> anyhow::Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("system random source: {e}"))?;
    // Keep the top bit clear so a run of serials never wraps.
    Ok(u64::from_be_bytes(b) >> 1)
}

pub fn bureau(cmd: BureauCommand) -> anyhow::Result<()> {
    let BureauCommand::Emulate {
        input,
        out,
        transport,
        fail,
        serial_first,
        pin,
        cards_dir,
    } = cmd;
    refuse_overwrite(&out, false)?;
    let fail = fail
        .iter()
        .map(|f| {
            let (card, reason) = f.split_once(':').unwrap_or((f, "failed at the bureau"));
            Ok((
                chip::CardNumber::parse(card).with_context(|| format!("--fail {f:?}"))?,
                reason.to_string(),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let serial_first = match serial_first {
        Some(s) => u64::from_str_radix(&s, 16)
            .ok()
            .filter(|_| s.len() == 16)
            .with_context(|| format!("--serial-first {s:?} is not 16 hex digits"))?,
        None => random_serial()?,
    };
    let config = BureauConfig {
        transport_key: transport.key()?,
        serial_first,
        initial_pin: pin,
        fail,
    };
    let file =
        std::fs::File::open(&input).with_context(|| format!("reading {}", input.display()))?;
    let pb = spinner("personalizing chips");
    let mut results = Vec::new();
    let run = emulate_bureau(std::io::BufReader::new(file), &config, &mut results);
    pb.finish_and_clear();
    let run = run.context("the bureau refused the personalization file")?;
    write_atomic(
        &out,
        std::str::from_utf8(&results).context("result file is not UTF-8")?,
    )?;
    if let Some(dir) = &cards_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for p in &run.produced {
            save_card(&dir.join(format!("{}.json", p.card_number)), &p.card)?;
        }
    }
    println!(
        "batch {}: {} produced, {} failed; results written to {}{}",
        run.batch_id,
        run.produced.len(),
        run.failed.len(),
        out.display(),
        cards_dir
            .map(|d| format!("; card images in {}", d.display()))
            .unwrap_or_default()
    );
    Ok(())
}

pub async fn counter(cmd: CounterCommand, cfg: &Config) -> anyhow::Result<()> {
    match cmd {
        CounterCommand::HandOver {
            outlet,
            clerk,
            card,
        } => {
            let p = crate::open(cfg).await?;
            let who = p.clerk_caller(&clerk, "cli").await?;
            let v = p.counter_hand_over(&who, &outlet, &card).await?;
            println!(
                "card {} handed over at {outlet} by {clerk}: {} (fee {} yuan)",
                v.number,
                v.state,
                yuan(FEES.card_issued_fen)
            );
        }
        CounterCommand::ReportLost {
            outlet,
            clerk,
            card,
        } => {
            let p = crate::open(cfg).await?;
            let who = p.clerk_caller(&clerk, "cli").await?;
            let v = p.counter_report_lost(&who, &outlet, &card).await?;
            println!("card {} reported lost at {outlet}: {}", v.number, v.state);
        }
        CounterCommand::Replace {
            outlet,
            clerk,
            card,
            reason,
        } => {
            let p = crate::open(cfg).await?;
            let who = p.clerk_caller(&clerk, "cli").await?;
            let reason = platform::cards::parse_reason(&reason)?;
            let r = p.counter_replace(&who, &outlet, &card, reason).await?;
            println!(
                "card {} replaced by {} (approved, for the next batch or instant issuance); fee {} yuan",
                r.card.number,
                r.successor,
                yuan(r.fee_fen)
            );
        }
        CounterCommand::Instant {
            outlet,
            clerk,
            card,
            alg,
            out,
            force,
            pin,
            transport,
            store,
        } => {
            refuse_overwrite(&out, force)?;
            let writer = EmulatedWriter::new(transport.key()?, random_serial()?, &pin);
            let p = open_with_keys(cfg, &store).await?;
            let who = p.clerk_caller(&clerk, "cli").await?;
            let pb = spinner("personalizing the card");
            let r = p
                .instant_issue(&who, &outlet, &card, alg_text(alg), &writer)
                .await;
            pb.finish_and_clear();
            let r = r?;
            save_card(&out, &r.chip)?;
            println!(
                "card {} personalized on the spot at {outlet} (chip {}), handed over: {}; image in {}",
                r.card.number,
                r.chip_serial,
                r.card.state,
                out.display()
            );
        }
        CounterCommand::Journal {
            outlet,
            date,
            format,
        } => {
            let p = crate::open(cfg).await?;
            let date = date.unwrap_or_else(today);
            let j = p
                .counter_journal(&Caller::cli("cli"), &outlet, &date)
                .await?;
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&j)?);
                return Ok(());
            }
            println!("outlet {} — business day {}", j.outlet, j.date);
            for l in &j.lines {
                println!(
                    "  {} {:<10} {:<15} {:<16} {:>9}",
                    platform::clock::format_ms(l.at_ms),
                    l.clerk,
                    l.act,
                    l.card_number.as_deref().unwrap_or("-"),
                    yuan(l.fee_fen)
                );
            }
            for (act, n) in &j.counts {
                println!("{act:<15} {n}");
            }
            println!("fees taken      {} yuan", yuan(j.fees_fen));
            match &j.closing {
                None => println!("closing         not closed yet"),
                Some(c) => println!(
                    "closing         by {}: expected {}, declared {}, difference {} ({})",
                    c.closed_by,
                    yuan(c.expected_fen),
                    yuan(c.declared_fen),
                    yuan(c.difference_fen),
                    if c.balanced { "balanced" } else { "DIFFERENCE" }
                ),
            }
        }
        CounterCommand::Close {
            outlet,
            clerk,
            date,
            declared_fen,
        } => {
            let p = crate::open(cfg).await?;
            let who = p.clerk_caller(&clerk, "cli").await?;
            let date = date.unwrap_or_else(today);
            let c = p.close_day(&who, &outlet, &date, declared_fen).await?;
            println!(
                "{outlet} {date} closed: {} act(s), expected {} yuan, declared {} yuan, difference {} yuan{}",
                c.acts,
                yuan(c.expected_fen),
                yuan(c.declared_fen),
                yuan(c.difference_fen),
                if c.balanced {
                    " (balanced)"
                } else {
                    " — the difference is on record for the supervisor"
                }
            );
        }
    }
    Ok(())
}
