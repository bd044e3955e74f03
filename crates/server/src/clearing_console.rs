//! The console pages of clearing (支付清算) under `/console/clearing`: the clearing status (the
//! open window and what has been posted into it so far, the recent windows closed or not, a
//! bar chart of gross per window drawn as inline SVG on the server), a window's report with
//! its settlement file and reconciliation, and the exceptions queue. Chinese first, with
//! English.
//!
//! A clearing officer (or the administrator) closes a past window, makes a window's
//! settlement file and resolves an exception through forms; each calls the platform function
//! the API calls, which checks the role again and writes the audit entry. Every form carries
//! the session's SM3-derived token (see `points_console`), and after a post the browser is
//! sent back with a message code, never free text from the address.

use crate::AppState;
use crate::auth::PresentedToken;
use crate::console::{Flash, back_to, form_token, token_ok, token_refused};
use crate::console::{language, page};
use crate::error::ApiResult;
use crate::i18n::Texts;
use crate::production_console::{when, yuan};
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use platform::clearing_status::WindowStatus;
use platform::{Caller, PlatformError};
use store::Role;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/clearing", get(status_page))
        .route("/console/clearing/windows/{window}", get(window_page))
        .route("/console/clearing/windows/{window}/close", post(close))
        .route(
            "/console/clearing/windows/{window}/settlement",
            post(settlement),
        )
        .route("/console/clearing/exceptions", get(exceptions_page))
        .route(
            "/console/clearing/exceptions/{id}/resolution",
            post(resolve),
        )
}

/// Windows before the open one on the status page; with the open one, the chart's 14 bars.
const RECENT_WINDOWS: usize = 13;
/// The chart's size in user units.
const CHART_BAR_W: i64 = 40;
const CHART_H: i64 = 120;

pub struct CTexts {
    title: &'static str,
    intro: &'static str,
    open_title: &'static str,
    window: &'static str,
    cut_off: &'static str,
    purchases: &'static str,
    payments: &'static str,
    count: &'static str,
    amount: &'static str,
    total: &'static str,
    chart_title: &'static str,
    chart_note: &'static str,
    recent: &'static str,
    state: &'static str,
    closed: &'static str,
    not_closed: &'static str,
    closed_at: &'static str,
    gross: &'static str,
    fee: &'static str,
    net: &'static str,
    digest: &'static str,
    actions: &'static str,
    close: &'static str,
    report: &'static str,
    so_far: &'static str,
    exceptions_link: &'static str,
    disbursements_link: &'static str,
    fees_link: &'static str,
    report_title: &'static str,
    report_intro: &'static str,
    closed_by: &'static str,
    merchant: &'static str,
    category: &'static str,
    lines_none: &'static str,
    not_closed_yet: &'static str,
    settlement: &'static str,
    settlement_intro: &'static str,
    execution_date: &'static str,
    download: &'static str,
    reconciliation: &'static str,
    no_file: &'static str,
    end_to_end: &'static str,
    instruction_state: &'static str,
    back: &'static str,
    exceptions_title: &'static str,
    exceptions_intro: &'static str,
    open_exceptions: &'static str,
    resolved_exceptions: &'static str,
    exception: &'static str,
    statement: &'static str,
    kind: &'static str,
    reference: &'static str,
    sent: &'static str,
    booked: &'static str,
    raised: &'static str,
    note: &'static str,
    resolve: &'static str,
    resolved_by: &'static str,
    resolved_at: &'static str,
    words: [(&'static str, &'static str); 8],
}

