//! The console page of the fee schedule (手续费率), `/console/clearing/fees`: every rule with
//! its scope, rate as a percentage, fixed fee in yuan, effective date and where it stands in
//! the open clearing window (in force, future, superseded), and a form with which a clearing
//! officer (or the administrator) adds a rule. Chinese first, with English.
//!
//! The form takes the rate in percent and the fixed fee in yuan, as people say them, and turns
//! them into basis points and fen without floating point; it calls the platform function the
//! API calls, which checks the role again, validates the rule and writes the audit entry. The
//! form carries the session-derived token of `points_console`, and the answer is a redirect
//! with a message code, never free text from the address.

use crate::AppState;
use crate::auth::PresentedToken;
use crate::console::{Flash, back_to, form_token, token_ok, token_refused};
use crate::console::{language, page};
use crate::error::ApiResult;
use crate::i18n::Texts;
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use platform::fees::FeeRuleRequest;
use platform::{Caller, PlatformError};
use store::Role;

pub const FEES_PAGE: &str = "/console/clearing/fees";

pub fn routes() -> Router<AppState> {
    Router::new().route(FEES_PAGE, get(fees_page).post(rule_add))
}

pub struct FTexts {
    title: &'static str,
    intro: &'static str,
    window: &'static str,
    rules: &'static str,
    scope: &'static str,
    rate: &'static str,
    fixed: &'static str,
    effective: &'static str,
    standing: &'static str,
    added_by: &'static str,
    add: &'static str,
    scope_kind: &'static str,
    category: &'static str,
    merchant: &'static str,
    scope_value: &'static str,
    scope_hint: &'static str,
    rate_hint: &'static str,
    fixed_hint: &'static str,
    effective_hint: &'static str,
    save: &'static str,
    /// Punctuation around a name and a hint: full width in Chinese.
    colon: &'static str,
    open: &'static str,
    close: &'static str,
    words: [(&'static str, &'static str); 12],
}

static FZH: FTexts = FTexts {
    title: "清分：手续费率",
    intro: "每笔交易的手续费 = 金额 × 费率 + 固定费用（按分四舍五入，不超过交易金额）。商户有自己的规则时用商户的，否则用其类别的，都没有则不收。规则只增不改：调整费率就新增一条生效日期更晚的规则；生效日期不能早于当前开放的清分窗口，已结束的窗口手续费不变。",
    window: "当前开放的清分窗口",
    rules: "费率规则",
    scope: "适用范围",
    rate: "费率",
    fixed: "固定费用（元/笔）",
    effective: "生效日期",
    standing: "状态",
    added_by: "添加人",
    add: "新增规则",
    scope_kind: "范围类型",
    category: "商户类别",
    merchant: "单个商户",
    scope_value: "类别或商户代码",
    scope_hint: "类别：transit、canteen、shop、hospital、library、utility、taxi、bike、government；商户：已登记的商户代码",
    rate_hint: "百分比，0 到 100，最多两位小数，如 0.30",
    fixed_hint: "最多两位小数，如 0.05；不收填 0",
    effective_hint: "不早于当前开放的清分窗口",
    save: "新增",
    colon: "：",
    open: "（",
    close: "）",
    words: [
        ("in_force", "生效中"),
        ("future", "待生效"),
        ("superseded", "已被取代"),
        ("transit", "公共交通"),
        ("canteen", "食堂"),
        ("shop", "商户零售"),
        ("hospital", "医院"),
        ("library", "图书馆"),
        ("utility", "公用事业"),
        ("taxi", "出租车"),
        ("bike", "公共自行车"),
        ("government", "政务"),
    ],
};

static FEN: FTexts = FTexts {
    title: "Clearing: fee schedule",
    intro: "A transaction's fee is amount × rate + fixed fee (rounded half up to the fen, never more than the amount). A merchant's own rule applies where it has one, else its category's, else none. Rules are only added: to change a rate, add a rule with a later effective date; no rule takes effect before the open clearing window, so a window that has ended keeps its fees.",
    window: "Open clearing window",
    rules: "Rules",
    scope: "Scope",
    rate: "Rate",
    fixed: "Fixed fee (yuan per transaction)",
    effective: "Effective from",
    standing: "Standing",
    added_by: "Added by",
    add: "Add a rule",
    scope_kind: "Scope kind",
    category: "Merchant category",
    merchant: "One merchant",
    scope_value: "Category or merchant code",
    scope_hint: "categories: transit, canteen, shop, hospital, library, utility, taxi, bike, government; or a registered merchant's code",
    rate_hint: "percent, 0 to 100, at most two decimals, e.g. 0.30",
    fixed_hint: "at most two decimals, e.g. 0.05; 0 for none",
    effective_hint: "not before the open clearing window",
    save: "Add",
    colon: ": ",
    open: " (",
    close: ")",
    words: [
        ("in_force", "in force"),
        ("future", "future"),
        ("superseded", "superseded"),
        ("transit", "transit"),
        ("canteen", "canteens"),
        ("shop", "shops"),
        ("hospital", "hospitals"),
        ("library", "libraries"),
        ("utility", "utilities"),
        ("taxi", "taxis"),
        ("bike", "public bikes"),
        ("government", "government"),
    ],
};

