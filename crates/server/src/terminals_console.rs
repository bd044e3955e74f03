//! The fleet page (`/console/terminals`, issue 6 item 7): every terminal with when it was last
//! seen, its last upload, the records it says wait in it, its parameter and deny-list versions
//! and its alerts (silent, behind, backlog), with the counts on top. A table, no map.

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
use platform::terminals::{Alert, FleetCounts};

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/terminals", get(fleet))
}

pub struct FTexts {
    title: &'static str,
    intro: &'static str,
    terminals: &'static str,
    active: &'static str,
    silent: &'static str,
    behind: &'static str,
    backlog: &'static str,
    pending: &'static str,
    uploaded: &'static str,
    id: &'static str,
    merchant: &'static str,
    kind: &'static str,
    site: &'static str,
    status: &'static str,
    psam: &'static str,
    last_seen: &'static str,
    last_upload: &'static str,
    parameters: &'static str,
    deny_list: &'static str,
    alerts: &'static str,
    never: &'static str,
    current: &'static str,
    none: &'static str,
}

static FZH: FTexts = FTexts {
    title: "终端监控",
    intro: "每台终端最近联系、最近上传、待上传记录、参数与黑名单版本，以及告警：长时间未联系、版本落后、积压过多。",
    terminals: "终端",
    active: "已激活",
    silent: "失联",
    behind: "版本落后",
    backlog: "积压",
    pending: "待上传记录",
    uploaded: "已上传记录",
    id: "终端号",
    merchant: "商户",
    kind: "类型",
    site: "站点",
    status: "状态",
    psam: "PSAM",
    last_seen: "最近联系",
    last_upload: "最近上传",
    parameters: "参数版本",
    deny_list: "黑名单版本",
    alerts: "告警",
    never: "从未",
    current: "当前",
    none: "尚无终端。",
};

static FEN: FTexts = FTexts {
    title: "Terminal fleet",
    intro: "Per terminal: last seen, last upload, records waiting, parameter and deny-list versions, and alerts for terminals silent too long, behind, or with a backlog.",
    terminals: "Terminals",
    active: "Active",
    silent: "Silent",
    behind: "Behind",
    backlog: "Backlog",
    pending: "Records waiting",
    uploaded: "Records uploaded",
    id: "Terminal",
    merchant: "Merchant",
    kind: "Kind",
    site: "Site",
    status: "Status",
    psam: "PSAM",
    last_seen: "Last seen",
    last_upload: "Last upload",
    parameters: "Parameters",
    deny_list: "Deny-list",
    alerts: "Alerts",
    never: "never",
    current: "current",
    none: "No terminals yet.",
};

struct Row {
    id: String,
    merchant: String,
    kind: String,
    site: String,
    status: String,
    psam: String,
    last_seen: String,
    last_upload: String,
    pending: String,
    parameters: String,
    deny_list: String,
    alerts: Vec<(&'static str, &'static str)>,
}

#[derive(Template)]
#[template(path = "terminals.html")]
struct FleetPage {
    t: &'static Texts,
    f: &'static FTexts,
    user: Option<String>,
    counts: FleetCounts,
    parameters_version: String,
    deny_list_version: i64,
    rows: Vec<Row>,
}

#[derive(serde::Deserialize)]
pub struct FleetQuery {
    lang: Option<String>,
}

fn alert_label(a: Alert, f: &FTexts) -> &'static str {
    match a {
        Alert::Silent => f.silent,
        Alert::Behind => f.behind,
        Alert::Backlog => f.backlog,
    }
}

async fn fleet(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<FleetQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let f = if t.lang == "en" { &FEN } else { &FZH };
    let v = s.platform.terminal_fleet_view().await?;
    let when = |ms: Option<i64>| ms.map_or_else(|| f.never.to_string(), platform::clock::format_ms);
    let rows = v
        .rows
        .into_iter()
        .map(|r| {
            let st = r.entry.status.as_ref();
            Row {
                id: r.entry.terminal.id.clone(),
                merchant: r.entry.terminal.merchant.clone(),
                kind: r.entry.terminal.kind.clone(),
                site: r.entry.terminal.site.clone(),
                status: r.entry.terminal.status.clone(),
                psam: r.entry.psam_terminal_id.clone().unwrap_or_default(),
                last_seen: when(st.map(|s| s.last_seen_ms)),
                last_upload: when(st.and_then(|s| s.last_upload_ms)),
                pending: st
                    .and_then(|s| s.records_pending)
                    .map_or_else(String::new, |n| n.to_string()),
                parameters: st
                    .and_then(|s| s.parameters_version.clone())
                    .map(|p| {
                        if p == v.parameters_version {
                            format!("{p} ({})", f.current)
                        } else {
                            p
                        }
                    })
                    .unwrap_or_default(),
                deny_list: st
                    .and_then(|s| s.deny_list_version)
                    .map_or_else(String::new, |n| n.to_string()),
                alerts: r
                    .alerts
                    .iter()
                    .map(|a| (a.code(), alert_label(*a, f)))
                    .collect(),
            }
        })
        .collect();
    page(
        FleetPage {
            t,
            f,
            user: Some(c.username.clone()),
            counts: v.counts,
            parameters_version: v.parameters_version,
            deny_list_version: v.deny_list_version,
            rows,
        },
        set,
    )
}