static CZH: CTexts = CTexts {
    title: "支付清算：清分状态",
    intro: "每日 23:00 切分清分窗口；窗口以其截止日期命名。已过截止时间的窗口由清算人员关闭，生成清分报表（按商户和类别的笔数、交易额、手续费、净额及 SM3 摘要），再生成结算文件（pain.001）发送银行，并用银行对账单（camt.053）对账。",
    open_title: "当前窗口",
    window: "窗口",
    cut_off: "截止时间",
    purchases: "脱机消费",
    payments: "线上支付（扣除退款、冲正）",
    count: "笔数",
    amount: "金额（元）",
    total: "合计",
    chart_title: "最近 14 个窗口的交易额（元）",
    chart_note: "深色为已关闭窗口（报表交易额），浅色为未关闭窗口（目前已入账的交易额），蓝色为当前窗口。",
    recent: "最近的窗口",
    state: "状态",
    closed: "已关闭",
    not_closed: "未关闭",
    closed_at: "关闭时间",
    gross: "交易额（元）",
    fee: "手续费（元）",
    net: "净额（元）",
    digest: "摘要",
    actions: "操作",
    close: "关闭窗口",
    report: "报表",
    so_far: "（目前）",
    exceptions_link: "对账差异队列",
    disbursements_link: "待遇发放审批",
    fees_link: "手续费率",
    report_title: "清分报表",
    report_intro: "窗口关闭时生成，之后不再改变；摘要为各行的 SM3 值。",
    closed_by: "关闭人",
    merchant: "商户",
    category: "类别",
    lines_none: "该窗口没有交易。",
    not_closed_yet: "该窗口尚未关闭，没有报表。",
    settlement: "结算文件",
    settlement_intro: "按商户净额向银行发出的贷记转账（ISO 20022 pain.001.001.09）；同一窗口多次生成内容相同。",
    execution_date: "银行执行日期",
    download: "下载结算文件",
    reconciliation: "对账",
    no_file: "尚未生成结算文件。",
    end_to_end: "端到端编号",
    instruction_state: "对账状态",
    back: "返回清分状态",
    exceptions_title: "对账差异队列",
    exceptions_intro: "银行对账单与结算指令不一致之处：金额不符、银行未入账、无对应指令的扣款。经办人员查明后填写处理说明，处理记入审计日志。",
    open_exceptions: "待处理",
    resolved_exceptions: "已处理",
    exception: "编号",
    statement: "对账单",
    kind: "类型",
    reference: "银行流水号",
    sent: "发出（元）",
    booked: "入账（元）",
    raised: "发现时间",
    note: "处理说明",
    resolve: "标记为已处理",
    resolved_by: "处理人",
    resolved_at: "处理时间",
    words: [
        ("amount_mismatch", "金额不符"),
        ("missing", "银行未入账"),
        ("unexpected", "无对应指令的扣款"),
        ("sent", "已发送，待对账"),
        ("matched", "已对上"),
        ("exception", "有差异"),
        ("open", "待处理"),
        ("resolved", "已处理"),
    ],
};

static CEN: CTexts = CTexts {
    title: "Payment clearing: status",
    intro: "Clearing windows are cut daily at 23:00 and named by the date they close on. A clearing officer closes a window once its cut-off has passed, which makes its report (count, gross, fee and net per merchant and category, with an SM3 digest); the settlement file (pain.001) then goes to the bank, and the bank's statement (camt.053) reconciles it.",
    open_title: "Open window",
    window: "Window",
    cut_off: "Cut-off",
    purchases: "Offline purchases",
    payments: "Online payments (less refunds and reversals)",
    count: "Count",
    amount: "Amount (yuan)",
    total: "Total",
    chart_title: "Gross of the last 14 windows (yuan)",
    chart_note: "Dark: closed windows (the report's gross); light: windows not closed (posted so far); blue: the open window.",
    recent: "Recent windows",
    state: "State",
    closed: "closed",
    not_closed: "not closed",
    closed_at: "Closed",
    gross: "Gross (yuan)",
    fee: "Fees (yuan)",
    net: "Net (yuan)",
    digest: "Digest",
    actions: "Actions",
    close: "Close window",
    report: "Report",
    so_far: " (so far)",
    exceptions_link: "Reconciliation exceptions",
    disbursements_link: "Disbursement approvals",
    fees_link: "Fee schedule",
    report_title: "Clearing report",
    report_intro: "Made when the window closed and never changed since; the digest is SM3 over its lines.",
    closed_by: "Closed by",
    merchant: "Merchant",
    category: "Category",
    lines_none: "Nothing was posted in this window.",
    not_closed_yet: "This window is not closed: it has no report.",
    settlement: "Settlement file",
    settlement_intro: "Credit transfers of each merchant's net to the bank (ISO 20022 pain.001.001.09); made again for the same window, it is the same.",
    execution_date: "Execution date at the bank",
    download: "Download the settlement file",
    reconciliation: "Reconciliation",
    no_file: "No settlement file has been made.",
    end_to_end: "End-to-end id",
    instruction_state: "Reconciliation",
    back: "Back to the clearing status",
    exceptions_title: "Reconciliation exceptions",
    exceptions_intro: "Where the bank's statement and the settlement instructions differ: another amount booked, an instruction not booked, a debit that answers no instruction. An officer finds out what happened and resolves it with a note, on the audit log.",
    open_exceptions: "Open",
    resolved_exceptions: "Resolved",
    exception: "Id",
    statement: "Statement",
    kind: "Kind",
    reference: "Bank reference",
    sent: "Sent (yuan)",
    booked: "Booked (yuan)",
    raised: "Raised",
    note: "Resolution note",
    resolve: "Mark resolved",
    resolved_by: "Resolved by",
    resolved_at: "Resolved",
    words: [
        ("amount_mismatch", "amount differs"),
        ("missing", "not booked by the bank"),
        ("unexpected", "debit without an instruction"),
        ("sent", "sent, awaiting the statement"),
        ("matched", "matched"),
        ("exception", "difference"),
        ("open", "open"),
        ("resolved", "resolved"),
    ],
};

