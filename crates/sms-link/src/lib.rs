//! SMS gateways over HTTP: [`HttpSmsGateway`], the client side of the SMS gateway protocol
//! (`docs/sms-gateway.md`), implementing `platform::notifications::SmsGateway`; and [`sim`], a
//! simulated gateway that speaks the same protocol as a real HTTP service, delivers each
//! message id once, and can be told to be unavailable, to answer late, or to reject numbers.
//!
//! Like `bank-link`, the client is hyper-util's: one JSON call over HTTP/1.1 needs no more.

pub mod sim;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use platform::notifications::{SmsAnswer, SmsError, SmsGateway, SmsMessage};
use std::time::Duration;

/// An answer body is at most this large.
pub const ANSWER_BYTES_MAX: usize = 16 * 1024;

/// A message on the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireMessage {
    /// 1 to 64 characters of `[0-9a-f]`: the idempotency key.
    pub message_id: String,
    pub phone: String,
    pub text: String,
}

/// An answer on the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireAnswer {
    pub message_id: String,
    /// `accepted` or `rejected`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The SMS gateway protocol's client.
pub struct HttpSmsGateway {
    base: String,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpSmsGateway {
    /// `base_url` is `http://host:port` without a trailing slash; every call, answer
    /// included, must finish within `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        HttpSmsGateway {
            base: base_url.trim_end_matches('/').to_string(),
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

#[async_trait::async_trait]
impl SmsGateway for HttpSmsGateway {
    fn name(&self) -> &str {
        "http"
    }

    async fn send(&self, m: &SmsMessage) -> Result<SmsAnswer, SmsError> {
        let body = serde_json::to_vec(&WireMessage {
            message_id: m.message_id.clone(),
            phone: m.phone.expose().to_string(),
            text: m.text.clone(),
        })
        .map_err(|e| SmsError::Protocol(e.to_string()))?;
        let req = hyper::Request::builder()
            .method("POST")
            .uri(format!("{}/v1/messages", self.base))
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SmsError::Protocol(format!("building the request: {e}")))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| SmsError::Unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            let bytes = http_body_util::Limited::new(resp.into_body(), ANSWER_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| SmsError::Unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, SmsError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SmsError::Timeout(self.timeout.as_millis() as u64))??;
        match status {
            200 => {}
            // Busy or down: worth another try later.
            429 | 500..=599 => {
                return Err(SmsError::Unreachable(format!("HTTP {status}")));
            }
            _ => {
                return Err(SmsError::Protocol(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                )));
            }
        }
        let a: WireAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| SmsError::Protocol(format!("answer is not the protocol: {e}")))?;
        if a.message_id != m.message_id {
            return Err(SmsError::Protocol(format!(
                "answer for message {:?}, sent {:?}",
                a.message_id, m.message_id
            )));
        }
        match a.status.as_str() {
            "accepted" => Ok(SmsAnswer::Accepted {
                gateway_ref: a
                    .gateway_ref
                    .ok_or_else(|| SmsError::Protocol("accepted without gateway_ref".into()))?,
            }),
            "rejected" => Ok(SmsAnswer::Rejected {
                reason: a.reason.unwrap_or_else(|| "unspecified".into()),
            }),
            s => Err(SmsError::Protocol(format!("unknown status {s:?}"))),
        }
    }
}
