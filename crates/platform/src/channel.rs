//! Payment channels (支付渠道): how money comes in from a citizen's bank card or account. A
//! channel debits the citizen's bank account for an order of ours and answers whether it did;
//! it can be asked again, by order id, when an answer was lost. The real bank speaks the
//! protocol of `docs/bank-channel.md` (`bank_link::HttpBankChannel`); the simulated bank of
//! `citycard sim bank` speaks the same protocol over real HTTP.
//!
//! The contract a channel must keep, on which "no money is ever created without the bank's
//! success" rests: an order id is debited at most once; `initiate` with an order id seen
//! before answers as the first time did; `status` of an order the bank never received closes
//! that order id, so a debit request arriving later is refused and the answer `failed` is
//! final.

use std::fmt;

/// Our order ids are 1..=32 characters of `A-Z0-9`.
pub const ORDER_ID_LEN_MAX: usize = 32;
/// Bank references and refusal reasons are cut to this many characters.
pub const BANK_TEXT_MAX: usize = 64;

/// A debit to ask the bank for.
#[derive(Clone, PartialEq, Eq)]
pub struct DebitRequest {
    pub order_id: String,
    /// The citizen's bank card or account number (12 to 19 digits). Personal data: sent to the
    /// bank, never stored or logged (`Debug` masks it).
    pub account: String,
    pub amount_fen: i64,
}

impl fmt::Debug for DebitRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DebitRequest")
            .field("order_id", &self.order_id)
            .field("account", &mask_account(&self.account))
            .field("amount_fen", &self.amount_fen)
            .finish()
    }
}

/// The last four digits of an account number: `****1234`.
pub fn mask_account(account: &str) -> String {
    let n = account.chars().count();
    let tail: String = account.chars().skip(n.saturating_sub(4)).collect();
    format!("****{tail}")
}

/// What the bank said about an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelAnswer {
    /// Debited: the money is ours. `bank_ref` is the bank's own reference.
    Succeeded { bank_ref: String },
    /// Not debited, and never will be (insufficient funds, no such account, closed order).
    Failed { reason: String },
    /// Received, not yet decided: ask again later.
    Processing,
}

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// No answer within the channel's time limit: the debit may or may not have happened.
    #[error("the bank did not answer within {0} ms")]
    Timeout(u64),
    /// The bank could not be reached (connection refused, reset): nothing was received, or
    /// the answer was lost; ask again.
    #[error("the bank could not be reached: {0}")]
    Unreachable(String),
    /// The bank answered something that is not the protocol.
    #[error("the bank's answer is not the protocol: {0}")]
    Protocol(String),
}

/// A payment channel. Implementations: `bank_link::HttpBankChannel` (the protocol of
/// `docs/bank-channel.md`), against a real bank or the simulated one.
#[async_trait::async_trait]
pub trait PaymentChannel: Send + Sync {
    /// The bank's code: owner of the bank float account the money arrives in.
    fn code(&self) -> &str;

    /// Asks the bank to debit the citizen's account for our order.
    async fn initiate(&self, debit: &DebitRequest) -> Result<ChannelAnswer, ChannelError>;

    /// Asks what became of an order.
    async fn status(&self, order_id: &str) -> Result<ChannelAnswer, ChannelError>;
}
