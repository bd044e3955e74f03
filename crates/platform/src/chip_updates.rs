//! Chip updates at a card's next contact (issue 8, item 6): when the card record changes what
//! the chip must say — today the card type in TRANSIT EF15, e.g. a student card that became
//! ordinary because education reported a graduation — the store records a pending chip update
//! in the same transaction (a trigger on the card's type, so every path that changes it is
//! covered). Offline terminals price from the chip, so the chip must follow.
//!
//! A *contact* is a counter, kiosk or top-up terminal online with the card in its field: it
//! selects TRANSIT, asks the card for a challenge and calls [`Platform::card_contact`] with
//! it. The answer is the script of one pending update (each line-protected command uses up the
//! challenge, so one per challenge) or none; the terminal sends it and reports the card's last
//! status word to [`Platform::card_contact_confirm`]: `9000` marks the update applied, any
//! other status word leaves it pending for the next contact. Every script issued and every
//! confirmation is on the audit chain and in the card's chip update history. The MAC is the
//! master-key store's (`transit/maintenance/v1`, `docs/app-scripts.md`); the key never leaves
//! it.

use chip::CardType;
use crypto::Algorithm;
use issuance::apps::{self, Owner};
use store::{ChipUpdateEventRow, ChipUpdateRow};

use crate::{Caller, Platform, PlatformError, Result};

/// The one item a chip update carries today: the card type in EF15.
pub const ITEM_CARD_TYPE: &str = "card_type";

/// A script for one pending chip update: APDUs to send in order after the GET CHALLENGE
/// whose answer it used; the confirmation names the item and the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipScriptView {
    pub item: String,
    pub value: String,
    pub version: i64,
    pub apdus: Vec<Vec<u8>>,
}

/// What a contact gets: at most one script (one per challenge), and how many updates are
/// pending on the card (the scripted one included until it is confirmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactView {
    pub number: String,
    pub scripts: Vec<ChipScriptView>,
    pub pending: usize,
}

/// The outcome of a confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipConfirmView {
    pub item: String,
    pub version: i64,
    /// The card took this version.
    pub applied: bool,
    /// The item is still pending (a refusal, or a newer value waiting).
    pub pending: bool,
}

/// The platform's card type name as the chip's EF15 code.
fn chip_card_type(name: &str) -> Result<CardType> {
    Ok(match name {
        "ordinary" => CardType::Ordinary,
        "student" => CardType::Student,
        "senior" => CardType::Senior,
        "disabled" => CardType::Disabled,
        "employee" => CardType::Employee,
        "temporary" => CardType::Temporary,
        other => {
            return Err(PlatformError::Unexpected(format!(
                "stored card type {other:?} has no EF15 code"
            )));
        }
    })
}

impl Platform {
    /// Who runs contacts: whoever may change the TRANSIT application on a card (the card
    /// company's): administrators and counter clerks, the operators of counters, kiosks and
    /// top-up terminals.
    fn may_contact(caller: &Caller) -> Result<()> {
        let who = crate::apps::manager(caller)?;
        if !apps::may_change_card(Owner::CardCompany, who) {
            return Err(PlatformError::Forbidden(format!(
                "{} may not update the chips of cards (the card company's TRANSIT application)",
                caller.username
            )));
        }
        Ok(())
    }

    /// The chip updates recorded for a card, pending or applied.
    pub async fn card_chip_updates(
        &self,
        caller: &Caller,
        number: &str,
    ) -> Result<Vec<ChipUpdateRow>> {
        // Reading is open to every role the route admits (auditors included).
        let _ = caller;
        self.updatable_card(number, false).await?;
        Ok(self.store.chip_updates(number).await?)
    }

    /// Whether a card has a chip update pending (for answers to other contacts, e.g. a load).
    pub async fn card_chip_update_pending(&self, number: &str) -> Result<bool> {
        Ok(self
            .store
            .chip_updates(number)
            .await?
            .iter()
            .any(|u| u.pending))
    }

    /// The history of a card's chip updates, oldest first.
    pub async fn card_chip_update_history(
        &self,
        caller: &Caller,
        number: &str,
    ) -> Result<Vec<ChipUpdateEventRow>> {
        let _ = caller;
        self.updatable_card(number, false).await?;
        Ok(self.store.chip_update_events(number).await?)
    }

