//! The clearing API (issue 5.3–5.4): closing a clearing window into its immutable report, and
//! the window's settlement file to the partner bank (ISO 20022 pain.001.001.09).

use crate::AppState;
use crate::error::{ApiResult, Problem};
use crate::extract::Query;
use axum::Extension;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use platform::Caller;
use platform::clearing::WindowReport;
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/clearing/windows/{window}", get(report))
        .route("/api/v1/clearing/windows/{window}/close", post(close))
        .route(
            "/api/v1/clearing/windows/{window}/settlement",
            get(settlement),
        )
        .route(
            "/api/v1/clearing/statements",
            post(import_statement).layer(axum::extract::DefaultBodyLimit::max(
                platform::clearing::STATEMENT_BYTES_MAX,
            )),
        )
        .route("/api/v1/clearing/exceptions", get(exceptions))
        .route("/api/v1/clearing/exceptions/{id}/resolution", post(resolve))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ExceptionDto {
    pub id: i64,
    pub statement_id: String,
    /// amount_mismatch (booked another amount), missing (sent, not booked), unexpected (a
    /// debit that answers no instruction)
    pub kind: String,
    pub end_to_end_id: Option<String>,
    /// The bank's reference of the entry.
    pub reference: Option<String>,
    pub sent_fen: Option<i64>,
    pub booked_fen: Option<i64>,
    /// open, resolved
    pub state: String,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_ms: Option<i64>,
    pub created_ms: i64,
}

