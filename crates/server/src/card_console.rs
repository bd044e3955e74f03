//! The card's own console page, `/console/cards/{number}`: the card (holder masked), its
//! application, its life-cycle timeline, balances, enrolled phones, functions and whether it
//! is on the deny-list. Every part is read through the platform methods the API uses, so the
//! reads are audited the same way (`card.read`, `ledger.balances.read`). Chinese first, with
//! the console's English switch; the wording lives in [`CTexts`].

use crate::AppState;
use crate::console::{language, page};
use crate::error::ApiResult;
use crate::i18n::Texts;
use crate::production_console::yuan;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use platform::clock::format_ms;
use platform::{Caller, PlatformError};

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/cards/{number}", get(card_page))
}

/// The card page's wording, per language.
pub struct CTexts {
    pub card: &'static str,
    pub back: &'static str,
    pub number: &'static str,
    pub state: &'static str,
    pub card_type: &'static str,
    pub valid_until: &'static str,
    pub not_set: &'static str,
    pub holder: &'static str,
    pub holder_name: &'static str,
    pub holder_id: &'static str,
    pub denylisted: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub application: &'static str,
    pub no_application: &'static str,
    pub channel: &'static str,
    pub delivery: &'static str,
    pub outlet: &'static str,
    pub photo: &'static str,
    pub photo_present: &'static str,
    pub photo_absent: &'static str,
    pub guardian: &'static str,
    pub applied_at: &'static str,
    pub events: &'static str,
    pub when: &'static str,
    pub who: &'static str,
    pub what: &'static str,
    pub why: &'static str,
    pub from_to: &'static str,
    pub balances: &'static str,
    pub epurse: &'static str,
    pub pending_load: &'static str,
    pub reserved: &'static str,
    pub devices: &'static str,
    pub device: &'static str,
    pub bound: &'static str,
    pub revoked: &'static str,
    pub functions: &'static str,
    pub function: &'static str,
    pub app: &'static str,
    pub enabled: &'static str,
    pub pending: &'static str,
    pub none: &'static str,
    pub not_found: &'static str,
    pub bad_number: &'static str,
    pub city_time: &'static str,
}

pub static CZH: CTexts = CTexts {
    card: "卡片详情",
    back: "返回卡片列表",
    number: "卡号",
    state: "状态",
    card_type: "卡类型",
    valid_until: "有效期至",
    not_set: "未设定",
    holder: "持卡人（脱敏）",
    holder_name: "姓名",
    holder_id: "身份证号",
    denylisted: "在黑名单上",
    yes: "是",
    no: "否",
    application: "申请信息",
    no_application: "没有申请记录",
    channel: "申请渠道",
    delivery: "领卡方式",
    outlet: "网点",
    photo: "照片",
    photo_present: "已有照片引用（照片不在此显示）",
    photo_absent: "无照片",
    guardian: "监护人",
    applied_at: "申请时间",
    events: "生命周期",
    when: "时间",
    who: "操作人",
    what: "操作",
    why: "原因",
    from_to: "状态变化",
    balances: "余额（元）",
    epurse: "电子钱包",
    pending_load: "待圈存",
    reserved: "冻结中",
    devices: "绑定手机",
    device: "设备",
    bound: "绑定时间",
    revoked: "解绑时间",
    functions: "卡上功能",
    function: "功能",
    app: "应用",
    enabled: "已开通",
    pending: "待写卡",
    none: "无",
    not_found: "没有这张卡",
    bad_number: "卡号格式不正确",
    city_time: "时间均为本市时间（UTC+8）。",
};

pub static CEN: CTexts = CTexts {
    card: "Card",
    back: "Back to the cards",
    number: "Card number",
    state: "State",
    card_type: "Card type",
    valid_until: "Valid until",
    not_set: "not set",
    holder: "Holder (masked)",
    holder_name: "Name",
    holder_id: "ID number",
    denylisted: "On the deny-list",
    yes: "yes",
    no: "no",
    application: "Application",
    no_application: "No application on record",
    channel: "Channel",
    delivery: "Delivery",
    outlet: "Outlet",
    photo: "Photo",
    photo_present: "photo reference on file (the photo is not shown here)",
    photo_absent: "no photo",
    guardian: "Guardian",
    applied_at: "Applied",
    events: "Life cycle",
    when: "When",
    who: "Who",
    what: "What",
    why: "Why",
    from_to: "State change",
    balances: "Balances (yuan)",
    epurse: "E-purse",
    pending_load: "Pending load",
    reserved: "Reserved",
    devices: "Enrolled phones",
    device: "Device",
    bound: "Bound",
    revoked: "Revoked",
    functions: "Functions on the card",
    function: "Function",
    app: "Application",
    enabled: "Enabled",
    pending: "Pending write",
    none: "none",
    not_found: "No such card",
    bad_number: "Not a valid card number",
    city_time: "Times are in the city's time (UTC+8).",
};

