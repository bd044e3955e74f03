//! The disbursement API (issue 5, 待遇发放): a department officer submits a batch file, a
//! second officer decides (four eyes), the result report per line, the department's funding,
//! and what a citizen received. ID numbers travel in bodies, never in paths.

use crate::AppState;
use crate::error::{ApiResult, Problem};
use crate::extract::{Json, Query};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use ledger::Amount;
use platform::Caller;
use platform::disbursements::{DisbursementLineView, DisbursementView, ReceivedView};
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/disbursements",
            get(list)
                .post(submit)
                .layer(DefaultBodyLimit::max(ledger::disbursement::FILE_BYTES_MAX)),
        )
        .route("/api/v1/disbursements/{id}", get(one))
        .route("/api/v1/disbursements/{id}/lines", get(lines))
        .route("/api/v1/disbursements/{id}/decision", post(decide))
        .route("/api/v1/disbursements/{id}/payment", post(pay))
        .route("/api/v1/departments/{code}/funding", post(fund))
        .route("/api/v1/disbursements/received", post(received))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DisbursementDto {
    pub id: i64,
    /// The department's code (`civil_affairs`).
    pub department: String,
    pub label: String,
    /// submitted, approved, rejected, paid
    pub state: String,
    /// Operator id of the submitting officer.
    pub submitted_by: i64,
    pub submitted_ms: i64,
    /// Operator id of the second officer.
    pub decided_by: Option<i64>,
    pub decided_ms: Option<i64>,
    pub lines: i64,
    pub pending_lines: i64,
    pub paid_lines: i64,
    pub paid_fen: i64,
    pub rejected_lines: i64,
    /// Sum of the lines that were valid at submission, in fen.
    pub total_fen: i64,
}

