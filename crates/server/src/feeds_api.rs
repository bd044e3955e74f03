//! Department feeds pushed as JSON changes and the review queue of held values (issue 8,
//! item 6). ID numbers travel only in bodies.

use crate::AppState;
use crate::api::{ImportReportDto, parse_source};
use crate::error::{ApiResult, Problem};
use crate::extract::{Json, Query};
use axum::Extension;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use platform::feeds::{ResidentChange, ReviewView};
use platform::{Caller, PlatformError};
use sm3::{Digest, Sm3};
use store::ReviewStatus;
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/residents/changes", post(push_changes))
        .route("/api/v1/residents/reviews", get(reviews))
        .route("/api/v1/residents/reviews/{id}/decision", post(decide))
}

#[derive(serde::Deserialize, IntoParams)]
pub struct SourceParam {
    /// The reporting department (`police`, `civil_affairs`, `education`, …).
    pub source: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ResidentChangeDto {
    pub id_number: String,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    /// `resident` or `non_resident`.
    pub residency: Option<String>,
    /// `none`, `minimum_living_allowance`, `extreme_hardship` (civil affairs' field).
    pub assistance: Option<String>,
    /// `enrolled`, `graduated` (education's field).
    pub student: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ChangesRequest {
    /// At most 1,000 changes.
    pub changes: Vec<ResidentChangeDto>,
}

#[utoipa::path(post, path = "/api/v1/residents/changes", tag = "residents",
    security(("bearer" = [])), params(SourceParam), request_body = ChangesRequest,
    responses((status = 200, body = ImportReportDto, description = "The feed's outcome; rejects are numbered from 0 by change"),
        (status = 403, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn push_changes(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<SourceParam>,
    Json(b): Json<ChangesRequest>,
) -> ApiResult<axum::Json<ImportReportDto>> {
    let source = parse_source(&q.source)?;
    // The digest of the changes as received, in their fixed field order.
    let canonical = serde_json::to_vec(&b.changes)
        .map_err(|e| PlatformError::Unexpected(format!("changes: {e}")))?;
    let digest = hex::encode(Sm3::digest(&canonical));
    let changes: Vec<ResidentChange> = b
        .changes
        .into_iter()
        .map(|d| ResidentChange {
            id_number: d.id_number,
            name: d.name,
            phone: d.phone,
            address: d.address,
            residency: d.residency,
            assistance: d.assistance,
            student: d.student,
        })
        .collect();
    let report = s
        .platform
        .push_resident_changes(&c, source, digest, &changes)
        .await?;
    Ok(axum::Json(report.into()))
}

#[derive(serde::Deserialize, IntoParams)]
pub struct ReviewParams {
    /// `pending`, `accepted` or `rejected`; all when absent.
    pub status: Option<String>,
    #[serde(default)]
    pub after: i64,
    pub limit: Option<u32>,
    #[serde(default)]
    pub unmask: bool,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ReviewDto {
    pub id: i64,
    pub resident_id: i64,
    /// Masked unless unmasked.
    pub id_number: String,
    pub field: String,
    pub source: String,
    pub authority: Option<String>,
    pub feed_id: i64,
    pub proposed: String,
    pub current: Option<String>,
    pub status: String,
    pub created_ms: i64,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub note: Option<String>,
}

impl From<ReviewView> for ReviewDto {
    fn from(v: ReviewView) -> Self {
        ReviewDto {
            id: v.id,
            resident_id: v.resident_id,
            id_number: v.id_number,
            field: v.field.as_str().into(),
            source: v.source,
            authority: v.authority.map(|a| a.as_str().into()),
            feed_id: v.feed_id,
            proposed: v.proposed,
            current: v.current,
            status: v.status.as_str().into(),
            created_ms: v.created_ms,
            decided_by: v.decided_by,
            decided_ms: v.decided_ms,
            note: v.note,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/residents/reviews", tag = "residents",
    security(("bearer" = [])), params(ReviewParams),
    responses((status = 200, body = [ReviewDto], description = "Held feed values, oldest first"),
        (status = 403, body = Problem)))]
pub async fn reviews(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<ReviewParams>,
) -> ApiResult<axum::Json<Vec<ReviewDto>>> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(x) => Some(ReviewStatus::parse(x).ok_or_else(|| {
            PlatformError::invalid("status", "one of pending, accepted, rejected")
        })?),
    };
    let rows = s
        .platform
        .feed_reviews(&c, status, q.after, q.limit.unwrap_or(100), q.unmask)
        .await?;
    Ok(axum::Json(rows.into_iter().map(Into::into).collect()))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DecisionRequest {
    /// `accept` or `reject`.
    pub decision: String,
    #[serde(default)]
    pub note: String,
}

#[utoipa::path(post, path = "/api/v1/residents/reviews/{id}/decision", tag = "residents",
    security(("bearer" = [])), params(("id" = i64, Path, description = "review id")),
    request_body = DecisionRequest,
    responses((status = 200, body = ReviewDto), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "Already decided")))]
pub async fn decide(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<DecisionRequest>,
) -> ApiResult<axum::Json<ReviewDto>> {
    let accept = match b.decision.as_str() {
        "accept" => true,
        "reject" => false,
        _ => return Err(PlatformError::invalid("decision", "accept or reject").into()),
    };
    let v = s
        .platform
        .feed_review_decide(&c, id, accept, &b.note)
        .await?;
    Ok(axum::Json(v.into()))
}