fn word(s: &FTexts, w: &str) -> &'static str {
    s.words
        .iter()
        .find(|(k, _)| *k == w)
        .map_or("", |(_, v)| *v)
}

fn may_add(c: &Caller) -> bool {
    matches!(c.role, Role::Administrator | Role::ClearingOfficer)
}

/// An amount in hundredths as typed: `12`, `0.3`, `0.30` (a trailing `%` allowed) → 1200, 30,
/// 30. At most two decimals and eight digits before the point; anything else is `None`.
fn hundredths(text: &str) -> Option<i64> {
    let t = text.trim().trim_end_matches('%').trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 8 || frac.len() > 2 || !digits(whole) || !digits(frac) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    Some(whole * 100 + frac)
}

/// Hundredths as a decimal with two places: 30 → `0.30`.
fn two_places(n: i64) -> String {
    format!("{}.{:02}", n / 100, n % 100)
}

/// The subject a message names (a category or merchant code): only code characters, bounded,
/// so nothing else from the address reaches the page.
fn subject(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(32)
        .collect()
}

fn back(key: &str, code: &str, on: &str) -> Response {
    back_to(FEES_PAGE, key, code, &subject(on))
}

fn flash(ok: Option<&str>, error: Option<&str>, on: Option<&str>) -> Option<Flash> {
    let on = subject(on.unwrap_or(""));
    if ok == Some("rule_added") {
        return Some(Flash {
            ok: true,
            zh: format!("已新增 {on} 的费率规则，自其生效日期起的清分窗口使用。"),
            en: format!(
                "The fee rule for {on} is added; clearing windows from its effective date use it."
            ),
        });
    }
    let (zh, en): (String, String) = match error? {
        "token" => token_refused(),
        "forbidden" => (
            "您的角色无权修改手续费率".into(),
            "your role may not change the fee schedule".into(),
        ),
        "scope_kind" => (
            "请选择商户类别或单个商户".into(),
            "choose a merchant category or one merchant".into(),
        ),
        "scope_value" => (
            format!("{on} 不是商户类别，也不是已登记的商户代码"),
            format!("{on} is neither a merchant category nor a registered merchant's code"),
        ),
        "rate" => (
            "费率须为 0 到 100 的百分比，最多两位小数".into(),
            "the rate must be a percentage from 0 to 100 with at most two decimals".into(),
        ),
        "fixed" => (
            format!(
                "固定费用须为 0 到 {} 元，最多两位小数",
                two_places(platform::fees::FIXED_FEN_MAX)
            ),
            format!(
                "the fixed fee must be 0 to {} yuan with at most two decimals",
                two_places(platform::fees::FIXED_FEN_MAX)
            ),
        ),
        "effective_from" => (
            "生效日期须为 YYYY-MM-DD 格式的日期".into(),
            "the effective date must be a date, YYYY-MM-DD".into(),
        ),
        "too_far" => (
            "生效日期距当前清分窗口超过十年".into(),
            "the effective date is more than ten years ahead".into(),
        ),
        "backdated" => (
            "生效日期早于当前开放的清分窗口；已结束窗口的手续费不能改变".into(),
            "the effective date is before the open clearing window; the fees of a window that has ended never change".into(),
        ),
        "same_day" => (
            format!("{on} 在该日期已有一条规则；规则不能修改，请选更晚的生效日期"),
            format!(
                "{on} already has a rule taking effect on that day; rules are never changed, choose a later date"
            ),
        ),
        "full" => (
            format!(
                "费率规则已达上限 {} 条",
                platform::fees::FEE_RULES_MAX
            ),
            format!(
                "the schedule holds its limit of {} rules",
                platform::fees::FEE_RULES_MAX
            ),
        ),
        "failed" => (
            "保存失败，请稍后重试".into(),
            "the change failed; try again later".into(),
        ),
        _ => return None,
    };
    Some(Flash {
        ok: false,
        zh: format!("未保存：{zh}。"),
        en: format!("Nothing was changed: {en}."),
    })
}

