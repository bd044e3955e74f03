//! The portal's points and credit pages (issue 9, items 6 and 7): `/portal/points` (balance,
//! recent entries, the catalogue with a redeem form, charity projects with a donate form) and
//! `/portal/credit` (opt-in and opt-out, the score with every factor in plain words, the
//! history as an inline SVG line chart, disputes). Server-rendered like the rest of the portal;
//! every call goes through the platform's `citizen_*` functions, which fix the records to the
//! signed-in citizen, so no form here carries an ID number.

use crate::AppState;
use crate::error::ApiResult;
use crate::portal::{LangParam, Who, esc, language, message, new_key, page, who};
use crate::portal_i18n::PortalTexts;
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use platform::PlatformError;
use platform::citizens::Citizen;
use platform::clock::format_ms;
use platform::credit::ScoreHistoryView;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/portal/points", get(points))
        .route("/portal/points/redeem", post(redeem))
        .route("/portal/points/donate", post(donate))
        .route("/portal/credit", get(credit))
        .route("/portal/credit/opt-in", post(opt_in))
        .route("/portal/credit/opt-out", post(opt_out))
        .route("/portal/credit/disputes", post(dispute_open))
}

/// The texts of these two pages, Chinese and English (kept apart from `PortalTexts`, which
/// holds the texts every page shares).
pub struct PointsTexts {
    pub balance: &'static str,
    pub earned: &'static str,
    pub redeemed: &'static str,
    pub donated: &'static str,
    pub expired: &'static str,
    pub expiring: &'static str,
    pub entries: &'static str,
    pub date: &'static str,
    pub what: &'static str,
    pub points: &'static str,
    pub expires_on: &'static str,
    pub catalogue: &'static str,
    pub item: &'static str,
    pub cost: &'static str,
    pub redeem: &'static str,
    pub projects: &'static str,
    pub donate: &'static str,
    pub donate_points: &'static str,
    pub redeemed_ok: &'static str,
    pub donated_ok: &'static str,
    pub short: &'static str,
    pub available: &'static str,
    pub expired_some: &'static str,
    pub withdrawn: &'static str,
    pub closed: &'static str,
    pub unknown: &'static str,
    pub bad_points: &'static str,
    pub op_earn: &'static str,
    pub op_redeem: &'static str,
    pub op_donate: &'static str,
    pub op_expire: &'static str,
    pub credit_intro: &'static str,
    pub credit_off: &'static str,
    pub credit_uses: &'static str,
    pub opt_in: &'static str,
    pub opt_out: &'static str,
    pub opt_out_warning: &'static str,
    pub opted_in: &'static str,
    pub opted_out: &'static str,
    pub score_today: &'static str,
    pub base: &'static str,
    pub factor: &'static str,
    pub contribution: &'static str,
    pub incentives: &'static str,
    pub eligible: &'static str,
    pub not_yet: &'static str,
    pub history: &'static str,
    pub history_none: &'static str,
    pub signals: &'static str,
    pub kind: &'static str,
    pub source: &'static str,
    pub struck: &'static str,
    pub counted: &'static str,
    pub dispute: &'static str,
    pub dispute_hint: &'static str,
    pub signal: &'static str,
    pub reason: &'static str,
    pub dispute_opened: &'static str,
    pub disputes: &'static str,
    pub status: &'static str,
    pub resolution: &'static str,
    pub dispute_open: &'static str,
    pub dispute_upheld: &'static str,
    pub dispute_rejected: &'static str,
    pub dispute_exists: &'static str,
    pub signal_unknown: &'static str,
    pub bad_reason: &'static str,
}

