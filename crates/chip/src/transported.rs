//! Personalization from card keys that arrive wrapped under a transport key (the HSM path):
//! the master-key store diversifies, wraps `CBC_TK(DK)` (zero IV, profile cipher) and the
//! personalization line unwraps, checks each key's KCV and writes the card.

use crypto::{Algorithm, Key16, MasterKeys, PurseKeys};
use thiserror::Error;

use crate::{Card, PersonalizationRecord, PersonalizeError, personalize};

/// One card key as delivered: `CBC_TK(DK)` and the KCV of DK under the profile cipher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportedKey {
    pub wrapped: [u8; 16],
    pub kcv: [u8; 3],
}

/// The three purse keys of one card as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportedPurseKeys {
    pub dpk: TransportedKey,
    pub dlk: TransportedKey,
    pub dtk: TransportedKey,
}

/// The maintenance key (DAMK) of one application as delivered, for the application with
/// this AID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportedMaintenanceKey {
    pub aid: Vec<u8>,
    pub key: TransportedKey,
}

/// Why transported keys were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransportError {
    /// Unwrapped under the wrong transport key, or altered on the way.
    #[error("{key} does not match its check value after unwrapping")]
    KcvMismatch { key: &'static str },
    #[error(transparent)]
    Personalize(#[from] PersonalizeError),
}

fn unwrap(alg: Algorithm, tk: &Key16, wrapped: &[u8; 16]) -> Key16 {
    let mut out = [0u8; 16];
    match alg {
        Algorithm::Tdes => {
            let c1: [u8; 8] = wrapped[..8].try_into().expect("8 of 16 bytes");
            let c2: [u8; 8] = wrapped[8..].try_into().expect("8 of 16 bytes");
            out[..8].copy_from_slice(&crypto::tdes_decrypt(tk, &c1));
            let p2 = crypto::tdes_decrypt(tk, &c2);
            for i in 0..8 {
                out[8 + i] = p2[i] ^ c1[i];
            }
        }
        Algorithm::Sm4 => out = crypto::sm4_decrypt(tk, wrapped),
    }
    let key = Key16::from_bytes(out);
    out.fill(0);
    key
}

/// Builds a card like [`personalize`], with purse keys unwrapped from `keys` under
/// `transport_key` and checked against their KCVs, instead of diversified from master keys.
/// Each application named in `maintenance` gets its delivered DAMK the same way and its
/// line-protected files, as [`crate::personalize_with_maintenance`] lays them out.
pub fn personalize_transported(
    record: &PersonalizationRecord,
    keys: &TransportedPurseKeys,
    maintenance: &[TransportedMaintenanceKey],
    transport_key: &Key16,
) -> Result<Card, TransportError> {
    let alg = record.algorithm;
    let open = |name: &'static str, k: &TransportedKey| {
        let key = unwrap(alg, transport_key, &k.wrapped);
        if key.kcv(alg) == k.kcv {
            Ok(key)
        } else {
            Err(TransportError::KcvMismatch { key: name })
        }
    };
    let purse_keys = PurseKeys {
        dpk: open("DPK", &keys.dpk)?,
        dlk: open("DLK", &keys.dlk)?,
        dtk: open("DTK", &keys.dtk)?,
    };
    // Lay out the card with throwaway zero masters, then put the delivered keys in.
    let zero = Key16::from_bytes([0; 16]);
    let placeholder = MasterKeys {
        purchase: zero.clone(),
        load: zero.clone(),
        tac: zero,
    };
    let mut image = personalize(record, &placeholder)?.into_image();
    for app in &mut image.apps {
        if let Some(purse) = &mut app.purse {
            purse.keys = purse_keys.clone();
        }
    }
    let mut damks = Vec::with_capacity(maintenance.len());
    for m in maintenance {
        damks.push((m.aid.as_slice(), open("DAMK", &m.key)?));
    }
    Ok(crate::personalize::install_maintenance(image, alg, &damks)?)
}
