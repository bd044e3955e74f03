//! The citizen portal under `/portal/` (issue 9, item 2): server-rendered pages (askama),
//! Chinese first with an English switch, made for a phone screen, no scripts and no external
//! assets. Sign-in is ID number, password and an SMS code; the session is its own cookie,
//! apart from the console's. Every page calls the platform's citizen functions, which fix the
//! records to the signed-in citizen and audit every read.

use crate::AppState;
use crate::auth::{CITIZEN_COOKIE, CitizenToken, cookie};
use crate::error::{ApiError, ApiResult};
use crate::portal_i18n::{PortalTexts, texts};
use askama::Template;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use platform::PlatformError;
use platform::citizen_services::{
    CitizenCardAction, PortalEcode, SPENDING_CATEGORIES, TxFilter, spending_by_month,
};
use platform::citizens::Citizen;
use platform::clock::format_ms;
use std::net::SocketAddr;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/portal/login", get(login_page).post(login_submit))
        .route("/portal/login/code", post(login_code))
        .route("/portal/password", get(password_page).post(password_submit))
        .route("/portal/password/set", post(password_set))
        .route("/portal/assets/portal.css", get(css))
        .route("/portal/logout", post(logout))
        .route("/portal/", get(home))
        .route("/portal/cards/{number}", post(card_action))
        .route("/portal/transactions", get(transactions))
        .route("/portal/topup", get(topup_page).post(topup_submit))
        .route("/portal/ecode", get(ecode_page).post(ecode_take_over))
        .route("/portal/benefits", get(benefits))
        .route("/portal/bills", get(bills).post(bill_pay))
        .route("/portal/messages", get(messages).post(message_read))
        .route("/portal/privacy", get(privacy).post(consent_revoke))
}

#[derive(serde::Deserialize, Default)]
pub struct LangParam {
    pub(crate) lang: Option<String>,
    done: Option<String>,
}