static ZH: PointsTexts = PointsTexts {
    balance: "积分余额",
    earned: "累计获得",
    redeemed: "已兑换",
    donated: "已捐赠",
    expired: "已过期",
    expiring: "30 天内到期",
    entries: "最近积分记录",
    date: "日期",
    what: "事项",
    points: "积分",
    expires_on: "到期日",
    catalogue: "积分兑换",
    item: "商品",
    cost: "所需积分",
    redeem: "兑换",
    projects: "公益捐赠",
    donate: "捐赠",
    donate_points: "捐赠积分数",
    redeemed_ok: "兑换成功",
    donated_ok: "捐赠成功，感谢您的爱心",
    short: "积分不足",
    available: "当前可用",
    expired_some: "另有积分已过期",
    withdrawn: "该商品已下架或已兑完",
    closed: "该公益项目已结束",
    unknown: "没有找到该商品或项目",
    bad_points: "捐赠积分须为 1 至 1000000 之间的整数",
    op_earn: "获得",
    op_redeem: "兑换",
    op_donate: "捐赠",
    op_expire: "过期",
    credit_intro: "信用服务自愿开通。开通后，平台仅根据您的缴费是否按时、乘车逃票记录、图书借还和志愿服务计算信用分，每一项如何加减分都会向您说明；对任何一条记录有异议都可以申诉。",
    credit_off: "您尚未开通信用服务：平台不记录、也不计算您的信用分。",
    credit_uses: "信用分可用于：",
    opt_in: "开通信用服务",
    opt_out: "关闭信用服务",
    opt_out_warning: "关闭后，您的信用记录、历史分数和申诉将全部删除。",
    opted_in: "已开通信用服务",
    opted_out: "已关闭信用服务，相关记录已删除",
    score_today: "今日信用分",
    base: "基础分",
    factor: "因素",
    contribution: "加减分",
    incentives: "可享受的激励",
    eligible: "已达到",
    not_yet: "未达到",
    history: "信用分变化",
    history_none: "暂无历史分数",
    signals: "计分记录",
    kind: "类型",
    source: "来源",
    struck: "已撤销（不计分）",
    counted: "计分",
    dispute: "提出申诉",
    dispute_hint: "选择有异议的记录并说明理由，工作人员处理后结果会显示在下方。",
    signal: "记录",
    reason: "理由",
    dispute_opened: "申诉已提交",
    disputes: "我的申诉",
    status: "状态",
    resolution: "处理意见",
    dispute_open: "处理中",
    dispute_upheld: "申诉成立，记录已撤销",
    dispute_rejected: "申诉未获支持",
    dispute_exists: "该记录已有处理中的申诉",
    signal_unknown: "没有找到该记录",
    bad_reason: "请填写理由（不超过 500 字）",
};

static EN: PointsTexts = PointsTexts {
    balance: "Points balance",
    earned: "Earned",
    redeemed: "Redeemed",
    donated: "Donated",
    expired: "Expired",
    expiring: "Expiring within 30 days",
    entries: "Recent points",
    date: "Date",
    what: "What",
    points: "Points",
    expires_on: "Expires on",
    catalogue: "Redeem points",
    item: "Item",
    cost: "Points needed",
    redeem: "Redeem",
    projects: "Donate to charity",
    donate: "Donate",
    donate_points: "Points to donate",
    redeemed_ok: "Redeemed",
    donated_ok: "Donated, thank you",
    short: "Not enough points",
    available: "available",
    expired_some: "some of your points have expired",
    withdrawn: "This item is no longer offered or sold out",
    closed: "This charity project is closed",
    unknown: "No such item or project",
    bad_points: "A donation is a whole number of points from 1 to 1000000",
    op_earn: "Earned",
    op_redeem: "Redeemed",
    op_donate: "Donated",
    op_expire: "Expired",
    credit_intro: "The credit service is opt-in. Once you opt in, your score is computed only from bills paid on time or late, fare evasion records, library returns and volunteer hours; every factor says how it adds or takes away points, and you can dispute any record.",
    credit_off: "You have not opted in: nothing about you is recorded or scored.",
    credit_uses: "Your score opens:",
    opt_in: "Opt in to the credit service",
    opt_out: "Opt out of the credit service",
    opt_out_warning: "Opting out deletes your records, past scores and disputes.",
    opted_in: "You opted in to the credit service",
    opted_out: "You opted out; your records were deleted",
    score_today: "Your score today",
    base: "Base score",
    factor: "Factor",
    contribution: "Points",
    incentives: "Incentives",
    eligible: "reached",
    not_yet: "not yet",
    history: "Your score over time",
    history_none: "No past scores yet",
    signals: "Records your score is built from",
    kind: "Kind",
    source: "Source",
    struck: "struck out (not counted)",
    counted: "counted",
    dispute: "Dispute a record",
    dispute_hint: "Choose the record you disagree with and say why; the answer appears below once an officer has decided.",
    signal: "Record",
    reason: "Reason",
    dispute_opened: "Your dispute was sent",
    disputes: "My disputes",
    status: "Status",
    resolution: "Officer's note",
    dispute_open: "open",
    dispute_upheld: "upheld: the record was struck out",
    dispute_rejected: "rejected",
    dispute_exists: "A dispute about this record is already open",
    signal_unknown: "No such record",
    bad_reason: "Please give a reason (at most 500 characters)",
};

