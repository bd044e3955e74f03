//! The money movements API (issue 5): top-ups through the bank channel, e-purse loads with
//! MAC2 and TAC, online payments and fees, refunds and reversals.
//!
//! Roles (checked again in the platform): top-ups and loads are counter work (counter clerk,
//! administrator); payments, refunds and reversals belong to the clearing officer and the
//! administrator until terminals authenticate themselves (issue 6); fees are also taken at
//! the counter; sweeps and load resolutions are the clearing officer's.

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Json;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use platform::Caller;
use platform::money::{
    FeeRequest, LoadEvidence, LoadRequest, LoadView, Payer, PaymentRequest, PaymentView,
    RefundView, TopUpRequest, TopUpView,
};
use utoipa::ToSchema;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/v1/residents/{id_number}/topups", post(topup))
        .route("/api/v1/topups/resolve", post(topups_resolve))
        .route("/api/v1/topups/{order_id}", get(topup_get))
        .route("/api/v1/cards/{number}/loads", post(load_authorize))
        .route("/api/v1/loads/{id}", get(load_get))
        .route("/api/v1/loads/{id}/confirm", post(load_confirm))
        .route("/api/v1/loads/{id}/resolve", post(load_resolve))
        .route("/api/v1/payments", post(pay))
        .route("/api/v1/payments/{id}", get(payment_get))
        .route("/api/v1/payments/{id}/refunds", post(refund))
        .route("/api/v1/payments/{id}/reversal", post(reverse))
        .route("/api/v1/fees", post(fee))
}

