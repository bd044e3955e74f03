//! The e-code API: enrolling phones on cards (`/api/v1/cards/{number}/devices`), revoking
//! them, the root public keys for terminals and their rotation, certificates for enrolled
//! phones, and the online verification for connected counters (`/api/v1/ecode/...`).
//!
//! Until citizens sign in (issue 9) a counter clerk or an administrator enrols the phone and
//! asks for its certificate on the holder's behalf; the phone still signs the request.

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Json;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ecode::{CardNumber, CertificateRequest, DeviceId, Uses};
use platform::Caller;
use platform::ecode::{DeviceView, RootView, VerifyOutcome, parse_device_key, parse_purpose};
use utoipa::ToSchema;

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DeviceDto {
    /// The platform's id of this enrolment.
    pub id: i64,
    pub card_number: String,
    /// The app's installation id.
    pub device_id: String,
    /// SEC1 compressed SM2 public key, hex.
    pub public_key: String,
    /// active or revoked
    pub state: String,
    pub bound_ms: i64,
    pub bound_by: String,
    pub revoked_ms: Option<i64>,
    /// replaced, holder_request, device_lost, fraud, or card_<state> when the card left active
    pub revoked_reason: Option<String>,
}

impl From<DeviceView> for DeviceDto {
    fn from(v: DeviceView) -> Self {
        DeviceDto {
            id: v.id,
            card_number: v.card_number,
            device_id: v.device_id,
            public_key: v.public_key,
            state: v.state,
            bound_ms: v.bound_ms,
            bound_by: v.bound_by,
            revoked_ms: v.revoked_ms,
            revoked_reason: v.revoked_reason,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DeviceEnrolment {
    /// The app's installation id: 1 to 64 of A-Z a-z 0-9 . _ -
    pub device_id: String,
    /// The phone's SM2 public key, SEC1 compressed (33 bytes), hex.
    pub public_key: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DeviceRevocation {
    /// holder_request, device_lost, fraud
    pub reason: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CertificateRequestDto {
    pub card_number: String,
    pub device_id: String,
    /// SEC1 compressed SM2 public key, hex.
    pub public_key: String,
    /// The phone clock when it signed (unix seconds); within 5 minutes of the platform's.
    pub time: u32,
    /// SM2/SM3 signature (raw r || s, hex) by the device key over
    /// `ecode::CertificateRequest::message`: the context `citycard e-code certificate request
    /// v1`, the card number (8 bytes BCD), the device id's length (1 byte) and characters, the
    /// compressed key and the time (4 bytes big-endian).
    pub signature: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CertificateDto {
    /// The 123-byte certificate of the spec, hex.
    pub certificate: String,
    pub root_key_id: u32,
    pub not_before: u32,
    pub not_after: u32,
    pub offline_limit_fen: u32,
    /// pay, identity, transit
    pub uses: Vec<String>,
    /// The enrolment it certifies.
    pub device: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct RootDto {
    pub key_id: u32,
    /// standby, current, retired, withdrawn
    pub state: String,
    /// SEC1 compressed SM2 public key, hex.
    pub public_key: String,
    pub created_ms: i64,
    pub changed_ms: i64,
}

impl From<RootView> for RootDto {
    fn from(v: RootView) -> Self {
        RootDto {
            key_id: v.key_id,
            state: v.state,
            public_key: v.public_key,
            created_ms: v.created_ms,
            changed_ms: v.changed_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// The scanned `ZZC1:` text.
    pub text: String,
    /// pay, identity, transit
    pub purpose: String,
    /// For pay: the amount in fen.
    pub amount_fen: Option<u32>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct VerifyDto {
    pub accepted: bool,
    /// accepted, or the reason code: format, unknown_root, root_withdrawn, root_signature,
    /// not_yet_valid, expired, not_fresh_old, not_fresh_future, device_signature, deny_listed,
    /// replay, over_limit, spend_ledger_full, use_not_allowed, device_revoked
    pub reason: String,
    /// The check of the spec that refused (1–9).
    pub step: Option<u8>,
    pub message: String,
    pub card_number: Option<String>,
    pub offline_remaining_fen: Option<u64>,
}

impl From<VerifyOutcome> for VerifyDto {
    fn from(v: VerifyOutcome) -> Self {
        VerifyDto {
            accepted: v.accepted,
            reason: v.reason,
            step: v.step,
            message: v.message,
            card_number: v.card_number,
            offline_remaining_fen: v.offline_remaining_fen,
        }
    }
}

fn uses_names(uses: Uses) -> Vec<String> {
    [
        (Uses::PAY, "pay"),
        (Uses::IDENTITY, "identity"),
        (Uses::TRANSIT, "transit"),
    ]
    .into_iter()
    .filter(|(u, _)| uses.contains(*u))
    .map(|(_, n)| n.to_string())
    .collect()
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    platform::PlatformError::invalid(field, message).into()
}

pub(crate) fn hex_field(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(text).map_err(|_| invalid(field, "not hex"))
}

#[utoipa::path(post, path = "/api/v1/cards/{number}/devices", tag = "ecode", security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    request_body = DeviceEnrolment,
    responses((status = 201, body = DeviceDto),
        (status = 409, body = Problem, description = "The card is not active, or the key is enrolled elsewhere")))]
pub async fn enrol(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
    Json(b): Json<DeviceEnrolment>,
) -> ApiResult<(StatusCode, axum::Json<DeviceDto>)> {
    let key = hex_field("public_key", &b.public_key)?;
    let v = s
        .platform
        .ecode_device_bind(&c, &number, &b.device_id, &key)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[utoipa::path(get, path = "/api/v1/cards/{number}/devices", tag = "ecode", security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    responses((status = 200, body = [DeviceDto])))]
pub async fn devices(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
) -> ApiResult<axum::Json<Vec<DeviceDto>>> {
    let v = s.platform.ecode_devices(&c, &number).await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/ecode/devices/{id}/revoke", tag = "ecode", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The enrolment's id")),
    request_body = DeviceRevocation,
    responses((status = 200, body = DeviceDto), (status = 409, body = Problem)))]
pub async fn revoke(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<DeviceRevocation>,
) -> ApiResult<axum::Json<DeviceDto>> {
    let v = s.platform.ecode_device_revoke(&c, id, &b.reason).await?;
    Ok(axum::Json(v.into()))
}

#[utoipa::path(post, path = "/api/v1/ecode/certificates", tag = "ecode", security(("bearer" = [])),
    request_body = CertificateRequestDto,
    responses((status = 201, body = CertificateDto),
        (status = 409, body = Problem, description = "The card is not active (lost, frozen, cancelled, …), or the phone is not enrolled or revoked"),
        (status = 422, body = Problem, description = "A bad signature, or a time too far from the platform clock")))]
pub async fn certify(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<CertificateRequestDto>,
) -> ApiResult<(StatusCode, axum::Json<CertificateDto>)> {
    let request = certificate_request(&b)?;
    let issued = s.platform.ecode_certify(&c, &request).await?;
    Ok((StatusCode::CREATED, axum::Json(certificate_dto(&issued))))
}

/// The phone's signed certificate request, parsed.
pub(crate) fn certificate_request(b: &CertificateRequestDto) -> ApiResult<CertificateRequest> {
    let card_number =
        CardNumber::parse(&b.card_number).map_err(|e| invalid("card_number", e.to_string()))?;
    let device_id =
        DeviceId::parse(&b.device_id).map_err(|e| invalid("device_id", e.to_string()))?;
    let device_public_key = parse_device_key(&hex_field("public_key", &b.public_key)?)?;
    let signature: [u8; 64] = hex_field("signature", &b.signature)?
        .try_into()
        .map_err(|_| invalid("signature", "64 bytes (r || s)"))?;
    Ok(CertificateRequest {
        card_number,
        device_id,
        device_public_key,
        time: b.time,
        signature,
    })
}

pub(crate) fn certificate_dto(issued: &platform::ecode::IssuedCertificate) -> CertificateDto {
    let cert = &issued.certificate;
    let f = cert.fields();
    CertificateDto {
        certificate: hex::encode_upper(cert.as_bytes()),
        root_key_id: cert.root_key_id().0,
        not_before: f.not_before,
        not_after: f.not_after,
        offline_limit_fen: f.offline_limit_fen,
        uses: uses_names(f.uses),
        device: issued.device,
    }
}

#[utoipa::path(get, path = "/api/v1/ecode/roots", tag = "ecode", security(("bearer" = [])),
    responses((status = 200, content_type = "application/x-pem-file", body = String,
        description = "The root public keys terminals trust: per key a `# key-id: N` line and a \
        PUBLIC KEY block (SM2 SubjectPublicKeyInfo); withdrawn keys are left out")))]
pub async fn roots_pem(State(s): State<AppState>) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let pem = s.platform.ecode_roots_pem().await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
        pem,
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/v1/ecode/roots", tag = "ecode", security(("bearer" = [])),
    responses((status = 201, body = RootDto,
        description = "A new root key: current if none is, else standby until rotated to")))]
