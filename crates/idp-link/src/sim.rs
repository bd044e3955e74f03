//! The simulated city identity provider (统一身份认证): OpenID Connect served over real HTTP
//! (axum) with synthetic users, so the platform's relying party is tested against a provider
//! it reaches over the network, as it would the city's.
//!
//! - `GET /.well-known/openid-configuration`: discovery;
//! - `GET /jwks`: its ES256 key;
//! - `GET /authorize`: the authorization code request (PKCE S256 required). With `user=<ID
//!   number>` of a synthetic user it approves at once (tests, scripts); without, it shows a
//!   one-field sign-in form that comes back with `user`;
//! - `POST /token`: the code, once, for its client (secret in the form or HTTP Basic), its
//!   redirect URI and its PKCE verifier; answers an ID token carrying the user's ID number in
//!   the configured claim;
//! - `PUT /sim/mode` with `{"mode": "normal" | "forge_signature" | "wrong_audience" |
//!   "expired"}`: ID tokens signed by a key it does not publish, issued for another client,
//!   or expired.
//!
//! Run it with `citycard sim idp --listen 127.0.0.1:0`; tests start it in process.

use crate::jose;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use p256::ecdsa::SigningKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Codes issued and not yet swept, at most.
pub const CODES_MAX: usize = 100_000;
/// A code must be exchanged within this long.
pub const CODE_TTL_MS: i64 = 5 * 60 * 1000;
/// ID tokens live this long.
pub const ID_TOKEN_TTL_S: i64 = 300;
/// Synthetic users, at most.
pub const USERS_MAX: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    Normal,
    /// ID tokens signed with a key that is not in the JWKS (under the published kid).
    ForgeSignature,
    /// ID tokens whose `aud` is another client.
    WrongAudience,
    /// ID tokens that expired half an hour ago.
    Expired,
}

#[derive(Debug)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    id_number: String,
    issued_ms: i64,
    used: bool,
}

#[derive(Debug)]
struct Idp {
    /// ID number → subject.
    users: HashMap<String, String>,
    codes: HashMap<String, Grant>,
    mode: Mode,
    issuer: String,
    tokens_issued: u64,
    codes_refused: u64,
}

/// The provider's state; clones share it.
#[derive(Clone)]
pub struct SimIdp {
    idp: Arc<Mutex<Idp>>,
    key: Arc<SigningKey>,
    forger: Arc<SigningKey>,
    kid: String,
    client_id: String,
    client_secret: String,
    claim: String,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn new_key() -> SigningKey {
    loop {
        let b = jose::random_bytes(32).expect("the operating system's random source");
        if let Ok(k) = SigningKey::from_slice(&b) {
            return k;
        }
    }
}

impl SimIdp {
    /// A provider with one client, a fresh signing key, no users, the real clock and the
    /// ID number in claim `id_number`.
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        let key = new_key();
        let kid = format!(
            "sim-{}",
            &jose::pkce_challenge(&jose::b64(&key.to_bytes()))[..8]
        );
        SimIdp {
            idp: Arc::new(Mutex::new(Idp {
                users: HashMap::new(),
                codes: HashMap::new(),
                mode: Mode::Normal,
                issuer: String::new(),
                tokens_issued: 0,
                codes_refused: 0,
            })),
            key: Arc::new(key),
            forger: Arc::new(new_key()),
            kid,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            claim: "id_number".into(),
            clock: Arc::new(system_ms),
        }
    }

    /// The claim the ID number travels in.
    pub fn with_claim(mut self, claim: &str) -> Self {
        self.claim = claim.into();
        self
    }

