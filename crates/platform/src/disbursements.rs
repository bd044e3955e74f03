//! Disbursements (待遇发放): a department officer submits a batch of benefits (the file format
//! and checks are `ledger::disbursement`), a second officer approves it (four eyes), and the
//! platform pays each line from the department's prefunded account into the citizen's online
//! account or an earmarked sub-account, one ledger transfer per line under a key derived from
//! the batch and line, so paying again after an interruption posts nothing twice. Every line
//! ends paid or rejected with its reason; each citizen can be told what they received.

use crate::{Caller, Platform, PlatformError, Result};
use ledger::disbursement::{self, Benefit, line_key};
use ledger::{
    AccountKey, AccountKind, Amount, IdempotencyKey, Owner, Transfer, TransferKind, Unit,
};
use store::ledger::PostOutcome;
use store::{
    DisbursementLineRow, DisbursementRow, LineOutcome, NewDisbursement, NewDisbursementLine, Role,
    StoreError,
};

/// Lines paid per ledger batch (one database transaction each).
const PAY_CHUNK: usize = 1_000;

/// A batch as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DisbursementView {
    pub id: i64,
    pub department: String,
    pub label: String,
    /// submitted, approved, rejected, paid
    pub state: String,
    pub submitted_by: i64,
    pub submitted_ms: i64,
    pub decided_by: Option<i64>,
    pub decided_ms: Option<i64>,
    pub lines: i64,
    pub pending_lines: i64,
    pub paid_lines: i64,
    pub paid_fen: i64,
    pub rejected_lines: i64,
    pub total_fen: i64,
}

impl From<DisbursementRow> for DisbursementView {
    fn from(r: DisbursementRow) -> Self {
        DisbursementView {
            id: r.id,
            department: r.department,
            label: r.label,
            state: r.state,
            submitted_by: r.submitted_by,
            submitted_ms: r.submitted_ms,
            decided_by: r.decided_by,
            decided_ms: r.decided_ms,
            lines: r.lines,
            pending_lines: r.pending_lines,
            paid_lines: r.paid_lines,
            paid_fen: r.paid_fen,
            rejected_lines: r.rejected_lines,
            total_fen: r.total_fen,
        }
    }
}

/// One line of the result report; the recipient masked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DisbursementLineView {
    pub line: i64,
    /// The recipient's ID number masked, when the line names a resident of the database.
    pub recipient: Option<String>,
    pub benefit: Option<String>,
    pub earmark: Option<String>,
    pub amount_fen: i64,
    /// pending, paid, rejected
    pub outcome: String,
    pub reason: Option<String>,
    pub transfer_id: Option<i64>,
}

/// What a citizen received (or will receive once the batch is paid).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReceivedView {
    pub batch_id: i64,
    pub department: String,
    pub label: String,
    pub benefit: String,
    /// The benefit's Chinese name.
    pub benefit_zh: String,
    pub earmark: Option<String>,
    pub amount_fen: i64,
    /// paid or pending
    pub outcome: String,
    pub paid_ms: Option<i64>,
}

fn conflict(e: StoreError) -> PlatformError {
    match e {
        StoreError::Conflict(m) => PlatformError::Conflict(m),
        e => e.into(),
    }
}

fn department_of(caller: &Caller) -> Result<String> {
    match (caller.role, caller.department, caller.operator_id) {
        (Role::DepartmentOfficer, Some(d), Some(_)) => Ok(d.as_str().to_string()),
        _ => Err(PlatformError::Forbidden(
            "disbursement batches are submitted by a department's officer".into(),
        )),
    }
}

/// The department's prefunded account, where its disbursements are paid from.
pub fn funding_account(department: &str) -> Result<AccountKey> {
    AccountKey::new(
        AccountKind::DepartmentFunding,
        Owner::Department(department.to_string()),
        Unit::Cny,
    )
    .map_err(|e| PlatformError::invalid("department", e.to_string()))
}

fn recipient_account(resident_id: i64, earmark: Option<&str>) -> Result<AccountKey> {
    match earmark {
        None => Ok(AccountKey::citizen_online(resident_id)),
        Some(purpose) => AccountKey::new(
            AccountKind::Earmarked,
            Owner::Earmark {
                resident: resident_id,
                purpose: purpose.to_string(),
            },
            Unit::Cny,
        )
        .map_err(|e| PlatformError::invalid("earmark", e.to_string())),
    }
}

