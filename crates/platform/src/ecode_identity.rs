//! Identity use of the e-code (issue 7.6): a counter or a hotel desk scans the holder's code,
//! the platform verifies it online ([`Platform::ecode_verify`] with the identity purpose) and
//! answers with the holder's identity, revealing only what the use allows. Every answer is on
//! the audit chain under the resident's record, so the citizen can later see who identified
//! them, where and for what ([`Platform::ecode_identity_uses`]).

use crate::{Caller, Platform, PlatformError, Result};
use ::ecode::Purpose;
use store::Role;

/// Why the holder is identified, and so what may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityUse {
    /// Hotel check-in (旅馆业实名登记): the law asks for the full name and ID number.
    Hotel,
    /// A government service counter: the full name, the ID number masked.
    Counter,
    /// An age check (烟酒, 网吧): only whether the holder is an adult.
    AgeCheck,
    /// A library or venue: the masked name only.
    Library,
}

impl IdentityUse {
    pub const ALL: [IdentityUse; 4] = [
        IdentityUse::Hotel,
        IdentityUse::Counter,
        IdentityUse::AgeCheck,
        IdentityUse::Library,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdentityUse::Hotel => "hotel",
            IdentityUse::Counter => "counter",
            IdentityUse::AgeCheck => "age_check",
            IdentityUse::Library => "library",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        IdentityUse::ALL
            .into_iter()
            .find(|u| u.as_str() == name)
            .ok_or_else(|| {
                PlatformError::invalid("use", "one of hotel, counter, age_check, library")
            })
    }
}

/// The answer to an identity scan: nothing personal unless the code was accepted, and then
/// only what the use allows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdentityView {
    pub accepted: bool,
    /// `accepted` or the verification's reason code.
    pub reason: String,
    pub message: String,
    pub purpose: IdentityUse,
    pub name: Option<String>,
    pub id_number: Option<String>,
    /// Whether the holder is 18 or older (every use may know this).
    pub adult: Option<bool>,
}

/// One identification of a citizen, as the citizen is shown it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdentityUseView {
    pub at_ms: i64,
    /// Who asked (`operator:clerk-7`).
    pub actor: String,
    /// From where (the client address).
    pub origin: String,
    /// The use and what was revealed.
    pub detail: String,
}

fn may_identify(caller: &Caller) -> Result<()> {
    match caller.role {
        Role::Administrator | Role::CounterClerk => Ok(()),
        _ => Err(PlatformError::Forbidden(
            "identity scans are made at counters and desks (counter clerks, administrators)".into(),
        )),
    }
}

impl Platform {
    /// Verifies a scanned code for identity and answers with what `purpose` may reveal; audited
    /// under the resident's record with the use and what was revealed.
    pub async fn ecode_identify(
        &self,
        caller: &Caller,
        text: &str,
        purpose: IdentityUse,
    ) -> Result<IdentityView> {
        may_identify(caller)?;
        let v = self.ecode_verify(caller, text, Purpose::Identity).await?;
        let refused = |reason: String, message: String| IdentityView {
            accepted: false,
            reason,
            message,
            purpose,
            name: None,
            id_number: None,
            adult: None,
        };
        if !v.accepted {
            return Ok(refused(v.reason, v.message));
        }
        let number = v
            .card_number
            .ok_or_else(|| PlatformError::Unexpected("an accepted code names no card".into()))?;
        let card = self
            .store
            .card_by_number(&number)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("card {number}")))?;
        let r = self
            .store
            .resident_by_id(card.resident_id)
            .await?
            .ok_or_else(|| PlatformError::NotFound("the card's holder".into()))?;
        let id_text = self.vault.open_string(
            &crate::residents::ctx(&r.id_blind, "id_number"),
            &r.id_sealed,
        )?;
        let name = r
            .name_sealed
            .as_ref()
            .map(|s| {
                self.vault
                    .open_string(&crate::residents::ctx(&r.id_blind, "name"), s)
            })
            .transpose()?
            .unwrap_or_default();
        let adult = resident::ResidentId::parse(&id_text, self.clock.today())
            .map(|id| id.age_on(self.clock.today()) >= 18)
            .ok();
        let (name, id_number) = match purpose {
            IdentityUse::Hotel => (Some(name), Some(id_text)),
            IdentityUse::Counter => (Some(name), Some(resident::mask_id_number(&id_text))),
            IdentityUse::AgeCheck => (None, None),
            IdentityUse::Library => (Some(resident::mask_name(&name)), None),
        };
        let revealed = match purpose {
            IdentityUse::Hotel => "name, id_number",
            IdentityUse::Counter => "name, id_number masked",
            IdentityUse::AgeCheck => "adult only",
            IdentityUse::Library => "name masked",
        };
        self.audit(caller.draft(
            "ecode.identity",
            format!("resident:{}", r.id),
            format!(
                "use={} revealed={revealed} card={}",
                purpose.as_str(),
                resident::mask_id_number(&number)
            ),
        ))
        .await?;
        Ok(IdentityView {
            accepted: true,
            reason: "accepted".into(),
            message: "accepted".into(),
            purpose,
            name,
            id_number,
            adult,
        })
    }

    /// Every identification of a citizen by e-code, newest first — what the citizen sees of
    /// who identified them (read for them at a counter until the portal; the read is audited).
    pub async fn ecode_identity_uses(
        &self,
        caller: &Caller,
        id_number: &str,
    ) -> Result<Vec<IdentityUseView>> {
        match caller.role {
            Role::Administrator | Role::CounterClerk | Role::Auditor => {}
            _ => {
                return Err(PlatformError::Forbidden(
                    "a citizen's identifications are read for the citizen at a counter".into(),
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
        let record = format!("resident:{}", r.id);
        let entries = self
            .store
            .audit_of_record(&record, Some("ecode.identity"), 1_000)
            .await?;
        self.audit(caller.draft(
            "ecode.identity.uses.read",
            record,
            format!("{} identification(s)", entries.len()),
        ))
        .await?;
        Ok(entries
            .into_iter()
            .map(|e| IdentityUseView {
                at_ms: e.at_ms,
                actor: e.draft.actor,
                origin: e.draft.origin,
                detail: e.draft.detail,
            })
            .collect())
    }
}
