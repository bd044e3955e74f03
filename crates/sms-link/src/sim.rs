//! The simulated SMS gateway: the protocol of `docs/sms-gateway.md` served over real HTTP
//! (axum). It delivers each message id once (a repeat is answered with the first answer and
//! counted as a duplicate, never delivered again) and can be told to misbehave:
//!
//! - [`Mode::Unavailable`]: answers 503 without taking the message (the client tries later);
//! - [`Mode::Late`]: delivers at once and answers only after `delay_ms` (past the client's
//!   limit the answer is lost; the retry finds the first answer);
//! - [`Mode::Reject`]: rejects every new message for good (`invalid_number`).
//!
//! Run it with `citycard sim sms --listen 127.0.0.1:0`; tests start it in process.

use crate::{WireAnswer, WireMessage};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// At most this many messages are kept.
pub const MESSAGES_MAX: usize = 2_000_000;
/// A message's text is at most this many characters.
pub const TEXT_CHARS_MAX: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    Normal,
    Unavailable,
    Late { delay_ms: u64 },
    Reject,
}

/// A delivered (or rejected) message as the simulator keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivered {
    pub message_id: String,
    /// Masked: the simulator's listings never show a whole number.
    pub phone: String,
    pub text: String,
    pub answer: WireAnswer,
}

#[derive(Debug)]
struct Gateway {
    messages: HashMap<String, (WireMessage, WireAnswer)>,
    order: Vec<String>,
    mode: Mode,
    next_ref: u64,
    delivered: u64,
    duplicates: u64,
}

/// The gateway's state; clones share it.
#[derive(Clone)]
pub struct SimSms {
    g: Arc<Mutex<Gateway>>,
}

impl Default for SimSms {
    fn default() -> Self {
        SimSms {
            g: Arc::new(Mutex::new(Gateway {
                messages: HashMap::new(),
                order: Vec::new(),
                mode: Mode::Normal,
                next_ref: 1,
                delivered: 0,
                duplicates: 0,
            })),
        }
    }
}

fn mask(phone: &str) -> String {
    notices::Phone::parse(phone).map_or_else(|_| "***".into(), |p| p.masked())
}

impl SimSms {
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Gateway> {
        self.g.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn set_mode(&self, mode: Mode) {
        self.lock().mode = mode;
    }
    /// Messages delivered to phones (each message id at most once).
    pub fn delivered(&self) -> u64 {
        self.lock().delivered
    }
    /// Repeated message ids answered without a second delivery.
    pub fn duplicates(&self) -> u64 {
        self.lock().duplicates
    }
    /// Messages in arrival order, phones masked.
    pub fn messages(&self) -> Vec<Delivered> {
        let g = self.lock();
        g.order
            .iter()
            .filter_map(|id| g.messages.get(id))
            .map(|(m, a)| Delivered {
                message_id: m.message_id.clone(),
                phone: mask(&m.phone),
                text: m.text.clone(),
                answer: a.clone(),
            })
            .collect()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/messages", post(send))
            .route("/sim/mode", put(set_mode))
            .route("/sim/messages", get(list))
            .with_state(self.clone())
    }

    /// Serves on `listener` until the returned handle is dropped.
    pub fn spawn(&self, listener: tokio::net::TcpListener) -> SimServer {
        let addr = listener.local_addr().expect("a bound listener");
        let app = self.router();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "simulated SMS gateway stopped");
            }
        });
        SimServer { addr, task }
    }
}

/// A running simulated gateway; stops when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn bad(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn send(State(s): State<SimSms>, body: axum::body::Bytes) -> Response {
    let Ok(m) = serde_json::from_slice::<WireMessage>(&body) else {
        return bad(StatusCode::BAD_REQUEST, "body is not a message");
    };
    if !(1..=64).contains(&m.message_id.len())
        || !m.message_id.bytes().all(|b| b.is_ascii_hexdigit())
        || m.text.is_empty()
        || m.text.chars().count() > TEXT_CHARS_MAX
    {
        return bad(StatusCode::BAD_REQUEST, "message_id or text invalid");
    }
    let (answer, delay) = {
        let mut g = s.lock();
        if let Some((first, a)) = g.messages.get(&m.message_id) {
            if first.phone != m.phone || first.text != m.text {
                return bad(StatusCode::CONFLICT, "message_id_reused");
            }
            let a = a.clone();
            g.duplicates += 1;
            (a, None)
        } else {
            let mode = g.mode;
            if mode == Mode::Unavailable {
                return bad(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
            }
            if g.messages.len() >= MESSAGES_MAX {
                return bad(StatusCode::TOO_MANY_REQUESTS, "full");
            }
            let a = if mode == Mode::Reject || notices::Phone::parse(&m.phone).is_err() {
                WireAnswer {
                    message_id: m.message_id.clone(),
                    status: "rejected".into(),
                    gateway_ref: None,
                    reason: Some("invalid_number".into()),
                }
            } else {
                g.delivered += 1;
                let r = format!("SMS{:010}", g.next_ref);
                g.next_ref += 1;
                WireAnswer {
                    message_id: m.message_id.clone(),
                    status: "accepted".into(),
                    gateway_ref: Some(r),
                    reason: None,
                }
            };
            g.order.push(m.message_id.clone());
            g.messages.insert(m.message_id.clone(), (m, a.clone()));
            let delay = match mode {
                Mode::Late { delay_ms } => Some(delay_ms),
                _ => None,
            };
            (a, delay)
        }
    };
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    axum::Json(answer).into_response()
}

async fn set_mode(State(s): State<SimSms>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Mode>(&body) {
        Ok(m) => {
            s.set_mode(m);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => bad(
            StatusCode::BAD_REQUEST,
            "mode is normal, unavailable, reject, or late (with delay_ms)",
        ),
    }
}

async fn list(State(s): State<SimSms>) -> Response {
    let msgs = s.messages();
    let g = s.lock();
    axum::Json(serde_json::json!({
        "delivered": g.delivered,
        "duplicates": g.duplicates,
        "messages": msgs.iter().rev().take(1000).collect::<Vec<_>>(),
    }))
    .into_response()
}
