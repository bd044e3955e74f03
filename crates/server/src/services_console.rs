//! The console page of citizen services (`/console/services`): bill runs with their counts,
//! and the notification outbox's delivery status (counts per channel and status, the SMS
//! still pending or failed). No phone number appears on the page.

use crate::AppState;
use crate::console::{language, page};
use crate::error::ApiResult;
use crate::i18n::Texts;
use crate::production_console::yuan;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use platform::Caller;
use platform::notifications::NotificationView;
use store::BillRunRow;

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/services", get(show))
}

pub struct STexts {
    title: &'static str,
    intro: &'static str,
    runs: &'static str,
    run: &'static str,
    due_on: &'static str,
    started: &'static str,
    considered: &'static str,
    debited: &'static str,
    amount: &'static str,
    short: &'static str,
    over_limit: &'static str,
    notices: &'static str,
    delivery: &'static str,
    channel: &'static str,
    status: &'static str,
    count: &'static str,
    problems: &'static str,
    notice: &'static str,
    attempts: &'static str,
    error: &'static str,
    created: &'static str,
    words: [(&'static str, &'static str); 7],
}

static SZH: STexts = STexts {
    title: "综合服务：缴费与通知",
    intro: "公共事业账单的代扣批次，以及短信和站内消息的发送状态。",
    runs: "代扣批次",
    run: "批次",
    due_on: "到期日",
    started: "开始时间",
    considered: "账单数",
    debited: "已扣款",
    amount: "扣款金额（元）",
    short: "余额不足",
    over_limit: "超过限额",
    notices: "通知数",
    delivery: "通知发送状态",
    channel: "渠道",
    status: "状态",
    count: "数量",
    problems: "待发送和发送失败的短信",
    notice: "模板",
    attempts: "尝试次数",
    error: "最近错误",
    created: "创建时间",
    words: [
        ("sms", "短信"),
        ("inapp", "站内消息"),
        ("pending", "待发送"),
        ("sent", "已发送"),
        ("failed", "失败"),
        ("unread", "未读"),
        ("read", "已读"),
    ],
};

static SEN: STexts = STexts {
    title: "Citizen services: bills and notices",
    intro: "Auto-debit runs of utility bills, and the delivery status of SMS and in-app messages.",
    runs: "Bill runs",
    run: "Run",
    due_on: "Due on",
    started: "Started",
    considered: "Bills",
    debited: "Debited",
    amount: "Debited (yuan)",
    short: "Short of funds",
    over_limit: "Over limit",
    notices: "Notices",
    delivery: "Notification delivery",
    channel: "Channel",
    status: "Status",
    count: "Count",
    problems: "SMS pending or failed",
    notice: "Template",
    attempts: "Attempts",
    error: "Last error",
    created: "Created",
    words: [
        ("sms", "SMS"),
        ("inapp", "in-app"),
        ("pending", "pending"),
        ("sent", "sent"),
        ("failed", "failed"),
        ("unread", "unread"),
        ("read", "read"),
    ],
};

struct RunRow {
    run: BillRunRow,
    yuan: String,
}

struct CountRow {
    channel: String,
    status: String,
    channel_text: &'static str,
    status_text: &'static str,
    count: i64,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage {
    t: &'static Texts,
    s: &'static STexts,
    user: Option<String>,
    runs: Vec<RunRow>,
    counts: Vec<CountRow>,
    problems: Vec<NotificationView>,
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
}

async fn show(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let s: &'static STexts = if t.lang == "en" { &SEN } else { &SZH };
    let word = |w: &str| {
        s.words
            .iter()
            .find(|(k, _)| *k == w)
            .map_or("", |(_, v)| *v)
    };
    let runs = st
        .platform
        .bill_runs(&c, 50)
        .await?
        .into_iter()
        .map(|run| RunRow {
            yuan: yuan(run.debited_fen),
            run,
        })
        .collect();
    // The page is for operators of bills; the outbox's counts need the readers' role too.
    let (counts, problems) = match st.platform.notify_counts(&c).await {
        Ok(n) => {
            let mut p = st
                .platform
                .notifications_page(&c, Some("failed"), 50)
                .await?;
            p.extend(
                st.platform
                    .notifications_page(&c, Some("pending"), 50)
                    .await?,
            );
            (n, p)
        }
        Err(platform::PlatformError::Forbidden(_)) => (Vec::new(), Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let counts = counts
        .into_iter()
        .map(|n| CountRow {
            channel_text: word(&n.channel),
            status_text: word(&n.status),
            channel: n.channel,
            status: n.status,
            count: n.count,
        })
        .collect();
    page(
        ServicesPage {
            t,
            s,
            user: Some(c.username.clone()),
            runs,
            counts,
            problems,
        },
        set,
    )
}
