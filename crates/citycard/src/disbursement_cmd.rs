//! `citycard disbursements`: a department's benefit batches (待遇发放) from the command line —
//! submit a CSV file as one officer, decide as a second (four eyes), resume a payment, show
//! the per-line report, book a department's funding, and show what a citizen received.

use anyhow::Context;
use platform::{Caller, Platform};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum DisbursementsCommand {
    /// Submit a batch file (CSV: id_number,amount,benefit[,earmark]) as a department officer.
    Submit {
        /// The submitting officer's username (a department officer).
        #[arg(long)]
        officer: String,
        /// What the batch is, e.g. "2026-11 低保".
        #[arg(long)]
        label: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// The second officer's decision: approve (and pay) or reject.
    Decide {
        /// The deciding officer's username (not the submitter; same department, or an
        /// administrator).
        #[arg(long)]
        officer: String,
        #[arg(long)]
        batch: i64,
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        approve: bool,
        #[arg(long)]
        reject: bool,
    },
    /// Pay what is still pending of an approved batch (after an interruption); nothing is paid
    /// twice.
    Pay {
        #[arg(long)]
        officer: String,
        #[arg(long)]
        batch: i64,
    },
    /// Batches, newest first, or one batch with its per-line report.
    Show {
        #[arg(long)]
        batch: Option<i64>,
    },
    /// Book a department's prefunding, which arrived at the company's account at a bank.
    Fund {
        /// Department code (civil_affairs, hr_social_security, …).
        #[arg(long)]
        department: String,
        /// Yuan, e.g. 100000.00.
        #[arg(long)]
        amount: String,
        /// Idempotency key (the same key books once).
        #[arg(long)]
        key: String,
        #[arg(long, default_value = "ICBC")]
        bank: String,
    },
    /// What a citizen received (the read is audited).
    Received {
        #[arg(long)]
        id_number: String,
    },
}

fn yuan(fen: i64) -> String {
    ledger::Amount(fen).yuan()
}

fn print_batch(b: &platform::disbursements::DisbursementView) {
    println!(
        "batch {:>6}  {:<20} {:<10} {:<24} lines {} (paid {}, rejected {}, pending {})  paid {} of {} yuan",
        b.id,
        b.department,
        b.state,
        b.label,
        b.lines,
        b.paid_lines,
        b.rejected_lines,
        b.pending_lines,
        yuan(b.paid_fen),
        yuan(b.total_fen)
    );
}

pub async fn run(cmd: DisbursementsCommand, p: &Platform) -> anyhow::Result<ExitCode> {
    let cli = Caller::cli("cli");
    match cmd {
        DisbursementsCommand::Submit {
            officer,
            label,
            file,
        } => {
            let who = p.operator_caller(&officer, "cli").await?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let (b, created) = p.submit_disbursement(&who, &label, &bytes).await?;
            if !created {
                println!("this file was submitted before:");
            }
            print_batch(&b);
            println!(
                "a second officer decides: citycard disbursements decide --batch {} --approve --officer …",
                b.id
            );
        }
        DisbursementsCommand::Decide {
            officer,
            batch,
            approve,
            reject: _,
        } => {
            let who = p.operator_caller(&officer, "cli").await?;
            print_batch(&p.decide_disbursement(&who, batch, approve).await?);
        }
        DisbursementsCommand::Pay { officer, batch } => {
            let who = p.operator_caller(&officer, "cli").await?;
            print_batch(&p.pay_disbursement(&who, batch).await?);
        }
        DisbursementsCommand::Show { batch: None } => {
            for b in p.disbursements(&cli, 100).await? {
                print_batch(&b);
            }
        }
        DisbursementsCommand::Show { batch: Some(id) } => {
            print_batch(&p.disbursement(&cli, id).await?);
            let mut after = 0;
            loop {
                let page = p.disbursement_lines(&cli, id, after, 1_000).await?;
                for l in &page {
                    println!(
                        "  line {:>6}  {:<20} {:<18} {:>12}  {:<8} {}",
                        l.line,
                        l.recipient.as_deref().unwrap_or("-"),
                        l.benefit.as_deref().unwrap_or("-"),
                        yuan(l.amount_fen),
                        l.outcome,
                        l.reason.as_deref().unwrap_or("")
                    );
                }
                match page.last() {
                    Some(l) if page.len() == 1_000 => after = l.line,
                    _ => break,
                }
            }
        }
        DisbursementsCommand::Fund {
            department,
            amount,
            key,
            bank,
        } => {
            let fen = ledger::Amount::parse_yuan(&amount)
                .map_err(|e| anyhow::anyhow!("amount {amount:?}: {e}"))?;
            anyhow::ensure!(fen.0 > 0, "amount must be more than 0");
            let t = p
                .fund_department(&cli, &department, &bank, fen, &key)
                .await?;
            println!(
                "{department} funded with {} yuan (transfer {t})",
                fen.yuan()
            );
        }
        DisbursementsCommand::Received { id_number } => {
            for r in p.resident_disbursements(&cli, &id_number).await? {
                println!(
                    "batch {:>6}  {:<20} {:<16} {:>12} yuan  {}{}",
                    r.batch_id,
                    r.department,
                    r.benefit_zh,
                    yuan(r.amount_fen),
                    r.outcome,
                    r.earmark
                        .map(|e| format!(" (earmarked: {e})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
