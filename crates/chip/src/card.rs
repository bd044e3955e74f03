//! The card emulator: processes command APDUs against a [`CardImage`] per the profile.
//!
//! Volatile state (selected file, PIN status, a pending INITIALIZE) lives in
//! [`Session`], which a reset clears, exactly as a real chip loses its RAM.
//! Everything persistent is in the image. A DEBIT or CREDIT computes the next
//! state of the whole transit application (purse, EF18, SFI 19) and replaces
//! it with one assignment, so no image taken between two commands can show a
//! balance change without its record.

use crypto::{
    Algorithm, MAC_LEN, TransactionType, line_mac, load_mac1, load_mac2, load_session_key,
    load_tac, purchase_mac1, purchase_mac2, purchase_session_key, purchase_tac, tac_key,
};

use crate::image::{Access, CardImage, Df, EfBody, FID_MF, HexBytes};
use crate::records::{EF18_RECORD_LEN, TRANSIT_RECORD_LEN, TransactionRecord};
use crate::{CommandApdu, ResponseApdu, Sw, TerminalId};

/// Purse cap: 100 000 fen (1 000 yuan).
pub const BALANCE_MAX_FEN: u32 = 100_000;
/// Consecutive invalid MACs that lock the purse.
pub const MAC_FAILURES_MAX: u8 = 3;
/// PIN tries before the PIN blocks.
pub const PIN_TRIES_MAX: u8 = 3;
/// The only purse key index the profile defines.
pub const KEY_INDEX: u8 = 0x01;
/// SFI of the EF18 transaction log.
pub const SFI_EF18: u8 = 0x18;
/// SFI of the transit (complex purchase) records.
pub const SFI_TRANSIT: u8 = 0x19;

const CLA_ISO: u8 = 0x00;
const CLA_PROPRIETARY: u8 = 0x80;
/// Line protection (PBOC/CJ/T 166 "线路保护"): a 4-byte MAC appended to the data.
const CLA_LINE: u8 = 0x04;

type Reply = Result<ResponseApdu, Sw>;

/// An INITIALIZE that waits for its CREDIT or DEBIT.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Load {
        amount_fen: u32,
        terminal_id: TerminalId,
        random: [u8; 4],
        balance_before_fen: u32,
        online_counter: u16,
    },
    Purchase {
        tx_type: TransactionType,
        amount_fen: u32,
        terminal_id: TerminalId,
        random: [u8; 4],
        balance_before_fen: u32,
        offline_counter: u16,
        /// Transit record from UPDATE CAPP DATA CACHE, committed with the debit.
        cache: Option<Vec<u8>>,
    },
}

/// Volatile chip state, lost on reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// Selected application (index into `CardImage::apps`); `None` is the MF.
    df: Option<usize>,
    /// Current EF in the selected DF.
    ef: Option<usize>,
    pin_verified: bool,
    pending: Option<Pending>,
    /// The last GET CHALLENGE's first 4 bytes, until a line-protected command uses it (one
    /// use, whatever its outcome), a new GET CHALLENGE replaces it, or a reset.
    challenge: Option<[u8; 4]>,
}

/// A card: its image and its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    image: CardImage,
    session: Session,
}

impl Card {
    /// Powers up a card with this image (MF selected, nothing verified).
    pub fn from_image(image: CardImage) -> Self {
        Card {
            image,
            session: Session::default(),
        }
    }

    /// The persistent state, e.g. to save it as JSON.
    pub fn image(&self) -> &CardImage {
        &self.image
    }

    /// Takes the image out (the card is consumed, like a card put away).
    pub fn into_image(self) -> CardImage {
        self.image
    }

    /// Power cycle: forgets the selection, PIN status and any pending INITIALIZE.
    pub fn reset(&mut self) {
        self.session = Session::default();
    }

    /// Queues bytes that the next random draws return before the PRNG. For
    /// replaying worked examples and golden transcripts.
    pub fn preload_random(&mut self, bytes: &[u8]) {
        self.image.rng.preload.0.extend_from_slice(bytes);
    }

