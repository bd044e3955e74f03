//! The console pages of points and the credit service: `/console/points` (earning rules, the
//! redemption catalogue, charity projects and what each received) and `/console/credit`
//! (disputes waiting for an officer, and those resolved, with the notes). Chinese first, with
//! English. No ID number or name appears: residents are shown by their row id.
//!
//! The administrator changes a rule, adds, changes or withdraws a catalogue item and adds or
//! closes a charity project through forms; a clearing officer (or the administrator) resolves
//! a dispute. Each form calls the platform function the API calls, which checks the role
//! again and writes the audit entry. A form carries a token derived from the session's own
//! credential (SM3), so a page of another site cannot post one even where a browser sends
//! the `SameSite=Strict` cookie. After a post the browser is sent back to the page with a
//! message code (never free text from the address): what was saved, or why nothing was.

use crate::AppState;
use crate::auth::PresentedToken;
use crate::console::{Flash, back_to, form_token, language, page, token_ok, token_refused};
use crate::error::ApiResult;
use crate::i18n::Texts;
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use ledger::AccountKey;
use platform::credit::DisputeView;
use platform::{Caller, PlatformError};
use points::{CatalogueItem, CharityProject, EarnKind, EarnRule, RewardKind};
use store::Role;
use store::points::{CharityProjectRow, PointsItemRow};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/points", get(points_page))
        .route("/console/points/rules/{kind}", post(rule_save))
        .route("/console/points/catalogue", post(item_save))
        .route(
            "/console/points/catalogue/{code}/withdrawal",
            post(item_withdraw),
        )
        .route("/console/points/projects", post(project_save))
        .route("/console/credit", get(credit_page))
        .route(
            "/console/credit/disputes/{id}/resolution",
            post(dispute_resolve),
        )
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
    name_zh: &'static str,
    name_en: &'static str,
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
    save: &'static str,
    rule_active: &'static str,
    item_active: &'static str,
    project_active: &'static str,
    actions: &'static str,
    edit: &'static str,
    withdraw: &'static str,
    add_item: &'static str,
    edit_item: &'static str,
    add_project: &'static str,
    edit_project: &'static str,
    cancel_edit: &'static str,
    code_hint: &'static str,
    decision: &'static str,
    uphold: &'static str,
    reject: &'static str,
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
    name_zh: "中文名称",
    name_en: "英文名称",
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
    how: "撤销记录：该记录不再计入信用分，信用分立即重新计算；维持记录：信用分不变。",
    save: "保存",
    rule_active: "启用此规则",
    item_active: "上架（市民可兑换）",
    project_active: "开放（市民可捐赠）",
    actions: "操作",
    edit: "修改",
    withdraw: "下架",
    add_item: "新增兑换项目",
    edit_item: "修改兑换项目",
    add_project: "新增公益项目",
    edit_project: "修改公益项目",
    cancel_edit: "改为新增",
    code_hint: "1–32 个小写字母、数字、“_”或“-”，保存后不能修改",
    decision: "处理",
    uphold: "撤销记录",
    reject: "维持记录",
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
    name_zh: "Chinese name",
    name_en: "English name",
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
    how: "Uphold strikes the record out and scores the citizen again at once; reject keeps the record and the score.",
    save: "Save",
    rule_active: "This rule is on",
    item_active: "Offered (citizens may redeem it)",
    project_active: "Open (citizens may donate)",
    actions: "Actions",
    edit: "Edit",
    withdraw: "Withdraw",
    add_item: "Add a catalogue item",
    edit_item: "Change a catalogue item",
    add_project: "Add a charity project",
    edit_project: "Change a charity project",
    cancel_edit: "Add a new one instead",
    code_hint: "1–32 characters of a-z, 0-9, '_' or '-'; fixed once saved",
    decision: "Decision",
    uphold: "Uphold (strike the record out)",
    reject: "Reject (keep the record)",
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

/// Who may use which form (the permission table and the platform say the same).
fn may_keep(c: &Caller) -> bool {
    c.role == Role::Administrator
}

fn may_resolve(c: &Caller) -> bool {
    matches!(c.role, Role::Administrator | Role::ClearingOfficer)
}