fn points_texts(t: &PortalTexts) -> &'static PointsTexts {
    if t.lang == "en" { &EN } else { &ZH }
}

fn signal_label(t: &PortalTexts, kind: &str) -> String {
    let zh = t.lang != "en";
    let s = match kind {
        "bill_on_time" => ("按时缴费", "bill paid on time"),
        "bill_late" => ("逾期缴费", "bill paid late"),
        "fare_evasion" => ("逃票", "fare evasion"),
        "library_return_on_time" => ("图书按时归还", "library book returned on time"),
        "library_return_late" => ("图书逾期归还", "library book returned late"),
        "volunteer_hour" => ("志愿服务", "volunteer hours"),
        "ride" => ("乘车", "ride"),
        "library_loan" => ("图书借阅", "library loan"),
        other => (other, other),
    };
    if zh { s.0 } else { s.1 }.to_string()
}

// -- points -------------------------------------------------------------------------------------

struct EntryLine {
    day: String,
    op: String,
    what: String,
    /// Signed for display: earned `+`, spent or expired `-`.
    points: String,
    expires_on: String,
}

struct Offer {
    code: String,
    name: String,
    cost: i64,
}

#[derive(Template)]
#[template(path = "portal/points.html")]
struct PointsPage {
    t: &'static PortalTexts,
    p: &'static PointsTexts,
    who: Option<Who>,
    notice: String,
    error: String,
    balance: i64,
    earned: i64,
    redeemed: i64,
    donated: i64,
    expired: i64,
    expiring: i64,
    entries: Vec<EntryLine>,
    items: Vec<Offer>,
    projects: Vec<Offer>,
    key: String,
}

async fn points_page(
    s: &AppState,
    c: &Citizen,
    t: &'static PortalTexts,
    notice: String,
    error: String,
) -> ApiResult<PointsPage> {
    let p = points_texts(t);
    let en = t.lang == "en";
    let v = s.platform.citizen_points(c).await?;
    let (items, projects) = s.platform.citizen_points_offers(c).await?;
    let name_of = |code: &str| -> String {
        items
            .iter()
            .find(|i| i.code == code)
            .map(|i| if en { &i.name_en } else { &i.name_zh })
            .or_else(|| {
                projects
                    .iter()
                    .find(|x| x.code == code)
                    .map(|x| if en { &x.name_en } else { &x.name_zh })
            })
            .cloned()
            .unwrap_or_else(|| code.to_string())
    };
    let entries = v
        .entries
        .iter()
        .map(|e| {
            let (op, sign) = match e.op.as_str() {
                "earn" => (p.op_earn, "+"),
                "redeem" => (p.op_redeem, "-"),
                "donate" => (p.op_donate, "-"),
                "expire" => (p.op_expire, "-"),
                other => (other, ""),
            };
            let what = match (&e.kind, &e.target) {
                (Some(k), _) => signal_label(t, k),
                (None, Some(target)) => name_of(target),
                (None, None) => String::new(),
            };
            EntryLine {
                day: e.day.clone(),
                op: op.into(),
                what,
                points: format!("{sign}{}", e.points.abs()),
                expires_on: e.expires_on.clone().unwrap_or_default(),
            }
        })
        .collect();
    Ok(PointsPage {
        t,
        p,
        who: who(s, c).await?,
        notice,
        error,
        balance: v.balance,
        earned: v.earned,
        redeemed: v.redeemed,
        donated: v.donated,
        expired: v.expired,
        expiring: v.expiring_30_days,
        entries,
        items: items
            .iter()
            .map(|i| Offer {
                code: i.code.clone(),
                name: if en { &i.name_en } else { &i.name_zh }.clone(),
                cost: i.cost_points,
            })
            .collect(),
        projects: projects
            .iter()
            .map(|x| Offer {
                code: x.code.clone(),
                name: if en { &x.name_en } else { &x.name_zh }.clone(),
                cost: 0,
            })
            .collect(),
        key: new_key(),
    })
}

async fn points(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    page(
        points_page(&s, &c, t, String::new(), String::new()).await?,
        set,
    )
}