fn ctexts(t: &Texts) -> &'static CTexts {
    if t.lang == "en" { &CEN } else { &CZH }
}

fn word(s: &CTexts, w: &str) -> &'static str {
    s.words
        .iter()
        .find(|(k, _)| *k == w)
        .map_or("", |(_, v)| *v)
}

/// Who may use the forms (the permission table and the platform say the same).
fn may_clear(c: &Caller) -> bool {
    matches!(c.role, Role::Administrator | Role::ClearingOfficer)
}

/// A window id from the address: `YYYY-MM-DD` or nothing.
fn window_id(s: &str) -> Option<String> {
    ledger::WindowId::parse(s).ok().map(|w| w.to_string())
}

/// The subject a message names (a window or an exception id): only date and digit
/// characters, bounded.
fn subject(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_digit() || *c == '-')
        .take(10)
        .collect()
}

fn flash(ok: Option<&str>, error: Option<&str>, on: Option<&str>) -> Option<Flash> {
    let on = subject(on.unwrap_or(""));
    if let Some(code) = ok {
        let (zh, en) = match code {
            "closed" => (
                format!("窗口 {on} 已关闭，报表已生成。"),
                format!("Window {on} is closed and its report made."),
            ),
            "resolved" => (
                format!("差异 {on} 已标记为已处理。"),
                format!("Exception {on} is resolved."),
            ),
            _ => return None,
        };
        return Some(Flash { ok: true, zh, en });
    }
    let (zh, en): (String, String) = match error? {
        "token" => token_refused(),
        "forbidden" => (
            "您的角色无权进行此项操作".into(),
            "your role may not do this".into(),
        ),
        "window" => (
            "窗口须为日期 YYYY-MM-DD".into(),
            "a window is a date, YYYY-MM-DD".into(),
        ),
        "not_ended" => (
            format!("窗口 {on} 尚未到截止时间，不能关闭"),
            format!("window {on} has not reached its cut-off and cannot be closed"),
        ),
        "not_closed" => (
            format!("窗口 {on} 尚未关闭"),
            format!("window {on} is not closed"),
        ),
        "nothing_owed" => (
            format!("窗口 {on} 没有应付给已登记商户的款项，无需结算文件"),
            format!("window {on} owes no registered merchant anything: no settlement file"),
        ),
        "date" => (
            "执行日期须为 YYYY-MM-DD".into(),
            "the execution date is YYYY-MM-DD".into(),
        ),
        "note" => (
            format!(
                "处理说明须为 1 到 {} 个字符",
                platform::clearing::RESOLUTION_CHARS_MAX
            ),
            format!(
                "the note must be 1 to {} characters",
                platform::clearing::RESOLUTION_CHARS_MAX
            ),
        ),
        "not_found" => (
            format!("找不到差异 {on}"),
            format!("exception {on} was not found"),
        ),
        "already_resolved" => (
            format!("差异 {on} 已经处理过"),
            format!("exception {on} is already resolved"),
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

fn back(to: &str, key: &str, code: &str, on: &str) -> Response {
    back_to(to, key, code, &subject(on))
}

/// The message code of a platform refusal; unexpected failures are logged here.
fn refusal_code(e: &PlatformError, conflict: &'static str) -> &'static str {
    match e {
        PlatformError::Forbidden(_) => "forbidden",
        PlatformError::NotFound(_) => "not_found",
        PlatformError::Conflict(_) => conflict,
        PlatformError::Invalid { fields, .. } => match fields.first().map(|f| f.field.as_str()) {
            Some("window") => "window",
            Some("resolution") => "note",
            _ => "failed",
        },
        e => {
            tracing::error!(error = %e, "console clearing form failed");
            "failed"
        }
    }
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
    ok: Option<String>,
    error: Option<String>,
    on: Option<String>,
}

/// One bar of the chart.
struct Bar {
    x: i64,
    y: i64,
    height: i64,
    fill: &'static str,
    label: String,
    gross: String,
}

/// A recent window's row.
struct WindowLine {
    window: String,
    state: &'static str,
    closed: bool,
    closed_at: String,
    count: i64,
    gross: String,
    fee: String,
    net: String,
    digest: String,
    may_close: bool,
}

#[derive(Template)]
#[template(path = "clearing.html")]
struct StatusPage {
    t: &'static Texts,
    s: &'static CTexts,
    user: Option<String>,
    flash: Option<Flash>,
    may_clear: bool,
    token: String,
    open: String,
    cut_off: String,
    purchases: i64,
    purchases_yuan: String,
    payments: i64,
    payments_yuan: String,
    total: i64,
    total_yuan: String,
    bars: Vec<Bar>,
    chart_w: i64,
    chart_h: i64,
    rows: Vec<WindowLine>,
}

/// Bars for windows oldest first: height in proportion to the largest gross (a negative gross
/// draws no bar; its figure is in the label).
fn bars(windows: &[&WindowStatus], open: &str) -> Vec<Bar> {
    let max = windows
        .iter()
        .map(|w| w.gross_fen())
        .max()
        .unwrap_or(0)
        .max(1);
    windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let g = w.gross_fen().max(0);
            let height = i64::try_from(i128::from(g) * i128::from(CHART_H) / i128::from(max))
                .unwrap_or(CHART_H);
            Bar {
                x: i as i64 * CHART_BAR_W + 4,
                y: CHART_H - height,
                height,
                fill: if w.window == open {
                    "#0b5394"
                } else if w.closed.is_some() {
                    "#2e7d32"
                } else {
                    "#a5d6a7"
                },
                label: w.window.get(5..).unwrap_or(&w.window).to_string(),
                gross: yuan(w.gross_fen()),
            }
        })
        .collect()
}

async fn status_page(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    if c.role == Role::DepartmentOfficer {
        // The clearing section of a department officer is its disbursement approvals.
        let to = match q.lang.as_deref() {
            Some(l @ ("zh" | "en")) => format!("/console/clearing/disbursements?lang={l}"),
            _ => "/console/clearing/disbursements".into(),
        };
        return Ok(Redirect::to(&to).into_response());
    }
    let (t, set) = language(&headers, &q.lang);
    let s = ctexts(t);
    let status = st.platform.clearing_status(&c, RECENT_WINDOWS).await?;
    let running = status.open.running.unwrap_or_default();
    let mut chart: Vec<&WindowStatus> = status.recent.iter().rev().collect();
    chart.push(&status.open);
    let may = may_clear(&c);
    let rows = status
        .recent
        .iter()
        .map(|w| match &w.closed {
            Some(cl) => WindowLine {
                window: w.window.clone(),
                state: s.closed,
                closed: true,
                closed_at: when(cl.window.closed_ms),
                count: cl.count,
                gross: yuan(cl.gross_fen),
                fee: yuan(cl.fee_fen),
                net: yuan(cl.net_fen),
                digest: cl.window.digest.chars().take(12).collect(),
                may_close: false,
            },
            None => WindowLine {
                window: w.window.clone(),
                state: s.not_closed,
                closed: false,
                closed_at: String::new(),
                count: w.count(),
                gross: format!("{}{}", yuan(w.gross_fen()), s.so_far),
                fee: String::new(),
                net: String::new(),
                digest: String::new(),
                may_close: may,
            },
        })
        .collect();
    page(
        StatusPage {
            t,
            s,
            user: Some(c.username.clone()),
            flash: flash(q.ok.as_deref(), q.error.as_deref(), q.on.as_deref()),
            may_clear: may,
            token: form_token(&presented),
            cut_off: when(status.open.cut_off_ms),
            purchases: running.purchases,
            purchases_yuan: yuan(running.purchases_fen),
            payments: running.movements,
            payments_yuan: yuan(running.movements_fen),
            total: status.open.count(),
            total_yuan: yuan(status.open.gross_fen()),
            bars: bars(&chart, &status.open.window),
            chart_w: chart.len() as i64 * CHART_BAR_W,
            chart_h: CHART_H,
            open: status.open.window.clone(),
            rows,
        },
        set,
    )
}

/// Form fields default to empty: a post without the token is refused like one with a wrong
/// token, with the same message.
#[derive(serde::Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    token: String,
}

const STATUS_PAGE: &str = "/console/clearing";
const EXCEPTIONS_PAGE: &str = "/console/clearing/exceptions";

async fn close(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    Path(window): Path<String>,
    Form(f): Form<TokenForm>,
) -> Response {
    let fail = |code: &str| back(STATUS_PAGE, "error", code, &window);
    if !token_ok(&presented, &f.token) {
        return fail("token");
    }
    let Some(id) = window_id(&window) else {
        return fail("window");
    };
    match st.platform.close_window(&c, &id).await {
        Ok(_) => back(STATUS_PAGE, "ok", "closed", &id),
        Err(e) => fail(refusal_code(&e, "not_ended")),
    }
}

struct LineView {
    merchant: String,
    category: String,
    count: i64,
    gross: String,
    fee: String,
    net: String,
}

struct InstructionView {
    end_to_end_id: String,
    merchant: String,
    amount: String,
    execution_date: String,
    state: String,
    state_text: &'static str,
}

struct ExceptionView {
    e: store::ReconciliationExceptionRow,
    kind_text: &'static str,
    state_text: &'static str,
    sent: String,
    booked: String,
    raised: String,
    resolved_at: String,
}

fn exception_view(s: &CTexts, e: store::ReconciliationExceptionRow) -> ExceptionView {
    ExceptionView {
        kind_text: word(s, &e.kind),
        state_text: word(s, &e.state),
        sent: e.sent_fen.map(yuan).unwrap_or_default(),
        booked: e.booked_fen.map(yuan).unwrap_or_default(),
        raised: when(e.created_ms),
        resolved_at: e.resolved_ms.map(when).unwrap_or_default(),
        e,
    }
}

/// A closed window's report as the page shows it.
struct ReportView {
    closed_at: String,
    closed_by: String,
    digest: String,
    lines: Vec<LineView>,
    count: i64,
    gross: String,
    fee: String,
    net: String,
}

#[derive(Template)]
#[template(path = "clearing_window.html")]
struct WindowPage {
    t: &'static Texts,
    s: &'static CTexts,
    user: Option<String>,
    flash: Option<Flash>,
    may_clear: bool,
    token: String,
    window: String,
    report: Option<ReportView>,
    /// The execution date the settlement form suggests: the day after the window.
    execution_date: String,
    instructions: Vec<InstructionView>,
    exceptions: Vec<ExceptionView>,
}

async fn window_page(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    headers: HeaderMap,
    Path(window): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let s = ctexts(t);
    let id = window_id(&window);
    let report = match &id {
        None => None,
        Some(id) => match st.platform.window_report(&c, id).await {
            Ok(r) => Some(r),
            Err(PlatformError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let (instructions, exceptions) = match (&id, &report) {
        (Some(id), Some(_)) => {
            let r = st.platform.window_reconciliation(&c, id).await?;
            (
                r.instructions
                    .into_iter()
                    .map(|i| InstructionView {
                        state_text: word(s, &i.state),
                        end_to_end_id: i.end_to_end_id,
                        merchant: i.merchant,
                        amount: yuan(i.amount_fen),
                        execution_date: i.execution_date,
                        state: i.state,
                    })
                    .collect(),
                r.exceptions
                    .into_iter()
                    .map(|e| exception_view(s, e))
                    .collect(),
            )
        }
        _ => (Vec::new(), Vec::new()),
    };
    let execution_date = id
        .as_deref()
        .and_then(|w| ledger::WindowId::parse(w).ok())
        .map(|w| w.next().to_string())
        .unwrap_or_default();
    let found = report.is_some();
    let report = report.map(|r| ReportView {
        closed_at: when(r.closed_ms),
        closed_by: r.closed_by,
        digest: r.digest,
        count: r.lines.iter().map(|l| l.count).sum(),
        gross: yuan(r.gross_fen),
        fee: yuan(r.fee_fen),
        net: yuan(r.net_fen),
        lines: r
            .lines
            .into_iter()
            .map(|l| LineView {
                merchant: l.merchant,
                category: l.category,
                count: l.count,
                gross: yuan(l.gross_fen),
                fee: yuan(l.fee_fen),
                net: yuan(l.net_fen),
            })
            .collect(),
    });
    let mut r = page(
        WindowPage {
            t,
            s,
            user: Some(c.username.clone()),
            flash: flash(q.ok.as_deref(), q.error.as_deref(), q.on.as_deref()),
            may_clear: may_clear(&c),
            token: form_token(&presented),
            window: id.unwrap_or_else(|| subject(&window)),
            report,
            execution_date,
            instructions,
            exceptions,
        },
        set,
    )?;
    if !found {
        *r.status_mut() = StatusCode::NOT_FOUND;
    }
    Ok(r)
}

#[derive(serde::Deserialize)]
pub struct SettlementForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    execution_date: String,
}

/// The settlement file as a download. A post, not a link: making it keeps the instructions
/// for reconciliation and is audited.
async fn settlement(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    Path(window): Path<String>,
    Form(f): Form<SettlementForm>,
) -> Response {
    let Some(id) = window_id(&window) else {
        return back(STATUS_PAGE, "error", "window", &window);
    };
    let page_of = format!("/console/clearing/windows/{id}");
    let fail = |code: &str| back(&page_of, "error", code, &id);
    if !token_ok(&presented, &f.token) {
        return fail("token");
    }
    let Ok(day) = platform::production::parse_day(f.execution_date.trim()) else {
        return fail("date");
    };
    match st.platform.settlement_file(&c, &id, day).await {
        Ok((xml, _left_out)) => (
            [
                (
                    header::CONTENT_TYPE,
                    "application/xml; charset=utf-8".to_string(),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"settlement-{id}.xml\""),
                ),
            ],
            xml,
        )
            .into_response(),
        Err(PlatformError::NotFound(_)) => fail("not_closed"),
        Err(e) => fail(refusal_code(&e, "nothing_owed")),
    }
}

#[derive(Template)]
#[template(path = "clearing_exceptions.html")]
struct ExceptionsPage {
    t: &'static Texts,
    s: &'static CTexts,
    user: Option<String>,
    flash: Option<Flash>,
    token: String,
    open: Vec<ExceptionView>,
    resolved: Vec<ExceptionView>,
}

async fn exceptions_page(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let s = ctexts(t);
    let open = st
        .platform
        .reconciliation_exceptions(&c, Some("open"))
        .await?
        .into_iter()
        .map(|e| exception_view(s, e))
        .collect();
    // The latest resolutions first.
    let mut resolved: Vec<ExceptionView> = st
        .platform
        .reconciliation_exceptions(&c, Some("resolved"))
        .await?
        .into_iter()
        .map(|e| exception_view(s, e))
        .collect();
    resolved.reverse();
    page(
        ExceptionsPage {
            t,
            s,
            user: Some(c.username.clone()),
            flash: flash(q.ok.as_deref(), q.error.as_deref(), q.on.as_deref()),
            token: form_token(&presented),
            open,
            resolved,
        },
        set,
    )
}

#[derive(serde::Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    note: String,
}

async fn resolve(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    presented: Option<Extension<PresentedToken>>,
    Path(id): Path<i64>,
    Form(f): Form<ResolveForm>,
) -> Response {
    let on = id.to_string();
    let fail = |code: &str| back(EXCEPTIONS_PAGE, "error", code, &on);
    if !token_ok(&presented, &f.token) {
        return fail("token");
    }
    let note = f.note.trim();
    if note.is_empty() || note.chars().count() > platform::clearing::RESOLUTION_CHARS_MAX {
        return fail("note");
    }
    match st.platform.resolve_exception(&c, id, note).await {
        Ok(_) => back(EXCEPTIONS_PAGE, "ok", "resolved", &on),
        Err(e) => fail(refusal_code(&e, "already_resolved")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_code_has_both_languages_and_subjects_are_cleaned() {
        for code in ["closed", "resolved"] {
            let f = flash(Some(code), None, Some("2026-11-26")).unwrap();
            assert!(f.ok && f.zh.contains("2026-11-26") && f.en.contains("2026-11-26"));
        }
        for code in [
            "token",
            "forbidden",
            "window",
            "not_ended",
            "not_closed",
            "nothing_owed",
            "date",
            "note",
            "not_found",
            "already_resolved",
            "failed",
        ] {
            let f = flash(None, Some(code), Some("7")).unwrap();
            assert!(!f.ok && f.zh.starts_with("未完成") && f.en.starts_with("Nothing"));
        }
        assert!(flash(None, Some("<script>"), None).is_none());
        assert_eq!(subject("<b>2026-11-26</b>"), "2026-11-26");
        assert_eq!(window_id("2026-11-26").as_deref(), Some("2026-11-26"));
        assert_eq!(window_id("2026-13-01"), None);
    }
}