impl From<store::ReconciliationExceptionRow> for ExceptionDto {
    fn from(r: store::ReconciliationExceptionRow) -> Self {
        ExceptionDto {
            id: r.id,
            statement_id: r.statement_id,
            kind: r.kind,
            end_to_end_id: r.end_to_end_id,
            reference: r.reference,
            sent_fen: r.sent_fen,
            booked_fen: r.booked_fen,
            state: r.state,
            resolution: r.resolution,
            resolved_by: r.resolved_by,
            resolved_ms: r.resolved_ms,
            created_ms: r.created_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct StatementImportDto {
    pub statement_id: String,
    pub account: String,
    pub entries: i64,
    pub matched: i64,
    pub exceptions: Vec<ExceptionDto>,
    /// Imported before with the same content: nothing recorded again.
    pub already_imported: bool,
}

#[utoipa::path(post, path = "/api/v1/clearing/statements", tag = "clearing",
    security(("bearer" = [])),
    request_body(content = String, content_type = "application/xml",
        description = "The bank's ISO 20022 camt.053 statement of the company's account"),
    responses((status = 200, body = StatementImportDto,
        description = "Matched instructions closed; differences in the exceptions queue"),
        (status = 422, body = Problem, description = "Not a camt.053 statement"),
        (status = 409, body = Problem, description = "Another file under the same statement id"),
        (status = 413, body = Problem)))]
pub async fn import_statement(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<StatementImportDto>> {
    let xml = std::str::from_utf8(&body)
        .map_err(|_| platform::PlatformError::invalid("statement", "not UTF-8 text"))?;
    let r = s.platform.import_statement(&c, xml).await?;
    Ok(axum::Json(StatementImportDto {
        statement_id: r.statement_id,
        account: r.account,
        entries: r.entries,
        matched: r.matched,
        exceptions: r.exceptions.into_iter().map(Into::into).collect(),
        already_imported: r.already_imported,
    }))
}

#[derive(serde::Deserialize, IntoParams)]
pub struct ExceptionsParams {
    /// open or resolved [default: all]
    pub state: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/clearing/exceptions", tag = "clearing",
    security(("bearer" = [])), params(ExceptionsParams),
    responses((status = 200, body = [ExceptionDto], description = "The queue, oldest first")))]
pub async fn exceptions(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<ExceptionsParams>,
) -> ApiResult<axum::Json<Vec<ExceptionDto>>> {
    Ok(axum::Json(
        s.platform
            .reconciliation_exceptions(&c, q.state.as_deref())
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ResolutionDto {
    /// What was done (at most 500 characters).
    pub resolution: String,
}

#[utoipa::path(post, path = "/api/v1/clearing/exceptions/{id}/resolution", tag = "clearing",
    security(("bearer" = [])), params(("id" = i64, Path, description = "The exception")),
    request_body = ResolutionDto,
    responses((status = 200, body = ExceptionDto, description = "Resolved, audited"),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "Already resolved")))]
pub async fn resolve(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    crate::extract::Json(b): crate::extract::Json<ResolutionDto>,
) -> ApiResult<axum::Json<ExceptionDto>> {
    Ok(axum::Json(
        s.platform
            .resolve_exception(&c, id, &b.resolution)
            .await?
            .into(),
    ))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ReportLineDto {
    pub merchant: String,
    pub category: String,
    pub count: i64,
    pub gross_fen: i64,
    pub fee_fen: i64,
    pub net_fen: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct WindowReportDto {
    /// The window's closing date.
    pub window: String,
    pub closed_ms: i64,
    pub closed_by: String,
    /// SM3 over the report's lines.
    pub digest: String,
    pub gross_fen: i64,
    pub fee_fen: i64,
    pub net_fen: i64,
    pub lines: Vec<ReportLineDto>,
}

impl From<WindowReport> for WindowReportDto {
    fn from(r: WindowReport) -> Self {
        WindowReportDto {
            window: r.window,
            closed_ms: r.closed_ms,
            closed_by: r.closed_by,
            digest: r.digest,
            gross_fen: r.gross_fen,
            fee_fen: r.fee_fen,
            net_fen: r.net_fen,
            lines: r
                .lines
                .into_iter()
                .map(|l| ReportLineDto {
                    merchant: l.merchant,
                    category: l.category,
                    count: l.count,
                    gross_fen: l.gross_fen,
                    fee_fen: l.fee_fen,
                    net_fen: l.net_fen,
                })
                .collect(),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/clearing/windows/{window}/close", tag = "clearing",
    security(("bearer" = [])), params(("window" = String, Path, description = "YYYY-MM-DD")),
    responses((status = 200, body = WindowReportDto, description = "The report, written once"),
        (status = 409, body = Problem, description = "The window has not ended")))]
pub async fn close(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(window): Path<String>,
) -> ApiResult<axum::Json<WindowReportDto>> {
    Ok(axum::Json(
        s.platform.close_window(&c, &window).await?.into(),
    ))
}

#[utoipa::path(get, path = "/api/v1/clearing/windows/{window}", tag = "clearing",
    security(("bearer" = [])), params(("window" = String, Path, description = "YYYY-MM-DD")),
    responses((status = 200, body = WindowReportDto), (status = 404, body = Problem)))]
pub async fn report(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(window): Path<String>,
) -> ApiResult<axum::Json<WindowReportDto>> {
    Ok(axum::Json(
        s.platform.window_report(&c, &window).await?.into(),
    ))
}

#[derive(serde::Deserialize, IntoParams)]
pub struct SettlementParams {
    /// When the bank executes the transfers (YYYY-MM-DD).
    pub execution_date: String,
}

#[utoipa::path(get, path = "/api/v1/clearing/windows/{window}/settlement", tag = "clearing",
    security(("bearer" = [])),
    params(("window" = String, Path, description = "YYYY-MM-DD"), SettlementParams),
    responses((status = 200, content_type = "application/xml", body = String,
        description = "ISO 20022 pain.001.001.09; merchants without a registration are named \
        in the x-left-out header"), (status = 404, body = Problem)))]
pub async fn settlement(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(window): Path<String>,
    Query(q): Query<SettlementParams>,
) -> ApiResult<Response> {
    let day = platform::production::parse_day(&q.execution_date)?;
    let (xml, left_out) = s.platform.settlement_file(&c, &window, day).await?;
    let left = left_out.join(",");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/xml; charset=utf-8".to_string(),
            ),
            (
                header::HeaderName::from_static("x-left-out"),
                left.chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ',')
                    .collect(),
            ),
        ],
        xml,
    )
        .into_response())
}
