//! Points and the credit service over HTTP (issue 9 items 6 and 7): earning rules, the
//! catalogue and charity projects; use events (rides, library loans, volunteer hours from
//! civil affairs); a citizen's points, redemption and donation; the expiry run; credit opt-in
//! and opt-out, the score with its explanation and history, signals from transit operators and
//! libraries, disputes and their resolution. ID numbers travel in request bodies, never in a
//! URL. The citizen portal and app call the same platform functions.

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use platform::Caller;
use platform::credit::{CreditView, DisputeView};
use platform::points::{EarnResult, EntryView, PointsView};
use store::points::{CharityProjectRow, PointsItemRow, PointsRuleRow};
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/points/rules", get(rules).post(rule_set))
        .route("/api/v1/points/catalogue", get(items).post(item_set))
        .route("/api/v1/points/projects", get(projects).post(project_set))
        .route("/api/v1/points/events", post(event))
        .route("/api/v1/points/of-citizen", post(of_citizen))
        .route("/api/v1/points/redemptions", post(redeem))
        .route("/api/v1/points/donations", post(donate))
        .route("/api/v1/points/expiry", post(expiry))
        .route("/api/v1/credit/opt-in", post(opt_in))
        .route("/api/v1/credit/opt-out", post(opt_out))
        .route("/api/v1/credit/score", post(score))
        .route("/api/v1/credit/history", post(history))
        .route("/api/v1/credit/signals", post(signal))
        .route("/api/v1/credit/disputes", get(disputes).post(dispute_open))
        .route(
            "/api/v1/credit/disputes/{id}/resolution",
            post(dispute_resolve),
        )
}

// -- points: rules, catalogue, projects --------------------------------------------------------

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct PointsRuleDto {
    /// ride, library_loan, bill_on_time or volunteer_hour
    pub kind: String,
    pub points_per_unit: i64,
    /// At most this many points of this kind per citizen and day.
    pub daily_cap: i64,
    /// Points expire this many days after the day they were earned.
    pub validity_days: i64,
    pub active: bool,
}