/// The message code of a platform refusal. Unexpected failures are logged here (the page
/// only says the change failed).
fn refusal_code(e: &PlatformError) -> &'static str {
    match e {
        PlatformError::Forbidden(_) => "forbidden",
        PlatformError::Conflict(_) => "same_day",
        PlatformError::TooLarge { .. } => "full",
        PlatformError::Invalid { fields, .. } => match fields.first().map(|f| f.field.as_str()) {
            Some("scope_kind") => "scope_kind",
            Some("scope_value") => "scope_value",
            Some("rate_bp") => "rate",
            Some("fixed_fen") => "fixed",
            // The form checked the date's shape: what the platform refuses is its day.
            Some("effective_from") => {
                if fields[0].message.contains("days after") {
                    "too_far"
                } else {
                    "backdated"
                }
            }
            _ => "failed",
        },
        e => {
            tracing::error!(error = %e, "console fee rule form failed");
            "failed"
        }
    }
}

struct RuleLine {
    id: i64,
    /// `商户类别：shop（商户零售）`, `category: shop (shops)`, `单个商户：cafe`.
    scope: String,
    rate: String,
    fixed: String,
    effective_from: String,
    standing: &'static str,
    standing_text: &'static str,
    created_by: String,
}

#[derive(Template)]
#[template(path = "fees.html")]
struct FeesPage {
    t: &'static Texts,
    s: &'static FTexts,
    user: Option<String>,
    flash: Option<Flash>,
    may_add: bool,
    token: String,
    window: String,
    rules: Vec<RuleLine>,
    categories: &'static [&'static str],
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
    ok: Option<String>,
    error: Option<String>,
    on: Option<String>,
}

async fn fees_page(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let s: &'static FTexts = if t.lang == "en" { &FEN } else { &FZH };
    let schedule = st.platform.fee_rules(&c).await?;
    let rules = schedule
        .rules
        .into_iter()
        .map(|v| {
            let r = v.rule;
            let (kind, name) = if r.scope_kind == "category" {
                (s.category, word(s, &r.scope_value))
            } else {
                (s.merchant, "")
            };
            let mut scope = format!("{kind}{}{}", s.colon, r.scope_value);
            if !name.is_empty() && name != r.scope_value {
                scope = format!("{scope}{}{name}{}", s.open, s.close);
            }
            RuleLine {
                id: r.id,
                scope,
                rate: format!("{}%", two_places(r.rate_bp)),
                fixed: two_places(r.fixed_fen),
                effective_from: r.effective_from,
                standing: v.standing.as_str(),
                standing_text: word(s, v.standing.as_str()),
                created_by: r.created_by,
            }
        })
        .collect();
    page(
        FeesPage {
            t,
            s,
            user: Some(c.username.clone()),
            flash: flash(q.ok.as_deref(), q.error.as_deref(), q.on.as_deref()),
            may_add: may_add(&c),
            token: form_token(&presented),
            window: schedule.window,
            rules,
            categories: &platform::terminals::CATEGORIES,
        },
        set,
    )
}

#[derive(serde::Deserialize)]
pub struct RuleForm {
    token: String,
    scope_kind: String,
    scope_value: String,
    /// Percent, e.g. `0.30`.
    rate_percent: String,
    /// Yuan, e.g. `0.05`.
    fixed_yuan: String,
    effective_from: String,
}

async fn rule_add(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    Form(f): Form<RuleForm>,
) -> Response {
    let on = f.scope_value.trim().to_owned();
    let fail = |code: &str| back("error", code, &on);
    if !token_ok(&presented, &f.token) {
        return fail("token");
    }
    let Some(rate_bp) = hundredths(&f.rate_percent) else {
        return fail("rate");
    };
    let Some(fixed_fen) = hundredths(&f.fixed_yuan) else {
        return fail("fixed");
    };
    if platform::production::parse_day(&f.effective_from).is_err() {
        return fail("effective_from");
    }
    let req = FeeRuleRequest {
        scope_kind: f.scope_kind,
        scope_value: on.clone(),
        rate_bp,
        fixed_fen,
        effective_from: f.effective_from.trim().to_owned(),
    };
    match st.platform.fee_rule_add(&c, &req).await {
        Ok(_) => back("ok", "rule_added", &on),
        Err(e) => fail(refusal_code(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_and_yuan_become_hundredths_exactly() {
        assert_eq!(hundredths("0.30"), Some(30));
        assert_eq!(hundredths("0.3"), Some(30));
        assert_eq!(hundredths(" 0.6% "), Some(60));
        assert_eq!(hundredths("100"), Some(10_000));
        assert_eq!(hundredths("0"), Some(0));
        assert_eq!(hundredths("12.05"), Some(1_205));
        for bad in ["", ".5", "0.305", "-1", "1e3", "0,3", "123456789", "1.-1"] {
            assert_eq!(hundredths(bad), None, "{bad}");
        }
        assert_eq!(two_places(30), "0.30");
        assert_eq!(two_places(12_345), "123.45");
    }
}
