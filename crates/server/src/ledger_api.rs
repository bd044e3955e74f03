//! The ledger API: a card's balances and the books' recomputation check.

use crate::AppState;
use crate::error::{ApiResult, Problem};
use axum::Extension;
use axum::extract::{Path, State};
use platform::Caller;
use utoipa::ToSchema;

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CardBalancesDto {
    pub number: String,
    /// The platform's shadow of the chip's e-purse, in fen.
    pub epurse_fen: i64,
    /// Owed to the chip, credited at its next contact, in fen.
    pub pending_load_fen: i64,
    /// Held back by pending transfers, in fen.
    pub reserved_fen: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct LedgerCheckDto {
    /// True when every balance equals the sum of its postings and every transfer balances.
    pub ok: bool,
    pub accounts: u64,
    pub transfers: u64,
    pub postings: u64,
    /// The first mismatch found, when not ok.
    pub mismatch: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/cards/{number}/balances", tag = "ledger", security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    responses((status = 200, body = CardBalancesDto), (status = 404, body = Problem)))]
pub async fn card_balances(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
) -> ApiResult<axum::Json<CardBalancesDto>> {
    let b = s.platform.card_balances(&c, &number).await?;
    Ok(axum::Json(CardBalancesDto {
        number: b.number,
        epurse_fen: b.epurse_fen,
        pending_load_fen: b.pending_load_fen,
        reserved_fen: b.reserved_fen,
    }))
}

#[utoipa::path(get, path = "/api/v1/ledger/check", tag = "ledger", security(("bearer" = [])),
    responses((status = 200, body = LedgerCheckDto)))]
pub async fn check(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<LedgerCheckDto>> {
    let r = s.platform.ledger_check().await?;
    s.platform
        .audit(c.draft(
            "ledger.check",
            "ledger",
            format!("ok={}", r.mismatch.is_none()),
        ))
        .await?;
    Ok(axum::Json(LedgerCheckDto {
        ok: r.mismatch.is_none(),
        accounts: r.accounts,
        transfers: r.transfers,
        postings: r.postings,
        mismatch: r.mismatch.map(|m| m.to_string()),
    }))
}
