//! Clearing windows (清分) and settlement files (结算): closing a past window computes, from
//! the offline purchases posted into it and the online payments to merchants posted into it
//! (e-code payments, bill payments to billers — a biller is a merchant — and, as negative
//! amounts, their refunds and reversals), each merchant's gross, fees (the city's fee schedule
//! by merchant category, `clearing::fees`; a refund takes no fee and returns none) and net,
//! and stores the report once — closing again returns the same report. A report line is one
//! merchant and category, whatever the source: its count is the purchases, payments, refunds
//! and reversals it sums. A closed window's settlement instructions go to the partner bank as
//! an ISO 20022 `pain.001.001.09` file (`clearing::pain001`).

use crate::{Caller, Platform, PlatformError, Result};
use clearing::fees::{FeeRule, FeeSchedule, Scope};
use clearing::positions::Positions;
use store::{
    BankStatementRow, ClearingLineRow, ClearingWindowRow, ReconciliationExceptionRow, Role,
    SettlementInstructionRow,
};

/// A bank statement file is at most 20 MiB (a day of a busy account is far less).
pub const STATEMENT_BYTES_MAX: usize = 20 * 1024 * 1024;
/// A resolution note is at most this many characters.
pub const RESOLUTION_CHARS_MAX: usize = 500;

/// What importing a statement found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementImport {
    pub statement_id: String,
    pub account: String,
    pub entries: i64,
    pub matched: i64,
    /// The exceptions this statement raised (all of them, also when imported before).
    pub exceptions: Vec<ReconciliationExceptionRow>,
    /// The statement was imported before with the same content: nothing was recorded again.
    pub already_imported: bool,
}

/// The city's default fee schedule (in force since 2026-01-01): transit 0.30 %, shops 0.60 %,
/// hospitals and utilities 0.10 %, canteens, libraries and government none. Migration 0033
/// seeds the kept schedule with these rules (a test checks they agree); windows are closed
/// with the kept one ([`Platform::fee_schedule`]).
pub fn default_fee_schedule() -> FeeSchedule {
    let from = time::macros::date!(2026 - 01 - 01);
    let rule = |c: &str, bp: i64| FeeRule {
        scope: Scope::Category(c.into()),
        rate_bp: bp,
        fixed_fen: 0,
        effective_from: from,
    };
    FeeSchedule::new(vec![
        rule("transit", 30),
        rule("shop", 60),
        rule("taxi", 30),
        rule("bike", 30),
        rule("hospital", 10),
        rule("utility", 10),
    ])
    .expect("the default schedule is valid")
}

/// A window's report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WindowReport {
    pub window: String,
    pub closed_ms: i64,
    pub closed_by: String,
    /// SM3 over the canonical lines: the report is the same however often it is read.
    pub digest: String,
    pub lines: Vec<ReportLine>,
    pub gross_fen: i64,
    pub fee_fen: i64,
    pub net_fen: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReportLine {
    pub merchant: String,
    pub category: String,
    pub count: i64,
    pub gross_fen: i64,
    pub fee_fen: i64,
    pub net_fen: i64,
}

pub(crate) fn may_clear(caller: &Caller) -> Result<()> {
    match caller.role {
        Role::Administrator | Role::ClearingOfficer => Ok(()),
        _ => Err(PlatformError::Forbidden(
            "clearing windows are closed by clearing officers".into(),
        )),
    }
}

fn digest(lines: &[ClearingLineRow]) -> String {
    use sm3::Digest;
    let mut h = sm3::Sm3::new();
    for l in lines {
        h.update(
            format!(
                "{}|{}|{}|{}|{}|{}|{}\n",
                l.window_id, l.merchant, l.category, l.count, l.gross_fen, l.fee_fen, l.net_fen
            )
            .as_bytes(),
        );
    }
    hex::encode_upper(h.finalize())
}

/// Reports made for one close before it gives up (each remade because postings committed
/// meanwhile; past the cut-off they stop coming).
const CLOSE_ATTEMPTS: u32 = 3;

