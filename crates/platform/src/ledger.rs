//! The ledger through the platform: accounts opened lazily by natural key, transfers (one or
//! a batch) with their audit entry, balances of a card and of a resident, the recomputation
//! check, the Beancount export, and the release of card balance moves after cooling-off.
//!
//! Balance moves: when a card stops being live (replacement, renewal, cancellation, expiry)
//! the life cycle records a move due after the cooling-off period, so that offline purchases
//! still in flight settle on the old card first. [`Platform::release_balance_moves`] then
//! empties the old card's e-purse shadow and its pending-load account — whatever they hold at
//! release time — into the successor's pending-load account (the new chip receives it at its
//! next contact) or, for a cancellation or expiry, into the holder's online account. A bank
//! payout from there is issue 5's channel work. One transfer per move, key
//! `balance-move:<id>`, posted in the same transaction that marks the move released.

use crate::{Caller, Platform, PlatformError, Result};
use ::ledger::{AccountKey, Amount, BookError, Owner, Transfer, TransferState, Unit};
use std::io::Write;
use store::Role;
use store::ledger::{
    AccountRow, LedgerCheck, MoveRelease, PostOutcome, ReleaseOutcome, TransferRow,
};

/// A card's money as the platform sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CardBalances {
    pub number: String,
    /// The shadow of the chip's e-purse, in fen.
    pub epurse_fen: i64,
    /// Owed to the chip, credited at its next contact, in fen.
    pub pending_load_fen: i64,
    /// Held by pending transfers on the e-purse.
    pub reserved_fen: i64,
}

/// A resident's money: the online account, earmarked sub-accounts, and each card.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResidentBalances {
    pub online_fen: i64,
    pub online_reserved_fen: i64,
    pub cards: Vec<CardBalances>,
}

/// What one release run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseReport {
    /// Moves released now.
    pub released: u64,
    /// Fen moved by them.
    pub moved_fen: i64,
    /// Moves waiting on a pending transfer of the old card.
    pub deferred: u64,
}

fn may_read_money(caller: &Caller) -> Result<()> {
    match caller.role {
        Role::Administrator | Role::CounterClerk | Role::ClearingOfficer | Role::Auditor => Ok(()),
        Role::DepartmentOfficer => Err(PlatformError::Forbidden(
            "a department officer does not read card balances".into(),
        )),
    }
}

/// The platform's answer for one transfer: its id and state, or the reason it was refused.
pub fn outcome_result(key: &str, o: PostOutcome) -> Result<(i64, TransferState)> {
    match o {
        PostOutcome::Applied { id, state } | PostOutcome::Duplicate { id, state } => {
            Ok((id, state))
        }
        PostOutcome::KeyConflict { .. } => Err(PlatformError::Conflict(format!(
            "idempotency key {key} was already used for a different request"
        ))),
        PostOutcome::NotFound => Err(PlatformError::NotFound(format!("transfer {key}"))),
        PostOutcome::Rejected(e @ BookError::BelowFloor { .. }) => Err(PlatformError::Conflict(
            format!("transfer {key} refused: {e}"),
        )),
        PostOutcome::Rejected(e) => Err(PlatformError::invalid("transfer", e.to_string())),
    }
}

impl Platform {
    /// Opens (or finds) accounts by natural key.
    pub async fn ledger_accounts(
        &self,
        caller: &Caller,
        keys: &[AccountKey],
    ) -> Result<Vec<AccountRow>> {
        let detail = match keys {
            [one] => one.to_string(),
            _ => format!("{} accounts", keys.len()),
        };
        Ok(self
            .store
            .ledger_open_accounts(
                keys,
                caller.draft("ledger.account.open", "ledger", detail),
                self.clock.now_ms(),
            )
            .await?)
    }

    /// Posts one transfer: its id and state, also when the same request was posted before.
    pub async fn transfer(&self, caller: &Caller, t: Transfer) -> Result<(i64, TransferState)> {
        let key = t.key.as_str().to_string();
        let mut out = self
            .transfer_batch(caller, std::slice::from_ref(&t))
            .await?;
        outcome_result(&key, out.pop().expect("one outcome per transfer"))
    }

    /// Posts a batch in one database transaction, with one audit entry naming its size and
    /// first key; one outcome per transfer.
    pub async fn transfer_batch(
        &self,
        caller: &Caller,
        transfers: &[Transfer],
    ) -> Result<Vec<PostOutcome>> {
        let Some(first) = transfers.first() else {
            return Ok(Vec::new());
        };
        let detail = format!(
            "{} transfers, first {}",
            transfers.len(),
            first.key.as_str()
        );
        Ok(self
            .store
            .ledger_post_batch(
                transfers,
                caller.draft(
                    "ledger.post",
                    format!("transfer:{}", first.key.as_str()),
                    detail,
                ),
                self.clock.now_ms(),
            )
            .await?)
    }

