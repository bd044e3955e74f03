//! The operator console under `/console/`: server-rendered pages (askama), Chinese first with
//! an English switch, no scripts and no external assets.

use crate::AppState;
use crate::auth::{PresentedToken, SESSION_COOKIE, cookie};
use crate::error::{ApiError, ApiResult};
use crate::i18n::{Texts, texts};
use askama::Template;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use platform::clock::format_ms;
use platform::{Caller, PlatformError};
use std::net::SocketAddr;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/login", get(login_page).post(login_submit))
        .route("/console/logout", post(logout))
        .route("/console/", get(dashboard))
        .route("/console/residents", get(residents).post(residents_search))
        .route("/console/audit", get(audit))
        .route("/console/cards", get(cards))
        .route("/console/assets/console.css", get(css))
}

#[derive(serde::Deserialize)]
pub struct LangParam {
    lang: Option<String>,
}

/// The page language: `?lang=` (remembered in a cookie), else the cookie, else Chinese.
pub(crate) fn language(
    headers: &HeaderMap,
    param: &Option<String>,
) -> (&'static Texts, Option<HeaderValue>) {
    match param.as_deref() {
        Some(l @ ("en" | "zh")) => (
            texts(l),
            HeaderValue::from_str(&format!(
                "lang={l}; Path=/console; SameSite=Strict; Max-Age=31536000"
            ))
            .ok(),
        ),
        _ => (texts(&cookie(headers, "lang").unwrap_or_default()), None),
    }
}

