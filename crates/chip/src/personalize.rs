//! Personalization: builds a card image from a holder record and the master keys, and reports chip space.

use core::fmt;

use crypto::{Algorithm, MasterKeys};
use thiserror::Error;

use crate::card::PIN_TRIES_MAX;
use crate::image::{
    AID_CITY, AID_HEALTH, AID_SSSE, AID_TRANSIT, Access, CardImage, CardRng, Df, Ef, EfBody,
    FID_CITY, FID_HEALTH, FID_MF, FID_SSSE, FID_TRANSIT, HexBytes, IMAGE_FORMAT, PinState, Purse,
};
use crate::records::{
    EF18_RECORD_LEN, EF18_RECORDS, HOLDER_NAME_LEN, HolderInfo, ID_NUMBER_LEN, ISSUER_ID,
    PublicInfo, TRANSIT_RECORD_LEN, TRANSIT_RECORDS,
};
use crate::{BcdDate, Card, CardNumber, CardType};

/// Chip capacity the data plan is measured against: 80 KiB.
pub const CHIP_BYTES: usize = 80 * 1024;
/// Share of the chip that must stay free for later applications (30 %).
pub const FREE_PERCENT_MIN: usize = 30;
/// Storage overhead the plan assumes per DF or EF header (file control
/// information, access rules) on a typical COS.
pub const FILE_HEADER_BYTES: usize = 32;
/// PIN length bounds, in digits.
pub const PIN_DIGITS_MIN: usize = 4;
pub const PIN_DIGITS_MAX: usize = 12;

/// Why a record cannot be personalized.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PersonalizeError {
    #[error("holder name is empty")]
    EmptyName,
    #[error("holder name has a character GBK cannot encode")]
    NameNotGbk,
    #[error("holder name is {0} GBK bytes, the field holds {HOLDER_NAME_LEN}")]
    NameTooLong(usize),
    #[error("ID number must be 1 to {ID_NUMBER_LEN} printable ASCII characters")]
    InvalidIdNumber,
    #[error("expiry date {expiry} is not after start date {start}")]
    ExpiryNotAfterStart { start: BcdDate, expiry: BcdDate },
    #[error("PIN must be {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} digits")]
    InvalidPin,
    #[error(
        "data plan uses {used} of {CHIP_BYTES} bytes, leaving less than {FREE_PERCENT_MIN} % free"
    )]
    ChipTooFull { used: usize },
}

/// What the card bureau knows about a card to be issued. `Debug` masks the
/// personal fields.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonalizationRecord {
    pub card_number: CardNumber,
    pub holder_name: String,
    /// Resident ID number (ID type `00`).
    pub id_number: String,
    pub card_type: CardType,
    pub start_date: BcdDate,
    /// Normally `start_date.plus_years(10)`.
    pub expiry_date: BcdDate,
    pub algorithm: Algorithm,
    pub employee: bool,
    /// PIN digits (the test cards use `123456`).
    pub pin: String,
    /// Seed of the card's random-number generator (the bureau draws it).
    pub rng_seed: u64,
}

impl fmt::Debug for PersonalizationRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonalizationRecord")
            .field("card_number", &self.card_number)
            .field("holder_name", &"***")
            .field("id_number", &"***")
            .field("card_type", &self.card_type)
            .field("start_date", &self.start_date)
            .field("expiry_date", &self.expiry_date)
            .field("algorithm", &self.algorithm)
            .field("employee", &self.employee)
            .field("pin", &"***")
            .finish()
    }
}

/// Bytes one application occupies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUsage {
    pub name: String,
    pub bytes: usize,
}

/// The chip data plan of one card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceReport {
    pub apps: Vec<AppUsage>,
    pub chip_bytes: usize,
}

impl SpaceReport {
    /// Bytes used by all applications.
    pub fn used(&self) -> usize {
        self.apps.iter().map(|a| a.bytes).sum()
    }

    /// Bytes left.
    pub fn free(&self) -> usize {
        self.chip_bytes.saturating_sub(self.used())
    }

    /// Whether at least [`FREE_PERCENT_MIN`] % stays free.
    pub fn meets_reserve(&self) -> bool {
        self.free() * 100 >= self.chip_bytes * FREE_PERCENT_MIN
    }
}

impl fmt::Display for SpaceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in &self.apps {
            writeln!(f, "{:<10} {:>6} bytes", a.name, a.bytes)?;
        }
        writeln!(f, "{:<10} {:>6} bytes", "used", self.used())?;
        write!(
            f,
            "{:<10} {:>6} bytes of {} ({} % free)",
            "free",
            self.free(),
            self.chip_bytes,
            self.free() * 100 / self.chip_bytes.max(1)
        )
    }
}

