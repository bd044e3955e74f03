//! The pure part of OpenID Connect: PKCE (RFC 7636, S256), ES256 JSON Web Keys and compact
//! JSON Web Signatures (RFC 7515/7517/7518), and the ID token checks of OpenID Connect Core
//! §3.1.3.7 (issuer, audience, expiry, nonce). No I/O and no clock: time is passed in.
//!
//! Only ES256 is accepted. A token whose header names another algorithm (`none`, `HS256`,
//! RS256 …) is refused before any key is looked at, so an attacker cannot pick the algorithm.

use crate::OidcError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// An ID token is at most this many bytes.
pub const ID_TOKEN_BYTES_MAX: usize = 16 * 1024;
/// Keys taken from one JWKS at most.
pub const JWKS_KEYS_MAX: usize = 32;
/// Clock difference tolerated between the identity provider and the platform, seconds.
pub const LEEWAY_S: i64 = 60;
/// An ID token issued further than this in the past is refused even if not expired, seconds.
pub const ISSUED_AGE_MAX_S: i64 = 10 * 60;

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(s: &str, what: &str) -> Result<Vec<u8>, OidcError> {
    B64.decode(s)
        .map_err(|_| OidcError::Malformed(format!("{what} is not base64url")))
}

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, OidcError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|_| OidcError::Protocol("random source".into()))?;
    Ok(b)
}

/// 32 random bytes as base64url: states, nonces, verifiers and codes.
pub fn random_token() -> Result<String, OidcError> {
    Ok(b64(&random_bytes(32)?))
}

/// The S256 code challenge of a PKCE verifier: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    b64(&Sha256::digest(verifier.as_bytes()))
}

/// A verifier per RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn pkce_verifier_valid(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// One verification key of the identity provider.
#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: String,
    pub key: VerifyingKey,
}

/// The public JWK of `key` (`kty` EC, `crv` P-256, `alg` ES256, `use` sig).
pub fn jwk_of(kid: &str, key: &VerifyingKey) -> Value {
    let point = key.to_sec1_point(false);
    let bytes = point.as_bytes();
    serde_json::json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": b64(&bytes[1..33]), "y": b64(&bytes[33..65]),
    })
}

/// The P-256 signature keys of a JWKS document (`{"keys": [...]}`); keys of other types or
/// uses are skipped, a P-256 key whose point is not on the curve is an error.
pub fn parse_jwks(doc: &Value) -> Result<Vec<Jwk>, OidcError> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| OidcError::Protocol("JWKS without keys".into()))?;
    let mut out = Vec::new();
    for k in keys.iter().take(JWKS_KEYS_MAX) {
        let s = |f: &str| k.get(f).and_then(Value::as_str);
        if s("kty") != Some("EC") || s("crv") != Some("P-256") {
            continue;
        }
        if s("use").is_some_and(|u| u != "sig") || s("alg").is_some_and(|a| a != "ES256") {
            continue;
        }
        let x = unb64(s("x").unwrap_or_default(), "JWK x")?;
        let y = unb64(s("y").unwrap_or_default(), "JWK y")?;
        if x.len() != 32 || y.len() != 32 {
            return Err(OidcError::Protocol(
                "JWK coordinates are not 32 bytes".into(),
            ));
        }
        let mut sec1 = Vec::with_capacity(65);
        sec1.push(4);
        sec1.extend_from_slice(&x);
        sec1.extend_from_slice(&y);
        let key = VerifyingKey::from_sec1_bytes(&sec1)
            .map_err(|_| OidcError::Protocol("JWK point is not on P-256".into()))?;
        out.push(Jwk {
            kid: s("kid").unwrap_or_default().to_string(),
            key,
        });
    }
    Ok(out)
}

/// A compact JWS over `claims`, signed ES256 with `key` (the simulated identity provider).
pub fn sign_es256(kid: &str, key: &SigningKey, claims: &Value) -> String {
    let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": kid });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig.to_bytes()))
}

/// The kid a compact JWS's header names, if any (to know whether the keys must be fetched
/// again after a rotation).
pub fn header_kid(token: &str) -> Option<String> {
    let h = token.split('.').next()?;
    let v: Value = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
    v.get("kid")?.as_str().map(str::to_string)
}

