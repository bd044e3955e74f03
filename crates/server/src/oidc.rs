//! Sign-in through the city's identity provider over OpenID Connect (issue 9, item 1), when
//! the `[oidc]` section of the configuration turns it on: the portal's redirect and callback
//! (`/portal/login/oidc`, `/portal/login/oidc/callback`) and the phone app's
//! `POST /api/v1/citizen/sessions/oidc`. The protocol is `idp_link::RelyingParty`'s; the
//! resident and the session are `Platform::citizen_sign_in_external`'s, the same session the
//! password and SMS code open. Without a relying party attached these routes answer 404.

use crate::AppState;
use crate::auth::cookie;
use crate::citizen_api::CitizenSessionDto;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Json;
use crate::portal::{LoginPage, language, message, page, set_session};
use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use idp_link::{OidcError, RelyingParty};
use platform::PlatformError;
use platform::citizens::{PORTAL_SESSION_TTL_MS, Refusal};
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa::ToSchema;

/// The cookie that ties a started sign-in's state to the browser that started it (against
/// a login CSRF: someone else's callback URL opened in the citizen's browser). `SameSite=Lax`
/// because it must come back on the provider's top-level redirect.
const STATE_COOKIE: &str = "cc_oidc";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/portal/login/oidc", get(start))
        .route("/portal/login/oidc/callback", get(callback))
        .route("/api/v1/citizen/sessions/oidc", post(app_session))
}

fn refusal(code: &'static str, zh: &str, en: &str) -> PlatformError {
    PlatformError::SignInRefused(Refusal {
        code,
        zh: zh.into(),
        en: en.into(),
        locked: false,
    })
}

/// The relying party's failure as the citizen reads it, in Chinese and English.
pub fn refused(e: &OidcError) -> PlatformError {
    let (zh, en) = match e {
        OidcError::StateUnknown => (
            "登录请求无效或已经使用过，请重新登录",
            "This sign-in is unknown or was already used; please sign in again",
        ),
        OidcError::StateExpired => (
            "登录超时，请重新登录",
            "The sign-in took too long; please start again",
        ),
        OidcError::Busy => (
            "登录人数过多，请稍后再试",
            "Too many sign-ins in progress; please try again shortly",
        ),
        OidcError::Denied(_) => (
            "城市统一身份认证未完成登录",
            "The city account did not sign you in",
        ),
        OidcError::CodeRefused(_) => (
            "授权码已使用过或已过期，请重新登录",
            "The authorization code was already used or has expired; please sign in again",
        ),
        OidcError::BadSignature | OidcError::UnknownKey => (
            "身份令牌的签名无效，已拒绝登录",
            "The identity token's signature is not valid; sign-in refused",
        ),
        OidcError::WrongIssuer | OidcError::WrongAudience => (
            "身份令牌不是签发给本平台的，已拒绝登录",
            "The identity token was not issued for this platform; sign-in refused",
        ),
        OidcError::TokenExpired => (
            "身份令牌已过期，请重新登录",
            "The identity token has expired; please sign in again",
        ),
        OidcError::WrongNonce => (
            "身份令牌与本次登录不符，已拒绝登录",
            "The identity token does not belong to this sign-in; sign-in refused",
        ),
        OidcError::MissingClaim(_) => (
            "身份令牌中没有身份证号，无法登录",
            "The identity token carries no ID number; cannot sign in",
        ),
        OidcError::Malformed(_) => (
            "身份令牌或登录参数格式错误",
            "The identity token or a sign-in parameter is malformed",
        ),
        OidcError::Unreachable(_) | OidcError::Protocol(_) => (
            "城市统一身份认证暂时不可用，请使用密码和短信验证码登录",
            "The city identity service is unavailable; please sign in with your password and \
             an SMS code",
        ),
    };
    match e {
        OidcError::Unreachable(_) | OidcError::Protocol(_) => {
            tracing::error!(error = %e, "city identity provider")
        }
        _ => tracing::warn!(error = %e, code = e.code(), "city sign-in refused"),
    }
    let mut r = refusal(e.code(), zh, en);
    if matches!(e, OidcError::Busy)
        && let PlatformError::SignInRefused(r) = &mut r
    {
        r.locked = true;
    }
    r
}

fn relying_party(s: &AppState) -> ApiResult<&Arc<RelyingParty>> {
    s.oidc.as_ref().ok_or_else(|| {
        ApiError::Platform(PlatformError::NotFound(
            "sign-in through the city's identity provider is not configured".into(),
        ))
    })
}

/// Starts a portal sign-in: off to the provider's authorization endpoint.
async fn start(State(s): State<AppState>) -> ApiResult<Response> {
    let rp = relying_party(&s)?;
    let started = rp
        .start(s.platform.clock.now_ms())
        .await
        .map_err(|e| ApiError::Platform(refused(&e)))?;
    let state = started.state;
    let mut r = Redirect::to(&started.url).into_response();
    if let Ok(c) = HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={state}; Path=/portal/login/oidc; HttpOnly; SameSite=Lax; Max-Age={}",
        idp_link::PENDING_TTL_MS / 1000
    )) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(r)
}