/// Space used by a DF: its header, each EF's header and body, and the purse
/// (3 keys of 16 bytes, balance 4, counters 2+2, key version, algorithm,
/// failure counter and lock flag).
fn df_bytes(df: &Df) -> usize {
    let files: usize = df
        .files
        .iter()
        .map(|f| FILE_HEADER_BYTES + f.body.size())
        .sum();
    let purse = if df.purse.is_some() {
        3 * 16 + 4 + 2 + 2 + 4
    } else {
        0
    };
    FILE_HEADER_BYTES + files + purse
}

/// The data plan of an image: the MF (with EF DIR and the PIN) and each application.
pub fn space_report(image: &CardImage) -> SpaceReport {
    let mut apps = vec![AppUsage {
        name: "MF".to_string(),
        bytes: df_bytes(&image.mf) + image.pin.pin.0.len() + 1,
    }];
    apps.extend(image.apps.iter().map(|df| AppUsage {
        name: df.name.clone(),
        bytes: df_bytes(df),
    }));
    SpaceReport {
        apps,
        chip_bytes: CHIP_BYTES,
    }
}

fn binary(fid: u16, sfi: u8, read: Access, update: Access, data: Vec<u8>) -> Ef {
    Ef {
        fid,
        sfi,
        read,
        update,
        body: EfBody::Binary {
            data: HexBytes(data),
        },
    }
}

fn records(
    fid: u16,
    sfi: u8,
    read: Access,
    update: Access,
    record_len: usize,
    capacity: usize,
    cyclic: bool,
) -> Ef {
    let records = if cyclic {
        Vec::new()
    } else {
        vec![HexBytes(vec![0; record_len]); capacity]
    };
    Ef {
        fid,
        sfi,
        read,
        update,
        body: EfBody::Records {
            record_len,
            capacity,
            cyclic,
            records,
        },
    }
}

/// ISO 7816-5 application template for EF DIR: `61 { 4F AID 50 label }`.
fn dir_record(aid: &[u8], label: &str) -> HexBytes {
    let mut inner = vec![0x4F, aid.len() as u8];
    inner.extend_from_slice(aid);
    inner.extend_from_slice(&[0x50, label.len() as u8]);
    inner.extend_from_slice(label.as_bytes());
    let mut out = vec![0x61, inner.len() as u8];
    out.extend_from_slice(&inner);
    out.resize(DIR_RECORD_LEN, 0xFF);
    HexBytes(out)
}

const DIR_RECORD_LEN: usize = 32;

fn encode_name(name: &str) -> Result<[u8; HOLDER_NAME_LEN], PersonalizeError> {
    if name.trim().is_empty() {
        return Err(PersonalizeError::EmptyName);
    }
    let (bytes, _, had_errors) = encoding_rs::GBK.encode(name);
    if had_errors {
        return Err(PersonalizeError::NameNotGbk);
    }
    if bytes.len() > HOLDER_NAME_LEN {
        return Err(PersonalizeError::NameTooLong(bytes.len()));
    }
    let mut out = [0u8; HOLDER_NAME_LEN];
    out[..bytes.len()].copy_from_slice(&bytes);
    Ok(out)
}

fn encode_id_number(id: &str) -> Result<[u8; ID_NUMBER_LEN], PersonalizeError> {
    if id.is_empty() || id.len() > ID_NUMBER_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PersonalizeError::InvalidIdNumber);
    }
    let mut out = [0u8; ID_NUMBER_LEN];
    out[..id.len()].copy_from_slice(id.as_bytes());
    Ok(out)
}

