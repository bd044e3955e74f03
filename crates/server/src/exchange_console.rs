//! The data-sharing console (`/console/exchange`, issue 8, item 8): the service catalog with
//! each field's sensitivity, the grants with their state, consent statistics per consumer and
//! service, and a browser of the access log filtered by consumer, service, citizen, outcome
//! and time range. The citizen filter is posted, so ID numbers stay out of addresses.

use crate::AppState;
use crate::console::{language, page};
use crate::error::ApiResult;
use crate::i18n::Texts;
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use platform::Caller;
use platform::clock::format_ms;
use platform::exchange_oversight::{AccessSearch, city_day_start_ms};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/exchange", get(catalog))
        .route("/console/exchange/grants", get(grants))
        .route("/console/exchange/consents", get(consents))
        .route("/console/exchange/access", get(access).post(access_search))
}

pub struct XTexts {
    title: &'static str,
    catalog: &'static str,
    grants: &'static str,
    consents: &'static str,
    access: &'static str,
    intro_catalog: &'static str,
    intro_grants: &'static str,
    intro_consents: &'static str,
    intro_access: &'static str,
    service: &'static str,
    provider: &'static str,
    fields: &'static str,
    consent_required: &'static str,
    yes: &'static str,
    no: &'static str,
    consumer: &'static str,
    purpose: &'static str,
    legal_basis: &'static str,
    valid: &'static str,
    state: &'static str,
    full_fields: &'static str,
    active: &'static str,
    revoked: &'static str,
    expired: &'static str,
    citizen: &'static str,
    outcome: &'static str,
    reason: &'static str,
    from: &'static str,
    until: &'static str,
    any: &'static str,
    search: &'static str,
    when: &'static str,
    none: &'static str,
    members: &'static str,
}

static XZH: XTexts = XTexts {
    title: "数据共享",
    catalog: "服务目录",
    grants: "授权",
    consents: "授权同意统计",
    access: "访问日志",
    intro_catalog: "各部门发布的服务及其字段敏感级别；未授权全量的个人字段一律脱敏。",
    intro_grants: "调用方按服务、字段与用途获得的授权，含法律依据与有效期。",
    intro_consents: "市民对调用方与服务的授权同意：有效、已撤回、已过期。",
    intro_access: "每一次经交换平台的调用（含被拒绝与失败的），可按调用方、服务、市民、结果与时间筛选。",
    service: "服务",
    provider: "提供方",
    fields: "字段",
    consent_required: "需市民同意",
    yes: "是",
    no: "否",
    consumer: "调用方",
    purpose: "用途",
    legal_basis: "法律依据",
    valid: "有效期",
    state: "状态",
    full_fields: "全量字段",
    active: "有效",
    revoked: "已撤回",
    expired: "已过期",
    citizen: "市民身份证号",
    outcome: "结果",
    reason: "原因",
    from: "起始日期",
    until: "截止日期（不含）",
    any: "全部",
    search: "查询",
    when: "时间",
    none: "没有记录。",
    members: "成员",
};

static XEN: XTexts = XTexts {
    title: "Data sharing",
    catalog: "Service catalog",
    grants: "Grants",
    consents: "Consent statistics",
    access: "Access log",
    intro_catalog: "Services the departments publish, with each field's sensitivity; personal fields are masked unless a grant allows them in full.",
    intro_grants: "What each consumer may call, per service, fields and purpose, with the legal basis and validity.",
    intro_consents: "Citizens' consents per consumer and service: active, revoked, expired.",
    intro_access: "Every call through the exchange (refused and failed ones too), filtered by consumer, service, citizen, outcome and time.",
    service: "Service",
    provider: "Provider",
    fields: "Fields",
    consent_required: "Needs consent",
    yes: "yes",
    no: "no",
    consumer: "Consumer",
    purpose: "Purpose",
    legal_basis: "Legal basis",
    valid: "Valid",
    state: "State",
    full_fields: "Full fields",
    active: "active",
    revoked: "revoked",
    expired: "expired",
    citizen: "Citizen's ID number",
    outcome: "Outcome",
    reason: "Reason",
    from: "From (day)",
    until: "Until (day, exclusive)",
    any: "any",
    search: "Search",
    when: "When",
    none: "Nothing recorded.",
    members: "Members",
};

struct ServiceLine {
    code: String,
    name: String,
    provider: String,
    fields: String,
    consent: bool,
}

struct GrantLine {
    id: i64,
    consumer: String,
    service: String,
    fields: String,
    full_fields: String,
    purpose: String,
    legal_basis: String,
    valid: String,
    state: &'static str,
}

struct StatLine {
    consumer: String,
    service: String,
    active: u64,
    revoked: u64,
    expired: u64,
}

struct AccessLine {
    id: i64,
    when: String,
    consumer: String,
    service: String,
    resident: String,
    fields: String,
    outcome: String,
    reason: String,
}

#[derive(Default)]
struct Filters {
    consumer: String,
    service: String,
    outcome: String,
    from: String,
    until: String,
}

