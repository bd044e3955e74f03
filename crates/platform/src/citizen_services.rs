//! What a signed-in citizen can do with their own records (issue 9, items 2 and 3): the
//! portal and the phone app call these. Each one fixes the resident to the signed-in citizen
//! (a card, bill or load of somebody else is "not found"), then calls the same platform
//! function the operator API calls, with [`Citizen::caller`] as the caller, so the audit log
//! names the citizen for every read of personal data.

use crate::citizens::Citizen;
use crate::{Platform, PlatformError, Result};
use ledger::{AccountKey, TransferKind};
use store::CardRow;
use store::ledger::StatementLine;

/// Ledger lines read per account for the transactions page and the chart.
pub const STATEMENT_LINES_MAX: u32 = 2_000;
/// Months the spending chart shows.
pub const CHART_MONTHS: usize = 6;

/// One line of the citizen's transactions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TxLine {
    pub transfer_id: i64,
    /// `online` or the card number.
    pub account: String,
    /// The transfer kind (`top_up`, `load`, `purchase`, `payment`, `fee`, …).
    pub kind: String,
    /// Into the account positive, out of it negative, in fen.
    pub amount_fen: i64,
    pub state: String,
    pub at_ms: i64,
    /// `YYYY-MM` in the city's time.
    pub month: String,
}

/// Filters on the transactions list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxFilter {
    pub account: Option<String>,
    pub kind: Option<String>,
    pub month: Option<String>,
}

/// Spending of one month by category, in fen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MonthSpending {
    pub month: String,
    /// (category, fen), categories in [`SPENDING_CATEGORIES`] order.
    pub by_category: Vec<(String, i64)>,
}

/// What counts as spending: money leaving the citizen (moves between their own accounts,
/// loads and balance moves, do not).
pub const SPENDING_CATEGORIES: [&str; 3] = ["purchase", "payment", "fee"];

/// `YYYY-MM` of a time in the city (UTC+8).
pub fn month_of(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(time::macros::offset!(+8));
    format!("{:04}-{:02}", t.year(), u8::from(t.month()))
}

/// The last [`CHART_MONTHS`] months up to `now_ms`'s, oldest first, with spending per
/// category summed from `lines` (pure: the chart is drawn from this).
pub fn spending_by_month(lines: &[TxLine], now_ms: i64) -> Vec<MonthSpending> {
    let t = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(time::macros::offset!(+8));
    let (mut y, mut m) = (t.year(), u8::from(t.month()) as i32);
    let mut months = Vec::with_capacity(CHART_MONTHS);
    for _ in 0..CHART_MONTHS {
        months.push(format!("{y:04}-{m:02}"));
        m -= 1;
        if m == 0 {
            m = 12;
            y -= 1;
        }
    }
    months.reverse();
    months
        .into_iter()
        .map(|month| MonthSpending {
            by_category: SPENDING_CATEGORIES
                .iter()
                .map(|c| {
                    let fen = lines
                        .iter()
                        .filter(|l| l.month == month && l.kind == *c && l.amount_fen < 0)
                        .map(|l| -l.amount_fen)
                        .sum();
                    (c.to_string(), fen)
                })
                .collect(),
            month,
        })
        .collect()
}

/// What a citizen may ask of their card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CitizenCardAction {
    ReportLost,
    UndoLost,
    /// A replacement, for a lost or a damaged card.
    Replace {
        lost: bool,
    },
}

impl CitizenCardAction {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "report_lost" => CitizenCardAction::ReportLost,
            "undo_lost" => CitizenCardAction::UndoLost,
            "replace_lost" => CitizenCardAction::Replace { lost: true },
            "replace_damaged" => CitizenCardAction::Replace { lost: false },
            _ => {
                return Err(PlatformError::invalid(
                    "action",
                    "report_lost, undo_lost, replace_lost or replace_damaged",
                ));
            }
        })
    }
}

/// The citizen's name and ID number, masked, for the page header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CitizenProfile {
    pub name_masked: String,
    pub id_number_masked: String,
}

