//! The one error type of the HTTP edge. Every failure leaves as RFC 9457 problem details
//! (`application/problem+json`) with field errors; the full source chain is logged, internal
//! text never reaches the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::{FieldProblem, PlatformError};
use utoipa::ToSchema;

/// RFC 9457 problem details.
#[derive(Debug, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// A stable code for the client (citizen sign-in: `bad_credentials`, `locked`,
    /// `code_expired`, `code_used`, `code_wrong`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The detail in Chinese, where the platform has it (citizen sign-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_zh: Option<String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ProblemField {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String, Vec<FieldProblem>) {
        use PlatformError as P;
        match self {
            ApiError::Platform(e) => match e {
                P::Invalid { message, fields } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    message.clone(),
                    fields.clone(),
                ),
                P::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", e.to_string(), vec![]),
                P::Conflict(_) => (StatusCode::CONFLICT, "conflict", e.to_string(), vec![]),
                P::Unauthenticated => (
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    e.to_string(),
                    vec![],
                ),
                P::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", e.to_string(), vec![]),
                P::TerminalRefused(_) => (
                    StatusCode::UNAUTHORIZED,
                    "terminal-refused",
                    e.to_string(),
                    vec![],
                ),
                P::ExchangeRefused { code, .. } => (
                    match code.as_str() {
                        "signature" | "batch" | "replay" | "clock" | "nonce" | "member"
                        | "unknown_member" | "unsigned" => StatusCode::UNAUTHORIZED,
                        _ => StatusCode::FORBIDDEN,
                    },
                    "exchange-refused",
                    e.to_string(),
                    vec![],
                ),
                P::ProviderFailed { code, .. } => (
                    if code == "provider_timeout" {
                        StatusCode::GATEWAY_TIMEOUT
                    } else {
                        StatusCode::BAD_GATEWAY
                    },
                    "provider-failed",
                    e.to_string(),
                    vec![],
                ),
                P::SignInRefused(r) => (
                    if r.locked {
                        StatusCode::TOO_MANY_REQUESTS
                    } else {
                        StatusCode::UNAUTHORIZED
                    },
                    "sign-in-refused",
                    r.en.clone(),
                    vec![],
                ),
                P::Locked(_) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "locked",
                    e.to_string(),
                    vec![],
                ),
                P::TooLarge { .. } => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    e.to_string(),
                    vec![],
                ),
                P::Store(_) | P::Key(_) | P::Unexpected(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred; it has been logged".into(),
                    vec![],
                ),
            },
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad-request", m.clone(), vec![]),
            ApiError::PayloadTooLarge(m) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                m.clone(),
                vec![],
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; it has been logged".into(),
                vec![],
            ),
        }
    }
}

pub fn problem_response(
    status: StatusCode,
    kind: &str,
    detail: String,
    fields: Vec<FieldProblem>,
) -> Response {
    let body = Problem {
        kind: format!("https://citycard.example/problems/{kind}"),
        title: status.canonical_reason().unwrap_or("error").to_string(),
        status: status.as_u16(),
        detail,
        errors: fields
            .into_iter()
            .map(|f| ProblemField {
                field: f.field,
                message: f.message,
            })
            .collect(),
        code: None,
        detail_zh: None,
    };
    problem_json(status, body)
}

fn problem_json(status: StatusCode, body: Problem) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, detail, fields) = self.parts();
        if let ApiError::Platform(PlatformError::SignInRefused(r)) = &self {
            return problem_json(
                status,
                Problem {
                    kind: format!("https://citycard.example/problems/{kind}"),
                    title: status.canonical_reason().unwrap_or("error").to_string(),
                    status: status.as_u16(),
                    detail,
                    errors: vec![],
                    code: Some(r.code.to_string()),
                    detail_zh: Some(r.zh.clone()),
                },
            );
        }
        if status.is_server_error() {
            // The whole chain goes to the log, never to the client.
            let mut chain = format!("{self}");
            let mut src = std::error::Error::source(&self);
            while let Some(s) = src {
                chain.push_str(&format!(": {s}"));
                src = s.source();
            }
            tracing::error!(error = %chain, "request failed");
        }
        problem_response(status, kind, detail, fields)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