pub(crate) fn page(tpl: impl Template, set_lang: Option<HeaderValue>) -> ApiResult<Response> {
    let html = tpl
        .render()
        .map_err(|e| ApiError::Internal(format!("template: {e}")))?;
    let mut r = Html(html).into_response();
    if let Some(c) = set_lang {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(r)
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/console.css"),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    t: &'static Texts,
    user: Option<String>,
    failed: bool,
    message: String,
}

async fn login_page(headers: HeaderMap, Query(l): Query<LangParam>) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    page(
        LoginPage {
            t,
            user: None,
            failed: false,
            message: String::new(),
        },
        set,
    )
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

async fn login_submit(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    match s
        .platform
        .sign_in(&f.username, &f.password, &addr.ip().to_string())
        .await
    {
        Ok((token, _)) => {
            let mut r = Redirect::to("/console/").into_response();
            let c = format!(
                "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                platform::operators::SESSION_TTL_MS / 1000
            );
            r.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_str(&c).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            Ok(r)
        }
        Err(e @ (PlatformError::Unauthenticated | PlatformError::Locked(_))) => {
            let message = match e {
                PlatformError::Locked(m) => m,
                _ => t.bad_credentials.to_string(),
            };
            let mut r = page(
                LoginPage {
                    t,
                    user: None,
                    failed: true,
                    message,
                },
                None,
            )?;
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

async fn logout(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(token): Extension<PresentedToken>,
) -> ApiResult<Response> {
    s.platform.sign_out(&c, &token.0).await?;
    let mut r = Redirect::to("/console/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("citycard_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

struct FeedRow {
    id: i64,
    source: String,
    time: String,
    rows: u64,
    inserted: u64,
    updated: u64,
    rejected: u64,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    t: &'static Texts,
    user: Option<String>,
    residents: u64,
    feeds: Vec<FeedRow>,
}

async fn dashboard(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    let feeds = s
        .platform
        .store
        .feeds_recent(10)
        .await
        .map_err(PlatformError::from)?
        .into_iter()
        .map(|f| FeedRow {
            id: f.id,
            source: resident::Source::parse(&f.source)
                .map(|d| {
                    if t.lang == "en" {
                        d.as_str().to_string()
                    } else {
                        d.name_zh().to_string()
                    }
                })
                .unwrap_or(f.source),
            time: format_ms(f.started_ms),
            rows: f.totals.rows,
            inserted: f.totals.inserted,
            updated: f.totals.updated,
            rejected: f.totals.rejected,
        })
        .collect();
    page(
        Dashboard {
            t,
            user: Some(c.username.clone()),
            residents: s.platform.resident_count().await?,
            feeds,
        },
        set,
    )
}

struct ResidentRow {
    id_number: String,
    name: String,
    phone: String,
    address: String,
    residency: String,
    birth_date: String,
    region: String,
    sources: String,
}

#[derive(Template)]
#[template(path = "residents.html")]
struct ResidentsPage {
    t: &'static Texts,
    user: Option<String>,
    q: String,
    rows: Vec<ResidentRow>,
    unmasked: bool,
    can_unmask: bool,
    error: Option<String>,
}

/// A search is posted, not put in the address: ID numbers stay out of URLs, browser history
/// and proxy logs.
#[derive(serde::Deserialize)]
pub struct ResidentsForm {
    #[serde(default)]
    q: String,
    #[serde(default)]
    unmask: Option<String>,
}

/// Browsing: the first residents, masked.
async fn residents(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    render_residents(
        &s,
        &c,
        t,
        set,
        ResidentsForm {
            q: String::new(),
            unmask: None,
        },
    )
    .await
}

async fn residents_search(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Form(f): Form<ResidentsForm>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &None);
    render_residents(&s, &c, t, set, f).await
}

async fn render_residents(
    s: &AppState,
    c: &Caller,
    t: &'static Texts,
    set: Option<HeaderValue>,
    p: ResidentsForm,
) -> ApiResult<Response> {
    let c = c.clone();
    let q = p.q.trim().to_string();
    let unmask = matches!(p.unmask.as_deref(), Some("1" | "true")) && !q.is_empty();
    let looks_like_id = q.len() == 18 && q.bytes().take(17).all(|b| b.is_ascii_digit());
    let result = if q.is_empty() {
        s.platform.residents_page(&c, 0, 50).await
    } else if looks_like_id {
        match s.platform.resident_by_id_number(&c, &q, unmask).await {
            Ok(v) => Ok(vec![v]),
            Err(PlatformError::NotFound(_)) => Ok(vec![]),
            Err(e) => Err(e),
        }
    } else {
        s.platform.residents_by_name(&c, &q, unmask).await
    };
    let (views, error) = match result {
        Ok(v) => (v, None),
        Err(e @ (PlatformError::Invalid { .. } | PlatformError::Forbidden(_))) => {
            (vec![], Some(e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let rows = views
        .into_iter()
        .map(|v| ResidentRow {
            id_number: v.id_number,
            name: v.name.unwrap_or_default(),
            phone: v.phone.unwrap_or_default(),
            address: v.address.unwrap_or_default(),
            residency: match v.residency {
                Some(resident::Residency::Resident) => t.resident_local.to_string(),
                Some(resident::Residency::NonResident) => t.resident_elsewhere.to_string(),
                None => String::new(),
            },
            birth_date: v.birth_date,
            region: v.region,
            sources: v
                .provenance
                .iter()
                .map(|p| format!("{}←{}", p.field.as_str(), p.source))
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect();
    page(
        ResidentsPage {
            t,
            user: Some(c.username.clone()),
            q,
            rows,
            unmasked: unmask && error.is_none(),
            can_unmask: platform::residents::UNMASK_ROLES.contains(&c.role),
            error,
        },
        set,
    )
}

struct AuditRow {
    seq: i64,
    time: String,
    actor: String,
    action: String,
    record: String,
    origin: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    t: &'static Texts,
    user: Option<String>,
    intact: bool,
    entries: u64,
    problem: String,
    rows: Vec<AuditRow>,
}

async fn audit(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    let verify = s.platform.audit_verify().await?;
    let rows = s
        .platform
        .store
        .audit_recent(None, 100)
        .await
        .map_err(PlatformError::from)?
        .into_iter()
        .map(|e| AuditRow {
            seq: e.seq,
            time: format_ms(e.at_ms),
            actor: e.draft.actor,
            action: e.draft.action,
            record: e.draft.record,
            origin: e.draft.origin,
        })
        .collect();
    let (intact, entries, problem) = match verify {
        Ok(n) => (true, n, String::new()),
        Err(e) => (false, 0, e.to_string()),
    };
    page(
        AuditPage {
            t,
            user: Some(c.username.clone()),
            intact,
            entries,
            problem,
            rows,
        },
        set,
    )
}

#[derive(Template)]
#[template(path = "cards.html")]
struct CardsPage {
    t: &'static Texts,
    user: Option<String>,
    states: &'static [&'static str],
    state: String,
    rows: Vec<platform::cards::CardView>,
}

#[derive(serde::Deserialize)]
pub struct CardsQuery {
    #[serde(default)]
    state: String,
    lang: Option<String>,
}

async fn cards(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<CardsQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let state = q.state.trim().to_string();
    let filter = (!state.is_empty()).then_some(state.as_str());
    let rows = s.platform.cards(&c, filter, "", 100).await?;
    page(
        CardsPage {
            t,
            user: Some(c.username.clone()),
            states: &platform::cards::ALL_STATES,
            state,
            rows,
        },
        set,
    )
}

// ---- Forms of the console pages (points, credit, clearing, fees, disbursements) ----

/// The form token of a session: SM3 over the credential the request was authenticated with
/// (the console's session cookie or a bearer token). Another site can make a browser post a
/// form but cannot read the cookie, so it cannot know the token.
pub(crate) fn form_token(presented: &Option<Extension<PresentedToken>>) -> String {
    use sm3::Digest;
    let credential = presented.as_ref().map_or("", |Extension(t)| t.0.as_str());
    let mut h = sm3::Sm3::new();
    h.update(b"citycard console form token\0");
    h.update(credential.as_bytes());
    hex::encode(h.finalize())
}

pub(crate) fn token_ok(presented: &Option<Extension<PresentedToken>>, sent: &str) -> bool {
    let want = form_token(presented);
    // Compared without an early exit.
    want.len() == sent.len()
        && want
            .bytes()
            .zip(sent.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The message shown after a form's post, Chinese first with English.
pub(crate) struct Flash {
    pub(crate) ok: bool,
    pub(crate) zh: String,
    pub(crate) en: String,
}

/// Back to a page after a post with a message code: `ok=` what was done, `error=` why nothing
/// was; `on` names the subject, already reduced by the page to characters safe in an address.
pub(crate) fn back_to(page: &str, key: &str, code: &str, on: &str) -> Response {
    Redirect::to(&format!("{page}?{key}={code}&on={on}")).into_response()
}

/// Why a post whose form token is missing or another session's did nothing (`error=token`).
pub(crate) fn token_refused() -> (String, String) {
    (
        "表单已失效或不是从本页提交的，请刷新页面后重试".into(),
        "the form has expired or was not sent from this page; reload the page and try again".into(),
    )
}

#[cfg(test)]
mod form_tests {
    use super::*;

    #[test]
    fn form_tokens_belong_to_one_credential() {
        let a = Some(Extension(PresentedToken("session-a".into())));
        let b = Some(Extension(PresentedToken("session-b".into())));
        assert!(token_ok(&a, &form_token(&a)));
        assert!(!token_ok(&a, &form_token(&b)));
        assert!(!token_ok(&a, ""));
    }
}