impl From<DisbursementView> for DisbursementDto {
    fn from(v: DisbursementView) -> Self {
        DisbursementDto {
            id: v.id,
            department: v.department,
            label: v.label,
            state: v.state,
            submitted_by: v.submitted_by,
            submitted_ms: v.submitted_ms,
            decided_by: v.decided_by,
            decided_ms: v.decided_ms,
            lines: v.lines,
            pending_lines: v.pending_lines,
            paid_lines: v.paid_lines,
            paid_fen: v.paid_fen,
            rejected_lines: v.rejected_lines,
            total_fen: v.total_fen,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct SubmittedDto {
    pub batch: DisbursementDto,
    /// False when the same file was submitted before (the existing batch is returned).
    pub created: bool,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DisbursementLineDto {
    /// Line number in the file (the header is line 1).
    pub line: i64,
    /// The recipient's ID number, masked.
    pub recipient: Option<String>,
    pub benefit: Option<String>,
    pub earmark: Option<String>,
    pub amount_fen: i64,
    /// pending, paid, rejected
    pub outcome: String,
    pub reason: Option<String>,
    pub transfer_id: Option<i64>,
}

impl From<DisbursementLineView> for DisbursementLineDto {
    fn from(v: DisbursementLineView) -> Self {
        DisbursementLineDto {
            line: v.line,
            recipient: v.recipient,
            benefit: v.benefit,
            earmark: v.earmark,
            amount_fen: v.amount_fen,
            outcome: v.outcome,
            reason: v.reason,
            transfer_id: v.transfer_id,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ReceivedDto {
    pub batch_id: i64,
    pub department: String,
    pub label: String,
    pub benefit: String,
    /// The benefit's Chinese name (最低生活保障金, …).
    pub benefit_zh: String,
    pub earmark: Option<String>,
    pub amount_fen: i64,
    /// paid or pending
    pub outcome: String,
    pub paid_ms: Option<i64>,
}

impl From<ReceivedView> for ReceivedDto {
    fn from(v: ReceivedView) -> Self {
        ReceivedDto {
            batch_id: v.batch_id,
            department: v.department,
            label: v.label,
            benefit: v.benefit,
            benefit_zh: v.benefit_zh,
            earmark: v.earmark,
            amount_fen: v.amount_fen,
            outcome: v.outcome,
            paid_ms: v.paid_ms,
        }
    }
}

#[derive(serde::Deserialize, IntoParams)]
pub struct SubmitParams {
    /// What the batch is (`2026-11 低保`), 1 to 100 characters.
    pub label: String,
}

#[derive(serde::Deserialize, IntoParams)]
pub struct ListParams {
    /// At most this many batches, newest first (default 50).
    pub limit: Option<u32>,
}

#[derive(serde::Deserialize, IntoParams)]
pub struct LinesParams {
    /// Lines after this line number (default 0).
    pub after: Option<i64>,
    /// At most this many lines (default 500, at most 5,000).
    pub limit: Option<u32>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DecisionRequest {
    /// True approves and pays the batch; false rejects it.
    pub approve: bool,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FundingRequest {
    /// The partner bank where the department's money arrived (`ICBC`).
    pub bank: String,
    /// Fen, more than 0.
    pub amount_fen: i64,
    /// Idempotency key: the same key books once.
    pub key: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FundingDto {
    pub transfer_id: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ReceivedRequest {
    /// The citizen's ID number (in the body, so it never reaches a URL or a log).
    pub id_number: String,
}

#[utoipa::path(post, path = "/api/v1/disbursements", tag = "disbursements",
    security(("bearer" = [])), params(SubmitParams),
    request_body(content = String, content_type = "text/csv",
        description = "id_number,amount,benefit[,earmark] (ledger::disbursement)"),
    responses((status = 201, body = SubmittedDto, description = "A new batch"),
        (status = 200, body = SubmittedDto, description = "The same file was submitted before"),
        (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn submit(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<SubmitParams>,
    body: Bytes,
) -> ApiResult<(StatusCode, axum::Json<SubmittedDto>)> {
    let (batch, created) = s.platform.submit_disbursement(&c, &q.label, &body).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        axum::Json(SubmittedDto {
            batch: batch.into(),
            created,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/disbursements", tag = "disbursements",
    security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = [DisbursementDto])))]
pub async fn list(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<Vec<DisbursementDto>>> {
    let rows = s.platform.disbursements(&c, q.limit.unwrap_or(50)).await?;
    Ok(axum::Json(rows.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/disbursements/{id}", tag = "disbursements",
    security(("bearer" = [])), params(("id" = i64, Path, description = "Batch id")),
    responses((status = 200, body = DisbursementDto), (status = 404, body = Problem)))]
pub async fn one(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<DisbursementDto>> {
    Ok(axum::Json(s.platform.disbursement(&c, id).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/disbursements/{id}/lines", tag = "disbursements",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Batch id"), LinesParams),
    responses((status = 200, body = [DisbursementLineDto])))]
pub async fn lines(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Query(q): Query<LinesParams>,
) -> ApiResult<axum::Json<Vec<DisbursementLineDto>>> {
    let rows = s
        .platform
        .disbursement_lines(&c, id, q.after.unwrap_or(0), q.limit.unwrap_or(500))
        .await?;
    Ok(axum::Json(rows.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/disbursements/{id}/decision", tag = "disbursements",
    security(("bearer" = [])), params(("id" = i64, Path, description = "Batch id")),
    request_body = DecisionRequest,
    responses((status = 200, body = DisbursementDto),
        (status = 403, body = Problem, description = "The submitter, or another department"),
        (status = 409, body = Problem, description = "Already decided")))]
pub async fn decide(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<DecisionRequest>,
) -> ApiResult<axum::Json<DisbursementDto>> {
    Ok(axum::Json(
        s.platform
            .decide_disbursement(&c, id, b.approve)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/disbursements/{id}/payment", tag = "disbursements",
    security(("bearer" = [])), params(("id" = i64, Path, description = "Batch id")),
    responses((status = 200, body = DisbursementDto, description = "Pending lines paid \
        (resumes an interrupted payment; nothing is paid twice)"),
        (status = 409, body = Problem)))]
pub async fn pay(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<DisbursementDto>> {
    Ok(axum::Json(
        s.platform.pay_disbursement(&c, id).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/departments/{code}/funding", tag = "disbursements",
    security(("bearer" = [])),
    params(("code" = String, Path, description = "Department code (civil_affairs)")),
    request_body = FundingRequest,
    responses((status = 200, body = FundingDto), (status = 422, body = Problem)))]
pub async fn fund(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
    Json(b): Json<FundingRequest>,
) -> ApiResult<axum::Json<FundingDto>> {
    if b.amount_fen <= 0 {
        return Err(platform::PlatformError::invalid("amount_fen", "more than 0").into());
    }
    let id = s
        .platform
        .fund_department(&c, &code, &b.bank, Amount(b.amount_fen), &b.key)
        .await?;
    Ok(axum::Json(FundingDto { transfer_id: id }))
}

#[utoipa::path(post, path = "/api/v1/disbursements/received", tag = "disbursements",
    security(("bearer" = [])), request_body = ReceivedRequest,
    responses((status = 200, body = [ReceivedDto]), (status = 404, body = Problem)))]
pub async fn received(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<ReceivedRequest>,
) -> ApiResult<axum::Json<Vec<ReceivedDto>>> {
    let rows = s.platform.resident_disbursements(&c, &b.id_number).await?;
    Ok(axum::Json(rows.into_iter().map(Into::into).collect()))
}