/// A refused redemption or donation in the citizen's words: the platform's refusal, read
/// against what the page showed (the balance, the offers) — too few points says how many
/// are available, a withdrawn item or a closed project says so.
async fn spend_refusal(
    s: &AppState,
    c: &Citizen,
    t: &'static PortalTexts,
    e: &PlatformError,
    cost: i64,
) -> String {
    let p = points_texts(t);
    match e {
        PlatformError::Conflict(_) => {
            let Ok(v) = s.platform.citizen_points(c).await else {
                return message(t, e);
            };
            if v.balance < cost {
                let mut m = if t.lang == "en" {
                    format!("{}: {cost} needed, {} {}", p.short, v.balance, p.available)
                } else {
                    format!(
                        "{}：{} {cost}，{} {}",
                        p.short, p.cost, p.available, v.balance
                    )
                };
                if v.expired > 0 {
                    m.push_str(if t.lang == "en" { "; " } else { "；" });
                    m.push_str(p.expired_some);
                }
                m
            } else {
                message(t, e)
            }
        }
        PlatformError::NotFound(_) => p.unknown.into(),
        e => message(t, e),
    }
}

#[derive(serde::Deserialize)]
pub struct RedeemForm {
    item: String,
    request_id: String,
}

async fn redeem(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Form(f): Form<RedeemForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let p = points_texts(t);
    let offered = s
        .platform
        .citizen_points_offers(&c)
        .await?
        .0
        .into_iter()
        .find(|i| i.code == f.item);
    let (notice, error) = match &offered {
        // Not offered (withdrawn, sold out or never there): said before anything is tried.
        None => (String::new(), p.withdrawn.to_string()),
        Some(item) => match s
            .platform
            .citizen_points_redeem(&c, &f.item, &f.request_id)
            .await
        {
            Ok(e) => (
                format!(
                    "{}：{} （-{}）",
                    p.redeemed_ok,
                    if t.lang == "en" {
                        &item.name_en
                    } else {
                        &item.name_zh
                    },
                    e.points.abs()
                ),
                String::new(),
            ),
            Err(e) => (
                String::new(),
                spend_refusal(&s, &c, t, &e, item.cost_points).await,
            ),
        },
    };
    page(points_page(&s, &c, t, notice, error).await?, None)
}

#[derive(serde::Deserialize)]
pub struct DonateForm {
    project: String,
    points: String,
    request_id: String,
}

async fn donate(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Form(f): Form<DonateForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let p = points_texts(t);
    let amount = f
        .points
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=points::DONATION_MAX).contains(n));
    let open = s
        .platform
        .citizen_points_offers(&c)
        .await?
        .1
        .into_iter()
        .any(|x| x.code == f.project);
    let (notice, error) = match amount {
        None => (String::new(), p.bad_points.to_string()),
        Some(_) if !open => (String::new(), p.closed.to_string()),
        Some(n) => match s
            .platform
            .citizen_points_donate(&c, &f.project, n, &f.request_id)
            .await
        {
            Ok(e) => (
                format!("{} （-{}）", p.donated_ok, e.points.abs()),
                String::new(),
            ),
            Err(e) => (String::new(), spend_refusal(&s, &c, t, &e, n).await),
        },
    };
    page(points_page(&s, &c, t, notice, error).await?, None)
}

// -- credit -------------------------------------------------------------------------------------

struct FactorLine {
    kind: String,
    text: String,
    contribution: String,
    class: &'static str,
}

struct SignalLine {
    id: i64,
    day: String,
    kind: String,
    source: String,
    state: String,
    /// May be disputed now: counted and no dispute about it open.
    disputable: bool,
}

struct DisputeLine {
    id: i64,
    at: String,
    signal: String,
    reason: String,
    status: String,
    status_label: String,
    note: String,
}

#[derive(Template)]
#[template(path = "portal/credit.html")]
struct CreditPage {
    t: &'static PortalTexts,
    p: &'static PointsTexts,
    who: Option<Who>,
    notice: String,
    error: String,
    opted_in: bool,
    score: i64,
    base: i64,
    day: String,
    factors: Vec<FactorLine>,
    incentives: Vec<(String, i64, bool)>,
    chart: String,
    signals: Vec<SignalLine>,
    disputes: Vec<DisputeLine>,
}

