//! The city's identity provider over OpenID Connect (issue 9, item 1): [`RelyingParty`], the
//! platform's side of the authorization code flow with PKCE (discovery, the authorization
//! redirect with state and nonce, the token exchange, ES256 ID token verification against the
//! provider's JWKS); [`jose`], the pure checks; and [`sim`], a simulated city identity
//! provider served over real HTTP with synthetic users.
//!
//! The relying party answers an identity (the subject and the resident's ID number from the
//! configured claim); mapping it to a resident and opening a session is the platform's
//! (`Platform::citizen_sign_in_external`). Like `sms-link`, the client is hyper-util's.
//!
//! Why p256 and not a JWT crate: `jsonwebtoken` needs either `ring`/`aws-lc` (C and assembly)
//! or, with its pure-Rust backend, the previous RustCrypto generation (p256 0.13, rsa,
//! ed25519) beside the 0.14 one `sm2` already brings. We accept one algorithm, ES256, so
//! compact JWS is a split, a base64url decode and one `p256` ECDSA verification on the
//! elliptic-curve 0.14 the workspace already builds; the claim checks are written out in
//! [`jose::check_claims`] and tested one by one.

pub mod jose;
pub mod sim;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// An answer body of the identity provider is at most this large.
pub const ANSWER_BYTES_MAX: usize = 64 * 1024;
/// Sign-ins started and not yet finished, at most; beyond it the oldest expired are dropped,
/// and if none has expired new sign-ins are refused until some finish or expire.
pub const PENDING_MAX: usize = 10_000;
/// A started sign-in must come back within this long.
pub const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
/// The provider's keys are fetched again for an unknown kid at most this often.
pub const JWKS_REFRESH_MIN_MS: i64 = 60 * 1000;
/// A code, state or nonce the platform accepts is at most this long.
pub const PARAM_BYTES_MAX: usize = 512;

/// Why a sign-in through the identity provider failed. `code()` is stable for clients.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("this sign-in is unknown or was already finished")]
    StateUnknown,
    #[error("this sign-in took too long")]
    StateExpired,
    #[error("too many sign-ins are in progress")]
    Busy,
    #[error("the identity provider did not sign the citizen in: {0}")]
    Denied(String),
    #[error("the identity provider refused the code (used before, expired or not ours): {0}")]
    CodeRefused(String),
    #[error("the ID token's signature does not verify")]
    BadSignature,
    #[error("the ID token is signed with a key the identity provider does not publish")]
    UnknownKey,
    #[error("the ID token was issued by another issuer")]
    WrongIssuer,
    #[error("the ID token was issued for another client")]
    WrongAudience,
    #[error("the ID token has expired")]
    TokenExpired,
    #[error("the ID token's nonce is not this sign-in's")]
    WrongNonce,
    #[error("the ID token carries no {0:?} claim")]
    MissingClaim(String),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("the identity provider is unreachable: {0}")]
    Unreachable(String),
    #[error("the identity provider broke the protocol: {0}")]
    Protocol(String),
}

impl OidcError {
    /// The stable code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::StateUnknown => "oidc_state_unknown",
            OidcError::StateExpired => "oidc_state_expired",
            OidcError::Busy => "oidc_busy",
            OidcError::Denied(_) => "oidc_denied",
            OidcError::CodeRefused(_) => "oidc_code_refused",
            OidcError::BadSignature | OidcError::UnknownKey => "oidc_bad_signature",
            OidcError::WrongIssuer => "oidc_wrong_issuer",
            OidcError::WrongAudience => "oidc_wrong_audience",
            OidcError::TokenExpired => "oidc_token_expired",
            OidcError::WrongNonce => "oidc_wrong_nonce",
            OidcError::MissingClaim(_) => "oidc_missing_claim",
            OidcError::Malformed(_) => "oidc_malformed",
            OidcError::Unreachable(_) => "oidc_unreachable",
            OidcError::Protocol(_) => "oidc_protocol",
        }
    }
}

/// A secret whose `Debug` prints a mask; the value needs [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

fn default_claim() -> String {
    "id_number".into()
}
fn default_timeout_ms() -> u64 {
    5_000
}

/// The `[oidc]` section of the platform's configuration file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Off unless set: the password and SMS code sign-in stays the default.
    #[serde(default)]
    pub enabled: bool,
    /// The issuer URL; discovery is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Where the provider sends the portal's citizens back:
    /// `https://<platform>/portal/login/oidc/callback`.
    pub redirect_url: String,
    /// The redirect URI the phone app registered (its own scheme), used when the app hands
    /// its code to `POST /api/v1/citizen/sessions/oidc`; the portal's when absent.
    #[serde(default)]
    pub app_redirect_url: Option<String>,
    /// The ID token claim carrying the resident's ID number.
    #[serde(default = "default_claim")]
    pub id_number_claim: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// The provider's metadata, from discovery.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

