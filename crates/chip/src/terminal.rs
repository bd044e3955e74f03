//! Terminal-side flows over [`CardChannel`]s: read a card, purchase, complex purchase (metro gates), load.
//!
//! Pure functions of the channels and their inputs: the date and time come
//! in as arguments, the deny list as a predicate.

use crypto::{Algorithm, TransactionType};
use thiserror::Error;

use crate::host::{HostError, LoadInit, UploadRecord};
use crate::image::AID_TRANSIT;
use crate::records::{
    EF15_LEN, EF16_LEN, HolderInfo, PublicInfo, RecordError, TRANSIT_RECORD_LEN, TransitFlag,
    TransitRecord,
};
use crate::{
    BcdDate, BcdTime, CardChannel, CardNumber, ChannelError, CommandApdu, ResponseApdu, Sw,
    TerminalId,
};

/// Why a terminal flow stopped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlowError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The card answered with bytes that are not a response of the expected shape.
    #[error("{step}: malformed response")]
    BadResponse { step: &'static str },
    /// The card refused a step with a status word this flow has no meaning for.
    #[error("{step}: card answered {sw}")]
    CardStatus { step: &'static str, sw: Sw },
    /// The PSAM refused a step.
    #[error("{step}: PSAM answered {sw}")]
    PsamStatus { step: &'static str, sw: Sw },
    #[error("card data: {0}")]
    Record(#[from] RecordError),
    #[error("card not valid before {start}")]
    CardNotYetValid { start: BcdDate },
    #[error("card expired on {expiry}")]
    CardExpired { expiry: BcdDate },
    /// The deny-list predicate matched (lost, stolen, blocked card).
    #[error("card {0} is on the deny list")]
    CardDenied(CardNumber),
    #[error("balance insufficient")]
    InsufficientBalance,
    #[error("purse locked")]
    CardLocked,
    #[error("unknown algorithm id {0:#04x}")]
    UnknownAlgorithm(u8),
    /// The card debited but its MAC2 did not verify in the PSAM. The record is
    /// still uploaded (its TAC decides), flagged for review.
    #[error("MAC2 from card invalid")]
    Mac2Invalid { record: Box<UploadRecord> },
    /// The host refused the load.
    #[error("host: {0}")]
    Host(#[from] HostError),
}

/// What a terminal learns from the free-read files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardInfo {
    pub public: PublicInfo,
    pub holder: HolderInfo,
}

/// A purchase to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchaseRequest {
    pub amount_fen: u32,
    pub date: BcdDate,
    pub time: BcdTime,
}

/// A completed purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseOutcome {
    pub card: CardInfo,
    /// The record to upload (§5).
    pub record: UploadRecord,
    pub balance_after_fen: u32,
}

/// Where a metro tap happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateTap {
    pub flag: TransitFlag,
    pub line: u16,
    pub station: u16,
}

fn exchange<C: CardChannel + ?Sized>(
    ch: &mut C,
    apdu: &CommandApdu,
    step: &'static str,
) -> Result<ResponseApdu, FlowError> {
    let bytes = ch.transmit(&apdu.to_bytes())?;
    ResponseApdu::parse(&bytes).map_err(|_| FlowError::BadResponse { step })
}

fn card_ok<C: CardChannel + ?Sized>(
    ch: &mut C,
    apdu: &CommandApdu,
    step: &'static str,
) -> Result<Vec<u8>, FlowError> {
    let r = exchange(ch, apdu, step)?;
    match r.sw {
        Sw::OK => Ok(r.data),
        Sw::BALANCE_INSUFFICIENT => Err(FlowError::InsufficientBalance),
        Sw::APPLICATION_LOCKED => Err(FlowError::CardLocked),
        sw => Err(FlowError::CardStatus { step, sw }),
    }
}

fn psam_ok<P: CardChannel + ?Sized>(
    ch: &mut P,
    apdu: &CommandApdu,
    step: &'static str,
) -> Result<Vec<u8>, FlowError> {
    let r = exchange(ch, apdu, step)?;
    if r.sw.is_ok() {
        Ok(r.data)
    } else {
        Err(FlowError::PsamStatus { step, sw: r.sw })
    }
}