    async fn card_balances_of(&self, number: &str) -> Result<CardBalances> {
        let shadow = self
            .store
            .ledger_account(&AccountKey::epurse_shadow(number))
            .await?;
        let owed = self
            .store
            .ledger_account(&AccountKey::epurse_pending_load(number))
            .await?;
        Ok(CardBalances {
            number: number.to_string(),
            epurse_fen: shadow.as_ref().map_or(0, |a| a.balance),
            pending_load_fen: owed.as_ref().map_or(0, |a| a.balance),
            reserved_fen: shadow.as_ref().map_or(0, |a| a.reserved)
                + owed.as_ref().map_or(0, |a| a.reserved),
        })
    }

    /// A card's balances; the read is audited. Accounts not yet opened read as zero.
    pub async fn card_balances(&self, caller: &Caller, number: &str) -> Result<CardBalances> {
        may_read_money(caller)?;
        let n = chip::CardNumber::parse(number)
            .map_err(|e| PlatformError::invalid("number", e.to_string()))?;
        let number = n.to_string();
        if self.store.card_by_number(&number).await?.is_none() {
            return Err(PlatformError::NotFound(format!("card {number}")));
        }
        self.audit(caller.draft("ledger.balances.read", format!("card:{number}"), ""))
            .await?;
        self.card_balances_of(&number).await
    }

    /// A resident's balances (online account and every card), found by ID number; audited.
    pub async fn resident_balances(
        &self,
        caller: &Caller,
        id_number: &str,
    ) -> Result<ResidentBalances> {
        may_read_money(caller)?;
        let id = resident::ResidentId::parse(id_number, self.clock.today())
            .map_err(|e| PlatformError::invalid("id_number", e.to_string()))?;
        let blind = self.vault.blind("id_number", id.as_str());
        let row = self
            .store
            .resident_by_blind(&blind)
            .await?
            .ok_or_else(|| PlatformError::NotFound("resident".into()))?;
        self.audit(caller.draft(
            "ledger.balances.read",
            format!("resident:{}", row.id),
            "lookup by id_number",
        ))
        .await?;
        let online = self
            .store
            .ledger_account(&AccountKey::citizen_online(row.id))
            .await?;
        let mut cards = Vec::new();
        for c in self.store.cards_of_resident(row.id).await? {
            cards.push(self.card_balances_of(&c.number).await?);
        }
        Ok(ResidentBalances {
            online_fen: online.as_ref().map_or(0, |a| a.balance),
            online_reserved_fen: online.as_ref().map_or(0, |a| a.reserved),
            cards,
        })
    }

    /// Recomputes every balance from the postings.
    pub async fn ledger_check(&self) -> Result<LedgerCheck> {
        Ok(self.store.ledger_check().await?)
    }

    /// Releases every balance move whose cooling-off has passed. Safe to run at any time and
    /// any number of times: a move is released once.
    pub async fn release_balance_moves(&self) -> Result<ReleaseReport> {
        let system = Caller::cli("sweep");
        let now_s = self.clock.now_ms().div_euclid(1000);
        let mut report = ReleaseReport::default();
        let mut deferred_ids = std::collections::HashSet::new();
        loop {
            let due = self.store.balance_moves_due(now_s, store::PAGE_MAX).await?;
            let fresh: Vec<_> = due
                .into_iter()
                .filter(|m| !deferred_ids.contains(&m.id))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for m in fresh {
                let from_shadow = AccountKey::epurse_shadow(&m.from_number);
                let from_owed = AccountKey::epurse_pending_load(&m.from_number);
                let to = match &m.to_number {
                    Some(n) => AccountKey::epurse_pending_load(n),
                    None => {
                        let card = self
                            .store
                            .card_by_number(&m.from_number)
                            .await?
                            .ok_or_else(|| {
                                PlatformError::NotFound(format!("card {}", m.from_number))
                            })?;
                        AccountKey::citizen_online(card.resident_id)
                    }
                };
                let rows = self
                    .ledger_accounts(&system, &[from_shadow, from_owed, to])
                    .await?;
                let (memo, what) = match &m.to_number {
                    Some(_) => (
                        "card replaced or renewed: balances to the successor",
                        "successor",
                    ),
                    None => (
                        "card cancelled or expired: balances refunded to the online account",
                        "refund",
                    ),
                };
                let release = MoveRelease {
                    move_id: m.id,
                    memo: memo.into(),
                    sweeps: vec![(rows[0].id, rows[2].id), (rows[1].id, rows[2].id)],
                };
                let draft = system.draft(
                    "ledger.balance_move.release",
                    format!("card:{}", m.from_number),
                    format!(
                        "move {} to {}",
                        m.id,
                        m.to_number.as_deref().unwrap_or(what)
                    ),
                );
                match self
                    .store
                    .balance_move_release(&release, draft, self.clock.now_ms())
                    .await?
                {
                    ReleaseOutcome::Released { moved, .. } => {
                        report.released += 1;
                        report.moved_fen += moved;
                    }
                    ReleaseOutcome::AlreadyReleased => {}
                    ReleaseOutcome::Deferred { .. } => {
                        report.deferred += 1;
                        deferred_ids.insert(m.id);
                    }
                }
            }
        }
        Ok(report)
    }