/// The subject a message names (a rule kind, an item or project code, a dispute id): only
/// code characters, bounded, so nothing else from the address reaches the page.
fn subject(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(points::CODE_MAX)
        .collect()
}

fn back(page: &str, key: &str, code: &str, on: &str) -> Response {
    back_to(page, key, code, &subject(on))
}

fn kind_names(on: &str) -> (&'static str, &'static str) {
    (word(&PZH, on), word(&PEN, on))
}

fn flash(ok: Option<&str>, error: Option<&str>, on: Option<&str>) -> Option<Flash> {
    let on = subject(on.unwrap_or(""));
    let done = |zh: String, en: String| Flash { ok: true, zh, en };
    if let Some(code) = ok {
        let f = match code {
            "rule_saved" => {
                let (zh, en) = kind_names(&on);
                done(
                    format!("已保存获得规则：{zh}。"),
                    format!("The earning rule for {en} is saved."),
                )
            }
            "item_saved" => done(
                format!("已保存兑换项目 {on}。"),
                format!("Catalogue item {on} is saved."),
            ),
            "item_withdrawn" => done(
                format!("已下架兑换项目 {on}，市民不能再兑换。"),
                format!("Catalogue item {on} is withdrawn; citizens can no longer redeem it."),
            ),
            "project_saved" => done(
                format!("已保存公益项目 {on}。"),
                format!("Charity project {on} is saved."),
            ),
            "dispute_upheld" => done(
                format!("异议 {on} 已处理：撤销该记录，信用分已重新计算。"),
                format!(
                    "Dispute {on} upheld: the record is struck out and the score computed again."
                ),
            ),
            "dispute_rejected" => done(
                format!("异议 {on} 已处理：维持该记录。"),
                format!("Dispute {on} rejected: the record is kept."),
            ),
            _ => return None,
        };
        return Some(f);
    }
    let (zh, en): (String, String) = match error? {
        "token" => token_refused(),
        "forbidden" => (
            "您的角色无权进行此项修改".into(),
            "your role may not make this change".into(),
        ),
        "points_per_unit" => (
            format!("每次积分须为 0 到 {} 的整数", points::POINTS_PER_UNIT_MAX),
            format!(
                "points per use must be a whole number from 0 to {}",
                points::POINTS_PER_UNIT_MAX
            ),
        ),
        "daily_cap" => (
            format!("每日上限须为 1 到 {} 的整数", points::DAILY_CAP_MAX),
            format!(
                "the daily cap must be a whole number from 1 to {}",
                points::DAILY_CAP_MAX
            ),
        ),
        "validity_days" => (
            format!("有效天数须为 1 到 {} 的整数", points::VALIDITY_DAYS_MAX),
            format!(
                "the validity must be a whole number of days from 1 to {}",
                points::VALIDITY_DAYS_MAX
            ),
        ),
        "cost_points" => (
            format!("所需积分须为 1 到 {} 的整数", points::COST_MAX),
            format!(
                "the cost must be a whole number of points from 1 to {}",
                points::COST_MAX
            ),
        ),
        "kind" => ("未知的类别".into(), "unknown kind".into()),
        "code" => (
            "代码须为 1 到 32 个小写字母、数字、“_”或“-”".into(),
            "a code is 1 to 32 characters of a-z, 0-9, '_' or '-'".into(),
        ),
        "code_taken" => (
            format!("代码 {on} 已存在，请在列表中点“修改”"),
            format!("code {on} exists already; use its Edit link"),
        ),
        "name" => (
            format!(
                "中文名称和英文名称各需 1 到 {} 个字符",
                points::NAME_CHARS_MAX
            ),
            format!(
                "the Chinese and the English name must each be 1 to {} characters",
                points::NAME_CHARS_MAX
            ),
        ),
        "not_found" => (format!("找不到 {on}"), format!("{on} was not found")),
        "decision" => (
            "请选择“撤销记录”或“维持记录”".into(),
            "choose uphold or reject".into(),
        ),
        "note" => (
            format!("处理说明须为 1 到 {} 个字符", credit::TEXT_CHARS_MAX),
            format!(
                "the note must be 1 to {} characters",
                credit::TEXT_CHARS_MAX
            ),
        ),
        "resolved" => (
            format!("异议 {on} 已经处理过"),
            format!("dispute {on} is already resolved"),
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
        PlatformError::NotFound(_) => "not_found",
        PlatformError::Conflict(_) => "resolved",
        PlatformError::Invalid { fields, .. } => match fields.first().map(|f| f.field.as_str()) {
            Some("code") => "code",
            Some("name") => "name",
            Some("cost_points") => "cost_points",
            Some("note") => "note",
            Some("rule") => {
                let m = fields.first().map_or("", |f| f.message.as_str());
                ["points_per_unit", "daily_cap", "validity_days"]
                    .into_iter()
                    .find(|f| m.starts_with(f))
                    .unwrap_or("failed")
            }
            _ => "failed",
        },
        e => {
            tracing::error!(error = %e, "console points form failed");
            "failed"
        }
    }
}

/// A whole number within `range`, as typed into a form.
fn number_in(s: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
    s.trim().parse::<i64>().ok().filter(|n| range.contains(n))
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

/// What the add-or-change form of the catalogue shows.
struct ItemDraft {
    editing: bool,
    code: String,
    name_zh: String,
    name_en: String,
    kind: String,
    cost_points: String,
    active: bool,
}

struct ProjectDraft {
    editing: bool,
    code: String,
    name_zh: String,
    name_en: String,
    active: bool,
}

#[derive(Template)]
#[template(path = "points.html")]
struct PointsPage {
    t: &'static Texts,
    s: &'static PTexts,
    user: Option<String>,
    flash: Option<Flash>,
    may_keep: bool,
    token: String,
    rules: Vec<RuleLine>,
    items: Vec<ItemLine>,
    projects: Vec<ProjectLine>,
    /// Each reward kind: code, text, selected in the form.
    reward_kinds: Vec<(&'static str, &'static str, bool)>,
    item: ItemDraft,
    project: ProjectDraft,
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
    flash: Option<Flash>,
    may_resolve: bool,
    token: String,
    open: Vec<DisputeLine>,
    resolved: Vec<DisputeLine>,
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
    ok: Option<String>,
    error: Option<String>,
    on: Option<String>,
    /// The catalogue item or project the form below the lists edits.
    edit_item: Option<String>,
    edit_project: Option<String>,
}

async fn points_page(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
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
    let items: Vec<ItemLine> = st
        .platform
        .points_items(&c)
        .await?
        .into_iter()
        .map(|item| ItemLine {
            kind_text: word(s, &item.kind),
            item,
        })
        .collect();
    let item = match items
        .iter()
        .find(|i| Some(&i.item.code) == q.edit_item.as_ref())
    {
        Some(i) => ItemDraft {
            editing: true,
            code: i.item.code.clone(),
            name_zh: i.item.name_zh.clone(),
            name_en: i.item.name_en.clone(),
            kind: i.item.kind.clone(),
            cost_points: i.item.cost_points.to_string(),
            active: i.item.active,
        },
        None => ItemDraft {
            editing: false,
            code: String::new(),
            name_zh: String::new(),
            name_en: String::new(),
            kind: RewardKind::RideVoucher.as_str().into(),
            cost_points: String::new(),
            active: true,
        },
    };
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
    let project = match projects
        .iter()
        .find(|p| Some(&p.project.code) == q.edit_project.as_ref())
    {
        Some(p) => ProjectDraft {
            editing: true,
            code: p.project.code.clone(),
            name_zh: p.project.name_zh.clone(),
            name_en: p.project.name_en.clone(),
            active: p.project.active,
        },
        None => ProjectDraft {
            editing: false,
            code: String::new(),
            name_zh: String::new(),
            name_en: String::new(),
            active: true,
        },
    };
    page(
        PointsPage {
            t,
            s,
            user: Some(c.username.clone()),
            flash: flash(q.ok.as_deref(), q.error.as_deref(), q.on.as_deref()),
            may_keep: may_keep(&c),
            token: form_token(&presented),
            rules,
            items,
            projects,
            reward_kinds: RewardKind::ALL
                .iter()
                .map(|k| (k.as_str(), word(s, k.as_str()), k.as_str() == item.kind))
                .collect(),
            item,
            project,
        },
        set,
    )
}

async fn credit_page(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
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
            flash: flash(q.ok.as_deref(), q.error.as_deref(), q.on.as_deref()),
            may_resolve: may_resolve(&c),
            token: form_token(&presented),
            open,
            resolved,
        },
        set,
    )
}

