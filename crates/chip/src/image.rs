//! The serializable card image: file tree, purse, PIN and random-number state.
//!
//! An image is what the chip's EEPROM holds. It contains the card's own
//! diversified keys (that is how a real chip holds them), so an image file is
//! as sensitive as the card itself: `Debug` masks keys and the PIN, JSON does
//! not.

use core::fmt;

use crypto::{Algorithm, Key16, PurseKeys};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Version of the image format, bumped on any incompatible change.
pub const IMAGE_FORMAT: u32 = 1;

/// MF file id.
pub const FID_MF: u16 = 0x3F00;
/// AID of the social-security application ("sx1.sh." + GBK 社会保障).
pub const AID_SSSE: &[u8] = &[
    0x73, 0x78, 0x31, 0x2E, 0x73, 0x68, 0x2E, 0xC9, 0xE7, 0xBB, 0xE1, 0xB1, 0xA3, 0xD5, 0xCF,
];
/// AID of the e-purse (transit) application.
pub const AID_TRANSIT: &[u8] = &[0xA0, 0x00, 0x00, 0x06, 0x32, 0x01, 0x01, 0x05];
/// AID of the health application.
pub const AID_HEALTH: &[u8] = &[0xA0, 0x00, 0x00, 0x03, 0x33, 0x01, 0x01, 0x06];
/// AID of the CITYCARD application.
pub const AID_CITY: &[u8] = &[0xF0, 0x43, 0x49, 0x54, 0x59, 0x43, 0x41, 0x52, 0x44, 0x01];
/// DF file ids. The profile names applications by AID only; these FIDs are
/// this implementation's choice, for terminals that select by path.
pub const FID_SSSE: u16 = 0xDF01;
pub const FID_TRANSIT: u16 = 0xDF02;
pub const FID_HEALTH: u16 = 0xDF03;
pub const FID_CITY: u16 = 0xDF04;

/// Hex-encoded bytes in JSON.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HexBytes(pub Vec<u8>);

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(&self.0))
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode_upper(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(&text)
            .map(HexBytes)
            .map_err(serde::de::Error::custom)
    }
}

/// Who may read or update a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// Always.
    Free,
    /// After a successful VERIFY in the current application.
    Pin,
    /// Never through an APDU (written at personalization or by the purse itself).
    Never,
    /// Only by a line-protected command (CLA `04`, MAC under the DF's maintenance key,
    /// `docs/app-scripts.md`).
    Mac,
}

/// What an elementary file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EfBody {
    /// A transparent file.
    Binary { data: HexBytes },
    /// A record file. Linear fixed files hold `capacity` records from the
    /// start; cyclic files hold the records written so far, newest first.
    Records {
        record_len: usize,
        capacity: usize,
        cyclic: bool,
        records: Vec<HexBytes>,
    },
}

impl EfBody {
    /// Bytes of storage the file occupies on the chip.
    pub fn size(&self) -> usize {
        match self {
            EfBody::Binary { data } => data.0.len(),
            EfBody::Records {
                record_len,
                capacity,
                ..
            } => record_len * capacity,
        }
    }
}

/// An elementary file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ef {
    pub fid: u16,
    pub sfi: u8,
    pub read: Access,
    pub update: Access,
    pub body: EfBody,
}

/// A dedicated file: the MF or an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Df {
    pub name: String,
    pub fid: u16,
    pub aid: Option<HexBytes>,
    pub files: Vec<Ef>,
    /// The electronic purse, in the transit application only.
    pub purse: Option<Purse>,
    /// The application maintenance key DAMK, on cards personalized for post-issuance
    /// scripts (absent from older images, which then refuse line-protected commands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceKey>,
}

/// An application's maintenance key (DAMK) and the profile its MACs use.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceKey {
    #[serde(with = "algorithm_id")]
    pub algorithm: Algorithm,
    pub key_version: u8,
    #[serde(with = "key_hex")]
    pub damk: Key16,
}

impl fmt::Debug for MaintenanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaintenanceKey")
            .field("algorithm", &self.algorithm)
            .field("key_version", &self.key_version)
            .field("damk", &"***")
            .finish()
    }
}

