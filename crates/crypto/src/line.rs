//! Line protection (线路保护): the MAC a post-issuance UPDATE BINARY / UPDATE RECORD carries,
//! after PBOC 2.0 (JR/T 0025) and CJ/T 166, as `docs/app-scripts.md` specifies.
//!
//! The key is the card's application maintenance key DAMK (16 bytes, diversified like DPK).
//! The initial value is the card's 4-byte challenge (GET CHALLENGE) followed by zeros to the
//! block length; the data is padded with ISO/IEC 9797-1 method 2.
//!
//! - 3DES profile: the PBOC "16-byte key MAC", ISO/IEC 9797-1 MAC algorithm 3 (the retail
//!   MAC): single-DES CBC under the left half `KL`, and the last block additionally
//!   decrypted under the right half `KR` and encrypted again under `KL` (so the last step
//!   is a full 2-key 3DES encryption).
//! - SM4 profile: SM4 CBC-MAC under DAMK.
//!
//! Either way the MAC is the leftmost 4 bytes of the final block.

use crate::{Algorithm, Key8, Key16, MAC_LEN, block, mac::pad_iso9797_m2};

/// Length of the card challenge that enters the initial value.
pub const CHALLENGE_LEN: usize = 4;

/// The development maintenance master key (`docs/app-scripts.md`; never in production):
/// `445566778899AABBCCDDEEFF00112233`, continuing the pattern of the `epurse.md` §4 test set.
/// Every application's maintenance master key in the test key set has this value.
pub fn test_maintenance_master() -> Key16 {
    Key16::from_bytes([
        0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00, 0x11, 0x22,
        0x33,
    ])
}

/// ISO/IEC 9797-1 MAC algorithm 3 (retail MAC) with initial value `iv`, padding method 2,
/// under a 2-key 3DES key: the whole last block (8 bytes).
pub fn retail_mac(key: &Key16, iv: [u8; 8], data: &[u8]) -> [u8; 8] {
    let k = key.expose();
    let kl = Key8::from_slice(&k[..8]).expect("8 bytes");
    let kr = Key8::from_slice(&k[8..]).expect("8 bytes");
    let mut chain = iv;
    for chunk in pad_iso9797_m2(data, 8).chunks_exact(8) {
        for (c, d) in chain.iter_mut().zip(chunk) {
            *c ^= d;
        }
        chain = block::des_encrypt(&kl, &chain);
    }
    let last = block::des_decrypt(&kr, &chain);
    block::des_encrypt(&kl, &last)
}

/// SM4 CBC-MAC with initial value `iv`, padding method 2: the whole last block.
pub fn sm4_cbc_mac_iv(key: &Key16, iv: [u8; 16], data: &[u8]) -> [u8; 16] {
    let mut chain = iv;
    for chunk in pad_iso9797_m2(data, 16).chunks_exact(16) {
        for (c, d) in chain.iter_mut().zip(chunk) {
            *c ^= d;
        }
        chain = block::sm4_encrypt(key, &chain);
    }
    chain
}

/// The line-protection MAC of `data` (the command `CLA INS P1 P2 Lc data`, Lc counting the
/// MAC) under the maintenance key `damk`, for the card's `challenge`.
pub fn line_mac(
    alg: Algorithm,
    damk: &Key16,
    challenge: [u8; CHALLENGE_LEN],
    data: &[u8],
) -> [u8; MAC_LEN] {
    let mut out = [0u8; MAC_LEN];
    match alg {
        Algorithm::Tdes => {
            let mut iv = [0u8; 8];
            iv[..CHALLENGE_LEN].copy_from_slice(&challenge);
            out.copy_from_slice(&retail_mac(damk, iv, data)[..MAC_LEN]);
        }
        Algorithm::Sm4 => {
            let mut iv = [0u8; 16];
            iv[..CHALLENGE_LEN].copy_from_slice(&challenge);
            out.copy_from_slice(&sm4_cbc_mac_iv(damk, iv, data)[..MAC_LEN]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A published PBOC "16-byte key MAC" computation (zero IV, 74 bytes of data, result
    /// `4089819D3D991CC7`), reproduced so the retail MAC is checked against a third party.
    #[test]
    fn retail_mac_matches_a_published_pboc_example() {
        let key = Key16::from_hex("5775204D69616F6A756E404726444311").unwrap();
        let data = hex::decode(
            "4348454E48414F2D50437C424645424642464630303033303643337E39425030504432434E37\
             30313633363649303034337C32303234303131317C32303235303130317C383139317C30",
        )
        .unwrap();
        assert_eq!(data.len(), 74);
        assert_eq!(
            hex::encode_upper(retail_mac(&key, [0; 8], &data)),
            "4089819D3D991CC7"
        );
    }

    #[test]
    fn the_challenge_enters_the_mac() {
        let key = Key16::from_bytes([7; 16]);
        for alg in [Algorithm::Tdes, Algorithm::Sm4] {
            let a = line_mac(alg, &key, [1, 2, 3, 4], b"data");
            let b = line_mac(alg, &key, [1, 2, 3, 5], b"data");
            assert_ne!(a, b, "{alg:?}");
        }
    }
}
