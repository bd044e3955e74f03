//! `citycard card …` and `citycard psam …`: personalize card and PSAM images with the test key
//! set, drive them by APDUs on standard input, and put a card in the vpcd reader.
//!
//! Images are JSON files that hold the chip's keys (a card its diversified keys, a PSAM the
//! purchase master key): they are written owner-only, atomically (temporary file in the same
//! directory, fsync, rename), and never printed.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use chip::{
    APDU_LEN_MAX, BcdDate, Card, CardImage, CardNumber, CardType, PersonalizationRecord, Psam,
    PsamImage, TerminalId, space_report,
};
use crypto::{Algorithm, MasterKeys};
use pcsc_link::vpcd::{self, VirtualCard, VpcdConfig};

/// The `--alg` values: the two algorithm profiles of `epurse.md` §3.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlgArg {
    /// 2-key 3DES, algorithm id 00.
    #[value(name = "3des")]
    Tdes,
    /// SM4, algorithm id 04.
    Sm4,
}

impl From<AlgArg> for Algorithm {
    fn from(a: AlgArg) -> Algorithm {
        match a {
            AlgArg::Tdes => Algorithm::Tdes,
            AlgArg::Sm4 => Algorithm::Sm4,
        }
    }
}

/// The `--type` values: EF15 card types.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CardTypeArg {
    Ordinary,
    Student,
    Senior,
    Disabled,
    Employee,
    Temporary,
}

impl From<CardTypeArg> for CardType {
    fn from(t: CardTypeArg) -> CardType {
        match t {
            CardTypeArg::Ordinary => CardType::Ordinary,
            CardTypeArg::Student => CardType::Student,
            CardTypeArg::Senior => CardType::Senior,
            CardTypeArg::Disabled => CardType::Disabled,
            CardTypeArg::Employee => CardType::Employee,
            CardTypeArg::Temporary => CardType::Temporary,
        }
    }
}

const APDU_HELP: &str = "Protocol: one command APDU per line on standard input, as hex \
(spaces allowed, upper or lower case). Each response (data followed by SW1 SW2) is written as \
uppercase hex on its own line of standard output, flushed at once, so a script can converse \
line by line. Blank lines and lines starting with # are skipped and get no answer.\n\n\
A line that is not an even number of hex digits, or is longer than the longest APDU, never \
reaches the chip: an error naming the line goes to standard error, and the answer line is \
6700 (what the chip answers for bytes that are not an APDU), so every command line still \
gets exactly one answer line. The exit status is then 1 at the end of input (0 when every \
line was hex).\n\n\
The image file is saved after every command that changed it (temporary file and rename, \
never half-written). Each invocation is a power-up: the selected file, a verified PIN and a \
pending INITIALIZE do not carry over to the next one (as after a reset), the balance, \
counters, records and random-number state do.";

#[derive(clap::Subcommand)]
pub enum CardCommand {
    /// Personalize a card image (development: keys diversified from the test key set).
    #[command(
        after_help = "Example:\n  citycard card new --test-keys --card-no 4101000000000018 --alg sm4 \
--type ordinary --holder-name 张三 --id-number 41010219900101123X --out card.json --report"
    )]
    New {
        /// Diversify the card keys from the test key set of epurse.md §4 (development only;
        /// production cards are personalized from HSM-wrapped keys).
        #[arg(long)]
        test_keys: bool,
        /// The 16-digit card number: 410100, 9-digit sequence, Luhn check digit.
        #[arg(long)]
        card_no: String,
        /// Algorithm profile of the purse.
        #[arg(long, value_enum)]
        alg: AlgArg,
        /// Card type (EF15).
        #[arg(long = "type", value_enum, default_value = "ordinary")]
        card_type: CardTypeArg,
        /// Holder name (at most 20 GBK bytes).
        #[arg(long)]
        holder_name: String,
        /// Resident ID number (at most 32 ASCII characters).
        #[arg(long)]
        id_number: String,
        /// Start date YYYY-MM-DD [default: today, China Standard Time]; expiry is 10 years on.
        #[arg(long)]
        start_date: Option<String>,
        /// Card PIN, 4 to 12 digits.
        #[arg(long, default_value = "123456")]
        pin: String,
        /// Holder is an employee (EF16 employee flag).
        #[arg(long)]
        employee: bool,
        /// Where to write the card image (JSON; holds the card keys).
        #[arg(long)]
        out: PathBuf,
        /// Overwrite --out if it exists.
        #[arg(long)]
        force: bool,
        /// Print the bytes each application uses on the 80 KiB chip.
        #[arg(long)]
        report: bool,
    },
    /// Enable or disable a function on a card image through the platform, like a kiosk:
    /// SELECT the application, GET CHALLENGE, ask the platform for the line-protected script
    /// (POST /api/v1/cards/{number}/functions/{function}/script), send it, and report the
    /// card's status word (…/confirm).
    Script(crate::apps_cmd::ScriptArgs),
    /// Drive a card image by command APDUs on standard input (responses on standard output).
    #[command(after_help = APDU_HELP)]
    Apdu {
        /// The card image, updated in place.
        #[arg(long)]
        image: PathBuf,
    },
    /// Insert the card into pcscd's virtual reader (vsmartcard-vpcd) until stopped (Ctrl-C)
    /// or until pcscd closes the link; the image is saved after every change.
    Vpcd {
        /// The card image, updated in place.
        #[arg(long)]
        image: PathBuf,
        /// Address of the vpcd driver (pcscd's side).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port of the vpcd driver (Debian /etc/reader.conf.d/vpcd).
        #[arg(long, default_value_t = vpcd::VPCD_PORT)]
        port: u16,
    },
}

