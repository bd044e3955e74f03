//! The console page for disbursement approvals (待遇发放审批) under `/console/clearing`:
//! batches with their state and a bar of what was paid, and — for a second officer of the
//! batch's department or an administrator — approve and reject buttons (four eyes: never
//! shown to the submitter, and refused by the platform anyway).

use crate::AppState;
use crate::console::{language, page};
use crate::error::ApiResult;
use crate::i18n::Texts;
use crate::production_console::yuan;
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use platform::Caller;
use platform::disbursements::DisbursementView;
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
    message: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
    /// A message after a decision (the platform's refusal, shown as given).
    msg: Option<String>,
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
            message: q.msg.filter(|m| m.len() <= 300),
        },
        set,
    )
}

#[derive(serde::Deserialize)]
pub struct DecisionForm {
    decision: String,
}

async fn decide(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Form(f): Form<DecisionForm>,
) -> Response {
    let approve = match f.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return Redirect::to("/console/clearing/disbursements?msg=unknown%20decision")
                .into_response();
        }
    };
    match s.platform.decide_disbursement(&c, id, approve).await {
        Ok(_) => Redirect::to("/console/clearing/disbursements").into_response(),
        Err(e) => {
            let msg: String = form_urlencoded_byte(&e.to_string());
            Redirect::to(&format!("/console/clearing/disbursements?msg={msg}")).into_response()
        }
    }
}

/// Percent-encodes a message for the redirect's query.
fn form_urlencoded_byte(text: &str) -> String {
    text.bytes()
        .take(300)
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