impl Platform {
    /// Closes a clearing window that has ended: the report per merchant and category, stored
    /// once. A window still open (today's) is refused; closing again returns the stored report.
    pub async fn close_window(&self, caller: &Caller, window: &str) -> Result<WindowReport> {
        may_clear(caller)?;
        let day = time::Date::parse(
            window,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .map_err(|_| {
            PlatformError::invalid("window", "a window is its closing date, YYYY-MM-DD")
        })?;
        let current = self.windows.window_of(self.clock.now_ms()).to_string();
        if window >= current.as_str() {
            return Err(PlatformError::Conflict(format!(
                "window {window} has not ended (the open window is {current}); it closes at the \
                 cut-off"
            )));
        }
        // A posting stamped before the cut-off may commit while the report is made: the store
        // counts the window again under the writer's lock and refuses the close then, and the
        // report is made again (later postings go to the next window).
        let mut attempt = 0;
        while self.store.clearing_window(window).await?.is_none() {
            attempt += 1;
            if let Some(why) = self.close_once(caller, window, day).await? {
                if attempt >= CLOSE_ATTEMPTS {
                    return Err(PlatformError::Conflict(why));
                }
                tracing::info!(window, attempt, %why, "clearing close made again");
            }
        }
        self.window_report(caller, window).await
    }

    /// Makes the window's report from its postings and stores it once (also done when another
    /// close stored it first); `Some(why)` when a posting committed meanwhile and the store
    /// refused the report.
    async fn close_once(
        &self,
        caller: &Caller,
        window: &str,
        day: time::Date,
    ) -> Result<Option<String>> {
        let categories: std::collections::HashMap<String, String> = self
            .store
            .merchants()
            .await?
            .into_iter()
            .map(|m| (m.code, m.category))
            .collect();
        let category = |merchant: &str| {
            categories
                .get(merchant)
                .cloned()
                .unwrap_or_else(|| "unregistered".into())
        };
        // Summed in the database per merchant and amount (a fee depends on nothing else),
        // so a window of ten million purchases comes back as a few thousand groups.
        let schedule = self.fee_schedule().await?;
        let mut positions = Positions::default();
        let (mut purchases, mut payments, mut returns) = (0i64, 0i64, 0i64);
        for g in self.store.clearing_window_sums(window).await? {
            let amount_fen = match g.kind.as_str() {
                "purchase" => {
                    purchases += g.count;
                    g.amount_fen
                }
                "payment" => {
                    payments += g.count;
                    g.amount_fen
                }
                // A refund lands in the window it is posted in, whichever window its
                // payment was in.
                "refund" | "reversal" => {
                    returns += g.count;
                    -g.amount_fen
                }
                other => {
                    return Err(PlatformError::Unexpected(format!(
                        "{} money movement(s) of kind {other} to {} are in clearing window \
                         {window}",
                        g.count, g.merchant
                    )));
                }
            };
            positions.add(
                &schedule,
                &g.merchant,
                &category(&g.merchant),
                day,
                amount_fen,
                g.count as u64,
            );
        }
        let (per, total) = positions.finish();
        let lines: Vec<ClearingLineRow> = per
            .into_iter()
            .map(|((merchant, category), p)| ClearingLineRow {
                window_id: window.into(),
                merchant,
                category,
                count: p.count as i64,
                gross_fen: p.gross_fen,
                fee_fen: p.fee_fen,
                net_fen: p.net_fen,
            })
            .collect();
        let now = self.clock.now_ms();
        let closed = self
            .store
            .clearing_close(
                &ClearingWindowRow {
                    window_id: window.into(),
                    closed_ms: now,
                    closed_by: caller.actor(),
                    digest: digest(&lines),
                },
                &lines,
                purchases + payments + returns,
                caller.draft(
                    "clearing.close",
                    format!("window:{window}"),
                    format!(
                        "{purchases} purchase(s), {payments} online payment(s), {returns} \
                         refund(s) or reversal(s), gross {} fen, fees {} fen, {} line(s)",
                        total.gross_fen,
                        total.fee_fen,
                        lines.len()
                    ),
                ),
                now,
            )
            .await;
        match closed {
            Ok(_) => Ok(None),
            Err(store::StoreError::Conflict(why)) => Ok(Some(why)),
            Err(e) => Err(e.into()),
        }
    }

    /// A closed window's report.
    pub async fn window_report(&self, caller: &Caller, window: &str) -> Result<WindowReport> {
        match caller.role {
            Role::Administrator | Role::ClearingOfficer | Role::Auditor => {}
            _ => {
                return Err(PlatformError::Forbidden(
                    "clearing reports are for clearing and audit".into(),
                ));
            }
        }
        let w = self
            .store
            .clearing_window(window)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("closed window {window}")))?;
        let rows = self.store.clearing_lines(window).await?;
        if digest(&rows) != w.digest {
            return Err(PlatformError::Unexpected(format!(
                "the stored report of window {window} does not match its digest"
            )));
        }
        let lines: Vec<ReportLine> = rows
            .into_iter()
            .map(|l| ReportLine {
                merchant: l.merchant,
                category: l.category,
                count: l.count,
                gross_fen: l.gross_fen,
                fee_fen: l.fee_fen,
                net_fen: l.net_fen,
            })
            .collect();
        Ok(WindowReport {
            window: w.window_id,
            closed_ms: w.closed_ms,
            closed_by: w.closed_by,
            digest: w.digest,
            gross_fen: lines.iter().map(|l| l.gross_fen).sum(),
            fee_fen: lines.iter().map(|l| l.fee_fen).sum(),
            net_fen: lines.iter().map(|l| l.net_fen).sum(),
            lines,
        })
    }

    /// The settlement file of a closed window: one credit transfer per registered merchant
    /// with a positive net, to its settlement account, from the company's account at the bank.
    /// Merchants without a registration are left out and named.
    pub async fn settlement_file(
        &self,
        caller: &Caller,
        window: &str,
        execution_date: time::Date,
    ) -> Result<(String, Vec<String>)> {
        may_clear(caller)?;
        let report = self.window_report(caller, window).await?;
        let accounts: std::collections::HashMap<String, store::MerchantRow> = self
            .store
            .merchants()
            .await?
            .into_iter()
            .map(|m| (m.code.clone(), m))
            .collect();
        let mut net: std::collections::BTreeMap<String, i64> = Default::default();
        for l in &report.lines {
            *net.entry(l.merchant.clone()).or_default() += l.net_fen;
        }
        let mut instructions = Vec::new();
        let mut left_out = Vec::new();
        let mut paid_merchants = Vec::new();
        for (merchant, fen) in net.into_iter().filter(|(_, f)| *f > 0) {
            match accounts.get(&merchant) {
                Some(m) => {
                    paid_merchants.push(merchant.clone());
                    instructions.push(clearing::pain001::Instruction {
                        end_to_end_id: format!("W{}-{}", window.replace('-', ""), merchant)
                            .chars()
                            .take(35)
                            .collect(),
                        creditor_name: m.name.clone(),
                        creditor_account: m.settlement_account.clone(),
                        amount_fen: fen,
                        remittance: format!("citycard clearing window {window}"),
                    })
                }
                None => left_out.push(merchant),
            }
        }
        if instructions.is_empty() {
            return Err(PlatformError::Conflict(format!(
                "window {window} owes no registered merchant anything"
            )));
        }
        let doc = clearing::pain001::Initiation {
            message_id: format!("STL-{}", window.replace('-', "")),
            created: time::OffsetDateTime::from_unix_timestamp(self.clock.now_ms() / 1000)
                .map(|t| {
                    let t = t.to_offset(time::macros::offset!(+8));
                    format!(
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+08:00",
                        t.year(),
                        u8::from(t.month()),
                        t.day(),
                        t.hour(),
                        t.minute(),
                        t.second()
                    )
                })
                .map_err(|e| PlatformError::Unexpected(e.to_string()))?,
            debtor_name: "郑州市民卡有限公司".into(),
            debtor_account: "1702020109000012345".into(),
            debtor_agent_bic: "ICBKCNBJHNN".into(),
            execution_date,
            instructions,
        };
        let xml = doc
            .to_xml()
            .map_err(|e| PlatformError::Unexpected(format!("settlement file: {e}")))?;
        // Kept for reconciliation with the bank's statement (once, however often made).
        let date = format!(
            "{:04}-{:02}-{:02}",
            execution_date.year(),
            u8::from(execution_date.month()),
            execution_date.day()
        );
        let kept: Vec<SettlementInstructionRow> = doc
            .instructions
            .iter()
            .zip(paid_merchants)
            .map(|(i, merchant)| SettlementInstructionRow {
                end_to_end_id: i.end_to_end_id.clone(),
                window_id: window.to_owned(),
                merchant,
                amount_fen: i.amount_fen,
                execution_date: date.clone(),
                state: "sent".into(),
            })
            .collect();
        self.store.settlement_instructions_record(&kept).await?;
        self.audit(caller.draft(
            "clearing.settlement_file",
            format!("window:{window}"),
            format!("{} transfer(s)", doc.instructions.len()),
        ))
        .await?;
        Ok((xml, left_out))
    }

    /// Imports the bank's statement (camt.053) of the company's account and reconciles it with
    /// the settlement instructions due by its last booking day: matched instructions are closed;
    /// amount differences, instructions the bank has not booked and debits that answer no
    /// instruction go to the exceptions queue. Importing the same file again changes nothing
    /// and answers the same; another file under the same statement id is refused.
    pub async fn import_statement(&self, caller: &Caller, xml: &str) -> Result<StatementImport> {
        may_clear(caller)?;
        if xml.len() > STATEMENT_BYTES_MAX {
            return Err(PlatformError::TooLarge {
                what: format!("a statement of {} bytes", xml.len()),
                limit: format!("{STATEMENT_BYTES_MAX} bytes"),
            });
        }
        let statement = clearing::camt053::parse(xml).map_err(|e| {
            PlatformError::invalid("statement", format!("not a camt.053 statement: {e}"))
        })?;
        let digest = {
            use sm3::Digest;
            hex::encode_upper(sm3::Sm3::digest(xml.as_bytes()))
        };
        if let Some(done) = self.store.bank_statement(&statement.id).await? {
            if done.digest != digest {
                return Err(PlatformError::Conflict(format!(
                    "bank statement {} was imported before with other content",
                    statement.id
                )));
            }
            return self.statement_result(done, true).await;
        }
        let last_day = statement
            .entries
            .iter()
            .map(|e| e.booked)
            .max()
            .ok_or_else(|| PlatformError::invalid("statement", "the statement has no entries"))?;
        let due = self
            .store
            .settlement_instructions_due(&format!(
                "{:04}-{:02}-{:02}",
                last_day.year(),
                u8::from(last_day.month()),
                last_day.day()
            ))
            .await?;
        let instructions: Vec<clearing::pain001::Instruction> = due
            .iter()
            .map(|d| clearing::pain001::Instruction {
                end_to_end_id: d.end_to_end_id.clone(),
                creditor_name: String::new(),
                creditor_account: String::new(),
                amount_fen: d.amount_fen,
                remittance: String::new(),
            })
            .collect();
        let mut matched = Vec::new();
        let mut exceptions = Vec::new();
        let now = self.clock.now_ms();
        let exception = |kind: &str,
                         e2e: Option<String>,
                         reference: Option<String>,
                         sent: Option<i64>,
                         booked: Option<i64>| ReconciliationExceptionRow {
            id: 0,
            statement_id: statement.id.clone(),
            kind: kind.into(),
            end_to_end_id: e2e,
            reference,
            sent_fen: sent,
            booked_fen: booked,
            state: "open".into(),
            resolution: None,
            resolved_by: None,
            resolved_ms: None,
            created_ms: now,
        };
        for item in clearing::reconcile::reconcile(&instructions, &statement.entries) {
            use clearing::reconcile::Item;
            match item {
                Item::Matched { end_to_end_id, .. } => matched.push(end_to_end_id),
                Item::AmountMismatch {
                    end_to_end_id,
                    sent_fen,
                    booked_fen,
                    reference,
                } => exceptions.push(exception(
                    "amount_mismatch",
                    Some(end_to_end_id),
                    Some(reference),
                    Some(sent_fen),
                    Some(booked_fen),
                )),
                Item::Missing {
                    end_to_end_id,
                    sent_fen,
                } => exceptions.push(exception(
                    "missing",
                    Some(end_to_end_id),
                    None,
                    Some(sent_fen),
                    None,
                )),
                Item::Unexpected {
                    reference,
                    end_to_end_id,
                    booked_fen,
                } => exceptions.push(exception(
                    "unexpected",
                    end_to_end_id,
                    Some(reference),
                    None,
                    Some(booked_fen),
                )),
            }
        }
        let row = BankStatementRow {
            id: statement.id.clone(),
            account: statement.account.clone(),
            digest,
            entries: statement.entries.len() as i64,
            matched: matched.len() as i64,
            imported_ms: now,
            imported_by: caller.username.clone(),
        };
        self.store
            .statement_import(
                &row,
                &matched,
                &exceptions,
                caller.draft(
                    "clearing.statement_import",
                    format!("statement:{}", statement.id),
                    format!(
                        "{} entries, {} matched, {} exception(s)",
                        row.entries,
                        row.matched,
                        exceptions.len()
                    ),
                ),
                now,
            )
            .await?;
        self.statement_result(row, false).await
    }

    async fn statement_result(
        &self,
        row: BankStatementRow,
        already_imported: bool,
    ) -> Result<StatementImport> {
        let exceptions = self
            .store
            .reconciliation_exceptions(None, 200_000)
            .await?
            .into_iter()
            .filter(|e| e.statement_id == row.id)
            .collect();
        Ok(StatementImport {
            statement_id: row.id,
            account: row.account,
            entries: row.entries,
            matched: row.matched,
            exceptions,
            already_imported,
        })
    }

    /// The exceptions queue, oldest first: all, or `open` / `resolved` only.
    pub async fn reconciliation_exceptions(
        &self,
        caller: &Caller,
        state: Option<&str>,
    ) -> Result<Vec<ReconciliationExceptionRow>> {
        may_clear(caller)?;
        if let Some(s) = state
            && !matches!(s, "open" | "resolved")
        {
            return Err(PlatformError::invalid("state", "open or resolved"));
        }
        Ok(self.store.reconciliation_exceptions(state, 10_000).await?)
    }

    /// An operator resolves an exception with a note saying what was done (the bank corrected
    /// the amount, the transfer was re-sent, the debit was a bank fee booked to suspense…).
    /// Audited; a resolved exception stays resolved.
    pub async fn resolve_exception(
        &self,
        caller: &Caller,
        id: i64,
        resolution: &str,
    ) -> Result<ReconciliationExceptionRow> {
        may_clear(caller)?;
        let note = resolution.trim();
        if note.is_empty() {
            return Err(PlatformError::invalid(
                "resolution",
                "say how the difference was resolved",
            ));
        }
        if note.chars().count() > RESOLUTION_CHARS_MAX {
            return Err(PlatformError::invalid(
                "resolution",
                format!("at most {RESOLUTION_CHARS_MAX} characters"),
            ));
        }
        let now = self.clock.now_ms();
        Ok(self
            .store
            .reconciliation_exception_resolve(
                id,
                note,
                &caller.username,
                caller.draft(
                    "clearing.exception_resolve",
                    format!("reconciliation_exception:{id}"),
                    note.to_owned(),
                ),
                now,
            )
            .await?)
    }
}
