//! The cards API under `/api/v1/cards` (issue 4, first slice): applications, life-cycle
//! actions, card pages and events, and the deny-list's change log.

use crate::AppState;
use crate::error::{ApiResult, Problem};
use crate::extract::{Json, Query};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use platform::Caller;
use platform::cards::{CardRequest, CardView, parse_reason};
use utoipa::{IntoParams, ToSchema};

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CardDto {
    /// 16 digits: 4101 + 00 + sequence + Luhn check digit.
    pub number: String,
    /// applied, approved, in_production, produced, at_outlet, issued, active, reported_lost,
    /// frozen, replaced, cancelled, expired, withdrawn
    pub state: String,
    pub card_type: String,
    pub valid_until_s: Option<i64>,
    pub version: i64,
    /// Masked.
    pub holder_name: String,
    /// Masked.
    pub holder_id_number: String,
    pub updated_ms: i64,
}

impl From<CardView> for CardDto {
    fn from(v: CardView) -> Self {
        CardDto {
            number: v.number,
            state: v.state,
            card_type: v.card_type,
            valid_until_s: v.valid_until_s,
            version: v.version,
            holder_name: v.holder_name,
            holder_id_number: v.holder_id_number,
            updated_ms: v.updated_ms,
        }
    }
}

#[derive(serde::Deserialize, ToSchema)]
pub struct CardApplication {
    pub id_number: String,
    /// ordinary, student, senior, disabled, employee, temporary
    pub card_type: String,
    /// Required for applicants under 16.
    pub guardian_id_number: Option<String>,
    /// counter (default) or online.
    pub channel: Option<String>,
    /// outlet_now (instant issuance), outlet_later (default) or post.
    pub delivery: Option<String>,
    /// The outlet that hands the card over; required for outlet_now, optional for outlet_later.
    pub outlet_code: Option<String>,
    /// Where the photo is kept: `police:<id>` or `upload:<SM3 hex>`.
    pub photo_ref: Option<String>,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct EnrolmentRequest {
    /// The non-resident's ID number (in the resident base database as non_resident).
    pub id_number: String,
    /// GB/T 2260 code of the city that issued the social security card.
    pub issuer_region: String,
    /// That card's number.
    pub ssc_number: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct EnrolmentDto {
    pub id: i64,
    pub issuer_region: String,
    /// Masked to the last four characters.
    pub card_number: String,
    pub created_ms: i64,
    pub withdrawn: bool,
}

impl From<platform::applications::EnrolmentView> for EnrolmentDto {
    fn from(v: platform::applications::EnrolmentView) -> Self {
        EnrolmentDto {
            id: v.id,
            issuer_region: v.issuer_region,
            card_number: v.card_number,
            created_ms: v.created_ms,
            withdrawn: v.withdrawn,
        }
    }
}

#[derive(serde::Deserialize, ToSchema)]
pub struct CardActionRequest {
    /// approve, reject, withdraw, send_to_production, production_done, production_failed,
    /// deliver_to_outlet, post, hand_over, activate, report_lost, undo_lost, freeze, unfreeze,
    /// replace, renew, cancel, expire
    pub action: String,
    /// routine, holder_request, lost, damaged, fraud, renewal, holder_gone, ineligible,
    /// production_failure, lost_period_over, validity_over, cleared
    pub reason: String,
    /// The outlet, for deliver_to_outlet.
    pub outlet: Option<u32>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CardEventDto {
    pub from_state: String,
    pub to_state: String,
    pub action: String,
    pub reason: String,
    pub actor: String,
    pub at_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DenyChangeDto {
    pub version: i64,
    pub number: String,
    /// add or remove
    pub op: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DenyChangesDto {
    /// The list's current version; ask again with `after` = this to get only later changes.
    pub version: i64,
    pub changes: Vec<DenyChangeDto>,
}

#[derive(serde::Deserialize, IntoParams)]
pub struct CardsParams {
    pub state: Option<String>,
    /// Cards with numbers after this one.
    #[serde(default)]
    pub after: String,
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    50
}

#[derive(serde::Deserialize, IntoParams)]
pub struct DenyParams {
    /// Changes after this version (0 for the whole history).
    #[serde(default)]
    pub after: i64,
}

/// Deny-list changes returned by one call.
pub const DENY_CHANGES_MAX: u32 = 100_000;

#[utoipa::path(post, path = "/api/v1/cards", tag = "cards", security(("bearer" = [])),
    request_body = CardApplication,
    responses((status = 201, body = CardDto), (status = 409, body = Problem)))]
pub async fn apply(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<CardApplication>,
) -> ApiResult<(StatusCode, axum::Json<CardDto>)> {
    use platform::applications::{CardApplicationForm, Channel, Delivery};
    let form = CardApplicationForm {
        id_number: b.id_number,
        card_type: b.card_type,
        guardian_id_number: b.guardian_id_number,
        channel: b
            .channel
            .as_deref()
            .map(Channel::parse)
            .transpose()?
            .unwrap_or_default(),
        delivery: b
            .delivery
            .as_deref()
            .map(Delivery::parse)
            .transpose()?
            .unwrap_or_default(),
        outlet_code: b.outlet_code,
        photo_ref: b.photo_ref,
    };
    let v = s.platform.apply_for_card_with(&c, &form).await?;
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[utoipa::path(post, path = "/api/v1/enrolments", tag = "cards", security(("bearer" = [])),
    request_body = EnrolmentRequest,
    responses((status = 201, body = EnrolmentDto), (status = 409, body = Problem)))]
/// Enrols a non-resident for the city's services with another city's social security card.
pub async fn enrol(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<EnrolmentRequest>,
) -> ApiResult<(StatusCode, axum::Json<EnrolmentDto>)> {
    let v = s
        .platform
        .enrol_non_resident(&c, &b.id_number, &b.issuer_region, &b.ssc_number)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[utoipa::path(get, path = "/api/v1/residents/{id_number}/enrolments", tag = "cards",
    security(("bearer" = [])),
    params(("id_number" = String, Path, description = "18-character ID number")),
    responses((status = 200, body = [EnrolmentDto]), (status = 404, body = Problem)))]
/// A resident's service enrolments, card numbers masked.
pub async fn enrolments(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id_number): Path<String>,
) -> ApiResult<axum::Json<Vec<EnrolmentDto>>> {
    let v = s.platform.enrolments(&c, &id_number).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/cards", tag = "cards", security(("bearer" = [])),
    params(CardsParams), responses((status = 200, body = [CardDto])))]
pub async fn list(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<CardsParams>,
) -> ApiResult<axum::Json<Vec<CardDto>>> {
    let v = s
        .platform
        .cards(&c, q.state.as_deref(), &q.after, q.limit)
        .await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/cards/{number}", tag = "cards", security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    responses((status = 200, body = CardDto), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
) -> ApiResult<axum::Json<CardDto>> {
    Ok(axum::Json(s.platform.card(&c, &number).await?.into()))
}

#[utoipa::path(post, path = "/api/v1/cards/{number}/actions", tag = "cards", security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    request_body = CardActionRequest,
    responses((status = 200, body = CardDto), (status = 409, body = Problem)))]
pub async fn act(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
    Json(b): Json<CardActionRequest>,
) -> ApiResult<axum::Json<CardDto>> {
    let request = CardRequest::parse(&b.action, b.outlet)?;
    let reason = parse_reason(&b.reason)?;
    Ok(axum::Json(
        s.platform
            .card_action(&c, &number, request, reason)
            .await?
            .into(),
    ))
}

#[utoipa::path(get, path = "/api/v1/cards/{number}/events", tag = "cards", security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    responses((status = 200, body = [CardEventDto])))]
pub async fn events(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
) -> ApiResult<axum::Json<Vec<CardEventDto>>> {
    // Reading the card first checks it exists and audits the read.
    s.platform.card(&c, &number).await?;
    let rows = s
        .platform
        .store
        .card_events(&number)
        .await
        .map_err(platform::PlatformError::from)?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|e| CardEventDto {
                from_state: e.from_state,
                to_state: e.to_state,
                action: e.action,
                reason: e.reason,
                actor: e.actor,
                at_ms: e.at_ms,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/denylist/changes", tag = "cards", security(("bearer" = [])),
    params(DenyParams), responses((status = 200, body = DenyChangesDto)))]
pub async fn deny_changes(
    State(s): State<AppState>,
    Query(q): Query<DenyParams>,
) -> ApiResult<axum::Json<DenyChangesDto>> {
    let store = &s.platform.store;
    let version = store
        .deny_list_version()
        .await
        .map_err(platform::PlatformError::from)?;
    let changes = store
        .deny_list_changes(q.after, DENY_CHANGES_MAX)
        .await
        .map_err(platform::PlatformError::from)?;
    Ok(axum::Json(DenyChangesDto {
        version,
        changes: changes
            .into_iter()
            .map(|d| DenyChangeDto {
                version: d.version,
                number: d.number,
                op: d.op.as_str().into(),
            })
            .collect(),
    }))
}

/// The header that carries a deny-list download's version.
pub const DENYLIST_VERSION_HEADER: &str = "x-denylist-version";

pub(crate) fn deny_binary(version: i64, bytes: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_string(),
            ),
            (
                axum::http::HeaderName::from_static(DENYLIST_VERSION_HEADER),
                version.to_string(),
            ),
        ],
        bytes,
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/v1/denylist", tag = "cards", security(("bearer" = [])),
    responses((status = 200, content_type = "application/octet-stream", body = String,
        description = "The whole deny-list, SM2-signed (format: issuance::DenyList::encode); \
        its version in the x-denylist-version header")))]
