//! The terminal network's API (issue 6): merchants and terminals for administrators, and the
//! terminal-facing calls — activation with the one-time code, then requests signed by the
//! terminal's key (`x-terminal-id`, `x-terminal-time`, `x-terminal-nonce`,
//! `x-terminal-signature`; see the `terminals` crate), which need no operator token.

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Json, Query};
use axum::Extension;
use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{get, post};
use platform::Caller;
use platform::terminals::TerminalCaller;
use store::{MerchantRow, TerminalRow};
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/merchants", get(merchants).post(merchant_create))
        .route("/api/v1/terminals", get(terminals).post(terminal_register))
        .route("/api/v1/terminals/fleet", get(fleet))
        .route("/api/v1/terminal/activation", post(activate))
        .route("/api/v1/terminal/parameters", get(parameters))
        .route("/api/v1/terminal/denylist", get(deny_list))
        .route(
            "/api/v1/terminal/ecode-payments",
            post(ecode_upload).layer(axum::extract::DefaultBodyLimit::max(
                crate::purchases_api::PURCHASES_BODY_MAX,
            )),
        )
        .route("/api/v1/terminal/ecode-payments/online", post(ecode_online))
        .route(
            "/api/v1/terminal/uploads",
            post(upload).layer(axum::extract::DefaultBodyLimit::max(
                crate::purchases_api::PURCHASES_BODY_MAX,
            )),
        )
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct MerchantDto {
    pub code: String,
    pub name: String,
    /// transit, canteen, shop, hospital, library, utility, taxi, bike, government
    pub category: String,
    pub settlement_account: String,
}