fn fixed<const N: usize>(data: &[u8], step: &'static str) -> Result<[u8; N], FlowError> {
    data.try_into().map_err(|_| FlowError::BadResponse { step })
}

/// Selects the transit application and reads EF15 and EF16.
pub fn read_card<C: CardChannel + ?Sized>(card: &mut C) -> Result<CardInfo, FlowError> {
    card_ok(
        card,
        &CommandApdu::new(0x00, 0xA4, 0x04, 0x00).with_data(AID_TRANSIT),
        "select transit",
    )?;
    let ef15 = card_ok(
        card,
        &CommandApdu::new(0x00, 0xB0, 0x95, 0x00).with_le(EF15_LEN as u32),
        "read EF15",
    )?;
    let ef16 = card_ok(
        card,
        &CommandApdu::new(0x00, 0xB0, 0x96, 0x00).with_le(EF16_LEN as u32),
        "read EF16",
    )?;
    Ok(CardInfo {
        public: PublicInfo::parse(&ef15)?,
        holder: HolderInfo::parse(&ef16)?,
    })
}

/// Record 1 (newest) of the transit file SFI 19, if any; the transit
/// application must be selected (as [`read_card`] leaves it).
pub fn read_transit_record<C: CardChannel + ?Sized>(
    card: &mut C,
) -> Result<Option<TransitRecord>, FlowError> {
    let step = "read transit record";
    let apdu =
        CommandApdu::new(0x00, 0xB2, 0x01, (0x19 << 3) | 0x04).with_le(TRANSIT_RECORD_LEN as u32);
    let r = exchange(card, &apdu, step)?;
    match r.sw {
        Sw::OK => Ok(TransitRecord::parse(&r.data)?),
        Sw::RECORD_NOT_FOUND => Ok(None),
        sw => Err(FlowError::CardStatus { step, sw }),
    }
}

fn check_card(
    info: &CardInfo,
    date: BcdDate,
    is_denied: &dyn Fn(&CardNumber) -> bool,
) -> Result<(), FlowError> {
    if date < info.public.start_date {
        return Err(FlowError::CardNotYetValid {
            start: info.public.start_date,
        });
    }
    if date > info.public.expiry_date {
        return Err(FlowError::CardExpired {
            expiry: info.public.expiry_date,
        });
    }
    if is_denied(&info.public.card_number) {
        return Err(FlowError::CardDenied(info.public.card_number));
    }
    Ok(())
}

/// A purchase (消费): select, read EF15/EF16, check validity dates and the
/// deny list, INITIALIZE FOR PURCHASE, PSAM MAC1, DEBIT, PSAM MAC2 check.
pub fn purchase<C, P>(
    card: &mut C,
    psam: &mut P,
    request: &PurchaseRequest,
    is_denied: &dyn Fn(&CardNumber) -> bool,
) -> Result<PurchaseOutcome, FlowError>
where
    C: CardChannel + ?Sized,
    P: CardChannel + ?Sized,
{
    let info = read_card(card)?;
    check_card(&info, request.date, is_denied)?;
    debit(card, psam, info, request, None)
}

/// A complex purchase (复合消费) at a metro gate: like [`purchase`], with the
/// transit record staged by UPDATE CAPP DATA CACHE and type `09`. An entry is
/// a complex purchase of 0 fen.
pub fn complex_purchase<C, P>(
    card: &mut C,
    psam: &mut P,
    request: &PurchaseRequest,
    tap: &GateTap,
    is_denied: &dyn Fn(&CardNumber) -> bool,
) -> Result<PurchaseOutcome, FlowError>
where
    C: CardChannel + ?Sized,
    P: CardChannel + ?Sized,
{
    let info = read_card(card)?;
    check_card(&info, request.date, is_denied)?;
    debit(card, psam, info, request, Some(tap))
}

