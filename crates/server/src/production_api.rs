//! The production and counter API (issue 4, items 3 and 8): service outlets and their clerks,
//! production batches (create, personalization file, bureau results, distribution), stock per
//! outlet, counter acts at the clerk's own outlet, the daily journal and its reconciliation.
//!
//! Instant issuance is not here: it needs the outlet's card writer, which holds the transport
//! key and sits at the counter (`citycard counter instant`), not in the central server.

use crate::AppState;
use crate::cards_api::CardDto;
use crate::error::{ApiResult, Problem};
use crate::extract::{Json, Query};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use platform::Caller;
use platform::cards::parse_reason;
use platform::production::{
    BatchView, ClosingView, DistributeReport, ImportReport, JournalView, OutletView, StockView,
};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// A result file of 100,000 cards is about 4 MB; allow room.
pub const RESULTS_BODY_MAX: usize = 64 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/outlets", get(outlets).post(outlet_create))
        .route("/api/v1/outlets/{code}/clerks", post(clerk_assign))
        .route("/api/v1/outlets/{code}/stock", get(stock))
        .route("/api/v1/outlets/{code}/journal", get(journal))
        .route("/api/v1/outlets/{code}/closing", post(close_day))
        .route("/api/v1/outlets/{code}/hand-over", post(hand_over))
        .route("/api/v1/outlets/{code}/lost-reports", post(report_lost))
        .route("/api/v1/outlets/{code}/replacements", post(replace))
        .route("/api/v1/batches", get(batches).post(batch_create))
        .route("/api/v1/batches/{batch}", get(batch))
        .route("/api/v1/batches/{batch}/personalization", get(export))
        .route(
            "/api/v1/batches/{batch}/results",
            post(import).layer(DefaultBodyLimit::max(RESULTS_BODY_MAX)),
        )
        .route("/api/v1/batches/{batch}/distribution", post(distribute))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct OutletDto {
    /// 2 to 16 characters A-Z 0-9 -.
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub address: String,
    pub active: bool,
    /// Usernames of the clerks assigned here.
    pub clerks: Vec<String>,
}

impl From<OutletView> for OutletDto {
    fn from(v: OutletView) -> Self {
        OutletDto {
            code: v.code,
            name_zh: v.name_zh,
            name_en: v.name_en,
            address: v.address,
            active: v.active,
            clerks: v.clerks,
        }
    }
}

