//! `citycard tap` and `citycard load`: the terminal flows of `chip::terminal` run in process
//! against card and PSAM image files, printing the upload record or the load result as JSON.

use std::path::PathBuf;

use anyhow::{Context, bail};
use chip::host::{HostError, LoadInit, UploadRecord};
use chip::records::TransitFlag;
use chip::terminal::{self, FlowError, GateTap, LoadRequest, PurchaseRequest};
use chip::{BcdDate, BcdTime};
use keys::master::{KeyRef, LoadFields, MasterKeyStore, MasterPurpose};
use serde_json::json;

use crate::card::{parse_terminal_id, read_card, read_psam, save_card, save_psam};
use crate::config::Config;
use crate::keys_cmd::{self, StoreArgs};

/// `--complex` values: which metro gate.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateArg {
    /// Entry gate: a complex purchase of 0 fen that writes the entry record.
    Entry,
    /// Exit gate: reads the entry record and charges --amount with an exit record.
    Exit,
}

#[derive(clap::Args)]
#[command(
    after_help = "Prints the record the terminal uploads (epurse.md §5) as JSON: card \
number, algorithm id, key version, offline counter, amount, transaction type, terminal id, \
terminal serial, date, time, balance before and TAC, plus the balance after. Both image files \
are saved afterwards, whether the purchase completed or not (the chip did what it did)."
)]
pub struct TapArgs {
    /// The card image (updated in place).
    #[arg(long)]
    card: PathBuf,
    /// The PSAM image (updated in place: its terminal serial advances).
    #[arg(long)]
    psam: PathBuf,
    /// Amount in fen (1 yuan = 100 fen); 0 for an entry gate [default: 0 with --complex entry].
    #[arg(long)]
    amount: Option<u32>,
    /// A metro gate tap (复合消费, complex purchase, type 09) instead of a plain purchase.
    #[arg(long, value_enum)]
    complex: Option<GateArg>,
    /// Metro line of the gate (with --complex).
    #[arg(long, requires = "complex")]
    line: Option<u16>,
    /// Station of the gate (with --complex).
    #[arg(long, requires = "complex")]
    station: Option<u16>,
    /// Date and time of the transaction, "YYYY-MM-DD HH:MM:SS" [default: now, China Standard
    /// Time].
    #[arg(long)]
    at: Option<String>,
}

#[derive(clap::Args)]
#[command(
    after_help = "Runs INITIALIZE FOR LOAD on the card, has the host check the card's \
MAC1 and issue MAC2 under the load master key, runs CREDIT FOR LOAD and has the host check \
the card's TAC under the TAC master key. With --test-keys the host is a throwaway master-key \
store holding the test key set; otherwise the key store of DATA_DIR/keys (or the PKCS#11 \
token) with keys transit/load/v1 and transit/tac/v1. Prints the result as JSON."
)]
pub struct LoadArgs {
    /// The card image (updated in place).
    #[arg(long)]
    card: PathBuf,
    /// Amount in fen; the balance may not exceed 100000 fen.
    #[arg(long)]
    amount: u32,
    /// Terminal id of the load terminal: 12 decimal digits.
    #[arg(long)]
    terminal_id: String,
    /// Authorize with the test key set (development only).
    #[arg(long)]
    test_keys: bool,
    /// Date and time, "YYYY-MM-DD HH:MM:SS" [default: now, China Standard Time].
    #[arg(long)]
    at: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Parses `YYYY-MM-DD HH:MM:SS`, or reads the clock (China Standard Time).
fn date_time(at: Option<&str>) -> anyhow::Result<(BcdDate, BcdTime)> {
    match at {
        None => {
            let now = platform::clock::now_in_city();
            Ok((
                crate::card::today(),
                BcdTime::new(now.hour(), now.minute(), now.second())?,
            ))
        }
        Some(text) => {
            let (d, t) = text
                .trim()
                .split_once(' ')
                .with_context(|| format!("--at {text:?} is not \"YYYY-MM-DD HH:MM:SS\""))?;
            let date = crate::card::parse_date(d)?;
            let parts: Vec<&str> = t.split(':').collect();
            let ok = parts.len() == 3
                && parts
                    .iter()
                    .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                bail!("--at {text:?} is not \"YYYY-MM-DD HH:MM:SS\"");
            }
            let n = |i: usize| parts[i].parse::<u8>().unwrap_or(u8::MAX);
            Ok((date, BcdTime::new(n(0), n(1), n(2))?))
        }
    }
}

fn hex_byte(b: u8) -> String {
    format!("{b:02X}")
}

/// The §5 upload record as JSON (byte fields as they go on the wire, in hex).
pub fn record_json(r: &UploadRecord) -> serde_json::Value {
    json!({
        "card_number": r.card_number.to_string(),
        "algorithm_id": hex_byte(r.algorithm.id()),
        "key_version": hex_byte(r.key_version),
        "offline_counter": r.offline_counter,
        "amount_fen": r.amount_fen,
        "transaction_type": hex_byte(r.tx_type.code()),
        "terminal_id": r.terminal_id.to_string(),
        "terminal_serial": r.terminal_serial,
        "date": hex::encode(r.date.to_bcd()),
        "time": hex::encode(r.time.to_bcd()),
        "balance_before_fen": r.balance_before_fen,
        "tac": hex::encode_upper(r.tac),
    })
}

