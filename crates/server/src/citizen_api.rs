//! The citizen's API for the phone app (issue 9, items 1 and 3): sign-in with ID number,
//! password and an SMS code (a bearer token of an app session), setting a password with a
//! code, and the portal's functions as JSON under `/api/v1/me/…` — cards and their life
//! cycle, balances, transactions, spending, top-up, benefits, bills, messages, consents and
//! the data tracker, e-code enrolment and certificate renewal, and the host side of an NFC
//! load with the phone as the terminal.

use crate::AppState;
use crate::auth::CitizenToken;
use crate::cards_api::CardDto;
use crate::disbursements_api::ReceivedDto;
use crate::ecode_api::{CertificateDto, CertificateRequestDto, DeviceDto, DeviceEnrolment};
use crate::error::{ApiError, ApiResult, Problem};
use crate::exchange_api::{AccessDto, ConsentDto};
use crate::extract::{Json, Query};
use crate::ledger_api::CardBalancesDto;
use crate::money_api::{ConfirmBody, LoadBody, LoadDto, PaymentDto, TopUpBody, TopUpDto};
use crate::services_api::{AgreementDto, BillDto, CitizenBillsDto, NotificationDto};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use platform::citizen_services::{CitizenCardAction, TxFilter};
use platform::citizens::{ChallengeView, Citizen};
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/citizen/sessions", post(sign_in))
        .route("/api/v1/citizen/sessions/code", post(sign_in_code))
        .route("/api/v1/citizen/password-codes", post(password_code))
        .route("/api/v1/citizen/password", post(password_set))
        .route("/api/v1/me/session", delete(sign_out))
        .route("/api/v1/me/profile", get(profile))
        .route("/api/v1/me/cards", get(cards))
        .route("/api/v1/me/balances", get(balances))
        .route("/api/v1/me/cards/{number}/actions", post(card_action))
        .route("/api/v1/me/transactions", get(transactions))
        .route("/api/v1/me/spending", get(spending))
        .route("/api/v1/me/topups", post(topup))
        .route("/api/v1/me/benefits", get(benefits))
        .route("/api/v1/me/bills", get(bills))
        .route("/api/v1/me/bills/{biller}/{number}/payment", post(bill_pay))
        .route("/api/v1/me/agreements", post(agreement_sign))
        .route(
            "/api/v1/me/agreements/{id}/cancellation",
            post(agreement_cancel),
        )
        .route("/api/v1/me/messages", get(messages))
        .route("/api/v1/me/consents", get(consents))
        .route("/api/v1/me/consents/{id}/revocation", post(consent_revoke))
        .route("/api/v1/me/data-access", get(data_access))
        .route("/api/v1/me/cards/{number}/devices", post(ecode_enrol))
        .route("/api/v1/me/ecode/certificates", post(ecode_certify))
        .route("/api/v1/me/cards/{number}/loads", post(load_authorize))
        .route("/api/v1/me/loads/{id}/confirm", post(load_confirm))
}

#[derive(serde::Deserialize, ToSchema)]
pub struct SignInBody {
    pub id_number: String,
    pub password: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ChallengeDto {
    /// Sent back with the code.
    pub challenge: String,
    pub expires_ms: i64,
    /// Where the code went, masked; absent when unknown.
    pub phone_masked: Option<String>,
}

impl From<ChallengeView> for ChallengeDto {
    fn from(v: ChallengeView) -> Self {
        ChallengeDto {
            challenge: v.challenge,
            expires_ms: v.expires_ms,
            phone_masked: v.phone_masked,
        }
    }
}

#[derive(serde::Deserialize, ToSchema)]
pub struct CodeBody {
    pub challenge: String,
    /// The six digits from the SMS.
    pub code: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CitizenSessionDto {
    /// The app's bearer token for `/api/v1/me/…` (30 days).
    pub token: String,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct IdNumberBody {
    pub id_number: String,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct PasswordBody {
    pub challenge: String,
    pub code: String,
    /// 8 to 128 characters.
    pub password: String,
}

#[utoipa::path(post, path = "/api/v1/citizen/sessions", tag = "citizen", request_body = SignInBody,
    responses((status = 202, description = "Password right: a code was sent by SMS", body = ChallengeDto),
        (status = 401, body = Problem, description = "Wrong ID number or password (`code`: bad_credentials; `detail_zh` in Chinese)"),
        (status = 429, body = Problem, description = "Locked after repeated failures (`code`: locked, rate_limited)")))]
/// Citizen sign-in, step one: ID number and password; an SMS code follows.
pub async fn sign_in(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(b): Json<SignInBody>,
) -> ApiResult<(StatusCode, axum::Json<ChallengeDto>)> {
    let v = s
        .platform
        .citizen_sign_in_start(&b.id_number, &b.password, &addr.ip().to_string())
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(v.into())))
}