/// An exit gate: reads the entry record, lets `fare` price the trip from it
/// (`None` when the card has no entry), and charges it as a complex purchase
/// with an exit record.
pub fn gate_exit<C, P>(
    card: &mut C,
    psam: &mut P,
    date: BcdDate,
    time: BcdTime,
    exit: (u16, u16),
    fare: &dyn Fn(Option<&TransitRecord>) -> u32,
    is_denied: &dyn Fn(&CardNumber) -> bool,
) -> Result<PurchaseOutcome, FlowError>
where
    C: CardChannel + ?Sized,
    P: CardChannel + ?Sized,
{
    let info = read_card(card)?;
    check_card(&info, date, is_denied)?;
    let entry = read_transit_record(card)?.filter(|r| r.flag == TransitFlag::Entry);
    let request = PurchaseRequest {
        amount_fen: fare(entry.as_ref()),
        date,
        time,
    };
    let tap = GateTap {
        flag: TransitFlag::Exit,
        line: exit.0,
        station: exit.1,
    };
    debit(card, psam, info, &request, Some(&tap))
}

fn debit<C, P>(
    card: &mut C,
    psam: &mut P,
    info: CardInfo,
    request: &PurchaseRequest,
    tap: Option<&GateTap>,
) -> Result<PurchaseOutcome, FlowError>
where
    C: CardChannel + ?Sized,
    P: CardChannel + ?Sized,
{
    let tid = psam_ok(
        psam,
        &CommandApdu::new(0x00, 0xB0, 0x96, 0x00).with_le(6),
        "PSAM terminal id",
    )?;
    let terminal_id = TerminalId(fixed(&tid, "PSAM terminal id")?);
    let (p1, tx_type) = match tap {
        None => (0x01, TransactionType::Purchase),
        Some(_) => (0x03, TransactionType::ComplexPurchase),
    };

    let mut init_data = vec![0x01];
    init_data.extend_from_slice(&request.amount_fen.to_be_bytes());
    init_data.extend_from_slice(terminal_id.as_bytes());
    let init = card_ok(
        card,
        &CommandApdu::new(0x80, 0x50, p1, 0x02)
            .with_data(init_data)
            .with_le(15),
        "initialize for purchase",
    )?;
    let init: [u8; 15] = fixed(&init, "initialize for purchase")?;
    let balance_before_fen = u32::from_be_bytes([init[0], init[1], init[2], init[3]]);
    let offline_counter = u16::from_be_bytes([init[4], init[5]]);
    let key_version = init[9];
    let algorithm =
        Algorithm::from_id(init[10]).map_err(|_| FlowError::UnknownAlgorithm(init[10]))?;
    let random = [init[11], init[12], init[13], init[14]];

    let (date, time) = (request.date.to_bcd(), request.time.to_bcd());
    let mut mac1_data = Vec::with_capacity(36);
    mac1_data.extend_from_slice(&random);
    mac1_data.extend_from_slice(&offline_counter.to_be_bytes());
    mac1_data.extend_from_slice(&request.amount_fen.to_be_bytes());
    mac1_data.push(tx_type.code());
    mac1_data.extend_from_slice(&date);
    mac1_data.extend_from_slice(&time);
    mac1_data.extend_from_slice(&[key_version, algorithm.id()]);
    mac1_data.extend_from_slice(&info.public.card_number.to_bcd());
    mac1_data.extend_from_slice(&info.public.issuer_id);
    let mac1 = psam_ok(
        psam,
        &CommandApdu::new(0x80, 0x70, 0x00, 0x00)
            .with_data(mac1_data)
            .with_le(8),
        "PSAM MAC1",
    )?;
    let mac1: [u8; 8] = fixed(&mac1, "PSAM MAC1")?;
    let terminal_serial = u32::from_be_bytes([mac1[0], mac1[1], mac1[2], mac1[3]]);

    if let Some(tap) = tap {
        let record = TransitRecord {
            flag: tap.flag,
            line: tap.line,
            station: tap.station,
            terminal_id,
            date: request.date,
            time: request.time,
            amount_fen: request.amount_fen,
        };
        card_ok(
            card,
            &CommandApdu::new(0x80, 0xDC, 0x01, 0x19 << 3).with_data(record.to_bytes().to_vec()),
            "update capp data cache",
        )?;
    }

    let mut debit_data = Vec::with_capacity(15);
    debit_data.extend_from_slice(&mac1[..4]);
    debit_data.extend_from_slice(&date);
    debit_data.extend_from_slice(&time);
    debit_data.extend_from_slice(&mac1[4..]);
    let debit = card_ok(
        card,
        &CommandApdu::new(0x80, 0x54, 0x01, 0x00)
            .with_data(debit_data)
            .with_le(8),
        "debit for purchase",
    )?;
    let debit: [u8; 8] = fixed(&debit, "debit for purchase")?;

    // The card refuses an amount above its balance (9401); a card that says
    // otherwise is not speaking this profile.
    let balance_after_fen =
        balance_before_fen
            .checked_sub(request.amount_fen)
            .ok_or(FlowError::BadResponse {
                step: "debit for purchase",
            })?;
    let record = UploadRecord {
        card_number: info.public.card_number,
        algorithm,
        key_version,
        offline_counter,
        amount_fen: request.amount_fen,
        tx_type,
        terminal_id,
        terminal_serial,
        date: request.date,
        time: request.time,
        balance_before_fen,
        tac: [debit[0], debit[1], debit[2], debit[3]],
    };
    let mac2_check = exchange(
        psam,
        &CommandApdu::new(0x80, 0x72, 0x00, 0x00).with_data(debit[4..].to_vec()),
        "PSAM MAC2",
    )?;
    match mac2_check.sw {
        Sw::OK => {}
        Sw::MAC_INVALID => {
            return Err(FlowError::Mac2Invalid {
                record: Box::new(record),
            });
        }
        sw => {
            return Err(FlowError::PsamStatus {
                step: "PSAM MAC2",
                sw,
            });
        }
    }
    Ok(PurchaseOutcome {
        card: info,
        balance_after_fen,
        record,
    })
}

