//! The MAC inputs of `epurse.md` §3 for the host-side operations, as bytes a backend can feed
//! to whatever computes the CBC-MAC (software, an HSM), and which key derivation they need.

use crypto::{MAC_LEN, TransactionType};

/// The fields of an uploaded purchase that enter its TAC (§5), as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseTacFields {
    pub amount_fen: u32,
    /// `06` purchase or `09` complex purchase.
    pub tx_type: TransactionType,
    pub terminal_id: [u8; 6],
    pub terminal_serial: u32,
    /// BCD `YYYYMMDD`.
    pub date: [u8; 4],
    /// BCD `hhmmss`.
    pub time: [u8; 3],
}

/// One uploaded purchase's TAC to check: the card's profile and diversification data, the
/// fields the TAC covers, and the TAC the terminal uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseTacCheck {
    pub algorithm: crypto::Algorithm,
    pub div: crypto::DivData,
    pub fields: PurchaseTacFields,
    pub tac: [u8; MAC_LEN],
}

/// What a load terminal sends the host after INITIALIZE FOR LOAD, with the date and time it
/// will put into CREDIT FOR LOAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFields {
    pub balance_before_fen: u32,
    pub online_counter: u16,
    /// The card's random from INITIALIZE FOR LOAD.
    pub random: [u8; 4],
    pub amount_fen: u32,
    pub terminal_id: [u8; 6],
    pub date: [u8; 4],
    pub time: [u8; 3],
}

/// A post-issuance command to protect: the card's 4-byte challenge and the command as the MAC
/// covers it, `CLA INS P1 P2 Lc data` with Lc counting the 4 MAC bytes still to come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineCommand {
    pub challenge: [u8; 4],
    pub command: Vec<u8>,
}

/// Which key, derived from the card key, computes the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacDerivation {
    /// The TAC key: 3DES `DTK[0..8] XOR DTK[8..16]` (single DES); SM4 DTK itself.
    Tac,
    /// A session key from the 8-byte input I: 3DES `E_DK(I)` (single DES); SM4
    /// `E_DK(I || ~I)`.
    Session([u8; 8]),
    /// The card key itself (DAMK) with the card's challenge as the initial value: the
    /// line-protection MAC (`crypto::line_mac`).
    Line([u8; 4]),
}

/// A MAC to compute: key derivation and the data (unpadded; the MAC pads with ISO/IEC 9797-1
/// method 2). Only this module builds one, so every MAC a store computes is one of the
/// profile's host operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacInput {
    derivation: MacDerivation,
    data: Vec<u8>,
}

impl MacInput {
    pub fn derivation(&self) -> MacDerivation {
        self.derivation
    }
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Purchase TAC = `MAC_TAC(amount || type || terminal id || terminal serial || date || time)`.
    pub(crate) fn purchase_tac(f: &PurchaseTacFields) -> Self {
        let mut data = Vec::with_capacity(22);
        data.extend_from_slice(&f.amount_fen.to_be_bytes());
        data.push(f.tx_type.code());
        data.extend_from_slice(&f.terminal_id);
        data.extend_from_slice(&f.terminal_serial.to_be_bytes());
        data.extend_from_slice(&f.date);
        data.extend_from_slice(&f.time);
        MacInput {
            derivation: MacDerivation::Tac,
            data,
        }
    }

    fn load_session(f: &LoadFields) -> MacDerivation {
        let mut i = [0u8; 8];
        i[..4].copy_from_slice(&f.random);
        i[4..6].copy_from_slice(&f.online_counter.to_be_bytes());
        i[6..].copy_from_slice(&[0x80, 0x00]);
        MacDerivation::Session(i)
    }

    /// Load MAC1 = `MAC_SESLK(balance before || amount || 02 || terminal id)`.
    pub(crate) fn load_mac1(f: &LoadFields) -> Self {
        let mut data = Vec::with_capacity(15);
        data.extend_from_slice(&f.balance_before_fen.to_be_bytes());
        data.extend_from_slice(&f.amount_fen.to_be_bytes());
        data.push(TransactionType::Load.code());
        data.extend_from_slice(&f.terminal_id);
        MacInput {
            derivation: Self::load_session(f),
            data,
        }
    }

    /// Load MAC2 = `MAC_SESLK(amount || 02 || terminal id || date || time)`.
    pub(crate) fn load_mac2(f: &LoadFields) -> Self {
        let mut data = Vec::with_capacity(18);
        data.extend_from_slice(&f.amount_fen.to_be_bytes());
        data.push(TransactionType::Load.code());
        data.extend_from_slice(&f.terminal_id);
        data.extend_from_slice(&f.date);
        data.extend_from_slice(&f.time);
        MacInput {
            derivation: Self::load_session(f),
            data,
        }
    }

    /// Line protection: the MAC over the command under DAMK, IV = challenge || zeros.
    pub(crate) fn line_protection(c: &LineCommand) -> Self {
        MacInput {
            derivation: MacDerivation::Line(c.challenge),
            data: c.command.clone(),
        }
    }

    /// Load TAC = `MAC_TAC(balance after || online counter before || amount || 02 || terminal
    /// id || date || time)`; `None` when balance + amount overflows (no such TAC exists).
    pub(crate) fn load_tac(f: &LoadFields) -> Option<Self> {
        let after = f.balance_before_fen.checked_add(f.amount_fen)?;
        let mut data = Vec::with_capacity(24);
        data.extend_from_slice(&after.to_be_bytes());
        data.extend_from_slice(&f.online_counter.to_be_bytes());
        data.extend_from_slice(&f.amount_fen.to_be_bytes());
        data.push(TransactionType::Load.code());
        data.extend_from_slice(&f.terminal_id);
        data.extend_from_slice(&f.date);
        data.extend_from_slice(&f.time);
        Some(MacInput {
            derivation: MacDerivation::Tac,
            data,
        })
    }
}

/// The software computation of [`MacInput`] under card key `card_key`, for backends that hold
/// key bytes in process (the file backend) and as the reference the HSM backend is tested
/// against.
pub fn software_mac(
    alg: crypto::Algorithm,
    card_key: &crypto::Key16,
    input: &MacInput,
) -> [u8; MAC_LEN] {
    let key = match input.derivation {
        MacDerivation::Tac => crypto::tac_key(alg, card_key),
        MacDerivation::Session(i) => session_key(alg, card_key, &i),
        MacDerivation::Line(challenge) => {
            return crypto::line_mac(alg, card_key, challenge, &input.data);
        }
    };
    key.mac(&input.data)
}

fn session_key(alg: crypto::Algorithm, key: &crypto::Key16, i: &[u8; 8]) -> crypto::MacKey {
    // The crypto crate's load session key takes I's parts; rebuild them from I.
    let random = [i[0], i[1], i[2], i[3]];
    let counter = u16::from_be_bytes([i[4], i[5]]);
    if i[6..] == [0x80, 0x00] {
        crypto::load_session_key(alg, key, random, counter)
    } else {
        let serial = u32::from(u16::from_be_bytes([i[6], i[7]]));
        crypto::purchase_session_key(alg, key, random, counter, serial)
    }
}