#[derive(clap::Subcommand)]
pub enum PsamCommand {
    /// Create a PSAM image holding the purchase master key (development: the test key set).
    New {
        /// Use the purchase master key of the test key set (development only).
        #[arg(long)]
        test_keys: bool,
        /// Terminal id (PSAM number): 12 decimal digits, stored as 6 BCD bytes.
        #[arg(long)]
        terminal_id: String,
        /// Where to write the PSAM image (JSON; holds the purchase master key).
        #[arg(long)]
        out: PathBuf,
        /// Overwrite --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Drive a PSAM image by command APDUs on standard input (responses on standard output).
    #[command(after_help = APDU_HELP)]
    Apdu {
        /// The PSAM image, updated in place.
        #[arg(long)]
        image: PathBuf,
    },
}

/// Writes `text` to `path` atomically and owner-only: a temporary file beside it, fsync,
/// rename. A crash leaves the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // tempfile creates the file with mode 0600 on Unix.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn refuse_overwrite(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", path.display());
    }
    Ok(())
}

/// Reads a card image file.
pub fn read_card(path: &Path) -> anyhow::Result<Card> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let image = CardImage::from_json(&text)
        .with_context(|| format!("{} is not a card image", path.display()))?;
    Ok(Card::from_image(image))
}

/// Saves a card image file.
pub fn save_card(path: &Path, card: &Card) -> anyhow::Result<()> {
    write_atomic(path, &card.image().to_json())
}

/// Reads a PSAM image file.
pub fn read_psam(path: &Path) -> anyhow::Result<Psam> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let image: PsamImage = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a PSAM image", path.display()))?;
    Ok(Psam::from_image(image))
}

/// Saves a PSAM image file.
pub fn save_psam(path: &Path, psam: &Psam) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(psam.image()).context("serializing the PSAM image")?;
    write_atomic(path, &text)
}

/// Today's date in China Standard Time.
pub fn today() -> BcdDate {
    let now = platform::clock::now_in_city();
    BcdDate::new(now.year() as u16, u8::from(now.month()), now.day())
        .expect("the clock gives a valid date")
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> anyhow::Result<BcdDate> {
    let parts: Vec<&str> = text.split('-').collect();
    let ok = parts.len() == 3
        && [4, 2, 2]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        bail!("date {text:?} is not YYYY-MM-DD");
    }
    Ok(BcdDate::parse(&parts.concat())?)
}

/// Parses a terminal id: 12 decimal digits (6 BCD bytes).
pub fn parse_terminal_id(text: &str) -> anyhow::Result<TerminalId> {
    if text.len() != 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        bail!("terminal id must be 12 decimal digits (6 BCD bytes), got {text:?}");
    }
    Ok(TerminalId::parse(text)?)
}

fn require_test_keys(test_keys: bool, what: &str) -> anyhow::Result<()> {
    if !test_keys {
        bail!(
            "{what} needs --test-keys: this tool personalizes development images from the test \
             key set only (production keys stay in the HSM and reach cards wrapped under a \
             transport key)"
        );
    }
    Ok(())
}

