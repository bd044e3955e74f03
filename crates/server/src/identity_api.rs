//! Identity verification for hotels and counters through the exchange (issue 8, item 7):
//! `POST /api/v1/exchange/checkin`, signed by the hotel's member key like any exchange call.

use crate::AppState;
use crate::error::{ApiResult, Problem};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use exchange::message::{HEADER_BATCH, HEADER_MEMBER, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME};
use platform::exchange::{CALL_BODY_MAX, SignedCall};
use std::net::SocketAddr;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/exchange/checkin",
        post(checkin).layer(axum::extract::DefaultBodyLimit::max(CALL_BODY_MAX)),
    )
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[utoipa::path(post, path = "/api/v1/exchange/checkin", tag = "exchange",
    params(
        ("x-exchange-member" = String, Header, description = "The hotel's member code"),
        ("x-exchange-time" = i64, Header, description = "Unix seconds"),
        ("x-exchange-nonce" = String, Header, description = "16 to 64 hex digits, never reused"),
        ("x-exchange-batch" = Option<String>, Header, description = "A batch-signed message's path in its batch's SM3 hash tree (exchange crate); absent when signed alone"),
        ("x-exchange-signature" = String, Header, description = "SM2 signature (hex) over the canonical form, or over the batch's root, body included")),
    request_body(content = Object, description = "`service` (police.identity-checkin), `purpose`, `via` (`card` with `id_number` and `name` as read from the chip, or `ecode` with the scanned `ecode` text), `room`, `fields`"),
    responses((status = 200, description = "The police's answer as the hotel may see it (verified, name masked, check-in number), signed by the exchange"),
        (status = 401, body = Problem, description = "Unsigned, forged, replayed or out of the clock window"),
        (status = 403, body = Problem, description = "No or withdrawn grant; a refused e-code (ecode_* codes)"),
        (status = 502, body = Problem, description = "The police failed or their answer was not signed by them"),
        (status = 504, body = Problem, description = "The police did not answer in time")))]
pub async fn checkin(
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
        .exchange_identity_checkin(&SignedCall {
            member: &member,
            time_s,
            nonce: &nonce,
            signature: &sig,
            batch: batch.as_deref(),
            body: &body,
            origin: &origin,
        })
        .await?;
    Ok(crate::exchange_api::signed_answer(d))
}
