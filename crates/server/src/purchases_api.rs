//! Offline purchase upload (脱机消费上传): `POST /api/v1/purchases` takes a merchant's batch of
//! terminal records (`epurse.md` §5) and answers one result per record, in order.

use crate::AppState;
use crate::error::{ApiResult, Problem};
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Extension, Router};
use platform::Caller;
use platform::purchases::{IngestCounts, PurchaseResult};
use utoipa::ToSchema;

/// An upload of 10,000 records is about 3.5 MB of JSON.
pub const PURCHASES_BODY_MAX: usize = 8 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/purchases",
        post(upload).layer(DefaultBodyLimit::max(PURCHASES_BODY_MAX)),
    )
}

/// One purchase as the terminal recorded it. A missing or wrong field makes this record
/// `malformed` (naming the field); the others of the upload still go through.
#[derive(serde::Serialize, serde::Deserialize, ToSchema, Default)]
#[serde(default)]
pub struct PurchaseRecordDto {
    /// 16-digit card number.
    pub card_number: String,
    /// 0 (3DES) or 4 (SM4).
    pub algorithm_id: i64,
    /// 1.
    pub key_version: i64,
    /// The card's offline counter before the purchase (0..=65535).
    pub offline_counter: i64,
    pub amount_fen: i64,
    /// 6 purchase, 9 complex purchase (metro).
    pub tx_type: i64,
    /// 12 hex digits (the PSAM's terminal id).
    pub terminal_id: String,
    pub terminal_serial: i64,
    /// `YYYYMMDD`, city time.
    pub date: String,
    /// `hhmmss`, city time.
    pub time: String,
    pub balance_before_fen: i64,
    /// 8 hex digits.
    pub tac: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct PurchaseUploadDto {
    /// Merchant code: its payable account is credited.
    pub merchant: String,
    /// At most 10,000 records.
    pub records: Vec<PurchaseRecordDto>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CounterGapDto {
    /// First missing offline counter.
    pub first: u16,
    /// Last missing offline counter.
    pub last: u16,
}

/// What to review about a posted purchase.
#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct PurchaseFlagsDto {
    /// The card was on the deny-list when the record arrived.
    pub deny_listed: bool,
    /// Offline counters of the card missing before this one.
    pub counter_gap: Option<CounterGapDto>,
    /// Made before the window it was posted into.
    pub late: bool,
    /// Not covered by the card's e-purse shadow; taken from suspense.
    pub shortfall_fen: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct PurchaseResultDto {
    /// `posted`, `duplicate`, `bad_tac` or `malformed`.
    pub result: String,
    /// The purchase (for a duplicate: the first upload of it).
    pub purchase_id: Option<i64>,
    /// Clearing window, e.g. `2026-11-30`.
    pub window: Option<String>,
    /// The ledger transfer that carries its money (none for 0 fen).
    pub transfer_id: Option<i64>,
    pub flags: Option<PurchaseFlagsDto>,
    /// For `malformed`: the field and what is wrong.
    pub field: Option<String>,
    pub reason: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct PurchaseUploadResultDto {
    pub posted: u64,
    pub duplicate: u64,
    pub bad_tac: u64,
    pub malformed: u64,
    /// Posted with at least one flag.
    pub flagged: u64,
    /// One per record, in order.
    pub results: Vec<PurchaseResultDto>,
}

pub(crate) fn result_dto(r: PurchaseResult) -> PurchaseResultDto {
    let mut dto = PurchaseResultDto {
        result: String::new(),
        purchase_id: None,
        window: None,
        transfer_id: None,
        flags: None,
        field: None,
        reason: None,
    };
    match r {
        PurchaseResult::Posted {
            id,
            window,
            transfer_id,
            flags,
        } => {
            dto.result = "posted".into();
            dto.purchase_id = Some(id);
            dto.window = Some(window);
            dto.transfer_id = transfer_id;
            dto.flags = Some(PurchaseFlagsDto {
                deny_listed: flags.deny_listed,
                counter_gap: flags.gap.map(|(first, last)| CounterGapDto { first, last }),
                late: flags.late,
                shortfall_fen: flags.shortfall.get(),
            });
        }
        PurchaseResult::Duplicate { id, window } => {
            dto.result = "duplicate".into();
            dto.purchase_id = Some(id);
            dto.window = Some(window);
        }
        PurchaseResult::BadTac => dto.result = "bad_tac".into(),
        PurchaseResult::Malformed { field, reason } => {
            dto.result = "malformed".into();
            dto.field = Some(field);
            dto.reason = Some(reason);
        }
    }
    dto
}

#[utoipa::path(post, path = "/api/v1/purchases", tag = "clearing", security(("bearer" = [])),
    request_body = PurchaseUploadDto,
    responses((status = 200, body = PurchaseUploadResultDto), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 413, body = Problem)))]
pub async fn upload(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    axum::Json(body): axum::Json<PurchaseUploadDto>,
) -> ApiResult<axum::Json<PurchaseUploadResultDto>> {
    let records = body
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
    let results = s
        .platform
        .ingest_purchases(&c, &body.merchant, records)
        .await?;
    let counts = IngestCounts::of(&results);
    Ok(axum::Json(PurchaseUploadResultDto {
        posted: counts.posted,
        duplicate: counts.duplicate,
        bad_tac: counts.bad_tac,
        malformed: counts.malformed,
        flagged: counts.flagged,
        results: results.into_iter().map(result_dto).collect(),
    }))
}