/// A load to make at a load terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadRequest {
    pub amount_fen: u32,
    pub terminal_id: TerminalId,
    pub date: BcdDate,
    pub time: BcdTime,
}

/// A completed load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOutcome {
    pub init: LoadInit,
    pub tac: [u8; 4],
    pub balance_after_fen: u32,
}

/// A load (圈存): select, read EF15, INITIALIZE FOR LOAD, ask the host for
/// MAC2 through `authorize` (which checks MAC1), CREDIT FOR LOAD. The caller
/// sends the TAC to the host, which checks it with
/// [`crate::host::verify_load_tac`].
pub fn load<C: CardChannel + ?Sized>(
    card: &mut C,
    request: &LoadRequest,
    authorize: &mut dyn FnMut(&LoadInit) -> Result<[u8; 4], HostError>,
) -> Result<LoadOutcome, FlowError> {
    let info = read_card(card)?;
    let mut data = vec![0x01];
    data.extend_from_slice(&request.amount_fen.to_be_bytes());
    data.extend_from_slice(request.terminal_id.as_bytes());
    let r = card_ok(
        card,
        &CommandApdu::new(0x80, 0x50, 0x00, 0x02)
            .with_data(data)
            .with_le(16),
        "initialize for load",
    )?;
    let r: [u8; 16] = fixed(&r, "initialize for load")?;
    let init = LoadInit {
        card_number: info.public.card_number,
        algorithm: Algorithm::from_id(r[7]).map_err(|_| FlowError::UnknownAlgorithm(r[7]))?,
        key_version: r[6],
        balance_before_fen: u32::from_be_bytes([r[0], r[1], r[2], r[3]]),
        online_counter: u16::from_be_bytes([r[4], r[5]]),
        random: [r[8], r[9], r[10], r[11]],
        mac1: [r[12], r[13], r[14], r[15]],
        amount_fen: request.amount_fen,
        terminal_id: request.terminal_id,
        date: request.date,
        time: request.time,
    };
    let mac2 = authorize(&init)?;
    let mut data = request.date.to_bcd().to_vec();
    data.extend_from_slice(&request.time.to_bcd());
    data.extend_from_slice(&mac2);
    let tac = card_ok(
        card,
        &CommandApdu::new(0x80, 0x52, 0x00, 0x00)
            .with_data(data)
            .with_le(4),
        "credit for load",
    )?;
    let tac: [u8; 4] = fixed(&tac, "credit for load")?;
    let balance_after_fen =
        init.balance_before_fen
            .checked_add(init.amount_fen)
            .ok_or(FlowError::BadResponse {
                step: "credit for load",
            })?;
    Ok(LoadOutcome {
        init,
        tac,
        balance_after_fen,
    })
}
