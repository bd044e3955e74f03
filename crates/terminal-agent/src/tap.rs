//! A tap: the fare, the chip's purchase flow, and the record written before the tap is done.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chip::host::UploadRecord;
use chip::records::{TransitFlag, TransitRecord};
use chip::terminal::{self, FlowError, GateTap, LoadRequest, PurchaseRequest};
use chip::{
    BcdDate, BcdTime, Card, CardChannel, CardImage, CardNumber, CardType, PersonalizationRecord,
    Psam, TerminalId,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::db::NewRecord;
use crate::{Agent, AgentError};

/// The city's offset from UTC (China Standard Time).
const CITY_OFFSET_S: i64 = 8 * 3600;

/// What the terminal is asked to charge for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ride {
    /// A bus validator: the line's flat fare (concessions applied).
    Bus { line: String },
    /// A metro entry gate: a complex purchase of 0 fen writing the entry record.
    MetroEntry { station: String },
    /// A metro exit gate: the distance fare from the card's entry record (the maximum fare
    /// without one).
    MetroExit { station: String },
    /// A shop POS: the amount typed in.
    Pos { amount_fen: u32 },
}

/// One tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapRequest {
    /// The caller's id of this tap (a script line): a tap whose reference is recorded already is
    /// not taken again, so a script replayed after a crash takes every tap once.
    pub tap_ref: Option<String>,
    pub ride: Ride,
    /// Unix seconds of the terminal's clock.
    pub at_s: i64,
}

/// A tap done: its record is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapDone {
    /// The local record's sequence number.
    pub seq: i64,
    pub card_number: Option<CardNumber>,
    pub charged_fen: u32,
    pub balance_after_fen: Option<u32>,
    /// The tap's reference was recorded before: nothing was done now.
    pub already: bool,
}