fn not_yours(what: &str) -> PlatformError {
    PlatformError::NotFound(format!("{what} of this citizen"))
}

impl Platform {
    /// The citizen's ID number, opened to call the functions keyed by it (never shown).
    pub(crate) async fn citizen_id_number(&self, c: &Citizen) -> Result<String> {
        let row = self
            .store
            .resident_by_id(c.resident_id)
            .await?
            .ok_or_else(|| PlatformError::NotFound("resident".into()))?;
        Ok(self.vault.open_string(
            &crate::residents::ctx(&row.id_blind, "id_number"),
            &row.id_sealed,
        )?)
    }

    pub async fn citizen_profile(&self, c: &Citizen) -> Result<CitizenProfile> {
        let row = self
            .store
            .resident_by_id(c.resident_id)
            .await?
            .ok_or_else(|| PlatformError::NotFound("resident".into()))?;
        let (name, id) = self.resident_view_masked(row)?;
        self.audit(c.caller().draft(
            "resident.read",
            format!("resident:{}", c.resident_id),
            "own profile, masked",
        ))
        .await?;
        Ok(CitizenProfile {
            name_masked: name,
            id_number_masked: id,
        })
    }

    /// A card of this citizen, or "not found".
    async fn own_card(&self, c: &Citizen, number: &str) -> Result<CardRow> {
        match self.store.card_by_number(number.trim()).await? {
            Some(card) if card.resident_id == c.resident_id => Ok(card),
            _ => Err(not_yours("card")),
        }
    }