const POINTS_PAGE: &str = "/console/points";
const CREDIT_PAGE: &str = "/console/credit";

#[derive(serde::Deserialize)]
pub struct RuleForm {
    token: String,
    points_per_unit: String,
    daily_cap: String,
    validity_days: String,
    /// A checkbox: present when ticked.
    active: Option<String>,
}

async fn rule_save(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    Path(kind): Path<String>,
    Form(f): Form<RuleForm>,
) -> Response {
    let fail = |code: &str| back(POINTS_PAGE, "error", code, &kind);
    if !token_ok(&presented, &f.token) {
        return fail("token");
    }
    let Some(earn_kind) = EarnKind::parse(&kind) else {
        return fail("kind");
    };
    let Some(points_per_unit) = number_in(&f.points_per_unit, 0..=points::POINTS_PER_UNIT_MAX)
    else {
        return fail("points_per_unit");
    };
    let Some(daily_cap) = number_in(&f.daily_cap, 1..=points::DAILY_CAP_MAX) else {
        return fail("daily_cap");
    };
    let Some(validity_days) = number_in(&f.validity_days, 1..=points::VALIDITY_DAYS_MAX) else {
        return fail("validity_days");
    };
    let rule = EarnRule {
        kind: earn_kind,
        points_per_unit,
        daily_cap,
        validity_days,
        active: f.active.is_some(),
    };
    match st.platform.points_rule_set(&c, rule).await {
        Ok(_) => back(POINTS_PAGE, "ok", "rule_saved", &kind),
        Err(e) => fail(refusal_code(&e)),
    }
}