    /// A contact: the card `number`, whose TRANSIT application the terminal selected and which
    /// answered GET CHALLENGE with `challenge`, in the purse's `algorithm`. Answers the script
    /// of the first pending chip update, or none; the script is recorded (and audited) as
    /// issued, and the update stays pending until confirmed.
    pub async fn card_contact(
        &self,
        caller: &Caller,
        number: &str,
        algorithm: Algorithm,
        challenge: [u8; 4],
    ) -> Result<ContactView> {
        Self::may_contact(caller)?;
        let card_number = chip::CardNumber::parse(number)
            .map_err(|e| PlatformError::invalid("number", e.to_string()))?;
        self.updatable_card(number, true).await?;
        let pending: Vec<ChipUpdateRow> = self
            .store
            .chip_updates(number)
            .await?
            .into_iter()
            .filter(|u| u.pending)
            .collect();
        let mut view = ContactView {
            number: number.to_string(),
            scripts: Vec::new(),
            pending: pending.len(),
        };
        // One script per challenge: a line-protected command uses the challenge up.
        let Some(update) = pending.first() else {
            return Ok(view);
        };
        if update.item != ITEM_CARD_TYPE {
            return Err(PlatformError::Unexpected(format!(
                "stored chip update item {:?}",
                update.item
            )));
        }
        let command = apps::card_type_update(chip_card_type(&update.value)?);
        let key = apps::transit_maintenance_key()?;
        let masters = self.master_keys()?.clone();
        let div = card_number.div_data();
        let line = command.line_command(challenge);
        // Key stores may block (an HSM session); keep them off the async workers.
        let mac = tokio::task::spawn_blocking(move || {
            masters.line_protection_mac(&key, algorithm, &div, &line)
        })
        .await
        .map_err(|e| PlatformError::Unexpected(e.to_string()))?
        .map_err(crate::apps::key_error)?;
        let script = apps::assemble_card_type(&command, mac);
        let now = self.clock.now_ms();
        let event = ChipUpdateEventRow {
            number: number.to_string(),
            item: update.item.clone(),
            value: update.value.clone(),
            version: update.version,
            action: "script".into(),
            sw: None,
            actor: caller.actor(),
            at_ms: now,
        };
        let draft = caller.draft(
            "card.chip.script",
            format!("card:{number}"),
            format!(
                "item={} value={} version={}",
                update.item, update.value, update.version
            ),
        );
        self.store
            .chip_update_record(&event, false, draft, now)
            .await?;
        view.scripts.push(ChipScriptView {
            item: update.item.clone(),
            value: update.value.clone(),
            version: update.version,
            apdus: script.apdus,
        });
        Ok(view)
    }

    /// The terminal reports the card's last status word for the script of `item` at
    /// `version`: `9000` marks the update applied; any other status word leaves it pending
    /// for the next contact. A confirmation of an older version (the record changed again
    /// meanwhile) is recorded as superseded and changes nothing; the same `9000` again for an
    /// applied version answers applied without writing anything.
    pub async fn card_contact_confirm(
        &self,
        caller: &Caller,
        number: &str,
        item: &str,
        version: i64,
        sw: u16,
    ) -> Result<ChipConfirmView> {
        Self::may_contact(caller)?;
        self.updatable_card(number, false).await?;
        let current = self
            .store
            .chip_updates(number)
            .await?
            .into_iter()
            .find(|u| u.item == item)
            .ok_or_else(|| {
                PlatformError::NotFound(format!("chip update {item} of card {number}"))
            })?;
        let answer = |applied: bool, pending: bool| ChipConfirmView {
            item: item.to_string(),
            version,
            applied,
            pending,
        };
        if !current.pending && current.version == version && sw == 0x9000 {
            return Ok(answer(true, false));
        }
        let action = if !current.pending || current.version != version {
            "superseded"
        } else if sw == 0x9000 {
            "applied"
        } else {
            "failed"
        };
        let now = self.clock.now_ms();
        let event = ChipUpdateEventRow {
            number: number.to_string(),
            item: item.to_string(),
            value: current.value.clone(),
            version,
            action: action.into(),
            sw: Some(i32::from(sw)),
            actor: caller.actor(),
            at_ms: now,
        };
        let draft = caller.draft(
            "card.chip.confirm",
            format!("card:{number}"),
            format!("item={item} version={version} sw={sw:04X} outcome={action}"),
        );
        let applied = action == "applied";
        self.store
            .chip_update_record(&event, applied, draft, now)
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(m) => PlatformError::Conflict(m),
                other => other.into(),
            })?;
        Ok(answer(applied, !applied && current.pending))
    }
}