#[derive(serde::Deserialize, ToSchema)]
pub struct NewOutletDto {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub address: String,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ClerkDto {
    /// An operator with the counter_clerk role.
    pub username: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct StockDto {
    pub outlet: OutletDto,
    /// Cards delivered to (or issued at) the outlet, by their current state.
    pub by_state: BTreeMap<String, i64>,
    /// Cards waiting for collection, holders masked.
    pub waiting: Vec<CardDto>,
}

impl From<StockView> for StockDto {
    fn from(v: StockView) -> Self {
        StockDto {
            outlet: v.outlet.into(),
            by_state: v.by_state,
            waiting: v.waiting.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct JournalLineDto {
    pub at_ms: i64,
    pub clerk: String,
    /// card_issued, instant_issued, lost_report, replacement
    pub act: String,
    pub card_number: Option<String>,
    pub fee_fen: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ClosingDto {
    pub acts: i64,
    pub expected_fen: i64,
    pub declared_fen: i64,
    /// Declared minus expected: positive over, negative short.
    pub difference_fen: i64,
    pub balanced: bool,
    pub closed_by: String,
    pub closed_ms: i64,
}

impl From<ClosingView> for ClosingDto {
    fn from(c: ClosingView) -> Self {
        ClosingDto {
            acts: c.acts,
            expected_fen: c.expected_fen,
            declared_fen: c.declared_fen,
            difference_fen: c.difference_fen,
            balanced: c.balanced,
            closed_by: c.closed_by,
            closed_ms: c.closed_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct JournalDto {
    pub outlet: String,
    /// The city's business day, YYYY-MM-DD.
    pub date: String,
    pub lines: Vec<JournalLineDto>,
    pub counts: BTreeMap<String, i64>,
    pub fees_fen: i64,
    pub closing: Option<ClosingDto>,
}

impl From<JournalView> for JournalDto {
    fn from(j: JournalView) -> Self {
        JournalDto {
            outlet: j.outlet,
            date: j.date,
            lines: j
                .lines
                .into_iter()
                .map(|l| JournalLineDto {
                    at_ms: l.at_ms,
                    clerk: l.clerk,
                    act: l.act,
                    card_number: l.card_number,
                    fee_fen: l.fee_fen,
                })
                .collect(),
            counts: j.counts,
            fees_fen: j.fees_fen,
            closing: j.closing.map(Into::into),
        }
    }
}

#[derive(serde::Deserialize, IntoParams)]
pub struct JournalParams {
    /// The business day, YYYY-MM-DD.
    pub date: String,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ClosingRequest {
    /// YYYY-MM-DD, not in the future.
    pub date: String,
    /// The cash the clerk counted, in fen.
    pub declared_fen: i64,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct CounterCard {
    pub card_number: String,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ReplacementRequest {
    pub card_number: String,
    /// lost, damaged or fraud
    pub reason: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ReplacementDto {
    pub card: CardDto,
    /// The new card's number (at `approved`).
    pub successor: String,
    pub fee_fen: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct BatchDto {
    /// B000001
    pub id: String,
    /// created, exported, imported
    pub state: String,
    /// 3DES or SM4
    pub algorithm: String,
    pub transport_key: String,
    pub card_count: i64,
    pub start_date: String,
    pub expiry_date: String,
    pub exports: i64,
    pub export_digest: Option<String>,
    pub import_digest: Option<String>,
    pub produced: i64,
    pub failed: i64,
    pub distributed: i64,
    pub created_ms: i64,
    pub created_by: String,
}

impl From<BatchView> for BatchDto {
    fn from(b: BatchView) -> Self {
        BatchDto {
            id: b.id,
            state: b.state,
            algorithm: b.algorithm,
            transport_key: b.transport_key,
            card_count: b.card_count,
            start_date: b.start_date,
            expiry_date: b.expiry_date,
            exports: b.exports,
            export_digest: b.export_digest,
            import_digest: b.import_digest,
            produced: b.produced,
            failed: b.failed,
            distributed: b.distributed,
            created_ms: b.created_ms,
            created_by: b.created_by,
        }
    }
}

#[derive(serde::Deserialize, ToSchema)]
pub struct NewBatchDto {
    /// Approved cards to take, at most (1 to 100,000).
    pub max: u32,
    /// 3DES or SM4 [default SM4].
    pub algorithm: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct BatchCreatedDto {
    pub batch: BatchDto,
    pub skipped_unprintable: u32,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FailedCardDto {
    pub card_number: String,
    pub reason: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ImportReportDto {
    pub batch: BatchDto,
    pub produced: u32,
    pub failed: Vec<FailedCardDto>,
}

impl From<ImportReport> for ImportReportDto {
    fn from(r: ImportReport) -> Self {
        ImportReportDto {
            batch: r.batch.into(),
            produced: r.produced,
            failed: r
                .failed
                .into_iter()
                .map(|(card_number, reason)| FailedCardDto {
                    card_number,
                    reason,
                })
                .collect(),
        }
    }
}

#[derive(serde::Deserialize, ToSchema)]
pub struct DistributionRequest {
    /// Outlet code.
    pub outlet: String,
    /// Only the first this many produced cards [default: all].
    pub count: Option<u32>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DistributionDto {
    pub batch: String,
    pub outlet: String,
    pub delivered: u32,
    pub remaining: u32,
}

impl From<DistributeReport> for DistributionDto {
    fn from(d: DistributeReport) -> Self {
        DistributionDto {
            batch: d.batch,
            outlet: d.outlet,
            delivered: d.delivered,
            remaining: d.remaining,
        }
    }
}

// -- outlets -------------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/outlets", tag = "production", security(("bearer" = [])),
    responses((status = 200, body = [OutletDto])))]
pub async fn outlets(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<Vec<OutletDto>>> {
    let v = s.platform.outlets(&c).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/outlets", tag = "production", security(("bearer" = [])),
    request_body = NewOutletDto,
    responses((status = 201, body = OutletDto), (status = 409, body = Problem)))]
pub async fn outlet_create(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewOutletDto>,
) -> ApiResult<(StatusCode, axum::Json<OutletDto>)> {
    let v = s
        .platform
        .outlet_create(&c, &b.code, &b.name_zh, &b.name_en, &b.address)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[utoipa::path(post, path = "/api/v1/outlets/{code}/clerks", tag = "production",
    security(("bearer" = [])), params(("code" = String, Path, description = "Outlet code")),
    request_body = ClerkDto, responses((status = 200, body = OutletDto)))]
pub async fn clerk_assign(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
    Json(b): Json<ClerkDto>,
) -> ApiResult<axum::Json<OutletDto>> {
    Ok(axum::Json(
        s.platform
            .clerk_assign(&c, &code, &b.username)
            .await?
            .into(),
    ))
}

#[utoipa::path(get, path = "/api/v1/outlets/{code}/stock", tag = "production",
    security(("bearer" = [])), params(("code" = String, Path, description = "Outlet code")),
    responses((status = 200, body = StockDto)))]
pub async fn stock(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
) -> ApiResult<axum::Json<StockDto>> {
    Ok(axum::Json(s.platform.outlet_stock(&c, &code).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/outlets/{code}/journal", tag = "production",
    security(("bearer" = [])),
    params(("code" = String, Path, description = "Outlet code"), JournalParams),
    responses((status = 200, body = JournalDto)))]
pub async fn journal(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
    Query(q): Query<JournalParams>,
) -> ApiResult<axum::Json<JournalDto>> {
    Ok(axum::Json(
        s.platform.counter_journal(&c, &code, &q.date).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/outlets/{code}/closing", tag = "production",
    security(("bearer" = [])), params(("code" = String, Path, description = "Outlet code")),
    request_body = ClosingRequest,
    responses((status = 200, body = ClosingDto),
        (status = 409, body = Problem, description = "The day is already closed")))]
pub async fn close_day(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
    Json(b): Json<ClosingRequest>,
) -> ApiResult<axum::Json<ClosingDto>> {
    Ok(axum::Json(
        s.platform
            .close_day(&c, &code, &b.date, b.declared_fen)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/outlets/{code}/hand-over", tag = "production",
    security(("bearer" = [])), params(("code" = String, Path, description = "Outlet code")),
    request_body = CounterCard,
    responses((status = 200, body = CardDto), (status = 409, body = Problem)))]
pub async fn hand_over(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
    Json(b): Json<CounterCard>,
) -> ApiResult<axum::Json<CardDto>> {
    Ok(axum::Json(
        s.platform
            .counter_hand_over(&c, &code, &b.card_number)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/outlets/{code}/lost-reports", tag = "production",
    security(("bearer" = [])), params(("code" = String, Path, description = "Outlet code")),
    request_body = CounterCard,
    responses((status = 200, body = CardDto), (status = 409, body = Problem)))]
pub async fn report_lost(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
    Json(b): Json<CounterCard>,
) -> ApiResult<axum::Json<CardDto>> {
    Ok(axum::Json(
        s.platform
            .counter_report_lost(&c, &code, &b.card_number)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/outlets/{code}/replacements", tag = "production",
    security(("bearer" = [])), params(("code" = String, Path, description = "Outlet code")),
    request_body = ReplacementRequest,
    responses((status = 200, body = ReplacementDto), (status = 409, body = Problem)))]
pub async fn replace(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
    Json(b): Json<ReplacementRequest>,
) -> ApiResult<axum::Json<ReplacementDto>> {
    let reason = parse_reason(&b.reason)?;
    let r = s
        .platform
        .counter_replace(&c, &code, &b.card_number, reason)
        .await?;
    Ok(axum::Json(ReplacementDto {
        card: r.card.into(),
        successor: r.successor,
        fee_fen: r.fee_fen,
    }))
}

// -- batches -------------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/batches", tag = "production", security(("bearer" = [])),
    responses((status = 200, body = [BatchDto])))]
pub async fn batches(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<Vec<BatchDto>>> {
    let v = s.platform.batches(&c, store::PAGE_MAX).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/batches", tag = "production", security(("bearer" = [])),
    request_body = NewBatchDto,
    responses((status = 201, body = BatchCreatedDto),
        (status = 409, body = Problem, description = "No approved card is waiting")))]
pub async fn batch_create(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewBatchDto>,
) -> ApiResult<(StatusCode, axum::Json<BatchCreatedDto>)> {
    let r = s
        .platform
        .create_batch(&c, b.max, b.algorithm.as_deref().unwrap_or("SM4"))
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(BatchCreatedDto {
            batch: r.batch.into(),
            skipped_unprintable: r.skipped_unprintable,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/batches/{batch}", tag = "production",
    security(("bearer" = [])), params(("batch" = String, Path, description = "B000001")),
    responses((status = 200, body = BatchDto)))]
pub async fn batch(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(batch): Path<String>,
) -> ApiResult<axum::Json<BatchDto>> {
    Ok(axum::Json(s.platform.batch(&c, &batch).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/batches/{batch}/personalization", tag = "production",
    security(("bearer" = [])), params(("batch" = String, Path, description = "B000001")),
    responses((status = 200, content_type = "text/plain", body = String,
        description = "The personalization file for the card bureau (issuance::production \
        format 1): card keys wrapped under the transport key, SM3 trailer. Audited."),
        (status = 409, body = Problem)))]
pub async fn export(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(batch): Path<String>,
) -> ApiResult<Response> {
    let f = s.platform.export_batch(&c, &batch).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.perso\"", f.batch),
            ),
        ],
        f.bytes,
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/v1/batches/{batch}/results", tag = "production",
    security(("bearer" = [])), params(("batch" = String, Path, description = "B000001")),
    request_body(content = String, content_type = "text/plain",
        description = "The bureau's result file (CCRESULT format 1)"),
    responses((status = 200, body = ImportReportDto),
        (status = 409, body = Problem, description = "Already imported, or never exported"),
        (status = 422, body = Problem, description = "Another batch's, damaged or truncated file")))]
pub async fn import(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(batch): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<ImportReportDto>> {
    Ok(axum::Json(
        s.platform.import_results(&c, &batch, &body).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/batches/{batch}/distribution", tag = "production",
    security(("bearer" = [])), params(("batch" = String, Path, description = "B000001")),
    request_body = DistributionRequest,
    responses((status = 200, body = DistributionDto), (status = 409, body = Problem)))]
pub async fn distribute(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(batch): Path<String>,
    Json(b): Json<DistributionRequest>,
) -> ApiResult<axum::Json<DistributionDto>> {
    Ok(axum::Json(
        s.platform
            .distribute_batch(&c, &batch, &b.outlet, b.count)
            .await?
            .into(),
    ))
}
