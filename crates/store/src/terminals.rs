//! The terminal network's participants and devices: merchants and transit operators, and the
//! terminals registered for them (activation, key, status).

use crate::Result;
use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantRow {
    /// `metro`, `bus`, `canteen-zzu`: the ledger's merchant owner code.
    pub code: String,
    pub name: String,
    /// Merchant category (transit, canteen, shop, hospital, library, utility, …).
    pub category: String,
    /// Where settlement pays them.
    pub settlement_account: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalRow {
    pub id: String,
    pub merchant: String,
    /// validator, gate, pos, kiosk, desk, door
    pub kind: String,
    /// Line, station or store.
    pub site: String,
    /// registered (waiting for activation), active, suspended
    pub status: String,
    pub activation_digest: Option<String>,
    /// SEC1 compressed SM2 key, once activated.
    pub public_key: Option<Vec<u8>>,
    pub psam_serial: Option<String>,
    pub software_version: Option<String>,
    pub registered_ms: i64,
    pub activated_ms: Option<i64>,
}

#[async_trait]
pub trait TerminalStore: Send + Sync {
    /// `Conflict` when the code exists.
    async fn merchant_insert(
        &self,
        m: &MerchantRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;
    async fn merchant(&self, code: &str) -> Result<Option<MerchantRow>>;
    async fn merchants(&self) -> Result<Vec<MerchantRow>>;

    /// Registers a terminal (status `registered`, with its activation digest). `Conflict`
    /// when the id exists; `NotFound` for an unknown merchant.
    async fn terminal_insert(
        &self,
        t: &TerminalRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;
    async fn terminal(&self, id: &str) -> Result<Option<TerminalRow>>;
    async fn terminals_of(&self, merchant: Option<&str>) -> Result<Vec<TerminalRow>>;

    /// `registered` → `active` with its key, only while the stored digest is `digest` (the
    /// code is then spent). `Conflict` otherwise.
    async fn terminal_activate(
        &self,
        id: &str,
        digest: &str,
        public_key: &[u8],
        software_version: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<TerminalRow>;
}