    /// Processes raw command bytes and returns raw response bytes. Never
    /// panics: input that is not an APDU answers `6700`.
    pub fn process(&mut self, command: &[u8]) -> Vec<u8> {
        match CommandApdu::parse(command) {
            Ok(apdu) => self.execute(&apdu).to_bytes(),
            Err(_) => {
                // A garbled command still ends any pending transaction.
                self.session.pending = None;
                ResponseApdu::status(Sw::WRONG_LENGTH).to_bytes()
            }
        }
    }

    /// Processes a parsed command.
    pub fn execute(&mut self, apdu: &CommandApdu) -> ResponseApdu {
        // Every command consumes the pending INITIALIZE; only the command
        // allowed to follow it puts it to use (or back, for the cache update).
        let pending = self.session.pending.take();
        let reply = (|| match (apdu.cla, apdu.ins) {
            (CLA_ISO, 0xA4) => self.select(apdu),
            (CLA_ISO, 0xB0) => self.read_binary(apdu),
            (CLA_ISO, 0xB2) => self.read_record(apdu),
            (CLA_ISO, 0xD6) => self.update_binary(apdu.p1, apdu.p2, &apdu.data, false),
            (CLA_ISO, 0xDC) => self.update_record(apdu.p1, apdu.p2, &apdu.data, false),
            (CLA_LINE, 0xD6) => {
                let data = self.line_protected(apdu)?;
                self.update_binary(apdu.p1, apdu.p2, &data, true)
            }
            (CLA_LINE, 0xDC) => {
                let data = self.line_protected(apdu)?;
                self.update_record(apdu.p1, apdu.p2, &data, true)
            }
            (CLA_LINE, _) => Err(Sw::INS_NOT_SUPPORTED),
            (CLA_ISO, 0x20) => self.verify(apdu),
            (CLA_ISO, 0x84) => self.get_challenge(apdu),
            (CLA_PROPRIETARY, 0x50) => self.initialize(apdu),
            (CLA_PROPRIETARY, 0x52) => self.credit_for_load(apdu, pending),
            (CLA_PROPRIETARY, 0x54) => self.debit_for_purchase(apdu, pending),
            (CLA_PROPRIETARY, 0x5C) => self.get_balance(apdu),
            (CLA_PROPRIETARY, 0xDC) => self.update_capp_data_cache(apdu, pending),
            (CLA_ISO | CLA_PROPRIETARY, _) => Err(Sw::INS_NOT_SUPPORTED),
            _ => Err(Sw::CLA_NOT_SUPPORTED),
        })();
        reply.unwrap_or_else(ResponseApdu::status)
    }

    // ---- file system -------------------------------------------------

    fn current_df(&self) -> &Df {
        match self.session.df.and_then(|i| self.image.apps.get(i)) {
            Some(df) => df,
            None => &self.image.mf,
        }
    }

    fn current_df_mut(&mut self) -> &mut Df {
        match self.session.df {
            Some(i) if i < self.image.apps.len() => &mut self.image.apps[i],
            _ => &mut self.image.mf,
        }
    }

    fn enter_df(&mut self, df: Option<usize>) {
        if self.session.df != df {
            // Security status belongs to the application that granted it.
            self.session.pin_verified = false;
        }
        self.session.df = df;
        self.session.ef = None;
    }

