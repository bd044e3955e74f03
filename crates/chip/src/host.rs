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

/// An uploaded purchase as it arrives from a terminal, before any check: numbers are wide
/// enough to hold a wrong value, so that one bad record is named and the rest of its upload
/// still goes through. Hex fields as 12 (terminal id) and 8 (TAC) hex digits, the date as
/// `YYYYMMDD` and the time as `hhmmss`, as the card wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawUpload {
    pub card_number: String,
    pub algorithm_id: i64,
    pub key_version: i64,
    pub offline_counter: i64,
    pub amount_fen: i64,
    pub tx_type: i64,
    pub terminal_id: String,
    pub terminal_serial: i64,
    pub date: String,
    pub time: String,
    pub balance_before_fen: i64,
    pub tac: String,
}

/// Why an uploaded record is malformed: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct UploadError {
    pub field: &'static str,
    pub reason: String,
}

fn upload_err(field: &'static str, reason: impl Into<String>) -> UploadError {
    UploadError {
        field,
        reason: reason.into(),
    }
}

fn in_range<T: TryFrom<i64>>(field: &'static str, v: i64) -> Result<T, UploadError> {
    T::try_from(v).map_err(|_| upload_err(field, format!("{v} is out of range")))
}

impl UploadRecord {
    /// Checks every field of an upload (§5): card number with its check digit, algorithm
    /// `00`/`04`, key version `01`, a purchase or complex purchase, an amount and balance
    /// within the purse cap, a valid date and time, 4 TAC bytes. The TAC itself is checked by
    /// the host under the TAC master key.
    pub fn parse(raw: &RawUpload) -> Result<Self, UploadError> {
        let card_number = CardNumber::parse(&raw.card_number)
            .map_err(|e| upload_err("card_number", e.to_string()))?;
        let algorithm = crypto::Algorithm::from_id(in_range("algorithm_id", raw.algorithm_id)?)
            .map_err(|e| upload_err("algorithm_id", e.to_string()))?;
        let key_version: u8 = in_range("key_version", raw.key_version)?;
        check_version(key_version).map_err(|e| upload_err("key_version", e.to_string()))?;
        let tx_type = TransactionType::from_code(in_range("tx_type", raw.tx_type)?)
            .filter(|t| {
                matches!(
                    t,
                    TransactionType::Purchase | TransactionType::ComplexPurchase
                )
            })
            .ok_or_else(|| {
                upload_err(
                    "tx_type",
                    format!(
                        "{} is not 6 (purchase) or 9 (complex purchase)",
                        raw.tx_type
                    ),
                )
            })?;
        let amount_fen: u32 = in_range("amount_fen", raw.amount_fen)?;
        if amount_fen > crate::card::BALANCE_MAX_FEN {
            return Err(upload_err(
                "amount_fen",
                format!("{amount_fen} exceeds the purse cap"),
            ));
        }
        let balance_before_fen: u32 = in_range("balance_before_fen", raw.balance_before_fen)?;
        if balance_before_fen > crate::card::BALANCE_MAX_FEN {
            return Err(upload_err(
                "balance_before_fen",
                format!("{balance_before_fen} exceeds the purse cap"),
            ));
        }
        let terminal_id = TerminalId::parse(&raw.terminal_id)
            .map_err(|e| upload_err("terminal_id", e.to_string()))?;
        let date = BcdDate::parse(&raw.date).map_err(|e| upload_err("date", e.to_string()))?;
        let time = parse_time(&raw.time)
            .ok_or_else(|| upload_err("time", format!("{:?} is not a time hhmmss", raw.time)))?;
        let tac: [u8; 4] = hex::decode(&raw.tac)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| upload_err("tac", "must be 8 hex digits"))?;
        Ok(UploadRecord {
            card_number,
            algorithm,
            key_version,
            offline_counter: in_range("offline_counter", raw.offline_counter)?,
            amount_fen,
            tx_type,
            terminal_id,
            terminal_serial: in_range("terminal_serial", raw.terminal_serial)?,
            date,
            time,
            balance_before_fen,
            tac,
        })
    }

    /// The record in its upload form (what a terminal sends).
    pub fn to_raw(&self) -> RawUpload {
        let t = self.time.to_bcd();
        RawUpload {
            card_number: self.card_number.to_string(),
            algorithm_id: i64::from(self.algorithm.id()),
            key_version: i64::from(self.key_version),
            offline_counter: i64::from(self.offline_counter),
            amount_fen: i64::from(self.amount_fen),
            tx_type: i64::from(self.tx_type.code()),
            terminal_id: self.terminal_id.to_string(),
            terminal_serial: i64::from(self.terminal_serial),
            date: hex::encode(self.date.to_bcd()),
            time: hex::encode(t),
            balance_before_fen: i64::from(self.balance_before_fen),
            tac: hex::encode_upper(self.tac),
        }
    }
}

fn parse_time(text: &str) -> Option<BcdTime> {
    if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| text[r].parse::<u8>().ok();
    BcdTime::new(n(0..2)?, n(2..4)?, n(4..6)?).ok()
}

#[cfg(test)]
mod upload_tests {
    use super::*;

    fn raw() -> RawUpload {
        RawUpload {
            card_number: "4101000000000018".into(),
            algorithm_id: 4,
            key_version: 1,
            offline_counter: 0,
            amount_fen: 200,
            tx_type: 6,
            terminal_id: "112233445566".into(),
            terminal_serial: 7,
            date: "20261126".into(),
            time: "143000".into(),
            balance_before_fen: 5_000,
            tac: "629B5799".into(),
        }
    }

    #[test]
    fn a_good_record_round_trips_and_verifies() {
        let r = UploadRecord::parse(&raw()).unwrap();
        assert_eq!(r.to_raw(), raw());
        // The appendix's SM4 purchase TAC.
        assert_eq!(verify_purchase_tac(&MasterKeys::test_set().tac, &r), Ok(()));
    }

    type Change = Box<dyn Fn(&mut RawUpload)>;

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(&str, Change)> = vec![
            (
                "card_number",
                Box::new(|r| r.card_number = "4101000000000019".into()),
            ),
            ("algorithm_id", Box::new(|r| r.algorithm_id = 1)),
            ("algorithm_id", Box::new(|r| r.algorithm_id = 300)),
            ("key_version", Box::new(|r| r.key_version = 2)),
            ("tx_type", Box::new(|r| r.tx_type = 2)),
            ("amount_fen", Box::new(|r| r.amount_fen = -1)),
            ("amount_fen", Box::new(|r| r.amount_fen = 100_001)),
            ("offline_counter", Box::new(|r| r.offline_counter = 65_536)),
            (
                "terminal_id",
                Box::new(|r| r.terminal_id = "11223344556".into()),
            ),
            ("terminal_serial", Box::new(|r| r.terminal_serial = -5)),
            ("date", Box::new(|r| r.date = "20260230".into())),
            ("time", Box::new(|r| r.time = "246000".into())),
            (
                "balance_before_fen",
                Box::new(|r| r.balance_before_fen = 1 << 40),
            ),
            ("tac", Box::new(|r| r.tac = "629B57".into())),
        ];
        for (field, change) in cases {
            let mut r = raw();
            change(&mut r);
            let e = UploadRecord::parse(&r).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }
}
