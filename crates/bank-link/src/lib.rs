//! Payment channels over HTTP: [`HttpBankChannel`], the client side of the bank channel
//! protocol (`docs/bank-channel.md`), implementing `platform::channel::PaymentChannel`; and
//! [`sim`], a simulated bank that speaks the same protocol as a real HTTP service, with
//! synthetic accounts and switches to refuse, hang past the client's time limit, or answer
//! late.
//!
//! The client is hyper-util's (already in the build for the server's tests and benchmarks)
//! rather than reqwest: two JSON calls over HTTP/1.1 need no more, and it keeps the TLS and
//! cookie stacks of reqwest out of the binary. TLS towards a real bank is a front proxy's job
//! here (see the protocol document).

pub mod sim;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use platform::channel::{ChannelAnswer, ChannelError, DebitRequest, PaymentChannel};
use std::time::Duration;

/// An answer body is at most this large.
pub const ANSWER_BYTES_MAX: usize = 16 * 1024;

/// A debit request on the wire.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WireDebit {
    pub order_id: String,
    pub account: String,
    pub amount_fen: i64,
    pub currency: String,
}

/// An answer on the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireAnswer {
    pub order_id: String,
    /// `succeeded`, `failed` or `processing`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl WireAnswer {
    fn into_answer(self, order_id: &str) -> Result<ChannelAnswer, ChannelError> {
        if self.order_id != order_id {
            return Err(ChannelError::Protocol(format!(
                "answer for order {:?}, asked about {order_id:?}",
                self.order_id
            )));
        }
        match self.status.as_str() {
            "succeeded" => Ok(ChannelAnswer::Succeeded {
                bank_ref: self
                    .bank_ref
                    .ok_or_else(|| ChannelError::Protocol("succeeded without bank_ref".into()))?,
            }),
            "failed" => Ok(ChannelAnswer::Failed {
                reason: self.reason.unwrap_or_else(|| "unspecified".into()),
            }),
            "processing" => Ok(ChannelAnswer::Processing),
            s => Err(ChannelError::Protocol(format!("unknown status {s:?}"))),
        }
    }
}

/// The bank channel protocol's client.
pub struct HttpBankChannel {
    code: String,
    base: String,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpBankChannel {
    /// `code` names the bank (owner of its float account, `[A-Za-z0-9_-]`); `base_url` is
    /// `http://host:port` without a trailing slash; every call, answer included, must finish
    /// within `timeout`.
    pub fn new(code: &str, base_url: &str, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        HttpBankChannel {
            code: code.to_string(),
            base: base_url.trim_end_matches('/').to_string(),
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        order_id: &str,
    ) -> Result<ChannelAnswer, ChannelError> {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("accept", "application/json");
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let req = b
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ChannelError::Protocol(format!("building the request: {e}")))?;
        let limit_ms = self.timeout.as_millis() as u64;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| ChannelError::Unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            let bytes = http_body_util::Limited::new(resp.into_body(), ANSWER_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| ChannelError::Unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, ChannelError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ChannelError::Timeout(limit_ms))??;
        if status != 200 {
            return Err(ChannelError::Protocol(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )));
        }
        let answer: WireAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| ChannelError::Protocol(format!("answer is not the protocol: {e}")))?;
        answer.into_answer(order_id)
    }
}

#[async_trait::async_trait]
impl PaymentChannel for HttpBankChannel {
    fn code(&self) -> &str {
        &self.code
    }

    async fn initiate(&self, debit: &DebitRequest) -> Result<ChannelAnswer, ChannelError> {
        let body = serde_json::to_vec(&WireDebit {
            order_id: debit.order_id.clone(),
            account: debit.account.clone(),
            amount_fen: debit.amount_fen,
            currency: "CNY".into(),
        })
        .map_err(|e| ChannelError::Protocol(e.to_string()))?;
        self.call("POST", "/v1/debits", Some(body), &debit.order_id)
            .await
    }

    async fn status(&self, order_id: &str) -> Result<ChannelAnswer, ChannelError> {
        if !order_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ChannelError::Protocol(format!(
                "order id {order_id:?} is not alphanumeric"
            )));
        }
        self.call("GET", &format!("/v1/debits/{order_id}"), None, order_id)
            .await
    }
}