/// The page language: `?lang=` (remembered in a cookie for the portal), else the cookie,
/// else Chinese.
pub(crate) fn language(
    headers: &HeaderMap,
    param: &Option<String>,
) -> (&'static PortalTexts, Option<HeaderValue>) {
    match param.as_deref() {
        Some(l @ ("en" | "zh")) => (
            texts(l),
            HeaderValue::from_str(&format!(
                "plang={l}; Path=/portal; SameSite=Strict; Max-Age=31536000"
            ))
            .ok(),
        ),
        _ => (texts(&cookie(headers, "plang").unwrap_or_default()), None),
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

/// What a citizen reads when a step was refused: the sign-in refusals in their language,
/// other refusals as the platform words them; internal failures are not shown.
pub(crate) fn message(t: &PortalTexts, e: &PlatformError) -> String {
    match e {
        PlatformError::SignInRefused(r) if t.lang == "en" => r.en.clone(),
        PlatformError::SignInRefused(r) => r.zh.clone(),
        PlatformError::Store(_) | PlatformError::Key(_) | PlatformError::Unexpected(_) => {
            tracing::error!(error = %e, "portal request failed");
            t.failed.into()
        }
        e => format!("{}: {e}", t.failed),
    }
}

fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// "12.34" → 1234 fen.
fn parse_yuan(s: &str) -> Option<i64> {
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || whole.len() > 9 || frac.len() > 2 {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let f: i64 = format!("{frac:0<2}").parse().ok()?;
    Some(w * 100 + f)
}

fn state_label(t: &PortalTexts, state: &str) -> String {
    let zh = t.lang != "en";
    let s = match state {
        "applied" => ("已申请", "applied"),
        "approved" => ("已审核", "approved"),
        "in_production" => ("制卡中", "in production"),
        "produced" => ("已制卡", "produced"),
        "at_outlet" => ("待领取", "at the outlet"),
        "issued" => ("已发放", "issued"),
        "active" => ("正常", "active"),
        "reported_lost" => ("已挂失", "reported lost"),
        "frozen" => ("已冻结", "frozen"),
        "replaced" => ("已补换", "replaced"),
        "cancelled" => ("已注销", "cancelled"),
        "expired" => ("已过期", "expired"),
        "withdrawn" => ("已撤回", "withdrawn"),
        other => (other, other),
    };
    if zh { s.0 } else { s.1 }.to_string()
}

fn kind_label(t: &PortalTexts, kind: &str) -> String {
    let zh = t.lang != "en";
    let s = match kind {
        "top_up" => ("充值", "top-up"),
        "load" => ("圈存", "load"),
        "purchase" => ("消费", "purchase"),
        "payment" => ("支付", "payment"),
        "refund" => ("退款", "refund"),
        "reversal" => ("冲正", "reversal"),
        "disbursement" => ("补贴待遇", "benefit"),
        "fee" => ("手续费", "fee"),
        "balance_move" => ("余额转移", "balance move"),
        other => (other, other),
    };
    if zh { s.0 } else { s.1 }.to_string()
}

pub(crate) fn set_session(token: &str, ttl_ms: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{CITIZEN_COOKIE}={token}; Path=/portal; HttpOnly; SameSite=Strict; Max-Age={}",
        ttl_ms / 1000
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/portal.css"),
    )
        .into_response()
}

// -- sign-in ----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "portal/login.html")]
pub(crate) struct LoginPage {
    pub(crate) t: &'static PortalTexts,
    pub(crate) who: Option<Who>,
    pub(crate) notice: String,
    pub(crate) error: String,
    pub(crate) challenge: Option<String>,
    pub(crate) phone: String,
    /// Sign-in through the city's identity provider is on (`crate::oidc`).
    pub(crate) oidc: bool,
}

async fn login_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    page(
        LoginPage {
            t,
            who: None,
            notice: String::new(),
            error: String::new(),
            challenge: None,
            phone: String::new(),
            oidc: s.oidc.is_some(),
        },
        set,
    )
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    id_number: String,
    password: String,
}

async fn login_submit(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let mut p = LoginPage {
        t,
        who: None,
        notice: String::new(),
        error: String::new(),
        challenge: None,
        phone: String::new(),
        oidc: s.oidc.is_some(),
    };
    match s
        .platform
        .citizen_sign_in_start(&f.id_number, &f.password, &addr.ip().to_string())
        .await
    {
        Ok(c) => {
            p.challenge = Some(c.challenge);
            p.phone = c.phone_masked.unwrap_or_default();
        }
        Err(e) => p.error = message(t, &e),
    }
    page(p, None)
}

#[derive(serde::Deserialize)]
pub struct CodeForm {
    challenge: String,
    code: String,
}

async fn login_code(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    match s
        .platform
        .citizen_sign_in_finish(&f.challenge, &f.code, "portal", &addr.ip().to_string())
        .await
    {
        Ok((token, _)) => {
            let mut r = Redirect::to("/portal/").into_response();
            r.headers_mut().append(
                header::SET_COOKIE,
                set_session(&token, platform::citizens::PORTAL_SESSION_TTL_MS),
            );
            Ok(r)
        }
        Err(e) => {
            // A wrong code may be tried again on the same challenge; the others start over.
            let retry = matches!(&e, PlatformError::SignInRefused(r) if r.code == "code_wrong");
            page(
                LoginPage {
                    t,
                    who: None,
                    notice: String::new(),
                    error: message(t, &e),
                    challenge: retry.then_some(f.challenge),
                    phone: String::new(),
                    oidc: s.oidc.is_some(),
                },
                None,
            )
        }
    }
}

#[derive(Template)]
#[template(path = "portal/password.html")]
struct PasswordPage {
    t: &'static PortalTexts,
    who: Option<Who>,
    notice: String,
    error: String,
    challenge: Option<String>,
    phone: String,
}

async fn password_page(headers: HeaderMap, Query(l): Query<LangParam>) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    page(
        PasswordPage {
            t,
            who: None,
            notice: String::new(),
            error: String::new(),
            challenge: None,
            phone: String::new(),
        },
        set,
    )
}