/// PIN digits to BCD, an odd count padded with `F`.
fn encode_pin(pin: &str) -> Result<Vec<u8>, PersonalizeError> {
    if !(PIN_DIGITS_MIN..=PIN_DIGITS_MAX).contains(&pin.len())
        || !pin.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(PersonalizeError::InvalidPin);
    }
    let mut digits: Vec<u8> = pin.bytes().map(|b| b - b'0').collect();
    if digits.len() % 2 == 1 {
        digits.push(0x0F);
    }
    Ok(digits.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// Builds a card: file tree, EF15/EF16 and the SSSE/CITY files from the
/// record, and the purse with keys diversified from `masters` for the card
/// number. The balance and counters start at zero.
pub fn personalize(
    record: &PersonalizationRecord,
    masters: &MasterKeys,
) -> Result<Card, PersonalizeError> {
    if record.expiry_date <= record.start_date {
        return Err(PersonalizeError::ExpiryNotAfterStart {
            start: record.start_date,
            expiry: record.expiry_date,
        });
    }
    let name_gbk = encode_name(&record.holder_name)?;
    let id_number = encode_id_number(&record.id_number)?;
    let pin = encode_pin(&record.pin)?;
    let number_bcd = record.card_number.to_bcd();

    let public = PublicInfo {
        issuer_id: ISSUER_ID,
        app_type: 0x03,
        app_version: 0x01,
        card_number: record.card_number,
        start_date: record.start_date,
        expiry_date: record.expiry_date,
        card_type: record.card_type,
    };
    let holder = HolderInfo {
        holder_flag: 0x00,
        employee_flag: u8::from(record.employee),
        name_gbk,
        id_number,
        id_type: 0x00,
    };

    // SSSE EF05, card identification (32 bytes): issuer id, card number,
    // card type, specification version, start and expiry dates.
    let mut ef05 = Vec::with_capacity(32);
    ef05.extend_from_slice(&ISSUER_ID);
    ef05.extend_from_slice(&number_bcd);
    ef05.extend_from_slice(&[record.card_type.code(), 0x01]);
    ef05.extend_from_slice(&record.start_date.to_bcd());
    ef05.extend_from_slice(&record.expiry_date.to_bcd());
    ef05.resize(32, 0);
    // SSSE EF06, holder identity (53 bytes): ID number, name, ID type.
    let mut ef06 = id_number.to_vec();
    ef06.extend_from_slice(&name_gbk);
    ef06.push(0x00);
    // CITY EF01 (16 bytes): card number, flags, points, reserved.
    let mut city = number_bcd.to_vec();
    city.resize(16, 0);

    let mf = Df {
        name: "MF".to_string(),
        fid: FID_MF,
        aid: None,
        files: vec![{
            let mut dir = records(
                0x0001,
                0x01,
                Access::Free,
                Access::Never,
                DIR_RECORD_LEN,
                4,
                false,
            );
            if let EfBody::Records { records, .. } = &mut dir.body {
                *records = vec![
                    dir_record(AID_SSSE, "SSSE"),
                    dir_record(AID_TRANSIT, "TRANSIT"),
                    dir_record(AID_HEALTH, "HEALTH"),
                    dir_record(AID_CITY, "CITYCARD"),
                ];
            }
            dir
        }],
        purse: None,
        maintenance: None,
    };
    let ssse = Df {
        name: "SSSE".to_string(),
        fid: FID_SSSE,
        aid: Some(HexBytes(AID_SSSE.to_vec())),
        files: vec![
            binary(0x0005, 0x05, Access::Free, Access::Never, ef05),
            binary(0x0006, 0x06, Access::Pin, Access::Never, ef06),
        ],
        purse: None,
        maintenance: None,
    };
    let transit = Df {
        name: "TRANSIT".to_string(),
        fid: FID_TRANSIT,
        aid: Some(HexBytes(AID_TRANSIT.to_vec())),
        files: vec![
            binary(
                0x0015,
                0x15,
                Access::Free,
                Access::Never,
                public.to_bytes().to_vec(),
            ),
            binary(
                0x0016,
                0x16,
                Access::Free,
                Access::Never,
                holder.to_bytes().to_vec(),
            ),
            records(
                0x0018,
                0x18,
                Access::Free,
                Access::Never,
                EF18_RECORD_LEN,
                EF18_RECORDS,
                true,
            ),
            records(
                0x0019,
                0x19,
                Access::Free,
                Access::Never,
                TRANSIT_RECORD_LEN,
                TRANSIT_RECORDS,
                true,
            ),
        ],
        purse: Some(Purse {
            algorithm: record.algorithm,
            key_version: 0x01,
            keys: masters.diversify(record.algorithm, &record.card_number.div_data()),
            balance_fen: 0,
            online_counter: 0,
            offline_counter: 0,
            mac_failures: 0,
            locked: false,
        }),
        maintenance: None,
    };
    let health = Df {
        name: "HEALTH".to_string(),
        fid: FID_HEALTH,
        aid: Some(HexBytes(AID_HEALTH.to_vec())),
        files: vec![binary(0x0001, 0x01, Access::Pin, Access::Pin, vec![0; 64])],
        purse: None,
        maintenance: None,
    };
    let city_df = Df {
        name: "CITY".to_string(),
        fid: FID_CITY,
        aid: Some(HexBytes(AID_CITY.to_vec())),
        files: vec![
            binary(0x0001, 0x01, Access::Free, Access::Pin, city),
            records(0x0002, 0x02, Access::Free, Access::Pin, 16, 5, false),
        ],
        purse: None,
        maintenance: None,
    };
    let image = CardImage {
        format: IMAGE_FORMAT,
        mf,
        apps: vec![ssse, transit, health, city_df],
        pin: PinState {
            pin: HexBytes(pin),
            tries_left: PIN_TRIES_MAX,
        },
        rng: CardRng::seeded(record.rng_seed),
    };
    let report = space_report(&image);
    if !report.meets_reserve() {
        return Err(PersonalizeError::ChipTooFull {
            used: report.used(),
        });
    }
    Ok(Card::from_image(image))
}

/// SFI of the CITY application's function file (application management): linear fixed,
/// [`FUNCTION_RECORDS`] records of [`FUNCTION_RECORD_LEN`] bytes, free read, updated only by
/// line-protected scripts.
pub const SFI_CITY_FUNCTIONS: u8 = 0x03;
/// SFI of the HEALTH application's service file: [`FUNCTION_RECORD_LEN`] bytes binary, free
/// read, updated only by line-protected scripts.
pub const SFI_HEALTH_SERVICES: u8 = 0x02;
/// SFI of the TRANSIT application's public information file EF15 (`epurse.md` §1).
pub const SFI_EF15: u8 = 0x15;
/// Offset of the card type byte in EF15.
pub const EF15_CARD_TYPE_OFFSET: u8 = 28;
/// Length of one function record (and of the HEALTH service file).
pub const FUNCTION_RECORD_LEN: usize = 16;
/// Function records in the CITY function file.
pub const FUNCTION_RECORDS: usize = 8;

/// A maintenance master key for the application with this AID.
#[derive(Debug, Clone, Copy)]
pub struct MaintenanceMaster<'a> {
    pub aid: &'a [u8],
    pub master: &'a crypto::Key16,
}