#[derive(Template)]
#[template(path = "exchange.html")]
struct ExchangePage {
    t: &'static Texts,
    x: &'static XTexts,
    user: Option<String>,
    section: &'static str,
    members: Vec<(String, String)>,
    services: Vec<ServiceLine>,
    grants: Vec<GrantLine>,
    stats: Vec<StatLine>,
    rows: Vec<AccessLine>,
    f: Filters,
    error: Option<String>,
}

impl ExchangePage {
    fn new(t: &'static Texts, c: &Caller, section: &'static str) -> Self {
        ExchangePage {
            t,
            x: if t.lang == "en" { &XEN } else { &XZH },
            user: Some(c.username.clone()),
            section,
            members: vec![],
            services: vec![],
            grants: vec![],
            stats: vec![],
            rows: vec![],
            f: Filters::default(),
            error: None,
        }
    }
}

#[derive(serde::Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

async fn catalog(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let mut p = ExchangePage::new(t, &c, "catalog");
    p.members = s
        .platform
        .exchange_members()
        .await?
        .into_iter()
        .map(|m| (m.code, m.name))
        .collect();
    p.services = s
        .platform
        .exchange_services()
        .await?
        .into_iter()
        .map(|sv| ServiceLine {
            fields: sv
                .fields
                .iter()
                .map(|f| format!("{} ({})", f.name, f.sensitivity.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            code: sv.code,
            name: sv.name,
            provider: sv.provider,
            consent: sv.consent_required,
        })
        .collect();
    page(p, set)
}

async fn grants(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let mut p = ExchangePage::new(t, &c, "grants");
    let now = s.platform.clock.now_ms();
    let x = p.x;
    p.grants = s
        .platform
        .exchange_grants(None)
        .await?
        .into_iter()
        .map(|g| GrantLine {
            state: if g.withdrawn_ms.is_some() {
                x.revoked
            } else if g.valid_until_ms <= now || g.valid_from_ms > now {
                x.expired
            } else {
                x.active
            },
            id: g.id,
            consumer: g.consumer,
            service: g.service,
            fields: g.fields.join(", "),
            full_fields: g.full_fields.join(", "),
            purpose: g.purpose,
            legal_basis: g.legal_basis,
            valid: format!(
                "{} – {}",
                format_ms(g.valid_from_ms),
                format_ms(g.valid_until_ms)
            ),
        })
        .collect();
    page(p, set)
}

async fn consents(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    let mut p = ExchangePage::new(t, &c, "consents");
    p.stats = s
        .platform
        .exchange_consent_stats(&c)
        .await?
        .into_iter()
        .map(|r| StatLine {
            consumer: r.consumer,
            service: r.service,
            active: r.active,
            revoked: r.revoked,
            expired: r.expired,
        })
        .collect();
    page(p, set)
}

/// The access filters as posted by the form.
#[derive(serde::Deserialize, Default)]
pub struct AccessForm {
    #[serde(default)]
    consumer: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    id_number: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
}

async fn access(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &q.lang);
    render_access(&s, &c, t, AccessForm::default(), set).await
}

async fn access_search(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Form(f): Form<AccessForm>,
) -> ApiResult<Response> {
    let (t, set) = language(&headers, &None);
    render_access(&s, &c, t, f, set).await
}

async fn render_access(
    s: &AppState,
    c: &Caller,
    t: &'static Texts,
    f: AccessForm,
    set: Option<axum::http::HeaderValue>,
) -> ApiResult<Response> {
    let mut p = ExchangePage::new(t, c, "access");
    let day = |d: &str| -> platform::Result<Option<i64>> {
        if d.trim().is_empty() {
            Ok(None)
        } else {
            city_day_start_ms(d).map(Some)
        }
    };
    let opt = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    let search = (|| -> platform::Result<AccessSearch> {
        Ok(AccessSearch {
            consumer: opt(&f.consumer),
            service: opt(&f.service),
            id_number: opt(&f.id_number),
            outcome: opt(&f.outcome),
            from_ms: day(&f.from)?,
            until_ms: day(&f.until)?,
            before_id: None,
            limit: 200,
        })
    })();
    let rows = match search {
        Ok(q) => s.platform.exchange_access_search(c, &q).await,
        Err(e) => Err(e),
    };
    match rows {
        Ok(rows) => {
            p.rows = rows
                .into_iter()
                .map(|a| AccessLine {
                    id: a.id,
                    when: format_ms(a.at_ms),
                    consumer: a.consumer,
                    service: a.service,
                    resident: a
                        .resident_id
                        .map_or_else(|| "-".into(), |r| format!("resident:{r}")),
                    fields: a.fields.join(", "),
                    outcome: a.outcome,
                    reason: a.reason.unwrap_or_default(),
                })
                .collect();
        }
        Err(
            e @ (platform::PlatformError::Invalid { .. } | platform::PlatformError::NotFound(_)),
        ) => {
            p.error = Some(e.to_string());
        }
        Err(e) => return Err(e.into()),
    }
    p.f = Filters {
        consumer: f.consumer,
        service: f.service,
        outcome: f.outcome,
        from: f.from,
        until: f.until,
    };
    page(p, set)
}