#[derive(serde::Deserialize)]
pub struct IdForm {
    id_number: String,
}

async fn password_submit(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<IdForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let mut p = PasswordPage {
        t,
        who: None,
        notice: String::new(),
        error: String::new(),
        challenge: None,
        phone: String::new(),
    };
    match s
        .platform
        .citizen_password_start(&f.id_number, &addr.ip().to_string())
        .await
    {
        Ok(c) => {
            p.challenge = Some(c.challenge);
            p.phone = c.phone_masked.unwrap_or_default();
        }
        Err(e) => p.error = message(t, &e),
    }
    page(p, None)
}

#[derive(serde::Deserialize)]
pub struct SetPasswordForm {
    challenge: String,
    code: String,
    password: String,
}

async fn password_set(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<SetPasswordForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    match s
        .platform
        .citizen_password_finish(&f.challenge, &f.code, &f.password, &addr.ip().to_string())
        .await
    {
        Ok(()) => page(
            LoginPage {
                t,
                who: None,
                notice: t.password_set.into(),
                error: String::new(),
                challenge: None,
                phone: String::new(),
                oidc: s.oidc.is_some(),
            },
            None,
        ),
        Err(e) => page(
            PasswordPage {
                t,
                who: None,
                notice: String::new(),
                error: message(t, &e),
                challenge: None,
                phone: String::new(),
            },
            None,
        ),
    }
}

async fn logout(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Extension(tok): Extension<CitizenToken>,
) -> ApiResult<Response> {
    s.platform.citizen_sign_out(&c, &tok.0).await?;
    let mut r = Redirect::to("/portal/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("citycard_citizen=; Path=/portal; HttpOnly; Max-Age=0"),
    );
    Ok(r)
}

// -- my cards -----------------------------------------------------------------------------

struct CardLine {
    number: String,
    card_type: String,
    state: String,
    state_label: String,
    epurse: String,
    pending: String,
    actions: Vec<(&'static str, &'static str)>,
}

#[derive(Template)]
#[template(path = "portal/home.html")]
struct HomePage {
    t: &'static PortalTexts,
    who: Option<Who>,
    notice: String,
    error: String,
    online: String,
    cards: Vec<CardLine>,
}

