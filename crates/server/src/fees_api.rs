//! The fee schedule API (手续费率, issue 5): every rule with where it stands in the open
//! clearing window, and adding a rule (a change is a new rule with a later effective date).

use crate::AppState;
use crate::error::{ApiResult, Problem};
use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use platform::Caller;
use platform::fees::{FeeRuleRequest, FeeRuleView};
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/clearing/fees", get(list).post(add))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FeeRuleDto {
    pub id: i64,
    /// category, merchant
    pub scope_kind: String,
    /// The merchant category (transit, shop, …) or the merchant's code.
    pub scope_value: String,
    /// Percentage in basis points: 60 = 0.60 %.
    pub rate_bp: i64,
    /// Fixed fee per transaction, in fen.
    pub fixed_fen: i64,
    /// The first clearing window (by its closing date, YYYY-MM-DD) the rule applies to.
    pub effective_from: String,
    pub created_ms: i64,
    pub created_by: String,
    /// in_force (the rule of its scope in the open window), future, or superseded (a later
    /// rule of its scope is in force).
    pub standing: String,
}

impl From<FeeRuleView> for FeeRuleDto {
    fn from(v: FeeRuleView) -> Self {
        let r = v.rule;
        FeeRuleDto {
            id: r.id,
            scope_kind: r.scope_kind,
            scope_value: r.scope_value,
            rate_bp: r.rate_bp,
            fixed_fen: r.fixed_fen,
            effective_from: r.effective_from,
            created_ms: r.created_ms,
            created_by: r.created_by,
            standing: v.standing.as_str().into(),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FeeScheduleDto {
    /// The open clearing window (its closing date): the day `standing` is told for.
    pub window: String,
    /// Every rule, by scope and effective date. A transaction's fee uses its merchant's rule
    /// in force, else its category's, else none.
    pub rules: Vec<FeeRuleDto>,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct FeeRuleRequestDto {
    /// category or merchant
    pub scope_kind: String,
    /// A merchant category (transit, canteen, shop, hospital, library, utility, taxi, bike,
    /// government) or a registered merchant's code.
    pub scope_value: String,
    /// 0 to 10000 basis points.
    pub rate_bp: i64,
    /// 0 to 100000 fen per transaction.
    pub fixed_fen: i64,
    /// YYYY-MM-DD, not before the open clearing window.
    pub effective_from: String,
}

#[utoipa::path(get, path = "/api/v1/clearing/fees", tag = "clearing",
    security(("bearer" = [])),
    responses((status = 200, body = FeeScheduleDto,
        description = "Every rule, with where it stands in the open clearing window")))]
pub async fn list(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<FeeScheduleDto>> {
    let r = s.platform.fee_rules(&c).await?;
    Ok(axum::Json(FeeScheduleDto {
        window: r.window,
        rules: r.rules.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/clearing/fees", tag = "clearing",
    security(("bearer" = [])), request_body = FeeRuleRequestDto,
    responses((status = 201, body = FeeRuleDto, description = "Added, audited"),
        (status = 422, body = Problem,
            description = "A field is invalid (scope, rate, fixed fee, or a date before the \
            open clearing window); `errors` names it"),
        (status = 409, body = Problem, description = "Its scope has a rule on that day"),
        (status = 413, body = Problem, description = "The schedule is full (FEE_RULES_MAX)")))]
pub async fn add(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    crate::extract::Json(b): crate::extract::Json<FeeRuleRequestDto>,
) -> ApiResult<(StatusCode, axum::Json<FeeRuleDto>)> {
    let rule = s
        .platform
        .fee_rule_add(
            &c,
            &FeeRuleRequest {
                scope_kind: b.scope_kind,
                scope_value: b.scope_value,
                rate_bp: b.rate_bp,
                fixed_fen: b.fixed_fen,
                effective_from: b.effective_from,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(rule.into())))
}
