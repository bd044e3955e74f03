//! Citizen services' API (issue 9): notification preferences, inboxes and the outbox's
//! delivery; billers, bills (JSON or CSV file), bill payment, auto-debit agreements, bill runs
//! and billers' payment files. ID numbers travel in request bodies, never in a URL.

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use platform::Caller;
use platform::bills::BillView;
use platform::money::Payer;
use platform::notifications::{DeliveryReport, NotificationView, PrefsView};
use store::{AgreementRow, BillRunRow, BillUpload, BillerRow};
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/notifications", get(outbox))
        .route("/api/v1/notifications/counts", get(counts))
        .route("/api/v1/notifications/delivery", post(deliver))
        .route("/api/v1/notifications/preferences", post(prefs_set))
        .route("/api/v1/notifications/preferences/query", post(prefs_get))
        .route("/api/v1/notifications/inbox", post(inbox))
        .route("/api/v1/billers", get(billers).post(biller_create))
        .route(
            "/api/v1/billers/{code}/bills",
            post(bills_upload).layer(DefaultBodyLimit::max(bills::BILL_FILE_BYTES_MAX * 2)),
        )
        .route(
            "/api/v1/billers/{code}/bills/file",
            post(bills_file).layer(DefaultBodyLimit::max(bills::BILL_FILE_BYTES_MAX)),
        )
        .route("/api/v1/billers/{code}/bills/{number}", get(bill_get))
        .route(
            "/api/v1/billers/{code}/bills/{number}/payment",
            post(bill_pay),
        )
        .route("/api/v1/billers/{code}/payment-file", get(payment_file))
        .route("/api/v1/agreements", post(agreement_sign))
        .route(
            "/api/v1/agreements/{id}/cancellation",
            post(agreement_cancel),
        )
        .route("/api/v1/bills/of-citizen", post(bills_of_citizen))
        .route("/api/v1/bill-runs", get(bill_runs).post(bill_run))
}

