//! Bills and auto-debit (公共事业缴费, issue 9 item 4): billers are registered merchants of the
//! `utility` category with a kind (water, electricity, gas, heating, telephone, broadband,
//! cable TV); they upload bills (API or CSV file, all or nothing, `bills` crate rules);
//! citizens pay a bill once, or sign an auto-debit agreement with a per-bill limit; a bill run
//! debits the bills due, tries again with backoff when funds are short, and tells the citizen
//! of every debit and failure through the notification outbox; each biller gets a payment
//! file of the bills paid on a day.
//!
//! A bill's payment is a money `payment` (citizen online account → the biller's merchant
//! payable) under one idempotency key per bill ([`bills::payment_key`]), whoever pays: the
//! citizen at the counter and the auto-debit cannot both pay it, and a run interrupted after
//! the money moved finds the payment and only records it on the bill.

use crate::money::{Payer, PaymentItem, PaymentView, payment_item};
use crate::notifications::NoticeItem;
use crate::{Caller, Platform, PlatformError, Result};
use ::ledger::{AccountKey, AccountKind, BookError, Owner, Transfer, Unit};
use bills::{BillLine, BillerKind, Decision, FileError};
use notices::{DebitFailure, Notice};
use std::collections::HashMap;
use store::money::{MovementKind, NewMovement, Recorded};
use store::{
    AgreementRow, BillDebitFailed, BillPaid, BillRow, BillRunRow, BillUpload, BillerRow, NewBill,
    Role,
};

/// Bills a run takes per transaction.
pub const RUN_CHUNK: u32 = 1_000;
/// An auto-debit limit is at most this (50,000 yuan).
pub const LIMIT_FEN_MAX: i64 = bills::BILL_FEN_MAX;

const ADMIN: &[Role] = &[Role::Administrator];
const UPLOADERS: &[Role] = &[Role::Administrator, Role::ClearingOfficer];
const COUNTER: &[Role] = &[Role::Administrator, Role::CounterClerk];
const PAYERS: &[Role] = &[
    Role::Administrator,
    Role::CounterClerk,
    Role::ClearingOfficer,
];
const RUNNERS: &[Role] = &[Role::Administrator, Role::ClearingOfficer];
const READERS: &[Role] = &[
    Role::Administrator,
    Role::ClearingOfficer,
    Role::CounterClerk,
    Role::Auditor,
];