#[derive(serde::Deserialize)]
pub struct ItemForm {
    token: String,
    code: String,
    name_zh: String,
    name_en: String,
    kind: String,
    cost_points: String,
    active: Option<String>,
    /// Present on the add form: an existing code is refused rather than replaced.
    new: Option<String>,
}

async fn item_save(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    Form(f): Form<ItemForm>,
) -> Response {
    let code = f.code.trim().to_string();
    let fail = |what: &str| back(POINTS_PAGE, "error", what, &code);
    if !token_ok(&presented, &f.token) {
        return fail("token");
    }
    if points::check_code(&code).is_err() {
        return fail("code");
    }
    let Some(kind) = RewardKind::parse(&f.kind) else {
        return fail("kind");
    };
    let Some(cost_points) = number_in(&f.cost_points, 1..=points::COST_MAX) else {
        return fail("cost_points");
    };
    if f.new.is_some() {
        match st.platform.points_items(&c).await {
            Ok(items) if items.iter().any(|i| i.code == code) => return fail("code_taken"),
            Ok(_) => {}
            Err(e) => return fail(refusal_code(&e)),
        }
    }
    let item = CatalogueItem {
        code: code.clone(),
        name_zh: f.name_zh.trim().into(),
        name_en: f.name_en.trim().into(),
        kind,
        cost_points,
        active: f.active.is_some(),
    };
    match st.platform.points_item_set(&c, item).await {
        Ok(_) => back(POINTS_PAGE, "ok", "item_saved", &code),
        Err(e) => fail(refusal_code(&e)),
    }
}

#[derive(serde::Deserialize)]
pub struct TokenForm {
    token: String,
}

