//! `citycard ledger`: prove the books (recompute every balance from the postings), show a
//! card's or a resident's balances, and export the journal for Beancount.

use anyhow::bail;
use platform::{Caller, Platform};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum LedgerCommand {
    /// Recompute every account's balance and reservation from its postings and check that
    /// every transfer balances; exit 0 when all agree, 1 naming the first mismatch.
    Check,
    /// Balances (yuan) of one card, or of a resident's online account and cards.
    Balances {
        /// A 16-digit card number.
        #[arg(
            long,
            conflicts_with = "resident_id",
            required_unless_present = "resident_id"
        )]
        card: Option<String>,
        /// A resident's ID number (the read is audited).
        #[arg(long)]
        resident_id: Option<String>,
    },
    /// Export the journal as a Beancount file: an open directive per account, one
    /// transaction per posted transfer, CNY as decimal yuan, points as the POINTS commodity.
    Export {
        #[arg(long)]
        beancount: PathBuf,
    },
}

fn yuan(fen: i64) -> String {
    ledger::Amount(fen).yuan()
}

pub async fn run(cmd: LedgerCommand, p: &Platform) -> anyhow::Result<ExitCode> {
    let caller = Caller::cli("cli");
    match cmd {
        LedgerCommand::Check => {
            let c = p.ledger_check().await?;
            match c.mismatch {
                None => {
                    println!(
                        "ledger intact: {} accounts, {} transfers, {} postings; every balance equals its postings and every transfer balances",
                        c.accounts, c.transfers, c.postings
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(m) => {
                    eprintln!("ledger check FAILED: {m}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        LedgerCommand::Balances { card, resident_id } => {
            let cards = match (card, resident_id) {
                (Some(n), _) => vec![p.card_balances(&caller, &n).await?],
                (None, Some(id)) => {
                    let r = p.resident_balances(&caller, &id).await?;
                    println!(
                        "online account: {} CNY (reserved {})",
                        yuan(r.online_fen),
                        yuan(r.online_reserved_fen)
                    );
                    r.cards
                }
                (None, None) => bail!("give --card or --resident-id"),
            };
            for c in cards {
                println!(
                    "card {}: e-purse {} CNY, pending load {} CNY, reserved {}",
                    c.number,
                    yuan(c.epurse_fen),
                    yuan(c.pending_load_fen),
                    yuan(c.reserved_fen)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Export { beancount } => {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&beancount)?);
            let n = p.ledger_export_beancount(&mut f).await?;
            std::io::Write::flush(&mut f)?;
            eprintln!("{n} transactions written to {}", beancount.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