/// Who is signed in, for the header: the masked name (what `{{ who }}` prints) and the unread
/// messages for the navigation's badge.
pub(crate) struct Who {
    pub name: String,
    pub unread: i64,
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

pub(crate) async fn who(s: &AppState, c: &Citizen) -> ApiResult<Option<Who>> {
    Ok(Some(Who {
        name: s.platform.citizen_profile(c).await?.name_masked,
        unread: s.platform.citizen_messages_unread(c).await?,
    }))
}

async fn home_page(
    s: &AppState,
    c: &Citizen,
    t: &'static PortalTexts,
    notice: String,
    error: String,
) -> ApiResult<HomePage> {
    let cards = s.platform.citizen_cards(c).await?;
    let balances = s.platform.citizen_balances(c).await?;
    let lines = cards
        .into_iter()
        .map(|v| {
            let b = balances.cards.iter().find(|b| b.number == v.number);
            let actions: Vec<(&'static str, &'static str)> = match v.state.as_str() {
                "active" => vec![
                    ("report_lost", t.report_lost),
                    ("replace_damaged", t.replace_damaged),
                ],
                "reported_lost" => {
                    vec![("undo_lost", t.undo_lost), ("replace_lost", t.replace_lost)]
                }
                _ => vec![],
            };
            CardLine {
                state_label: state_label(t, &v.state),
                epurse: yuan(b.map_or(0, |b| b.epurse_fen)),
                pending: b
                    .filter(|b| b.pending_load_fen != 0)
                    .map(|b| yuan(b.pending_load_fen))
                    .unwrap_or_default(),
                number: v.number,
                card_type: v.card_type,
                state: v.state,
                actions,
            }
        })
        .collect();
    Ok(HomePage {
        t,
        who: who(s, c).await?,
        notice,
        error,
        online: yuan(balances.online_fen),
        cards: lines,
    })
}

async fn home(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    let notice = if l.done.is_some() {
        t.done.to_string()
    } else {
        String::new()
    };
    page(home_page(&s, &c, t, notice, String::new()).await?, set)
}

#[derive(serde::Deserialize)]
pub struct CardActionForm {
    action: String,
}

async fn card_action(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Path(number): Path<String>,
    Form(f): Form<CardActionForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let result = match CitizenCardAction::parse(&f.action) {
        Ok(a) => s.platform.citizen_card_action(&c, &number, a).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/portal/?done={}", f.action)).into_response()),
        Err(e) => page(
            home_page(&s, &c, t, String::new(), message(t, &e)).await?,
            None,
        ),
    }
}

// -- transactions and the chart ---------------------------------------------------------------

struct TxRow {
    at: String,
    account: String,
    kind: String,
    kind_label: String,
    amount: String,
}

#[derive(Template)]
#[template(path = "portal/transactions.html")]
struct TxPage {
    t: &'static PortalTexts,
    who: Option<Who>,
    notice: String,
    error: String,
    chart: String,
    accounts: Vec<(String, String, bool)>,
    kinds: Vec<(String, String, bool)>,
    month: String,
    lines: Vec<TxRow>,
}

#[derive(serde::Deserialize, Default)]
pub struct TxQuery {
    lang: Option<String>,
    account: Option<String>,
    kind: Option<String>,
    month: Option<String>,
}

/// Colours of the chart's categories (AA contrast on white) and their names.
const CHART_COLOURS: [&str; 3] = ["#0b4f8a", "#b3261e", "#1e7b34"];

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The monthly spending chart as SVG: one stacked bar per month, a legend, and a title and
/// description that say the numbers for screen readers.
fn spending_svg(t: &PortalTexts, months: &[platform::citizen_services::MonthSpending]) -> String {
    let (w, h, left, bottom, top) = (640.0_f64, 280.0_f64, 84.0_f64, 34.0_f64, 44.0_f64);
    let total = |m: &platform::citizen_services::MonthSpending| -> i64 {
        m.by_category.iter().map(|c| c.1).sum()
    };
    let max = months.iter().map(total).max().unwrap_or(0).max(100);
    let plot_h = h - bottom - top;
    let slot = (w - left - 10.0) / months.len().max(1) as f64;
    let mut desc = Vec::new();
    let mut bars = String::new();
    for (i, m) in months.iter().enumerate() {
        let x = left + slot * i as f64 + slot * 0.2;
        let bw = slot * 0.6;
        let mut y = h - bottom;
        for (j, (cat, fen)) in m.by_category.iter().enumerate() {
            if *fen <= 0 {
                continue;
            }
            let bh = plot_h * (*fen as f64) / (max as f64);
            y -= bh;
            bars.push_str(&format!(
                "<rect class=\"bar\" data-month=\"{}\" data-category=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{} {}: ¥{}</title></rect>",
                esc(&m.month),
                esc(cat),
                CHART_COLOURS[j % CHART_COLOURS.len()],
                esc(&m.month),
                esc(&kind_label(t, cat)),
                yuan(*fen)
            ));
        }
        bars.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"15\" text-anchor=\"middle\" fill=\"#1a1a1a\">{}</text>",
            x + bw / 2.0,
            h - bottom + 16.0,
            esc(&m.month)
        ));
        desc.push(format!("{} ¥{}", m.month, yuan(total(m))));
    }
    let mut axis = String::new();
    for k in 0..=4 {
        let v = max * k / 4;
        let y = h - bottom - plot_h * (k as f64) / 4.0;
        axis.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#d0d5dc\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"14\" text-anchor=\"end\" fill=\"#404040\">¥{}</text>",
            w - 10.0,
            left - 6.0,
            y + 4.0,
            yuan(v)
        ));
    }
    let mut legend = String::new();
    for (j, cat) in SPENDING_CATEGORIES.iter().enumerate() {
        let x = left + 150.0 * j as f64;
        legend.push_str(&format!(
            "<rect x=\"{x}\" y=\"10\" width=\"14\" height=\"14\" fill=\"{}\"/><text x=\"{}\" y=\"22\" font-size=\"16\" fill=\"#1a1a1a\">{}</text>",
            CHART_COLOURS[j],
            x + 20.0,
            esc(&kind_label(t, cat))
        ));
    }
    format!(
        "<svg id=\"spending-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"chart-title chart-desc\"><title id=\"chart-title\">{}</title><desc id=\"chart-desc\">{}</desc>{axis}{legend}{bars}</svg>",
        esc(t.spending_chart),
        esc(&desc.join("; "))
    )
}

