//! The HTTP edge of the platform: routing, authentication and the role table, wire types,
//! the OpenAPI document, the operator console, health checks and Prometheus metrics.
//!
//! This is the only crate that knows HTTP and JSON. Handlers are thin: they parse, call the
//! platform, and convert the answer into wire types by hand.

pub mod api;
pub mod apps_api;
pub mod auth;
mod card_console;
pub mod cards_api;
pub mod citizen_api;
pub mod citizen_points_api;
pub mod clearing_api;
pub mod clearing_console;
pub mod console;
pub mod disbursements_api;
pub mod disbursements_console;
pub mod ecode_api;
pub mod ecode_console;
pub mod error;
pub mod exchange_api;
pub mod exchange_console;
pub mod exchange_oversight_api;
mod extract;
pub mod feeds_api;
pub mod fees_api;
mod fees_console;
mod i18n;
pub mod identity_api;
pub mod ledger_api;
pub mod money_api;
pub mod oidc;
pub mod openapi;
pub mod points_api;
pub mod points_console;
pub mod portal;
mod portal_i18n;
mod portal_points;
pub mod production_api;
mod production_console;
pub mod purchases_api;
pub mod services_api;
pub mod services_console;
pub mod terminals_api;
mod terminals_console;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use platform::Platform;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Request bodies of ordinary endpoints; the feed upload has its own, larger, limit.
pub const BODY_MAX: usize = 1024 * 1024;
/// How long one request may take before the client gets a 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct AppState {
    pub platform: Platform,
    pub metrics: PrometheusHandle,
    /// The city's identity provider, when sign-in through it is configured (`oidc`).
    pub oidc: Option<Arc<idp_link::RelyingParty>>,
}

/// The process-wide Prometheus recorder (installed once, shared by every server in a process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed in tests; ours still renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.platform.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    if let Ok(n) = s.platform.resident_count().await {
        metrics::gauge!("citycard_residents").set(n as f64);
    }
    if let Ok(v) = s.platform.terminal_fleet_view().await {
        let c = v.counts;
        metrics::gauge!("citycard_terminals").set(c.terminals as f64);
        metrics::gauge!("citycard_terminals_active").set(c.active as f64);
        metrics::gauge!("citycard_terminals_silent").set(c.silent as f64);
        metrics::gauge!("citycard_terminals_behind").set(c.behind as f64);
        metrics::gauge!("citycard_terminals_backlog").set(c.backlog as f64);
        metrics::gauge!("citycard_terminal_records_pending").set(c.records_pending as f64);
        metrics::gauge!("citycard_deny_list_version").set(v.deny_list_version as f64);
    }
    let mut r = s.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn not_found() -> Response {
    error::problem_response(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such resource".into(),
        vec![],
    )
}

/// The whole application.
pub fn router(platform: Platform) -> Router {
    router_with_oidc(platform, None)
}