/// Checks a compact JWS's ES256 signature with the key its `kid` names (or, without a kid,
/// any key of the set) and returns its claims.
pub fn verify_es256(token: &str, keys: &[Jwk]) -> Result<Map<String, Value>, OidcError> {
    if token.len() > ID_TOKEN_BYTES_MAX {
        return Err(OidcError::Malformed("ID token too large".into()));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::Malformed("not a compact JWS".into()));
    };
    let header: Value = serde_json::from_slice(&unb64(h, "header")?)
        .map_err(|_| OidcError::Malformed("header is not JSON".into()))?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if alg != "ES256" {
        return Err(OidcError::Malformed(format!(
            "algorithm {alg:?} is not accepted (ES256 only)"
        )));
    }
    let sig =
        Signature::from_slice(&unb64(s, "signature")?).map_err(|_| OidcError::BadSignature)?;
    let input = &token[..h.len() + 1 + p.len()];
    let kid = header.get("kid").and_then(Value::as_str);
    let candidates: Vec<&Jwk> = keys
        .iter()
        .filter(|k| kid.is_none_or(|kid| k.kid == kid))
        .collect();
    if candidates.is_empty() {
        return Err(OidcError::UnknownKey);
    }
    if !candidates
        .iter()
        .any(|k| k.key.verify(input.as_bytes(), &sig).is_ok())
    {
        return Err(OidcError::BadSignature);
    }
    match serde_json::from_slice(&unb64(p, "payload")?) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(OidcError::Malformed("payload is not a JSON object".into())),
    }
}

/// What an ID token must say to be accepted.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now_s: i64,
}

