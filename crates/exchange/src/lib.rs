//! The data-sharing exchange's rules (数据共享, issue 8), pure: no I/O, no clock, no async.
//!
//! - [`catalog`]: members, the services they publish with each output field's
//!   [`Sensitivity`](catalog::Sensitivity), grants (consumer × service × fields, with a purpose
//!   and a legal basis, validity and withdrawal) and citizens' consents.
//! - [`decision`]: whether a call may go ahead ([`decision::check`]), and if not, one
//!   [`Refusal`](decision::Refusal) naming why.
//! - [`minimise`]: what of a provider's answer the consumer sees: only the granted fields,
//!   personal ones masked (`410***********1234`) unless the grant allows the full value.
//! - [`message`]: the canonical form every party signs (SM2 with SM3), bound to member, time,
//!   nonce, service and the body's SM3; batch signatures (one SM2 signature over an SM3 hash
//!   tree of several messages' digests, each message with its path) and the cache of verified
//!   batch roots; the digests written to the audit log; the signed head record of the log's
//!   batch time-stamping.

pub mod catalog;
pub mod decision;
pub mod message;
pub mod minimise;

pub use catalog::{Consent, FieldSpec, Grant, MaskStyle, Sensitivity, Service};
pub use decision::{Allowed, CallAsk, Refusal, check};
pub use message::{
    BatchCache, BatchProof, Envelope, MessageError, MessageKind, ReplayCache, Signed,
};
pub use minimise::minimise;

use thiserror::Error;

/// A malformed name (member, service, field, purpose).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{what}: {rule}")]
pub struct NameError {
    pub what: &'static str,
    pub rule: &'static str,
}

/// Member codes: 1 to 32 characters `a-z 0-9 - _` (`police`, `fund`, `card-company`).
pub fn check_member(code: &str) -> Result<(), NameError> {
    let ok = !code.is_empty()
        && code.len() <= 32
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    ok.then_some(()).ok_or(NameError {
        what: "member",
        rule: "1 to 32 characters a-z 0-9 - _",
    })
}

/// Service codes: 1 to 48 characters `a-z 0-9 . - _` (`police.traffic-violations`).
pub fn check_service(code: &str) -> Result<(), NameError> {
    let ok = !code.is_empty()
        && code.len() <= 48
        && code.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        });
    ok.then_some(()).ok_or(NameError {
        what: "service",
        rule: "1 to 48 characters a-z 0-9 . - _",
    })
}

/// Field names: 1 to 32 characters `a-z 0-9 _`.
pub fn check_field(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then_some(()).ok_or(NameError {
        what: "field",
        rule: "1 to 32 characters a-z 0-9 _",
    })
}

/// Purposes and legal bases: 1 to 200 characters of text, no control characters.
pub fn check_text(what: &'static str, text: &str) -> Result<(), NameError> {
    let ok = !text.trim().is_empty()
        && text.chars().count() <= 200
        && !text.chars().any(char::is_control);
    ok.then_some(()).ok_or(NameError {
        what,
        rule: "1 to 200 characters without control characters",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        check_member("police").unwrap();
        assert!(check_member("Police").is_err());
        assert!(check_member("").is_err());
        check_service("police.traffic-violations").unwrap();
        assert!(check_service(&"a".repeat(49)).is_err());
        check_field("id_number").unwrap();
        assert!(check_field("id-number").is_err());
        check_text("purpose", "交通违法核查").unwrap();
        assert!(check_text("purpose", "a\nb").is_err());
        assert!(check_text("purpose", " ").is_err());
    }
}