#[utoipa::path(post, path = "/api/v1/citizen/sessions/code", tag = "citizen", request_body = CodeBody,
    responses((status = 201, body = CitizenSessionDto),
        (status = 401, body = Problem, description = "Wrong, expired, used or unknown code (`code`: code_wrong, code_expired, code_used, code_unknown, code_exhausted)")))]
/// Citizen sign-in, step two: the SMS code. Answers an app session's bearer token.
pub async fn sign_in_code(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(b): Json<CodeBody>,
) -> ApiResult<(StatusCode, axum::Json<CitizenSessionDto>)> {
    let (token, _) = s
        .platform
        .citizen_sign_in_finish(&b.challenge, &b.code, "app", &addr.ip().to_string())
        .await?;
    Ok((StatusCode::CREATED, axum::Json(CitizenSessionDto { token })))
}

#[utoipa::path(post, path = "/api/v1/citizen/password-codes", tag = "citizen", request_body = IdNumberBody,
    responses((status = 202, description = "A code was sent to the mobile number on file (answered alike for unknown ID numbers)", body = ChallengeDto),
        (status = 401, body = Problem, description = "No mobile number on file (`code`: no_phone)")))]
/// Setting a first or forgotten password, step one: a code to the mobile number on file.
pub async fn password_code(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(b): Json<IdNumberBody>,
) -> ApiResult<(StatusCode, axum::Json<ChallengeDto>)> {
    let v = s
        .platform
        .citizen_password_start(&b.id_number, &addr.ip().to_string())
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(v.into())))
}

#[utoipa::path(post, path = "/api/v1/citizen/password", tag = "citizen", request_body = PasswordBody,
    responses((status = 204, description = "The password is set"), (status = 401, body = Problem)))]
/// Setting a password, step two: the code and the new password.
pub async fn password_set(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(b): Json<PasswordBody>,
) -> ApiResult<StatusCode> {
    s.platform
        .citizen_password_finish(&b.challenge, &b.code, &b.password, &addr.ip().to_string())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/me/session", tag = "citizen", security(("bearer" = [])),
    responses((status = 204, description = "Signed out")))]