impl Df {
    /// The EF with this short file identifier.
    pub fn ef_by_sfi(&self, sfi: u8) -> Option<usize> {
        self.files.iter().position(|f| f.sfi == sfi)
    }

    /// The EF with this file id.
    pub fn ef_by_fid(&self, fid: u16) -> Option<usize> {
        self.files.iter().position(|f| f.fid == fid)
    }
}

/// The electronic purse: balance, counters, keys and MAC-failure state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purse {
    #[serde(with = "algorithm_id")]
    pub algorithm: Algorithm,
    pub key_version: u8,
    #[serde(with = "purse_keys_hex")]
    pub keys: PurseKeys,
    pub balance_fen: u32,
    pub online_counter: u16,
    pub offline_counter: u16,
    /// Consecutive invalid MACs; three lock the application for good.
    pub mac_failures: u8,
    pub locked: bool,
}

/// The card PIN and its try counter.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinState {
    /// The PIN as BCD bytes, as VERIFY sends it.
    pub pin: HexBytes,
    pub tries_left: u8,
}

impl fmt::Debug for PinState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinState")
            .field("pin", &"***")
            .field("tries_left", &self.tries_left)
            .finish()
    }
}

/// The card's random-number generator: a SplitMix64 state kept in the image,
/// so the card stays a pure function of image and command. `preload` bytes
/// are served first; tests use them to replay the spec's worked examples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRng {
    pub state: u64,
    pub preload: HexBytes,
}

impl CardRng {
    /// A generator from a seed (personalization draws the seed).
    pub fn seeded(seed: u64) -> Self {
        CardRng {
            state: seed,
            preload: HexBytes::default(),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `out` with the next random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out.iter_mut() {
            *b = if self.preload.0.is_empty() {
                self.next_u64().to_be_bytes()[0]
            } else {
                self.preload.0.remove(0)
            };
        }
    }
}

/// The whole persistent state of a card.
///
/// `Debug` shows the structure and the purse but no file contents: files hold
/// the holder's name and ID number.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardImage {
    pub format: u32,
    /// The MF and its own files (EF DIR).
    pub mf: Df,
    /// The applications, each a DF under the MF.
    pub apps: Vec<Df>,
    pub pin: PinState,
    pub rng: CardRng,
}

impl fmt::Debug for CardImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let apps: Vec<&str> = self.apps.iter().map(|a| a.name.as_str()).collect();
        f.debug_struct("CardImage")
            .field("format", &self.format)
            .field("apps", &apps)
            .field("purse", &self.purse())
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl CardImage {
    /// The application holding the purse.
    pub fn purse(&self) -> Option<&Purse> {
        self.apps.iter().find_map(|a| a.purse.as_ref())
    }

    /// JSON text of the image.
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings and integers cannot fail.
        serde_json::to_string_pretty(self).expect("card image serializes")
    }

    /// Reads an image from JSON.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

mod algorithm_id {
    use crypto::Algorithm;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(alg: &Algorithm, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(alg.id())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Algorithm, D::Error> {
        Algorithm::from_id(u8::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Serde for 16-byte keys as hex strings. Exposes key bytes: only the card and
/// PSAM images use it.
pub(crate) mod key_hex {
    use crypto::Key16;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &Key16, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode_upper(key.expose()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Key16, D::Error> {
        Key16::from_hex(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod purse_keys_hex {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Keys {
        #[serde(with = "key_hex")]
        dpk: Key16,
        #[serde(with = "key_hex")]
        dlk: Key16,
        #[serde(with = "key_hex")]
        dtk: Key16,
    }

    pub fn serialize<S: Serializer>(keys: &PurseKeys, s: S) -> Result<S::Ok, S::Error> {
        Keys {
            dpk: keys.dpk.clone(),
            dlk: keys.dlk.clone(),
            dtk: keys.dtk.clone(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PurseKeys, D::Error> {
        let k = Keys::deserialize(d)?;
        Ok(PurseKeys {
            dpk: k.dpk,
            dlk: k.dlk,
            dtk: k.dtk,
        })
    }
}
