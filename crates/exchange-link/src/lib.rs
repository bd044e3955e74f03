//! The data-sharing exchange over HTTP: [`HttpProviderTransport`], how the platform reaches a
//! provider's endpoint (`platform::exchange::ProviderTransport` on hyper-util's client, one time
//! limit for the whole exchange and a bound on the answer), and [`sim`], four simulated
//! department providers serving synthetic data over real HTTP, each verifying the exchange's
//! signature on what it receives and signing its answers with its member key.

pub mod sim;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use platform::exchange::{ProviderReply, ProviderTransport, TransportError};
use std::time::Duration;

/// The provider transport over HTTP/1.1.
pub struct HttpProviderTransport {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpProviderTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpProviderTransport {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        HttpProviderTransport {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(64)
                .build(connector),
        }
    }
}

#[async_trait::async_trait]
impl ProviderTransport for HttpProviderTransport {
    async fn post(
        &self,
        endpoint: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        timeout_ms: u64,
        answer_max: usize,
    ) -> Result<ProviderReply, TransportError> {
        let mut b = hyper::Request::builder()
            .method("POST")
            .uri(endpoint)
            .header("content-type", "application/json")
            .header("accept", "application/json");
        for (n, v) in headers {
            b = b.header(n, v);
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| TransportError::Unreachable(format!("building the request: {e}")))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| TransportError::Unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .filter(|(n, _)| n.as_str().starts_with("x-exchange-"))
                .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let bytes = http_body_util::Limited::new(resp.into_body(), answer_max)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        TransportError::TooLarge(answer_max)
                    } else {
                        TransportError::Unreachable(format!("reading the answer: {e}"))
                    }
                })?
                .to_bytes();
            Ok::<_, TransportError>(ProviderReply {
                status,
                headers,
                body: bytes.to_vec(),
            })
        };
        tokio::time::timeout(Duration::from_millis(timeout_ms), exchange)
            .await
            .map_err(|_| TransportError::Timeout(timeout_ms))?
    }
}