/// The whole application, citizens also signing in through the city's identity provider
/// when `oidc` is given.
pub fn router_with_oidc(platform: Platform, oidc: Option<Arc<idp_link::RelyingParty>>) -> Router {
    let state = AppState {
        platform,
        metrics: metrics_handle(),
        oidc,
    };
    let import = post(api::residents_import)
        .layer(axum::extract::DefaultBodyLimit::max(api::IMPORT_BODY_MAX));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/v1/sessions", post(api::sign_in))
        .route("/api/v1/sessions/current", axum::routing::delete(api::sign_out))
        .route("/api/v1/me", get(api::me))
        .route("/api/v1/residents", get(api::residents_search))
        .route("/api/v1/residents/import", import)
        .route("/api/v1/residents/{id_number}", get(api::resident_get))
        .route("/api/v1/residents/{id_number}/history", get(api::resident_history))
        .route("/api/v1/feeds", get(api::feeds))
        .route("/api/v1/operators", get(api::operators_list).post(api::operators_create))
        .route("/api/v1/tokens", post(api::tokens_create))
        .route("/api/v1/audit", get(api::audit_list))
        .route("/api/v1/audit/verify", get(api::audit_verify))
        .route("/api/v1/cards", get(cards_api::list).post(cards_api::apply))
        .route("/api/v1/cards/{number}", get(cards_api::get))
        .route("/api/v1/cards/{number}/actions", post(cards_api::act))
        .route("/api/v1/cards/{number}/events", get(cards_api::events))
        .route("/api/v1/cards/{number}/balances", get(ledger_api::card_balances))
        .route("/api/v1/ledger/check", get(ledger_api::check))
        .route("/api/v1/denylist/changes", get(cards_api::deny_changes))
        .route("/api/v1/denylist", get(cards_api::deny_full))
        .route("/api/v1/denylist/delta", get(cards_api::deny_delta))
        .route("/api/v1/denylist/key", get(cards_api::deny_key))
        .route("/api/v1/enrolments", post(cards_api::enrol))
        .route("/api/v1/residents/{id_number}/enrolments", get(cards_api::enrolments))
        .route(
            "/api/v1/cards/{number}/devices",
            get(ecode_api::devices).post(ecode_api::enrol),
        )
        .route("/api/v1/ecode/devices/{id}/revoke", post(ecode_api::revoke))
        .route("/api/v1/ecode/certificates", post(ecode_api::certify))
        .route(
            "/api/v1/ecode/roots",
            get(ecode_api::roots_pem).post(ecode_api::root_generate),
        )
        .route("/api/v1/ecode/roots/{key_id}/rotate", post(ecode_api::root_rotate))
        .route("/api/v1/ecode/roots/{key_id}/withdraw", post(ecode_api::root_withdraw))
        .route("/api/v1/ecode/verify", post(ecode_api::verify))
        .route("/api/v1/ecode/identity", post(ecode_api::identity))
        .route("/api/v1/cards/{number}/ecode-debts", get(ecode_api::debts))
        .route(
            "/api/v1/cards/{number}/ecode-debts/settlement",
            post(ecode_api::settle_debts),
        )
        .route("/api/v1/ecode/identity/uses", post(ecode_api::identity_uses))
        .route("/api/v1/apps", get(apps_api::registry).post(apps_api::register_app))
        .route("/api/v1/apps/{code}/functions", post(apps_api::register_function))
        .route("/api/v1/cards/{number}/functions", get(apps_api::card_functions))
        .route("/api/v1/cards/{number}/functions/{function}/script", post(apps_api::script))
        .route("/api/v1/cards/{number}/functions/{function}/confirm", post(apps_api::confirm))
        .route("/api/v1/cards/{number}/contact", post(apps_api::contact))
        .route("/api/v1/cards/{number}/contact/confirm", post(apps_api::contact_confirm))
        .route("/api/v1/cards/{number}/chip-updates", get(apps_api::chip_updates))
        .route("/console/cards/apps", get(apps_api::console_page))
        .merge(console::routes())
        .merge(production_api::routes())
        .merge(disbursements_api::routes())
        .merge(clearing_api::routes())
        .merge(fees_api::routes())
        .merge(fees_console::routes())
        .merge(disbursements_console::routes())
        .merge(clearing_console::routes())
        .merge(ecode_console::routes())
        .merge(terminals_api::routes())
        .merge(exchange_api::routes())
        .merge(feeds_api::routes())
        .merge(identity_api::routes())
        .merge(exchange_oversight_api::routes())
        .merge(exchange_console::routes())
        .merge(terminals_console::routes())
        .merge(money_api::routes())
        .merge(services_api::routes())
        .merge(services_console::routes())
        .merge(points_api::routes())
        .merge(points_console::routes())
        .merge(production_console::routes())
        .merge(card_console::routes())
        .merge(purchases_api::routes())
        .merge(citizen_api::routes())
        .merge(portal::routes())
        .merge(citizen_points_api::routes())
        .merge(portal_points::routes())
        .merge(oidc::routes())
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authorize))
        .route_layer(middleware::from_fn(track))
        .layer(middleware::from_fn(to_completion))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_MAX))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            // The span names the route pattern, never the concrete path: a path may carry an
            // ID number, which must not reach a log.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|m| m.as_str())
                    .unwrap_or("unmatched");
                tracing::info_span!("request", method = %req.method(), route = %route, request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            error::problem_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; it has been logged".into(),
                vec![],
            )
        }))
        .with_state(state)
}

/// Runs the request's handler (and its authorization) as a task of its own, so that a caller
/// who hangs up, or the request timeout, never drops it halfway: what the platform started it
/// finishes, and its answer is stored (a terminal's batch answer, an idempotent movement) for
/// the caller's retry. Dropping a database future at an arbitrary point is not safe: sqlx 0.8
/// can return a connection with an open transaction to the pool when `BEGIN` is cancelled
/// (transact-rs/sqlx#3932 for SQLite, #4393 for PostgreSQL), after which writes on that
/// connection are silently never committed; the simulated terminal day found exactly that.
async fn to_completion(req: Request, next: middleware::Next) -> axum::response::Response {
    use tracing::Instrument;
    match tokio::spawn(next.run(req).instrument(tracing::Span::current())).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "a request's task failed");
            error::problem_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; it has been logged".into(),
                vec![],
            )
        }
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    platform: Platform,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_oidc(listener, platform, None, shutdown).await
}

/// Serves until `shutdown` resolves, with the city's identity provider when given.
pub async fn serve_with_oidc(
    listener: tokio::net::TcpListener,
    platform: Platform,
    oidc: Option<Arc<idp_link::RelyingParty>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router_with_oidc(platform, oidc).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