fn may(caller: &Caller, roles: &[Role], what: &str) -> Result<()> {
    if roles.contains(&caller.role) {
        Ok(())
    } else {
        Err(PlatformError::Forbidden(format!(
            "the role {} may not {what}",
            caller.role.as_str()
        )))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BillView {
    pub id: i64,
    pub biller: String,
    pub bill_number: String,
    pub customer_no: String,
    pub period: String,
    pub amount_fen: i64,
    pub due_date: String,
    pub status: String,
    pub payment_id: Option<i64>,
    pub paid_by: Option<String>,
    pub paid_ms: Option<i64>,
    pub debit_attempts: i32,
    pub next_debit_ms: Option<i64>,
    pub last_error: Option<String>,
}

pub fn bill_view(b: BillRow) -> BillView {
    BillView {
        id: b.id,
        biller: b.biller,
        bill_number: b.bill_number,
        customer_no: b.customer_no,
        period: b.period,
        amount_fen: b.amount_fen,
        due_date: b.due_date,
        status: b.status,
        payment_id: b.payment_id,
        paid_by: b.paid_by,
        paid_ms: b.paid_ms,
        debit_attempts: b.debit_attempts,
        next_debit_ms: b.next_debit_ms,
        last_error: b.last_error,
    }
}

fn payee_key(biller: &str) -> Result<AccountKey> {
    AccountKey::new(
        AccountKind::MerchantPayable,
        Owner::Merchant(biller.to_string()),
        Unit::Cny,
    )
    .map_err(|e| PlatformError::invalid("biller", e.to_string()))
}

/// Midnight of a city date (`YYYY-MM-DD`, UTC+8) in Unix milliseconds.
fn city_midnight_ms(day: &str) -> Result<i64> {
    if !bills::date_ok(day) {
        return Err(PlatformError::invalid("day", "a date as YYYY-MM-DD"));
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d =
        time::Date::parse(day, &fmt).map_err(|e| PlatformError::invalid("day", e.to_string()))?;
    let t = d
        .midnight()
        .assume_offset(time::UtcOffset::from_hms(8, 0, 0).expect("a valid offset"));
    Ok(t.unix_timestamp() * 1000)
}

fn file_error(e: FileError) -> PlatformError {
    match e {
        FileError::BadLines(lines) => PlatformError::Invalid {
            message: format!(
                "{} bad lines, nothing stored; the first: line {}: {}",
                lines.len(),
                lines[0].line,
                lines[0].message
            ),
            fields: lines
                .into_iter()
                .take(1000)
                .map(|l| crate::FieldProblem {
                    field: format!("line {}", l.line),
                    message: l.message,
                })
                .collect(),
        },
        FileError::TooLarge | FileError::TooManyLines => PlatformError::TooLarge {
            what: "the bill file".into(),
            limit: format!(
                "{} bills, {} bytes",
                bills::BILL_FILE_LINES_MAX,
                bills::BILL_FILE_BYTES_MAX
            ),
        },
        e => PlatformError::invalid("file", e.to_string()),
    }
}

impl Platform {
    /// Registers a merchant of the `utility` category as a biller of `kind`.
    pub async fn biller_create(
        &self,
        caller: &Caller,
        code: &str,
        kind: &str,
    ) -> Result<BillerRow> {
        may(caller, ADMIN, "register billers")?;
        let kind = BillerKind::parse(kind).ok_or_else(|| {
            PlatformError::invalid(
                "kind",
                format!(
                    "one of {}",
                    BillerKind::ALL.map(BillerKind::as_str).join(", ")
                ),
            )
        })?;
        let m = self
            .store
            .merchant(code)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("merchant {code}")))?;
        if m.category != "utility" {
            return Err(PlatformError::invalid(
                "code",
                format!(
                    "merchant {code} is {}, a biller must be a utility",
                    m.category
                ),
            ));
        }
        let row = BillerRow {
            code: code.into(),
            kind: kind.as_str().into(),
            created_ms: self.clock.now_ms(),
        };
        self.store
            .biller_insert(
                &row,
                caller.draft("biller.create", format!("biller:{code}"), kind.as_str()),
                self.clock.now_ms(),
            )
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(m) => {
                    PlatformError::Conflict(format!("{m} already exists"))
                }
                e => e.into(),
            })?;
        Ok(row)
    }

    pub async fn billers(&self, caller: &Caller) -> Result<Vec<BillerRow>> {
        may(caller, READERS, "list billers")?;
        Ok(self.store.billers().await?)
    }

    /// Stores a biller's bills, all or nothing (a bill number stored with other content
    /// refuses the upload).
    pub async fn bills_upload(
        &self,
        caller: &Caller,
        biller: &str,
        lines: &[BillLine],
    ) -> Result<BillUpload> {
        may(caller, UPLOADERS, "upload bills")?;
        if lines.is_empty() {
            return Err(PlatformError::invalid("bills", "at least one bill"));
        }
        if lines.len() > bills::BILL_FILE_LINES_MAX {
            return Err(PlatformError::TooLarge {
                what: format!("{} bills", lines.len()),
                limit: bills::BILL_FILE_LINES_MAX.to_string(),
            });
        }
        let rows: Vec<NewBill> = lines
            .iter()
            .map(|l| NewBill {
                bill_number: l.bill_number.clone(),
                customer_no: l.customer_no.clone(),
                period: l.period.clone(),
                amount_fen: l.amount_fen,
                due_date: l.due_date.clone(),
            })
            .collect();
        let total: i64 = lines.iter().map(|l| l.amount_fen).sum();
        self.store
            .bills_upload(
                biller,
                &rows,
                caller.draft(
                    "bills.upload",
                    format!("biller:{biller}"),
                    format!("{} bills, {total} fen", rows.len()),
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(m) => {
                    PlatformError::Conflict(format!("upload refused, nothing stored: {m}"))
                }
                e => e.into(),
            })
    }

    /// A bill file (CSV with [`bills::BILL_FILE_HEADER`]): every bad line named, nothing
    /// stored from a file with one.
    pub async fn bills_upload_file(
        &self,
        caller: &Caller,
        biller: &str,
        file: &[u8],
    ) -> Result<BillUpload> {
        may(caller, UPLOADERS, "upload bills")?;
        let lines = bills::parse_bill_file(file).map_err(file_error)?;
        self.bills_upload(caller, biller, &lines).await
    }

    pub async fn bill_get(&self, caller: &Caller, biller: &str, number: &str) -> Result<BillView> {
        may(caller, READERS, "read bills")?;
        self.store
            .bill(biller, number)
            .await?
            .map(bill_view)
            .ok_or_else(|| PlatformError::NotFound(format!("bill {biller}/{number}")))
    }

    /// Signs an auto-debit agreement for a household (`customer_no` at `biller`) with a
    /// per-bill limit.
    pub async fn agreement_sign(
        &self,
        caller: &Caller,
        id_number: &str,
        biller: &str,
        customer_no: &str,
        limit_fen: i64,
    ) -> Result<AgreementRow> {
        may(caller, COUNTER, "sign auto-debit agreements")?;
        if !(1..=LIMIT_FEN_MAX).contains(&limit_fen) {
            return Err(PlatformError::invalid(
                "limit_fen",
                format!("must be 1 to {LIMIT_FEN_MAX} fen"),
            ));
        }
        BillLine::parse("x", customer_no, "2026-01", "1", "2026-01-01")
            .map_err(|e| PlatformError::invalid("customer_no", e.to_string()))?;
        let resident_id = self.resident_id_of(id_number).await?;
        let row = AgreementRow {
            id: 0,
            resident_id,
            biller: biller.into(),
            customer_no: customer_no.into(),
            limit_fen,
            status: "active".into(),
            created_ms: self.clock.now_ms(),
        };
        self.store
            .agreement_insert(
                &row,
                caller.draft(
                    "agreement.sign",
                    format!("resident:{resident_id}"),
                    format!("{biller} {customer_no} limit {limit_fen} fen"),
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(m) => {
                    PlatformError::Conflict(format!("{m} already exists"))
                }
                e => e.into(),
            })
    }

    pub async fn agreement_cancel(&self, caller: &Caller, id_number: &str, id: i64) -> Result<()> {
        may(caller, COUNTER, "cancel auto-debit agreements")?;
        let resident_id = self.resident_id_of(id_number).await?;
        let done = self
            .store
            .agreement_cancel(
                id,
                resident_id,
                caller.draft(
                    "agreement.cancel",
                    format!("resident:{resident_id}"),
                    id.to_string(),
                ),
                self.clock.now_ms(),
            )
            .await?;
        if done {
            Ok(())
        } else {
            Err(PlatformError::NotFound(format!(
                "active agreement {id} of this resident"
            )))
        }
    }

    /// A citizen's agreements and the bills of their households; audited.
    pub async fn bills_of_citizen(
        &self,
        caller: &Caller,
        id_number: &str,
    ) -> Result<(Vec<AgreementRow>, Vec<BillView>)> {
        may(caller, READERS, "read a citizen's bills")?;
        let resident_id = self.resident_id_of(id_number).await?;
        self.audit(caller.draft("bills.read", format!("resident:{resident_id}"), ""))
            .await?;
        let agreements = self.store.agreements_of(resident_id).await?;
        let mut bills = Vec::new();
        for a in agreements.iter().filter(|a| a.status == "active") {
            for b in self
                .store
                .bills_of_customer(&a.biller, &a.customer_no, 50)
                .await?
            {
                bills.push(bill_view(b));
            }
        }
        Ok((agreements, bills))
    }

    async fn biller_name(&self, code: &str) -> Result<String> {
        Ok(self
            .store
            .merchant(code)
            .await?
            .map_or_else(|| code.to_string(), |m| m.name))
    }

    /// A citizen pays a bill from their online account, once: a second payment of the bill
    /// answers with the first.
    pub async fn bill_pay(
        &self,
        caller: &Caller,
        payer: &Payer,
        biller: &str,
        bill_number: &str,
    ) -> Result<PaymentView> {
        may(caller, PAYERS, "take bill payments")?;
        let bill = self
            .store
            .bill(biller, bill_number)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("bill {biller}/{bill_number}")))?;
        let (resident, card) = self.payer(payer).await?;
        let key = bills::payment_key(biller, bill_number);
        let paid = self
            .take_from(
                caller,
                MovementKind::Payment,
                &key,
                resident,
                card,
                payee_key(biller)?,
                biller,
                None,
                bill.amount_fen,
                bill_number,
            )
            .await
            .map_err(|e| match e {
                // The key is the bill's: another payer's payment of it exists.
                PlatformError::Conflict(m) if m.starts_with("idempotency key") => {
                    PlatformError::Conflict(format!("bill {biller}/{bill_number} is already paid"))
                }
                e => e,
            })?;
        let now = self.clock.now_ms();
        let newly = self
            .store
            .bills_settle(
                &[BillPaid {
                    bill_id: bill.id,
                    payment_id: paid.id,
                    paid_by: "citizen".into(),
                    paid_ms: now,
                }],
                &[],
                now,
            )
            .await?;
        if newly == 1 {
            self.bills_paid_signals(caller, &[(resident, bill.id, bill.due_date.clone())])
                .await;
            let name = self.biller_name(biller).await?;
            self.notify_residents(
                caller,
                &[NoticeItem {
                    key: format!("bill-{}-paid", bill.id),
                    resident_id: resident,
                    notice: Notice::BillPaid {
                        biller: name,
                        bill_number: bill_number.into(),
                        amount_fen: bill.amount_fen,
                    },
                }],
            )
            .await?;
        }
        Ok(paid)
    }

    /// The bill run of `due_on` (`YYYY-MM-DD`): every open bill due by then with an active
    /// agreement, whose auto-debit may try now, is debited (within its limit) from the
    /// citizen's online account, in chunks of [`RUN_CHUNK`] (one money transaction, one bill
    /// transaction and one outbox transaction each). Short of funds: tried again after
    /// `bills::retry_delay_ms`, at most `bills::DEBIT_ATTEMPTS_MAX` times. Every debit and
    /// failure is a notice. Running it again debits nothing twice.
    pub async fn bill_run(&self, caller: &Caller, due_on: &str) -> Result<BillRunRow> {
        may(caller, RUNNERS, "run bills")?;
        city_midnight_ms(due_on)?;
        let started = self.clock.now_ms();
        let id = self.store.bill_run_start(due_on, started).await?;
        let mut run = BillRunRow {
            id,
            due_on: due_on.into(),
            started_ms: started,
            ..Default::default()
        };
        let mut names: HashMap<String, String> = HashMap::new();
        let mut after = 0;
        loop {
            let now = self.clock.now_ms();
            let due = self.store.bills_due(due_on, now, after, RUN_CHUNK).await?;
            let Some(last) = due.last() else { break };
            after = last.bill.id;
            run.considered += due.len() as i64;
            for d in &due {
                if !names.contains_key(&d.bill.biller) {
                    let n = self.biller_name(&d.bill.biller).await?;
                    names.insert(d.bill.biller.clone(), n);
                }
            }
            // Account ids of the chunk in one read: payers, then the billers.
            let mut billers: Vec<&str> = due.iter().map(|d| d.bill.biller.as_str()).collect();
            billers.sort_unstable();
            billers.dedup();
            let mut keys: Vec<AccountKey> = due
                .iter()
                .map(|d| AccountKey::citizen_online(d.agreement.resident_id))
                .collect();
            for b in &billers {
                keys.push(payee_key(b)?);
            }
            let ids = self.account_ids(caller, &keys).await?;
            let payee_ids: HashMap<&str, (i64, &AccountKey)> = billers
                .iter()
                .enumerate()
                .map(|(i, b)| (*b, (ids[due.len() + i], &keys[due.len() + i])))
                .collect();

            let mut items: Vec<(NewMovement, Transfer)> = Vec::new();
            let mut audits = Vec::new();
            let mut debited = Vec::new();
            let mut paid = Vec::new();
            let mut failed = Vec::new();
            let mut notes = Vec::new();
            for (i, d) in due.iter().enumerate() {
                let b = &d.bill;
                let name = names[&b.biller].clone();
                let fail_note = |failure: DebitFailure, n: i32| NoticeItem {
                    key: format!("bill-{}-fail-{n}", b.id),
                    resident_id: d.agreement.resident_id,
                    notice: Notice::BillDebitFailed {
                        biller: name.clone(),
                        bill_number: b.bill_number.clone(),
                        period: b.period.clone(),
                        amount_fen: b.amount_fen,
                        failure,
                    },
                };
                if bills::decide(b.amount_fen, d.agreement.limit_fen) == Decision::OverLimit {
                    run.over_limit += 1;
                    failed.push(BillDebitFailed {
                        bill_id: b.id,
                        error: "over_limit".into(),
                        next_debit_ms: None,
                    });
                    notes.push(fail_note(DebitFailure::OverLimit, b.debit_attempts + 1));
                    continue;
                }
                let (payee_id, payee) = payee_ids[b.biller.as_str()];
                let key = bills::payment_key(&b.biller, &b.bill_number);
                let p = payment_item(
                    caller,
                    &PaymentItem {
                        kind: MovementKind::Payment,
                        key: &key,
                        resident: d.agreement.resident_id,
                        card: None,
                        payer_account: ids[i],
                        payee,
                        payee_account: payee_id,
                        payee_code: &b.biller,
                        item: None,
                        amount_fen: b.amount_fen,
                        reference: &b.bill_number,
                    },
                )?;
                items.push((p.movement, p.transfer));
                audits.push(p.draft);
                debited.push(i);
            }
            let answers = if items.is_empty() {
                Vec::new()
            } else {
                self.store.money_record_many(&items, &audits, now).await?
            };
            // Bills debited by the run: on their due date or before, so on time.
            let mut on_time = Vec::new();
            for (&i, answer) in debited.iter().zip(answers) {
                let d = &due[i];
                let b = &d.bill;
                let name = names[&b.biller].clone();
                match answer {
                    Recorded::Created(row) | Recorded::Existing(row) => {
                        on_time.push((d.agreement.resident_id, b.id, b.due_date.clone()));
                        run.debited += 1;
                        run.debited_fen += b.amount_fen;
                        paid.push(BillPaid {
                            bill_id: b.id,
                            payment_id: row.id,
                            paid_by: "auto".into(),
                            paid_ms: now,
                        });
                        notes.push(NoticeItem {
                            key: format!("bill-{}-debited", b.id),
                            resident_id: d.agreement.resident_id,
                            notice: Notice::BillDebited {
                                biller: name,
                                bill_number: b.bill_number.clone(),
                                period: b.period.clone(),
                                amount_fen: b.amount_fen,
                            },
                        });
                    }
                    Recorded::Rejected(e) => {
                        let attempt = b.debit_attempts + 1;
                        let next = bills::retry_delay_ms(attempt.max(0) as u32).map(|ms| now + ms);
                        let (error, failure) = match e {
                            BookError::BelowFloor { .. } => {
                                run.short_of_funds += 1;
                                (
                                    "insufficient_funds".to_string(),
                                    DebitFailure::InsufficientFunds,
                                )
                            }
                            e => (e.to_string(), DebitFailure::GaveUp),
                        };
                        let retry = next.is_some() && failure == DebitFailure::InsufficientFunds;
                        failed.push(BillDebitFailed {
                            bill_id: b.id,
                            error,
                            next_debit_ms: if retry { next } else { None },
                        });
                        notes.push(NoticeItem {
                            key: format!("bill-{}-fail-{attempt}", b.id),
                            resident_id: d.agreement.resident_id,
                            notice: Notice::BillDebitFailed {
                                biller: name,
                                bill_number: b.bill_number.clone(),
                                period: b.period.clone(),
                                amount_fen: b.amount_fen,
                                failure: if retry { failure } else { DebitFailure::GaveUp },
                            },
                        });
                    }
                    r => {
                        return Err(PlatformError::Unexpected(format!(
                            "recording bill {}: {r:?}",
                            b.id
                        )));
                    }
                }
            }
            self.store.bills_settle(&paid, &failed, now).await?;
            run.notices += self.notify_residents(caller, &notes).await? as i64;
            self.bills_paid_signals(caller, &on_time).await;
        }
        run.finished_ms = Some(self.clock.now_ms());
        self.store
            .bill_run_finish(
                &run,
                caller.draft(
                    "bills.run",
                    format!("bill_run:{}", run.id),
                    format!(
                        "due {due_on}: {} debited ({} fen), {} short of funds, {} over limit",
                        run.debited, run.debited_fen, run.short_of_funds, run.over_limit
                    ),
                ),
            )
            .await?;
        Ok(run)
    }

    pub async fn bill_runs(&self, caller: &Caller, limit: u32) -> Result<Vec<BillRunRow>> {
        may(caller, READERS, "read bill runs")?;
        Ok(self.store.bill_runs(limit).await?)
    }

    /// The biller's payment file of a city day: the bills paid that day, with a trailer.
    pub async fn biller_payment_file(
        &self,
        caller: &Caller,
        biller: &str,
        day: &str,
    ) -> Result<String> {
        may(caller, UPLOADERS, "read payment files")?;
        let from = city_midnight_ms(day)?;
        self.store
            .biller(biller)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("biller {biller}")))?;
        let rows = self
            .store
            .bills_paid(
                biller,
                from,
                from + 86_400_000,
                bills::BILL_FILE_LINES_MAX as u32,
            )
            .await?;
        let paid: Vec<bills::PaidBill> = rows
            .into_iter()
            .map(|b| bills::PaidBill {
                bill_number: b.bill_number,
                customer_no: b.customer_no,
                period: b.period,
                amount_fen: b.amount_fen,
                paid_ms: b.paid_ms.unwrap_or_default(),
                channel: b.paid_by.unwrap_or_default(),
            })
            .collect();
        self.audit(caller.draft(
            "bills.payment_file",
            format!("biller:{biller}"),
            format!("{day}: {} bills", paid.len()),
        ))
        .await?;
        Ok(bills::payment_file(biller, day, &paid))
    }
}
