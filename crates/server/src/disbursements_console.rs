//! The console page for disbursement approvals (待遇发放审批) under `/console/clearing`:
//! batches with their state and a bar of what was paid, and — for a second officer of the
//! batch's department or an administrator — approve and reject buttons (four eyes: never
//! shown to the submitter, and refused by the platform anyway). The forms carry the session's
//! SM3-derived token (see `points_console`); after a decision the page says what happened by a
//! message code, never by text taken from the address.

use crate::AppState;
use crate::auth::PresentedToken;
use crate::console::{Flash, back_to, form_token, token_ok, token_refused};
use crate::console::{language, page};
use crate::error::ApiResult;
use crate::i18n::Texts;
use crate::production_console::yuan;
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use platform::disbursements::DisbursementView;
use platform::{Caller, PlatformError};
use store::Role;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/clearing/disbursements", get(list))
        .route(
            "/console/clearing/disbursements/{id}",
            axum::routing::post(decide),
        )
}

pub struct DTexts {
    title: &'static str,
    intro: &'static str,
    batch: &'static str,
    department: &'static str,
    label: &'static str,
    state: &'static str,
    lines: &'static str,
    paid: &'static str,
    rejected: &'static str,
    submitted: &'static str,
    decision: &'static str,
    approve: &'static str,
    reject: &'static str,
    by: &'static str,
    states: [(&'static str, &'static str); 4],
}

static DZH: DTexts = DTexts {
    title: "待遇发放审批",
    intro: "部门经办提交的发放批次，由同部门另一名经办或管理员复核（双人复核）后发放到市民账户。",
    batch: "批次",
    department: "部门",
    label: "说明",
    state: "状态",
    lines: "行数",
    paid: "已发放 / 合计（元）",
    rejected: "拒绝行",
    submitted: "提交时间",
    decision: "复核",
    approve: "批准并发放",
    reject: "驳回",
    by: "复核人",
    states: [
        ("submitted", "待复核"),
        ("approved", "发放中"),
        ("rejected", "已驳回"),
        ("paid", "已发放"),
    ],
};

static DEN: DTexts = DTexts {
    title: "Disbursement approvals",
    intro: "Batches submitted by a department's officer are paid into citizens' accounts once a second officer of the department, or an administrator, approves them (four eyes).",
    batch: "Batch",
    department: "Department",
    label: "Label",
    state: "State",
    lines: "Lines",
    paid: "Paid / total (yuan)",
    rejected: "Rejected lines",
    submitted: "Submitted",
    decision: "Decision",
    approve: "Approve and pay",
    reject: "Reject",
    by: "by operator",
    states: [
        ("submitted", "awaiting approval"),
        ("approved", "paying"),
        ("rejected", "rejected"),
        ("paid", "paid"),
    ],
};

fn dtexts(t: &Texts) -> &'static DTexts {
    if t.lang == "en" { &DEN } else { &DZH }
}

struct Row {
    b: DisbursementView,
    state_text: &'static str,
    paid_yuan: String,
    total_yuan: String,
    /// Width of the paid bar, 0 to 120.
    bar: i64,
    may_decide: bool,
}

#[derive(Template)]
#[template(path = "disbursements.html")]
struct DisbursementsPage {
    t: &'static Texts,
    d: &'static DTexts,
    user: Option<String>,
    rows: Vec<Row>,
    token: String,
    flash: Option<Flash>,
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
    /// After a decision: `ok=` what was done, `error=` why nothing was, `on=` the batch.
    ok: Option<String>,
    error: Option<String>,
    on: Option<String>,
}