// -- notifications ---------------------------------------------------------------------------

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct PrefsBody {
    pub id_number: String,
    /// zh-CN or en
    pub language: String,
    pub sms_enabled: bool,
    /// A mobile number for notices; "" clears it (the resident record's phone is used).
    pub phone: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct IdBody {
    pub id_number: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct PrefsDto {
    pub language: String,
    pub sms_enabled: bool,
    /// Masked: 138****5678.
    pub phone_masked: Option<String>,
    /// preferences or resident_record
    pub phone_source: Option<String>,
}

impl From<PrefsView> for PrefsDto {
    fn from(v: PrefsView) -> Self {
        PrefsDto {
            language: v.language,
            sms_enabled: v.sms_enabled,
            phone_masked: v.phone_masked,
            phone_source: v.phone_source,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct NotificationDto {
    pub id: i64,
    pub key: String,
    pub resident_id: i64,
    /// sms or inapp
    pub channel: String,
    pub template: String,
    pub language: String,
    pub body: String,
    /// pending, sent, failed (SMS); unread, read (in-app)
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub gateway_ref: Option<String>,
    pub created_ms: i64,
    pub done_ms: Option<i64>,
}

impl From<NotificationView> for NotificationDto {
    fn from(v: NotificationView) -> Self {
        NotificationDto {
            id: v.id,
            key: v.key,
            resident_id: v.resident_id,
            channel: v.channel,
            template: v.template,
            language: v.language,
            body: v.body,
            status: v.status,
            attempts: v.attempts,
            last_error: v.last_error,
            gateway_ref: v.gateway_ref,
            created_ms: v.created_ms,
            done_ms: v.done_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct InboxBody {
    pub id_number: String,
    /// sms or inapp; both when absent
    pub channel: Option<String>,
    pub limit: Option<u32>,
}

#[derive(serde::Deserialize, IntoParams)]
pub struct OutboxParams {
    /// pending, sent, failed, unread or read
    pub status: Option<String>,
    pub limit: Option<u32>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CountDto {
    pub channel: String,
    pub status: String,
    pub count: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct DeliveryDto {
    pub claimed: u64,
    pub sent: u64,
    pub retried: u64,
    pub failed: u64,
}

impl From<DeliveryReport> for DeliveryDto {
    fn from(r: DeliveryReport) -> Self {
        DeliveryDto {
            claimed: r.claimed,
            sent: r.sent,
            retried: r.retried,
            failed: r.failed,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/notifications/preferences", tag = "services",
    security(("bearer" = [])), request_body = PrefsBody,
    responses((status = 200, body = PrefsDto), (status = 422, body = Problem)))]
/// Sets a citizen's notice preferences: language, SMS on or off, a phone for notices.
pub async fn prefs_set(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<PrefsBody>,
) -> ApiResult<axum::Json<PrefsDto>> {
    let v = s
        .platform
        .notify_prefs_set(
            &c,
            &b.id_number,
            &b.language,
            b.sms_enabled,
            b.phone.as_deref(),
        )
        .await?;
    Ok(axum::Json(v.into()))
}

#[utoipa::path(post, path = "/api/v1/notifications/preferences/query", tag = "services",
    security(("bearer" = [])), request_body = IdBody,
    responses((status = 200, body = PrefsDto), (status = 404, body = Problem)))]
/// A citizen's notice preferences (defaults when never set), the phone masked.
pub async fn prefs_get(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<IdBody>,
) -> ApiResult<axum::Json<PrefsDto>> {
    Ok(axum::Json(
        s.platform.notify_prefs_get(&c, &b.id_number).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/notifications/inbox", tag = "services",
    security(("bearer" = [])), request_body = InboxBody,
    responses((status = 200, body = [NotificationDto])))]
/// A citizen's notices, newest first.
pub async fn inbox(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<InboxBody>,
) -> ApiResult<axum::Json<Vec<NotificationDto>>> {
    let v = s
        .platform
        .notifications_of(
            &c,
            &b.id_number,
            b.channel.as_deref(),
            b.limit.unwrap_or(50),
        )
        .await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/notifications", tag = "services",
    security(("bearer" = [])), params(OutboxParams),
    responses((status = 200, body = [NotificationDto])))]
/// The outbox by status, newest first (no phones).
pub async fn outbox(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<OutboxParams>,
) -> ApiResult<axum::Json<Vec<NotificationDto>>> {
    let v = s
        .platform
        .notifications_page(&c, q.status.as_deref(), q.limit.unwrap_or(100))
        .await?;
    Ok(axum::Json(v.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/notifications/counts", tag = "services",
    security(("bearer" = [])), responses((status = 200, body = [CountDto])))]
/// Notices per channel and status.
pub async fn counts(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<Vec<CountDto>>> {
    let v = s.platform.notify_counts(&c).await?;
    Ok(axum::Json(
        v.into_iter()
            .map(|n| CountDto {
                channel: n.channel,
                status: n.status,
                count: n.count,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/notifications/delivery", tag = "services",
    security(("bearer" = [])), responses((status = 200, body = DeliveryDto)))]
/// Delivers one batch of due SMS now (the server's worker does this every few seconds).
pub async fn deliver(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<DeliveryDto>> {
    Ok(axum::Json(
        s.platform
            .deliver_notifications(&c, platform::notifications::DELIVERY_BATCH_MAX)
            .await?
            .into(),
    ))
}

// -- bills -----------------------------------------------------------------------------------

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct BillerDto {
    /// A registered merchant of the utility category.
    pub code: String,
    /// water, electricity, gas, heating, telephone, broadband, cable_tv
    pub kind: String,
}

impl From<BillerRow> for BillerDto {
    fn from(b: BillerRow) -> Self {
        BillerDto {
            code: b.code,
            kind: b.kind,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct BillLineDto {
    pub bill_number: String,
    pub customer_no: String,
    /// YYYY-MM
    pub period: String,
    pub amount_fen: i64,
    /// YYYY-MM-DD
    pub due_date: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct BillsBody {
    pub bills: Vec<BillLineDto>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct UploadDto {
    pub inserted: u64,
    /// Bills already stored with the same content.
    pub unchanged: u64,
}

impl From<BillUpload> for UploadDto {
    fn from(u: BillUpload) -> Self {
        UploadDto {
            inserted: u.inserted,
            unchanged: u.unchanged,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct BillDto {
    pub id: i64,
    pub biller: String,
    pub bill_number: String,
    pub customer_no: String,
    pub period: String,
    pub amount_fen: i64,
    pub due_date: String,
    /// open or paid
    pub status: String,
    pub payment_id: Option<i64>,
    /// auto or citizen
    pub paid_by: Option<String>,
    pub paid_ms: Option<i64>,
    pub debit_attempts: i32,
    pub next_debit_ms: Option<i64>,
    pub last_error: Option<String>,
}

impl From<BillView> for BillDto {
    fn from(b: BillView) -> Self {
        BillDto {
            id: b.id,
            biller: b.biller,
            bill_number: b.bill_number,
            customer_no: b.customer_no,
            period: b.period,
            amount_fen: b.amount_fen,
            due_date: b.due_date,
            status: b.status,
            payment_id: b.payment_id,
            paid_by: b.paid_by,
            paid_ms: b.paid_ms,
            debit_attempts: b.debit_attempts,
            next_debit_ms: b.next_debit_ms,
            last_error: b.last_error,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct PayBillBody {
    /// Exactly one of card_number and id_number.
    pub card_number: Option<String>,
    pub id_number: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct AgreementBody {
    pub id_number: String,
    pub biller: String,
    pub customer_no: String,
    /// The largest bill debited automatically.
    pub limit_fen: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct AgreementDto {
    pub id: i64,
    pub biller: String,
    pub customer_no: String,
    pub limit_fen: i64,
    /// active or cancelled
    pub status: String,
    pub created_ms: i64,
}

impl From<AgreementRow> for AgreementDto {
    fn from(a: AgreementRow) -> Self {
        AgreementDto {
            id: a.id,
            biller: a.biller,
            customer_no: a.customer_no,
            limit_fen: a.limit_fen,
            status: a.status,
            created_ms: a.created_ms,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CitizenBillsDto {
    pub agreements: Vec<AgreementDto>,
    pub bills: Vec<BillDto>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct RunBody {
    /// Bills due on or before this date (YYYY-MM-DD) are debited.
    pub due_on: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct BillRunDto {
    pub id: i64,
    pub due_on: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub considered: i64,
    pub debited: i64,
    pub debited_fen: i64,
    pub short_of_funds: i64,
    pub over_limit: i64,
    pub notices: i64,
}

impl From<BillRunRow> for BillRunDto {
    fn from(r: BillRunRow) -> Self {
        BillRunDto {
            id: r.id,
            due_on: r.due_on,
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            considered: r.considered,
            debited: r.debited,
            debited_fen: r.debited_fen,
            short_of_funds: r.short_of_funds,
            over_limit: r.over_limit,
            notices: r.notices,
        }
    }
}

#[derive(serde::Deserialize, IntoParams)]
pub struct DayParams {
    /// The city day (YYYY-MM-DD) whose payments the file lists.
    pub day: String,
}

#[utoipa::path(post, path = "/api/v1/billers", tag = "services", security(("bearer" = [])),
    request_body = BillerDto,
    responses((status = 201, body = BillerDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
/// Registers a utility merchant as a biller of a kind.
pub async fn biller_create(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<BillerDto>,
) -> ApiResult<(StatusCode, axum::Json<BillerDto>)> {
    let r = s.platform.biller_create(&c, &b.code, &b.kind).await?;
    Ok((StatusCode::CREATED, axum::Json(r.into())))
}

#[utoipa::path(get, path = "/api/v1/billers", tag = "services", security(("bearer" = [])),
    responses((status = 200, body = [BillerDto])))]
pub async fn billers(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<Vec<BillerDto>>> {
    Ok(axum::Json(
        s.platform
            .billers(&c)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/billers/{code}/bills", tag = "services",
    security(("bearer" = [])), params(("code" = String, Path)), request_body = BillsBody,
    responses((status = 200, body = UploadDto), (status = 409, body = Problem), (status = 422, body = Problem)))]
/// Uploads bills, all or nothing; every bad bill is named by its index.
pub async fn bills_upload(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
    Json(b): Json<BillsBody>,
) -> ApiResult<axum::Json<UploadDto>> {
    let mut lines = Vec::with_capacity(b.bills.len());
    let mut problems = Vec::new();
    for (i, l) in b.bills.iter().enumerate() {
        match bills::BillLine::parse(
            &l.bill_number,
            &l.customer_no,
            &l.period,
            &l.amount_fen.to_string(),
            &l.due_date,
        ) {
            Ok(x) => lines.push(x),
            Err(e) => problems.push(platform::FieldProblem {
                field: format!("bills[{i}]"),
                message: e.to_string(),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Platform(platform::PlatformError::Invalid {
            message: format!(
                "{} bad bills, nothing stored; the first: {}: {}",
                problems.len(),
                problems[0].field,
                problems[0].message
            ),
            fields: problems.into_iter().take(1000).collect(),
        }));
    }
    Ok(axum::Json(
        s.platform.bills_upload(&c, &code, &lines).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/billers/{code}/bills/file", tag = "services",
    security(("bearer" = [])), params(("code" = String, Path)),
    request_body(content = String, content_type = "text/csv",
        description = "bill_number,customer_no,period,amount_fen,due_date"),
    responses((status = 200, body = UploadDto), (status = 409, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem)))]
/// Uploads a bill file; a file with a bad line stores nothing and names every bad line.
pub async fn bills_file(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<UploadDto>> {
    Ok(axum::Json(
        s.platform.bills_upload_file(&c, &code, &body).await?.into(),
    ))
}

#[utoipa::path(get, path = "/api/v1/billers/{code}/bills/{number}", tag = "services",
    security(("bearer" = [])), params(("code" = String, Path), ("number" = String, Path)),
    responses((status = 200, body = BillDto), (status = 404, body = Problem)))]
pub async fn bill_get(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((code, number)): Path<(String, String)>,
) -> ApiResult<axum::Json<BillDto>> {
    Ok(axum::Json(
        s.platform.bill_get(&c, &code, &number).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/billers/{code}/bills/{number}/payment", tag = "services",
    security(("bearer" = [])), params(("code" = String, Path), ("number" = String, Path)),
    request_body = PayBillBody,
    responses((status = 200, body = crate::money_api::PaymentDto), (status = 409, body = Problem)))]
/// Pays a bill from the citizen's online account, once (a repeat answers the first payment).
pub async fn bill_pay(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((code, number)): Path<(String, String)>,
    Json(b): Json<PayBillBody>,
) -> ApiResult<axum::Json<crate::money_api::PaymentDto>> {
    let payer = match (b.card_number, b.id_number) {
        (Some(n), None) => Payer::Card(n),
        (None, Some(i)) => Payer::IdNumber(i),
        _ => {
            return Err(ApiError::Platform(platform::PlatformError::invalid(
                "payer",
                "give exactly one of card_number and id_number",
            )));
        }
    };
    let v = s.platform.bill_pay(&c, &payer, &code, &number).await?;
    Ok(axum::Json(v.into()))
}

#[utoipa::path(get, path = "/api/v1/billers/{code}/payment-file", tag = "services",
    security(("bearer" = [])), params(("code" = String, Path), DayParams),
    responses((status = 200, content_type = "text/csv", body = String)))]
/// The biller's payment file of a day: the bills paid, with a count, total and SM3 trailer.
pub async fn payment_file(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
    Query(q): Query<DayParams>,
) -> ApiResult<impl IntoResponse> {
    let f = s.platform.biller_payment_file(&c, &code, &q.day).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], f))
}

#[utoipa::path(post, path = "/api/v1/agreements", tag = "services", security(("bearer" = [])),
    request_body = AgreementBody,
    responses((status = 201, body = AgreementDto), (status = 409, body = Problem)))]
/// Signs an auto-debit agreement for a household with a per-bill limit.
pub async fn agreement_sign(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<AgreementBody>,
) -> ApiResult<(StatusCode, axum::Json<AgreementDto>)> {
    let a = s
        .platform
        .agreement_sign(&c, &b.id_number, &b.biller, &b.customer_no, b.limit_fen)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(a.into())))
}

#[utoipa::path(post, path = "/api/v1/agreements/{id}/cancellation", tag = "services",
    security(("bearer" = [])), params(("id" = i64, Path)), request_body = IdBody,
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn agreement_cancel(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<IdBody>,
) -> ApiResult<StatusCode> {
    s.platform.agreement_cancel(&c, &b.id_number, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/bills/of-citizen", tag = "services",
    security(("bearer" = [])), request_body = IdBody,
    responses((status = 200, body = CitizenBillsDto)))]
/// A citizen's agreements and the bills of their households.
pub async fn bills_of_citizen(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<IdBody>,
) -> ApiResult<axum::Json<CitizenBillsDto>> {
    let (a, bills) = s.platform.bills_of_citizen(&c, &b.id_number).await?;
    Ok(axum::Json(CitizenBillsDto {
        agreements: a.into_iter().map(Into::into).collect(),
        bills: bills.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/bill-runs", tag = "services", security(("bearer" = [])),
    request_body = RunBody, responses((status = 200, body = BillRunDto)))]
/// Runs the auto-debit of the bills due on or before a date.
pub async fn bill_run(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<RunBody>,
) -> ApiResult<axum::Json<BillRunDto>> {
    Ok(axum::Json(s.platform.bill_run(&c, &b.due_on).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/bill-runs", tag = "services", security(("bearer" = [])),
    responses((status = 200, body = [BillRunDto])))]
pub async fn bill_runs(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<axum::Json<Vec<BillRunDto>>> {
    Ok(axum::Json(
        s.platform
            .bill_runs(&c, 100)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}
