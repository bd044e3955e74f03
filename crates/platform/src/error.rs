//! The platform's error type: what went wrong, in terms a caller can act on. The server maps
//! it to HTTP once; the CLI prints it.

use store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{message}")]
    Invalid {
        message: String,
        fields: Vec<FieldProblem>,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("sign-in required, or the credential is not valid")]
    Unauthenticated,
    /// A terminal's signed request was refused; the text says why (clock, replay, signature).
    #[error("{0}")]
    TerminalRefused(String),
    #[error("{0}")]
    Forbidden(String),
    /// A call through the data-sharing exchange was refused (and logged); `code` names why
    /// (`no_grant`, `no_consent`, `signature`, `replay`, …).
    #[error("{code}: {message}")]
    ExchangeRefused { code: String, message: String },
    /// The provider behind the exchange failed (timeout, unreachable, too large, a forged or
    /// malformed answer); the call was logged.
    #[error("{code}: {message}")]
    ProviderFailed { code: String, message: String },
    #[error("{0}")]
    Locked(String),
    /// A citizen's sign-in step was refused (wrong password or code, expired, used, locked),
    /// with its message in Chinese and English.
    #[error("{}", .0.en)]
    SignInRefused(crate::citizens::Refusal),
    #[error("{what} is larger than the limit of {limit}")]
    TooLarge { what: String, limit: String },
    #[error("storage: {0}")]
    Store(#[source] StoreError),
    #[error("keys: {0}")]
    Key(#[from] keys::KeyError),
    #[error("unexpected: {0}")]
    Unexpected(String),
}

impl PlatformError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        PlatformError::Invalid {
            message: format!("{field}: {message}"),
            fields: vec![FieldProblem {
                field: field.into(),
                message,
            }],
        }
    }
}

/// Storage errors that mean something to a caller become domain errors here, once.
impl From<StoreError> for PlatformError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => PlatformError::NotFound(what),
            StoreError::Conflict(what) => PlatformError::Conflict(format!("{what} already exists")),
            StoreError::TooMany { got, max } => PlatformError::TooLarge {
                what: format!("a batch of {got}"),
                limit: max.to_string(),
            },
            e => PlatformError::Store(e),
        }
    }
}