impl From<PointsRuleRow> for PointsRuleDto {
    fn from(r: PointsRuleRow) -> Self {
        PointsRuleDto {
            kind: r.kind,
            points_per_unit: r.points_per_unit,
            daily_cap: r.daily_cap,
            validity_days: r.validity_days,
            active: r.active,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct PointsItemDto {
    /// a-z, 0-9, _ or -
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    /// ride_voucher or museum_ticket
    pub kind: String,
    pub cost_points: i64,
    /// false: withdrawn
    pub active: bool,
}

impl From<PointsItemRow> for PointsItemDto {
    fn from(r: PointsItemRow) -> Self {
        PointsItemDto {
            code: r.code,
            name_zh: r.name_zh,
            name_en: r.name_en,
            kind: r.kind,
            cost_points: r.cost_points,
            active: r.active,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ProjectDto {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    /// false: closed to donations
    pub active: bool,
}

impl From<CharityProjectRow> for ProjectDto {
    fn from(r: CharityProjectRow) -> Self {
        ProjectDto {
            code: r.code,
            name_zh: r.name_zh,
            name_en: r.name_en,
            active: r.active,
        }
    }
}

fn earn_kind(s: &str) -> Result<points::EarnKind, ApiError> {
    points::EarnKind::parse(s).ok_or_else(|| {
        platform::PlatformError::invalid(
            "kind",
            "ride, library_loan, bill_on_time or volunteer_hour",
        )
        .into()
    })
}

#[utoipa::path(get, path = "/api/v1/points/rules", tag = "points",
    security(("bearer" = [])), responses((status = 200, body = [PointsRuleDto])))]
/// The earning rules, one per kind of use.
pub async fn rules(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<Vec<PointsRuleDto>>> {
    let v = s.platform.points_rules(&c).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/points/rules", tag = "points",
    security(("bearer" = [])), request_body = PointsRuleDto,
    responses((status = 200, body = PointsRuleDto), (status = 422, body = Problem)))]
/// Replaces one kind's earning rule.
pub async fn rule_set(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<PointsRuleDto>,
) -> ApiResult<axum::Json<PointsRuleDto>> {
    let rule = points::EarnRule {
        kind: earn_kind(&b.kind)?,
        points_per_unit: b.points_per_unit,
        daily_cap: b.daily_cap,
        validity_days: b.validity_days,
        active: b.active,
    };
    Ok(axum::Json(
        s.platform.points_rule_set(&c, rule).await?.into(),
    ))
}

#[utoipa::path(get, path = "/api/v1/points/catalogue", tag = "points",
    security(("bearer" = [])), responses((status = 200, body = [PointsItemDto])))]
/// The redemption catalogue, withdrawn items included.
pub async fn items(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<Vec<PointsItemDto>>> {
    let v = s.platform.points_items(&c).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/points/catalogue", tag = "points",
    security(("bearer" = [])), request_body = PointsItemDto,
    responses((status = 200, body = PointsItemDto), (status = 422, body = Problem)))]
/// Adds or replaces a catalogue item (active false withdraws it).
pub async fn item_set(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<PointsItemDto>,
) -> ApiResult<axum::Json<PointsItemDto>> {
    let kind = points::RewardKind::parse(&b.kind)
        .ok_or_else(|| platform::PlatformError::invalid("kind", "ride_voucher or museum_ticket"))?;
    let item = points::CatalogueItem {
        code: b.code,
        name_zh: b.name_zh,
        name_en: b.name_en,
        kind,
        cost_points: b.cost_points,
        active: b.active,
    };
    Ok(axum::Json(
        s.platform.points_item_set(&c, item).await?.into(),
    ))
}

#[utoipa::path(get, path = "/api/v1/points/projects", tag = "points",
    security(("bearer" = [])), responses((status = 200, body = [ProjectDto])))]
/// Charity projects that take donated points.
pub async fn projects(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<Vec<ProjectDto>>> {
    let v = s.platform.points_projects(&c).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/points/projects", tag = "points",
    security(("bearer" = [])), request_body = ProjectDto,
    responses((status = 200, body = ProjectDto), (status = 422, body = Problem)))]
/// Adds or replaces a charity project (active false closes it).
pub async fn project_set(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<ProjectDto>,
) -> ApiResult<axum::Json<ProjectDto>> {
    let p = points::CharityProject {
        code: b.code,
        name_zh: b.name_zh,
        name_en: b.name_en,
        active: b.active,
    };
    Ok(axum::Json(
        s.platform.points_project_set(&c, p).await?.into(),
    ))
}

