//! The terminal's side of the platform's API: every request signed with the terminal's SM2 key
//! over the canonical form of the `terminals` crate (time, fresh nonce, method, path, body).

use std::time::Duration;

use crypto::Sm2SigningKey;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

/// A request that takes longer is abandoned (and its batch resent later).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a full deny-list of ten million cards is about 20 MB).
pub const RESPONSE_BODY_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("platform unreachable: {0}")]
    Unreachable(String),
    #[error("platform did not answer within {0:?}")]
    Timeout(Duration),
    #[error("bad platform URL {0:?}")]
    Url(String),
}

/// An answer: status, the headers the terminal reads, body.
pub struct Answer {
    pub status: u16,
    pub deny_list_version: Option<i64>,
    pub body: Bytes,
}

/// A signed-request client of one terminal.
pub struct PlatformClient {
    base: String,
    terminal_id: String,
    key: Sm2SigningKey,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Seconds added to the local clock (the platform's time minus ours, from parameters).
    clock_offset_s: std::sync::atomic::AtomicI64,
}

impl PlatformClient {
    pub fn new(base: &str, terminal_id: &str, key: Sm2SigningKey) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/');
        if !base.starts_with("http://") {
            return Err(ClientError::Url(format!(
                "{base} (http:// only: TLS is the front proxy's)"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        Ok(PlatformClient {
            base: base.to_string(),
            terminal_id: terminal_id.to_string(),
            key,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            clock_offset_s: Default::default(),
        })
    }

    pub fn terminal_id(&self) -> &str {
        &self.terminal_id
    }

    pub fn set_clock_offset(&self, offset_s: i64) {
        self.clock_offset_s
            .store(offset_s, std::sync::atomic::Ordering::Relaxed);
    }

    fn now_s(&self) -> i64 {
        crate::clock::now_ms().div_euclid(1000)
            + self
                .clock_offset_s
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends a signed request; any HTTP status is an answer, only transport failures are errors.
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<Answer, ClientError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| ClientError::Unreachable(e.to_string()))?;
        let nonce = hex::encode(nonce);
        let time_s = self.now_s();
        let sig = terminals::sign(
            &self.key,
            &terminals::RequestParts {
                terminal_id: &self.terminal_id,
                time_s,
                nonce: &nonce,
                method,
                path_and_query,
                body: &body,
            },
        );
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base))
            .header("content-type", "application/json")
            .header("x-terminal-id", &self.terminal_id)
            .header("x-terminal-time", time_s.to_string())
            .header("x-terminal-nonce", nonce)
            .header("x-terminal-signature", sig)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Url(e.to_string()))?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| ClientError::Unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            let deny_list_version = resp
                .headers()
                .get("x-denylist-version")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let body = Limited::new(resp.into_body(), RESPONSE_BODY_MAX)
                .collect()
                .await
                .map_err(|e| ClientError::Unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Answer {
                status,
                deny_list_version,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, call)
            .await
            .map_err(|_| ClientError::Timeout(REQUEST_TIMEOUT))?
    }
}