#[derive(Debug, Error)]
pub enum TapError {
    #[error("the offline queue is full ({max} records wait for upload): the tap is refused")]
    QueueFull { max: u64 },
    #[error("card: {0}")]
    Flow(#[from] FlowError),
    #[error("fare: {0}")]
    Fare(#[from] fares::FareError),
    #[error("unknown emulated card {0}")]
    UnknownCard(CardNumber),
    #[error("time {0} is outside the terminal's calendar")]
    Time(i64),
    #[error("station {0} is not on the metro network of the fare tables")]
    UnknownStation(String),
    #[error("no e-code root keys are provisioned: e-code payments cannot be checked")]
    NoEcodeRoots,
    #[error("e-code refused: {0}")]
    Ecode(String),
    #[error("amount must be 1 to 100000 fen")]
    Amount,
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// What a tap locks: one PSAM, the parameters, the emulated cards in memory.
pub(crate) struct Inner {
    pub psam: Psam,
    pub fares: fares::FareRules,
    pub deny: Option<std::sync::Arc<issuance::DenyList>>,
    pub verifier: Option<ecode::Verifier>,
    pub cards: HashMap<CardNumber, Card>,
}

/// The upload record as the platform takes it (`POST /api/v1/terminal/uploads`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CardRecordBody {
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

impl CardRecordBody {
    fn of(r: &UploadRecord) -> Self {
        let raw = r.to_raw();
        CardRecordBody {
            card_number: raw.card_number,
            algorithm_id: raw.algorithm_id,
            key_version: raw.key_version,
            offline_counter: raw.offline_counter,
            amount_fen: raw.amount_fen,
            tx_type: raw.tx_type,
            terminal_id: raw.terminal_id,
            terminal_serial: raw.terminal_serial,
            date: raw.date,
            time: raw.time,
            balance_before_fen: raw.balance_before_fen,
            tac: raw.tac,
        }
    }
}

/// An e-code payment as the platform takes it (`POST /api/v1/terminal/ecode-payments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EcodeRecordBody {
    pub text: String,
    pub amount_fen: i64,
}

/// City date and time of a Unix second.
pub(crate) fn city_time(at_s: i64) -> Option<(BcdDate, BcdTime)> {
    let t = time::OffsetDateTime::from_unix_timestamp(at_s + CITY_OFFSET_S).ok()?;
    Some((
        BcdDate::new(t.year().try_into().ok()?, t.month() as u8, t.day()).ok()?,
        BcdTime::new(t.hour(), t.minute(), t.second()).ok()?,
    ))
}

/// Unix seconds of a city date and time.
fn unix_of(d: BcdDate, t: BcdTime) -> Option<i64> {
    let date = time::Date::from_calendar_date(
        i32::from(d.year()),
        time::Month::try_from(d.month()).ok()?,
        d.day(),
    )
    .ok()?;
    let pdt = date.with_hms(t.hour(), t.minute(), t.second()).ok()?;
    Some(pdt.assume_utc().unix_timestamp() - CITY_OFFSET_S)
}

/// A bus ride is written on the card as a transit record (a complex purchase) with the exit flag
/// — a flat fare ends the ride at boarding —, line `BUS_LINE_FLAG` | the line's 15-bit tag and
/// station = the discounted transfers of the chain so far. The next terminal, another bus or
/// this one, reads it to price a transfer; metro lines are numbered from 1 and never carry the
/// flag.
const BUS_LINE_FLAG: u16 = 0x8000;

fn bus_line_code(line: &str) -> u16 {
    BUS_LINE_FLAG | (fares::line_tag(line) & 0x7FFF) as u16
}

/// The previous ride a card's transit record tells, for a ride now on bus `line`: a bus ride or
/// a metro exit (`None` for a metro entry, which is no finished ride).
pub(crate) fn previous_on_card(r: &TransitRecord, line: &str) -> Option<fares::Previous> {
    if r.flag != TransitFlag::Exit {
        return None;
    }
    let ended_at_s = u32::try_from(unix_of(r.date, r.time)?).ok()?;
    if r.line & BUS_LINE_FLAG != 0 {
        // The same line again is no transfer: the card's 15-bit tag is matched here and the
        // fare engine gets the line's own tag.
        let line_tag = if r.line == bus_line_code(line) {
            fares::line_tag(line)
        } else {
            u32::from(r.line)
        };
        Some(fares::Previous {
            ended_at_s,
            metro: false,
            line_tag,
            transfers: u8::try_from(r.station).unwrap_or(u8::MAX),
        })
    } else {
        Some(fares::Previous {
            ended_at_s,
            metro: true,
            line_tag: fares::line_tag("metro"),
            transfers: 0,
        })
    }
}

/// `(line, station)` numbers of a station code: positions in the fare tables, from 1.
fn station_numbers(rules: &fares::FareRules, code: &str) -> Option<(u16, u16)> {
    rules.metro.lines.iter().enumerate().find_map(|(l, line)| {
        line.stations
            .iter()
            .position(|(s, _)| s == code)
            .map(|s| ((l + 1) as u16, (s + 1) as u16))
    })
}

fn station_code(rules: &fares::FareRules, line: u16, station: u16) -> Option<String> {
    let l = rules.metro.lines.get(usize::from(line).checked_sub(1)?)?;
    l.stations
        .get(usize::from(station).checked_sub(1)?)
        .map(|(s, _)| s.clone())
}

/// Emulated cards of the development key set, personalized and loaded (for tests, the demo and
/// benchmarks — never production keys).
pub(crate) fn provision_cards(
    first_sequence: u32,
    count: u32,
    load_fen: u32,
) -> Result<Vec<(CardNumber, CardImage)>, AgentError> {
    let masters = crypto::MasterKeys::test_set();
    let start = BcdDate::new(2025, 1, 1).expect("a valid date");
    let bad = |e: String| AgentError::Config(format!("emulated card: {e}"));
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let seq = first_sequence
            .checked_add(i)
            .ok_or_else(|| bad("sequence overflow".into()))?;
        let number = CardNumber::from_sequence(seq).map_err(|e| bad(e.to_string()))?;
        // Every tenth card a student's, every tenth from the fifth a senior's: the concessions
        // show up in a simulated day.
        let card_type = match i % 10 {
            3 => CardType::Student,
            7 => CardType::Senior,
            _ => CardType::Ordinary,
        };
        let record = PersonalizationRecord {
            card_number: number,
            holder_name: "测试".into(),
            id_number: "41010219900101123X".into(),
            card_type,
            start_date: start,
            expiry_date: start.plus_years(10).expect("a valid date"),
            algorithm: crypto::Algorithm::Sm4,
            employee: false,
            pin: "123456".into(),
            rng_seed: u64::from(seq),
        };
        let mut card = chip::personalize(&record, &masters).map_err(|e| bad(e.to_string()))?;
        if load_fen > 0 {
            terminal::load(
                &mut card,
                &LoadRequest {
                    amount_fen: load_fen,
                    terminal_id: TerminalId([0, 0, 0, 0, 0, 1]),
                    date: start,
                    time: BcdTime::new(8, 0, 0).expect("a valid time"),
                },
                &mut |init| chip::host::issue_load_mac2(&masters, init),
            )
            .map_err(|e| bad(e.to_string()))?;
        }
        out.push((number, card.into_image()));
    }
    Ok(out)
}

/// Runs the chip flow for `ride` on `card` with `psam`: the fare from the tables and the card's
/// type (and entry record at an exit gate), then the purchase.
fn run_flow(
    card: &mut dyn CardChannel,
    psam: &mut Psam,
    rules: &fares::FareRules,
    deny: Option<&issuance::DenyList>,
    ride: &Ride,
    at_s: i64,
) -> Result<terminal::PurchaseOutcome, TapError> {
    let (date, time) = city_time(at_s).ok_or(TapError::Time(at_s))?;
    let at_u32 = u32::try_from(at_s).map_err(|_| TapError::Time(at_s))?;
    let is_denied = |n: &CardNumber| deny.is_some_and(|d| d.contains(*n));
    match ride {
        Ride::Bus { line } => {
            let info = terminal::read_card(card)?;
            // The previous ride as the card recorded it, whichever terminal took it.
            let previous =
                terminal::read_transit_record(card)?.and_then(|r| previous_on_card(&r, line));
            let q = rules.quote(
                info.public.card_type,
                &fares::Ride::Bus {
                    line: line.clone(),
                    at_s: at_u32,
                },
                previous,
            )?;
            Ok(terminal::complex_purchase(
                card,
                psam,
                &PurchaseRequest {
                    amount_fen: q.charged_fen,
                    date,
                    time,
                },
                &GateTap {
                    flag: TransitFlag::Exit,
                    line: bus_line_code(line),
                    station: u16::from(q.next.transfers),
                },
                &is_denied,
            )?)
        }
        Ride::Pos { amount_fen } => {
            if *amount_fen == 0 || *amount_fen > 100_000 {
                return Err(TapError::Amount);
            }
            Ok(terminal::purchase(
                card,
                psam,
                &PurchaseRequest {
                    amount_fen: *amount_fen,
                    date,
                    time,
                },
                &is_denied,
            )?)
        }
        Ride::MetroEntry { station } => {
            let (line, st) = station_numbers(rules, station)
                .ok_or_else(|| TapError::UnknownStation(station.clone()))?;
            Ok(terminal::complex_purchase(
                card,
                psam,
                &PurchaseRequest {
                    amount_fen: 0,
                    date,
                    time,
                },
                &GateTap {
                    flag: TransitFlag::Entry,
                    line,
                    station: st,
                },
                &is_denied,
            )?)
        }
        Ride::MetroExit { station } => {
            let exit = station_numbers(rules, station)
                .ok_or_else(|| TapError::UnknownStation(station.clone()))?;
            let info = terminal::read_card(card)?;
            let card_type = info.public.card_type;
            // The fare closure cannot fail: an unpriceable entry is charged the maximum fare.
            let fare = |entry: Option<&TransitRecord>| -> u32 {
                let entry = entry.and_then(|e| {
                    Some((
                        station_code(rules, e.line, e.station)?,
                        u32::try_from(unix_of(e.date, e.time)?).ok()?,
                    ))
                });
                rules
                    .quote(
                        card_type,
                        &fares::Ride::MetroExit {
                            entry,
                            exit: station.clone(),
                            at_s: at_u32,
                        },
                        None,
                    )
                    .map(|q| q.charged_fen)
                    .unwrap_or_else(|_| rules.metro.max_fare().unwrap_or(0))
            };
            Ok(terminal::gate_exit(
                card, psam, date, time, exit, &fare, &is_denied,
            )?)
        }
    }
}

impl Agent {
    fn check_queue(&self) -> Result<(), TapError> {
        if self.pending.load(Ordering::SeqCst) >= self.limits.queue_max {
            return Err(TapError::QueueFull {
                max: self.limits.queue_max,
            });
        }
        Ok(())
    }

