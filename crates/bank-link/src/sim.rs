//! The simulated bank: the bank channel protocol (`docs/bank-channel.md`) served over real
//! HTTP (axum), with synthetic accounts and balances in memory. It keeps the protocol's
//! promises (an order id is debited at most once; a status query for an order never received
//! closes it) and can be told to misbehave the ways a real bank does:
//!
//! - [`Mode::Decline`]: refuses every debit (`declined`); insufficient funds happen by
//!   themselves when an account holds less than asked;
//! - [`Mode::Hang`]: receives the request and never answers nor debits (the client times
//!   out; the order was never received, so the status query closes it as `failed`);
//! - [`Mode::Late`]: debits at once and answers only after `delay_ms` (past the client's time
//!   limit, the answer is lost; the status query finds `succeeded`);
//! - [`Mode::Processing`]: answers `processing` and decides at the first status query made in
//!   another mode.
//!
//! Run it with `citycard sim bank --listen 127.0.0.1:0`; tests start it in process.

use crate::{WireAnswer, WireDebit};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// At most this many accounts and orders are kept.
pub const ACCOUNTS_MAX: usize = 1_000_000;
pub const ORDERS_MAX: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    Normal,
    Decline,
    Hang,
    Late { delay_ms: u64 },
    Processing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Succeeded(String),
    Failed(String),
    Processing,
}

#[derive(Debug, Clone)]
struct Order {
    account: String,
    amount_fen: i64,
    outcome: Outcome,
}

#[derive(Debug)]
struct Bank {
    accounts: BTreeMap<String, i64>,
    orders: HashMap<String, Order>,
    mode: Mode,
    next_ref: u64,
    debits: u64,
}

/// The bank's state; clones share it.
#[derive(Clone)]
pub struct SimBank {
    bank: Arc<Mutex<Bank>>,
}

impl Default for SimBank {
    fn default() -> Self {
        SimBank {
            bank: Arc::new(Mutex::new(Bank {
                accounts: BTreeMap::new(),
                orders: HashMap::new(),
                mode: Mode::Normal,
                next_ref: 1,
                debits: 0,
            })),
        }
    }
}

/// A synthetic account number: `6222` and twelve digits.
pub fn synthetic_account(i: u64) -> String {
    format!("6222{:012}", i % 1_000_000_000_000)
}

impl SimBank {
    pub fn new() -> Self {
        Self::default()
    }

    /// `n` synthetic accounts ([`synthetic_account`] 1..=n) holding `balance_fen` each.
    pub fn with_accounts(n: u64, balance_fen: i64) -> Self {
        let s = Self::new();
        for i in 1..=n.min(ACCOUNTS_MAX as u64) {
            s.open_account(&synthetic_account(i), balance_fen);
        }
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bank> {
        self.bank.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens (or resets) an account with a balance.
    pub fn open_account(&self, account: &str, balance_fen: i64) {
        let mut b = self.lock();
        if b.accounts.len() < ACCOUNTS_MAX || b.accounts.contains_key(account) {
            b.accounts.insert(account.to_string(), balance_fen);
        }
    }

    pub fn balance(&self, account: &str) -> Option<i64> {
        self.lock().accounts.get(account).copied()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.lock().mode = mode;
    }

    /// How many debits the bank executed.
    pub fn debits(&self) -> u64 {
        self.lock().debits
    }

    /// Executes a debit (at most once per order), returning the outcome.
    fn execute(b: &mut Bank, order_id: &str, account: &str, amount_fen: i64) -> Outcome {
        let outcome = match b.accounts.get_mut(account) {
            None => Outcome::Failed("no_such_account".into()),
            Some(bal) if *bal < amount_fen => Outcome::Failed("insufficient_funds".into()),
            Some(bal) => {
                *bal -= amount_fen;
                b.debits += 1;
                let r = format!("SIM{:010}", b.next_ref);
                b.next_ref += 1;
                Outcome::Succeeded(r)
            }
        };
        if b.orders.len() < ORDERS_MAX {
            b.orders.insert(
                order_id.to_string(),
                Order {
                    account: account.to_string(),
                    amount_fen,
                    outcome: outcome.clone(),
                },
            );
        }
        outcome
    }

    /// The protocol and the control endpoints.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/debits", post(debit))
            .route("/v1/debits/{order_id}", get(status))
            .route("/sim/mode", put(set_mode))
            .route("/sim/accounts", post(open_account))
            .route("/sim/accounts/{account}", get(account_balance))
            .with_state(self.clone())
    }

    /// Serves on `listener` until the returned handle is dropped or aborted.
    pub fn spawn(&self, listener: tokio::net::TcpListener) -> SimServer {
        let addr = listener.local_addr().expect("a bound listener");
        let app = self.router();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "simulated bank stopped");
            }
        });
        SimServer { addr, task }
    }
}

