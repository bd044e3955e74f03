//! The two algorithm profiles of the e-purse: 3DES (id `00`) and SM4 (id `04`).

use crate::CryptoError;

/// Which block cipher a card's purse uses (the "algorithm id" on the wire).
///
/// A card holds one profile for its lifetime; the same master keys serve both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Two-key triple DES (EDE) for diversification and session keys,
    /// single DES for MACs under session and TAC keys. Wire id `00`.
    Tdes,
    /// SM4 (GB/T 32907) throughout. Wire id `04`.
    Sm4,
}

impl Algorithm {
    /// The algorithm id as returned by INITIALIZE FOR LOAD/PURCHASE.
    pub const fn id(self) -> u8 {
        match self {
            Algorithm::Tdes => 0x00,
            Algorithm::Sm4 => 0x04,
        }
    }

    /// Parses a wire algorithm id.
    pub fn from_id(id: u8) -> Result<Self, CryptoError> {
        match id {
            0x00 => Ok(Algorithm::Tdes),
            0x04 => Ok(Algorithm::Sm4),
            other => Err(CryptoError::UnknownAlgorithm(other)),
        }
    }

    /// Block length in bytes of the profile's cipher (8 for DES, 16 for SM4).
    pub const fn block_len(self) -> usize {
        match self {
            Algorithm::Tdes => 8,
            Algorithm::Sm4 => 16,
        }
    }
}

impl TryFrom<u8> for Algorithm {
    type Error = CryptoError;
    fn try_from(id: u8) -> Result<Self, Self::Error> {
        Algorithm::from_id(id)
    }
}

impl From<Algorithm> for u8 {
    fn from(alg: Algorithm) -> u8 {
        alg.id()
    }
}