// -- points: a citizen's -------------------------------------------------------------------------

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct EventBody {
    /// ride, library_loan or volunteer_hour (bills earn when paid)
    pub kind: String,
    /// The reporter's id of the event: the same id earns once.
    pub event_id: String,
    pub id_number: String,
    /// Rides, loans or hours (1 to 24).
    pub units: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct EarnDto {
    pub key: String,
    pub points: i64,
    /// The day's cap cut the grant.
    pub capped: bool,
    /// The event earned before: the first earning.
    pub duplicate: bool,
    /// YYYY-MM-DD
    pub expires_on: String,
}

impl From<EarnResult> for EarnDto {
    fn from(e: EarnResult) -> Self {
        EarnDto {
            key: e.key,
            points: e.points,
            capped: e.capped,
            duplicate: e.duplicate,
            expires_on: e.expires_on,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct EntryDto {
    pub id: i64,
    /// earn, redeem, donate or expire
    pub op: String,
    /// What earned it (earnings).
    pub kind: Option<String>,
    /// The catalogue item or charity project.
    pub target: Option<String>,
    pub points: i64,
    /// YYYY-MM-DD
    pub day: String,
    pub expires_on: Option<String>,
    pub created_ms: i64,
}

impl From<EntryView> for EntryDto {
    fn from(e: EntryView) -> Self {
        EntryDto {
            id: e.id,
            op: e.op,
            kind: e.kind,
            target: e.target,
            points: e.points,
            day: e.day,
            expires_on: e.expires_on,
            created_ms: e.created_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct PointsDto {
    pub balance: i64,
    pub earned: i64,
    pub redeemed: i64,
    pub donated: i64,
    pub expired: i64,
    /// Points that expire within 30 days unless spent.
    pub expiring_30_days: i64,
    /// Newest first.
    pub entries: Vec<EntryDto>,
}

impl From<PointsView> for PointsDto {
    fn from(v: PointsView) -> Self {
        PointsDto {
            balance: v.balance,
            earned: v.earned,
            redeemed: v.redeemed,
            donated: v.donated,
            expired: v.expired,
            expiring_30_days: v.expiring_30_days,
            entries: v.entries.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CitizenBody {
    pub id_number: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct RedeemBody {
    pub id_number: String,
    /// A catalogue item's code.
    pub item: String,
    /// The caller's id of this request: a repeat answers the first.
    pub request_id: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DonateBody {
    pub id_number: String,
    pub project: String,
    pub points: i64,
    pub request_id: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ExpiryDto {
    pub residents: u64,
    pub points: i64,
}

#[utoipa::path(post, path = "/api/v1/points/events", tag = "points",
    security(("bearer" = [])), request_body = EventBody,
    responses((status = 200, body = EarnDto), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
/// A use that earns points: a ride or library loan (clearing officer, for the operator), or
/// volunteer hours (civil affairs). Refused when the day's cap is reached.
pub async fn event(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<EventBody>,
) -> ApiResult<axum::Json<EarnDto>> {
    let kind = earn_kind(&b.kind)?;
    let v = s
        .platform
        .points_report(&c, kind, &b.event_id, &b.id_number, b.units)
        .await?;
    Ok(axum::Json(v.into()))
}

#[utoipa::path(post, path = "/api/v1/points/of-citizen", tag = "points",
    security(("bearer" = [])), request_body = CitizenBody,
    responses((status = 200, body = PointsDto), (status = 404, body = Problem)))]
/// A citizen's points: balance, totals, what expires within 30 days, recent entries.
pub async fn of_citizen(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<CitizenBody>,
) -> ApiResult<axum::Json<PointsDto>> {
    Ok(axum::Json(
        s.platform.points_of(&c, &b.id_number).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/points/redemptions", tag = "points",
    security(("bearer" = [])), request_body = RedeemBody,
    responses((status = 200, body = EntryDto), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
/// Redeems a catalogue item for the citizen, once per request id.
pub async fn redeem(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<RedeemBody>,
) -> ApiResult<axum::Json<EntryDto>> {
    let v = s
        .platform
        .points_redeem(&c, &b.id_number, &b.item, &b.request_id)
        .await?;
    Ok(axum::Json(v.into()))
}

#[utoipa::path(post, path = "/api/v1/points/donations", tag = "points",
    security(("bearer" = [])), request_body = DonateBody,
    responses((status = 200, body = EntryDto), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
/// Donates the citizen's points to a charity project, once per request id.
pub async fn donate(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<DonateBody>,
) -> ApiResult<axum::Json<EntryDto>> {
    let v = s
        .platform
        .points_donate(&c, &b.id_number, &b.project, b.points, &b.request_id)
        .await?;
    Ok(axum::Json(v.into()))
}

#[utoipa::path(post, path = "/api/v1/points/expiry", tag = "points",
    security(("bearer" = [])), responses((status = 200, body = ExpiryDto)))]
/// Runs the daily expiry now (safe to repeat).
pub async fn expiry(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<ExpiryDto>> {
    let r = s.platform.points_expire_run(&c).await?;
    Ok(axum::Json(ExpiryDto {
        residents: r.residents,
        points: r.points,
    }))
}

// -- credit --------------------------------------------------------------------------------------

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ChangedDto {
    /// false: it was so already.
    pub changed: bool,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FactorDto {
    pub kind: String,
    pub count: i64,
    pub points_each: i64,
    pub cap: i64,
    pub contribution: i64,
    pub text_zh: String,
    pub text_en: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct IncentiveDto {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub threshold: i64,
    pub eligible: bool,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct SignalDto {
    pub id: i64,
    pub kind: String,
    pub quantity: i64,
    pub day: String,
    pub source: String,
    /// Struck out by an upheld dispute: shown, not counted.
    pub struck: bool,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CreditDto {
    pub score: i64,
    pub base: i64,
    /// YYYY-MM-DD
    pub day: String,
    /// Every factor, also those that add nothing.
    pub factors: Vec<FactorDto>,
    pub incentives: Vec<IncentiveDto>,
    pub signals: Vec<SignalDto>,
}

impl From<CreditView> for CreditDto {
    fn from(v: CreditView) -> Self {
        CreditDto {
            score: v.score,
            base: v.base,
            day: v.day,
            factors: v
                .factors
                .into_iter()
                .map(|f| FactorDto {
                    kind: f.kind,
                    count: f.count,
                    points_each: f.points_each,
                    cap: f.cap,
                    contribution: f.contribution,
                    text_zh: f.text_zh,
                    text_en: f.text_en,
                })
                .collect(),
            incentives: v
                .incentives
                .into_iter()
                .map(|i| IncentiveDto {
                    code: i.code,
                    name_zh: i.name_zh,
                    name_en: i.name_en,
                    threshold: i.threshold,
                    eligible: i.eligible,
                })
                .collect(),
            signals: v
                .signals
                .into_iter()
                .map(|s| SignalDto {
                    id: s.id,
                    kind: s.kind,
                    quantity: s.quantity,
                    day: s.day,
                    source: s.source,
                    struck: s.struck,
                })
                .collect(),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct HistoryDto {
    pub day: String,
    pub score: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct SignalBody {
    /// fare_evasion, library_return_on_time or library_return_late
    pub kind: String,
    pub event_id: String,
    pub id_number: String,
    /// 1
    pub quantity: Option<i64>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct RecordedDto {
    /// false: already recorded, or the citizen has not opted in.
    pub recorded: bool,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DisputeBody {
    pub id_number: String,
    pub signal_id: i64,
    pub reason: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ResolveBody {
    /// true: the signal is struck out; false: it stays.
    pub uphold: bool,
    pub note: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DisputeDto {
    pub id: i64,
    pub resident_id: i64,
    pub signal_id: i64,
    pub reason: String,
    /// open, upheld or rejected
    pub status: String,
    pub officer: Option<String>,
    pub note: Option<String>,
    pub created_ms: i64,
    pub resolved_ms: Option<i64>,
}

impl From<DisputeView> for DisputeDto {
    fn from(d: DisputeView) -> Self {
        DisputeDto {
            id: d.id,
            resident_id: d.resident_id,
            signal_id: d.signal_id,
            reason: d.reason,
            status: d.status,
            officer: d.officer,
            note: d.note,
            created_ms: d.created_ms,
            resolved_ms: d.resolved_ms,
        }
    }
}

#[derive(serde::Deserialize, IntoParams)]
pub struct DisputeParams {
    /// open, upheld or rejected; all when absent
    pub status: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(post, path = "/api/v1/credit/opt-in", tag = "credit",
    security(("bearer" = [])), request_body = CitizenBody,
    responses((status = 200, body = ChangedDto), (status = 404, body = Problem)))]
/// Opts the citizen in to the credit service.
pub async fn opt_in(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<CitizenBody>,
) -> ApiResult<axum::Json<ChangedDto>> {
    let changed = s.platform.credit_opt_in(&c, &b.id_number).await?;
    Ok(axum::Json(ChangedDto { changed }))
}

#[utoipa::path(post, path = "/api/v1/credit/opt-out", tag = "credit",
    security(("bearer" = [])), request_body = CitizenBody,
    responses((status = 200, body = ChangedDto), (status = 404, body = Problem)))]
/// Opts the citizen out: their signals, scores and disputes are deleted.
pub async fn opt_out(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<CitizenBody>,
) -> ApiResult<axum::Json<ChangedDto>> {
    let changed = s.platform.credit_opt_out(&c, &b.id_number).await?;
    Ok(axum::Json(ChangedDto { changed }))
}

#[utoipa::path(post, path = "/api/v1/credit/score", tag = "credit",
    security(("bearer" = [])), request_body = CitizenBody,
    responses((status = 200, body = CreditDto), (status = 409, body = Problem)))]
/// The citizen's score today with each factor in plain words, the incentives it opens and
/// the signals it is built from; refused (409) when the citizen has not opted in.
pub async fn score(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<CitizenBody>,
) -> ApiResult<axum::Json<CreditDto>> {
    Ok(axum::Json(
        s.platform.credit_score(&c, &b.id_number).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/credit/history", tag = "credit",
    security(("bearer" = [])), request_body = CitizenBody,
    responses((status = 200, body = [HistoryDto]), (status = 409, body = Problem)))]
/// The citizen's scores over time, newest first.
pub async fn history(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<CitizenBody>,
) -> ApiResult<axum::Json<Vec<HistoryDto>>> {
    let v = s.platform.credit_history(&c, &b.id_number).await?;
    Ok(axum::Json(
        v.into_iter()
            .map(|h| HistoryDto {
                day: h.day,
                score: h.score,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/credit/signals", tag = "credit",
    security(("bearer" = [])), request_body = SignalBody,
    responses((status = 200, body = RecordedDto), (status = 422, body = Problem)))]
/// A signal from a transit operator (fare evasion) or a library (a return on time or late);
/// kept only when the citizen opted in.
pub async fn signal(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<SignalBody>,
) -> ApiResult<axum::Json<RecordedDto>> {
    let kind = credit::SignalKind::parse(&b.kind).ok_or_else(|| {
        platform::PlatformError::invalid(
            "kind",
            "fare_evasion, library_return_on_time or library_return_late",
        )
    })?;
    let recorded = s
        .platform
        .credit_report(&c, kind, &b.event_id, &b.id_number, b.quantity.unwrap_or(1))
        .await?;
    Ok(axum::Json(RecordedDto { recorded }))
}

#[utoipa::path(get, path = "/api/v1/credit/disputes", tag = "credit",
    security(("bearer" = [])), params(DisputeParams),
    responses((status = 200, body = [DisputeDto])))]
/// Disputes by status, newest first.
pub async fn disputes(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<DisputeParams>,
) -> ApiResult<axum::Json<Vec<DisputeDto>>> {
    let v = s
        .platform
        .credit_disputes(&c, q.status.as_deref(), q.limit.unwrap_or(100))
        .await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/credit/disputes", tag = "credit",
    security(("bearer" = [])), request_body = DisputeBody,
    responses((status = 201, body = DisputeDto), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
/// The citizen disputes one of their signals.
pub async fn dispute_open(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<DisputeBody>,
) -> ApiResult<(StatusCode, axum::Json<DisputeDto>)> {
    let d = s
        .platform
        .credit_dispute_open(&c, &b.id_number, b.signal_id, &b.reason)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(d.into())))
}

#[utoipa::path(post, path = "/api/v1/credit/disputes/{id}/resolution", tag = "credit",
    security(("bearer" = [])), params(("id" = i64, Path)), request_body = ResolveBody,
    responses((status = 200, body = DisputeDto), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
/// An officer resolves an open dispute, with a note.
pub async fn dispute_resolve(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<ResolveBody>,
) -> ApiResult<axum::Json<DisputeDto>> {
    let d = s
        .platform
        .credit_dispute_resolve(&c, id, b.uphold, &b.note)
        .await?;
    Ok(axum::Json(d.into()))
}