    /// The citizen's cards, newest first; audited.
    pub async fn citizen_cards(&self, c: &Citizen) -> Result<Vec<crate::cards::CardView>> {
        let caller = c.caller();
        let mut rows = self.store.cards_of_resident(c.resident_id).await?;
        rows.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
        self.audit(caller.draft(
            "card.list",
            format!("resident:{}", c.resident_id),
            format!("{} own card(s)", rows.len()),
        ))
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.masked_view(r).await?);
        }
        Ok(out)
    }

    /// Balances of the online account and every card; audited.
    pub async fn citizen_balances(&self, c: &Citizen) -> Result<crate::ledger::ResidentBalances> {
        let id = self.citizen_id_number(c).await?;
        self.resident_balances(&c.caller(), &id).await
    }

    /// Reports the citizen's card lost, takes the report back, or asks for a replacement,
    /// as the card's holder.
    pub async fn citizen_card_action(
        &self,
        c: &Citizen,
        number: &str,
        action: CitizenCardAction,
    ) -> Result<crate::cards::CardView> {
        use crate::cards::{CardRequest, Reason};
        let card = self.own_card(c, number).await?;
        let (request, reason) = match action {
            CitizenCardAction::ReportLost => (CardRequest::ReportLost, Reason::Lost),
            CitizenCardAction::UndoLost => (CardRequest::UndoLost, Reason::HolderRequest),
            CitizenCardAction::Replace { lost: true } => (CardRequest::Replace, Reason::Lost),
            CitizenCardAction::Replace { lost: false } => (CardRequest::Replace, Reason::Damaged),
        };
        self.card_action(&c.caller(), &card.number, request, reason)
            .await
    }

    /// The citizen's ledger lines (online account and cards), newest first, filtered; one
    /// audit entry covers the read.
    pub async fn citizen_transactions(&self, c: &Citizen, f: &TxFilter) -> Result<Vec<TxLine>> {
        if let Some(k) = &f.kind
            && TransferKind::parse(k).is_none()
        {
            return Err(PlatformError::invalid("kind", "a transfer kind"));
        }
        if let Some(m) = &f.month
            && (m.len() != 7 || m.as_bytes()[4] != b'-')
        {
            return Err(PlatformError::invalid("month", "YYYY-MM"));
        }
        let mut accounts = vec![(
            "online".to_string(),
            AccountKey::citizen_online(c.resident_id),
        )];
        for card in self.store.cards_of_resident(c.resident_id).await? {
            accounts.push((card.number.clone(), AccountKey::epurse_shadow(&card.number)));
        }
        if let Some(a) = &f.account {
            accounts.retain(|(name, _)| name == a);
            if accounts.is_empty() {
                return Err(not_yours("account"));
            }
        }
        self.audit(c.caller().draft(
            "ledger.statement.read",
            format!("resident:{}", c.resident_id),
            format!("{} account(s)", accounts.len()),
        ))
        .await?;
        let mut out = Vec::new();
        for (name, key) in accounts {
            let Some(acc) = self.store.ledger_account(&key).await? else {
                continue;
            };
            let mut after = 0;
            let mut read = 0u32;
            while read < STATEMENT_LINES_MAX {
                let page: Vec<StatementLine> = self
                    .store
                    .ledger_statement(
                        acc.id,
                        after,
                        (STATEMENT_LINES_MAX - read).min(store::PAGE_MAX),
                    )
                    .await?;
                if page.is_empty() {
                    break;
                }
                read += page.len() as u32;
                after = page.last().map_or(after, |l| l.transfer_id);
                for l in page {
                    let sign = match (acc.key.kind().normal_side(), l.posting.side) {
                        (ledger::NormalSide::Credit, ledger::Side::Credit)
                        | (ledger::NormalSide::Debit, ledger::Side::Debit) => 1,
                        _ => -1,
                    };
                    out.push(TxLine {
                        transfer_id: l.transfer_id,
                        account: name.clone(),
                        kind: l.kind.as_str().into(),
                        amount_fen: sign * l.posting.amount.0,
                        state: l.state.as_str().into(),
                        at_ms: l.created_ms,
                        month: month_of(l.created_ms),
                    });
                }
            }
        }
        out.retain(|l| {
            f.kind.as_ref().is_none_or(|k| &l.kind == k)
                && f.month.as_ref().is_none_or(|m| &l.month == m)
        });
        out.sort_by_key(|l| std::cmp::Reverse((l.at_ms, l.transfer_id)));
        Ok(out)
    }

    /// Tops up the online account from the citizen's bank account (idempotent by `key`).
    pub async fn citizen_topup(
        &self,
        c: &Citizen,
        key: &str,
        amount_fen: i64,
        bank_account: &str,
    ) -> Result<crate::money::TopUpView> {
        let id_number = self.citizen_id_number(c).await?;
        self.topup(
            &c.caller(),
            &crate::money::TopUpRequest {
                key: format!("citizen-{}-{key}", c.resident_id),
                id_number,
                amount_fen,
                bank_account: bank_account.trim().into(),
                channel: None,
            },
        )
        .await
    }

    /// Subsidies and benefits the citizen received; audited.
    pub async fn citizen_received(
        &self,
        c: &Citizen,
    ) -> Result<Vec<crate::disbursements::ReceivedView>> {
        let id = self.citizen_id_number(c).await?;
        self.resident_disbursements(&c.caller(), &id).await
    }

    /// The citizen's auto-debit agreements and their households' bills; audited.
    pub async fn citizen_bills(
        &self,
        c: &Citizen,
    ) -> Result<(Vec<store::AgreementRow>, Vec<crate::bills::BillView>)> {
        let id = self.citizen_id_number(c).await?;
        self.bills_of_citizen(&c.caller(), &id).await
    }

    /// Pays one of the citizen's bills from the online account (once).
    pub async fn citizen_bill_pay(
        &self,
        c: &Citizen,
        biller: &str,
        bill_number: &str,
    ) -> Result<crate::money::PaymentView> {
        let id = self.citizen_id_number(c).await?;
        let (_, bills) = self.bills_of_citizen(&c.caller(), &id).await?;
        if !bills
            .iter()
            .any(|b| b.biller == biller && b.bill_number == bill_number)
        {
            return Err(not_yours("bill"));
        }
        self.bill_pay(
            &c.caller(),
            &crate::money::Payer::IdNumber(id),
            biller,
            bill_number,
        )
        .await
    }

    pub async fn citizen_agreement_sign(
        &self,
        c: &Citizen,
        biller: &str,
        customer_no: &str,
        limit_fen: i64,
    ) -> Result<store::AgreementRow> {
        let id = self.citizen_id_number(c).await?;
        self.agreement_sign(&c.caller(), &id, biller, customer_no, limit_fen)
            .await
    }

    pub async fn citizen_agreement_cancel(&self, c: &Citizen, agreement: i64) -> Result<()> {
        let id = self.citizen_id_number(c).await?;
        self.agreement_cancel(&c.caller(), &id, agreement).await
    }

    /// The citizen's in-app messages, newest first; audited.
    pub async fn citizen_messages(
        &self,
        c: &Citizen,
        limit: u32,
    ) -> Result<Vec<crate::notifications::NotificationView>> {
        let id = self.citizen_id_number(c).await?;
        self.notifications_of(&c.caller(), &id, Some("inapp"), limit)
            .await
    }

    /// The citizen's consents to data sharing; audited.
    pub async fn citizen_consents(&self, c: &Citizen) -> Result<Vec<store::ConsentRow>> {
        let id = self.citizen_id_number(c).await?;
        let rows = self.exchange_consents(&c.caller(), &id).await?;
        self.audit(c.caller().draft(
            "exchange.consents.read",
            format!("resident:{}", c.resident_id),
            format!("{} consent(s)", rows.len()),
        ))
        .await?;
        Ok(rows)
    }

    /// Revokes one of the citizen's consents (another's is "not found").
    pub async fn citizen_consent_revoke(
        &self,
        c: &Citizen,
        consent_id: i64,
    ) -> Result<store::ConsentRow> {
        let id = self.citizen_id_number(c).await?;
        self.exchange_consent_revoke(&c.caller(), &id, consent_id)
            .await
    }

    /// The data tracker: who used the citizen's data through the exchange; audited.
    pub async fn citizen_data_access(
        &self,
        c: &Citizen,
        limit: u32,
    ) -> Result<Vec<store::AccessRow>> {
        let id = self.citizen_id_number(c).await?;
        self.exchange_data_access(&c.caller(), &id, limit).await
    }

    // -- e-code -------------------------------------------------------------------------

    /// Renews (or first issues) the certificate of the citizen's enrolled phone: the app
    /// sends the phone's signed request; the card must be the citizen's.
    pub async fn citizen_ecode_certify(
        &self,
        c: &Citizen,
        request: &ecode::CertificateRequest,
    ) -> Result<crate::ecode::IssuedCertificate> {
        self.own_card(c, &request.card_number.to_string()).await?;
        self.ecode_certify(&c.caller(), request).await
    }

    /// Enrols the citizen's phone on their card (replacing an earlier phone).
    pub async fn citizen_ecode_enrol(
        &self,
        c: &Citizen,
        card_number: &str,
        device_id: &str,
        public_key: &[u8],
    ) -> Result<crate::ecode::DeviceView> {
        self.own_card(c, card_number).await?;
        if device_id.starts_with(PORTAL_DEVICE_PREFIX) {
            return Err(PlatformError::invalid(
                "device_id",
                "the portal's device names are reserved",
            ));
        }
        self.ecode_device_bind(&c.caller(), card_number, device_id, public_key)
            .await
    }

    /// The portal's e-code for the card: a code made now by the portal's own device for the
    /// card (derived from the vault, so it is the same device after a restart), enrolled and
    /// certified when needed. When the citizen's phone is the card's enrolled device the
    /// portal does not take it over unless `take_over` (one active device per card).
    pub async fn citizen_portal_ecode(
        &self,
        c: &Citizen,
        card_number: &str,
        take_over: bool,
    ) -> Result<PortalEcode> {
        let card = self.own_card(c, card_number).await?;
        let number = card.number.clone();
        let device_id = format!("{PORTAL_DEVICE_PREFIX}{number}");
        let secret = self.vault.blind("ecode-portal-device", &number).0;
        let caller = c.caller();
        let now = self.now_u32()?;
        let mut phones = self.citizens.portal_phones.lock().await;
        let devices = self.store.devices_of_card(&number).await?;
        let active = devices
            .iter()
            .rev()
            .find(|d| d.state == store::DEVICE_ACTIVE);
        let mut phone = match phones.remove(&number) {
            Some(p) => p,
            None => ecode::Phone::new(
                ecode::DeviceId::parse(&device_id)
                    .map_err(|e| PlatformError::Unexpected(e.to_string()))?,
                &crypto::Key32::from_bytes(secret),
            )
            .map_err(|e| PlatformError::Unexpected(format!("portal device: {e}")))?,
        };
        let key = phone.public_key().to_compressed();
        let ours = active.is_some_and(|d| d.device_id == device_id && d.public_key[..] == key[..]);
        if !ours {
            if let Some(d) = active
                && !take_over
            {
                return Ok(PortalEcode::OnPhone {
                    device_id: d.device_id.clone(),
                });
            }
            self.ecode_device_bind(&caller, &number, &device_id, &key)
                .await?;
            phone = ecode::Phone::new(
                ecode::DeviceId::parse(&device_id)
                    .map_err(|e| PlatformError::Unexpected(e.to_string()))?,
                &crypto::Key32::from_bytes(secret),
            )
            .map_err(|e| PlatformError::Unexpected(format!("portal device: {e}")))?;
        }
        let fresh = phone
            .certificate()
            .is_some_and(|cert| cert.fields().not_after > now.saturating_add(3600));
        if !fresh || !ours {
            let card_no = ecode::CardNumber::parse(&number)
                .map_err(|e| PlatformError::Unexpected(e.to_string()))?;
            let issued = self
                .ecode_certify(&caller, &phone.certificate_request(card_no, now))
                .await?;
            phone
                .install_certificate(issued.certificate)
                .map_err(|e| PlatformError::Unexpected(format!("portal device: {e}")))?;
        }
        let code = phone
            .make_code(now)
            .map_err(|e| PlatformError::Conflict(format!("e-code: {e}")))?;
        if phones.len() >= crate::citizens::PORTAL_PHONES_MAX {
            phones.clear();
        }
        phones.insert(number.clone(), phone);
        drop(phones);
        self.audit(caller.draft("ecode.code.show", format!("card:{number}"), "portal"))
            .await?;
        Ok(PortalEcode::Code {
            text: code.to_text(),
            made_s: now,
        })
    }

    // -- NFC load through the phone -------------------------------------------------------

    /// The host side of a load with the phone as the terminal: the card's INITIALIZE FOR LOAD
    /// answer in, MAC2 out (money held from the online account until the TAC or a resolve).
    pub async fn citizen_load_authorize(
        &self,
        c: &Citizen,
        req: &crate::money::LoadRequest,
    ) -> Result<crate::money::LoadView> {
        self.own_card(c, &req.card_number).await?;
        let mut req = req.clone();
        req.key = format!("citizen-{}-{}", c.resident_id, req.key);
        self.load_authorize(&c.caller(), &req).await
    }

    /// The card's TAC after CREDIT FOR LOAD, relayed by the phone.
    pub async fn citizen_load_confirm(
        &self,
        c: &Citizen,
        id: i64,
        tac: [u8; 4],
    ) -> Result<crate::money::LoadView> {
        let load = self.load_get(&c.caller(), id).await?;
        self.own_card(c, &load.card_number)
            .await
            .map_err(|_| not_yours("load"))?;
        self.load_confirm(&c.caller(), id, tac).await
    }
}

/// Device ids of the portal's own e-code devices start with this.
pub const PORTAL_DEVICE_PREFIX: &str = "portal-";

/// The portal's e-code page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortalEcode {
    /// A fresh code: its text (the server draws the QR image).
    Code { text: String, made_s: u32 },
    /// The card's e-code lives on the citizen's phone.
    OnPhone { device_id: String },
}
