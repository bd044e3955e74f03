//! Application management storage (issue 4 item 7): the registry of card applications and
//! functions, each card's function states with a pending change, and their history.

use async_trait::async_trait;

use crate::Result;

/// A registered card application. `files_json` and `key_purposes` are the platform's
/// encodings; the store keeps them opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRow {
    pub code: String,
    pub name: String,
    /// Upper-case hex.
    pub aid_hex: String,
    /// `card_company` or a department (`resident::Source::as_str`).
    pub owner: String,
    pub files_json: String,
    /// Comma-separated `keys::master::MasterPurpose::as_str`.
    pub key_purposes: String,
    pub created_ms: i64,
}

/// A function a card can carry, in one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRow {
    pub code: String,
    pub app: String,
    pub name: String,
    pub target_json: String,
    /// Upper-case hex.
    pub parameters_hex: String,
    pub created_ms: i64,
}

/// One function's state on one card. `version` starts at 1 and goes up by one per change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFunctionRow {
    pub number: String,
    pub function: String,
    pub enabled: bool,
    /// The target state of a change produced as a script and not yet confirmed.
    pub pending: Option<bool>,
    pub version: i64,
    pub updated_ms: i64,
}

/// One step in a card function's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFunctionEventRow {
    pub number: String,
    pub function: String,
    /// `script_enable`, `script_disable`, `applied` or `failed`.
    pub action: String,
    /// The card's status word, for `applied` and `failed`.
    pub sw: Option<i32>,
    pub actor: String,
    pub at_ms: i64,
}

/// A change of the card record that the card's chip must follow (issue 8, item 6): today the
/// card type in TRANSIT EF15. The store writes it itself, in the transaction that changes the
/// card's type (a trigger); `version` goes up with every new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipUpdateRow {
    pub number: String,
    /// `card_type`.
    pub item: String,
    /// The value the chip must hold (for `card_type`, the platform's card type name).
    pub value: String,
    pub version: i64,
    /// Until a terminal reports the card's `9000` for a script of this version.
    pub pending: bool,
    pub updated_ms: i64,
}

/// One step in a chip update's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipUpdateEventRow {
    pub number: String,
    pub item: String,
    pub value: String,
    pub version: i64,
    /// `script` (issued at a contact), `applied` (the card answered `9000`), `failed` (any
    /// other status word) or `superseded` (a confirmation of an older version).
    pub action: String,
    /// The card's status word, for the confirmations.
    pub sw: Option<i32>,
    pub actor: String,
    pub at_ms: i64,
}

#[async_trait]
pub trait AppsStore: Send + Sync {
    /// The chip updates of one card (pending or applied), by item.
    async fn chip_updates(&self, number: &str) -> Result<Vec<ChipUpdateRow>>;

    /// Records a step of a chip update with its audit entry, in one transaction. With
    /// `applied`, the update is marked applied only if it is still pending at the event's
    /// version (else `Conflict`, and nothing is written); `NotFound` when the card has no
    /// such update.
    async fn chip_update_record(
        &self,
        event: &ChipUpdateEventRow,
        applied: bool,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// The history of one card's chip updates, oldest first (at most 1000).
    async fn chip_update_events(&self, number: &str) -> Result<Vec<ChipUpdateEventRow>>;

    /// Registers an application; `Conflict` when the code or the AID is taken.
    async fn app_insert(&self, app: &AppRow, audit: audit::Draft, now_ms: i64) -> Result<()>;

    /// Every application, by code.
    async fn apps_list(&self) -> Result<Vec<AppRow>>;

    /// Registers a function; `Conflict` when the code is taken, `NotFound` when its
    /// application is not registered.
    async fn function_insert(
        &self,
        f: &FunctionRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// Every function, by application then code.
    async fn functions_list(&self) -> Result<Vec<FunctionRow>>;

    /// The function states of one card, by function code.
    async fn card_functions(&self, number: &str) -> Result<Vec<CardFunctionRow>>;

    /// Writes a card function state if the stored one is still at `row.version - 1` (absent
    /// for version 1), else `Conflict`; with its event and audit entry, all or nothing.
    /// `NotFound` when the card or the function does not exist.
    async fn card_function_set(
        &self,
        row: &CardFunctionRow,
        event: &CardFunctionEventRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// The history of one card's functions, oldest first.
    async fn card_function_events(&self, number: &str) -> Result<Vec<CardFunctionEventRow>>;
}