#[derive(serde::Deserialize, ToSchema)]
pub struct TopUpBody {
    /// The caller's name for this top-up: the same key again is the same top-up.
    pub idempotency_key: String,
    pub amount_fen: i64,
    /// The citizen's bank card or account, 12 to 19 digits (stored masked).
    pub bank_account: String,
    /// The payment channel's code; the default channel when absent.
    pub channel: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct TopUpDto {
    pub id: i64,
    /// Our order id at the bank.
    pub order_id: String,
    /// pending (the bank has not answered; resolved by the sweep), succeeded, failed
    pub state: String,
    pub amount_fen: i64,
    pub channel: String,
    /// Masked bank account.
    pub account: String,
    pub bank_ref: Option<String>,
    /// Why the bank refused (insufficient_funds, declined, not_received, …).
    pub reason: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl From<TopUpView> for TopUpDto {
    fn from(v: TopUpView) -> Self {
        TopUpDto {
            id: v.id,
            order_id: v.order_id,
            state: v.state,
            amount_fen: v.amount_fen,
            channel: v.channel,
            account: v.account,
            bank_ref: v.bank_ref,
            reason: v.reason,
            created_ms: v.created_ms,
            updated_ms: v.updated_ms,
        }
    }
}

#[derive(serde::Deserialize, ToSchema)]
pub struct SweepBody {
    /// Only top-ups pending at least this long (default 0).
    pub min_age_ms: Option<i64>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct SweepDto {
    pub asked: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub still_pending: u64,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct LoadBody {
    pub idempotency_key: String,
    pub amount_fen: i64,
    /// The card's answer to INITIALIZE FOR LOAD, 16 bytes in hex.
    pub initialize_response: String,
    /// The load terminal, 12 digits.
    pub terminal_id: String,
    /// YYYYMMDD, as the terminal will send it in CREDIT FOR LOAD.
    pub date: String,
    /// hhmmss.
    pub time: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct LoadDto {
    pub id: i64,
    pub card_number: String,
    pub amount_fen: i64,
    /// authorized (MAC2 issued, waiting for the TAC), completed, returned
    pub state: String,
    pub balance_before_fen: u32,
    pub online_counter: u16,
    /// MAC2 for CREDIT FOR LOAD, hex; only while authorized.
    pub mac2: Option<String>,
    /// confirmed, counter, balance, tac
    pub resolution: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// In the answer to a load's authorization: the card has a chip update pending (its card
    /// type changed in the record), so the terminal, with the card still in its field, should
    /// run a contact (`POST /api/v1/cards/{number}/contact`). False elsewhere.
    #[serde(default)]
    pub chip_update_pending: bool,
}

impl From<LoadView> for LoadDto {
    fn from(v: LoadView) -> Self {
        LoadDto {
            id: v.id,
            card_number: v.card_number,
            amount_fen: v.amount_fen,
            state: v.state,
            balance_before_fen: v.balance_before_fen,
            online_counter: v.online_counter,
            mac2: v.mac2,
            resolution: v.resolution,
            created_ms: v.created_ms,
            updated_ms: v.updated_ms,
            chip_update_pending: false,
        }
    }
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ConfirmBody {
    /// The card's TAC from CREDIT FOR LOAD, 4 bytes in hex.
    pub tac: String,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ResolveBody {
    /// The card's online counter seen at a later contact.
    pub online_counter: Option<u16>,
    /// The card's e-purse balance seen at a later contact, before any purchase.
    pub balance_fen: Option<u32>,
    /// The TAC of the CREDIT, recovered later, hex.
    pub tac: Option<String>,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct PaymentBody {
    pub idempotency_key: String,
    /// The paying card (its e-code); exactly one of card_number and id_number.
    pub card_number: Option<String>,
    /// The paying resident at a counter.
    pub id_number: Option<String>,
    pub merchant: String,
    pub amount_fen: i64,
    /// The merchant's order number; no personal data.
    pub reference: String,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct FeeBody {
    pub idempotency_key: String,
    pub card_number: Option<String>,
    pub id_number: Option<String>,
    /// The collecting department's code.
    pub department: String,
    /// The fee item (vehicle_tax, passport_fee, …).
    pub item: String,
    pub amount_fen: i64,
    pub reference: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct RefundDto {
    pub id: i64,
    /// refund or reversal
    pub kind: String,
    pub payment_id: i64,
    pub amount_fen: i64,
    pub reason: String,
    pub created_ms: i64,
}

impl From<RefundView> for RefundDto {
    fn from(v: RefundView) -> Self {
        RefundDto {
            id: v.id,
            kind: v.kind,
            payment_id: v.payment_id,
            amount_fen: v.amount_fen,
            reason: v.reason,
            created_ms: v.created_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct PaymentDto {
    pub id: i64,
    /// payment or fee
    pub kind: String,
    /// The merchant or department paid.
    pub payee: String,
    pub item: Option<String>,
    pub amount_fen: i64,
    /// Given back so far by refunds and a reversal.
    pub returned_fen: i64,
    /// paid or reversed
    pub state: String,
    pub reference: String,
    pub card_number: Option<String>,
    pub created_ms: i64,
    /// Refunds and the reversal (only on GET).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returns: Vec<RefundDto>,
}

impl From<PaymentView> for PaymentDto {
    fn from(v: PaymentView) -> Self {
        PaymentDto {
            id: v.id,
            kind: v.kind,
            payee: v.payee,
            item: v.item,
            amount_fen: v.amount_fen,
            returned_fen: v.returned_fen,
            state: v.state,
            reference: v.reference,
            card_number: v.card_number,
            created_ms: v.created_ms,
            returns: Vec::new(),
        }
    }
}

#[derive(serde::Deserialize, ToSchema)]
pub struct RefundBody {
    pub idempotency_key: String,
    pub amount_fen: i64,
    pub reason: String,
}

fn payer(card: Option<String>, id: Option<String>) -> ApiResult<Payer> {
    match (card, id) {
        (Some(c), None) => Ok(Payer::Card(c)),
        (None, Some(i)) => Ok(Payer::IdNumber(i)),
        _ => Err(ApiError::Platform(platform::PlatformError::invalid(
            "payer",
            "give exactly one of card_number and id_number",
        ))),
    }
}

pub(crate) fn hex4(field: &str, s: &str) -> ApiResult<[u8; 4]> {
    let bytes = hex::decode(s)
        .ok()
        .filter(|b| b.len() == 4)
        .ok_or_else(|| {
            ApiError::Platform(platform::PlatformError::invalid(
                field,
                "must be 4 bytes in hex (8 hex digits)",
            ))
        })?;
    Ok([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[utoipa::path(post, path = "/api/v1/residents/{id_number}/topups", tag = "money", security(("bearer" = [])),
    params(("id_number" = String, Path, description = "The resident's ID number")),
    request_body = TopUpBody,
    responses((status = 201, description = "The bank answered: succeeded or failed", body = TopUpDto),
        (status = 202, description = "The bank did not answer in time: pending", body = TopUpDto),
        (status = 409, body = Problem)))]
/// Tops up the resident's online account from their bank account (充值).
pub async fn topup(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id_number): Path<String>,
    Json(b): Json<TopUpBody>,
) -> ApiResult<(StatusCode, axum::Json<TopUpDto>)> {
    let v = s
        .platform
        .topup(
            &c,
            &TopUpRequest {
                key: b.idempotency_key,
                id_number,
                amount_fen: b.amount_fen,
                bank_account: b.bank_account,
                channel: b.channel,
            },
        )
        .await?;
    let status = if v.state == platform::money::TOPUP_PENDING {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(v.into())))
}

#[utoipa::path(get, path = "/api/v1/topups/{order_id}", tag = "money", security(("bearer" = [])),
    params(("order_id" = String, Path, description = "Our order id at the bank")),
    responses((status = 200, body = TopUpDto)))]
pub async fn topup_get(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(order_id): Path<String>,
) -> ApiResult<axum::Json<TopUpDto>> {
    Ok(axum::Json(
        s.platform.topup_by_order(&c, &order_id).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/topups/resolve", tag = "money", security(("bearer" = [])),
    request_body = SweepBody,
    responses((status = 200, body = SweepDto)))]
/// Asks the bank about every pending top-up and applies its answers.
pub async fn topups_resolve(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<SweepBody>,
) -> ApiResult<axum::Json<SweepDto>> {
    let r = s
        .platform
        .resolve_pending_topups(&c, b.min_age_ms.unwrap_or(0))
        .await?;
    Ok(axum::Json(SweepDto {
        asked: r.asked,
        succeeded: r.succeeded,
        failed: r.failed,
        still_pending: r.still_pending,
    }))
}

#[utoipa::path(post, path = "/api/v1/cards/{number}/loads", tag = "money", security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    request_body = LoadBody,
    responses((status = 201, description = "MAC2 issued, the amount held", body = LoadDto),
        (status = 409, body = Problem)))]
/// Authorizes a load (圈存): checks MAC1, holds the amount, issues MAC2.
pub async fn load_authorize(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
    Json(b): Json<LoadBody>,
) -> ApiResult<(StatusCode, axum::Json<LoadDto>)> {
    let init = hex::decode(&b.initialize_response).map_err(|_| {
        ApiError::Platform(platform::PlatformError::invalid(
            "initialize_response",
            "must be hex",
        ))
    })?;
    let v = s
        .platform
        .load_authorize(
            &c,
            &LoadRequest {
                key: b.idempotency_key,
                card_number: number,
                amount_fen: b.amount_fen,
                initialize_response: init,
                terminal_id: b.terminal_id,
                date: b.date,
                time: b.time,
            },
        )
        .await?;
    let chip_update_pending = s.platform.card_chip_update_pending(&v.card_number).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(LoadDto {
            chip_update_pending,
            ..v.into()
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/loads/{id}", tag = "money", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Load id")),
    responses((status = 200, body = LoadDto)))]
pub async fn load_get(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<LoadDto>> {
    Ok(axum::Json(s.platform.load_get(&c, id).await?.into()))
}

#[utoipa::path(post, path = "/api/v1/loads/{id}/confirm", tag = "money", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Load id")),
    request_body = ConfirmBody,
    responses((status = 200, body = LoadDto), (status = 409, body = Problem)))]
/// Confirms a load with the card's TAC: the money reaches the e-purse shadow.
pub async fn load_confirm(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<ConfirmBody>,
) -> ApiResult<axum::Json<LoadDto>> {
    let tac = hex4("tac", &b.tac)?;
    Ok(axum::Json(
        s.platform.load_confirm(&c, id, tac).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/loads/{id}/resolve", tag = "money", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Load id")),
    request_body = ResolveBody,
    responses((status = 200, body = LoadDto), (status = 409, body = Problem)))]
/// Resolves a load whose TAC never came back, by evidence from a later contact.
pub async fn load_resolve(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<ResolveBody>,
) -> ApiResult<axum::Json<LoadDto>> {
    let evidence = match (b.online_counter, b.balance_fen, b.tac) {
        (Some(n), None, None) => LoadEvidence::OnlineCounter(n),
        (None, Some(f), None) => LoadEvidence::Balance(f),
        (None, None, Some(t)) => LoadEvidence::Tac(hex4("tac", &t)?),
        _ => {
            return Err(ApiError::Platform(platform::PlatformError::invalid(
                "evidence",
                "give exactly one of online_counter, balance_fen and tac",
            )));
        }
    };
    Ok(axum::Json(
        s.platform.load_resolve(&c, id, evidence).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/payments", tag = "money", security(("bearer" = [])),
    request_body = PaymentBody,
    responses((status = 201, body = PaymentDto), (status = 409, body = Problem)))]
/// An online payment from the payer's account to a merchant (authorization and capture).
pub async fn pay(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<PaymentBody>,
) -> ApiResult<(StatusCode, axum::Json<PaymentDto>)> {
    let v = s
        .platform
        .pay(
            &c,
            &PaymentRequest {
                key: b.idempotency_key,
                payer: payer(b.card_number, b.id_number)?,
                merchant: b.merchant,
                amount_fen: b.amount_fen,
                reference: b.reference,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[utoipa::path(post, path = "/api/v1/fees", tag = "money", security(("bearer" = [])),
    request_body = FeeBody,
    responses((status = 201, body = PaymentDto), (status = 409, body = Problem)))]
/// A fee or tax paid from the payer's account to a department's collection account.
pub async fn fee(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<FeeBody>,
) -> ApiResult<(StatusCode, axum::Json<PaymentDto>)> {
    let v = s
        .platform
        .pay_fee(
            &c,
            &FeeRequest {
                key: b.idempotency_key,
                payer: payer(b.card_number, b.id_number)?,
                department: b.department,
                item: b.item,
                amount_fen: b.amount_fen,
                reference: b.reference,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[utoipa::path(get, path = "/api/v1/payments/{id}", tag = "money", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Payment id")),
    responses((status = 200, body = PaymentDto)))]
pub async fn payment_get(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<PaymentDto>> {
    let (p, returns) = s.platform.payment_get(&c, id).await?;
    let mut dto: PaymentDto = p.into();
    dto.returns = returns.into_iter().map(Into::into).collect();
    Ok(axum::Json(dto))
}

#[utoipa::path(post, path = "/api/v1/payments/{id}/refunds", tag = "money", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Payment id")),
    request_body = RefundBody,
    responses((status = 201, body = RefundDto), (status = 409, body = Problem)))]
/// Refunds part of a payment; refunds together never exceed what was paid.
pub async fn refund(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<RefundBody>,
) -> ApiResult<(StatusCode, axum::Json<RefundDto>)> {
    let v = s
        .platform
        .refund(&c, id, &b.idempotency_key, b.amount_fen, &b.reason)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[utoipa::path(post, path = "/api/v1/payments/{id}/reversal", tag = "money", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Payment id")),
    responses((status = 200, body = RefundDto), (status = 409, body = Problem)))]
/// Reverses a payment: returns everything not yet refunded, once.
pub async fn reverse(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<RefundDto>> {
    Ok(axum::Json(s.platform.reverse(&c, id).await?.into()))
}