    async fn already(&self, tap_ref: Option<&str>) -> Result<Option<TapDone>, TapError> {
        if let Some(r) = tap_ref
            && let Some(seq) = self.db.has_tap_ref(r).await?
        {
            return Ok(Some(TapDone {
                seq,
                card_number: None,
                charged_fen: 0,
                balance_after_fen: None,
                already: true,
            }));
        }
        Ok(None)
    }

    /// A tap of an emulated card (held in this terminal's store). The card's and the PSAM's new
    /// images are written in the same transaction as the record.
    pub async fn tap_emulated(
        &self,
        card_number: CardNumber,
        tap: &TapRequest,
    ) -> Result<TapDone, TapError> {
        let mut inner = self.inner.lock().await;
        if let Some(done) = self.already(tap.tap_ref.as_deref()).await? {
            return Ok(done);
        }
        self.check_queue()?;
        let mut card = match inner.cards.remove(&card_number) {
            Some(c) => c,
            None => Card::from_image(
                self.db
                    .emulated_card(card_number)
                    .await?
                    .ok_or(TapError::UnknownCard(card_number))?,
            ),
        };
        let Inner {
            psam, fares, deny, ..
        } = &mut *inner;
        let flow = run_flow(&mut card, psam, fares, deny.as_deref(), &tap.ride, tap.at_s);
        let record = match &flow {
            Ok(o) => Some(o.record.clone()),
            // The card debited but MAC2 did not verify: the record still goes up (its TAC
            // decides on the platform).
            Err(TapError::Flow(FlowError::Mac2Invalid { record })) => Some((**record).clone()),
            Err(_) => None,
        };
        let body = record.as_ref().map(|r| NewRecord {
            kind: "card",
            tap_ref: tap.tap_ref.as_deref(),
            body: serde_json::to_string(&CardRecordBody::of(r)).expect("plain JSON"),
            amount_fen: i64::from(r.amount_fen),
            taken_ms: tap.at_s * 1000,
        });
        let psam_image = inner.psam.image().clone();
        let written = self
            .db
            .record_tap(
                body.as_ref(),
                Some((card_number, card.image())),
                Some(&psam_image),
            )
            .await;
        match written {
            Ok(seq) => {
                inner.cards.insert(card_number, card);
                if seq.is_some() {
                    self.pending.fetch_add(1, Ordering::SeqCst);
                }
                let o = flow?;
                Ok(TapDone {
                    seq: seq.expect("a completed purchase is recorded"),
                    card_number: Some(card_number),
                    charged_fen: o.record.amount_fen,
                    balance_after_fen: Some(o.balance_after_fen),
                    already: false,
                })
            }
            Err(e) => {
                // Nothing was written: take the chip state back to what the store holds, as if
                // the card had never been tapped.
                if let Some(image) = self.db.psam().await? {
                    inner.psam = Psam::from_image(image);
                }
                Err(e.into())
            }
        }
    }

