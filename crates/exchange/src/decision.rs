//! The gateway's decision: may this consumer call this service, for these fields and this
//! purpose, about this citizen, now? One [`Refusal`] per reason, so every denied call is logged
//! with why.

use crate::catalog::{Consent, Grant, GrantState, Service};
use thiserror::Error;

/// What a consumer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAsk<'a> {
    pub consumer: &'a str,
    pub service: &'a Service,
    /// Fields asked for; empty means every field the grant allows.
    pub fields: &'a [String],
    pub purpose: &'a str,
    /// The citizen the call is about, when the platform knows them.
    pub resident_id: Option<i64>,
}

/// A call allowed, and under what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub grant_id: i64,
    pub consent_id: Option<i64>,
    /// The fields the consumer will see, in the service's order.
    pub fields: Vec<String>,
    /// Those of them it sees unmasked.
    pub full_fields: Vec<String>,
    pub legal_basis: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("the service does not have the fields {0:?}")]
    UnknownFields(Vec<String>),
    #[error("no grant lets {consumer} call {service}")]
    NoGrant { consumer: String, service: String },
    #[error("the grant was withdrawn")]
    GrantWithdrawn,
    #[error("the grant has expired")]
    GrantExpired,
    #[error("the grant is not valid yet")]
    GrantNotYetValid,
    #[error("no grant covers the purpose {0:?}")]
    PurposeNotGranted(String),
    #[error("the fields {0:?} are beyond the grant")]
    FieldsBeyondGrant(Vec<String>),
    #[error("the service needs the citizen's consent and the citizen is not known")]
    UnknownSubject,
    #[error("the citizen has not consented to this call")]
    NoConsent,
    #[error("the citizen revoked the consent")]
    ConsentRevoked,
    #[error("the citizen's consent has expired")]
    ConsentExpired,
}

impl Refusal {
    /// A stable code for logs, the tracker and the API.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownFields(_) => "unknown_fields",
            Refusal::NoGrant { .. } => "no_grant",
            Refusal::GrantWithdrawn => "grant_withdrawn",
            Refusal::GrantExpired => "grant_expired",
            Refusal::GrantNotYetValid => "grant_not_yet_valid",
            Refusal::PurposeNotGranted(_) => "purpose_not_granted",
            Refusal::FieldsBeyondGrant(_) => "fields_beyond_grant",
            Refusal::UnknownSubject => "unknown_subject",
            Refusal::NoConsent => "no_consent",
            Refusal::ConsentRevoked => "consent_revoked",
            Refusal::ConsentExpired => "consent_expired",
        }
    }
}