fn ctexts(t: &Texts) -> &'static CTexts {
    if t.lang == "en" { &CEN } else { &CZH }
}

/// A life-cycle state's name in the page's language (the code for one not listed).
pub fn state_name(state: &str, en: bool) -> String {
    let (zh, e) = match state {
        "applied" => ("已申请", "applied"),
        "approved" => ("已审核", "approved"),
        "in_production" => ("制卡中", "in production"),
        "produced" => ("已制成", "produced"),
        "at_outlet" => ("已到网点", "at the outlet"),
        "issued" => ("已发放", "issued"),
        "active" => ("正常使用", "active"),
        "reported_lost" => ("挂失", "reported lost"),
        "frozen" => ("冻结", "frozen"),
        "replaced" => ("已补换", "replaced"),
        "cancelled" => ("已注销", "cancelled"),
        "expired" => ("已过期", "expired"),
        "withdrawn" => ("已撤回", "withdrawn"),
        "-" => ("—", "—"),
        other => return other.to_string(),
    };
    if en { e } else { zh }.to_string()
}

fn action_name(action: &str, en: bool) -> String {
    let (zh, e) = match action {
        "apply" => ("申请", "apply"),
        "approve" => ("审核通过", "approve"),
        "reject" => ("驳回", "reject"),
        "withdraw" => ("撤回", "withdraw"),
        "send_to_production" => ("送制", "send to production"),
        "production_done" => ("制卡完成", "production done"),
        "production_failed" => ("制卡失败", "production failed"),
        "deliver_to_outlet" => ("配送到网点", "deliver to outlet"),
        "post" => ("邮寄", "post"),
        "hand_over" => ("发放", "hand over"),
        "activate" => ("启用", "activate"),
        "report_lost" => ("挂失", "report lost"),
        "undo_lost" => ("解挂", "undo lost report"),
        "freeze" => ("冻结", "freeze"),
        "unfreeze" => ("解冻", "unfreeze"),
        "replace" => ("补卡", "replace"),
        "renew" => ("换卡", "renew"),
        "cancel" => ("注销", "cancel"),
        "expire" => ("过期", "expire"),
        "create_successor" => ("生成新卡", "successor created"),
        other => return other.replace('_', " "),
    };
    if en { e } else { zh }.to_string()
}

fn reason_name(reason: &str, en: bool) -> String {
    let (zh, e) = match reason {
        "holder_request" => ("持卡人申请", "holder's request"),
        "routine" => ("例行流程", "routine"),
        "lost" => ("遗失", "lost"),
        "damaged" => ("损坏", "damaged"),
        "fraud" => ("欺诈", "fraud"),
        "renewal" => ("到期换卡", "renewal"),
        "holder_gone" => ("持卡人死亡或迁出", "holder gone"),
        "ineligible" => ("不符合条件", "ineligible"),
        "production_failure" => ("制卡失败", "production failure"),
        "lost_period_over" => ("挂失期满", "lost-report period over"),
        "validity_over" => ("有效期满", "validity over"),
        "cleared" => ("已核查解除", "cleared"),
        other => return other.replace('_', " "),
    };
    if en { e } else { zh }.to_string()
}

fn channel_name(channel: &str, en: bool) -> String {
    match (channel, en) {
        ("counter", false) => "柜面".into(),
        ("online", false) => "网上".into(),
        (other, _) => other.to_string(),
    }
}

fn delivery_name(delivery: &str, en: bool) -> String {
    let (zh, e) = match delivery {
        "outlet_now" => ("网点即时制卡", "instant issuance at the outlet"),
        "outlet_later" => ("网点领取", "collect at an outlet"),
        "post" => ("邮寄", "by post"),
        other => return other.to_string(),
    };
    if en { e } else { zh }.to_string()
}

pub struct CardSummary {
    number: String,
    state_code: String,
    state: String,
    card_type: String,
    valid_until: String,
    holder_name: String,
    holder_id_number: String,
}

pub struct ApplicationSummary {
    channel: String,
    delivery: String,
    outlet: String,
    photo_present: bool,
    guardian: bool,
    created: String,
}

pub struct EventRow {
    when: String,
    who: String,
    what: String,
    why: String,
    from: String,
    to: String,
}

pub struct DeviceRow {
    device_id: String,
    state: String,
    bound: String,
    bound_by: String,
    revoked: String,
}