impl Platform {
    /// Submits a department's batch file: every line checked (format, GB 11643, a resident
    /// of the database); bad lines are kept as rejected with their reason, good ones wait for
    /// a second officer. The same file twice is the same batch.
    pub async fn submit_disbursement(
        &self,
        caller: &Caller,
        label: &str,
        file: &[u8],
    ) -> Result<(DisbursementView, bool)> {
        let department = department_of(caller)?;
        let submitted_by = caller.operator_id.unwrap_or_default();
        let label = label.trim();
        if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
            return Err(PlatformError::invalid(
                "label",
                "1 to 100 characters without control characters",
            ));
        }
        let parsed = disbursement::parse(file).map_err(|e| match e {
            disbursement::FileError::TooLarge => PlatformError::TooLarge {
                what: "disbursement file".into(),
                limit: format!("{} bytes", disbursement::FILE_BYTES_MAX),
            },
            e => PlatformError::invalid("file", e.to_string()),
        })?;
        let today = self.clock.today();
        let mut lines: Vec<NewDisbursementLine> =
            Vec::with_capacity(parsed.lines.len() + parsed.rejected.len());
        for (line, e) in &parsed.rejected {
            lines.push(NewDisbursementLine {
                line: *line as i64,
                resident_id: None,
                benefit: None,
                earmark: None,
                amount_fen: 0,
                outcome: "rejected".into(),
                reason: Some(e.to_string()),
            });
        }
        for l in &parsed.lines {
            let reject = |reason: String| NewDisbursementLine {
                line: l.line as i64,
                resident_id: None,
                benefit: Some(l.benefit.code().into()),
                earmark: l.earmark.clone(),
                amount_fen: 0,
                outcome: "rejected".into(),
                reason: Some(reason),
            };
            let id = match resident::ResidentId::parse(&l.id_number, today) {
                Ok(id) => id,
                Err(e) => {
                    lines.push(reject(format!("id_number: {e}")));
                    continue;
                }
            };
            let blind = self.vault.blind("id_number", id.as_str());
            match self.store.resident_by_blind(&blind).await? {
                None => lines.push(reject(
                    "no resident with this ID number in the resident base database".into(),
                )),
                Some(r) => lines.push(NewDisbursementLine {
                    line: l.line as i64,
                    resident_id: Some(r.id),
                    benefit: Some(l.benefit.code().into()),
                    earmark: l.earmark.clone(),
                    amount_fen: l.amount.0,
                    outcome: "pending".into(),
                    reason: None,
                }),
            }
        }
        lines.sort_by_key(|l| l.line);
        let digest = {
            use sm3::Digest;
            hex::encode_upper(sm3::Sm3::digest(file))
        };
        let pending = lines.iter().filter(|l| l.outcome == "pending").count();
        let (row, created) = self
            .store
            .disbursement_submit(
                &NewDisbursement {
                    department: department.clone(),
                    label: label.to_string(),
                    digest: digest.clone(),
                    submitted_by,
                },
                &lines,
                caller.draft(
                    "disbursement.submit",
                    format!("department:{department}"),
                    format!(
                        "{} line(s), {pending} to pay, {} rejected, file SM3 {digest}",
                        lines.len(),
                        lines.len() - pending
                    ),
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(conflict)?;
        Ok((row.into(), created))
    }

    async fn disbursement_row(&self, id: i64) -> Result<DisbursementRow> {
        self.store
            .disbursement(id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("disbursement batch {id}")))
    }

    fn may_see_batch(caller: &Caller, row: &DisbursementRow) -> Result<()> {
        match caller.role {
            Role::Administrator | Role::ClearingOfficer | Role::Auditor => Ok(()),
            Role::DepartmentOfficer
                if caller.department.map(|d| d.as_str()) == Some(row.department.as_str()) =>
            {
                Ok(())
            }
            _ => Err(PlatformError::Forbidden(format!(
                "disbursement batch {} belongs to {}",
                row.id, row.department
            ))),
        }
    }

    pub async fn disbursement(&self, caller: &Caller, id: i64) -> Result<DisbursementView> {
        let row = self.disbursement_row(id).await?;
        Self::may_see_batch(caller, &row)?;
        Ok(row.into())
    }

