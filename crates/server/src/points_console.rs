//! The console pages of points and the credit service: `/console/points` (earning rules, the
//! redemption catalogue, charity projects and what each received) and `/console/credit`
//! (disputes waiting for an officer, and those resolved, with the notes). Chinese first, with
//! English. No ID number or name appears: residents are shown by their row id.

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
use ledger::AccountKey;
use platform::Caller;
use platform::credit::DisputeView;
use store::points::{CharityProjectRow, PointsItemRow};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/points", get(points_page))
        .route("/console/credit", get(credit_page))
}

pub struct PTexts {
    title: &'static str,
    intro: &'static str,
    rules: &'static str,
    kind: &'static str,
    per_unit: &'static str,
    cap: &'static str,
    validity: &'static str,
    state: &'static str,
    on: &'static str,
    off: &'static str,
    catalogue: &'static str,
    code: &'static str,
    name: &'static str,
    reward: &'static str,
    cost: &'static str,
    projects: &'static str,
    received: &'static str,
    credit_title: &'static str,
    credit_intro: &'static str,
    open: &'static str,
    resolved: &'static str,
    dispute: &'static str,
    resident: &'static str,
    signal: &'static str,
    reason: &'static str,
    status: &'static str,
    officer: &'static str,
    note: &'static str,
    created: &'static str,
    how: &'static str,
    words: [(&'static str, &'static str); 9],
}

static PZH: PTexts = PTexts {
    title: "积分：规则与兑换目录",
    intro: "积分记在账本中（单位 POINTS）：获得从积分发行账户转入，兑换、捐赠和过期转出到各自账户，积分不会凭空产生或消失。",
    rules: "获得规则",
    kind: "用途",
    per_unit: "每次（小时）积分",
    cap: "每日上限",
    validity: "有效天数",
    state: "状态",
    on: "启用",
    off: "停用",
    catalogue: "兑换目录",
    code: "代码",
    name: "名称",
    reward: "类别",
    cost: "所需积分",
    projects: "公益项目",
    received: "已收到积分",
    credit_title: "信用服务：异议处理",
    credit_intro: "信用分只由市民自己能看到的记录构成，市民自愿开通。市民对某条记录有异议时，由经办人员核实后处理；处理结果和说明记入审计日志。",
    open: "待处理的异议",
    resolved: "已处理的异议",
    dispute: "异议",
    resident: "居民编号",
    signal: "记录编号",
    reason: "异议理由",
    status: "状态",
    officer: "经办人",
    note: "处理说明",
    created: "提出时间",
    how: "处理方式：POST /api/v1/credit/disputes/{id}/resolution，uphold 为 true 时撤销该记录并重新计算信用分。",
    words: [
        ("ride", "乘车"),
        ("library_loan", "图书借阅"),
        ("bill_on_time", "按时缴费"),
        ("volunteer_hour", "志愿服务（小时）"),
        ("ride_voucher", "乘车券"),
        ("museum_ticket", "博物馆门票"),
        ("open", "待处理"),
        ("upheld", "已撤销记录"),
        ("rejected", "维持记录"),
    ],
};

