//! E-purse key diversification, session keys, and the MAC1/MAC2/TAC inputs of `epurse.md` §3.
//!
//! The field order of every MAC input is the PBOC JR/T 0025 one, which the
//! profile adopts; each function documents its input so a reviewer can hold
//! it next to the spec table.

use crate::{Algorithm, Key8, Key16, MacKey, block, mac::MAC_LEN};

/// Diversification data D: the 8 BCD bytes of the 16-digit card number
/// (the last 8 bytes of the application serial in EF15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DivData(pub [u8; 8]);

impl DivData {
    /// The 8 bytes of D.
    pub const fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

/// Transaction type codes that enter MACs, TACs and EF18 records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionType {
    /// `02` e-purse load (圈存).
    Load,
    /// `06` e-purse purchase (消费).
    Purchase,
    /// `09` complex purchase (复合消费), e.g. metro entry/exit.
    ComplexPurchase,
}

impl TransactionType {
    /// The one-byte code on the wire.
    pub const fn code(self) -> u8 {
        match self {
            TransactionType::Load => 0x02,
            TransactionType::Purchase => 0x06,
            TransactionType::ComplexPurchase => 0x09,
        }
    }

    /// Parses a wire code; `None` for codes the profile does not use.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0x02 => Some(TransactionType::Load),
            0x06 => Some(TransactionType::Purchase),
            0x09 => Some(TransactionType::ComplexPurchase),
            _ => None,
        }
    }
}

/// The card company's three e-purse master keys (HSM / PSAM side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKeys {
    /// Purchase master key (key index `01`); PSAMs hold it.
    pub purchase: Key16,
    /// Load master key (key index `01`); only the host holds it.
    pub load: Key16,
    /// TAC master key; only the host holds it.
    pub tac: Key16,
}

impl MasterKeys {
    /// The development key set of `epurse.md` §4. Never for production: the
    /// platform refuses to start a non-test deployment with it.
    pub fn test_set() -> Self {
        MasterKeys {
            purchase: Key16::from_bytes([
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0x00, 0xAA, 0xBB, 0xCC, 0xDD,
                0xEE, 0xFF,
            ]),
            load: Key16::from_bytes([
                0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
                0x00, 0x11,
            ]),
            tac: Key16::from_bytes([
                0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00,
                0x11, 0x22,
            ]),
        }
    }

    /// The card's own purse keys (DPK, DLK, DTK) for diversification data `d`.
    pub fn diversify(&self, alg: Algorithm, d: &DivData) -> PurseKeys {
        PurseKeys {
            dpk: diversify(alg, &self.purchase, d),
            dlk: diversify(alg, &self.load, d),
            dtk: diversify(alg, &self.tac, d),
        }
    }
}

/// A card's diversified purse keys, as the chip holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurseKeys {
    /// Diversified purchase key.
    pub dpk: Key16,
    /// Diversified load key.
    pub dlk: Key16,
    /// Diversified TAC key.
    pub dtk: Key16,
}

fn not8(x: &[u8; 8]) -> [u8; 8] {
    x.map(|b| !b)
}

/// Diversified key DK from master key MK and diversification data D:
/// 3DES `E_MK(D) || E_MK(~D)`; SM4 `E_MK(D || ~D)`.
pub fn diversify(alg: Algorithm, master: &Key16, d: &DivData) -> Key16 {
    let d = d.as_bytes();
    let mut out = [0u8; 16];
    match alg {
        Algorithm::Tdes => {
            out[..8].copy_from_slice(&block::tdes_encrypt(master, d));
            out[8..].copy_from_slice(&block::tdes_encrypt(master, &not8(d)));
        }
        Algorithm::Sm4 => {
            let mut input = [0u8; 16];
            input[..8].copy_from_slice(d);
            input[8..].copy_from_slice(&not8(d));
            out = block::sm4_encrypt(master, &input);
        }
    }
    Key16::from_bytes(out)
}

/// Session key from an 8-byte derivation input I: 3DES `E_K(I)` used as a
/// single-DES key; SM4 `E_K(I || ~I)`.
fn session_key(alg: Algorithm, key: &Key16, i: &[u8; 8]) -> MacKey {
    match alg {
        Algorithm::Tdes => MacKey::Des(Key8::from_bytes(block::tdes_encrypt(key, i))),
        Algorithm::Sm4 => {
            let mut input = [0u8; 16];
            input[..8].copy_from_slice(i);
            input[8..].copy_from_slice(&not8(i));
            MacKey::Sm4(Key16::from_bytes(block::sm4_encrypt(key, &input)))
        }
    }
}

/// Purchase session key SESPK from DPK with
/// `I = random(4) || offline counter(2) || terminal serial low 2 bytes(2)`.
pub fn purchase_session_key(
    alg: Algorithm,
    dpk: &Key16,
    random: [u8; 4],
    offline_counter: u16,
    terminal_serial: u32,
) -> MacKey {
    let mut i = [0u8; 8];
    i[..4].copy_from_slice(&random);
    i[4..6].copy_from_slice(&offline_counter.to_be_bytes());
    i[6..].copy_from_slice(&terminal_serial.to_be_bytes()[2..]);
    session_key(alg, dpk, &i)
}