/// Decides a call from the consumer's grants for the service and the subject's consents (the
/// caller passes what it found; others are ignored here too).
pub fn check(
    ask: &CallAsk<'_>,
    grants: &[Grant],
    consents: &[Consent],
    now_ms: i64,
) -> Result<Allowed, Refusal> {
    let service = ask.service;
    let unknown: Vec<String> = ask
        .fields
        .iter()
        .filter(|f| service.field(f).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(Refusal::UnknownFields(unknown));
    }
    let mine: Vec<&Grant> = grants
        .iter()
        .filter(|g| g.consumer == ask.consumer && g.service == service.code)
        .collect();
    if mine.is_empty() {
        return Err(Refusal::NoGrant {
            consumer: ask.consumer.into(),
            service: service.code.clone(),
        });
    }
    let active: Vec<&Grant> = mine
        .iter()
        .copied()
        .filter(|g| g.state(now_ms) == GrantState::Active)
        .collect();
    if active.is_empty() {
        // The most telling reason: a withdrawal, then an expiry.
        let states: Vec<GrantState> = mine.iter().map(|g| g.state(now_ms)).collect();
        return Err(if states.contains(&GrantState::Withdrawn) {
            Refusal::GrantWithdrawn
        } else if states.contains(&GrantState::Expired) {
            Refusal::GrantExpired
        } else {
            Refusal::GrantNotYetValid
        });
    }
    let for_purpose: Vec<&Grant> = active
        .into_iter()
        .filter(|g| g.purpose == ask.purpose)
        .collect();
    if for_purpose.is_empty() {
        return Err(Refusal::PurposeNotGranted(ask.purpose.into()));
    }
    // The first grant that covers every field asked for; else name what no grant covers.
    let covering = for_purpose
        .iter()
        .find(|g| ask.fields.iter().all(|f| g.fields.contains(f)));
    let Some(grant) = covering else {
        let beyond: Vec<String> = ask
            .fields
            .iter()
            .filter(|f| !for_purpose.iter().any(|g| g.fields.contains(f)))
            .cloned()
            .collect();
        let beyond = if beyond.is_empty() {
            // Each field is in some grant, but no one grant holds them all.
            ask.fields.to_vec()
        } else {
            beyond
        };
        return Err(Refusal::FieldsBeyondGrant(beyond));
    };
    let consent_id = if service.consent_required {
        let resident = ask.resident_id.ok_or(Refusal::UnknownSubject)?;
        let theirs: Vec<&Consent> = consents
            .iter()
            .filter(|c| {
                c.resident_id == resident
                    && c.consumer == ask.consumer
                    && c.service == service.code
                    && c.purpose == ask.purpose
            })
            .collect();
        let live = theirs
            .iter()
            .find(|c| c.revoked_ms.is_none_or(|r| r > now_ms) && now_ms < c.expires_ms);
        match live {
            Some(c) => Some(c.id),
            None if theirs.is_empty() => return Err(Refusal::NoConsent),
            None if theirs.iter().any(|c| c.revoked_ms.is_some()) => {
                return Err(Refusal::ConsentRevoked);
            }
            None => return Err(Refusal::ConsentExpired),
        }
    } else {
        None
    };
    let fields: Vec<String> = service
        .fields
        .iter()
        .map(|f| &f.name)
        .filter(|n| grant.fields.contains(n) && (ask.fields.is_empty() || ask.fields.contains(n)))
        .cloned()
        .collect();
    let full_fields = fields
        .iter()
        .filter(|f| grant.full_fields.contains(f))
        .cloned()
        .collect();
    Ok(Allowed {
        grant_id: grant.id,
        consent_id,
        fields,
        full_fields,
        legal_basis: grant.legal_basis.clone(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::{FieldSpec, MaskStyle, Sensitivity};

    pub(crate) fn service(consent: bool) -> Service {
        Service {
            code: "police.traffic-violations".into(),
            provider: "police".into(),
            name: "交通违法记录".into(),
            description: "traffic violations by ID number".into(),
            input: "id_number".into(),
            fields: vec![
                FieldSpec::new("id_number", Sensitivity::Sensitive, MaskStyle::IdNumber, ""),
                FieldSpec::new("name", Sensitivity::Personal, MaskStyle::Name, ""),
                FieldSpec::new("count", Sensitivity::Internal, MaskStyle::Redact, ""),
                FieldSpec::new("points", Sensitivity::Internal, MaskStyle::Redact, ""),
            ],
            endpoint: "http://127.0.0.1:1/v1/violations".into(),
            consent_required: consent,
        }
    }

    pub(crate) fn grant(fields: &[&str]) -> Grant {
        Grant {
            id: 7,
            consumer: "card-company".into(),
            service: "police.traffic-violations".into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            full_fields: vec![],
            purpose: "credit".into(),
            legal_basis: "agreement 2026-11".into(),
            valid_from_ms: 1_000,
            valid_until_ms: 10_000,
            withdrawn_ms: None,
        }
    }

    fn consent() -> Consent {
        Consent {
            id: 3,
            resident_id: 42,
            consumer: "card-company".into(),
            service: "police.traffic-violations".into(),
            purpose: "credit".into(),
            given_ms: 1_000,
            expires_ms: 8_000,
            revoked_ms: None,
        }
    }

    fn ask<'a>(s: &'a Service, fields: &'a [String]) -> CallAsk<'a> {
        CallAsk {
            consumer: "card-company",
            service: s,
            fields,
            purpose: "credit",
            resident_id: Some(42),
        }
    }

    fn names(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_granted_call_sees_the_granted_fields_in_service_order() {
        let s = service(false);
        let mut g = grant(&["points", "id_number", "count"]);
        g.full_fields = names(&["count"]);
        let all = check(&ask(&s, &[]), std::slice::from_ref(&g), &[], 5_000).unwrap();
        assert_eq!(all.fields, names(&["id_number", "count", "points"]));
        assert_eq!(all.full_fields, names(&["count"]));
        assert_eq!(all.grant_id, 7);
        assert_eq!(all.consent_id, None);
        let some = check(&ask(&s, &names(&["count"])), &[g], &[], 5_000).unwrap();
        assert_eq!(some.fields, names(&["count"]));
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let s = service(false);
        let g = grant(&["id_number", "count"]);
        let r = |grants: &[Grant], fields: &[String], now| {
            check(&ask(&s, fields), grants, &[], now).unwrap_err()
        };
        assert_eq!(r(&[], &[], 5_000).code(), "no_grant");
        // Another consumer's grant does not count.
        let mut other = g.clone();
        other.consumer = "hr".into();
        assert_eq!(r(&[other], &[], 5_000).code(), "no_grant");
        assert_eq!(
            r(std::slice::from_ref(&g), &[], 10_000),
            Refusal::GrantExpired
        );
        assert_eq!(
            r(std::slice::from_ref(&g), &[], 999),
            Refusal::GrantNotYetValid
        );
        let mut w = g.clone();
        w.withdrawn_ms = Some(4_000);
        assert_eq!(r(&[w.clone()], &[], 5_000), Refusal::GrantWithdrawn);
        // Before the withdrawal it still held.
        check(&ask(&s, &[]), &[w], &[], 3_999).unwrap();
        assert_eq!(
            r(std::slice::from_ref(&g), &names(&["name", "count"]), 5_000),
            Refusal::FieldsBeyondGrant(names(&["name"]))
        );
        assert_eq!(
            r(std::slice::from_ref(&g), &names(&["salary"]), 5_000),
            Refusal::UnknownFields(names(&["salary"]))
        );
        let other_purpose = CallAsk {
            purpose: "marketing",
            ..ask(&s, &[])
        };
        assert_eq!(
            check(&other_purpose, &[g], &[], 5_000).unwrap_err(),
            Refusal::PurposeNotGranted("marketing".into())
        );
    }

    #[test]
    fn two_grants_are_not_combined_into_one_call() {
        let s = service(false);
        let mut a = grant(&["count"]);
        let mut b = grant(&["points"]);
        a.id = 1;
        b.id = 2;
        assert_eq!(
            check(
                &ask(&s, &names(&["count", "points"])),
                &[a.clone(), b.clone()],
                &[],
                5_000
            ),
            Err(Refusal::FieldsBeyondGrant(names(&["count", "points"])))
        );
        assert_eq!(
            check(&ask(&s, &names(&["points"])), &[a, b], &[], 5_000)
                .unwrap()
                .grant_id,
            2
        );
    }

    #[test]
    fn consent_is_needed_scoped_revocable_and_expires() {
        let s = service(true);
        let g = grant(&["count"]);
        let c = consent();
        let go = |consents: &[Consent], now| {
            check(&ask(&s, &[]), std::slice::from_ref(&g), consents, now)
        };
        assert_eq!(go(&[], 5_000), Err(Refusal::NoConsent));
        assert_eq!(
            go(std::slice::from_ref(&c), 5_000).unwrap().consent_id,
            Some(3)
        );
        assert_eq!(
            go(std::slice::from_ref(&c), 8_000),
            Err(Refusal::ConsentExpired)
        );
        let mut revoked = c.clone();
        revoked.revoked_ms = Some(4_000);
        assert_eq!(go(&[revoked], 5_000), Err(Refusal::ConsentRevoked));
        // Another citizen's, another consumer's or another purpose's consent does not count.
        for change in [
            Consent {
                resident_id: 43,
                ..c.clone()
            },
            Consent {
                consumer: "hr".into(),
                ..c.clone()
            },
            Consent {
                purpose: "other".into(),
                ..c.clone()
            },
        ] {
            assert_eq!(go(&[change], 5_000), Err(Refusal::NoConsent));
        }
        let unknown = CallAsk {
            resident_id: None,
            ..ask(&s, &[])
        };
        assert_eq!(
            check(&unknown, std::slice::from_ref(&g), &[c], 5_000),
            Err(Refusal::UnknownSubject)
        );
    }
}
