//! The one error type of the storage layer, which callers can act on.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("too many items in one call: {got}, at most {max}")]
    TooMany { got: usize, max: usize },
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database unavailable or failed")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn database(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Database(Box::new(e))
    }
}