/// A running simulated bank; stops when dropped.
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

fn answer(order_id: &str, outcome: &Outcome) -> Response {
    let (status, bank_ref, reason) = match outcome {
        Outcome::Succeeded(r) => ("succeeded", Some(r.clone()), None),
        Outcome::Failed(r) => ("failed", None, Some(r.clone())),
        Outcome::Processing => ("processing", None, None),
    };
    axum::Json(WireAnswer {
        order_id: order_id.to_string(),
        status: status.into(),
        bank_ref,
        reason,
    })
    .into_response()
}

fn bad(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "error": msg })),
    )
        .into_response()
}

fn order_ok(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn debit(State(s): State<SimBank>, body: axum::body::Bytes) -> Response {
    let Ok(d) = serde_json::from_slice::<WireDebit>(&body) else {
        return bad("body is not a debit");
    };
    if !order_ok(&d.order_id) || d.amount_fen <= 0 || d.currency != "CNY" {
        return bad("order_id, amount_fen or currency invalid");
    }
    let (outcome, delay) = {
        let mut b = s.lock();
        if let Some(o) = b.orders.get(&d.order_id) {
            // A closed order (asked about before it arrived) stays failed for any content.
            let closed = o.account.is_empty();
            if !closed && (o.account != d.account || o.amount_fen != d.amount_fen) {
                return (
                    StatusCode::CONFLICT,
                    axum::Json(serde_json::json!({ "error": "order_id_reused" })),
                )
                    .into_response();
            }
            // The same order again: the first answer.
            (o.outcome.clone(), None)
        } else {
            match b.mode {
                Mode::Hang => (Outcome::Processing, Some(u64::MAX)),
                Mode::Decline => {
                    let o = Outcome::Failed("declined".into());
                    b.orders.insert(
                        d.order_id.clone(),
                        Order {
                            account: d.account.clone(),
                            amount_fen: d.amount_fen,
                            outcome: o.clone(),
                        },
                    );
                    (o, None)
                }
                Mode::Processing => {
                    b.orders.insert(
                        d.order_id.clone(),
                        Order {
                            account: d.account.clone(),
                            amount_fen: d.amount_fen,
                            outcome: Outcome::Processing,
                        },
                    );
                    (Outcome::Processing, None)
                }
                Mode::Normal => (
                    SimBank::execute(&mut b, &d.order_id, &d.account, d.amount_fen),
                    None,
                ),
                Mode::Late { delay_ms } => (
                    SimBank::execute(&mut b, &d.order_id, &d.account, d.amount_fen),
                    Some(delay_ms),
                ),
            }
        }
    };
    match delay {
        // Received, never processed, never answered: the client gives up.
        Some(u64::MAX) => std::future::pending::<Response>().await,
        Some(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            answer(&d.order_id, &outcome)
        }
        None => answer(&d.order_id, &outcome),
    }
}

async fn status(State(s): State<SimBank>, Path(order_id): Path<String>) -> Response {
    if !order_ok(&order_id) {
        return bad("order_id invalid");
    }
    let mut b = s.lock();
    let mode = b.mode;
    let outcome = match b.orders.get(&order_id).cloned() {
        // Never received: closed now, so a late request cannot debit it.
        None => {
            let o = Outcome::Failed("not_received".into());
            if b.orders.len() < ORDERS_MAX {
                b.orders.insert(
                    order_id.clone(),
                    Order {
                        account: String::new(),
                        amount_fen: 0,
                        outcome: o.clone(),
                    },
                );
            }
            o
        }
        Some(o) if o.outcome == Outcome::Processing && mode != Mode::Processing => {
            SimBank::execute(&mut b, &order_id, &o.account, o.amount_fen)
        }
        Some(o) => o.outcome,
    };
    answer(&order_id, &outcome)
}

async fn set_mode(State(s): State<SimBank>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Mode>(&body) {
        Ok(m) => {
            s.set_mode(m);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => bad("mode is normal, decline, hang, late (with delay_ms) or processing"),
    }
}

#[derive(serde::Deserialize)]
struct NewAccount {
    account: String,
    balance_fen: i64,
}

async fn open_account(State(s): State<SimBank>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<NewAccount>(&body) {
        Ok(a)
            if (12..=19).contains(&a.account.len())
                && a.account.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.open_account(&a.account, a.balance_fen);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => bad("account must be 12 to 19 digits with balance_fen"),
    }
}

async fn account_balance(State(s): State<SimBank>, Path(account): Path<String>) -> Response {
    match s.balance(&account) {
        Some(b) => axum::Json(serde_json::json!({ "balance_fen": b })).into_response(),
        None => (StatusCode::NOT_FOUND, "no such account").into_response(),
    }
}
