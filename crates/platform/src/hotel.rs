//! Identity verification for hotels and counters through the exchange (issue 8, item 7, 公安
//! 旅馆业实名登记): a hotel terminal — an exchange member signing with its own SM2 key — sends
//! either what it read from the card's holder file (ID number and name) or the e-code it
//! scanned. The exchange resolves an e-code to its holder (verified online like any identity
//! scan, replay and forgery refused), checks the hotel's grant on the police's
//! `police.identity-checkin` service, forwards the ID number and name (signed) to the police,
//! who compare them with their register and record the check-in, checks the police's signed
//! answer, and delivers only the granted fields (`verified`, the name masked, the check-in
//! number). Every outcome is on the audit log and the access log, so the citizen's data tracker
//! lists each check-in.
//!
//! The consumer checks, the provider round trip and the delivery are the exchange's own steps
//! (`Platform::exchange_admit`, `exchange_forward`, `exchange_deliver`), shared with
//! `Platform::exchange_call`; only the subject (card or e-code) and the forward differ.

use crate::exchange::{
    CALL_BODY_MAX, CallLog, Delivered, SignedCall, grant_of_row, service_of_row,
};
use crate::{Caller, Platform, PlatformError, Result};
use exchange::{Envelope, MessageKind};
use store::Role;

/// The police service a check-in goes to.
pub const IDENTITY_SERVICE: &str = "police.identity-checkin";
/// Characters of a room number.
pub const ROOM_CHARS_MAX: usize = 16;

/// What the hotel terminal sends (signed like any exchange call).
#[derive(Clone, serde::Deserialize, serde::Serialize)]
pub struct CheckinBody {
    pub service: String,
    pub purpose: String,
    /// `card`: `id_number` and `name` as read from the chip's holder file; `ecode`: `ecode`,
    /// the scanned text.
    pub via: String,
    #[serde(default)]
    pub id_number: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ecode: String,
    #[serde(default)]
    pub room: String,
    /// Fields asked for; empty for every field the grant allows.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// What the police receive.
#[derive(serde::Serialize)]
struct CheckinForward<'a> {
    service: &'a str,
    consumer: &'a str,
    id_number: &'a str,
    name: &'a str,
    room: &'a str,
    via: &'a str,
    fields: &'a [String],
    purpose: &'a str,
}

