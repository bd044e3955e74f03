//! The data-sharing exchange's API (issue 8): members, the service catalog, grants, citizens'
//! consents (recorded by an operator for the citizen until the portal), the call itself
//! (`POST /api/v1/exchange/call`, signed by the consumer member's key, no operator token), the
//! citizen's data tracker, the access log for oversight, and the audit head's stamps.

use crate::AppState;
use crate::error::{ApiResult, Problem};
use crate::extract::{Json, Query};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use exchange::message::{
    HEADER_BATCH, HEADER_MEMBER, HEADER_NONCE, HEADER_REPLY_TO, HEADER_SIGNATURE, HEADER_TIME,
};
use platform::exchange::{CALL_BODY_MAX, PLATFORM_MEMBER, SignedCall};
use platform::{Caller, PlatformError};
use std::net::SocketAddr;
use store::{AccessRow, ConsentRow, GrantRow, MemberRow};
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/exchange/key", get(key))
        .route("/api/v1/exchange/members", get(members).post(member_create))
        .route(
            "/api/v1/exchange/services",
            get(services).post(service_publish),
        )
        .route("/api/v1/exchange/grants", get(grants).post(grant_create))
        .route(
            "/api/v1/exchange/grants/{id}/withdraw",
            post(grant_withdraw),
        )
        .route("/api/v1/exchange/consents", post(consent_give))
        .route(
            "/api/v1/exchange/consents/{id}/revoke",
            post(consent_revoke),
        )
        .route(
            "/api/v1/exchange/call",
            post(call).layer(axum::extract::DefaultBodyLimit::max(CALL_BODY_MAX)),
        )
        .route("/api/v1/exchange/access", get(access_log))
        .route("/api/v1/exchange/stamps", post(stamp))
        .route("/api/v1/exchange/stamps/check", get(stamps_check))
        .route("/api/v1/residents/data-access", post(data_access))
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ExchangeKeyDto {
    pub member: String,
    /// SEC1 compressed SM2 public key, hex: verifies forwarded requests, deliveries and stamps.
    pub public_key: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct NewMember {
    pub code: String,
    pub name: String,
    /// SM2 public key, SEC1 hex.
    pub public_key: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct MemberDto {
    pub code: String,
    pub name: String,
    pub public_key: String,
    pub status: String,
    pub created_ms: i64,
}

impl From<MemberRow> for MemberDto {
    fn from(m: MemberRow) -> Self {
        MemberDto {
            code: m.code,
            name: m.name,
            public_key: hex::encode_upper(m.public_key),
            status: m.status,
            created_ms: m.created_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FieldDto {
    pub name: String,
    /// public, internal, personal, sensitive
    pub sensitivity: String,
    /// id_number, name, phone, address, redact
    pub mask: String,
    #[serde(default)]
    pub description: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ServiceDto {
    pub code: String,
    pub provider: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// What a call carries: `id_number`.
    pub input: String,
    pub fields: Vec<FieldDto>,
    pub endpoint: String,
    pub consent_required: bool,
}

impl From<exchange::Service> for ServiceDto {
    fn from(s: exchange::Service) -> Self {
        ServiceDto {
            code: s.code,
            provider: s.provider,
            name: s.name,
            description: s.description,
            input: s.input,
            fields: s
                .fields
                .into_iter()
                .map(|f| FieldDto {
                    name: f.name,
                    sensitivity: f.sensitivity.as_str().into(),
                    mask: f.mask.as_str().into(),
                    description: f.description,
                })
                .collect(),
            endpoint: s.endpoint,
            consent_required: s.consent_required,
        }
    }
}

impl ServiceDto {
    fn into_service(self) -> Result<exchange::Service, PlatformError> {
        let mut fields = Vec::with_capacity(self.fields.len());
        for f in self.fields {
            let sensitivity = exchange::Sensitivity::parse(&f.sensitivity).ok_or_else(|| {
                PlatformError::invalid(
                    "sensitivity",
                    "one of public, internal, personal, sensitive",
                )
            })?;
            let mask = exchange::MaskStyle::parse(&f.mask).ok_or_else(|| {
                PlatformError::invalid("mask", "one of id_number, name, phone, address, redact")
            })?;
            fields.push(exchange::FieldSpec {
                name: f.name,
                sensitivity,
                mask,
                description: f.description,
            });
        }
        Ok(exchange::Service {
            code: self.code,
            provider: self.provider,
            name: self.name,
            description: self.description,
            input: self.input,
            fields,
            endpoint: self.endpoint,
            consent_required: self.consent_required,
        })
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct NewGrant {
    pub consumer: String,
    pub service: String,
    pub fields: Vec<String>,
    /// Fields the consumer sees unmasked.
    #[serde(default)]
    pub full_fields: Vec<String>,
    pub purpose: String,
    pub legal_basis: String,
    pub valid_from_ms: i64,
    pub valid_until_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct GrantDto {
    pub id: i64,
    pub consumer: String,
    pub service: String,
    pub fields: Vec<String>,
    pub full_fields: Vec<String>,
    pub purpose: String,
    pub legal_basis: String,
    pub valid_from_ms: i64,
    pub valid_until_ms: i64,
    pub withdrawn_ms: Option<i64>,
}

impl From<GrantRow> for GrantDto {
    fn from(g: GrantRow) -> Self {
        GrantDto {
            id: g.id,
            consumer: g.consumer,
            service: g.service,
            fields: g.fields,
            full_fields: g.full_fields,
            purpose: g.purpose,
            legal_basis: g.legal_basis,
            valid_from_ms: g.valid_from_ms,
            valid_until_ms: g.valid_until_ms,
            withdrawn_ms: g.withdrawn_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct NewConsent {
    /// The citizen's ID number (in the body, never in a URL).
    pub id_number: String,
    pub consumer: String,
    pub service: String,
    pub purpose: String,
    pub expires_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CitizenRef {
    pub id_number: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ConsentDto {
    pub id: i64,
    pub consumer: String,
    pub service: String,
    pub purpose: String,
    /// counter, operator (later: portal, app)
    pub channel: String,
    pub given_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
}

impl From<ConsentRow> for ConsentDto {
    fn from(c: ConsentRow) -> Self {
        ConsentDto {
            id: c.id,
            consumer: c.consumer,
            service: c.service,
            purpose: c.purpose,
            channel: c.channel,
            given_ms: c.given_ms,
            expires_ms: c.expires_ms,
            revoked_ms: c.revoked_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DataAccessRequest {
    pub id_number: String,
    /// At most 1000; 100 when absent.
    pub limit: Option<u32>,
}

/// One call through the exchange: who, which service, which fields, for what, when, under
/// which grant (legal basis) or consent, and how it ended.
#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct AccessDto {
    pub id: i64,
    pub at_ms: i64,
    pub consumer: String,
    pub service: String,
    pub provider: String,
    pub fields: Vec<String>,
    pub masked: Vec<String>,
    pub purpose: String,
    pub legal_basis: Option<String>,
    pub grant_id: Option<i64>,
    pub consent_id: Option<i64>,
    /// delivered, refused, failed
    pub outcome: String,
    pub reason: Option<String>,
    pub request_digest: Option<String>,
    pub response_digest: Option<String>,
    pub audit_seq: Option<i64>,
}

impl From<AccessRow> for AccessDto {
    fn from(a: AccessRow) -> Self {
        AccessDto {
            id: a.id,
            at_ms: a.at_ms,
            consumer: a.consumer,
            service: a.service,
            provider: a.provider,
            fields: a.fields,
            masked: a.masked,
            purpose: a.purpose,
            legal_basis: a.legal_basis,
            grant_id: a.grant_id,
            consent_id: a.consent_id,
            outcome: a.outcome,
            reason: a.reason,
            request_digest: a.request_digest,
            response_digest: a.response_digest,
            audit_seq: a.audit_seq,
        }
    }
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct AccessFilter {
    pub consumer: Option<String>,
    /// delivered, refused, failed
    pub outcome: Option<String>,
    pub limit: Option<u32>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct StampDto {
    pub seq: i64,
    pub hash: String,
    pub stamped_ms: i64,
    pub signature: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct BadStampDto {
    pub seq: i64,
    pub reason: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct StampCheckDto {
    /// The chain verifies and every stamp matches it.
    pub ok: bool,
    pub entries: Option<u64>,
    pub chain_error: Option<String>,
    pub stamps_checked: usize,
    pub bad_stamps: Vec<BadStampDto>,
}

#[utoipa::path(get, path = "/api/v1/exchange/key", tag = "exchange",
    responses((status = 200, body = ExchangeKeyDto)))]
pub async fn key(State(s): State<AppState>) -> axum::Json<ExchangeKeyDto> {
    axum::Json(ExchangeKeyDto {
        member: PLATFORM_MEMBER.into(),
        public_key: hex::encode_upper(s.platform.exchange_public_key()),
    })
}

#[utoipa::path(post, path = "/api/v1/exchange/members", tag = "exchange", security(("bearer" = [])),
    request_body = NewMember,
    responses((status = 201, body = MemberDto), (status = 409, body = Problem)))]
pub async fn member_create(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewMember>,
) -> ApiResult<(StatusCode, axum::Json<MemberDto>)> {
    let key = hex::decode(b.public_key.trim())
        .map_err(|_| PlatformError::invalid("public_key", "SEC1 hex"))?;
    let m = s
        .platform
        .exchange_member_create(&c, &b.code, &b.name, &key)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(m.into())))
}

#[utoipa::path(get, path = "/api/v1/exchange/members", tag = "exchange", security(("bearer" = [])),
    responses((status = 200, body = [MemberDto])))]
pub async fn members(State(s): State<AppState>) -> ApiResult<axum::Json<Vec<MemberDto>>> {
    Ok(axum::Json(
        s.platform
            .exchange_members()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/exchange/services", tag = "exchange", security(("bearer" = [])),
    request_body = ServiceDto,
    responses((status = 201, body = ServiceDto), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn service_publish(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<ServiceDto>,
) -> ApiResult<(StatusCode, axum::Json<ServiceDto>)> {
    let svc = b.into_service()?;
    let out = s.platform.exchange_service_publish(&c, &svc).await?;
    Ok((StatusCode::CREATED, axum::Json(out.into())))
}

#[utoipa::path(get, path = "/api/v1/exchange/services", tag = "exchange", security(("bearer" = [])),
    responses((status = 200, body = [ServiceDto], description = "The catalog")))]
pub async fn services(State(s): State<AppState>) -> ApiResult<axum::Json<Vec<ServiceDto>>> {
    Ok(axum::Json(
        s.platform
            .exchange_services()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/exchange/grants", tag = "exchange", security(("bearer" = [])),
    request_body = NewGrant,
    responses((status = 201, body = GrantDto), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
pub async fn grant_create(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewGrant>,
) -> ApiResult<(StatusCode, axum::Json<GrantDto>)> {
    let g = s
        .platform
        .exchange_grant_create(
            &c,
            &b.consumer,
            &b.service,
            &b.fields,
            &b.full_fields,
            &b.purpose,
            &b.legal_basis,
            b.valid_from_ms,
            b.valid_until_ms,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(g.into())))
}

#[utoipa::path(get, path = "/api/v1/exchange/grants", tag = "exchange", security(("bearer" = [])),
    responses((status = 200, body = [GrantDto])))]
pub async fn grants(State(s): State<AppState>) -> ApiResult<axum::Json<Vec<GrantDto>>> {
    Ok(axum::Json(
        s.platform
            .exchange_grants(None)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/exchange/grants/{id}/withdraw", tag = "exchange",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = GrantDto), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Already withdrawn")))]
pub async fn grant_withdraw(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<GrantDto>> {
    Ok(axum::Json(
        s.platform.exchange_grant_withdraw(&c, id).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/exchange/consents", tag = "exchange", security(("bearer" = [])),
    request_body = NewConsent,
    responses((status = 201, body = ConsentDto), (status = 404, body = Problem)))]
pub async fn consent_give(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewConsent>,
) -> ApiResult<(StatusCode, axum::Json<ConsentDto>)> {
    let r = s
        .platform
        .exchange_consent_give(
            &c,
            &b.id_number,
            &b.consumer,
            &b.service,
            &b.purpose,
            b.expires_ms,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(r.into())))
}

#[utoipa::path(post, path = "/api/v1/exchange/consents/{id}/revoke", tag = "exchange",
    security(("bearer" = [])), params(("id" = i64, Path)), request_body = CitizenRef,
    responses((status = 200, body = ConsentDto), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Already revoked")))]
pub async fn consent_revoke(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<CitizenRef>,
) -> ApiResult<axum::Json<ConsentDto>> {
    Ok(axum::Json(
        s.platform
            .exchange_consent_revoke(&c, &b.id_number, id)
            .await?
            .into(),
    ))
}

/// A delivery signed by the exchange: the body with its `x-exchange-*` headers, the batch path
/// among them when it was signed in a batch.
pub(crate) fn signed_answer(d: platform::exchange::Delivered) -> Response {
    let mut r = (
        StatusCode::OK,
        [
            ("content-type", "application/json".to_string()),
            (HEADER_MEMBER, PLATFORM_MEMBER.to_string()),
            (HEADER_TIME, d.time_s.to_string()),
            (HEADER_NONCE, d.nonce),
            (HEADER_REPLY_TO, d.reply_to),
            (HEADER_SIGNATURE, d.signature),
        ],
        d.body,
    )
        .into_response();
    if let Some(b) = d
        .batch
        .and_then(|b| axum::http::HeaderValue::from_str(&b).ok())
    {
        r.headers_mut().insert(HEADER_BATCH, b);
    }
    r
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[utoipa::path(post, path = "/api/v1/exchange/call", tag = "exchange",
    params(
        ("x-exchange-member" = String, Header, description = "The consumer's member code"),
        ("x-exchange-time" = i64, Header, description = "Unix seconds"),
        ("x-exchange-nonce" = String, Header, description = "16 to 64 hex digits, never reused"),
        ("x-exchange-batch" = Option<String>, Header, description = "A batch-signed message's path in its batch's SM3 hash tree (exchange crate); absent when signed alone"),
        ("x-exchange-signature" = String, Header, description = "SM2 signature (hex) over the canonical form, or over the batch's root (exchange crate), body included")),
    request_body(content = Object, description = "`service`, `id_number`, `fields` (empty: all granted), `purpose`"),
    responses((status = 200, description = "The provider's answer, minimised and masked, signed by the exchange (x-exchange-* headers, kind delivery)"),
        (status = 401, body = Problem, description = "Unsigned, forged, replayed or out of the clock window"),
        (status = 403, body = Problem, description = "No grant, withdrawn or expired grant, fields beyond the grant, no consent"),
        (status = 502, body = Problem, description = "The provider failed or its answer was not signed by it"),
        (status = 504, body = Problem, description = "The provider did not answer in time")))]
pub async fn call(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let origin = addr.ip().to_string();
    let (member, nonce, sig) = (
        header(&headers, HEADER_MEMBER),
        header(&headers, HEADER_NONCE),
        header(&headers, HEADER_SIGNATURE),
    );
    let time_s = header(&headers, HEADER_TIME).parse::<i64>().ok();
    let batch = headers
        .get(HEADER_BATCH)
        .map(|v| v.to_str().unwrap_or("-").to_string());
    let (Some(time_s), false, false, false) =
        (time_s, member.is_empty(), nonce.is_empty(), sig.is_empty())
    else {
        return Err(s
            .platform
            .exchange_refuse_unsigned(&member, &origin)
            .await
            .into());
    };
    let d = s
        .platform
        .exchange_call(&SignedCall {
            member: &member,
            time_s,
            nonce: &nonce,
            signature: &sig,
            batch: batch.as_deref(),
            body: &body,
            origin: &origin,
        })
        .await?;
    Ok(signed_answer(d))
}

#[utoipa::path(post, path = "/api/v1/residents/data-access", tag = "exchange",
    security(("bearer" = [])), request_body = DataAccessRequest,
    responses((status = 200, body = [AccessDto], description = "Every call about the citizen, newest first"),
        (status = 404, body = Problem)))]
pub async fn data_access(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<DataAccessRequest>,
) -> ApiResult<axum::Json<Vec<AccessDto>>> {
    let rows = s
        .platform
        .exchange_data_access(&c, &b.id_number, b.limit.unwrap_or(100))
        .await?;
    Ok(axum::Json(rows.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/exchange/access", tag = "exchange", security(("bearer" = [])),
    params(AccessFilter),
    responses((status = 200, body = [AccessDto], description = "The access log, newest first")))]
pub async fn access_log(
    State(s): State<AppState>,
    Query(q): Query<AccessFilter>,
) -> ApiResult<axum::Json<Vec<AccessDto>>> {
    let rows = s
        .platform
        .exchange_accesses(
            q.consumer.as_deref(),
            q.outcome.as_deref(),
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(axum::Json(rows.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/exchange/stamps", tag = "exchange", security(("bearer" = [])),
    responses((status = 200, body = Option<StampDto>, description = "The new stamp, or null when the head was stamped already")))]
pub async fn stamp(State(s): State<AppState>) -> ApiResult<axum::Json<Option<StampDto>>> {
    Ok(axum::Json(s.platform.exchange_stamp_head().await?.map(
        |h| StampDto {
            seq: h.seq,
            hash: hex::encode_upper(h.hash),
            stamped_ms: h.stamped_ms,
            signature: hex::encode_upper(h.signature),
        },
    )))
}

#[utoipa::path(get, path = "/api/v1/exchange/stamps/check", tag = "exchange",
    security(("bearer" = [])),
    responses((status = 200, body = StampCheckDto)))]
pub async fn stamps_check(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<StampCheckDto>> {
    let r = s.platform.exchange_check_stamps_logged(&c).await?;
    Ok(axum::Json(StampCheckDto {
        ok: r.chain.is_ok() && r.bad_stamps.is_empty(),
        entries: r.chain.as_ref().ok().copied(),
        chain_error: r.chain.err(),
        stamps_checked: r.stamps_checked,
        bad_stamps: r
            .bad_stamps
            .into_iter()
            .map(|(seq, reason)| BadStampDto { seq, reason })
            .collect(),
    }))
}