async fn transactions(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Query(q): Query<TxQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let keep = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let filter = TxFilter {
        account: keep(&q.account),
        kind: keep(&q.kind),
        month: keep(&q.month),
    };
    let all = s
        .platform
        .citizen_transactions(&c, &TxFilter::default())
        .await?;
    let chart = spending_svg(t, &spending_by_month(&all, s.platform.clock.now_ms()));
    let (lines, error) = match s.platform.citizen_transactions(&c, &filter).await {
        Ok(l) => (l, String::new()),
        Err(e) => (Vec::new(), message(t, &e)),
    };
    let mut accounts = vec![(
        "online".to_string(),
        t.online_account.to_string(),
        filter.account.as_deref() == Some("online"),
    )];
    for card in s.platform.citizen_cards(&c).await? {
        let sel = filter.account.as_deref() == Some(card.number.as_str());
        accounts.push((
            card.number.clone(),
            format!("{} {}", t.epurse, card.number),
            sel,
        ));
    }
    let kinds = [
        "top_up",
        "load",
        "purchase",
        "payment",
        "refund",
        "disbursement",
        "fee",
    ]
    .iter()
    .map(|k| {
        (
            k.to_string(),
            kind_label(t, k),
            filter.kind.as_deref() == Some(*k),
        )
    })
    .collect();
    let rows = lines
        .into_iter()
        .map(|l| TxRow {
            at: format_ms(l.at_ms),
            account: if l.account == "online" {
                t.online_account.to_string()
            } else {
                l.account
            },
            kind_label: kind_label(t, &l.kind),
            kind: l.kind,
            amount: yuan(l.amount_fen),
        })
        .collect();
    page(
        TxPage {
            t,
            who: who(&s, &c).await?,
            notice: String::new(),
            error,
            chart,
            accounts,
            kinds,
            month: filter.month.unwrap_or_default(),
            lines: rows,
        },
        set,
    )
}

// -- top-up -------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "portal/topup.html")]
struct TopUpPage {
    t: &'static PortalTexts,
    who: Option<Who>,
    notice: String,
    error: String,
    online: String,
    key: String,
}