impl Platform {
    /// One hotel check-in through the exchange; every outcome is logged (see the module).
    pub async fn exchange_identity_checkin(&self, call: &SignedCall<'_>) -> Result<Delivered> {
        let origin = call.origin;
        let mut log = CallLog {
            consumer: if exchange::check_member(call.member).is_ok() {
                call.member.into()
            } else {
                "?".into()
            },
            service: IDENTITY_SERVICE.into(),
            ..CallLog::default()
        };
        if call.body.len() > CALL_BODY_MAX {
            return Err(PlatformError::TooLarge {
                what: "a check-in".into(),
                limit: format!("{CALL_BODY_MAX} bytes"),
            });
        }
        let body: CheckinBody = serde_json::from_slice(call.body)
            .map_err(|e| PlatformError::invalid("body", format!("not a check-in: {e}")))?;
        log.fields = body.fields.clone();
        log.fields.truncate(exchange::catalog::FIELDS_MAX);
        log.purpose = body.purpose.chars().take(200).collect();
        let env = Envelope {
            kind: MessageKind::Request,
            member: call.member,
            time_s: call.time_s,
            nonce: call.nonce,
            service: &body.service,
            reply_to: "",
            body: call.body,
        };
        log.request_digest = Some(hex::encode_upper(env.digest()));

        // The hotel: a member, its signature, its clock, its nonce.
        let (member, now_s) = self.exchange_admit(call, &env, &mut log).await?;
        if body.service != IDENTITY_SERVICE {
            let msg = format!("a check-in goes to {IDENTITY_SERVICE}");
            return Err(self.refuse(&log, "unknown_service", msg, origin).await);
        }
        let room: String = body.room.trim().chars().take(ROOM_CHARS_MAX).collect();

        // The guest: as read from the card, or the holder behind a verified e-code.
        let (id_number, name) = match body.via.as_str() {
            "card" => (
                body.id_number.trim().to_string(),
                body.name.trim().to_string(),
            ),
            "ecode" => {
                let hotel = Caller {
                    operator_id: None,
                    username: format!("member:{}", member.code),
                    role: Role::CounterClerk,
                    department: None,
                    origin: origin.to_string(),
                };
                let v = self
                    .ecode_verify(&hotel, &body.ecode, ::ecode::Purpose::Identity)
                    .await?;
                if !v.accepted {
                    let msg = format!("the e-code was refused: {}", v.message);
                    let code = format!("ecode_{}", v.reason);
                    return Err(self.refuse(&log, &code, msg, origin).await);
                }
                let number = v.card_number.ok_or_else(|| {
                    PlatformError::Unexpected("an accepted code names no card".into())
                })?;
                self.holder_of_card(&number).await?
            }
            _ => {
                let msg = "via is card or ecode".to_string();
                return Err(self.refuse(&log, "bad_subject", msg, origin).await);
            }
        };
        if name.is_empty() || name.chars().count() > resident::NAME_CHARS_MAX {
            let msg = "the name read from the card is missing or too long".to_string();
            return Err(self.refuse(&log, "bad_subject", msg, origin).await);
        }
        let resident_id = match self.resident_id_of(&id_number).await {
            Ok(id) => Some(id),
            Err(PlatformError::NotFound(_)) => None,
            Err(PlatformError::Invalid { message, .. }) => {
                return Err(self.refuse(&log, "bad_subject", message, origin).await);
            }
            Err(e) => return Err(e),
        };
        log.resident_id = resident_id;

        // The service and the hotel's grant.
        let service = match self.store.service(IDENTITY_SERVICE).await? {
            Some(s) => service_of_row(&s)?,
            None => {
                let msg = format!("no service {IDENTITY_SERVICE}");
                return Err(self.refuse(&log, "unknown_service", msg, origin).await);
            }
        };
        log.provider = service.provider.clone();
        let grants: Vec<exchange::Grant> = self
            .store
            .grants_of(Some(&member.code), Some(&service.code))
            .await?
            .iter()
            .map(grant_of_row)
            .collect();
        let ask = exchange::CallAsk {
            consumer: &member.code,
            service: &service,
            fields: &body.fields,
            purpose: &body.purpose,
            resident_id,
        };
        // The service needs no consent: the check-in register is required by law.
        let allowed = match exchange::check(&ask, &grants, &[], self.clock.now_ms()) {
            Ok(a) => a,
            Err(r) => return Err(self.refuse(&log, r.code(), r.to_string(), origin).await),
        };
        log.fields = allowed.fields.clone();
        log.grant_id = Some(allowed.grant_id);
        log.legal_basis = Some(allowed.legal_basis.clone());

        // Forward to the police, signed by the exchange.
        let forward = serde_json::to_vec(&CheckinForward {
            service: &service.code,
            consumer: &member.code,
            id_number: &id_number,
            name: &name,
            room: &room,
            via: &body.via,
            fields: &allowed.fields,
            purpose: &body.purpose,
        })
        .map_err(|e| PlatformError::Unexpected(e.to_string()))?;
        let answer = self
            .exchange_forward(&mut log, &service, forward, now_s, origin)
            .await?;

        // Only what the hotel may see, signed (no consent: the register is required by law).
        self.exchange_deliver(
            &mut log,
            &service,
            call,
            &answer,
            &allowed,
            Some(&body.via),
            now_s,
        )
        .await
    }

    /// The ID number and name of a card's holder, from the resident base (not audited here:
    /// the check-in's own access row and audit entry record the use).
    async fn holder_of_card(&self, number: &str) -> Result<(String, String)> {
        let card = self
            .store
            .card_by_number(number)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("card {number}")))?;
        let r = self
            .store
            .resident_by_id(card.resident_id)
            .await?
            .ok_or_else(|| PlatformError::NotFound("the card's holder".into()))?;
        let b = r.id_blind;
        let id = self
            .vault
            .open_string(&crate::residents::ctx(&b, "id_number"), &r.id_sealed)?;
        let name = r
            .name_sealed
            .as_ref()
            .map(|s| {
                self.vault
                    .open_string(&crate::residents::ctx(&b, "name"), s)
            })
            .transpose()?
            .unwrap_or_default();
        Ok((id, name))
    }
}