/// The score history as an SVG line chart, oldest on the left, on the score's whole range
/// (`credit::MIN` to `credit::MAX`), with a title and a description that say the numbers.
fn history_svg(p: &PointsTexts, newest_first: &[ScoreHistoryView]) -> String {
    let points: Vec<&ScoreHistoryView> = newest_first.iter().rev().collect();
    if points.is_empty() {
        return String::new();
    }
    let (w, h, left, right, top, bottom) = (640.0_f64, 240.0_f64, 56.0, 16.0, 16.0, 34.0);
    let (lo, hi) = (credit::MIN as f64, credit::MAX as f64);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let x_of = |i: usize| {
        if points.len() == 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (points.len() - 1) as f64
        }
    };
    let y_of = |score: i64| top + plot_h * (hi - (score as f64).clamp(lo, hi)) / (hi - lo);
    let mut grid = String::new();
    for v in [credit::MIN, credit::BASE, 800, credit::MAX] {
        let y = y_of(v);
        grid.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#d0d5dc\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"14\" text-anchor=\"end\" fill=\"#404040\">{v}</text>",
            w - right,
            left - 6.0,
            y + 5.0
        ));
    }
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{:.1},{:.1}", x_of(i), y_of(s.score)))
        .collect();
    let mut dots = String::new();
    for (i, s) in points.iter().enumerate() {
        dots.push_str(&format!(
            "<circle class=\"point\" data-day=\"{}\" data-score=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#0b4f8a\"><title>{} {}</title></circle>",
            esc(&s.day),
            s.score,
            x_of(i),
            y_of(s.score),
            esc(&s.day),
            s.score
        ));
    }
    let first = points.first().map(|s| s.day.as_str()).unwrap_or_default();
    let last = points.last().map(|s| s.day.as_str()).unwrap_or_default();
    let labels = format!(
        "<text x=\"{left}\" y=\"{:.1}\" font-size=\"14\" fill=\"#1a1a1a\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"14\" text-anchor=\"end\" fill=\"#1a1a1a\">{}</text>",
        h - 10.0,
        esc(first),
        w - right,
        h - 10.0,
        esc(last)
    );
    let desc: Vec<String> = points
        .iter()
        .map(|s| format!("{} {}", s.day, s.score))
        .collect();
    format!(
        "<svg id=\"score-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"score-chart-title score-chart-desc\"><title id=\"score-chart-title\">{}</title><desc id=\"score-chart-desc\">{}</desc>{grid}<polyline fill=\"none\" stroke=\"#0b4f8a\" stroke-width=\"3\" points=\"{}\"/>{dots}{labels}</svg>",
        esc(p.history),
        esc(&desc.join("; ")),
        line.join(" ")
    )
}

async fn credit_page(
    s: &AppState,
    c: &Citizen,
    t: &'static PortalTexts,
    notice: String,
    error: String,
) -> ApiResult<CreditPage> {
    let p = points_texts(t);
    let en = t.lang == "en";
    let v = s.platform.citizen_credit(c).await?;
    let mut out = CreditPage {
        t,
        p,
        who: who(s, c).await?,
        notice,
        error,
        opted_in: v.opted_in_ms.is_some(),
        score: 0,
        base: credit::BASE,
        day: String::new(),
        factors: Vec::new(),
        incentives: credit::INCENTIVES
            .iter()
            .map(|i| {
                (
                    if en { i.name_en } else { i.name_zh }.to_string(),
                    i.threshold,
                    false,
                )
            })
            .collect(),
        chart: String::new(),
        signals: Vec::new(),
        disputes: Vec::new(),
    };
    let Some(score) = v.score else {
        return Ok(out);
    };
    let disputes = s.platform.citizen_credit_disputes(c).await?;
    let history = s.platform.citizen_credit_history(c).await?;
    out.score = score.score;
    out.base = score.base;
    out.day = score.day;
    out.factors = score
        .factors
        .into_iter()
        .map(|f| FactorLine {
            kind: signal_label(t, &f.kind),
            text: if en { f.text_en } else { f.text_zh },
            contribution: if f.contribution > 0 {
                format!("+{}", f.contribution)
            } else {
                f.contribution.to_string()
            },
            class: match f.contribution.signum() {
                1 => "plus",
                -1 => "minus",
                _ => "",
            },
        })
        .collect();
    out.incentives = score
        .incentives
        .into_iter()
        .map(|i| {
            (
                if en { i.name_en } else { i.name_zh },
                i.threshold,
                i.eligible,
            )
        })
        .collect();
    out.chart = history_svg(p, &history);
    let signal_text = |id: i64| -> String {
        score
            .signals
            .iter()
            .find(|x| x.id == id)
            .map(|x| format!("{} {}", x.day, signal_label(t, &x.kind)))
            .unwrap_or_else(|| format!("#{id}"))
    };
    out.disputes = disputes
        .iter()
        .map(|d| DisputeLine {
            id: d.id,
            at: format_ms(d.created_ms),
            signal: signal_text(d.signal_id),
            reason: d.reason.clone(),
            status: d.status.clone(),
            status_label: match d.status.as_str() {
                "open" => p.dispute_open,
                "upheld" => p.dispute_upheld,
                "rejected" => p.dispute_rejected,
                other => other,
            }
            .to_string(),
            note: d.note.clone().unwrap_or_default(),
        })
        .collect();
    out.signals = score
        .signals
        .iter()
        .rev()
        .map(|x| SignalLine {
            id: x.id,
            day: x.day.clone(),
            kind: signal_label(t, &x.kind),
            source: x.source.clone(),
            state: if x.struck { p.struck } else { p.counted }.into(),
            disputable: !x.struck
                && !disputes
                    .iter()
                    .any(|d| d.signal_id == x.id && d.status == "open"),
        })
        .collect();
    Ok(out)
}