    /// Writes the whole journal as Beancount: an `open` directive per account, one
    /// transaction per posted transfer (pending and voided ones have not moved money), fen as
    /// decimal yuan in `CNY`, points in `POINTS`. Returns the number of transactions.
    pub async fn ledger_export_beancount(&self, out: &mut dyn Write) -> Result<u64> {
        let io = |e: std::io::Error| PlatformError::Unexpected(format!("writing the export: {e}"));
        writeln!(
            out,
            "; citycard ledger export\noption \"operating_currency\" \"CNY\"\n"
        )
        .map_err(io)?;
        writeln!(
            out,
            "1970-01-01 commodity CNY\n1970-01-01 commodity POINTS\n"
        )
        .map_err(io)?;
        let mut names = std::collections::HashMap::new();
        let mut after = 0;
        loop {
            let page = self
                .store
                .ledger_accounts_page(after, store::PAGE_MAX)
                .await?;
            for a in &page {
                let name = beancount_account(&a.key);
                writeln!(
                    out,
                    "{} open {name} {}",
                    beancount_date(a.created_ms),
                    a.key.unit().as_str()
                )
                .map_err(io)?;
                names.insert(a.id, (name, a.key.unit()));
                after = a.id;
            }
            if page.len() < store::PAGE_MAX as usize {
                break;
            }
        }
        writeln!(out).map_err(io)?;
        let mut count = 0;
        let mut after = 0;
        loop {
            let page: Vec<TransferRow> = self.store.ledger_transfers_page(after, 5_000).await?;
            for t in &page {
                after = t.id;
                let (TransferState::Posted, Some(at)) = (t.state, t.posted_ms) else {
                    continue;
                };
                let memo = t.memo.replace(['"', '\\'], "'");
                writeln!(
                    out,
                    "{} * \"{}\" \"{memo}\"\n  transfer: \"{}\"",
                    beancount_date(at),
                    t.kind.as_str(),
                    t.key.replace(['"', '\\'], "'"),
                )
                .map_err(io)?;
                for p in &t.postings {
                    let (name, unit) = names.get(&p.account).ok_or_else(|| {
                        PlatformError::Unexpected(format!(
                            "posting on unknown account {}",
                            p.account
                        ))
                    })?;
                    let signed = match p.side {
                        ::ledger::Side::Debit => p.amount,
                        ::ledger::Side::Credit => Amount(-p.amount.get()),
                    };
                    let number = match unit {
                        Unit::Cny => signed.yuan(),
                        Unit::Points => signed.get().to_string(),
                    };
                    writeln!(out, "  {name}  {number} {}", unit.as_str()).map_err(io)?;
                }
                writeln!(out).map_err(io)?;
                count += 1;
            }
            if page.len() < 5_000 {
                break;
            }
        }
        Ok(count)
    }
}

/// The business day (in the city) of a time, as Beancount wants it.
fn beancount_date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(crate::clock::CST);
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `Liabilities:CitizenOnline:Resident-12:CNY`: each component starts with a capital letter
/// or a digit and holds letters, digits and dashes only.
pub fn beancount_account(k: &AccountKey) -> String {
    let kind: String = k
        .kind()
        .as_str()
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let owner = match k.owner() {
        Owner::Company => "Company".to_string(),
        o => {
            let text = o.text();
            let mut s = String::with_capacity(text.len());
            for (i, ch) in text.chars().enumerate() {
                match ch {
                    _ if i == 0 => s.push(ch.to_ascii_uppercase()),
                    ':' | '_' => s.push('-'),
                    c => s.push(c),
                }
            }
            s
        }
    };
    format!(
        "{}:{kind}:{owner}:{}",
        k.kind().beancount_root(),
        match k.unit() {
            Unit::Cny => "Cny",
            Unit::Points => "Points",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::ledger::AccountKind;

    #[test]
    fn beancount_names_are_valid() {
        let k = AccountKey::new(
            AccountKind::Earmarked,
            Owner::Earmark {
                resident: 12,
                purpose: "canteen_a".into(),
            },
            Unit::Cny,
        )
        .unwrap();
        assert_eq!(
            beancount_account(&k),
            "Liabilities:Earmarked:Earmark-12-canteen-a:Cny"
        );
        let bank = AccountKey::new(
            AccountKind::BankFloat,
            Owner::Bank("icbc".into()),
            Unit::Cny,
        )
        .unwrap();
        assert_eq!(beancount_account(&bank), "Assets:BankFloat:Bank-icbc:Cny");
        let fee = AccountKey::company(AccountKind::FeeIncome, Unit::Points).unwrap();
        assert_eq!(beancount_account(&fee), "Income:FeeIncome:Company:Points");
    }
}
