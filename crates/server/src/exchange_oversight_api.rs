//! The exchange's oversight API and the citizen's consents (issue 8, items 4 and 8): the access
//! log searched by every filter, consent counts, and one citizen's consents with their state.
//! ID numbers only in bodies.

use crate::AppState;
use crate::error::{ApiResult, Problem};
use crate::exchange_api::AccessDto;
use crate::extract::Json;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Router};
use platform::Caller;
use platform::exchange_oversight::{AccessSearch, CitizenConsent};
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/exchange/access/search", post(search))
        .route("/api/v1/exchange/consents/stats", get(consent_stats))
        .route("/api/v1/residents/consents", post(citizen_consents))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema, Default)]
pub struct AccessSearchRequest {
    pub consumer: Option<String>,
    pub service: Option<String>,
    /// The citizen the calls were about (the search is audited under their record).
    pub id_number: Option<String>,
    /// delivered, refused, failed
    pub outcome: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until_ms: Option<i64>,
    /// Paging: only rows with a smaller id.
    pub before_id: Option<i64>,
    /// At most 1000; 100 when absent.
    pub limit: Option<u32>,
}

#[utoipa::path(post, path = "/api/v1/exchange/access/search", tag = "exchange",
    security(("bearer" = [])), request_body = AccessSearchRequest,
    responses((status = 200, body = [AccessDto], description = "Matching calls, newest first"),
        (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn search(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<AccessSearchRequest>,
) -> ApiResult<axum::Json<Vec<AccessDto>>> {
    let rows = s
        .platform
        .exchange_access_search(
            &c,
            &AccessSearch {
                consumer: b.consumer,
                service: b.service,
                id_number: b.id_number,
                outcome: b.outcome,
                from_ms: b.from_ms,
                until_ms: b.until_ms,
                before_id: b.before_id,
                limit: b.limit.unwrap_or(100),
            },
        )
        .await?;
    Ok(axum::Json(rows.into_iter().map(Into::into).collect()))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ConsentStatDto {
    pub consumer: String,
    pub service: String,
    pub active: u64,
    pub revoked: u64,
    pub expired: u64,
}

#[utoipa::path(get, path = "/api/v1/exchange/consents/stats", tag = "exchange",
    security(("bearer" = [])),
    responses((status = 200, body = [ConsentStatDto], description = "Consents per consumer and service by state"),
        (status = 403, body = Problem)))]
pub async fn consent_stats(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<Vec<ConsentStatDto>>> {
    let rows = s.platform.exchange_consent_stats(&c).await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|r| ConsentStatDto {
                consumer: r.consumer,
                service: r.service,
                active: r.active,
                revoked: r.revoked,
                expired: r.expired,
            })
            .collect(),
    ))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CitizenRequest {
    pub id_number: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CitizenConsentDto {
    pub id: i64,
    pub consumer: String,
    pub consumer_name: String,
    pub service: String,
    pub service_name: String,
    pub purpose: String,
    /// portal, app, counter, operator
    pub channel: String,
    pub given_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
    /// active, revoked, expired
    pub state: String,
}

impl From<CitizenConsent> for CitizenConsentDto {
    fn from(c: CitizenConsent) -> Self {
        CitizenConsentDto {
            id: c.id,
            consumer: c.consumer,
            consumer_name: c.consumer_name,
            service: c.service,
            service_name: c.service_name,
            purpose: c.purpose,
            channel: c.channel,
            given_ms: c.given_ms,
            expires_ms: c.expires_ms,
            revoked_ms: c.revoked_ms,
            state: c.state.as_str().into(),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/residents/consents", tag = "exchange",
    security(("bearer" = [])), request_body = CitizenRequest,
    responses((status = 200, body = [CitizenConsentDto], description = "The citizen's consents, newest first, with their state"),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn citizen_consents(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<CitizenRequest>,
) -> ApiResult<axum::Json<Vec<CitizenConsentDto>>> {
    let rows = s
        .platform
        .exchange_citizen_consents(&c, &b.id_number)
        .await?;
    Ok(axum::Json(rows.into_iter().map(Into::into).collect()))
}