pub(crate) fn new_key() -> String {
    let mut b = [0u8; 12];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

async fn topup_page(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    let b = s.platform.citizen_balances(&c).await?;
    page(
        TopUpPage {
            t,
            who: who(&s, &c).await?,
            notice: String::new(),
            error: String::new(),
            online: yuan(b.online_fen),
            key: new_key(),
        },
        set,
    )
}

#[derive(serde::Deserialize)]
pub struct TopUpForm {
    key: String,
    amount: String,
    bank_account: String,
}

async fn topup_submit(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Form(f): Form<TopUpForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let (mut notice, mut error) = (String::new(), String::new());
    match parse_yuan(&f.amount) {
        None => {
            error = message(
                t,
                &PlatformError::invalid("amount", "yuan with at most two decimals"),
            )
        }
        Some(fen) => match s
            .platform
            .citizen_topup(&c, &f.key, fen, &f.bank_account)
            .await
        {
            Ok(v) if v.state == "succeeded" => {
                notice = format!("{} ¥{}", t.topup_ok, yuan(v.amount_fen))
            }
            Ok(v) if v.state == "pending" => notice = t.topup_pending.into(),
            Ok(v) => error = format!("{}: {}", t.topup_failed, v.reason.unwrap_or_default()),
            Err(e) => error = message(t, &e),
        },
    }
    let b = s.platform.citizen_balances(&c).await?;
    page(
        TopUpPage {
            t,
            who: who(&s, &c).await?,
            notice,
            error,
            online: yuan(b.online_fen),
            key: new_key(),
        },
        None,
    )
}

// -- e-code -------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "portal/ecode.html")]
struct EcodePage {
    t: &'static PortalTexts,
    who: Option<Who>,
    notice: String,
    error: String,
    card: String,
    svg: String,
    text: String,
    on_phone: String,
}

#[derive(serde::Deserialize, Default)]
pub struct EcodeQuery {
    lang: Option<String>,
    card: Option<String>,
}

async fn ecode_render(
    s: &AppState,
    c: &Citizen,
    t: &'static PortalTexts,
    card: Option<String>,
    take_over: bool,
) -> ApiResult<EcodePage> {
    let cards = s.platform.citizen_cards(c).await?;
    let chosen = match card {
        Some(n) => cards
            .into_iter()
            .find(|x| x.number == n && x.state == "active"),
        None => cards.into_iter().find(|x| x.state == "active"),
    };
    let mut p = EcodePage {
        t,
        who: who(s, c).await?,
        notice: String::new(),
        error: String::new(),
        card: String::new(),
        svg: String::new(),
        text: String::new(),
        on_phone: String::new(),
    };
    let Some(card) = chosen else {
        return Ok(p);
    };
    p.card = card.number.clone();
    match s
        .platform
        .citizen_portal_ecode(c, &card.number, take_over)
        .await
    {
        Ok(PortalEcode::Code { text, .. }) => {
            p.svg = ecode::qr::QrSymbol::encode(&text)
                .and_then(|q| q.to_svg(4))
                .map_err(|e| ApiError::Internal(format!("QR: {e}")))?;
            p.text = text;
        }
        Ok(PortalEcode::OnPhone { device_id }) => p.on_phone = device_id,
        Err(e) => p.error = message(t, &e),
    }
    Ok(p)
}

async fn ecode_page(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Query(q): Query<EcodeQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let mut r = page(ecode_render(&s, &c, t, q.card, false).await?, set)?;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(serde::Deserialize)]
pub struct TakeOverForm {
    card: String,
}

async fn ecode_take_over(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Form(f): Form<TakeOverForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    page(ecode_render(&s, &c, t, Some(f.card), true).await?, None)
}

// -- the table pages: benefits, bills, messages, consents and the data tracker ---------------

struct Row {
    cells: Vec<String>,
    action: Option<String>,
}

struct Section {
    id: &'static str,
    title: String,
    head: Vec<String>,
    rows: Vec<Row>,
    /// A button per row (empty: none) posting `target` to `action`.
    button: String,
    action: String,
}

#[derive(Template)]
#[template(path = "portal/table.html")]
struct TablePage {
    t: &'static PortalTexts,
    who: Option<Who>,
    notice: String,
    error: String,
    title: String,
    sections: Vec<Section>,
}

fn plain(rows: Vec<Vec<String>>) -> Vec<Row> {
    rows.into_iter()
        .map(|cells| Row {
            cells,
            action: None,
        })
        .collect()
}

async fn benefits(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    let v = s.platform.citizen_received(&c).await?;
    let rows = v
        .into_iter()
        .map(|r| {
            vec![
                r.paid_ms.map(format_ms).unwrap_or_default(),
                r.department,
                if t.lang == "en" || r.benefit_zh.is_empty() {
                    format!("{} ({})", r.label, r.benefit)
                } else {
                    format!("{}（{}）", r.label, r.benefit_zh)
                },
                yuan(r.amount_fen),
                r.outcome,
            ]
        })
        .collect();
    page(
        TablePage {
            t,
            who: who(&s, &c).await?,
            notice: String::new(),
            error: String::new(),
            title: t.benefits.into(),
            sections: vec![Section {
                id: "benefits",
                title: t.benefits.into(),
                head: vec![
                    t.time.into(),
                    t.department.into(),
                    t.benefit.into(),
                    t.amount_yuan.into(),
                    t.outcome.into(),
                ],
                rows: plain(rows),
                button: String::new(),
                action: String::new(),
            }],
        },
        set,
    )
}

async fn bills_page(
    s: &AppState,
    c: &Citizen,
    t: &'static PortalTexts,
    notice: String,
    error: String,
) -> ApiResult<TablePage> {
    let (agreements, bills) = s.platform.citizen_bills(c).await?;
    let a_rows = agreements
        .into_iter()
        .map(|a| {
            vec![
                a.biller,
                a.customer_no,
                yuan(a.limit_fen),
                a.status,
                format_ms(a.created_ms),
            ]
        })
        .collect();
    let b_rows = bills
        .into_iter()
        .map(|b| Row {
            action: (b.status == "open").then(|| format!("{}/{}", b.biller, b.bill_number)),
            cells: vec![
                b.biller,
                b.bill_number,
                b.period,
                yuan(b.amount_fen),
                b.due_date,
                b.status,
            ],
        })
        .collect();
    Ok(TablePage {
        t,
        who: who(s, c).await?,
        notice,
        error,
        title: t.bills.into(),
        sections: vec![
            Section {
                id: "bills",
                title: t.bills.into(),
                head: vec![
                    t.biller.into(),
                    t.bill_number.into(),
                    t.period.into(),
                    t.amount_yuan.into(),
                    t.due_date.into(),
                    t.state.into(),
                ],
                rows: b_rows,
                button: t.pay.into(),
                action: "/portal/bills".into(),
            },
            Section {
                id: "agreements",
                title: t.agreements.into(),
                head: vec![
                    t.biller.into(),
                    t.customer_no.into(),
                    t.limit.into(),
                    t.state.into(),
                    t.time.into(),
                ],
                rows: plain(a_rows),
                button: String::new(),
                action: String::new(),
            },
        ],
    })
}

async fn bills(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    page(
        bills_page(&s, &c, t, String::new(), String::new()).await?,
        set,
    )
}

#[derive(serde::Deserialize)]
pub struct TargetForm {
    target: String,
}

async fn bill_pay(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Form(f): Form<TargetForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let (biller, number) = f.target.split_once('/').unwrap_or(("", ""));
    let (notice, error) = match s.platform.citizen_bill_pay(&c, biller, number).await {
        Ok(p) => (
            format!("{} ¥{}", t.paid_ok, yuan(p.amount_fen)),
            String::new(),
        ),
        Err(e) => (String::new(), message(t, &e)),
    };
    page(bills_page(&s, &c, t, notice, error).await?, None)
}

async fn messages_page(
    s: &AppState,
    c: &Citizen,
    t: &'static PortalTexts,
    notice: String,
    error: String,
) -> ApiResult<TablePage> {
    let v = s.platform.citizen_messages(c, 100).await?;
    let rows = v
        .into_iter()
        .map(|n| {
            let unread = n.status == store::NOTIFY_UNREAD;
            Row {
                action: unread.then(|| n.id.to_string()),
                cells: vec![
                    format_ms(n.created_ms),
                    n.body,
                    if unread { t.unread } else { t.read }.into(),
                ],
            }
        })
        .collect();
    Ok(TablePage {
        t,
        who: who(s, c).await?,
        notice,
        error,
        title: t.messages.into(),
        sections: vec![Section {
            id: "messages",
            title: t.messages.into(),
            head: vec![t.time.into(), t.messages.into(), t.state.into()],
            rows,
            button: t.mark_read.into(),
            action: "/portal/messages".into(),
        }],
    })
}

async fn messages(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    page(
        messages_page(&s, &c, t, String::new(), String::new()).await?,
        set,
    )
}

async fn message_read(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Form(f): Form<TargetForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let result = match f.target.parse::<i64>() {
        Ok(id) => s.platform.citizen_message_read(&c, id).await.map(|_| ()),
        Err(_) => Err(PlatformError::invalid("target", "a message id")),
    };
    let (notice, error) = match result {
        Ok(()) => (t.done.to_string(), String::new()),
        Err(e) => (String::new(), message(t, &e)),
    };
    page(messages_page(&s, &c, t, notice, error).await?, None)
}

async fn privacy(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    page(
        privacy_page(&s, &c, t, String::new(), String::new()).await?,
        set,
    )
}

async fn consent_revoke(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Form(f): Form<TargetForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let result = match f.target.parse::<i64>() {
        Ok(id) => s.platform.citizen_consent_revoke(&c, id).await.map(|_| ()),
        Err(_) => Err(PlatformError::invalid("target", "a consent id")),
    };
    let (notice, error) = match result {
        Ok(()) => (t.done.to_string(), String::new()),
        Err(e) => (String::new(), message(t, &e)),
    };
    page(privacy_page(&s, &c, t, notice, error).await?, None)
}

async fn privacy_page(
    s: &AppState,
    c: &Citizen,
    t: &'static PortalTexts,
    notice: String,
    error: String,
) -> ApiResult<TablePage> {
    let consents = s.platform.citizen_consents(c).await?;
    let accesses = s.platform.citizen_data_access(c, 200).await?;
    let c_rows = consents
        .into_iter()
        .map(|r| Row {
            action: r.revoked_ms.is_none().then(|| r.id.to_string()),
            cells: vec![
                r.consumer,
                r.service,
                r.purpose,
                format_ms(r.given_ms),
                match r.revoked_ms {
                    Some(ms) => format!("{} {}", t.revoked, format_ms(ms)),
                    None => format!("{} {}", t.expires, format_ms(r.expires_ms)),
                },
            ],
        })
        .collect();
    let a_rows = accesses
        .into_iter()
        .map(|a| {
            vec![
                format_ms(a.at_ms),
                a.consumer,
                a.service,
                a.purpose,
                a.fields.join(", "),
                match a.reason {
                    Some(r) => format!("{} ({r})", a.outcome),
                    None => a.outcome,
                },
            ]
        })
        .collect();
    Ok(TablePage {
        t,
        who: who(s, c).await?,
        notice,
        error,
        title: t.privacy.into(),
        sections: vec![
            Section {
                id: "consents",
                title: t.consents.into(),
                head: vec![
                    t.consumer.into(),
                    t.service.into(),
                    t.purpose.into(),
                    t.time.into(),
                    t.state.into(),
                ],
                rows: c_rows,
                button: t.revoke.into(),
                action: "/portal/privacy".into(),
            },
            Section {
                id: "data-tracker",
                title: t.data_tracker.into(),
                head: vec![
                    t.time.into(),
                    t.consumer.into(),
                    t.service.into(),
                    t.purpose.into(),
                    t.fields.into(),
                    t.outcome.into(),
                ],
                rows: plain(a_rows),
                button: String::new(),
                action: String::new(),
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_amounts_parse_and_print() {
        assert_eq!(parse_yuan("12.3"), Some(1230));
        assert_eq!(parse_yuan("0.05"), Some(5));
        assert_eq!(parse_yuan("100"), Some(10000));
        assert_eq!(parse_yuan("1.234"), None);
        assert_eq!(parse_yuan("-1"), None);
        assert_eq!(parse_yuan(""), None);
        assert_eq!(yuan(-1205), "-12.05");
    }
}