    fn select(&mut self, apdu: &CommandApdu) -> Reply {
        let fci_wanted = match apdu.p2 {
            0x00 => true,
            0x0C => false,
            _ => return Err(Sw::WRONG_P1P2),
        };
        match apdu.p1 {
            0x04 => {
                if apdu.data.is_empty() || apdu.data.len() > 16 {
                    return Err(Sw::WRONG_LENGTH);
                }
                let idx = self
                    .image
                    .apps
                    .iter()
                    .position(|a| a.aid.as_ref().is_some_and(|aid| aid.0 == apdu.data))
                    .ok_or(Sw::FILE_NOT_FOUND)?;
                self.enter_df(Some(idx));
                if !fci_wanted {
                    return Ok(ResponseApdu::ok(Vec::new()));
                }
                // FCI: 6F { 84 DF-name }.
                let aid = &apdu.data;
                let mut fci = vec![0x6F, (aid.len() + 2) as u8, 0x84, aid.len() as u8];
                fci.extend_from_slice(aid);
                Ok(ResponseApdu::ok(fci))
            }
            0x00 => {
                let fid = match apdu.data.as_slice() {
                    [] => FID_MF,
                    [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                    _ => return Err(Sw::WRONG_LENGTH),
                };
                let mut fcp_size = None;
                if fid == FID_MF {
                    self.enter_df(None);
                } else if let Some(idx) = self.image.apps.iter().position(|a| a.fid == fid) {
                    self.enter_df(Some(idx));
                } else {
                    let idx = self.current_df().ef_by_fid(fid).ok_or(Sw::FILE_NOT_FOUND)?;
                    fcp_size = self.current_df().files.get(idx).map(|f| f.body.size());
                    self.session.ef = Some(idx);
                }
                if !fci_wanted {
                    return Ok(ResponseApdu::ok(Vec::new()));
                }
                // FCP: 62 { 83 FID [80 size] }.
                let mut body = vec![0x83, 0x02];
                body.extend_from_slice(&fid.to_be_bytes());
                if let Some(size) = fcp_size {
                    body.extend_from_slice(&[0x80, 0x02]);
                    body.extend_from_slice(&(size as u16).to_be_bytes());
                }
                let mut fcp = vec![0x62, body.len() as u8];
                fcp.extend_from_slice(&body);
                Ok(ResponseApdu::ok(fcp))
            }
            _ => Err(Sw::WRONG_P1P2),
        }
    }

    /// Resolves P1 of READ/UPDATE BINARY: SFI form (bit 8 set) or current EF.
    /// Returns the EF index and the offset.
    fn binary_target(&mut self, p1: u8, p2: u8) -> Result<(usize, usize), Sw> {
        if p1 & 0x80 != 0 {
            if p1 & 0x60 != 0 {
                return Err(Sw::WRONG_P1P2);
            }
            let idx = self
                .current_df()
                .ef_by_sfi(p1 & 0x1F)
                .ok_or(Sw::FILE_NOT_FOUND)?;
            self.session.ef = Some(idx);
            Ok((idx, usize::from(p2)))
        } else {
            let idx = self.session.ef.ok_or(Sw::CONDITIONS_NOT_SATISFIED)?;
            Ok((idx, usize::from(u16::from_be_bytes([p1, p2]))))
        }
    }

    /// Resolves P2 of READ/UPDATE RECORD: `SFI << 3 | 100`, SFI 0 = current EF.
    fn record_target(&mut self, p1: u8, p2: u8) -> Result<(usize, usize), Sw> {
        if p2 & 0x07 != 0x04 || p1 == 0 {
            return Err(Sw::WRONG_P1P2);
        }
        let sfi = p2 >> 3;
        let idx = if sfi == 0 {
            self.session.ef.ok_or(Sw::CONDITIONS_NOT_SATISFIED)?
        } else {
            let idx = self.current_df().ef_by_sfi(sfi).ok_or(Sw::FILE_NOT_FOUND)?;
            self.session.ef = Some(idx);
            idx
        };
        Ok((idx, usize::from(p1)))
    }

    fn check_access(&self, access: Access) -> Result<(), Sw> {
        match access {
            Access::Free => Ok(()),
            Access::Pin if self.session.pin_verified => Ok(()),
            Access::Pin | Access::Never | Access::Mac => Err(Sw::SECURITY_NOT_SATISFIED),
        }
    }

    /// Whether an update may write a file with this update access: a line-protected command
    /// (its MAC already verified) satisfies `Mac`; nothing satisfies `Never`.
    fn may_update(access: Access, pin_verified: bool, protected: bool) -> Result<(), Sw> {
        match access {
            Access::Free => Ok(()),
            Access::Pin if pin_verified => Ok(()),
            Access::Mac if protected => Ok(()),
            Access::Pin | Access::Mac | Access::Never => Err(Sw::SECURITY_NOT_SATISFIED),
        }
    }

    /// Checks a line-protected command (`docs/app-scripts.md`): uses up the challenge, checks
    /// the MAC over `CLA INS P1 P2 Lc data` under the selected DF's maintenance key and
    /// returns the data without its MAC.
    fn line_protected(&mut self, apdu: &CommandApdu) -> Result<Vec<u8>, Sw> {
        let challenge = self.session.challenge.take();
        let key = self
            .current_df()
            .maintenance
            .clone()
            .ok_or(Sw::SECURITY_NOT_SATISFIED)?;
        let challenge = challenge.ok_or(Sw::CHALLENGE_NOT_USABLE)?;
        let lc = u8::try_from(apdu.data.len()).map_err(|_| Sw::WRONG_LENGTH)?;
        if apdu.data.len() <= MAC_LEN {
            return Err(Sw::WRONG_LENGTH);
        }
        let (data, mac) = apdu.data.split_at(apdu.data.len() - MAC_LEN);
        let mut covered = Vec::with_capacity(5 + data.len());
        covered.extend_from_slice(&[apdu.cla, apdu.ins, apdu.p1, apdu.p2, lc]);
        covered.extend_from_slice(data);
        let expected = line_mac(key.algorithm, &key.damk, challenge, &covered);
        let mac: [u8; MAC_LEN] = mac.try_into().map_err(|_| Sw::WRONG_LENGTH)?;
        if !mac_eq(&expected, &mac) {
            return Err(Sw::SM_INCORRECT);
        }
        Ok(data.to_vec())
    }

    fn read_binary(&mut self, apdu: &CommandApdu) -> Reply {
        let (idx, offset) = self.binary_target(apdu.p1, apdu.p2)?;
        let le = apdu.le.ok_or(Sw::WRONG_LENGTH)? as usize;
        if !apdu.data.is_empty() {
            return Err(Sw::WRONG_LENGTH);
        }
        let ef = self.current_df().files.get(idx).ok_or(Sw::FILE_NOT_FOUND)?;
        let EfBody::Binary { data } = &ef.body else {
            return Err(Sw::INCOMPATIBLE_FILE);
        };
        self.check_access(ef.read)?;
        if offset >= data.0.len() {
            return Err(Sw::WRONG_OFFSET);
        }
        let available = data.0.len() - offset;
        // Le 00 (256) or 0000 asks for "as much as there is"; a specific Le
        // must not run past the end.
        let n = if le >= 256 { available.min(le) } else { le };
        if n > available {
            return Err(Sw::WRONG_LENGTH);
        }
        Ok(ResponseApdu::ok(data.0[offset..offset + n].to_vec()))
    }

    fn read_record(&mut self, apdu: &CommandApdu) -> Reply {
        let (idx, number) = self.record_target(apdu.p1, apdu.p2)?;
        let le = apdu.le.ok_or(Sw::WRONG_LENGTH)? as usize;
        if !apdu.data.is_empty() {
            return Err(Sw::WRONG_LENGTH);
        }
        let ef = self.current_df().files.get(idx).ok_or(Sw::FILE_NOT_FOUND)?;
        let EfBody::Records {
            record_len,
            records,
            ..
        } = &ef.body
        else {
            return Err(Sw::INCOMPATIBLE_FILE);
        };
        self.check_access(ef.read)?;
        let record = records.get(number - 1).ok_or(Sw::RECORD_NOT_FOUND)?;
        if le < 256 && le != *record_len {
            return Err(Sw::WRONG_LENGTH);
        }
        Ok(ResponseApdu::ok(record.0.clone()))
    }

    fn update_binary(&mut self, p1: u8, p2: u8, data_in: &[u8], protected: bool) -> Reply {
        let (idx, offset) = self.binary_target(p1, p2)?;
        let pin_verified = self.session.pin_verified;
        let ef = self
            .current_df_mut()
            .files
            .get_mut(idx)
            .ok_or(Sw::FILE_NOT_FOUND)?;
        let access = ef.update;
        let EfBody::Binary { data } = &mut ef.body else {
            return Err(Sw::INCOMPATIBLE_FILE);
        };
        Self::may_update(access, pin_verified, protected)?;
        if data_in.is_empty() {
            return Err(Sw::WRONG_LENGTH);
        }
        if offset >= data.0.len() {
            return Err(Sw::WRONG_OFFSET);
        }
        if offset + data_in.len() > data.0.len() {
            return Err(Sw::WRONG_LENGTH);
        }
        data.0[offset..offset + data_in.len()].copy_from_slice(data_in);
        Ok(ResponseApdu::ok(Vec::new()))
    }

    fn update_record(&mut self, p1: u8, p2: u8, data_in: &[u8], protected: bool) -> Reply {
        let (idx, number) = self.record_target(p1, p2)?;
        let pin_verified = self.session.pin_verified;
        let ef = self
            .current_df_mut()
            .files
            .get_mut(idx)
            .ok_or(Sw::FILE_NOT_FOUND)?;
        let access = ef.update;
        let EfBody::Records {
            record_len,
            records,
            cyclic,
            ..
        } = &mut ef.body
        else {
            return Err(Sw::INCOMPATIBLE_FILE);
        };
        Self::may_update(access, pin_verified, protected)?;
        if *cyclic {
            // Cyclic files are written by the purse only.
            return Err(Sw::INCOMPATIBLE_FILE);
        }
        if data_in.len() != *record_len {
            return Err(Sw::WRONG_LENGTH);
        }
        let record = records.get_mut(number - 1).ok_or(Sw::RECORD_NOT_FOUND)?;
        record.0.copy_from_slice(data_in);
        Ok(ResponseApdu::ok(Vec::new()))
    }

    fn verify(&mut self, apdu: &CommandApdu) -> Reply {
        if apdu.p1 != 0x00 || apdu.p2 != 0x00 {
            return Err(Sw::WRONG_P1P2);
        }
        let pin = &mut self.image.pin;
        if pin.tries_left == 0 {
            return Err(Sw::PIN_BLOCKED);
        }
        if apdu.data.is_empty() {
            // No PIN: ask how many tries remain.
            return Err(Sw::pin_tries_left(pin.tries_left));
        }
        if apdu.data.len() > 8 {
            return Err(Sw::WRONG_LENGTH);
        }
        let same_len = apdu.data.len() == pin.pin.0.len();
        let diff = apdu
            .data
            .iter()
            .zip(pin.pin.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if same_len && diff == 0 {
            pin.tries_left = PIN_TRIES_MAX;
            self.session.pin_verified = true;
            Ok(ResponseApdu::ok(Vec::new()))
        } else {
            pin.tries_left -= 1;
            self.session.pin_verified = false;
            Err(Sw::pin_tries_left(pin.tries_left))
        }
    }

    fn get_challenge(&mut self, apdu: &CommandApdu) -> Reply {
        if apdu.p1 != 0 || apdu.p2 != 0 {
            return Err(Sw::WRONG_P1P2);
        }
        let n = match apdu.le {
            Some(n @ (4 | 8)) => n as usize,
            _ => return Err(Sw::WRONG_LENGTH),
        };
        let mut out = vec![0u8; n];
        self.image.rng.fill(&mut out);
        let mut challenge = [0u8; 4];
        challenge.copy_from_slice(&out[..4]);
        self.session.challenge = Some(challenge);
        Ok(ResponseApdu::ok(out))
    }

    // ---- e-purse -----------------------------------------------------

    /// The selected application's index, if it holds the purse.
    fn purse_app(&self) -> Result<usize, Sw> {
        let idx = self.session.df.ok_or(Sw::CONDITIONS_NOT_SATISFIED)?;
        match self.image.apps.get(idx) {
            Some(df) if df.purse.is_some() => Ok(idx),
            _ => Err(Sw::CONDITIONS_NOT_SATISFIED),
        }
    }

    fn purse(&self, app: usize) -> Result<&crate::image::Purse, Sw> {
        let purse = self
            .image
            .apps
            .get(app)
            .and_then(|a| a.purse.as_ref())
            .ok_or(Sw::CONDITIONS_NOT_SATISFIED)?;
        if purse.locked {
            return Err(Sw::APPLICATION_LOCKED);
        }
        Ok(purse)
    }

    fn check_le(apdu: &CommandApdu, response_len: usize) -> Result<(), Sw> {
        match apdu.le {
            Some(le) if (le as usize) < response_len => Err(Sw::WRONG_LENGTH),
            _ => Ok(()),
        }
    }

    /// INITIALIZE FOR LOAD (P1 00), FOR PURCHASE (01), FOR COMPLEX PURCHASE (03).
    fn initialize(&mut self, apdu: &CommandApdu) -> Reply {
        let tx_type = match apdu.p1 {
            0x00 => TransactionType::Load,
            0x01 => TransactionType::Purchase,
            0x03 => TransactionType::ComplexPurchase,
            _ => return Err(Sw::WRONG_P1P2),
        };
        // P2 01 is the e-deposit, which this profile does not carry.
        if apdu.p2 != 0x02 {
            return Err(Sw::WRONG_P1P2);
        }
        let app = self.purse_app()?;
        let [key_index, a0, a1, a2, a3, t @ ..] = apdu.data.as_slice() else {
            return Err(Sw::WRONG_LENGTH);
        };
        let terminal_id = TerminalId(<[u8; 6]>::try_from(t).map_err(|_| Sw::WRONG_LENGTH)?);
        let amount_fen = u32::from_be_bytes([*a0, *a1, *a2, *a3]);
        let purse = self.purse(app)?;
        if *key_index != KEY_INDEX {
            return Err(Sw::KEY_INDEX_UNSUPPORTED);
        }
        let (alg, version, balance) = (purse.algorithm, purse.key_version, purse.balance_fen);
        let mut random = [0u8; 4];
        if tx_type == TransactionType::Load {
            Self::check_le(apdu, 16)?;
            let counter = purse.online_counter;
            // The counter must be able to advance, and the load must fit under the cap.
            if counter == u16::MAX
                || balance
                    .checked_add(amount_fen)
                    .is_none_or(|b| b > BALANCE_MAX_FEN)
            {
                return Err(Sw::CONDITIONS_NOT_SATISFIED);
            }
            let dlk = purse.keys.dlk.clone();
            self.image.rng.fill(&mut random);
            let seslk = load_session_key(alg, &dlk, random, counter);
            let mac1 = load_mac1(&seslk, balance, amount_fen, terminal_id.as_bytes());
            let mut out = Vec::with_capacity(16);
            out.extend_from_slice(&balance.to_be_bytes());
            out.extend_from_slice(&counter.to_be_bytes());
            out.extend_from_slice(&[version, alg.id()]);
            out.extend_from_slice(&random);
            out.extend_from_slice(&mac1);
            self.session.pending = Some(Pending::Load {
                amount_fen,
                terminal_id,
                random,
                balance_before_fen: balance,
                online_counter: counter,
            });
            Ok(ResponseApdu::ok(out))
        } else {
            Self::check_le(apdu, 15)?;
            let counter = purse.offline_counter;
            if counter == u16::MAX {
                return Err(Sw::CONDITIONS_NOT_SATISFIED);
            }
            if amount_fen > balance {
                return Err(Sw::BALANCE_INSUFFICIENT);
            }
            self.image.rng.fill(&mut random);
            let mut out = Vec::with_capacity(15);
            out.extend_from_slice(&balance.to_be_bytes());
            out.extend_from_slice(&counter.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, version, alg.id()]);
            out.extend_from_slice(&random);
            self.session.pending = Some(Pending::Purchase {
                tx_type,
                amount_fen,
                terminal_id,
                random,
                balance_before_fen: balance,
                offline_counter: counter,
                cache: None,
            });
            Ok(ResponseApdu::ok(out))
        }
    }

    /// Counts an invalid MAC; the third in a row locks the purse for good.
    fn mac_failed(&mut self, app: usize) -> Sw {
        if let Some(purse) = self.image.apps.get_mut(app).and_then(|a| a.purse.as_mut()) {
            purse.mac_failures = purse.mac_failures.saturating_add(1);
            if purse.mac_failures >= MAC_FAILURES_MAX {
                purse.locked = true;
            }
        }
        Sw::MAC_INVALID
    }

    fn credit_for_load(&mut self, apdu: &CommandApdu, pending: Option<Pending>) -> Reply {
        if apdu.p1 != 0 || apdu.p2 != 0 {
            return Err(Sw::WRONG_P1P2);
        }
        let app = self.purse_app()?;
        let purse = self.purse(app)?;
        let Some(Pending::Load {
            amount_fen,
            terminal_id,
            random,
            balance_before_fen,
            online_counter,
        }) = pending
        else {
            return Err(Sw::CONDITIONS_NOT_SATISFIED);
        };
        let (date, time, mac2) = split_date_time_mac(&apdu.data)?;
        Self::check_le(apdu, 4)?;
        let alg = purse.algorithm;
        let seslk = load_session_key(alg, &purse.keys.dlk, random, online_counter);
        if !mac_eq(
            &load_mac2(&seslk, amount_fen, terminal_id.as_bytes(), &date, &time),
            &mac2,
        ) {
            return Err(self.mac_failed(app));
        }
        let balance_after = balance_before_fen + amount_fen;
        let tac = load_tac(
            &tac_key(alg, &purse.keys.dtk),
            balance_after,
            online_counter,
            amount_fen,
            terminal_id.as_bytes(),
            &date,
            &time,
        );
        let record = TransactionRecord {
            counter: online_counter,
            overdraft_limit: [0; 3],
            amount_fen,
            tx_type: TransactionType::Load,
            terminal_id,
            date,
            time,
        };
        self.commit(app, balance_after, TransactionType::Load, &record, None)?;
        Ok(ResponseApdu::ok(tac.to_vec()))
    }

    fn debit_for_purchase(&mut self, apdu: &CommandApdu, pending: Option<Pending>) -> Reply {
        if apdu.p1 != 0x01 || apdu.p2 != 0x00 {
            return Err(Sw::WRONG_P1P2);
        }
        let app = self.purse_app()?;
        let purse = self.purse(app)?;
        let Some(Pending::Purchase {
            tx_type,
            amount_fen,
            terminal_id,
            random,
            balance_before_fen,
            offline_counter,
            cache,
        }) = pending
        else {
            return Err(Sw::CONDITIONS_NOT_SATISFIED);
        };
        let [s0, s1, s2, s3, rest @ ..] = apdu.data.as_slice() else {
            return Err(Sw::WRONG_LENGTH);
        };
        let serial = u32::from_be_bytes([*s0, *s1, *s2, *s3]);
        let (date, time, mac1) = split_date_time_mac(rest)?;
        Self::check_le(apdu, 8)?;
        let alg = purse.algorithm;
        let sespk = purchase_session_key(alg, &purse.keys.dpk, random, offline_counter, serial);
        let expected = purchase_mac1(
            &sespk,
            amount_fen,
            tx_type,
            terminal_id.as_bytes(),
            &date,
            &time,
        );
        if !mac_eq(&expected, &mac1) {
            return Err(self.mac_failed(app));
        }
        let balance_after = balance_before_fen
            .checked_sub(amount_fen)
            .ok_or(Sw::BALANCE_INSUFFICIENT)?;
        let tac = purchase_tac(
            &tac_key(alg, &purse.keys.dtk),
            amount_fen,
            tx_type,
            terminal_id.as_bytes(),
            serial,
            &date,
            &time,
        );
        let mac2 = purchase_mac2(&sespk, amount_fen);
        let record = TransactionRecord {
            counter: offline_counter,
            overdraft_limit: [0; 3],
            amount_fen,
            tx_type,
            terminal_id,
            date,
            time,
        };
        self.commit(app, balance_after, tx_type, &record, cache)?;
        let mut out = tac.to_vec();
        out.extend_from_slice(&mac2);
        Ok(ResponseApdu::ok(out))
    }

    /// Applies a successful CREDIT or DEBIT: balance, counter, EF18 record and
    /// (complex purchase) the transit record, in one assignment.
    fn commit(
        &mut self,
        app: usize,
        balance_after_fen: u32,
        tx_type: TransactionType,
        record: &TransactionRecord,
        transit_record: Option<Vec<u8>>,
    ) -> Result<(), Sw> {
        let mut next = self
            .image
            .apps
            .get(app)
            .ok_or(Sw::CONDITIONS_NOT_SATISFIED)?
            .clone();
        let purse = next.purse.as_mut().ok_or(Sw::CONDITIONS_NOT_SATISFIED)?;
        purse.balance_fen = balance_after_fen;
        purse.mac_failures = 0;
        let counter = if tx_type == TransactionType::Load {
            &mut purse.online_counter
        } else {
            &mut purse.offline_counter
        };
        *counter = counter.checked_add(1).ok_or(Sw::CONDITIONS_NOT_SATISFIED)?;
        push_cyclic(&mut next, SFI_EF18, record.to_bytes().to_vec())?;
        if let Some(transit) = transit_record {
            push_cyclic(&mut next, SFI_TRANSIT, transit)?;
        }
        // The commit point: one assignment replaces the application state.
        self.image.apps[app] = next;
        Ok(())
    }

    fn get_balance(&mut self, apdu: &CommandApdu) -> Reply {
        if apdu.p1 != 0x00 || apdu.p2 != 0x02 {
            return Err(Sw::WRONG_P1P2);
        }
        if !apdu.data.is_empty() || apdu.le.is_none() {
            return Err(Sw::WRONG_LENGTH);
        }
        let app = self.purse_app()?;
        let purse = self.purse(app)?;
        Self::check_le(apdu, 4)?;
        Ok(ResponseApdu::ok(purse.balance_fen.to_be_bytes().to_vec()))
    }

    /// UPDATE CAPP DATA CACHE `80 DC 01 C8`: stages the transit record of a
    /// complex purchase; DEBIT commits it.
    fn update_capp_data_cache(&mut self, apdu: &CommandApdu, pending: Option<Pending>) -> Reply {
        if apdu.p1 != 0x01 || apdu.p2 != SFI_TRANSIT << 3 {
            return Err(Sw::WRONG_P1P2);
        }
        let app = self.purse_app()?;
        self.purse(app)?;
        let Some(Pending::Purchase {
            tx_type: tx_type @ TransactionType::ComplexPurchase,
            cache: None,
            amount_fen,
            terminal_id,
            random,
            balance_before_fen,
            offline_counter,
        }) = pending
        else {
            return Err(Sw::CONDITIONS_NOT_SATISFIED);
        };
        if apdu.data.len() != TRANSIT_RECORD_LEN {
            return Err(Sw::WRONG_LENGTH);
        }
        self.session.pending = Some(Pending::Purchase {
            tx_type,
            amount_fen,
            terminal_id,
            random,
            balance_before_fen,
            offline_counter,
            cache: Some(apdu.data.clone()),
        });
        Ok(ResponseApdu::ok(Vec::new()))
    }

    /// The purse algorithm, for callers that need it without an APDU.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.image.purse().map(|p| p.algorithm)
    }
}