/// The claim checks of OpenID Connect Core §3.1.3.7 on a signature-checked token.
pub fn check_claims(claims: &Map<String, Value>, e: &Expected<'_>) -> Result<(), OidcError> {
    let s = |f: &str| claims.get(f).and_then(Value::as_str);
    if s("iss") != Some(e.issuer) {
        return Err(OidcError::WrongIssuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == e.client_id,
        // Several audiences: ours among them, and the token issued to us (azp).
        Some(Value::Array(a)) => {
            a.iter().any(|v| v.as_str() == Some(e.client_id))
                && (a.len() == 1 || s("azp") == Some(e.client_id))
        }
        _ => false,
    };
    if !aud_ok {
        return Err(OidcError::WrongAudience);
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| OidcError::Malformed("no exp claim".into()))?;
    if e.now_s > exp + LEEWAY_S {
        return Err(OidcError::TokenExpired);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| OidcError::Malformed("no iat claim".into()))?;
    if iat > e.now_s + LEEWAY_S || e.now_s - iat > ISSUED_AGE_MAX_S + LEEWAY_S {
        return Err(OidcError::TokenExpired);
    }
    // Constant time is not needed: the nonce is not a secret once the token exists.
    if s("nonce") != Some(e.nonce) {
        return Err(OidcError::WrongNonce);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    fn claims(now: i64) -> Value {
        serde_json::json!({
            "iss": "http://idp.test", "aud": "citycard", "sub": "u1", "nonce": "n-1",
            "iat": now, "exp": now + 300, "id_number": "110101199003070011",
        })
    }

    fn expected(now_s: i64) -> Expected<'static> {
        Expected {
            issuer: "http://idp.test",
            client_id: "citycard",
            nonce: "n-1",
            now_s,
        }
    }

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_verifier_valid(v));
        assert_eq!(
            pkce_challenge(v),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(!pkce_verifier_valid("short"));
        assert!(!pkce_verifier_valid(&"a".repeat(129)));
        assert!(!pkce_verifier_valid(&format!("{}+", "a".repeat(50))));
        let fresh = random_token().unwrap();
        assert!(pkce_verifier_valid(&fresh));
        assert_ne!(fresh, random_token().unwrap());
    }

    #[test]
    fn a_signed_token_verifies_through_its_jwk() {
        let k = key(7);
        let jwks = serde_json::json!({ "keys": [jwk_of("k1", k.verifying_key())] });
        let keys = parse_jwks(&jwks).unwrap();
        assert_eq!(keys.len(), 1);
        let t = sign_es256("k1", &k, &claims(1_000));
        assert_eq!(header_kid(&t).as_deref(), Some("k1"));
        let c = verify_es256(&t, &keys).unwrap();
        assert_eq!(c["id_number"], "110101199003070011");
        check_claims(&c, &expected(1_010)).unwrap();
    }

    #[test]
    fn forged_altered_and_foreign_algorithm_tokens_are_refused() {
        let k = key(7);
        let keys =
            parse_jwks(&serde_json::json!({ "keys": [jwk_of("k1", k.verifying_key())] })).unwrap();
        // Signed by another key under the same kid.
        let forged = sign_es256("k1", &key(9), &claims(1_000));
        assert!(matches!(
            verify_es256(&forged, &keys),
            Err(OidcError::BadSignature)
        ));
        // A payload swapped under a valid signature.
        let good = sign_es256("k1", &k, &claims(1_000));
        let mut other = claims(1_000);
        other["id_number"] = "110101199003070099".into();
        let parts: Vec<&str> = good.split('.').collect();
        let altered = format!(
            "{}.{}.{}",
            parts[0],
            b64(other.to_string().as_bytes()),
            parts[2]
        );
        assert!(matches!(
            verify_es256(&altered, &keys),
            Err(OidcError::BadSignature)
        ));
        // alg none and HS256 never reach a key.
        for alg in ["none", "HS256", "RS256"] {
            let h = b64(serde_json::json!({ "alg": alg, "kid": "k1" })
                .to_string()
                .as_bytes());
            let t = format!("{h}.{}.{}", parts[1], parts[2]);
            assert!(matches!(
                verify_es256(&t, &keys),
                Err(OidcError::Malformed(_))
            ));
        }
        // An unknown kid.
        let t = sign_es256("k2", &k, &claims(1_000));
        assert!(matches!(
            verify_es256(&t, &keys),
            Err(OidcError::UnknownKey)
        ));
        assert!(matches!(
            verify_es256("a.b", &keys),
            Err(OidcError::Malformed(_))
        ));
    }

    #[test]
    fn claims_are_checked_one_by_one() {
        let now = 1_000;
        let check = |edit: &dyn Fn(&mut Value)| {
            let mut c = claims(now);
            edit(&mut c);
            check_claims(c.as_object().unwrap(), &expected(now + 5))
        };
        assert!(check(&|_| {}).is_ok());
        assert!(matches!(
            check(&|c| c["iss"] = "http://evil.test".into()),
            Err(OidcError::WrongIssuer)
        ));
        assert!(matches!(
            check(&|c| c["aud"] = "someone-else".into()),
            Err(OidcError::WrongAudience)
        ));
        assert!(matches!(
            check(&|c| c["aud"] = serde_json::json!(["citycard", "other"])),
            Err(OidcError::WrongAudience)
        ));
        assert!(
            check(&|c| {
                c["aud"] = serde_json::json!(["citycard", "other"]);
                c["azp"] = "citycard".into();
            })
            .is_ok()
        );
        assert!(matches!(
            check(&|c| c["exp"] = (now - 2 * LEEWAY_S).into()),
            Err(OidcError::TokenExpired)
        ));
        assert!(matches!(
            check(&|c| c["iat"] = (now - ISSUED_AGE_MAX_S - 2 * LEEWAY_S).into()),
            Err(OidcError::TokenExpired)
        ));
        assert!(matches!(
            check(&|c| c["nonce"] = "n-2".into()),
            Err(OidcError::WrongNonce)
        ));
        assert!(matches!(
            check(&|c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
            Err(OidcError::WrongNonce)
        ));
    }

    #[test]
    fn jwks_with_a_point_off_the_curve_is_refused() {
        let bad = serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "kid": "x", "x": b64(&[1u8; 32]), "y": b64(&[2u8; 32]),
        }]});
        assert!(parse_jwks(&bad).is_err());
        // Other key types are skipped, not errors.
        let rsa = serde_json::json!({ "keys": [{ "kty": "RSA", "n": "AQAB", "e": "AQAB" }]});
        assert!(parse_jwks(&rsa).unwrap().is_empty());
    }
}