pub async fn root_generate(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<(StatusCode, axum::Json<RootDto>)> {
    let v = s.platform.ecode_root_generate(&c).await?;
    Ok((StatusCode::CREATED, axum::Json(v.into())))
}

#[utoipa::path(post, path = "/api/v1/ecode/roots/{key_id}/rotate", tag = "ecode", security(("bearer" = [])),
    params(("key_id" = u32, Path, description = "A standby root key")),
    responses((status = 204, description = "Current; the previous current key retires"),
        (status = 409, body = Problem)))]
pub async fn root_rotate(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(key_id): Path<u32>,
) -> ApiResult<StatusCode> {
    s.platform.ecode_root_rotate(&c, key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/ecode/roots/{key_id}/withdraw", tag = "ecode", security(("bearer" = [])),
    params(("key_id" = u32, Path, description = "A root key")),
    responses((status = 204, description = "Withdrawn"), (status = 409, body = Problem)))]
pub async fn root_withdraw(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(key_id): Path<u32>,
) -> ApiResult<StatusCode> {
    s.platform.ecode_root_withdraw(&c, key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/ecode/verify", tag = "ecode", security(("bearer" = [])),
    request_body = VerifyRequest,
    responses((status = 200, body = VerifyDto,
        description = "The decision: a refusal is a normal answer, with its reason code")))]