/// Load session key SESLK from DLK with
/// `I = random(4) || online counter(2) || 8000`.
pub fn load_session_key(
    alg: Algorithm,
    dlk: &Key16,
    random: [u8; 4],
    online_counter: u16,
) -> MacKey {
    let mut i = [0u8; 8];
    i[..4].copy_from_slice(&random);
    i[4..6].copy_from_slice(&online_counter.to_be_bytes());
    i[6..].copy_from_slice(&[0x80, 0x00]);
    session_key(alg, dlk, &i)
}

/// TAC key: 3DES `DTK[0..8] XOR DTK[8..16]` (single DES); SM4 DTK itself.
pub fn tac_key(alg: Algorithm, dtk: &Key16) -> MacKey {
    match alg {
        Algorithm::Tdes => {
            let k = dtk.expose();
            let mut out = [0u8; 8];
            for (i, o) in out.iter_mut().enumerate() {
                *o = k[i] ^ k[i + 8];
            }
            MacKey::Des(Key8::from_bytes(out))
        }
        Algorithm::Sm4 => MacKey::Sm4(dtk.clone()),
    }
}

/// Purchase MAC1 = `MAC_SESPK(amount || type || terminal id || date || time)`.
/// `tx_type` is `06` for a purchase, `09` for a complex purchase.
pub fn purchase_mac1(
    sespk: &MacKey,
    amount_fen: u32,
    tx_type: TransactionType,
    terminal_id: &[u8; 6],
    date: &[u8; 4],
    time: &[u8; 3],
) -> [u8; MAC_LEN] {
    let mut data = Vec::with_capacity(18);
    data.extend_from_slice(&amount_fen.to_be_bytes());
    data.push(tx_type.code());
    data.extend_from_slice(terminal_id);
    data.extend_from_slice(date);
    data.extend_from_slice(time);
    sespk.mac(&data)
}

/// Purchase MAC2 = `MAC_SESPK(amount)`.
pub fn purchase_mac2(sespk: &MacKey, amount_fen: u32) -> [u8; MAC_LEN] {
    sespk.mac(&amount_fen.to_be_bytes())
}

/// Purchase TAC =
/// `MAC_TAC(amount || type || terminal id || terminal serial(4) || date || time)`.
pub fn purchase_tac(
    tac: &MacKey,
    amount_fen: u32,
    tx_type: TransactionType,
    terminal_id: &[u8; 6],
    terminal_serial: u32,
    date: &[u8; 4],
    time: &[u8; 3],
) -> [u8; MAC_LEN] {
    let mut data = Vec::with_capacity(22);
    data.extend_from_slice(&amount_fen.to_be_bytes());
    data.push(tx_type.code());
    data.extend_from_slice(terminal_id);
    data.extend_from_slice(&terminal_serial.to_be_bytes());
    data.extend_from_slice(date);
    data.extend_from_slice(time);
    tac.mac(&data)
}

/// Load MAC1 = `MAC_SESLK(balance before || amount || 02 || terminal id)`.
pub fn load_mac1(
    seslk: &MacKey,
    balance_before_fen: u32,
    amount_fen: u32,
    terminal_id: &[u8; 6],
) -> [u8; MAC_LEN] {
    let mut data = Vec::with_capacity(15);
    data.extend_from_slice(&balance_before_fen.to_be_bytes());
    data.extend_from_slice(&amount_fen.to_be_bytes());
    data.push(TransactionType::Load.code());
    data.extend_from_slice(terminal_id);
    seslk.mac(&data)
}

/// Load MAC2 = `MAC_SESLK(amount || 02 || terminal id || date || time)`.
pub fn load_mac2(
    seslk: &MacKey,
    amount_fen: u32,
    terminal_id: &[u8; 6],
    date: &[u8; 4],
    time: &[u8; 3],
) -> [u8; MAC_LEN] {
    let mut data = Vec::with_capacity(18);
    data.extend_from_slice(&amount_fen.to_be_bytes());
    data.push(TransactionType::Load.code());
    data.extend_from_slice(terminal_id);
    data.extend_from_slice(date);
    data.extend_from_slice(time);
    seslk.mac(&data)
}

/// Load TAC = `MAC_TAC(balance after || online counter before(2) || amount || 02
/// || terminal id || date || time)`.
pub fn load_tac(
    tac: &MacKey,
    balance_after_fen: u32,
    online_counter_before: u16,
    amount_fen: u32,
    terminal_id: &[u8; 6],
    date: &[u8; 4],
    time: &[u8; 3],
) -> [u8; MAC_LEN] {
    let mut data = Vec::with_capacity(24);
    data.extend_from_slice(&balance_after_fen.to_be_bytes());
    data.extend_from_slice(&online_counter_before.to_be_bytes());
    data.extend_from_slice(&amount_fen.to_be_bytes());
    data.push(TransactionType::Load.code());
    data.extend_from_slice(terminal_id);
    data.extend_from_slice(date);
    data.extend_from_slice(time);
    tac.mac(&data)
}