pub fn tap(args: TapArgs) -> anyhow::Result<std::process::ExitCode> {
    let (date, time) = date_time(args.at.as_deref())?;
    let amount_fen = match (args.complex, args.amount) {
        (Some(GateArg::Entry), None | Some(0)) => 0,
        (Some(GateArg::Entry), Some(a)) => {
            bail!("an entry tap is a complex purchase of 0 fen, not {a}")
        }
        (_, Some(a)) => a,
        (_, None) => bail!("--amount FEN is required (except at an entry gate)"),
    };
    let mut card = read_card(&args.card)?;
    let mut psam = read_psam(&args.psam)?;
    let request = PurchaseRequest {
        amount_fen,
        date,
        time,
    };
    let not_denied = |_: &chip::CardNumber| false;
    let outcome = match args.complex {
        None => terminal::purchase(&mut card, &mut psam, &request, &not_denied),
        Some(gate) => {
            let (Some(line), Some(station)) = (args.line, args.station) else {
                bail!("--complex needs --line and --station");
            };
            match gate {
                GateArg::Entry => terminal::complex_purchase(
                    &mut card,
                    &mut psam,
                    &request,
                    &GateTap {
                        flag: TransitFlag::Entry,
                        line,
                        station,
                    },
                    &not_denied,
                ),
                GateArg::Exit => terminal::gate_exit(
                    &mut card,
                    &mut psam,
                    date,
                    time,
                    (line, station),
                    &|_| amount_fen,
                    &not_denied,
                ),
            }
        }
    };
    // The chips did what they did: keep both images, whatever the outcome.
    save_card(&args.card, &card)?;
    save_psam(&args.psam, &psam)?;
    match outcome {
        Ok(o) => {
            let mut out = record_json(&o.record);
            out["balance_after_fen"] = o.balance_after_fen.into();
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(FlowError::Mac2Invalid { record }) => {
            // The card debited; the record still goes up and its TAC decides.
            let mut out = record_json(&record);
            out["mac2_valid"] = false.into();
            println!("{}", serde_json::to_string_pretty(&out)?);
            bail!("the card's MAC2 did not verify in the PSAM; record flagged for review")
        }
        Err(e) => Err(e).context("purchase refused"),
    }
}

fn load_fields(init: &LoadInit) -> LoadFields {
    LoadFields {
        balance_before_fen: init.balance_before_fen,
        online_counter: init.online_counter,
        random: init.random,
        amount_fen: init.amount_fen,
        terminal_id: *init.terminal_id.as_bytes(),
        date: init.date.to_bcd(),
        time: init.time.to_bcd(),
    }
}

pub fn load(args: LoadArgs, cfg: &Config) -> anyhow::Result<std::process::ExitCode> {
    let (date, time) = date_time(args.at.as_deref())?;
    let terminal_id = parse_terminal_id(&args.terminal_id)?;
    // Held for the whole load: a --test-keys store lives in this temporary directory.
    let (_scratch, store) = if args.test_keys {
        if cfg.production {
            bail!("--test-keys is refused with --production");
        }
        let dir = tempfile::tempdir()?;
        let store = keys::master::FileMasterKeyStore::create(
            &dir.path().join("master-keys.json"),
            b"throwaway store for --test-keys",
        )?;
        store.load_test_key_set(keys::master::APP_TRANSIT)?;
        (Some(dir), Box::new(store) as Box<dyn MasterKeyStore>)
    } else {
        (None, keys_cmd::open_store(&args.store, cfg)?)
    };
    let load_key = KeyRef::transit(MasterPurpose::Load, 1);
    let tac_key = KeyRef::transit(MasterPurpose::Tac, 1);

    let mut card = read_card(&args.card)?;
    let request = LoadRequest {
        amount_fen: args.amount,
        terminal_id,
        date,
        time,
    };
    // Host errors cross the terminal flow as HostError; keep the store's own reason here.
    let mut refusal: Option<keys::master::MasterKeyError> = None;
    let outcome = terminal::load(&mut card, &request, &mut |init| {
        let div = init.card_number.div_data();
        store
            .issue_load_mac2(
                &load_key,
                init.algorithm,
                &div,
                &load_fields(init),
                &init.mac1,
            )
            .map_err(|e| {
                let mapped = match &e {
                    keys::master::MasterKeyError::CapExceeded {
                        balance_fen,
                        amount_fen,
                    } => HostError::CapExceeded {
                        balance_fen: *balance_fen,
                        amount_fen: *amount_fen,
                    },
                    _ => HostError::Mac1Invalid,
                };
                refusal = Some(e);
                mapped
            })
    });
    save_card(&args.card, &card)?;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            return Err(match refusal {
                Some(r) => anyhow::Error::new(r).context("the host refused the load"),
                None => anyhow::Error::new(e).context("load failed"),
            });
        }
    };
    let init = &outcome.init;
    let tac_ok = store.verify_load_tac(
        &tac_key,
        init.algorithm,
        &init.card_number.div_data(),
        &load_fields(init),
        &outcome.tac,
    )?;
    let out = json!({
        "card_number": init.card_number.to_string(),
        "algorithm_id": hex_byte(init.algorithm.id()),
        "key_version": hex_byte(init.key_version),
        "online_counter": init.online_counter,
        "amount_fen": init.amount_fen,
        "transaction_type": "02",
        "terminal_id": init.terminal_id.to_string(),
        "date": hex::encode(init.date.to_bcd()),
        "time": hex::encode(init.time.to_bcd()),
        "balance_before_fen": init.balance_before_fen,
        "balance_after_fen": outcome.balance_after_fen,
        "tac": hex::encode_upper(outcome.tac),
        "tac_valid": tac_ok,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    if !tac_ok {
        bail!("the card's load TAC did not verify on the host");
    }
    Ok(std::process::ExitCode::SUCCESS)
}