pub struct FunctionRow {
    function: String,
    app: String,
    enabled: bool,
    pending: String,
}

#[derive(Template)]
#[template(path = "card.html")]
struct CardPage {
    t: &'static Texts,
    c: &'static CTexts,
    user: Option<String>,
    card: CardSummary,
    denylisted: bool,
    application: Option<ApplicationSummary>,
    events: Vec<EventRow>,
    epurse: String,
    pending_load: String,
    reserved: String,
    devices: Vec<DeviceRow>,
    functions: Vec<FunctionRow>,
}

#[derive(Template)]
#[template(path = "card_missing.html")]
struct MissingPage {
    t: &'static Texts,
    c: &'static CTexts,
    user: Option<String>,
    title: &'static str,
    detail: String,
}

#[derive(serde::Deserialize)]
pub struct LangOnly {
    lang: Option<String>,
}

async fn card_page(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(number): Path<String>,
    Query(q): Query<LangOnly>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let c = ctexts(t);
    let en = t.lang == "en";
    let user = Some(caller.username.clone());
    let missing =
        |status: StatusCode, title: &'static str, detail: String| -> ApiResult<Response> {
            let mut r = page(
                MissingPage {
                    t,
                    c,
                    user: user.clone(),
                    title,
                    detail,
                },
                set.clone(),
            )?;
            *r.status_mut() = status;
            Ok(r)
        };
    let number = match chip::CardNumber::parse(number.trim()) {
        Ok(n) => n.to_string(),
        Err(e) => return missing(StatusCode::BAD_REQUEST, c.bad_number, e.to_string()),
    };
    let p = &s.platform;
    // Reading the card audits the read (holder masked) and says whether it exists.
    let view = match p.card(&caller, &number).await {
        Ok(v) => v,
        Err(PlatformError::NotFound(_)) => {
            return missing(StatusCode::NOT_FOUND, c.not_found, number);
        }
        Err(e) => return Err(e.into()),
    };
    let balances = p.card_balances(&caller, &number).await?;
    let devices = p.ecode_devices(&caller, &number).await?;
    let functions = p.card_functions(&caller, &number).await?;
    let denylisted = p.deny_listed(&number).await?;
    let application = p
        .store
        .card_application(&number)
        .await
        .map_err(PlatformError::from)?
        .map(|a| ApplicationSummary {
            channel: channel_name(&a.channel, en),
            delivery: delivery_name(&a.delivery, en),
            outlet: a.outlet_code.unwrap_or_default(),
            photo_present: a.photo_ref.is_some(),
            guardian: a.guardian_resident_id.is_some(),
            created: format_ms(a.created_ms),
        });
    let events = p
        .store
        .card_events(&number)
        .await
        .map_err(PlatformError::from)?
        .into_iter()
        .map(|e| EventRow {
            when: format_ms(e.at_ms),
            who: e.actor,
            what: action_name(&e.action, en),
            why: reason_name(&e.reason, en),
            from: state_name(&e.from_state, en),
            to: state_name(&e.to_state, en),
        })
        .collect();
    let card = CardSummary {
        state: state_name(&view.state, en),
        state_code: view.state,
        number: view.number,
        card_type: view.card_type,
        valid_until: view
            .valid_until_s
            .and_then(|s| s.checked_mul(1000))
            .map(|ms| format_ms(ms)[..10].to_string())
            .unwrap_or_else(|| c.not_set.to_string()),
        holder_name: view.holder_name,
        holder_id_number: view.holder_id_number,
    };
    let devices = devices
        .into_iter()
        .map(|d| DeviceRow {
            device_id: d.device_id,
            state: d.state,
            bound: format_ms(d.bound_ms),
            bound_by: d.bound_by,
            revoked: match (d.revoked_ms, d.revoked_reason) {
                (Some(ms), Some(r)) => format!("{} ({r})", format_ms(ms)),
                (Some(ms), None) => format_ms(ms),
                _ => String::new(),
            },
        })
        .collect();
    let functions = functions
        .into_iter()
        .map(|f| FunctionRow {
            function: f.function,
            app: f.app,
            enabled: f.enabled,
            // The state the card takes once the pending script is confirmed.
            pending: f
                .pending
                .map(|b| format!("→ {}", if b { c.yes } else { c.no }))
                .unwrap_or_default(),
        })
        .collect();
    page(
        CardPage {
            t,
            c,
            user,
            card,
            denylisted,
            application,
            events,
            epurse: yuan(balances.epurse_fen),
            pending_load: yuan(balances.pending_load_fen),
            reserved: yuan(balances.reserved_fen),
            devices,
            functions,
        },
        set,
    )
}