pub async fn sign_out(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Extension(t): Extension<CitizenToken>,
) -> ApiResult<StatusCode> {
    s.platform.citizen_sign_out(&c, &t.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ProfileDto {
    pub name_masked: String,
    pub id_number_masked: String,
}

#[utoipa::path(get, path = "/api/v1/me/profile", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = ProfileDto)))]
pub async fn profile(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<ProfileDto>> {
    let p = s.platform.citizen_profile(&c).await?;
    Ok(axum::Json(ProfileDto {
        name_masked: p.name_masked,
        id_number_masked: p.id_number_masked,
    }))
}

#[utoipa::path(get, path = "/api/v1/me/cards", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = [CardDto])))]
/// My cards, newest first.
pub async fn cards(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<Vec<CardDto>>> {
    let v = s.platform.citizen_cards(&c).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct MyBalancesDto {
    pub online_fen: i64,
    pub online_reserved_fen: i64,
    pub cards: Vec<CardBalancesDto>,
}

#[utoipa::path(get, path = "/api/v1/me/balances", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = MyBalancesDto)))]
/// My online account and e-purse balances.
pub async fn balances(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<MyBalancesDto>> {
    let b = s.platform.citizen_balances(&c).await?;
    Ok(axum::Json(MyBalancesDto {
        online_fen: b.online_fen,
        online_reserved_fen: b.online_reserved_fen,
        cards: b
            .cards
            .into_iter()
            .map(|x| CardBalancesDto {
                number: x.number,
                epurse_fen: x.epurse_fen,
                pending_load_fen: x.pending_load_fen,
                reserved_fen: x.reserved_fen,
            })
            .collect(),
    }))
}

#[derive(serde::Deserialize, ToSchema)]
pub struct MyCardActionBody {
    /// report_lost, undo_lost, replace_lost, replace_damaged
    pub action: String,
}

#[utoipa::path(post, path = "/api/v1/me/cards/{number}/actions", tag = "citizen", security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    request_body = MyCardActionBody,
    responses((status = 200, body = CardDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
/// Report my card lost, take the report back, or apply for a replacement.
pub async fn card_action(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Path(number): Path<String>,
    Json(b): Json<MyCardActionBody>,
) -> ApiResult<axum::Json<CardDto>> {
    let action = CitizenCardAction::parse(&b.action)?;
    let v = s.platform.citizen_card_action(&c, &number, action).await?;
    Ok(axum::Json(v.into()))
}

#[derive(serde::Deserialize, IntoParams)]
pub struct TxParams {
    /// `online` or a card number.
    pub account: Option<String>,
    /// A transfer kind: top_up, load, purchase, payment, fee, refund, disbursement, …
    pub kind: Option<String>,
    /// YYYY-MM.
    pub month: Option<String>,
}

impl TxParams {
    pub fn filter(self) -> TxFilter {
        let keep = |v: Option<String>| v.filter(|s| !s.is_empty());
        TxFilter {
            account: keep(self.account),
            kind: keep(self.kind),
            month: keep(self.month),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct TxDto {
    pub transfer_id: i64,
    pub account: String,
    pub kind: String,
    /// Into the account positive, out negative.
    pub amount_fen: i64,
    pub state: String,
    pub at_ms: i64,
    pub month: String,
}

#[utoipa::path(get, path = "/api/v1/me/transactions", tag = "citizen", security(("bearer" = [])),
    params(TxParams), responses((status = 200, body = [TxDto])))]
/// My transactions, newest first, filtered.
pub async fn transactions(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Query(q): Query<TxParams>,
) -> ApiResult<axum::Json<Vec<TxDto>>> {
    let v = s.platform.citizen_transactions(&c, &q.filter()).await?;
    Ok(axum::Json(
        v.into_iter()
            .map(|l| TxDto {
                transfer_id: l.transfer_id,
                account: l.account,
                kind: l.kind,
                amount_fen: l.amount_fen,
                state: l.state,
                at_ms: l.at_ms,
                month: l.month,
            })
            .collect(),
    ))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct MonthSpendingDto {
    pub month: String,
    pub purchase_fen: i64,
    pub payment_fen: i64,
    pub fee_fen: i64,
}

#[utoipa::path(get, path = "/api/v1/me/spending", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = [MonthSpendingDto])))]
/// My spending of the last six months by category.
pub async fn spending(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<Vec<MonthSpendingDto>>> {
    let lines = s
        .platform
        .citizen_transactions(&c, &TxFilter::default())
        .await?;
    let months = platform::citizen_services::spending_by_month(&lines, s.platform.clock.now_ms());
    Ok(axum::Json(
        months
            .into_iter()
            .map(|m| {
                let get = |k: &str| {
                    m.by_category
                        .iter()
                        .find(|(c, _)| c == k)
                        .map_or(0, |x| x.1)
                };
                MonthSpendingDto {
                    purchase_fen: get("purchase"),
                    payment_fen: get("payment"),
                    fee_fen: get("fee"),
                    month: m.month,
                }
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/me/topups", tag = "citizen", security(("bearer" = [])),
    request_body = TopUpBody,
    responses((status = 201, body = TopUpDto), (status = 202, body = TopUpDto, description = "The bank did not answer in time: pending")))]
/// Top up my online account from my bank account.
pub async fn topup(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Json(b): Json<TopUpBody>,
) -> ApiResult<(StatusCode, axum::Json<TopUpDto>)> {
    let v = s
        .platform
        .citizen_topup(&c, &b.idempotency_key, b.amount_fen, &b.bank_account)
        .await?;
    let status = if v.state == "pending" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(v.into())))
}

#[utoipa::path(get, path = "/api/v1/me/benefits", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = [ReceivedDto])))]
/// Subsidies and benefits I received.
pub async fn benefits(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<Vec<ReceivedDto>>> {
    let v = s.platform.citizen_received(&c).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/me/bills", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = CitizenBillsDto)))]
/// My auto-debit agreements and my households' bills.
pub async fn bills(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<CitizenBillsDto>> {
    let (a, b) = s.platform.citizen_bills(&c).await?;
    Ok(axum::Json(CitizenBillsDto {
        agreements: a.into_iter().map(Into::into).collect(),
        bills: b.into_iter().map(Into::into).collect::<Vec<BillDto>>(),
    }))
}

#[utoipa::path(post, path = "/api/v1/me/bills/{biller}/{number}/payment", tag = "citizen", security(("bearer" = [])),
    params(("biller" = String, Path), ("number" = String, Path, description = "The bill number")),
    responses((status = 200, body = PaymentDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
/// Pay one of my bills from my online account (once).
pub async fn bill_pay(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Path((biller, number)): Path<(String, String)>,
) -> ApiResult<axum::Json<PaymentDto>> {
    let v = s.platform.citizen_bill_pay(&c, &biller, &number).await?;
    Ok(axum::Json(v.into()))
}

#[derive(serde::Deserialize, ToSchema)]
pub struct MyAgreementBody {
    pub biller: String,
    pub customer_no: String,
    pub limit_fen: i64,
}

#[utoipa::path(post, path = "/api/v1/me/agreements", tag = "citizen", security(("bearer" = [])),
    request_body = MyAgreementBody, responses((status = 201, body = AgreementDto)))]
/// Sign an auto-debit agreement for my household with a per-bill limit.
pub async fn agreement_sign(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Json(b): Json<MyAgreementBody>,
) -> ApiResult<(StatusCode, axum::Json<AgreementDto>)> {
    let v = s
        .platform
        .citizen_agreement_sign(&c, &b.biller, &b.customer_no, b.limit_fen)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[utoipa::path(post, path = "/api/v1/me/agreements/{id}/cancellation", tag = "citizen", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204, description = "Cancelled"), (status = 404, body = Problem)))]
/// Cancel one of my auto-debit agreements.
pub async fn agreement_cancel(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.platform.citizen_agreement_cancel(&c, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/me/messages", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = [NotificationDto])))]
/// My messages, newest first.
pub async fn messages(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<Vec<NotificationDto>>> {
    let v = s.platform.citizen_messages(&c, 100).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/me/consents", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = [ConsentDto])))]
/// My consents to data sharing.
pub async fn consents(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<Vec<ConsentDto>>> {
    let v = s.platform.citizen_consents(&c).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/me/consents/{id}/revocation", tag = "citizen", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ConsentDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
/// Revoke one of my consents.
pub async fn consent_revoke(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<ConsentDto>> {
    let v = s.platform.citizen_consent_revoke(&c, id).await?;
    Ok(axum::Json(v.into()))
}

#[utoipa::path(get, path = "/api/v1/me/data-access", tag = "citizen", security(("bearer" = [])),
    responses((status = 200, body = [AccessDto])))]
/// The data tracker: who used my data through the exchange.
pub async fn data_access(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
) -> ApiResult<axum::Json<Vec<AccessDto>>> {
    let v = s.platform.citizen_data_access(&c, 200).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/me/cards/{number}/devices", tag = "citizen", security(("bearer" = [])),
    params(("number" = String, Path)), request_body = DeviceEnrolment,
    responses((status = 201, body = DeviceDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
/// Enrol my phone's e-code key on my card (replacing an earlier phone).
pub async fn ecode_enrol(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Path(number): Path<String>,
    Json(b): Json<DeviceEnrolment>,
) -> ApiResult<(StatusCode, axum::Json<DeviceDto>)> {
    let key = crate::ecode_api::hex_field("public_key", &b.public_key)?;
    let v = s
        .platform
        .citizen_ecode_enrol(&c, &number, &b.device_id, &key)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[utoipa::path(post, path = "/api/v1/me/ecode/certificates", tag = "citizen", security(("bearer" = [])),
    request_body = CertificateRequestDto,
    responses((status = 201, body = CertificateDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
/// Renew (or first issue) my phone's e-code certificate.
pub async fn ecode_certify(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Json(b): Json<CertificateRequestDto>,
) -> ApiResult<(StatusCode, axum::Json<CertificateDto>)> {
    let request = crate::ecode_api::certificate_request(&b)?;
    let issued = s.platform.citizen_ecode_certify(&c, &request).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(crate::ecode_api::certificate_dto(&issued)),
    ))
}

#[utoipa::path(post, path = "/api/v1/me/cards/{number}/loads", tag = "citizen", security(("bearer" = [])),
    params(("number" = String, Path)), request_body = LoadBody,
    responses((status = 201, description = "MAC2 issued, the amount held", body = LoadDto),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
/// NFC load through my phone (圈存): the card's INITIALIZE FOR LOAD answer in, MAC2 out.
pub async fn load_authorize(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
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
        .citizen_load_authorize(
            &c,
            &platform::money::LoadRequest {
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
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[utoipa::path(post, path = "/api/v1/me/loads/{id}/confirm", tag = "citizen", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ConfirmBody,
    responses((status = 200, body = LoadDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
/// The card's TAC after CREDIT FOR LOAD, relayed by my phone.
pub async fn load_confirm(
    State(s): State<AppState>,
    Extension(c): Extension<Citizen>,
    Path(id): Path<i64>,
    Json(b): Json<ConfirmBody>,
) -> ApiResult<axum::Json<LoadDto>> {
    let tac = crate::money_api::hex4("tac", &b.tac)?;
    let v = s.platform.citizen_load_confirm(&c, id, tac).await?;
    Ok(axum::Json(v.into()))
}
