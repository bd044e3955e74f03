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
