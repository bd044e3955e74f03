//! ISO/IEC 9797-1 padding method 2 and the profile's CBC-MAC (zero IV, leftmost 4 bytes).

use crate::{Algorithm, Key8, Key16, block};

/// Length of every MAC and TAC in the profile.
pub const MAC_LEN: usize = 4;

/// ISO/IEC 9797-1 padding method 2: append `80`, then `00` up to a multiple of
/// `block_len`. Always pads, so a message that is already aligned gains a whole
/// block; that is what makes the padding unambiguous.
pub fn pad_iso9797_m2(data: &[u8], block_len: usize) -> Vec<u8> {
    assert!(block_len > 0, "block length must be positive");
    let padded_len = (data.len() / block_len + 1) * block_len;
    let mut out = Vec::with_capacity(padded_len);
    out.extend_from_slice(data);
    out.push(0x80);
    out.resize(padded_len, 0x00);
    out
}

/// CBC-MAC of `pad(data)` with a zero IV under single DES, leftmost 4 bytes of
/// the last block.
pub fn cbc_mac_des(key: &Key8, data: &[u8]) -> [u8; MAC_LEN] {
    let mut chain = [0u8; 8];
    for chunk in pad_iso9797_m2(data, 8).chunks_exact(8) {
        for (c, d) in chain.iter_mut().zip(chunk) {
            *c ^= d;
        }
        chain = block::des_encrypt(key, &chain);
    }
    leftmost(&chain)
}

/// CBC-MAC of `pad(data)` with a zero IV under SM4, leftmost 4 bytes of the last
/// block.
pub fn cbc_mac_sm4(key: &Key16, data: &[u8]) -> [u8; MAC_LEN] {
    let mut chain = [0u8; 16];
    for chunk in pad_iso9797_m2(data, 16).chunks_exact(16) {
        for (c, d) in chain.iter_mut().zip(chunk) {
            *c ^= d;
        }
        chain = block::sm4_encrypt(key, &chain);
    }
    leftmost(&chain)
}

fn leftmost(block: &[u8]) -> [u8; MAC_LEN] {
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&block[..MAC_LEN]);
    out
}

/// A key that computes the profile's MACs: a purchase or load session key, or
/// a TAC key. The 3DES profile MACs with single DES under an 8-byte key, the
/// SM4 profile with SM4 under a 16-byte key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MacKey {
    /// Single-DES MAC key (3DES profile).
    Des(Key8),
    /// SM4 MAC key (SM4 profile).
    Sm4(Key16),
}

impl MacKey {
    /// The 4-byte CBC-MAC of `data` under this key.
    pub fn mac(&self, data: &[u8]) -> [u8; MAC_LEN] {
        match self {
            MacKey::Des(k) => cbc_mac_des(k, data),
            MacKey::Sm4(k) => cbc_mac_sm4(k, data),
        }
    }

    /// The profile this key belongs to.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            MacKey::Des(_) => Algorithm::Tdes,
            MacKey::Sm4(_) => Algorithm::Sm4,
        }
    }

    /// The key bytes (8 or 16). Exposes key material: for test vectors and
    /// audits only.
    pub fn expose(&self) -> &[u8] {
        match self {
            MacKey::Des(k) => k.expose(),
            MacKey::Sm4(k) => k.expose(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_always_adds_at_least_one_byte() {
        assert_eq!(pad_iso9797_m2(&[], 8), vec![0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            pad_iso9797_m2(&[1; 7], 8),
            [vec![1; 7], vec![0x80]].concat()
        );
        let aligned = pad_iso9797_m2(&[1; 8], 8);
        assert_eq!(aligned.len(), 16);
        assert_eq!(aligned[8], 0x80);
        assert_eq!(pad_iso9797_m2(&[1; 15], 16).len(), 16);
        assert_eq!(pad_iso9797_m2(&[1; 16], 16).len(), 32);
    }

    #[test]
    fn des_mac_is_cbc_over_padded_blocks() {
        // Recompute by hand: two blocks, chaining with XOR.
        let key = Key8::from_bytes([0x13, 0x34, 0x57, 0x79, 0x9B, 0xBC, 0xDF, 0xF1]);
        let data = [0xAAu8; 9];
        let b1 = block::des_encrypt(&key, &[0xAA; 8]);
        let mut b2 = [0xAA, 0x80, 0, 0, 0, 0, 0, 0];
        for (x, y) in b2.iter_mut().zip(b1) {
            *x ^= y;
        }
        let last = block::des_encrypt(&key, &b2);
        assert_eq!(cbc_mac_des(&key, &data), last[..4]);
    }
}