#[derive(serde::Deserialize, Default)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The provider's redirect back. The session cookie is set on a page that sends the browser
/// on to `/portal/` by a meta refresh rather than by a 303: the portal's cookie is
/// `SameSite=Strict`, and browsers withhold such cookies on a redirect chain that a
/// cross-site page (the provider's) started, so a 303 would land on the sign-in page.
async fn callback(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<CallbackParams>,
) -> ApiResult<Response> {
    let rp = relying_party(&s)?.clone();
    let (t, _) = language(&headers, &None);
    let state = q.state.clone().unwrap_or_default();
    let outcome = async {
        if let Some(err) = &q.error {
            rp.abandon(&state);
            return Err(refused(&OidcError::Denied(err.chars().take(64).collect())));
        }
        // The browser that finishes must be the one that started.
        if state.is_empty() || cookie(&headers, STATE_COOKIE).as_deref() != Some(state.as_str()) {
            tracing::warn!("city sign-in callback without its browser's state cookie");
            return Err(refusal(
                "oidc_state_mismatch",
                "登录请求与本浏览器不符，请从本平台的登录页重新登录",
                "This sign-in was not started in this browser; please start again from the \
                 sign-in page",
            ));
        }
        let identity = rp
            .finish(
                &state,
                q.code.as_deref().unwrap_or_default(),
                s.platform.clock.now_ms(),
            )
            .await
            .map_err(|e| refused(&e))?;
        s.platform
            .citizen_sign_in_external(
                identity.id_number.expose(),
                &rp.config().issuer,
                "portal",
                &addr.ip().to_string(),
            )
            .await
    }
    .await;
    let clear_state = HeaderValue::from_static(
        "cc_oidc=; Path=/portal/login/oidc; HttpOnly; SameSite=Lax; Max-Age=0",
    );
    let mut r = match outcome {
        Ok((token, _)) => {
            let mut r = Html(format!(
                r#"<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="0;url=/portal/"><title>{title}</title></head>
<body><p><a href="/portal/" id="continue">{title}</a></p></body></html>"#,
                lang = t.lang,
                title = t.home,
            ))
            .into_response();
            r.headers_mut().append(
                header::SET_COOKIE,
                set_session(&token, PORTAL_SESSION_TTL_MS),
            );
            r
        }
        Err(e @ (PlatformError::SignInRefused(_) | PlatformError::Locked(_))) => {
            let mut r = page(
                LoginPage {
                    t,
                    who: None,
                    notice: String::new(),
                    error: message(t, &e),
                    challenge: None,
                    phone: String::new(),
                    oidc: true,
                },
                None,
            )?;
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        Err(e) => return Err(e.into()),
    };
    r.headers_mut().append(header::SET_COOKIE, clear_state);
    Ok(r)
}

#[derive(serde::Deserialize, ToSchema)]
pub struct OidcCodeBody {
    /// The authorization code the provider redirected the app with.
    pub code: String,
    /// The PKCE verifier the app made for this request (S256 is what the provider checks).
    pub code_verifier: String,
    /// The nonce the app put in its authorization request.
    pub nonce: String,
}

#[utoipa::path(post, path = "/api/v1/citizen/sessions/oidc", tag = "citizen", request_body = OidcCodeBody,
    responses((status = 201, body = CitizenSessionDto),
        (status = 401, body = Problem, description = "Refused (`code`: oidc_code_refused — a code used before or expired —, oidc_bad_signature, oidc_wrong_audience, oidc_wrong_issuer, oidc_wrong_nonce, oidc_token_expired, oidc_missing_claim, unknown_resident, oidc_unreachable)"),
        (status = 404, body = Problem, description = "Sign-in through the city's identity provider is not configured")))]
/// Citizen sign-in through the city's identity provider, for the phone app. The app runs the
/// authorization code request itself (its own state, nonce and PKCE pair, redirect to its
/// registered `app_redirect_url`) and hands over the code with its verifier and nonce; the
/// platform exchanges the code with the client secret the app does not hold, verifies the ID
/// token (ES256 signature with the provider's keys, issuer, audience, expiry, nonce) and
/// answers an app session's bearer token, as `/api/v1/citizen/sessions/code` does.
pub async fn app_session(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(b): Json<OidcCodeBody>,
) -> ApiResult<(StatusCode, axum::Json<CitizenSessionDto>)> {
    let rp = relying_party(&s)?;
    let identity = rp
        .redeem(
            &b.code,
            &b.code_verifier,
            &b.nonce,
            s.platform.clock.now_ms(),
        )
        .await
        .map_err(|e| ApiError::Platform(refused(&e)))?;
    let (token, _) = s
        .platform
        .citizen_sign_in_external(
            identity.id_number.expose(),
            &rp.config().issuer,
            "app",
            &addr.ip().to_string(),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(CitizenSessionDto { token })))
}