static PEN: PTexts = PTexts {
    title: "Points: rules and catalogue",
    intro: "Points are kept in the ledger (unit POINTS): earnings come from the points issuance account; redemptions, donations and expiry go to their own accounts, so points are never created or lost.",
    rules: "Earning rules",
    kind: "Use",
    per_unit: "Points per use (hour)",
    cap: "Daily cap",
    validity: "Valid for (days)",
    state: "State",
    on: "on",
    off: "off",
    catalogue: "Redemption catalogue",
    code: "Code",
    name: "Name",
    reward: "Kind",
    cost: "Points",
    projects: "Charity projects",
    received: "Points received",
    credit_title: "Credit service: disputes",
    credit_intro: "A credit score is built only from records the citizen can see, and only for citizens who opted in. When a citizen disputes a record, an officer checks it and resolves the dispute; the decision and its note are on the audit log.",
    open: "Open disputes",
    resolved: "Resolved disputes",
    dispute: "Dispute",
    resident: "Resident id",
    signal: "Record id",
    reason: "Reason",
    status: "Status",
    officer: "Officer",
    note: "Note",
    created: "Opened",
    how: "To resolve: POST /api/v1/credit/disputes/{id}/resolution; uphold true strikes the record out and scores again.",
    words: [
        ("ride", "a ride"),
        ("library_loan", "a library loan"),
        ("bill_on_time", "a bill paid on time"),
        ("volunteer_hour", "a volunteer hour"),
        ("ride_voucher", "ride voucher"),
        ("museum_ticket", "museum ticket"),
        ("open", "open"),
        ("upheld", "upheld (record struck out)"),
        ("rejected", "rejected (record kept)"),
    ],
};

fn word(s: &PTexts, w: &str) -> &'static str {
    s.words
        .iter()
        .find(|(k, _)| *k == w)
        .map_or("", |(_, v)| *v)
}

struct RuleLine {
    kind: String,
    kind_text: &'static str,
    points_per_unit: i64,
    daily_cap: i64,
    validity_days: i64,
    active: bool,
}

struct ItemLine {
    item: PointsItemRow,
    kind_text: &'static str,
}

struct ProjectLine {
    project: CharityProjectRow,
    received: i64,
}

#[derive(Template)]
#[template(path = "points.html")]
struct PointsPage {
    t: &'static Texts,
    s: &'static PTexts,
    user: Option<String>,
    rules: Vec<RuleLine>,
    items: Vec<ItemLine>,
    projects: Vec<ProjectLine>,
}

struct DisputeLine {
    d: DisputeView,
    status_text: &'static str,
}

#[derive(Template)]
#[template(path = "credit.html")]
struct CreditPage {
    t: &'static Texts,
    s: &'static PTexts,
    user: Option<String>,
    open: Vec<DisputeLine>,
    resolved: Vec<DisputeLine>,
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
}

async fn points_page(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let s: &'static PTexts = if t.lang == "en" { &PEN } else { &PZH };
    let rules = st
        .platform
        .points_rules(&c)
        .await?
        .into_iter()
        .map(|r| RuleLine {
            kind_text: word(s, &r.kind),
            kind: r.kind,
            points_per_unit: r.points_per_unit,
            daily_cap: r.daily_cap,
            validity_days: r.validity_days,
            active: r.active,
        })
        .collect();
    let items = st
        .platform
        .points_items(&c)
        .await?
        .into_iter()
        .map(|item| ItemLine {
            kind_text: word(s, &item.kind),
            item,
        })
        .collect();
    let mut projects = Vec::new();
    for project in st.platform.points_projects(&c).await? {
        let received = match AccountKey::points_charity(&project.code) {
            Ok(k) => st
                .platform
                .store
                .ledger_account(&k)
                .await
                .map_err(platform::PlatformError::from)?
                .map_or(0, |a| a.balance),
            Err(_) => 0,
        };
        projects.push(ProjectLine { project, received });
    }
    page(
        PointsPage {
            t,
            s,
            user: Some(c.username.clone()),
            rules,
            items,
            projects,
        },
        set,
    )
}

async fn credit_page(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let s: &'static PTexts = if t.lang == "en" { &PEN } else { &PZH };
    let line = |d: DisputeView| DisputeLine {
        status_text: word(s, &d.status),
        d,
    };
    let open = st
        .platform
        .credit_disputes(&c, Some("open"), 200)
        .await?
        .into_iter()
        .map(line)
        .collect();
    let resolved = st
        .platform
        .credit_disputes(&c, None, 200)
        .await?
        .into_iter()
        .filter(|d| d.status != "open")
        .map(line)
        .collect();
    page(
        CreditPage {
            t,
            s,
            user: Some(c.username.clone()),
            open,
            resolved,
        },
        set,
    )
}