pub async fn verify(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<VerifyRequest>,
) -> ApiResult<axum::Json<VerifyDto>> {
    let purpose = parse_purpose(&b.purpose, b.amount_fen)?;
    let v = s.platform.ecode_verify(&c, &b.text, purpose).await?;
    Ok(axum::Json(v.into()))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct IdentityRequest {
    /// The scanned `ZZC1:` text.
    pub text: String,
    /// hotel (full name and ID number), counter (name, ID masked), age_check (adult only),
    /// library (name masked).
    #[serde(rename = "use")]
    pub use_: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct IdentityDto {
    pub accepted: bool,
    /// `accepted` or the verification's reason code.
    pub reason: String,
    pub message: String,
    #[serde(rename = "use")]
    pub use_: String,
    /// Only what the use allows; nothing when refused.
    pub name: Option<String>,
    pub id_number: Option<String>,
    pub adult: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/ecode/identity", tag = "ecode", security(("bearer" = [])),
    request_body = IdentityRequest,
    responses((status = 200, body = IdentityDto,
        description = "The holder's identity as the use allows, or the refusal's reason; \
        audited under the citizen's record")))]
pub async fn identity(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<IdentityRequest>,
) -> ApiResult<axum::Json<IdentityDto>> {
    let use_ = platform::ecode_identity::IdentityUse::parse(&b.use_)?;
    let v = s.platform.ecode_identify(&c, &b.text, use_).await?;
    Ok(axum::Json(IdentityDto {
        accepted: v.accepted,
        reason: v.reason,
        message: v.message,
        use_: v.purpose.as_str().into(),
        name: v.name,
        id_number: v.id_number,
        adult: v.adult,
    }))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct IdentityUsesRequest {
    /// The citizen's ID number (in the body, never in a URL).
    pub id_number: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct IdentityUseDto {
    pub at_ms: i64,
    /// Who identified the citizen.
    pub actor: String,
    /// From where.
    pub origin: String,
    /// The use and what was revealed.
    pub detail: String,
}

#[utoipa::path(post, path = "/api/v1/ecode/identity/uses", tag = "ecode",
    security(("bearer" = [])), request_body = IdentityUsesRequest,
    responses((status = 200, body = [IdentityUseDto],
        description = "Every identification of the citizen by e-code, newest first")))]
pub async fn identity_uses(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<IdentityUsesRequest>,
) -> ApiResult<axum::Json<Vec<IdentityUseDto>>> {
    let rows = s.platform.ecode_identity_uses(&c, &b.id_number).await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|u| IdentityUseDto {
                at_ms: u.at_ms,
                actor: u.actor,
                origin: u.origin,
                detail: u.detail,
            })
            .collect(),
    ))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct EcodeDebtDto {
    pub key: String,
    pub merchant: String,
    pub terminal: String,
    pub amount_fen: i64,
    pub code_time: i64,
    pub created_ms: i64,
}

fn debt_dtos(rows: Vec<store::EcodePaymentRow>) -> Vec<EcodeDebtDto> {
    rows.into_iter()
        .map(|d| EcodeDebtDto {
            key: d.key,
            merchant: d.merchant,
            terminal: d.terminal,
            amount_fen: d.amount_fen,
            code_time: d.code_time,
            created_ms: d.created_ms,
        })
        .collect()
}

#[utoipa::path(get, path = "/api/v1/cards/{number}/ecode-debts", tag = "ecode",
    security(("bearer" = [])), params(("number" = String, Path, description = "16-digit card number")),
    responses((status = 200, body = [EcodeDebtDto],
        description = "E-code payments the account could not pay; no certificate until settled")))]
pub async fn debts(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
) -> ApiResult<axum::Json<Vec<EcodeDebtDto>>> {
    Ok(axum::Json(debt_dtos(
        s.platform.ecode_debts(&c, &number).await?,
    )))
}

#[utoipa::path(post, path = "/api/v1/cards/{number}/ecode-debts/settlement", tag = "ecode",
    security(("bearer" = [])), params(("number" = String, Path, description = "16-digit card number")),
    responses((status = 200, body = [EcodeDebtDto], description = "What is still open")))]
pub async fn settle_debts(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
) -> ApiResult<axum::Json<Vec<EcodeDebtDto>>> {
    Ok(axum::Json(debt_dtos(
        s.platform.ecode_settle_debts(&c, &number).await?,
    )))
}