fn flash(ok: Option<&str>, error: Option<&str>, on: Option<&str>) -> Option<Flash> {
    let on: String = on
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .take(19)
        .collect();
    if let Some(code) = ok {
        let (zh, en) = match code {
            "approved" => (
                format!("批次 {on} 已批准并发放。"),
                format!("Batch {on} is approved and paid."),
            ),
            "rejected" => (
                format!("批次 {on} 已驳回。"),
                format!("Batch {on} is rejected."),
            ),
            _ => return None,
        };
        return Some(Flash { ok: true, zh, en });
    }
    let (zh, en): (String, String) = match error? {
        "token" => token_refused(),
        "forbidden" => (
            format!(
                "您不能复核批次 {on}：提交人不能复核自己的批次（双人复核），复核人须为同部门经办或管理员"
            ),
            format!(
                "you may not decide batch {on}: its submitter never does (four eyes), and only an officer of its department or an administrator does"
            ),
        ),
        "decided" => (
            format!("批次 {on} 已经复核过"),
            format!("batch {on} is already decided"),
        ),
        "not_found" => (
            format!("找不到批次 {on}"),
            format!("batch {on} was not found"),
        ),
        "decision" => (
            "请选择“批准”或“驳回”".into(),
            "choose approve or reject".into(),
        ),
        "failed" => (
            "操作失败，请稍后重试".into(),
            "it failed; try again later".into(),
        ),
        _ => return None,
    };
    Some(Flash {
        ok: false,
        zh: format!("未完成：{zh}。"),
        en: format!("Nothing was done: {en}."),
    })
}

fn may_decide(c: &Caller, b: &DisbursementView) -> bool {
    b.state == "submitted"
        && c.operator_id.is_some_and(|op| op != b.submitted_by)
        && match c.role {
            Role::Administrator => true,
            Role::DepartmentOfficer => c.department.map(|d| d.as_str()) == Some(&b.department),
            _ => false,
        }
}

async fn list(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let d = dtexts(t);
    let rows = s
        .platform
        .disbursements(&c, 200)
        .await?
        .into_iter()
        .map(|b| Row {
            state_text: d
                .states
                .iter()
                .find(|(k, _)| *k == b.state)
                .map_or("", |(_, v)| v),
            paid_yuan: yuan(b.paid_fen),
            total_yuan: yuan(b.total_fen),
            bar: if b.total_fen > 0 {
                (b.paid_fen.saturating_mul(120) / b.total_fen).clamp(0, 120)
            } else {
                0
            },
            may_decide: may_decide(&c, &b),
            b,
        })
        .collect();
    page(
        DisbursementsPage {
            t,
            d,
            user: Some(c.username.clone()),
            rows,
            token: form_token(&presented),
            flash: flash(q.ok.as_deref(), q.error.as_deref(), q.on.as_deref()),
        },
        set,
    )
}

#[derive(serde::Deserialize)]
pub struct DecisionForm {
    /// The form token; a post without it is refused like one with a wrong one.
    #[serde(default)]
    token: String,
    decision: String,
}

const PAGE: &str = "/console/clearing/disbursements";

async fn decide(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    Path(id): Path<i64>,
    Form(f): Form<DecisionForm>,
) -> Response {
    let back = |key: &str, code: &str| back_to(PAGE, key, code, &id.to_string());
    if !token_ok(&presented, &f.token) {
        return back("error", "token");
    }
    let approve = match f.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return back("error", "decision"),
    };
    match s.platform.decide_disbursement(&c, id, approve).await {
        Ok(_) if approve => back("ok", "approved"),
        Ok(_) => back("ok", "rejected"),
        Err(PlatformError::Forbidden(_)) => back("error", "forbidden"),
        Err(PlatformError::NotFound(_)) => back("error", "not_found"),
        Err(PlatformError::Conflict(_)) => back("error", "decided"),
        Err(e) => {
            tracing::error!(error = %e, "console disbursement decision failed");
            back("error", "failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_code_has_both_languages() {
        for code in ["approved", "rejected"] {
            let f = flash(Some(code), None, Some("12")).unwrap();
            assert!(f.ok && f.zh.contains("12") && f.en.contains("12"));
        }
        for code in [
            "token",
            "forbidden",
            "decided",
            "not_found",
            "decision",
            "failed",
        ] {
            let f = flash(None, Some(code), Some("<b>12</b>")).unwrap();
            assert!(
                !f.ok && f.zh.starts_with("未完成") && !f.en.contains('<'),
                "{code}"
            );
        }
        assert!(flash(None, Some("four eyes"), None).is_none());
    }
}
