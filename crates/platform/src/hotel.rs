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
//! The consumer checks and the provider round trip follow `Platform::exchange_call` step for
//! step; they are written out here, not shared, so the call's hot path stays as it is while
//! its caching is reworked.

use std::sync::atomic::Ordering;

use crate::exchange::{
    ANSWER_BYTES_MAX, CALL_BODY_MAX, CallLog, Delivered, PLATFORM_MEMBER, SignedCall, grant_of_row,
    message_code, random_nonce, service_of_row,
};
use crate::{Caller, Platform, PlatformError, Result};
use exchange::message::{
    HEADER_MEMBER, HEADER_NONCE, HEADER_REPLY_TO, HEADER_SIGNATURE, HEADER_TIME,
};
use exchange::{Envelope, MessageError, MessageKind};
use store::{Role, StoreError};

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

        // The hotel: a member, its signature, its clock, its nonce (memory, then storage).
        let member = match self.store.member(&log.consumer).await? {
            Some(m) if m.status == "active" => m,
            _ => {
                let msg = format!("{} is not an active exchange member", log.consumer);
                return Err(self.refuse(&log, "unknown_member", msg, origin).await);
            }
        };
        let key = crypto::Sm2PublicKey::from_sec1(&member.public_key)
            .map_err(|e| PlatformError::Unexpected(format!("stored member key: {e}")))?;
        let now_s = self.clock.now_ms().div_euclid(1000);
        if let Err(e) = env.verify(&key, call.signature, now_s) {
            return Err(self
                .refuse(&log, message_code(&e), e.to_string(), origin)
                .await);
        }
        let fresh = self
            .exchange
            .replay
            .lock()
            .expect("replay cache lock")
            .check_and_insert(call.member, call.nonce, call.time_s, now_s);
        let fresh = match fresh {
            Ok(()) => match self
                .store
                .exchange_nonce_use(call.member, call.nonce, call.time_s * 1000)
                .await
            {
                Ok(()) => Ok(()),
                Err(StoreError::Conflict(_)) => Err(MessageError::Replay),
                Err(e) => return Err(e.into()),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = fresh {
            return Err(self
                .refuse(&log, message_code(&e), e.to_string(), origin)
                .await);
        }
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
        let fwd_nonce = random_nonce()?;
        let fwd = Envelope {
            kind: MessageKind::Forward,
            member: PLATFORM_MEMBER,
            time_s: now_s,
            nonce: &fwd_nonce,
            service: &service.code,
            reply_to: "",
            body: &forward,
        };
        log.forward_digest = Some(hex::encode_upper(fwd.digest()));
        let fwd_sig = fwd.sign_with(|m| self.exchange.signer.sign(m));
        let transport = self
            .exchange
            .transport
            .read()
            .expect("transport lock")
            .clone();
        let Some(transport) = transport else {
            let msg = "no provider transport is attached to this process".to_string();
            return Err(self.fail(&log, "provider_unreachable", msg, origin).await);
        };
        let headers = vec![
            (HEADER_MEMBER, PLATFORM_MEMBER.to_string()),
            (HEADER_TIME, now_s.to_string()),
            (HEADER_NONCE, fwd_nonce.clone()),
            (HEADER_SIGNATURE, fwd_sig),
        ];
        let timeout_ms = self.exchange.timeout_ms.load(Ordering::Relaxed);
        let reply = match transport
            .post(
                &service.endpoint,
                headers,
                forward,
                timeout_ms,
                ANSWER_BYTES_MAX,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let code = match e {
                    crate::exchange::TransportError::Timeout(_) => "provider_timeout",
                    crate::exchange::TransportError::Unreachable(_) => "provider_unreachable",
                    crate::exchange::TransportError::TooLarge(_) => "provider_too_large",
                };
                return Err(self.fail(&log, code, e.to_string(), origin).await);
            }
        };
        if reply.status != 200 {
            let msg = format!("the provider answered HTTP {}", reply.status);
            return Err(self.fail(&log, "provider_status", msg, origin).await);
        }

        // The police's answer: signed by the police, for this forward.
        let provider =
            self.store.member(&service.provider).await?.ok_or_else(|| {
                PlatformError::Unexpected("a service without its provider".into())
            })?;
        let pkey = crypto::Sm2PublicKey::from_sec1(&provider.public_key)
            .map_err(|e| PlatformError::Unexpected(format!("stored member key: {e}")))?;
        let h = |n: &str| reply.header(n).unwrap_or("");
        let r_time: i64 = h(HEADER_TIME).parse().unwrap_or(i64::MIN / 2);
        let renv = Envelope {
            kind: MessageKind::Response,
            member: h(HEADER_MEMBER),
            time_s: r_time,
            nonce: h(HEADER_NONCE),
            service: &service.code,
            reply_to: h(HEADER_REPLY_TO),
            body: &reply.body,
        };
        log.response_digest = Some(hex::encode_upper(renv.digest()));
        let checked = if renv.member != provider.code {
            Err(MessageError::Member)
        } else if !renv.reply_to.eq_ignore_ascii_case(&fwd_nonce) {
            Err(MessageError::ReplyTo)
        } else {
            renv.verify(&pkey, h(HEADER_SIGNATURE), now_s)
        };
        if let Err(e) = checked {
            let msg = format!("the provider's answer was refused: {e}");
            return Err(self.fail(&log, "provider_signature", msg, origin).await);
        }
        let answer: serde_json::Map<String, serde_json::Value> =
            match serde_json::from_slice(&reply.body) {
                Ok(a) => a,
                Err(e) => {
                    let msg = format!("the provider's answer is not a JSON object: {e}");
                    return Err(self.fail(&log, "provider_malformed", msg, origin).await);
                }
            };

        // Only what the hotel may see, signed.
        let (data, masked) =
            exchange::minimise(&service, &answer, &allowed.fields, &allowed.full_fields);
        log.masked = masked.clone();
        let delivery = serde_json::to_vec(&serde_json::json!({
            "service": service.code,
            "call": call.nonce.to_ascii_lowercase(),
            "via": body.via,
            "data": data,
            "masked": masked,
            "legal_basis": allowed.legal_basis,
            "consent": null,
        }))
        .map_err(|e| PlatformError::Unexpected(e.to_string()))?;
        let d_nonce = random_nonce()?;
        let denv = Envelope {
            kind: MessageKind::Delivery,
            member: PLATFORM_MEMBER,
            time_s: now_s,
            nonce: &d_nonce,
            service: &service.code,
            reply_to: call.nonce,
            body: &delivery,
        };
        log.delivery_digest = Some(hex::encode_upper(denv.digest()));
        let signature = denv.sign_with(|m| self.exchange.signer.sign(m));
        self.exchange_log(&log, "delivered", None, origin).await?;
        Ok(Delivered {
            body: delivery,
            time_s: now_s,
            nonce: d_nonce,
            reply_to: call.nonce.to_ascii_lowercase(),
            signature,
        })
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
