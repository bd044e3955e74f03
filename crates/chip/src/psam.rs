//! The PSAM emulator: the terminal's secure module that computes purchase MAC1 and checks MAC2.

use crypto::{
    Algorithm, DivData, Key16, MacKey, TransactionType, diversify, purchase_mac1, purchase_mac2,
    purchase_session_key,
};
use serde::{Deserialize, Serialize};

use crate::image::key_hex;
use crate::{CommandApdu, ResponseApdu, Sw, TerminalId};

/// The persistent state of a PSAM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsamImage {
    pub terminal_id: TerminalId,
    /// The purchase master key (index 01). A PSAM holds the master key itself,
    /// since it serves every card.
    #[serde(with = "key_hex")]
    pub purchase_master_key: Key16,
    /// Serial the next MAC1 will carry.
    pub next_serial: u32,
}

/// A MAC1 waiting for its MAC2.
#[derive(Debug, Clone)]
struct PendingMac2 {
    sespk: MacKey,
    amount_fen: u32,
}

/// A PSAM: image plus the MAC2 it expects.
#[derive(Debug, Clone)]
pub struct Psam {
    image: PsamImage,
    pending: Option<PendingMac2>,
}

impl Psam {
    /// A PSAM for `terminal_id` holding the purchase master key; serials start at 1.
    pub fn new(terminal_id: TerminalId, purchase_master_key: Key16) -> Self {
        Psam::from_image(PsamImage {
            terminal_id,
            purchase_master_key,
            next_serial: 1,
        })
    }

    /// A PSAM from a saved image.
    pub fn from_image(image: PsamImage) -> Self {
        Psam {
            image,
            pending: None,
        }
    }

    /// The persistent state.
    pub fn image(&self) -> &PsamImage {
        &self.image
    }

    /// Raw APDU in, raw response out; never panics.
    pub fn process(&mut self, command: &[u8]) -> Vec<u8> {
        match CommandApdu::parse(command) {
            Ok(apdu) => self.execute(&apdu).to_bytes(),
            Err(_) => ResponseApdu::status(Sw::WRONG_LENGTH).to_bytes(),
        }
    }

    /// Processes a parsed command.
    pub fn execute(&mut self, apdu: &CommandApdu) -> ResponseApdu {
        let pending = self.pending.take();
        let reply = match (apdu.cla, apdu.ins) {
            (0x00, 0xB0) => self.read_terminal_id(apdu),
            (0x80, 0x70) => self.mac1(apdu),
            (0x80, 0x72) => self.verify_mac2(apdu, pending),
            (0x00 | 0x80, _) => Err(Sw::INS_NOT_SUPPORTED),
            _ => Err(Sw::CLA_NOT_SUPPORTED),
        };
        reply.unwrap_or_else(ResponseApdu::status)
    }

    /// READ BINARY of SFI 16 (`00 B0 96 00 06`): the terminal id.
    fn read_terminal_id(&mut self, apdu: &CommandApdu) -> Result<ResponseApdu, Sw> {
        if apdu.p1 != 0x96 {
            return Err(Sw::FILE_NOT_FOUND);
        }
        let offset = usize::from(apdu.p2);
        let le = apdu.le.ok_or(Sw::WRONG_LENGTH)? as usize;
        let id = self.image.terminal_id.as_bytes();
        if offset >= id.len() {
            return Err(Sw::WRONG_OFFSET);
        }
        let n = if le >= 256 { id.len() - offset } else { le };
        if offset + n > id.len() {
            return Err(Sw::WRONG_LENGTH);
        }
        Ok(ResponseApdu::ok(id[offset..offset + n].to_vec()))
    }

    /// MAC1 FOR PURCHASE (`80 70 00 00 24`).
    fn mac1(&mut self, apdu: &CommandApdu) -> Result<ResponseApdu, Sw> {
        if apdu.p1 != 0 || apdu.p2 != 0 {
            return Err(Sw::WRONG_P1P2);
        }
        let d: &[u8; 36] = apdu
            .data
            .as_slice()
            .try_into()
            .map_err(|_| Sw::WRONG_LENGTH)?;
        if apdu.le.is_some_and(|le| le < 8) {
            return Err(Sw::WRONG_LENGTH);
        }
        let random = [d[0], d[1], d[2], d[3]];
        let offline_counter = u16::from_be_bytes([d[4], d[5]]);
        let amount_fen = u32::from_be_bytes([d[6], d[7], d[8], d[9]]);
        let tx_type = match TransactionType::from_code(d[10]) {
            Some(t @ (TransactionType::Purchase | TransactionType::ComplexPurchase)) => t,
            _ => return Err(Sw::WRONG_DATA),
        };
        let date = [d[11], d[12], d[13], d[14]];
        let time = [d[15], d[16], d[17]];
        if d[18] != 0x01 {
            // Key version: the PSAM holds version 01 only.
            return Err(Sw::KEY_INDEX_UNSUPPORTED);
        }
        let alg = Algorithm::from_id(d[19]).map_err(|_| Sw::WRONG_DATA)?;
        let mut div = [0u8; 8];
        div.copy_from_slice(&d[20..28]);
        // d[28..36] is the issuer id; a one-issuer PSAM does not diversify on it.
        let serial = self.image.next_serial;
        let next = serial.checked_add(1).ok_or(Sw::CONDITIONS_NOT_SATISFIED)?;
        let dpk = diversify(alg, &self.image.purchase_master_key, &DivData(div));
        let sespk = purchase_session_key(alg, &dpk, random, offline_counter, serial);
        let mac1 = purchase_mac1(
            &sespk,
            amount_fen,
            tx_type,
            self.image.terminal_id.as_bytes(),
            &date,
            &time,
        );
        self.image.next_serial = next;
        self.pending = Some(PendingMac2 { sespk, amount_fen });
        let mut out = serial.to_be_bytes().to_vec();
        out.extend_from_slice(&mac1);
        Ok(ResponseApdu::ok(out))
    }

    /// VERIFY MAC2 (`80 72 00 00 04`).
    fn verify_mac2(
        &mut self,
        apdu: &CommandApdu,
        pending: Option<PendingMac2>,
    ) -> Result<ResponseApdu, Sw> {
        if apdu.p1 != 0 || apdu.p2 != 0 {
            return Err(Sw::WRONG_P1P2);
        }
        let mac2: [u8; 4] = apdu
            .data
            .as_slice()
            .try_into()
            .map_err(|_| Sw::WRONG_LENGTH)?;
        let pending = pending.ok_or(Sw::CONDITIONS_NOT_SATISFIED)?;
        let expected = purchase_mac2(&pending.sespk, pending.amount_fen);
        if expected
            .iter()
            .zip(&mac2)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
        {
            Ok(ResponseApdu::ok(Vec::new()))
        } else {
            Err(Sw::MAC_INVALID)
        }
    }
}
