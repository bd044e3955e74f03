//! The console page for e-code usage (`/console/ecode`, issue 7.8): online verifications per
//! day, accepted and refused, as a chart and a table, and the refusals by reason with their
//! codes (`ecode.md`'s checks) — what an operator looks at when gates start refusing phones.

use crate::AppState;
use crate::console::{language, page};
use crate::error::ApiResult;
use crate::i18n::Texts;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use platform::Caller;

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/ecode", get(usage))
}

pub struct ETexts {
    title: &'static str,
    intro: &'static str,
    per_day: &'static str,
    day: &'static str,
    accepted: &'static str,
    refused: &'static str,
    by_reason: &'static str,
    reason: &'static str,
    count: &'static str,
    none: &'static str,
    by_purpose: &'static str,
}

static EZH: ETexts = ETexts {
    title: "电子市民卡使用情况",
    intro: "联网柜台与闸机的在线核验：每日通过与拒绝，以及按原因统计的拒绝。",
    per_day: "近 14 天在线核验",
    day: "日期",
    accepted: "通过",
    refused: "拒绝",
    by_reason: "拒绝原因",
    reason: "原因",
    count: "次数",
    none: "没有拒绝。",
    by_purpose: "按用途",
};

static EEN: ETexts = ETexts {
    title: "E-code usage",
    intro: "Online verifications by connected counters and gates: accepted and refused per day, and the refusals by reason.",
    per_day: "Online verifications, last 14 days",
    day: "Day",
    accepted: "Accepted",
    refused: "Refused",
    by_reason: "Refusals by reason",
    reason: "Reason",
    count: "Count",
    none: "No refusals.",
    by_purpose: "By purpose",
};

/// The reason codes of `ecode.md`'s checks, in words.
fn reason_label(code: &str, en: bool) -> &'static str {
    let (zh, english) = match code {
        "format" => ("格式错误", "malformed code"),
        "unknown_root" => ("未知根密钥", "unknown root key"),
        "root_withdrawn" => ("根密钥已撤销", "root key withdrawn"),
        "root_signature" => ("证书签名无效", "certificate signature invalid"),
        "not_yet_valid" => ("证书未生效", "certificate not yet valid"),
        "expired" => ("证书已过期", "certificate expired"),
        "not_fresh_old" => ("二维码已过时", "code too old"),
        "not_fresh_future" => ("二维码时间超前", "code from the future"),
        "device_signature" => ("手机签名无效", "phone signature invalid"),
        "deny_listed" => ("卡片在黑名单", "card deny-listed"),
        "replay" => ("重复使用", "replayed"),
        "over_limit" => ("超出脱机限额", "over the offline limit"),
        "spend_ledger_full" => ("脱机记账已满", "spend ledger full"),
        "use_not_allowed" => ("用途不允许", "use not allowed"),
        "device_revoked" => ("手机已解绑", "phone revoked"),
        _ => ("其他", "other"),
    };
    if en { english } else { zh }
}

struct Bar {
    day: String,
    accepted: i64,
    refused: i64,
    x: i64,
    y_accepted: i64,
    h_accepted: i64,
    y_refused: i64,
    h_refused: i64,
}

struct ReasonRow {
    code: String,
    label: &'static str,
    count: i64,
    bar: i64,
}

#[derive(Template)]
#[template(path = "ecode_usage.html")]
struct UsagePage {
    t: &'static Texts,
    e: &'static ETexts,
    user: Option<String>,
    bars: Vec<Bar>,
    chart_width: i64,
    reasons: Vec<ReasonRow>,
    purposes: Vec<(String, i64)>,
}

#[derive(serde::Deserialize)]
pub struct UsageQuery {
    lang: Option<String>,
}

/// Chart height for the bars, in pixels.
const CHART_H: i64 = 120;

async fn usage(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let en = t.lang == "en";
    let u = s.platform.ecode_usage(&c, 14).await?;
    let max = u
        .days
        .iter()
        .map(|d| d.accepted + d.refused)
        .max()
        .unwrap_or(0)
        .max(1);
    let bars = u
        .days
        .iter()
        .enumerate()
        .map(|(k, d)| {
            let h_accepted = d.accepted * CHART_H / max;
            let h_refused = d.refused * CHART_H / max;
            Bar {
                day: d.day.clone(),
                accepted: d.accepted,
                refused: d.refused,
                x: 4 + 18 * k as i64,
                y_accepted: 130 - h_accepted,
                h_accepted,
                y_refused: 130 - h_accepted - h_refused,
                h_refused,
            }
        })
        .collect::<Vec<_>>();
    let top = u.refusals_by_reason.first().map_or(1, |r| r.1.max(1));
    let reasons = u
        .refusals_by_reason
        .iter()
        .map(|(code, n)| ReasonRow {
            label: reason_label(code, en),
            code: code.clone(),
            count: *n,
            bar: n * 200 / top,
        })
        .collect();
    page(
        UsagePage {
            t,
            e: if en { &EEN } else { &EZH },
            user: Some(c.username.clone()),
            chart_width: 8 + 18 * bars.len() as i64,
            bars,
            reasons,
            purposes: u.by_purpose,
        },
        set,
    )
}