/// Builds a card like [`personalize`], ready for application management
/// (`docs/app-scripts.md`): each application named in `maintenance` gets its maintenance key
/// DAMK, diversified from its master with the card's D like DPK (`epurse.md` §3), key version
/// `01`; CITY gains its function file (SFI 03) and HEALTH its service file (SFI 02), both
/// updatable only by line-protected commands, and TRANSIT's EF15 becomes updatable by them
/// (the card type after issuance).
pub fn personalize_with_maintenance(
    record: &PersonalizationRecord,
    masters: &MasterKeys,
    maintenance: &[MaintenanceMaster<'_>],
) -> Result<Card, PersonalizeError> {
    let image = personalize(record, masters)?.into_image();
    let d = record.card_number.div_data();
    let damks: Vec<(&[u8], crypto::Key16)> = maintenance
        .iter()
        .map(|m| (m.aid, crypto::diversify(record.algorithm, m.master, &d)))
        .collect();
    install_maintenance(image, record.algorithm, &damks)
}

/// Gives each application whose AID is named in `damks` its card maintenance key (key version
/// `01`) and its line-protected files: CITY its function file (SFI 03), HEALTH its service
/// file (SFI 02), TRANSIT its EF15 (update by line protection instead of never). Applications not named are left as they are. Refuses a chip left without
/// its free-space reserve.
pub(crate) fn install_maintenance(
    mut image: crate::CardImage,
    algorithm: crypto::Algorithm,
    damks: &[(&[u8], crypto::Key16)],
) -> Result<Card, PersonalizeError> {
    for df in &mut image.apps {
        let Some((_, damk)) = damks
            .iter()
            .find(|(aid, _)| df.aid.as_ref().is_some_and(|a| a.0 == *aid))
        else {
            continue;
        };
        df.maintenance = Some(crate::image::MaintenanceKey {
            algorithm,
            key_version: 0x01,
            damk: damk.clone(),
        });
        if df.fid == FID_TRANSIT {
            // EF15 (public information) becomes updatable by line protection under the
            // TRANSIT DAMK, as PBOC JR/T 0025 and CJ/T 166 allow for the e-purse ADF, so the
            // card type (byte 28) can follow the platform's record after issuance.
            if let Some(ef15) = df.files.iter_mut().find(|f| f.sfi == SFI_EF15) {
                ef15.update = Access::Mac;
            }
        } else if df.fid == FID_CITY {
            df.files.push(records(
                0x0003,
                SFI_CITY_FUNCTIONS,
                Access::Free,
                Access::Mac,
                FUNCTION_RECORD_LEN,
                FUNCTION_RECORDS,
                false,
            ));
        } else if df.fid == FID_HEALTH {
            df.files.push(binary(
                0x0002,
                SFI_HEALTH_SERVICES,
                Access::Free,
                Access::Mac,
                vec![0; FUNCTION_RECORD_LEN],
            ));
        }
    }
    if !space_report(&image).meets_reserve() {
        return Err(PersonalizeError::ChipTooFull {
            used: space_report(&image).used(),
        });
    }
    Ok(Card::from_image(image))
}