pub async fn deny_full(State(s): State<AppState>) -> ApiResult<axum::response::Response> {
    let (v, bytes) = s.platform.deny_list_full().await?;
    Ok(deny_binary(v, bytes))
}

#[derive(serde::Deserialize, IntoParams)]
pub struct DeltaParams {
    /// The version the terminal holds.
    pub since: i64,
}

#[utoipa::path(get, path = "/api/v1/denylist/delta", tag = "cards", security(("bearer" = [])),
    params(DeltaParams),
    responses((status = 200, content_type = "application/octet-stream", body = String,
        description = "Adds and removes since `since`, SM2-signed (issuance::DenyListDelta)"),
        (status = 409, body = Problem, description = "Nothing changed since `since`")))]
pub async fn deny_delta(
    State(s): State<AppState>,
    Query(q): Query<DeltaParams>,
) -> ApiResult<axum::response::Response> {
    let (v, bytes) = s.platform.deny_list_delta(q.since).await?;
    Ok(deny_binary(v, bytes))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DenyKeyDto {
    /// SEC1 compressed SM2 public key, hex: terminals verify deny-lists with it.
    pub public_key: String,
}

#[utoipa::path(get, path = "/api/v1/denylist/key", tag = "cards", security(("bearer" = [])),
    responses((status = 200, body = DenyKeyDto)))]
pub async fn deny_key(State(s): State<AppState>) -> axum::Json<DenyKeyDto> {
    axum::Json(DenyKeyDto {
        public_key: hex::encode_upper(s.platform.deny_list_public_key()),
    })
}