async fn credit(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Query(l): Query<LangParam>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &l.lang);
    page(
        credit_page(&s, &c, t, String::new(), String::new()).await?,
        set,
    )
}

async fn opt_in(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let (notice, error) = match s.platform.citizen_credit_opt_in(&c).await {
        Ok(_) => (points_texts(t).opted_in.to_string(), String::new()),
        Err(e) => (String::new(), message(t, &e)),
    };
    page(credit_page(&s, &c, t, notice, error).await?, None)
}

async fn opt_out(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let (notice, error) = match s.platform.citizen_credit_opt_out(&c).await {
        Ok(_) => (points_texts(t).opted_out.to_string(), String::new()),
        Err(e) => (String::new(), message(t, &e)),
    };
    page(credit_page(&s, &c, t, notice, error).await?, None)
}

#[derive(serde::Deserialize)]
pub struct DisputeForm {
    signal_id: String,
    reason: String,
}

async fn dispute_open(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    headers: HeaderMap,
    Form(f): Form<DisputeForm>,
) -> ApiResult<Response> {
    let (t, _) = language(&headers, &None);
    let p = points_texts(t);
    let result = match f.signal_id.trim().parse::<i64>() {
        Ok(id) => s
            .platform
            .citizen_credit_dispute_open(&c, id, &f.reason)
            .await
            .map(|_| ()),
        Err(_) => Err(PlatformError::NotFound("credit signal".into())),
    };
    let (notice, error) = match result {
        Ok(()) => (p.dispute_opened.to_string(), String::new()),
        Err(PlatformError::NotFound(_)) => (String::new(), p.signal_unknown.to_string()),
        Err(PlatformError::Invalid { .. }) => (String::new(), p.bad_reason.to_string()),
        Err(PlatformError::Conflict(m)) if !m.contains("opted in") => {
            (String::new(), p.dispute_exists.to_string())
        }
        Err(e) => (String::new(), message(t, &e)),
    };
    page(credit_page(&s, &c, t, notice, error).await?, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(day: &str, score: i64) -> ScoreHistoryView {
        ScoreHistoryView {
            day: day.into(),
            score,
        }
    }

    /// The y of the point drawn for `day`.
    fn y_of(svg: &str, day: &str) -> f64 {
        let at = svg.find(&format!("data-day=\"{day}\"")).unwrap();
        let rest = &svg[at..];
        let cy = rest.find("cy=\"").unwrap() + 4;
        rest[cy..cy + rest[cy..].find('"').unwrap()]
            .parse()
            .unwrap()
    }

    #[test]
    fn history_chart_draws_oldest_first_and_higher_scores_higher() {
        assert_eq!(history_svg(&ZH, &[]), "");
        // Newest first, as the platform answers.
        let h = [
            day("2026-11-26", 700),
            day("2026-11-25", 600),
            day("2026-11-24", 2_000),
        ];
        let svg = history_svg(&EN, &h);
        assert_eq!(svg.matches("class=\"point\"").count(), 3);
        assert!(y_of(&svg, "2026-11-26") < y_of(&svg, "2026-11-25"));
        // Out of range is drawn at the edge, never off the chart.
        assert!(y_of(&svg, "2026-11-24") >= 0.0);
        let x = |d: &str| svg.find(&format!("data-day=\"{d}\"")).unwrap();
        assert!(x("2026-11-24") < x("2026-11-26"));
        assert!(svg.contains(
            "<desc id=\"score-chart-desc\">2026-11-24 2000; 2026-11-25 600; 2026-11-26 700</desc>"
        ));
    }
}