    /// A tap over a card channel (a PC/SC reader). The card's debit cannot be undone: if the
    /// record cannot be written, the error says so and the card's record must be recovered
    /// from the card (its transaction log) by an operator.
    pub async fn tap_channel(
        &self,
        card: &mut (dyn CardChannel + Send),
        tap: &TapRequest,
    ) -> Result<TapDone, TapError> {
        let mut inner = self.inner.lock().await;
        if let Some(done) = self.already(tap.tap_ref.as_deref()).await? {
            return Ok(done);
        }
        self.check_queue()?;
        let Inner {
            psam, fares, deny, ..
        } = &mut *inner;
        let o = run_flow(card, psam, fares, deny.as_deref(), &tap.ride, tap.at_s)?;
        let body = NewRecord {
            kind: "card",
            tap_ref: tap.tap_ref.as_deref(),
            body: serde_json::to_string(&CardRecordBody::of(&o.record)).expect("plain JSON"),
            amount_fen: i64::from(o.record.amount_fen),
            taken_ms: tap.at_s * 1000,
        };
        let psam_image = inner.psam.image().clone();
        let seq = self
            .db
            .record_tap(Some(&body), None, Some(&psam_image))
            .await?
            .expect("a record was given");
        self.pending.fetch_add(1, Ordering::SeqCst);
        Ok(TapDone {
            seq,
            card_number: Some(o.record.card_number),
            charged_fen: o.record.amount_fen,
            balance_after_fen: Some(o.balance_after_fen),
            already: false,
        })
    }

