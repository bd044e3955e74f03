//! The phone app's points, credit and message read state (issue 9, items 5 to 7) under
//! `/api/v1/me/…`: the citizen's own points with what they can be spent on, redemption and
//! donation; credit opt-in and opt-out, the score with its explanation, its history and
//! disputes; marking a message read. Nothing here names a citizen: the bearer token does.

use crate::AppState;
use crate::error::{ApiResult, Problem};
use crate::extract::Json;
use crate::points_api::{
    ChangedDto, CreditDto, DisputeDto, EntryDto, HistoryDto, PointsDto, PointsItemDto, ProjectDto,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use platform::citizens::Citizen;
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/points", get(points))
        .route("/api/v1/me/points/redemptions", post(redeem))
        .route("/api/v1/me/points/donations", post(donate))
        .route("/api/v1/me/credit", get(credit))
        .route("/api/v1/me/credit/history", get(history))
        .route("/api/v1/me/credit/opt-in", post(opt_in))
        .route("/api/v1/me/credit/opt-out", post(opt_out))
        .route(
            "/api/v1/me/credit/disputes",
            get(disputes).post(dispute_open),
        )
        .route("/api/v1/me/messages/{id}/read", post(message_read))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct MyPointsDto {
    pub points: PointsDto,
    /// Catalogue items still offered.
    pub catalogue: Vec<PointsItemDto>,
    /// Charity projects open to donations.
    pub projects: Vec<ProjectDto>,
}

#[utoipa::path(get, path = "/api/v1/me/points", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = MyPointsDto)))]
/// My points: balance, totals, what expires within 30 days, recent entries, and what I can
/// redeem or donate them to.
pub async fn points(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<MyPointsDto>> {
    let v = s.platform.citizen_points(&c).await?;
    let (items, projects) = s.platform.citizen_points_offers(&c).await?;
    Ok(axum::Json(MyPointsDto {
        points: v.into(),
        catalogue: items.into_iter().map(Into::into).collect(),
        projects: projects.into_iter().map(Into::into).collect(),
    }))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct MyRedeemBody {
    /// A catalogue item's code.
    pub item: String,
    /// The app's id of this request: a repeat answers the first.
    pub request_id: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct MyDonateBody {
    /// A charity project's code.
    pub project: String,
    pub points: i64,
    /// The app's id of this request: a repeat answers the first.
    pub request_id: String,
}

#[utoipa::path(post, path = "/api/v1/me/points/redemptions", tag = "citizen", security(("bearer" = [])),
    request_body = MyRedeemBody,
    responses((status = 200, body = EntryDto),
        (status = 404, body = Problem, description = "No such item"),
        (status = 409, body = Problem, description = "Too few points, points expired, or the item is no longer offered")))]
/// Redeem a catalogue item with my points, once per request id.
pub async fn redeem(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Json(b): Json<MyRedeemBody>,
) -> ApiResult<axum::Json<EntryDto>> {
    let v = s
        .platform
        .citizen_points_redeem(&c, &b.item, &b.request_id)
        .await?;
    Ok(axum::Json(v.into()))
}

#[utoipa::path(post, path = "/api/v1/me/points/donations", tag = "citizen", security(("bearer" = [])),
    request_body = MyDonateBody,
    responses((status = 200, body = EntryDto),
        (status = 404, body = Problem, description = "No such project"),
        (status = 409, body = Problem, description = "Too few points or the project is closed")))]
/// Donate my points to a charity project, once per request id.
pub async fn donate(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Json(b): Json<MyDonateBody>,
) -> ApiResult<axum::Json<EntryDto>> {
    let v = s
        .platform
        .citizen_points_donate(&c, &b.project, b.points, &b.request_id)
        .await?;
    Ok(axum::Json(v.into()))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct MyCreditDto {
    pub opted_in: bool,
    /// When I opted in.
    pub opted_in_ms: Option<i64>,
    /// Today's score with every factor explained; absent when not opted in (nothing is
    /// recorded or scored then).
    pub score: Option<CreditDto>,
}

#[utoipa::path(get, path = "/api/v1/me/credit", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = MyCreditDto)))]
/// My credit service: whether I opted in and, if so, today's score with its explanation.
pub async fn credit(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<MyCreditDto>> {
    let v = s.platform.citizen_credit(&c).await?;
    Ok(axum::Json(MyCreditDto {
        opted_in: v.opted_in_ms.is_some(),
        opted_in_ms: v.opted_in_ms,
        score: v.score.map(Into::into),
    }))
}

#[utoipa::path(get, path = "/api/v1/me/credit/history", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = [HistoryDto]),
        (status = 409, body = Problem, description = "Not opted in")))]
/// My scores over time, newest first.
pub async fn history(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<Vec<HistoryDto>>> {
    let v = s.platform.citizen_credit_history(&c).await?;
    Ok(axum::Json(
        v.into_iter()
            .map(|h| HistoryDto {
                day: h.day,
                score: h.score,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/me/credit/opt-in", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = ChangedDto)))]
/// Opt in to the credit service.
pub async fn opt_in(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<ChangedDto>> {
    let changed = s.platform.citizen_credit_opt_in(&c).await?;
    Ok(axum::Json(ChangedDto { changed }))
}

#[utoipa::path(post, path = "/api/v1/me/credit/opt-out", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = ChangedDto)))]
/// Opt out of the credit service: my signals, scores and disputes are deleted.
pub async fn opt_out(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<ChangedDto>> {
    let changed = s.platform.citizen_credit_opt_out(&c).await?;
    Ok(axum::Json(ChangedDto { changed }))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct MyDisputeBody {
    /// One of my signals (`score.signals[].id` of `GET /api/v1/me/credit`).
    pub signal_id: i64,
    /// Why it is wrong (1 to 500 characters).
    pub reason: String,
}

#[utoipa::path(get, path = "/api/v1/me/credit/disputes", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = [DisputeDto])))]
/// My disputes and how they were resolved, newest first.
pub async fn disputes(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<Vec<DisputeDto>>> {
    let v = s.platform.citizen_credit_disputes(&c).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/me/credit/disputes", tag = "citizen", security(("bearer" = [])),
    request_body = MyDisputeBody,
    responses((status = 201, body = DisputeDto),
        (status = 404, body = Problem, description = "Not one of my signals"),
        (status = 409, body = Problem, description = "Not opted in, or a dispute about it is open")))]
/// Dispute one of the signals my score is built from.
pub async fn dispute_open(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Json(b): Json<MyDisputeBody>,
) -> ApiResult<(StatusCode, axum::Json<DisputeDto>)> {
    let v = s
        .platform
        .citizen_credit_dispute_open(&c, b.signal_id, &b.reason)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct MessageReadDto {
    /// false: it was read already.
    pub changed: bool,
    /// My unread messages now.
    pub unread: i64,
}

#[utoipa::path(post, path = "/api/v1/me/messages/{id}/read", tag = "citizen", security(("bearer" = [])),
    params(("id" = i64, Path, description = "A message's id from `GET /api/v1/me/messages`")),
    responses((status = 200, body = MessageReadDto), (status = 404, body = Problem)))]
/// Mark one of my messages read.
pub async fn message_read(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<MessageReadDto>> {
    let changed = s.platform.citizen_message_read(&c, id).await?;
    let unread = s.platform.citizen_messages_unread(&c).await?;
    Ok(axum::Json(MessageReadDto { changed, unread }))
}