/// Withdraws a catalogue item: the same item, no longer offered (its history stays).
async fn item_withdraw(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    Path(code): Path<String>,
    Form(f): Form<TokenForm>,
) -> Response {
    let fail = |what: &str| back(POINTS_PAGE, "error", what, &code);
    if !token_ok(&presented, &f.token) {
        return fail("token");
    }
    let items = match st.platform.points_items(&c).await {
        Ok(items) => items,
        Err(e) => return fail(refusal_code(&e)),
    };
    let Some(row) = items.into_iter().find(|i| i.code == code) else {
        return fail("not_found");
    };
    let Some(kind) = RewardKind::parse(&row.kind) else {
        return fail("kind");
    };
    let item = CatalogueItem {
        code: row.code,
        name_zh: row.name_zh,
        name_en: row.name_en,
        kind,
        cost_points: row.cost_points,
        active: false,
    };
    match st.platform.points_item_set(&c, item).await {
        Ok(_) => back(POINTS_PAGE, "ok", "item_withdrawn", &code),
        Err(e) => fail(refusal_code(&e)),
    }
}

#[derive(serde::Deserialize)]
pub struct ProjectForm {
    token: String,
    code: String,
    name_zh: String,
    name_en: String,
    active: Option<String>,
    new: Option<String>,
}

async fn project_save(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    Form(f): Form<ProjectForm>,
) -> Response {
    let code = f.code.trim().to_string();
    let fail = |what: &str| back(POINTS_PAGE, "error", what, &code);
    if !token_ok(&presented, &f.token) {
        return fail("token");
    }
    if points::check_code(&code).is_err() {
        return fail("code");
    }
    if f.new.is_some() {
        match st.platform.points_projects(&c).await {
            Ok(ps) if ps.iter().any(|p| p.code == code) => return fail("code_taken"),
            Ok(_) => {}
            Err(e) => return fail(refusal_code(&e)),
        }
    }
    let project = CharityProject {
        code: code.clone(),
        name_zh: f.name_zh.trim().into(),
        name_en: f.name_en.trim().into(),
        active: f.active.is_some(),
    };
    match st.platform.points_project_set(&c, project).await {
        Ok(_) => back(POINTS_PAGE, "ok", "project_saved", &code),
        Err(e) => fail(refusal_code(&e)),
    }
}

#[derive(serde::Deserialize)]
pub struct ResolveForm {
    token: String,
    /// `uphold` or `reject` (the button pressed).
    decision: Option<String>,
    note: String,
}

async fn dispute_resolve(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    Path(id): Path<i64>,
    Form(f): Form<ResolveForm>,
) -> Response {
    let on = id.to_string();
    let fail = |what: &str| back(CREDIT_PAGE, "error", what, &on);
    if !token_ok(&presented, &f.token) {
        return fail("token");
    }
    let uphold = match f.decision.as_deref() {
        Some("uphold") => true,
        Some("reject") => false,
        _ => return fail("decision"),
    };
    let note = f.note.trim();
    if credit::check_text(note).is_err() {
        return fail("note");
    }
    match st
        .platform
        .credit_dispute_resolve(&c, id, uphold, note)
        .await
    {
        Ok(d) if d.status == "upheld" => back(CREDIT_PAGE, "ok", "dispute_upheld", &on),
        Ok(_) => back(CREDIT_PAGE, "ok", "dispute_rejected", &on),
        Err(e) => fail(refusal_code(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_code_has_both_languages_and_subjects_are_cleaned() {
        for code in [
            "rule_saved",
            "item_saved",
            "item_withdrawn",
            "project_saved",
            "dispute_upheld",
            "dispute_rejected",
        ] {
            let f = flash(Some(code), None, Some("ride")).unwrap();
            assert!(f.ok && !f.zh.is_empty() && !f.en.is_empty(), "{code}");
        }
        for code in [
            "token",
            "forbidden",
            "points_per_unit",
            "daily_cap",
            "validity_days",
            "cost_points",
            "kind",
            "code",
            "code_taken",
            "name",
            "not_found",
            "decision",
            "note",
            "resolved",
            "failed",
        ] {
            let f = flash(None, Some(code), Some("x")).unwrap();
            assert!(!f.ok && f.zh.starts_with("未保存") && f.en.starts_with("Nothing"));
        }
        assert!(flash(None, Some("<script>"), None).is_none());
        assert_eq!(subject("<b>bus-2</b>"), "bbus-2b");
    }
}