    /// Time in milliseconds since the epoch (a test's manual clock).
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> i64 + Send + Sync>) -> Self {
        self.clock = clock;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idp> {
        self.idp.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a synthetic user who signs in as `id_number`; answers the subject.
    pub fn add_user(&self, id_number: &str) -> String {
        let mut g = self.lock();
        if g.users.len() >= USERS_MAX {
            return String::new();
        }
        let n = g.users.len() + 1;
        g.users
            .entry(id_number.to_string())
            .or_insert_with(|| format!("sim-user-{n:07}"))
            .clone()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.lock().mode = mode;
    }
    pub fn tokens_issued(&self) -> u64 {
        self.lock().tokens_issued
    }
    /// Token requests refused (reused, expired or mismatched codes).
    pub fn codes_refused(&self) -> u64 {
        self.lock().codes_refused
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/sim/mode", put(set_mode))
            .with_state(self.clone())
    }

    /// Serves on `listener` until the returned handle is dropped; the issuer is
    /// `http://{its address}`.
    pub fn spawn(&self, listener: tokio::net::TcpListener) -> SimServer {
        let addr = listener.local_addr().expect("a bound listener");
        self.lock().issuer = format!("http://{addr}");
        let app = self.router();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "simulated identity provider stopped");
            }
        });
        SimServer { addr, task }
    }

    /// The ID token the provider would sign for `claims` in its current mode (tests forge
    /// with [`Mode::ForgeSignature`]).
    fn sign(&self, mode: Mode, claims: &serde_json::Value) -> String {
        let key = if mode == Mode::ForgeSignature {
            &self.forger
        } else {
            &self.key
        };
        jose::sign_es256(&self.kid, key, claims)
    }
}

/// A running simulated provider; stops when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    /// The issuer URL (and base of every endpoint).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

async fn discovery(State(s): State<SimIdp>) -> Response {
    let iss = s.lock().issuer.clone();
    axum::Json(serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "scopes_supported": ["openid"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", s.claim],
    }))
    .into_response()
}

async fn jwks(State(s): State<SimIdp>) -> Response {
    axum::Json(serde_json::json!({ "keys": [jose::jwk_of(&s.kid, s.key.verifying_key())] }))
        .into_response()
}