    /// Batches, newest first: a department officer sees their department's.
    pub async fn disbursements(
        &self,
        caller: &Caller,
        limit: u32,
    ) -> Result<Vec<DisbursementView>> {
        let department = match caller.role {
            Role::DepartmentOfficer => Some(department_of(caller)?),
            Role::Administrator | Role::ClearingOfficer | Role::Auditor => None,
            Role::CounterClerk => {
                return Err(PlatformError::Forbidden(
                    "a counter clerk does not see disbursement batches".into(),
                ));
            }
        };
        Ok(self
            .store
            .disbursements(department.as_deref(), limit)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The per-line result report, recipients masked; one audit entry per page read.
    pub async fn disbursement_lines(
        &self,
        caller: &Caller,
        id: i64,
        after_line: i64,
        limit: u32,
    ) -> Result<Vec<DisbursementLineView>> {
        let row = self.disbursement_row(id).await?;
        Self::may_see_batch(caller, &row)?;
        let lines = self.store.disbursement_lines(id, after_line, limit).await?;
        let mut out = Vec::with_capacity(lines.len());
        for l in lines {
            out.push(self.line_view(l).await?);
        }
        self.audit(caller.draft(
            "disbursement.lines.read",
            format!("disbursement:{id}"),
            format!(
                "{} line(s) after {after_line}, recipients masked",
                out.len()
            ),
        ))
        .await?;
        Ok(out)
    }

    async fn line_view(&self, l: DisbursementLineRow) -> Result<DisbursementLineView> {
        let recipient = match l.resident_id {
            None => None,
            Some(rid) => match self.store.resident_by_id(rid).await? {
                None => None,
                Some(r) => {
                    let id = self.vault.open_string(
                        &crate::residents::ctx(&r.id_blind, "id_number"),
                        &r.id_sealed,
                    )?;
                    Some(resident::mask_id_number(&id))
                }
            },
        };
        Ok(DisbursementLineView {
            line: l.line,
            recipient,
            benefit: l.benefit,
            earmark: l.earmark,
            amount_fen: l.amount_fen,
            outcome: l.outcome,
            reason: l.reason,
            transfer_id: l.transfer_id,
        })
    }

    /// The second officer's decision (four eyes): approving pays the batch at once; rejecting
    /// closes it with every line rejected.
    pub async fn decide_disbursement(
        &self,
        caller: &Caller,
        id: i64,
        approve: bool,
    ) -> Result<DisbursementView> {
        let row = self.disbursement_row(id).await?;
        let approver = match (caller.role, caller.operator_id) {
            (Role::DepartmentOfficer | Role::Administrator, Some(op)) => op,
            _ => {
                return Err(PlatformError::Forbidden(
                    "a batch is approved by a second officer of its department or an \
                     administrator"
                        .into(),
                ));
            }
        };
        disbursement::may_approve(
            row.submitted_by,
            approver,
            &row.department,
            caller.department.map(|d| d.as_str()),
        )
        .map_err(|e| PlatformError::Forbidden(e.to_string()))?;
        let decided = self
            .store
            .disbursement_decide(
                id,
                approver,
                approve,
                caller.draft(
                    if approve {
                        "disbursement.approve"
                    } else {
                        "disbursement.reject"
                    },
                    format!("disbursement:{id}"),
                    format!(
                        "{} line(s) pending, {} fen",
                        row.pending_lines, row.total_fen
                    ),
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(conflict)?;
        if !approve {
            return Ok(decided.into());
        }
        self.pay_disbursement(caller, id).await
    }

    /// Pays the pending lines of an approved batch. Resumable: lines already recorded are
    /// skipped, and a line whose transfer was posted before an interruption is found by its key
    /// and recorded, never posted twice. A line the department's funding cannot cover is
    /// rejected with that reason.
    pub async fn pay_disbursement(&self, caller: &Caller, id: i64) -> Result<DisbursementView> {
        let row = self.disbursement_row(id).await?;
        if row.state != "approved" {
            if row.state == "paid" {
                return Ok(row.into());
            }
            return Err(PlatformError::Conflict(format!(
                "disbursement batch {id} is {}: only an approved batch is paid",
                row.state
            )));
        }
        let from_key = funding_account(&row.department)?;
        let mut after = 0;
        loop {
            let page: Vec<DisbursementLineRow> = self
                .store
                .disbursement_lines(id, after, PAY_CHUNK as u32)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.line;
            let n = page.len();
            let pending: Vec<&DisbursementLineRow> =
                page.iter().filter(|l| l.outcome == "pending").collect();
            if !pending.is_empty() {
                let mut keys = vec![from_key.clone()];
                for l in &pending {
                    let rid = l.resident_id.ok_or_else(|| {
                        PlatformError::Unexpected(format!(
                            "pending line {} has no resident",
                            l.line
                        ))
                    })?;
                    keys.push(recipient_account(rid, l.earmark.as_deref())?);
                }
                let accounts = self.ledger_accounts(caller, &keys).await?;
                let from = accounts[0].id;
                let mut transfers = Vec::with_capacity(pending.len());
                for (l, to) in pending.iter().zip(&accounts[1..]) {
                    let benefit = l.benefit.as_deref().and_then(Benefit::parse);
                    transfers.push(Transfer::simple(
                        IdempotencyKey::parse(&line_key(id, l.line as u64))
                            .map_err(|e| PlatformError::Unexpected(e.to_string()))?,
                        TransferKind::Disbursement,
                        format!(
                            "{} {}",
                            row.department,
                            benefit.map_or("benefit", Benefit::code)
                        ),
                        from,
                        to.id,
                        Unit::Cny,
                        Amount(l.amount_fen),
                    ));
                }
                let outcomes = self.transfer_batch(caller, &transfers).await?;
                let results: Vec<LineOutcome> = pending
                    .iter()
                    .zip(outcomes)
                    .map(|(l, o)| match o {
                        PostOutcome::Applied { id: t, .. }
                        | PostOutcome::Duplicate { id: t, .. } => LineOutcome {
                            line: l.line,
                            paid: true,
                            transfer_id: Some(t),
                            reason: None,
                        },
                        PostOutcome::Rejected(ledger::BookError::BelowFloor { .. }) => {
                            LineOutcome {
                                line: l.line,
                                paid: false,
                                transfer_id: None,
                                reason: Some(format!(
                                    "the funding of {} does not cover this line",
                                    row.department
                                )),
                            }
                        }
                        other => LineOutcome {
                            line: l.line,
                            paid: false,
                            transfer_id: None,
                            reason: Some(format!("refused by the ledger: {other:?}")),
                        },
                    })
                    .collect();
                let paid = results.iter().filter(|r| r.paid).count();
                self.store
                    .disbursement_record(
                        id,
                        &results,
                        caller.draft(
                            "disbursement.pay",
                            format!("disbursement:{id}"),
                            format!("{paid} of {} line(s) paid", results.len()),
                        ),
                        self.clock.now_ms(),
                    )
                    .await
                    .map_err(conflict)?;
            }
            if n < PAY_CHUNK {
                break;
            }
        }
        // Marks the batch paid when nothing is pending (also when the last page had nothing).
        let done = self
            .store
            .disbursement_record(
                id,
                &[],
                caller.draft("disbursement.close", format!("disbursement:{id}"), "paid"),
                self.clock.now_ms(),
            )
            .await
            .map_err(conflict)?;
        Ok(done.into())
    }

    /// What a citizen received, by ID number (audited; amounts, departments and benefits only).
    pub async fn resident_disbursements(
        &self,
        caller: &Caller,
        id_number: &str,
    ) -> Result<Vec<ReceivedView>> {
        match caller.role {
            Role::Administrator | Role::CounterClerk | Role::ClearingOfficer | Role::Auditor => {}
            Role::DepartmentOfficer => {
                return Err(PlatformError::Forbidden(
                    "a department officer sees its batches, not a citizen's receipts".into(),
                ));
            }
        }
        let id = resident::ResidentId::parse(id_number, self.clock.today())
            .map_err(|e| PlatformError::invalid("id_number", e.to_string()))?;
        let blind = self.vault.blind("id_number", id.as_str());
        let r = self
            .store
            .resident_by_blind(&blind)
            .await?
            .ok_or_else(|| PlatformError::NotFound("resident".into()))?;
        let rows = self.store.disbursements_of_resident(r.id, 1_000).await?;
        self.audit(caller.draft(
            "disbursement.received.read",
            format!("resident:{}", r.id),
            format!("{} line(s)", rows.len()),
        ))
        .await?;
        Ok(rows
            .into_iter()
            .map(|x| {
                let benefit = x.line.benefit.clone().unwrap_or_default();
                ReceivedView {
                    batch_id: x.batch_id,
                    department: x.department,
                    label: x.label,
                    benefit_zh: Benefit::parse(&benefit).map_or("", Benefit::name_zh).into(),
                    benefit,
                    earmark: x.line.earmark,
                    amount_fen: x.line.amount_fen,
                    outcome: x.line.outcome,
                    paid_ms: x.paid_ms,
                }
            })
            .collect())
    }

    /// A department prefunds its disbursements: money it transferred to the company's
    /// settlement account at `bank` becomes its funding. Idempotent by `key`.
    pub async fn fund_department(
        &self,
        caller: &Caller,
        department: &str,
        bank: &str,
        amount: Amount,
        key: &str,
    ) -> Result<i64> {
        match caller.role {
            Role::Administrator | Role::ClearingOfficer => {}
            _ => {
                return Err(PlatformError::Forbidden(
                    "department funding is booked by clearing".into(),
                ));
            }
        }
        if resident::Source::parse(department).is_none() {
            return Err(PlatformError::invalid(
                "department",
                format!("unknown department {department:?}"),
            ));
        }
        let keys = [
            AccountKey::new(
                AccountKind::BankSettlement,
                Owner::Bank(bank.into()),
                Unit::Cny,
            )
            .map_err(|e| PlatformError::invalid("bank", e.to_string()))?,
            funding_account(department)?,
        ];
        let accounts = self.ledger_accounts(caller, &keys).await?;
        let key =
            IdempotencyKey::parse(key).map_err(|e| PlatformError::invalid("key", e.to_string()))?;
        let (id, _) = self
            .transfer(
                caller,
                Transfer::simple(
                    key,
                    TransferKind::Settlement,
                    format!("funding of {department}"),
                    accounts[0].id,
                    accounts[1].id,
                    Unit::Cny,
                    amount,
                ),
            )
            .await?;
        Ok(id)
    }
}
