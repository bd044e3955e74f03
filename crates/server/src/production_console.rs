//! Console pages for production and counter work under `/console/cards/…`: production batches,
//! and service outlets with their stock, waiting cards and counter journal. Chinese first, with
//! the English switch of the rest of the console; the wording lives in [`PTexts`].

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
use platform::clock::format_ms;
use platform::production::{BatchView, JournalView, OutletView, StockView};
use store::Role;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/cards/batches", get(batches))
        .route("/console/cards/outlets", get(outlets))
}

/// The production pages' wording, per language.
pub struct PTexts {
    pub batches: &'static str,
    pub outlets: &'static str,
    pub batch: &'static str,
    pub state: &'static str,
    pub profile: &'static str,
    pub cards: &'static str,
    pub produced: &'static str,
    pub failed: &'static str,
    pub distributed: &'static str,
    pub exports: &'static str,
    pub created: &'static str,
    pub validity: &'static str,
    pub code: &'static str,
    pub name: &'static str,
    pub address: &'static str,
    pub active: &'static str,
    pub clerks: &'static str,
    pub stock: &'static str,
    pub waiting: &'static str,
    pub journal: &'static str,
    pub date: &'static str,
    pub show: &'static str,
    pub act: &'static str,
    pub card: &'static str,
    pub clerk: &'static str,
    pub fee_yuan: &'static str,
    pub fees_total: &'static str,
    pub closing: &'static str,
    pub not_closed: &'static str,
    pub expected: &'static str,
    pub declared: &'static str,
    pub difference: &'static str,
    pub balanced: &'static str,
    pub unbalanced: &'static str,
    pub none: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
}

pub static PZH: PTexts = PTexts {
    batches: "制卡批次",
    outlets: "服务网点",
    batch: "批次",
    state: "状态",
    profile: "算法",
    cards: "卡数",
    produced: "制成",
    failed: "失败",
    distributed: "已配送",
    exports: "导出次数",
    created: "创建时间",
    validity: "有效期",
    code: "网点代码",
    name: "名称",
    address: "地址",
    active: "营业",
    clerks: "柜员",
    stock: "网点库存（按卡状态）",
    waiting: "待领卡",
    journal: "柜面日志",
    date: "营业日",
    show: "查看",
    act: "业务",
    card: "卡号",
    clerk: "柜员",
    fee_yuan: "收费（元）",
    fees_total: "收费合计（元）",
    closing: "日终对账",
    not_closed: "尚未日结",
    expected: "应收（元）",
    declared: "实收（元）",
    difference: "差额（元）",
    balanced: "平账",
    unbalanced: "有差额",
    none: "无",
    yes: "是",
    no: "否",
};

pub static PEN: PTexts = PTexts {
    batches: "Production batches",
    outlets: "Service outlets",
    batch: "Batch",
    state: "State",
    profile: "Profile",
    cards: "Cards",
    produced: "Produced",
    failed: "Failed",
    distributed: "Distributed",
    exports: "Exports",
    created: "Created",
    validity: "Validity",
    code: "Code",
    name: "Name",
    address: "Address",
    active: "Open",
    clerks: "Clerks",
    stock: "Stock (cards by state)",
    waiting: "Waiting for collection",
    journal: "Counter journal",
    date: "Business day",
    show: "Show",
    act: "Act",
    card: "Card",
    clerk: "Clerk",
    fee_yuan: "Fee (yuan)",
    fees_total: "Fees taken (yuan)",
    closing: "Day closing",
    not_closed: "not closed yet",
    expected: "Expected (yuan)",
    declared: "Declared (yuan)",
    difference: "Difference (yuan)",
    balanced: "balanced",
    unbalanced: "difference",
    none: "none",
    yes: "yes",
    no: "no",
};

fn ptexts(t: &Texts) -> &'static PTexts {
    if t.lang == "en" { &PEN } else { &PZH }
}

/// Fen as yuan with two decimals (integer arithmetic; a minus sign for shortfalls).
pub fn yuan(fen: impl std::borrow::Borrow<i64>) -> String {
    let fen = *fen.borrow();
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

#[derive(Template)]
#[template(path = "production_batches.html")]
struct BatchesPage {
    t: &'static Texts,
    p: &'static PTexts,
    user: Option<String>,
    rows: Vec<BatchView>,
}

#[derive(serde::Deserialize)]
pub struct LangOnly {
    lang: Option<String>,
}

async fn batches(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<LangOnly>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let rows = s.platform.batches(&c, 100).await?;
    page(
        BatchesPage {
            t,
            p: ptexts(t),
            user: Some(c.username.clone()),
            rows,
        },
        set,
    )
}

#[derive(Template)]
#[template(path = "production_outlets.html")]
struct OutletsPage {
    t: &'static Texts,
    p: &'static PTexts,
    user: Option<String>,
    outlets: Vec<OutletView>,
    selected: String,
    date: String,
    stock: Option<StockView>,
    journal: Option<JournalView>,
}

#[derive(serde::Deserialize)]
pub struct OutletsQuery {
    #[serde(default)]
    outlet: String,
    #[serde(default)]
    date: String,
    lang: Option<String>,
}

async fn outlets(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<OutletsQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let p = &s.platform;
    let outlets = p.outlets(&c).await?;
    // A clerk's page opens on its own outlet.
    let mut selected = q.outlet.trim().to_string();
    if selected.is_empty()
        && c.role == Role::CounterClerk
        && let Some(own) = outlets.iter().find(|o| o.clerks.contains(&c.username))
    {
        selected = own.code.clone();
    }
    let date = if q.date.trim().is_empty() {
        p.clock.today().to_string()
    } else {
        q.date.trim().to_string()
    };
    let (stock, journal) = if selected.is_empty() {
        (None, None)
    } else {
        (
            Some(p.outlet_stock(&c, &selected).await?),
            Some(p.counter_journal(&c, &selected, &date).await?),
        )
    };
    page(
        OutletsPage {
            t,
            p: ptexts(t),
            user: Some(c.username.clone()),
            outlets,
            selected,
            date,
            stock,
            journal,
        },
        set,
    )
}

/// Formats a time for the templates.
pub fn when(ms: impl std::borrow::Borrow<i64>) -> String {
    format_ms(*ms.borrow())
}
