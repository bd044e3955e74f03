//! Host (platform) side of the e-purse: load authorization (MAC1 check, MAC2) and TAC checks.
//!
//! The host holds the load and TAC master keys; it re-derives each card's
//! keys from the card number, so no per-card key store is needed.

use crypto::{
    Algorithm, Key16, MasterKeys, TransactionType, diversify, load_mac1, load_mac2,
    load_session_key, load_tac, purchase_tac, tac_key,
};
use thiserror::Error;

use crate::{BcdDate, BcdTime, CardNumber, TerminalId};

/// Why the host refuses a load or a record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HostError {
    /// The card's load MAC1 does not verify: not our card, or altered data.
    #[error("load MAC1 invalid")]
    Mac1Invalid,
    /// A TAC that does not verify: the record was not produced by this card.
    #[error("TAC invalid")]
    TacInvalid,
    /// Only key version 01 exists in this profile.
    #[error("key version {0:#04x} not supported")]
    KeyVersionUnsupported(u8),
    /// A purchase record with a transaction type that is not a purchase.
    #[error("transaction type {0:?} is not a purchase")]
    NotAPurchase(TransactionType),
    /// The load would take the balance over the cap (or overflow).
    #[error("load of {amount_fen} fen onto {balance_fen} fen exceeds the purse cap")]
    CapExceeded { balance_fen: u32, amount_fen: u32 },
}

/// What a load terminal sends the host after INITIALIZE FOR LOAD, with the
/// date and time it will put into CREDIT FOR LOAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadInit {
    pub card_number: CardNumber,
    pub algorithm: Algorithm,
    pub key_version: u8,
    pub balance_before_fen: u32,
    pub online_counter: u16,
    pub random: [u8; 4],
    pub mac1: [u8; 4],
    pub amount_fen: u32,
    pub terminal_id: TerminalId,
    pub date: BcdDate,
    pub time: BcdTime,
}

fn check_version(version: u8) -> Result<(), HostError> {
    if version == 0x01 {
        Ok(())
    } else {
        Err(HostError::KeyVersionUnsupported(version))
    }
}

fn mac_eq(a: &[u8; 4], b: &[u8; 4]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn seslk(masters: &MasterKeys, init: &LoadInit) -> crypto::MacKey {
    let dlk = diversify(init.algorithm, &masters.load, &init.card_number.div_data());
    load_session_key(init.algorithm, &dlk, init.random, init.online_counter)
}

/// Checks the card's load MAC1 (proves the card holds the DLK for its number).
pub fn check_load_mac1(masters: &MasterKeys, init: &LoadInit) -> Result<(), HostError> {
    check_version(init.key_version)?;
    let expected = load_mac1(
        &seslk(masters, init),
        init.balance_before_fen,
        init.amount_fen,
        init.terminal_id.as_bytes(),
    );
    if mac_eq(&expected, &init.mac1) {
        Ok(())
    } else {
        Err(HostError::Mac1Invalid)
    }
}

/// Authorizes a load: checks MAC1 and the cap, then issues MAC2. Never issues
/// a MAC2 for an unverified MAC1.
pub fn issue_load_mac2(masters: &MasterKeys, init: &LoadInit) -> Result<[u8; 4], HostError> {
    check_load_mac1(masters, init)?;
    match init.balance_before_fen.checked_add(init.amount_fen) {
        Some(b) if b <= crate::card::BALANCE_MAX_FEN => {}
        _ => {
            return Err(HostError::CapExceeded {
                balance_fen: init.balance_before_fen,
                amount_fen: init.amount_fen,
            });
        }
    }
    Ok(load_mac2(
        &seslk(masters, init),
        init.amount_fen,
        init.terminal_id.as_bytes(),
        &init.date.to_bcd(),
        &init.time.to_bcd(),
    ))
}

/// Checks the TAC the card returned from CREDIT FOR LOAD.
pub fn verify_load_tac(
    masters: &MasterKeys,
    init: &LoadInit,
    tac: &[u8; 4],
) -> Result<(), HostError> {
    check_version(init.key_version)?;
    let dtk = diversify(init.algorithm, &masters.tac, &init.card_number.div_data());
    let balance_after = init
        .balance_before_fen
        .checked_add(init.amount_fen)
        .ok_or(HostError::TacInvalid)?;
    let expected = load_tac(
        &tac_key(init.algorithm, &dtk),
        balance_after,
        init.online_counter,
        init.amount_fen,
        init.terminal_id.as_bytes(),
        &init.date.to_bcd(),
        &init.time.to_bcd(),
    );
    if mac_eq(&expected, tac) {
        Ok(())
    } else {
        Err(HostError::TacInvalid)
    }
}

/// A purchase as a terminal uploads it (§5). `(card_number, offline_counter)`
/// identifies it, so a repeated upload can be posted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub card_number: CardNumber,
    pub algorithm: Algorithm,
    pub key_version: u8,
    pub offline_counter: u16,
    pub amount_fen: u32,
    pub tx_type: TransactionType,
    pub terminal_id: TerminalId,
    pub terminal_serial: u32,
    pub date: BcdDate,
    pub time: BcdTime,
    pub balance_before_fen: u32,
    pub tac: [u8; 4],
}

/// Recomputes the TAC of an uploaded purchase from the TAC master key and
/// rejects the record if it differs.
pub fn verify_purchase_tac(tac_master: &Key16, record: &UploadRecord) -> Result<(), HostError> {
    check_version(record.key_version)?;
    if !matches!(
        record.tx_type,
        TransactionType::Purchase | TransactionType::ComplexPurchase
    ) {
        return Err(HostError::NotAPurchase(record.tx_type));
    }
    let dtk = diversify(record.algorithm, tac_master, &record.card_number.div_data());
    let expected = purchase_tac(
        &tac_key(record.algorithm, &dtk),
        record.amount_fen,
        record.tx_type,
        record.terminal_id.as_bytes(),
        record.terminal_serial,
        &record.date.to_bcd(),
        &record.time.to_bcd(),
    );
    if mac_eq(&expected, &record.tac) {
        Ok(())
    } else {
        Err(HostError::TacInvalid)
    }
}