impl From<MerchantRow> for MerchantDto {
    fn from(m: MerchantRow) -> Self {
        MerchantDto {
            code: m.code,
            name: m.name,
            category: m.category,
            settlement_account: m.settlement_account,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct TerminalDto {
    pub id: String,
    pub merchant: String,
    /// validator, gate, pos, kiosk, desk, door
    pub kind: String,
    pub site: String,
    /// registered, active, suspended
    pub status: String,
    pub psam_serial: Option<String>,
    pub software_version: Option<String>,
    pub activated_ms: Option<i64>,
}

impl From<TerminalRow> for TerminalDto {
    fn from(t: TerminalRow) -> Self {
        TerminalDto {
            id: t.id,
            merchant: t.merchant,
            kind: t.kind,
            site: t.site,
            status: t.status,
            psam_serial: t.psam_serial,
            software_version: t.software_version,
            activated_ms: t.activated_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct NewTerminal {
    pub id: String,
    pub merchant: String,
    pub kind: String,
    pub site: String,
    pub psam_serial: Option<String>,
    /// The terminal id of its PSAM (12 hex digits): its uploads must carry it. Bound now, or
    /// at activation.
    #[serde(default)]
    pub psam_terminal_id: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct RegisteredDto {
    pub terminal: TerminalDto,
    /// Shown once: the installer types it into the terminal.
    pub activation_code: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ActivationRequest {
    pub id: String,
    pub activation_code: String,
    /// The terminal's SM2 public key, SEC1 hex (compressed or not).
    pub public_key: String,
    pub software_version: String,
    /// The terminal id of the PSAM in the terminal (12 hex digits); must be the registered one
    /// when one was registered.
    #[serde(default)]
    pub psam_terminal_id: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ParametersDto {
    /// Changes whenever a part changes.
    pub version: String,
    /// Whether anything changed since `since`.
    pub changed: bool,
    pub server_time_s: i64,
    pub deny_list_version: i64,
    /// SEC1 compressed SM2 key (hex) the deny-list is signed with.
    pub deny_list_key: String,
    /// The fare tables (`fares::FareRules` as JSON); absent when unchanged since `since`.
    #[schema(value_type = Option<Object>)]
    pub fares: Option<serde_json::Value>,
    /// The e-code root public keys as PEM (`# key-id: N` and a `PUBLIC KEY` block each);
    /// absent when unchanged since `since`.
    pub ecode_roots: Option<String>,
    pub merchant: String,
}

/// What the terminal holds and says of itself (kept for fleet monitoring).
#[derive(serde::Deserialize, IntoParams, Default)]
pub struct ParametersParams {
    /// The parameter version the terminal holds: when current, the fares are not sent again.
    pub since: Option<String>,
    /// The deny-list version the terminal holds.
    pub denylist: Option<i64>,
    /// Records waiting in the terminal for upload.
    pub pending: Option<i64>,
}

/// Deny-list download: the full list, or with `since` the delta from that version.
#[derive(serde::Deserialize, IntoParams, Default)]
pub struct TerminalDenyParams {
    pub since: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/merchants", tag = "terminals", security(("bearer" = [])),
    request_body = MerchantDto,
    responses((status = 201, body = MerchantDto), (status = 409, body = Problem)))]
pub async fn merchant_create(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<MerchantDto>,
) -> ApiResult<(StatusCode, axum::Json<MerchantDto>)> {
    let m = s
        .platform
        .merchant_create(&c, &b.code, &b.name, &b.category, &b.settlement_account)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(m.into())))
}

#[utoipa::path(get, path = "/api/v1/merchants", tag = "terminals", security(("bearer" = [])),
    responses((status = 200, body = [MerchantDto])))]
pub async fn merchants(State(s): State<AppState>) -> ApiResult<axum::Json<Vec<MerchantDto>>> {
    Ok(axum::Json(
        s.platform
            .merchants()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/terminals", tag = "terminals", security(("bearer" = [])),
    request_body = NewTerminal,
    responses((status = 201, body = RegisteredDto), (status = 409, body = Problem)))]
pub async fn terminal_register(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewTerminal>,
) -> ApiResult<(StatusCode, axum::Json<RegisteredDto>)> {
    let r = s
        .platform
        .terminal_register(
            &c,
            &b.id,
            &b.merchant,
            &b.kind,
            &b.site,
            b.psam_serial.as_deref(),
            b.psam_terminal_id.as_deref(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(RegisteredDto {
            terminal: r.terminal.into(),
            activation_code: r.activation_code,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/terminals", tag = "terminals", security(("bearer" = [])),
    responses((status = 200, body = [TerminalDto])))]
pub async fn terminals(State(s): State<AppState>) -> ApiResult<axum::Json<Vec<TerminalDto>>> {
    Ok(axum::Json(
        s.platform
            .terminals(None)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// One terminal as fleet monitoring sees it.
#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FleetTerminalDto {
    pub id: String,
    pub merchant: String,
    pub kind: String,
    pub site: String,
    pub status: String,
    pub psam_terminal_id: Option<String>,
    pub last_seen_ms: Option<i64>,
    pub last_upload_ms: Option<i64>,
    /// Records the platform took from it, in all.
    pub uploaded_records: i64,
    /// Records waiting in it, as it last said.
    pub records_pending: Option<i64>,
    pub parameters_version: Option<String>,
    pub deny_list_version: Option<i64>,
    /// silent, behind, backlog
    pub alerts: Vec<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FleetCountsDto {
    pub terminals: u64,
    pub active: u64,
    pub silent: u64,
    pub behind: u64,
    pub backlog: u64,
    pub records_pending: u64,
    pub records_uploaded: u64,
}

/// The fleet page's data (`/console/terminals`).
#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FleetDto {
    pub now_ms: i64,
    pub parameters_version: String,
    pub deny_list_version: i64,
    pub counts: FleetCountsDto,
    pub terminals: Vec<FleetTerminalDto>,
}

#[utoipa::path(get, path = "/api/v1/terminals/fleet", tag = "terminals", security(("bearer" = [])),
    responses((status = 200, body = FleetDto,
        description = "Every terminal with its last report and alerts, and the counts")))]
pub async fn fleet(State(s): State<AppState>) -> ApiResult<axum::Json<FleetDto>> {
    let v = s.platform.terminal_fleet_view().await?;
    let c = v.counts;
    Ok(axum::Json(FleetDto {
        now_ms: v.now_ms,
        parameters_version: v.parameters_version,
        deny_list_version: v.deny_list_version,
        counts: FleetCountsDto {
            terminals: c.terminals,
            active: c.active,
            silent: c.silent,
            behind: c.behind,
            backlog: c.backlog,
            records_pending: c.records_pending,
            records_uploaded: c.records_uploaded,
        },
        terminals: v
            .rows
            .into_iter()
            .map(|r| {
                let st = r.entry.status;
                FleetTerminalDto {
                    id: r.entry.terminal.id,
                    merchant: r.entry.terminal.merchant,
                    kind: r.entry.terminal.kind,
                    site: r.entry.terminal.site,
                    status: r.entry.terminal.status,
                    psam_terminal_id: r.entry.psam_terminal_id,
                    last_seen_ms: st.as_ref().map(|s| s.last_seen_ms),
                    last_upload_ms: st.as_ref().and_then(|s| s.last_upload_ms),
                    uploaded_records: st.as_ref().map_or(0, |s| s.uploaded_records),
                    records_pending: st.as_ref().and_then(|s| s.records_pending),
                    parameters_version: st.as_ref().and_then(|s| s.parameters_version.clone()),
                    deny_list_version: st.as_ref().and_then(|s| s.deny_list_version),
                    alerts: r.alerts.iter().map(|a| a.code().to_string()).collect(),
                }
            })
            .collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/terminal/activation", tag = "terminals",
    request_body = ActivationRequest,
    responses((status = 200, body = TerminalDto),
        (status = 403, body = Problem, description = "Unknown terminal, already active, or a wrong code")))]
pub async fn activate(
    State(s): State<AppState>,
    Json(b): Json<ActivationRequest>,
) -> ApiResult<axum::Json<TerminalDto>> {
    let key = hex::decode(b.public_key.trim())
        .map_err(|_| platform::PlatformError::invalid("public_key", "SEC1 hex"))?;
    let t = s
        .platform
        .terminal_activate(
            &b.id,
            &b.activation_code,
            &key,
            &b.software_version,
            b.psam_terminal_id.as_deref(),
            "terminal",
        )
        .await?;
    Ok(axum::Json(t.into()))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> ApiResult<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).ok_or_else(|| {
        ApiError::from(platform::PlatformError::TerminalRefused(format!(
            "terminal: the {name} header is missing"
        )))
    })
}

/// Authenticates a terminal-signed request.
pub async fn terminal_caller(
    s: &AppState,
    headers: &HeaderMap,
    method: &Method,
    uri: &OriginalUri,
    body: &[u8],
) -> ApiResult<TerminalCaller> {
    let time_s: i64 = header(headers, "x-terminal-time")?.parse().map_err(|_| {
        ApiError::from(platform::PlatformError::TerminalRefused(
            "terminal: x-terminal-time is not Unix seconds".into(),
        ))
    })?;
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
    let parts = terminals::RequestParts {
        terminal_id: header(headers, "x-terminal-id")?,
        time_s,
        nonce: header(headers, "x-terminal-nonce")?,
        method: method.as_str(),
        path_and_query: &path,
        body,
    };
    Ok(s.platform
        .terminal_authenticate(&parts, header(headers, "x-terminal-signature")?)
        .await?)
}

#[utoipa::path(get, path = "/api/v1/terminal/parameters", tag = "terminals",
    params(
        ("x-terminal-id" = String, Header, description = "The terminal's id"),
        ("x-terminal-time" = i64, Header, description = "Unix seconds"),
        ("x-terminal-nonce" = String, Header, description = "16 to 64 hex digits, never reused"),
        ("x-terminal-signature" = String, Header, description = "SM2 signature (hex) over the canonical form"),
        ParametersParams),
    responses((status = 200, body = ParametersDto),
        (status = 401, body = Problem, description = "Clock, replay or signature refused")))]
pub async fn parameters(
    State(s): State<AppState>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    Query(q): Query<ParametersParams>,
) -> ApiResult<axum::Json<ParametersDto>> {
    let t = terminal_caller(&s, &headers, &method, &uri, b"").await?;
    let report = (q.denylist.is_some() || q.pending.is_some()).then(|| store::TerminalReport {
        records_pending: q.pending,
        parameters_version: q.since.clone(),
        deny_list_version: q.denylist,
    });
    let p = s
        .platform
        .terminal_parameters(&t, q.since.as_deref(), report.as_ref())
        .await?;
    Ok(axum::Json(ParametersDto {
        version: p.version,
        changed: p.changed,
        server_time_s: p.server_time_s,
        deny_list_version: p.deny_list_version,
        deny_list_key: p.deny_list_key,
        fares: p
            .fares
            .map(|f| serde_json::to_value(&f))
            .transpose()
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        ecode_roots: p.ecode_roots,
        merchant: p.merchant,
    }))
}

#[utoipa::path(get, path = "/api/v1/terminal/denylist", tag = "terminals",
    params(
        ("x-terminal-id" = String, Header, description = "The terminal's id"),
        ("x-terminal-time" = i64, Header, description = "Unix seconds"),
        ("x-terminal-nonce" = String, Header, description = "16 to 64 hex digits, never reused"),
        ("x-terminal-signature" = String, Header, description = "SM2 signature (hex) over the canonical form"),
        TerminalDenyParams),
    responses((status = 200, content_type = "application/octet-stream", body = String,
        description = "The deny-list signed by the platform (issuance::DenyList, or with `since` \
        issuance::DenyListDelta); its version in the x-denylist-version header"),
        (status = 401, body = Problem),
        (status = 409, body = Problem, description = "Nothing changed since `since`")))]
pub async fn deny_list(
    State(s): State<AppState>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    Query(q): Query<TerminalDenyParams>,
) -> ApiResult<axum::response::Response> {
    terminal_caller(&s, &headers, &method, &uri, b"").await?;
    let (v, bytes) = match q.since {
        Some(since) => s.platform.deny_list_delta(since).await?,
        None => s.platform.deny_list_full().await?,
    };
    Ok(crate::cards_api::deny_binary(v, bytes))
}

/// SM3 of a request body, hex: what a batch id is bound to.
fn body_digest(body: &[u8]) -> String {
    use sm3::Digest;
    hex::encode_upper(sm3::Sm3::digest(body))
}

fn json_answer(bytes: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct TerminalUploadDto {
    /// The terminal's name for this upload (1 to 64 characters A-Z a-z 0-9 - _): sent again,
    /// the same body gets the answer it got the first time.
    #[serde(default)]
    pub batch_id: Option<String>,
    /// The terminal's records since its last acknowledged upload (at most 10,000); its
    /// merchant is the terminal's.
    pub records: Vec<crate::purchases_api::PurchaseRecordDto>,
}

#[utoipa::path(post, path = "/api/v1/terminal/uploads", tag = "terminals",
    params(
        ("x-terminal-id" = String, Header, description = "The terminal's id"),
        ("x-terminal-time" = i64, Header, description = "Unix seconds"),
        ("x-terminal-nonce" = String, Header, description = "16 to 64 hex digits, never reused"),
        ("x-terminal-signature" = String, Header, description = "SM2 signature (hex) over the canonical form, body included")),
    request_body = TerminalUploadDto,
    responses((status = 200, body = crate::purchases_api::PurchaseUploadResultDto,
        description = "One result per record; sending the same upload again answers duplicate"),
        (status = 401, body = Problem), (status = 413, body = Problem)))]
pub async fn upload(
    State(s): State<AppState>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<axum::response::Response> {
    let t = terminal_caller(&s, &headers, &method, &uri, &body).await?;
    let dto: TerminalUploadDto = serde_json::from_slice(&body)
        .map_err(|e| platform::PlatformError::invalid("body", format!("not an upload: {e}")))?;
    let digest = body_digest(&body);
    if let Some(id) = &dto.batch_id
        && let Some(answer) = s.platform.terminal_batch_answer(&t, id, &digest).await?
    {
        return Ok(json_answer(answer));
    }
    let batch_id = dto.batch_id;
    let records: Vec<chip::host::RawUpload> = dto
        .records
        .into_iter()
        .map(|r| chip::host::RawUpload {
            card_number: r.card_number,
            algorithm_id: r.algorithm_id,
            key_version: r.key_version,
            offline_counter: r.offline_counter,
            amount_fen: r.amount_fen,
            tx_type: r.tx_type,
            terminal_id: r.terminal_id,
            terminal_serial: r.terminal_serial,
            date: r.date,
            time: r.time,
            balance_before_fen: r.balance_before_fen,
            tac: r.tac,
        })
        .collect();
    let n = records.len();
    let answer = match batch_id {
        // The answer is stored with the postings, in their transaction.
        Some(id) => {
            s.platform
                .terminal_upload_batch(
                    &t,
                    records,
                    &id,
                    &digest,
                    std::sync::Arc::new(upload_answer),
                )
                .await?
        }
        None => upload_answer(&s.platform.terminal_upload(&t, records).await?),
    };
    metrics::counter!("citycard_terminal_records_uploaded_total", "kind" => "card")
        .increment(n as u64);
    Ok(json_answer(answer))
}

/// The answer to an upload: the counts and one result per record.
fn upload_answer(results: &[platform::purchases::PurchaseResult]) -> Vec<u8> {
    let counts = platform::purchases::IngestCounts::of(results);
    serde_json::to_vec(&crate::purchases_api::PurchaseUploadResultDto {
        posted: counts.posted,
        duplicate: counts.duplicate,
        bad_tac: counts.bad_tac,
        malformed: counts.malformed,
        flagged: counts.flagged,
        results: results
            .iter()
            .cloned()
            .map(crate::purchases_api::result_dto)
            .collect(),
    })
    .expect("plain JSON")
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct EcodePaymentItem {
    /// The scanned `ZZC1:` text.
    pub text: String,
    pub amount_fen: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct EcodeUploadDto {
    /// As for card uploads: the same batch id and body get the first answer again.
    #[serde(default)]
    pub batch_id: Option<String>,
    /// At most 5,000 payments the terminal accepted offline.
    pub payments: Vec<EcodePaymentItem>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct EcodeOnlineDto {
    /// The scanned `ZZC1:` text.
    pub text: String,
    pub amount_fen: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct EcodePaymentResultDto {
    /// paid, debt, duplicate, refused, malformed; online also declined
    pub result: String,
    pub reason: Option<String>,
    pub key: Option<String>,
    pub payment_id: Option<i64>,
    /// The certificate's payments now exceed its offline limit.
    pub over_limit: bool,
}

#[utoipa::path(post, path = "/api/v1/terminal/ecode-payments", tag = "terminals",
    params(
        ("x-terminal-id" = String, Header, description = "The terminal's id"),
        ("x-terminal-time" = i64, Header, description = "Unix seconds"),
        ("x-terminal-nonce" = String, Header, description = "16 to 64 hex digits, never reused"),
        ("x-terminal-signature" = String, Header, description = "SM2 signature (hex) over the canonical form, body included")),
    request_body = EcodeUploadDto,
    responses((status = 200, body = [EcodePaymentResultDto],
        description = "One result per code: paid from the holder's account, or a debt"),
        (status = 401, body = Problem), (status = 413, body = Problem)))]
pub async fn ecode_upload(
    State(s): State<AppState>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<axum::response::Response> {
    let t = terminal_caller(&s, &headers, &method, &uri, &body).await?;
    let dto: EcodeUploadDto = serde_json::from_slice(&body)
        .map_err(|e| platform::PlatformError::invalid("body", format!("not an upload: {e}")))?;
    let digest = body_digest(&body);
    if let Some(id) = &dto.batch_id
        && let Some(answer) = s.platform.terminal_batch_answer(&t, id, &digest).await?
    {
        return Ok(json_answer(answer));
    }
    let items: Vec<(String, i64)> = dto
        .payments
        .into_iter()
        .map(|p| (p.text, p.amount_fen))
        .collect();
    let n = items.len();
    let results = s.platform.ecode_payment_upload(&t, &items).await?;
    let answer = serde_json::to_vec(
        &results
            .into_iter()
            .map(ecode_result_dto)
            .collect::<Vec<_>>(),
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    metrics::counter!("citycard_terminal_records_uploaded_total", "kind" => "ecode")
        .increment(n as u64);
    let answer = match dto.batch_id {
        Some(id) => {
            s.platform
                .terminal_batch_keep(&t, &id, "ecode", &digest, n, answer)
                .await?
        }
        None => answer,
    };
    Ok(json_answer(answer))
}

fn ecode_result_dto(r: platform::ecode_payments::EcodePaymentResult) -> EcodePaymentResultDto {
    EcodePaymentResultDto {
        result: r.result,
        reason: r.reason,
        key: r.key,
        payment_id: r.payment_id,
        over_limit: r.over_limit,
    }
}

#[utoipa::path(post, path = "/api/v1/terminal/ecode-payments/online", tag = "terminals",
    params(
        ("x-terminal-id" = String, Header, description = "The terminal's id"),
        ("x-terminal-time" = i64, Header, description = "Unix seconds"),
        ("x-terminal-nonce" = String, Header, description = "16 to 64 hex digits, never reused"),
        ("x-terminal-signature" = String, Header, description = "SM2 signature (hex) over the canonical form, body included")),
    request_body = EcodeOnlineDto,
    responses((status = 200, body = EcodePaymentResultDto,
        description = "paid (hand over the goods), declined (the account cannot pay or the card \
            is not active; nothing owed), refused (a check of the code failed, with its reason \
            code), duplicate (this code already paid; the first payment's id), malformed"),
        (status = 401, body = Problem)))]
pub async fn ecode_online(
    State(s): State<AppState>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<EcodePaymentResultDto>> {
    let t = terminal_caller(&s, &headers, &method, &uri, &body).await?;
    let dto: EcodeOnlineDto = serde_json::from_slice(&body).map_err(|e| {
        platform::PlatformError::invalid("body", format!("not an e-code payment: {e}"))
    })?;
    let r = s
        .platform
        .ecode_payment_online(&t, &dto.text, dto.amount_fen)
        .await?;
    Ok(axum::Json(ecode_result_dto(r)))
}