pub async fn run_card(command: CardCommand) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match command {
        CardCommand::New {
            test_keys,
            card_no,
            alg,
            card_type,
            holder_name,
            id_number,
            start_date,
            pin,
            employee,
            out,
            force,
            report,
        } => {
            require_test_keys(test_keys, "card new")?;
            let card_number = CardNumber::parse(&card_no)
                .with_context(|| format!("card number {card_no:?} refused"))?;
            refuse_overwrite(&out, force)?;
            let start = match start_date {
                Some(s) => parse_date(&s)?,
                None => today(),
            };
            let mut seed = [0u8; 8];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("system random source: {e}"))?;
            let record = PersonalizationRecord {
                card_number,
                holder_name,
                id_number,
                card_type: card_type.into(),
                start_date: start,
                expiry_date: start.plus_years(10)?,
                algorithm: alg.into(),
                employee,
                pin,
                rng_seed: u64::from_be_bytes(seed),
            };
            // Test maintenance keys for the applications scripts update (docs/app-scripts.md).
            let maintenance = crypto::test_maintenance_master();
            let card = chip::personalize_with_maintenance(
                &record,
                &MasterKeys::test_set(),
                &[
                    chip::MaintenanceMaster {
                        aid: chip::image::AID_CITY,
                        master: &maintenance,
                    },
                    chip::MaintenanceMaster {
                        aid: chip::image::AID_HEALTH,
                        master: &maintenance,
                    },
                    chip::MaintenanceMaster {
                        aid: chip::image::AID_TRANSIT,
                        master: &maintenance,
                    },
                ],
            )?;
            save_card(&out, &card)?;
            let space = space_report(card.image());
            println!(
                "card {card_number} ({}, test keys) written to {}; {} of {} chip bytes used",
                match alg {
                    AlgArg::Tdes => "3DES",
                    AlgArg::Sm4 => "SM4",
                },
                out.display(),
                space.used(),
                space.chip_bytes
            );
            if report {
                println!("{space}");
            }
            Ok(ExitCode::SUCCESS)
        }
        CardCommand::Script(a) => crate::apps_cmd::script(a).await,
        CardCommand::Apdu { image } => {
            let mut card = read_card(&image)?;
            apdu_session(
                &mut |cmd| {
                    let before = card.image().clone();
                    let response = card.process(cmd);
                    if card.image() != &before {
                        save_card(&image, &card)?;
                    }
                    Ok(response)
                },
                std::io::stdin().lock(),
                std::io::stdout().lock(),
            )
        }
        CardCommand::Vpcd { image, host, port } => {
            let addr = format!("{host}:{port}");
            let addr: std::net::SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&addr)
                .with_context(|| format!("resolving {addr}"))?
                .next()
                .with_context(|| format!("{addr} resolves to no address"))?;
            let config = VpcdConfig {
                addr,
                ..VpcdConfig::default()
            };
            let mut virtual_card = VirtualCard::from_file(&image)?;
            let mut stream = vpcd::connect(&config)?;
            eprintln!(
                "card {} in the vpcd reader at {addr}; Ctrl-C removes it",
                image.display()
            );
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let mut link = tokio::task::spawn_blocking(move || {
                vpcd::serve(&mut stream, &mut virtual_card, &config, &flag)
            });
            let result = tokio::select! {
                r = &mut link => r,
                _ = tokio::signal::ctrl_c() => {
                    stop.store(true, Ordering::Relaxed);
                    link.await
                }
            };
            result.context("vpcd link thread")??;
            eprintln!("card removed; image saved in {}", image.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn run_psam(command: PsamCommand) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match command {
        PsamCommand::New {
            test_keys,
            terminal_id,
            out,
            force,
        } => {
            require_test_keys(test_keys, "psam new")?;
            let terminal_id = parse_terminal_id(&terminal_id)?;
            refuse_overwrite(&out, force)?;
            let psam = Psam::new(terminal_id, MasterKeys::test_set().purchase);
            save_psam(&out, &psam)?;
            println!(
                "PSAM for terminal {terminal_id} (test keys) written to {}",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PsamCommand::Apdu { image } => {
            let mut psam = read_psam(&image)?;
            apdu_session(
                &mut |cmd| {
                    let before = psam.image().clone();
                    let response = psam.process(cmd);
                    if psam.image() != &before {
                        save_psam(&image, &psam)?;
                    }
                    Ok(response)
                },
                std::io::stdin().lock(),
                std::io::stdout().lock(),
            )
        }
    }
}

/// The answer line for an input line that never reached the chip.
const NOT_AN_APDU: &str = "6700";

/// The line protocol of `card apdu` / `psam apdu` (see [`APDU_HELP`]).
fn apdu_session(
    chip: &mut dyn FnMut(&[u8]) -> anyhow::Result<Vec<u8>>,
    input: impl BufRead,
    mut output: impl Write,
) -> anyhow::Result<std::process::ExitCode> {
    let mut rejected = 0usize;
    for (i, line) in input.lines().enumerate() {
        let line = line.context("reading standard input")?;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let compact: String = text.split_whitespace().collect();
        let command = if compact.len() > 2 * APDU_LEN_MAX {
            Err(format!("longer than the {APDU_LEN_MAX}-byte APDU bound"))
        } else {
            hex::decode(&compact).map_err(|e| format!("not hex ({e})"))
        };
        let answer = match command {
            Ok(bytes) => hex::encode_upper(chip(&bytes)?),
            Err(why) => {
                rejected += 1;
                eprintln!("error: line {}: {why}; answered {NOT_AN_APDU}", i + 1);
                NOT_AN_APDU.to_string()
            }
        };
        writeln!(output, "{answer}")?;
        output.flush()?;
    }
    Ok(if rejected == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_answers_every_line_and_flags_bad_hex() {
        let input = "00A4040008A000000632010105\n\n# comment\nzz\n00 84 00 00 04\n";
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let code = apdu_session(
            &mut |c| {
                seen.push(c.to_vec());
                Ok(vec![0x90, 0x00])
            },
            input.as_bytes(),
            &mut out,
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "9000\n6700\n9000\n");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1], vec![0x00, 0x84, 0x00, 0x00, 0x04]);
        assert_eq!(code, std::process::ExitCode::FAILURE);
    }

    #[test]
    fn terminal_ids_are_decimal() {
        assert!(parse_terminal_id("112233445566").is_ok());
        assert!(parse_terminal_id("11223344556A").is_err());
        assert!(parse_terminal_id("1122334455").is_err());
    }
}