/// `date(4)`, `time(3)`, `MAC(4)` as CREDIT and DEBIT carry them.
type DateTimeMac = ([u8; 4], [u8; 3], [u8; 4]);

/// Splits `date(4) || time(3) || mac(4)`.
fn split_date_time_mac(data: &[u8]) -> Result<DateTimeMac, Sw> {
    match data {
        [d0, d1, d2, d3, t0, t1, t2, m0, m1, m2, m3] => {
            Ok(([*d0, *d1, *d2, *d3], [*t0, *t1, *t2], [*m0, *m1, *m2, *m3]))
        }
        _ => Err(Sw::WRONG_LENGTH),
    }
}

/// MAC comparison without an early exit.
fn mac_eq(a: &[u8; 4], b: &[u8; 4]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes a new record 1 into a cyclic file of `df`, dropping the oldest when full.
fn push_cyclic(df: &mut Df, sfi: u8, record: Vec<u8>) -> Result<(), Sw> {
    let idx = df.ef_by_sfi(sfi).ok_or(Sw::FILE_NOT_FOUND)?;
    let ef = df.files.get_mut(idx).ok_or(Sw::FILE_NOT_FOUND)?;
    let EfBody::Records {
        record_len,
        capacity,
        cyclic: true,
        records,
    } = &mut ef.body
    else {
        return Err(Sw::INCOMPATIBLE_FILE);
    };
    debug_assert!(sfi != SFI_EF18 || *record_len == EF18_RECORD_LEN);
    if record.len() != *record_len {
        return Err(Sw::WRONG_LENGTH);
    }
    records.insert(0, HexBytes(record));
    records.truncate(*capacity);
    Ok(())
}