/// Who the identity provider says signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    /// The resident's ID number, as the configured claim carries it.
    pub id_number: Secret,
}

/// A sign-in started: where to send the citizen, and the state the callback must bring back
/// (the server ties it to the browser).
#[derive(Debug, Clone)]
pub struct Started {
    pub url: String,
    pub state: String,
}

/// A sign-in started and not yet finished.
#[derive(Debug)]
struct Pending {
    nonce: String,
    verifier: String,
    started_ms: i64,
}

#[derive(Default)]
struct Keys {
    keys: Vec<jose::Jwk>,
    fetched_ms: Option<i64>,
}

/// The platform as an OpenID Connect relying party of the city's identity provider.
pub struct RelyingParty {
    cfg: OidcConfig,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
    discovery: tokio::sync::Mutex<Option<Discovery>>,
    keys: tokio::sync::Mutex<Keys>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl RelyingParty {
    pub fn new(cfg: OidcConfig) -> Self {
        let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        RelyingParty {
            cfg,
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
            discovery: tokio::sync::Mutex::new(None),
            keys: tokio::sync::Mutex::new(Keys::default()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// Sign-ins started and not finished (expired ones included until swept).
    pub fn pending_count(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    async fn call(&self, req: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes), OidcError> {
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| OidcError::Unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            let bytes = http_body_util::Limited::new(resp.into_body(), ANSWER_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| OidcError::Unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, OidcError>((status, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| OidcError::Unreachable(format!("no answer within {:?}", self.timeout)))?
    }

    async fn get_json(&self, url: &str) -> Result<Value, OidcError> {
        let req = hyper::Request::get(url)
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| OidcError::Protocol(format!("{url}: {e}")))?;
        let (status, body) = self.call(req).await?;
        if status != 200 {
            return Err(OidcError::Unreachable(format!("{url}: HTTP {status}")));
        }
        serde_json::from_slice(&body).map_err(|_| OidcError::Protocol(format!("{url}: not JSON")))
    }

    /// The provider's metadata, fetched once.
    pub async fn discovery(&self) -> Result<Discovery, OidcError> {
        let mut d = self.discovery.lock().await;
        if let Some(d) = &*d {
            return Ok(d.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let meta: Discovery = serde_json::from_value(self.get_json(&url).await?)
            .map_err(|e| OidcError::Protocol(format!("discovery: {e}")))?;
        // OpenID Connect Discovery §4.3: the issuer must be the one configured.
        if meta.issuer != self.cfg.issuer {
            return Err(OidcError::Protocol(format!(
                "discovery names issuer {:?}, configured {:?}",
                meta.issuer, self.cfg.issuer
            )));
        }
        if !meta.code_challenge_methods_supported.is_empty()
            && !meta
                .code_challenge_methods_supported
                .iter()
                .any(|m| m == "S256")
        {
            return Err(OidcError::Protocol(
                "the provider does not take PKCE S256".into(),
            ));
        }
        *d = Some(meta.clone());
        Ok(meta)
    }

    /// The verification keys; fetched again when `kid` is unknown (a rotation), at most once
    /// per [`JWKS_REFRESH_MIN_MS`].
    async fn keys_for(&self, kid: Option<&str>, now_ms: i64) -> Result<Vec<jose::Jwk>, OidcError> {
        let mut k = self.keys.lock().await;
        let known = match kid {
            Some(kid) => k.keys.iter().any(|j| j.kid == kid),
            None => !k.keys.is_empty(),
        };
        let may_refresh = k
            .fetched_ms
            .is_none_or(|t| now_ms - t >= JWKS_REFRESH_MIN_MS || now_ms < t);
        if !known && may_refresh {
            let d = self.discovery().await?;
            k.keys = jose::parse_jwks(&self.get_json(&d.jwks_uri).await?)?;
            k.fetched_ms = Some(now_ms);
        }
        Ok(k.keys.clone())
    }

    /// Starts a sign-in: remembers a state, a nonce and a PKCE verifier, and answers the URL
    /// of the provider's authorization endpoint to send the citizen to.
    pub async fn start(&self, now_ms: i64) -> Result<Started, OidcError> {
        let d = self.discovery().await?;
        let state = jose::random_token()?;
        let nonce = jose::random_token()?;
        let verifier = jose::random_token()?;
        let challenge = jose::pkce_challenge(&verifier);
        {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if p.len() >= PENDING_MAX {
                p.retain(|_, v| now_ms - v.started_ms < PENDING_TTL_MS);
                if p.len() >= PENDING_MAX {
                    return Err(OidcError::Busy);
                }
            }
            p.insert(
                state.clone(),
                Pending {
                    nonce: nonce.clone(),
                    verifier,
                    started_ms: now_ms,
                },
            );
        }
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", &self.cfg.client_id),
            ("redirect_uri", &self.cfg.redirect_url),
            ("scope", "openid"),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|e| OidcError::Protocol(e.to_string()))?;
        let sep = if d.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(Started {
            url: format!("{}{sep}{query}", d.authorization_endpoint),
            state,
        })
    }

    /// Finishes a portal sign-in from the callback's `state` and `code`: the state is used up
    /// (a replayed callback finds nothing), the code exchanged with the verifier, the ID
    /// token verified.
    pub async fn finish(
        &self,
        state: &str,
        code: &str,
        now_ms: i64,
    ) -> Result<Identity, OidcError> {
        if state.is_empty() || state.len() > PARAM_BYTES_MAX {
            return Err(OidcError::StateUnknown);
        }
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)
            .ok_or(OidcError::StateUnknown)?;
        if now_ms - pending.started_ms >= PENDING_TTL_MS {
            return Err(OidcError::StateExpired);
        }
        self.redeem_with(
            code,
            &pending.verifier,
            &pending.nonce,
            &self.cfg.redirect_url,
            now_ms,
        )
        .await
    }

    /// Forgets a started sign-in whose callback came back with an error.
    pub fn abandon(&self, state: &str) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)
            .is_some()
    }

    /// The phone app's sign-in: the app ran the authorization request itself (its own state,
    /// nonce and PKCE pair, redirect to its registered URI) and hands over the code, its
    /// verifier and the nonce it sent. The platform exchanges the code with the client secret
    /// the app does not hold and verifies the ID token as for the portal.
    pub async fn redeem(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        now_ms: i64,
    ) -> Result<Identity, OidcError> {
        if !jose::pkce_verifier_valid(verifier) {
            return Err(OidcError::Malformed(
                "code_verifier: 43 to 128 characters of A-Z a-z 0-9 - . _ ~".into(),
            ));
        }
        if nonce.is_empty() || nonce.len() > PARAM_BYTES_MAX {
            return Err(OidcError::Malformed("nonce: 1 to 512 characters".into()));
        }
        let redirect = self
            .cfg
            .app_redirect_url
            .clone()
            .unwrap_or_else(|| self.cfg.redirect_url.clone());
        self.redeem_with(code, verifier, nonce, &redirect, now_ms)
            .await
    }

    async fn redeem_with(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        redirect: &str,
        now_ms: i64,
    ) -> Result<Identity, OidcError> {
        if code.is_empty() || code.len() > PARAM_BYTES_MAX {
            return Err(OidcError::Malformed("code: 1 to 512 characters".into()));
        }
        let d = self.discovery().await?;
        let form = serde_urlencoded::to_string([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
            ("client_id", &self.cfg.client_id),
            ("client_secret", self.cfg.client_secret.expose()),
        ])
        .map_err(|e| OidcError::Protocol(e.to_string()))?;
        let req = hyper::Request::post(&d.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| OidcError::Protocol(format!("token request: {e}")))?;
        let (status, body) = self.call(req).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|_| OidcError::Protocol(format!("token endpoint: HTTP {status}, not JSON")))?;
        if status != 200 {
            let err = answer.get("error").and_then(Value::as_str).unwrap_or("");
            let desc = answer
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            // RFC 6749 §5.2: invalid_grant is a code used before, expired, or not issued to
            // us (or a verifier that does not match); the citizen starts over.
            return Err(match err {
                "invalid_grant" => OidcError::CodeRefused(desc.chars().take(200).collect()),
                _ if status >= 500 => {
                    OidcError::Unreachable(format!("token endpoint: HTTP {status}"))
                }
                _ => OidcError::Protocol(format!("token endpoint: {err} {desc}")),
            });
        }
        let id_token = answer
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| OidcError::Protocol("token answer without id_token".into()))?;
        let keys = self
            .keys_for(jose::header_kid(id_token).as_deref(), now_ms)
            .await?;
        let claims = jose::verify_es256(id_token, &keys)?;
        jose::check_claims(
            &claims,
            &jose::Expected {
                issuer: &self.cfg.issuer,
                client_id: &self.cfg.client_id,
                nonce,
                now_s: now_ms.div_euclid(1000),
            },
        )?;
        let claim = &self.cfg.id_number_claim;
        let id_number = claims
            .get(claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 64)
            .ok_or_else(|| OidcError::MissingClaim(claim.clone()))?;
        Ok(Identity {
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(255)
                .collect(),
            id_number: Secret::new(id_number),
        })
    }
}