#[derive(serde::Deserialize, serde::Serialize, Default)]
pub struct AuthorizeParams {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    /// The simulator's own: the synthetic user (ID number) who approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn login_form(p: &AuthorizeParams, error: &str) -> Response {
    let hidden: String = [
        ("response_type", p.response_type.as_str()),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("scope", &p.scope),
        ("state", p.state.as_deref().unwrap_or("")),
        ("nonce", p.nonce.as_deref().unwrap_or("")),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
    ]
    .iter()
    .map(|(k, v)| format!(r#"<input type="hidden" name="{k}" value="{}">"#, esc(v)))
    .collect();
    let error = if error.is_empty() {
        String::new()
    } else {
        format!(r#"<p role="alert">{}</p>"#, esc(error))
    };
    Html(format!(
        r#"<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>城市统一身份认证（模拟）</title></head>
<body style="font-family: sans-serif; max-width: 30em; margin: 2em auto; padding: 0 1em; color: #111">
<h1>城市统一身份认证（模拟）<br><small>City identity provider (simulated)</small></h1>
{error}
<form method="get" action="/authorize">{hidden}
<label for="user">身份证号 / ID number</label><br>
<input id="user" name="user" maxlength="18" required autocomplete="username" style="font-size: 1.1em; width: 100%"><br><br>
<button type="submit" id="approve">同意并登录 / Approve and sign in</button>
</form></body></html>"#
    ))
    .into_response()
}

async fn authorize(State(s): State<SimIdp>, Query(p): Query<AuthorizeParams>) -> Response {
    // Errors before the redirect URI is trusted are shown, never redirected (RFC 6749 §4.1.2.1).
    if p.client_id != s.client_id {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    if p.redirect_uri.is_empty() || p.redirect_uri.len() > 2048 {
        return (StatusCode::BAD_REQUEST, "redirect_uri missing").into_response();
    }
    let fail = |error: &str| {
        let q = serde_urlencoded::to_string([
            ("error", error),
            ("state", p.state.as_deref().unwrap_or("")),
        ])
        .unwrap_or_default();
        Redirect::to(&format!("{}?{q}", p.redirect_uri)).into_response()
    };
    if p.response_type != "code" {
        return fail("unsupported_response_type");
    }
    if !p.scope.split(' ').any(|w| w == "openid") {
        return fail("invalid_scope");
    }
    if p.code_challenge_method != "S256" || p.code_challenge.len() != 43 {
        return fail("invalid_request");
    }
    let Some(user) = p.user.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return login_form(&p, "");
    };
    let now = (s.clock)();
    let code = match jose::random_token() {
        Ok(c) => c,
        Err(_) => return fail("server_error"),
    };
    {
        let mut g = s.lock();
        if !g.users.contains_key(user) {
            drop(g);
            return login_form(&p, "没有这个用户 / No such user");
        }
        if g.codes.len() >= CODES_MAX {
            g.codes
                .retain(|_, c| !c.used && now - c.issued_ms < CODE_TTL_MS);
            if g.codes.len() >= CODES_MAX {
                drop(g);
                return fail("temporarily_unavailable");
            }
        }
        g.codes.insert(
            code.clone(),
            Grant {
                client_id: p.client_id.clone(),
                redirect_uri: p.redirect_uri.clone(),
                challenge: p.code_challenge.clone(),
                nonce: p.nonce.clone().filter(|n| !n.is_empty()),
                id_number: user.to_string(),
                issued_ms: now,
                used: false,
            },
        );
    }
    let mut q = vec![("code", code.as_str())];
    if let Some(st) = p.state.as_deref() {
        q.push(("state", st));
    }
    let q = serde_urlencoded::to_string(q).unwrap_or_default();
    let sep = if p.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    Redirect::to(&format!("{}{sep}{q}", p.redirect_uri)).into_response()
}

#[derive(serde::Deserialize, Default)]
struct TokenForm {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_verifier: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

/// The client's id and secret from HTTP Basic (RFC 6749 §2.3.1).
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?)
        .ok()?;
    let s = String::from_utf8(b).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn token(State(s): State<SimIdp>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Ok(f) = serde_urlencoded::from_bytes::<TokenForm>(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "form expected");
    };
    let (id, secret) = match (basic(&headers), &f.client_id, &f.client_secret) {
        (Some(b), _, _) => b,
        (None, Some(i), Some(sc)) => (i.clone(), sc.clone()),
        _ => (String::new(), String::new()),
    };
    if id != s.client_id || secret != s.client_secret {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    if f.grant_type != "authorization_code" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "authorization_code only",
        );
    }
    let now = (s.clock)();
    let (id_number, nonce, mode, issuer) = {
        let mut g = s.lock();
        let mode = g.mode;
        let issuer = g.issuer.clone();
        let refused = match g.codes.get_mut(&f.code) {
            None => Some("unknown code"),
            Some(c) if c.used => Some("code already used"),
            Some(c) if now - c.issued_ms >= CODE_TTL_MS => Some("code expired"),
            Some(c) if c.client_id != id => Some("code issued to another client"),
            Some(c) if c.redirect_uri != f.redirect_uri => Some("redirect_uri differs"),
            Some(c) if jose::pkce_challenge(&f.code_verifier) != c.challenge => {
                Some("code_verifier does not match")
            }
            Some(c) => {
                c.used = true;
                None
            }
        };
        if let Some(why) = refused {
            g.codes_refused += 1;
            drop(g);
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
        }
        let c = &g.codes[&f.code];
        let r = (c.id_number.clone(), c.nonce.clone(), mode, issuer);
        g.tokens_issued += 1;
        r
    };
    let sub = s.lock().users.get(&id_number).cloned().unwrap_or_default();
    let now_s = now.div_euclid(1000);
    let iat = if mode == Mode::Expired {
        now_s - 3600
    } else {
        now_s
    };
    let mut claims = serde_json::json!({
        "iss": issuer,
        "sub": sub,
        "aud": if mode == Mode::WrongAudience { "another-client" } else { s.client_id.as_str() },
        "iat": iat,
        "exp": iat + ID_TOKEN_TTL_S,
        "auth_time": iat,
    });
    claims[s.claim.as_str()] = id_number.into();
    if let Some(n) = nonce {
        claims["nonce"] = n.into();
    }
    let id_token = s.sign(mode, &claims);
    let access = jose::random_token().unwrap_or_default();
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ID_TOKEN_TTL_S,
            "id_token": id_token,
        })),
    )
        .into_response()
}

async fn set_mode(State(s): State<SimIdp>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Mode>(&body) {
        Ok(m) => {
            s.set_mode(m);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => (
            StatusCode::BAD_REQUEST,
            "mode is normal, forge_signature, wrong_audience or expired",
        )
            .into_response(),
    }
}
