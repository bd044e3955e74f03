//! The JSON API under `/api/v1`: wire types (converted by hand from the platform's domain
//! types) and thin handlers that call the platform.

use crate::AppState;
use crate::auth::PresentedToken;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Json, Query};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use platform::Caller;
use platform::residents::{ChangeView, ImportReport, ResidentView};
use resident::Source;
use std::sync::Arc;
use store::Role;
use utoipa::{IntoParams, ToSchema};

// ---- wire types -------------------------------------------------------------------------

#[derive(serde::Deserialize, ToSchema)]
pub struct SignIn {
    pub username: String,
    pub password: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct Session {
    /// Bearer token for `Authorization: Bearer …`.
    pub token: String,
    pub username: String,
    pub role: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct Me {
    pub username: String,
    pub role: String,
    pub department: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ProvenanceDto {
    pub field: String,
    /// The department that reported the current value.
    pub source: String,
    pub feed_id: i64,
    pub at_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ResidentDto {
    pub resident_id: i64,
    /// Masked (`410***********1234`) unless `unmasked`.
    pub id_number: String,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    /// `resident` or `non_resident`.
    pub residency: Option<String>,
    /// Social assistance (`none`, `minimum_living_allowance`, `extreme_hardship`), as civil
    /// affairs reports it; `***` when masked.
    pub assistance: Option<String>,
    /// Student status (`enrolled`, `graduated`), as education reports it; `***` when masked.
    pub student: Option<String>,
    pub birth_date: String,
    pub gender: String,
    pub region: String,
    pub unmasked: bool,
    pub provenance: Vec<ProvenanceDto>,
    pub updated_ms: i64,
}

impl From<ResidentView> for ResidentDto {
    fn from(v: ResidentView) -> Self {
        ResidentDto {
            resident_id: v.resident_id,
            id_number: v.id_number,
            name: v.name,
            phone: v.phone,
            address: v.address,
            residency: v.residency.map(|r| r.as_str().to_string()),
            assistance: v.assistance,
            student: v.student,
            birth_date: v.birth_date,
            gender: v.gender,
            region: v.region,
            unmasked: v.unmasked,
            provenance: v
                .provenance
                .into_iter()
                .map(|p| ProvenanceDto {
                    field: p.field.as_str().into(),
                    source: p.source,
                    feed_id: p.feed_id,
                    at_ms: p.at_ms,
                })
                .collect(),
            updated_ms: v.updated_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ChangeDto {
    pub feed_id: i64,
    pub source: String,
    pub channel: String,
    pub fields: Vec<String>,
    /// The values the feed reported, masked unless `unmask=true` was allowed.
    #[schema(value_type = Object)]
    pub values: serde_json::Value,
    pub at_ms: i64,
}

impl From<ChangeView> for ChangeDto {
    fn from(c: ChangeView) -> Self {
        ChangeDto {
            feed_id: c.feed_id,
            source: c.source,
            channel: c.channel,
            fields: c.fields.iter().map(|f| f.as_str().to_string()).collect(),
            values: c.values,
            at_ms: c.at_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct RejectDto {
    /// Line in the file (the header is line 1).
    pub row: u64,
    pub reason: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ImportReportDto {
    pub feed_id: i64,
    pub source: String,
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    /// At most the first 1,000 rejected rows; the CLI writes all of them to a report file.
    pub rejects: Vec<RejectDto>,
    /// Rows with a value held for review: this department is not the field's authority and
    /// contradicted a stored value.
    pub held: u64,
    /// Cards whose student concession ended on a reported graduation.
    pub concessions_ended: Vec<String>,
}

pub const REJECTS_IN_RESPONSE_MAX: usize = 1_000;

impl From<ImportReport> for ImportReportDto {
    fn from(r: ImportReport) -> Self {
        ImportReportDto {
            feed_id: r.feed_id,
            source: r.source.as_str().into(),
            rows: r.totals.rows,
            inserted: r.totals.inserted,
            updated: r.totals.updated,
            unchanged: r.totals.unchanged,
            rejected: r.totals.rejected,
            rejects: r
                .rejects
                .into_iter()
                .take(REJECTS_IN_RESPONSE_MAX)
                .map(|x| RejectDto {
                    row: x.row,
                    reason: x.reason,
                })
                .collect(),
            held: r.held,
            concessions_ended: r.concessions_ended,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FeedDto {
    pub id: i64,
    pub source: String,
    pub channel: String,
    pub digest: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct OperatorDto {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub department: Option<String>,
    pub created_ms: i64,
    pub disabled: bool,
}

impl From<store::OperatorRow> for OperatorDto {
    fn from(o: store::OperatorRow) -> Self {
        OperatorDto {
            id: o.id,
            username: o.username,
            display_name: o.display_name,
            role: o.role.as_str().into(),
            department: o.department.map(|d| d.as_str().into()),
            created_ms: o.created_ms,
            disabled: o.disabled,
        }
    }
}

#[derive(serde::Deserialize, ToSchema)]
pub struct NewOperatorDto {
    pub username: String,
    pub display_name: String,
    pub password: String,
    /// administrator, counter_clerk, clearing_officer, department_officer, auditor
    pub role: String,
    /// For department officers: police, hr_social_security, health, medical_insurance,
    /// civil_affairs, education, tax.
    pub department: Option<String>,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct TokenRequest {
    /// The operator the machine client acts as.
    pub username: String,
    pub label: String,
    pub ttl_days: u32,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct TokenResponse {
    pub token: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct AuditEntryDto {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub record: String,
    pub origin: String,
    pub detail: String,
    pub hash: String,
}

impl From<audit::Entry> for AuditEntryDto {
    fn from(e: audit::Entry) -> Self {
        AuditEntryDto {
            seq: e.seq,
            at_ms: e.at_ms,
            actor: e.draft.actor,
            action: e.draft.action,
            record: e.draft.record,
            origin: e.draft.origin,
            detail: e.draft.detail,
            hash: hex::encode(e.hash),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct AuditVerifyDto {
    pub intact: bool,
    pub entries: u64,
    /// The first bad entry and what is wrong with it.
    pub problem: Option<String>,
}

#[derive(serde::Deserialize, IntoParams)]
pub struct SearchParams {
    /// Exact 18-character ID number.
    pub id_number: Option<String>,
    /// Exact name.
    pub name: Option<String>,
    /// Show personal data unmasked (audited; administrators, counter clerks and department
    /// officers only).
    #[serde(default)]
    pub unmask: bool,
    /// Browse: residents after this internal id (when no id_number or name is given).
    #[serde(default)]
    pub after: i64,
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    50
}

#[derive(serde::Deserialize, IntoParams)]
pub struct UnmaskParam {
    #[serde(default)]
    pub unmask: bool,
}

#[derive(serde::Deserialize, IntoParams)]
pub struct ImportParams {
    /// The reporting department.
    pub source: String,
}

#[derive(serde::Deserialize, IntoParams)]
pub struct AuditParams {
    pub action: Option<String>,
    #[serde(default = "default_limit")]
    pub limit: u32,
}

pub(crate) fn parse_source(s: &str) -> ApiResult<Source> {
    Source::parse(s).ok_or_else(|| {
        platform::PlatformError::invalid(
            "source",
            format!(
                "unknown department {s:?}; one of {}",
                Source::ALL.map(|d| d.as_str()).join(", ")
            ),
        )
        .into()
    })
}

// ---- handlers ---------------------------------------------------------------------------

#[utoipa::path(post, path = "/api/v1/sessions", tag = "auth", request_body = SignIn,
    responses((status = 201, body = Session), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn sign_in(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Json(b): Json<SignIn>,
) -> ApiResult<(StatusCode, axum::Json<Session>)> {
    let (token, caller) = s
        .platform
        .sign_in(&b.username, &b.password, &addr.ip().to_string())
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Session {
            token,
            username: caller.username,
            role: caller.role.as_str().into(),
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
pub async fn sign_out(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(token): Extension<PresentedToken>,
) -> ApiResult<StatusCode> {
    s.platform.sign_out(&caller, &token.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = Problem)))]
pub async fn me(Extension(c): Extension<Caller>) -> axum::Json<Me> {
    axum::Json(Me {
        username: c.username,
        role: c.role.as_str().into(),
        department: c.department.map(|d| d.as_str().into()),
    })
}

#[utoipa::path(get, path = "/api/v1/residents", tag = "residents", security(("bearer" = [])),
    params(SearchParams),
    responses((status = 200, body = [ResidentDto]), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn residents_search(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<SearchParams>,
) -> ApiResult<axum::Json<Vec<ResidentDto>>> {
    let views = match (&q.id_number, &q.name) {
        (Some(id), _) => match s.platform.resident_by_id_number(&c, id, q.unmask).await {
            Ok(v) => vec![v],
            Err(platform::PlatformError::NotFound(_)) => vec![],
            Err(e) => return Err(e.into()),
        },
        (None, Some(name)) => s.platform.residents_by_name(&c, name, q.unmask).await?,
        (None, None) => {
            if q.unmask {
                return Err(ApiError::BadRequest(
                    "unmask applies to a lookup by id_number or name, not to browsing".into(),
                ));
            }
            s.platform.residents_page(&c, q.after, q.limit).await?
        }
    };
    Ok(axum::Json(views.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/residents/{id_number}", tag = "residents", security(("bearer" = [])),
    params(("id_number" = String, Path, description = "18-character resident ID number"), UnmaskParam),
    responses((status = 200, body = ResidentDto), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn resident_get(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<UnmaskParam>,
) -> ApiResult<axum::Json<ResidentDto>> {
    let v = s.platform.resident_by_id_number(&c, &id, q.unmask).await?;
    Ok(axum::Json(v.into()))
}

#[utoipa::path(get, path = "/api/v1/residents/{id_number}/history", tag = "residents", security(("bearer" = [])),
    params(("id_number" = String, Path, description = "18-character resident ID number"), UnmaskParam),
    responses((status = 200, body = [ChangeDto]), (status = 404, body = Problem)))]
pub async fn resident_history(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<UnmaskParam>,
) -> ApiResult<axum::Json<Vec<ChangeDto>>> {
    let h = s.platform.resident_history(&c, &id, q.unmask).await?;
    Ok(axum::Json(h.into_iter().map(Into::into).collect()))
}

/// Body size limit of a feed upload over HTTP; bigger feeds go through the CLI.
pub const IMPORT_BODY_MAX: usize = 64 * 1024 * 1024;

#[utoipa::path(post, path = "/api/v1/residents/import", tag = "residents", security(("bearer" = [])),
    params(ImportParams),
    request_body(content = String, content_type = "text/csv",
        description = "UTF-8 CSV with header id_number,name,phone,address,residency"),
    responses((status = 200, body = ImportReportDto), (status = 403, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn residents_import(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<ImportParams>,
    body: Bytes,
) -> ApiResult<axum::Json<ImportReportDto>> {
    let source = parse_source(&q.source)?;
    let digest = platform::residents::digest(&body);
    let report = s
        .platform
        .import_residents(
            &c,
            source,
            "api",
            digest,
            Box::new(std::io::Cursor::new(body)),
            Arc::new(|_| {}),
        )
        .await?;
    Ok(axum::Json(report.into()))
}

#[utoipa::path(get, path = "/api/v1/feeds", tag = "residents", security(("bearer" = [])),
    responses((status = 200, body = [FeedDto])))]
pub async fn feeds(State(s): State<AppState>) -> ApiResult<axum::Json<Vec<FeedDto>>> {
    let rows = s
        .platform
        .store
        .feeds_recent(100)
        .await
        .map_err(platform::PlatformError::from)?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|f| FeedDto {
                id: f.id,
                source: f.source,
                channel: f.channel,
                digest: f.digest,
                started_ms: f.started_ms,
                finished_ms: f.finished_ms,
                rows: f.totals.rows,
                inserted: f.totals.inserted,
                updated: f.totals.updated,
                unchanged: f.totals.unchanged,
                rejected: f.totals.rejected,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/operators", tag = "operators", security(("bearer" = [])),
    responses((status = 200, body = [OperatorDto])))]
pub async fn operators_list(State(s): State<AppState>) -> ApiResult<axum::Json<Vec<OperatorDto>>> {
    let ops = s.platform.operators().await?;
    Ok(axum::Json(ops.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/operators", tag = "operators", security(("bearer" = [])),
    request_body = NewOperatorDto,
    responses((status = 201, body = OperatorDto), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn operators_create(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewOperatorDto>,
) -> ApiResult<(StatusCode, axum::Json<OperatorDto>)> {
    let role = Role::parse(&b.role).ok_or_else(|| {
        platform::PlatformError::invalid(
            "role",
            format!("one of {}", Role::ALL.map(|r| r.as_str()).join(", ")),
        )
    })?;
    let department = b.department.as_deref().map(parse_source).transpose()?;
    let op = s
        .platform
        .create_operator(
            &c,
            platform::operators::OperatorRequest {
                username: b.username,
                display_name: b.display_name,
                password: b.password,
                role,
                department,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(op.into())))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "operators", security(("bearer" = [])),
    request_body = TokenRequest,
    responses((status = 201, body = TokenResponse), (status = 404, body = Problem)))]
pub async fn tokens_create(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<TokenRequest>,
) -> ApiResult<(StatusCode, axum::Json<TokenResponse>)> {
    let token = s
        .platform
        .create_api_token(&c, &b.username, &b.label, b.ttl_days)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(TokenResponse { token })))
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditParams), responses((status = 200, body = [AuditEntryDto])))]
pub async fn audit_list(
    State(s): State<AppState>,
    Query(q): Query<AuditParams>,
) -> ApiResult<axum::Json<Vec<AuditEntryDto>>> {
    let rows = s
        .platform
        .store
        .audit_recent(q.action.as_deref(), q.limit)
        .await
        .map_err(platform::PlatformError::from)?;
    Ok(axum::Json(rows.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = AuditVerifyDto)))]
pub async fn audit_verify(State(s): State<AppState>) -> ApiResult<axum::Json<AuditVerifyDto>> {
    let r = s.platform.audit_verify().await?;
    Ok(axum::Json(match r {
        Ok(n) => AuditVerifyDto {
            intact: true,
            entries: n,
            problem: None,
        },
        Err(e) => AuditVerifyDto {
            intact: false,
            entries: 0,
            problem: Some(e.to_string()),
        },
    }))
}
