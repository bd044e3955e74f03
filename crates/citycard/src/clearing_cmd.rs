//! `citycard clearing`: clearing windows (清分), settlement files (结算) and reconciliation
//! (对账) from the command line — the open window and the recent ones, closing a past
//! window into its report, the report as text or JSON, the settlement file (pain.001) on
//! standard output, the bank's statement (camt.053) imported, and the exceptions queue.
//!
//! The local command line acts as the administrator; `--officer NAME` acts as that operator
//! instead (a clearing officer), so the audit log names the person. Refusals (a window not
//! ended or not closed, an exception resolved already) are printed and exit 1.

use anyhow::Context;
use platform::{Caller, Platform, PlatformError};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ClearingArgs {
    /// Act as this operator (a clearing officer or an administrator), named on the audit
    /// log; without it the local command line acts as the administrator.
    #[arg(long, global = true)]
    officer: Option<String>,
    #[command(subcommand)]
    command: ClearingCommand,
}

#[derive(clap::Subcommand)]
enum ClearingCommand {
    /// The open window (cut-off, what has been posted so far) and the windows before it,
    /// closed (gross, fees, net, digest) or not.
    Windows {
        /// How many windows before the open one.
        #[arg(long, default_value_t = 14)]
        days: usize,
    },
    /// Close a past window (YYYY-MM-DD, the date its cut-off falls on) into its report, once;
    /// closing again prints the same report.
    Close { window: String },
    /// A closed window's report per merchant and category.
    Report {
        window: String,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A closed window's settlement file (ISO 20022 pain.001.001.09) on standard output:
    /// `citycard clearing settlement 2026-11-26 > settlement.xml`.
    Settlement {
        window: String,
        /// When the bank executes the transfers (YYYY-MM-DD) [default: the day after the
        /// window].
        #[arg(long)]
        execution_date: Option<String>,
    },
    /// Import the bank's statement (camt.053) of the company's account and reconcile it;
    /// the same file again changes nothing.
    ImportStatement { file: PathBuf },
    /// The exceptions queue, oldest first.
    Exceptions {
        /// Only those still open.
        #[arg(long)]
        open: bool,
    },
    /// Resolve an exception with a note saying what was done (audited).
    Resolve {
        id: i64,
        #[arg(long)]
        note: String,
    },
}

fn yuan(fen: i64) -> String {
    ledger::Amount(fen).yuan()
}

fn refused(e: PlatformError) -> anyhow::Result<ExitCode> {
    match e {
        PlatformError::Conflict(m) | PlatformError::NotFound(m) => {
            eprintln!("refused: {m}");
            Ok(ExitCode::FAILURE)
        }
        e => Err(e.into()),
    }
}

fn print_report(r: &platform::clearing::WindowReport) {
    println!(
        "window {}  closed {} by {}  digest {}",
        r.window,
        platform::clock::format_ms(r.closed_ms),
        r.closed_by,
        r.digest
    );
    println!(
        "  {:<20} {:<14} {:>8} {:>14} {:>10} {:>14}",
        "merchant", "category", "count", "gross", "fee", "net"
    );
    for l in &r.lines {
        println!(
            "  {:<20} {:<14} {:>8} {:>14} {:>10} {:>14}",
            l.merchant,
            l.category,
            l.count,
            yuan(l.gross_fen),
            yuan(l.fee_fen),
            yuan(l.net_fen)
        );
    }
    println!(
        "  {:<20} {:<14} {:>8} {:>14} {:>10} {:>14}",
        "total",
        "",
        r.lines.iter().map(|l| l.count).sum::<i64>(),
        yuan(r.gross_fen),
        yuan(r.fee_fen),
        yuan(r.net_fen)
    );
}

fn print_exception(e: &store::ReconciliationExceptionRow) {
    let fen = |f: Option<i64>| f.map(yuan).unwrap_or_else(|| "-".into());
    print!(
        "exception {:>6}  {:<8} {:<16} statement {}  e2e {}  ref {}  sent {}  booked {}  raised {}",
        e.id,
        e.state,
        e.kind,
        e.statement_id,
        e.end_to_end_id.as_deref().unwrap_or("-"),
        e.reference.as_deref().unwrap_or("-"),
        fen(e.sent_fen),
        fen(e.booked_fen),
        platform::clock::format_ms(e.created_ms)
    );
    if e.state == "resolved" {
        print!(
            "  resolved by {} at {}: {}",
            e.resolved_by.as_deref().unwrap_or("-"),
            e.resolved_ms
                .map(platform::clock::format_ms)
                .unwrap_or_default(),
            e.resolution.as_deref().unwrap_or("")
        );
    }
    println!();
}

pub async fn run(args: ClearingArgs, p: &Platform) -> anyhow::Result<ExitCode> {
    let c = match &args.officer {
        Some(name) => p.operator_caller(name, "cli").await?,
        None => Caller::cli("cli"),
    };
    match args.command {
        ClearingCommand::Windows { days } => {
            let s = p.clearing_status(&c, days).await?;
            let o = &s.open;
            let r = o.running.unwrap_or_default();
            println!(
                "open window {}  cut-off {}  purchases {} ({} yuan)  online payments {} ({} yuan)  gross so far {} yuan",
                o.window,
                platform::clock::format_ms(o.cut_off_ms),
                r.purchases,
                yuan(r.purchases_fen),
                r.movements,
                yuan(r.movements_fen),
                yuan(o.gross_fen())
            );
            for w in &s.recent {
                match &w.closed {
                    Some(cl) => println!(
                        "window {}  closed      {}  count {}  gross {}  fee {}  net {}  digest {}",
                        w.window,
                        platform::clock::format_ms(cl.window.closed_ms),
                        cl.count,
                        yuan(cl.gross_fen),
                        yuan(cl.fee_fen),
                        yuan(cl.net_fen),
                        cl.window.digest.chars().take(16).collect::<String>()
                    ),
                    None => println!(
                        "window {}  not closed  count {}  gross so far {}",
                        w.window,
                        w.count(),
                        yuan(w.gross_fen())
                    ),
                }
            }
        }
        ClearingCommand::Close { window } => match p.close_window(&c, &window).await {
            Ok(r) => print_report(&r),
            Err(e) => return refused(e),
        },
        ClearingCommand::Report { window, json } => match p.window_report(&c, &window).await {
            Ok(r) if json => println!("{}", serde_json::to_string_pretty(&r)?),
            Ok(r) => print_report(&r),
            Err(e) => return refused(e),
        },
        ClearingCommand::Settlement {
            window,
            execution_date,
        } => {
            let day = match execution_date {
                Some(d) => platform::production::parse_day(&d)?,
                None => {
                    let w = ledger::WindowId::parse(&window)
                        .with_context(|| format!("window {window:?}"))?;
                    platform::production::parse_day(&w.next().to_string())?
                }
            };
            match p.settlement_file(&c, &window, day).await {
                Ok((xml, left_out)) => {
                    print!("{xml}");
                    if !left_out.is_empty() {
                        eprintln!(
                            "left out (no merchant registration): {}",
                            left_out.join(", ")
                        );
                    }
                }
                Err(e) => return refused(e),
            }
        }
        ClearingCommand::ImportStatement { file } => {
            let xml = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let r = match p.import_statement(&c, &xml).await {
                Ok(r) => r,
                Err(e) => return refused(e),
            };
            println!(
                "statement {} of account {}{}: {} entries, {} matched, {} exception(s)",
                r.statement_id,
                r.account,
                if r.already_imported {
                    " (imported before: nothing recorded again)"
                } else {
                    ""
                },
                r.entries,
                r.matched,
                r.exceptions.len()
            );
            for e in &r.exceptions {
                print_exception(e);
            }
        }
        ClearingCommand::Exceptions { open } => {
            for e in p
                .reconciliation_exceptions(&c, open.then_some("open"))
                .await?
            {
                print_exception(&e);
            }
        }
        ClearingCommand::Resolve { id, note } => match p.resolve_exception(&c, id, &note).await {
            Ok(e) => print_exception(&e),
            Err(e) => return refused(e),
        },
    }
    Ok(ExitCode::SUCCESS)
}