    /// An e-code payment: the code checked offline (`ecode::Verifier`: signature chain,
    /// freshness, replay, deny-list, offline limit), then queued for upload.
    pub async fn tap_ecode(
        &self,
        text: &str,
        amount_fen: u32,
        tap_ref: Option<&str>,
        at_s: i64,
    ) -> Result<TapDone, TapError> {
        if amount_fen == 0 || amount_fen > 100_000 {
            return Err(TapError::Amount);
        }
        let mut inner = self.inner.lock().await;
        if let Some(done) = self.already(tap_ref).await? {
            return Ok(done);
        }
        self.check_queue()?;
        let Inner { verifier, deny, .. } = &mut *inner;
        let verifier = verifier.as_mut().ok_or(TapError::NoEcodeRoots)?;
        let denied = deny.clone();
        verifier.set_deny_list(move |n| denied.as_ref().is_some_and(|d| d.contains(*n)));
        let now = u32::try_from(at_s).map_err(|_| TapError::Time(at_s))?;
        let accepted = verifier
            .verify_text(text, now, ecode::Purpose::Pay { amount_fen })
            .map_err(|r| TapError::Ecode(r.to_string()))?;
        let body = NewRecord {
            kind: "ecode",
            tap_ref,
            body: serde_json::to_string(&EcodeRecordBody {
                text: text.trim().to_string(),
                amount_fen: i64::from(amount_fen),
            })
            .expect("plain JSON"),
            amount_fen: i64::from(amount_fen),
            taken_ms: at_s * 1000,
        };
        let seq = self
            .db
            .record_tap(Some(&body), None, None)
            .await?
            .expect("a record was given");
        self.pending.fetch_add(1, Ordering::SeqCst);
        Ok(TapDone {
            seq,
            card_number: Some(accepted.card_number),
            charged_fen: amount_fen,
            balance_after_fen: None,
            already: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn city_time_round_trips() {
        // 2026-11-30 08:00:00 in the city is 00:00:00 UTC.
        let at = 1_795_996_800;
        let (d, t) = city_time(at).unwrap();
        assert_eq!((d.year(), d.month(), d.day()), (2026, 11, 30));
        assert_eq!((t.hour(), t.minute(), t.second()), (8, 0, 0));
        assert_eq!(unix_of(d, t), Some(at));
    }

    #[test]
    fn stations_map_both_ways() {
        let rules = fares::default_rules();
        assert_eq!(station_numbers(&rules, "M1-04"), Some((1, 4)));
        assert_eq!(station_code(&rules, 2, 1).as_deref(), Some("M2-01"));
        assert_eq!(station_numbers(&rules, "X"), None);
        assert_eq!(station_code(&rules, 0, 1), None);
    }
}
