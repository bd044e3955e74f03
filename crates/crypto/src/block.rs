//! Single-block SM4, 2-key 3DES (EDE) and single-DES operations, and ECB over whole blocks.

use cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use des::{Des, TdesEde2};
use sm4::Sm4;

use crate::{Algorithm, CryptoError, Key8, Key16};

// The RustCrypto ciphers are built with their `zeroize` feature, so the key
// schedules created below are wiped when they go out of scope.

/// SM4 encryption of one 16-byte block.
pub fn sm4_encrypt(key: &Key16, block: &[u8; 16]) -> [u8; 16] {
    let cipher = Sm4::new(&Array::from(*key.expose()));
    let mut b = Array::from(*block);
    cipher.encrypt_block(&mut b);
    b.into()
}

/// SM4 decryption of one 16-byte block.
pub fn sm4_decrypt(key: &Key16, block: &[u8; 16]) -> [u8; 16] {
    let cipher = Sm4::new(&Array::from(*key.expose()));
    let mut b = Array::from(*block);
    cipher.decrypt_block(&mut b);
    b.into()
}

/// 2-key triple-DES (EDE, K1 = K3) encryption of one 8-byte block.
pub fn tdes_encrypt(key: &Key16, block: &[u8; 8]) -> [u8; 8] {
    let cipher = TdesEde2::new(&Array::from(*key.expose()));
    let mut b = Array::from(*block);
    cipher.encrypt_block(&mut b);
    b.into()
}

/// 2-key triple-DES (EDE) decryption of one 8-byte block.
pub fn tdes_decrypt(key: &Key16, block: &[u8; 8]) -> [u8; 8] {
    let cipher = TdesEde2::new(&Array::from(*key.expose()));
    let mut b = Array::from(*block);
    cipher.decrypt_block(&mut b);
    b.into()
}

/// Single-DES encryption of one 8-byte block (parity bits ignored, weak keys
/// accepted: session keys are whatever the derivation yields).
pub fn des_encrypt(key: &Key8, block: &[u8; 8]) -> [u8; 8] {
    let cipher = Des::new(&Array::from(*key.expose()));
    let mut b = Array::from(*block);
    cipher.encrypt_block(&mut b);
    b.into()
}

/// Single-DES decryption of one 8-byte block.
pub fn des_decrypt(key: &Key8, block: &[u8; 8]) -> [u8; 8] {
    let cipher = Des::new(&Array::from(*key.expose()));
    let mut b = Array::from(*block);
    cipher.decrypt_block(&mut b);
    b.into()
}

fn ecb(alg: Algorithm, key: &Key16, data: &[u8], encrypt: bool) -> Result<Vec<u8>, CryptoError> {
    let block = alg.block_len();
    if !data.len().is_multiple_of(block) {
        return Err(CryptoError::NotBlockAligned {
            block,
            actual: data.len(),
        });
    }
    let mut out = Vec::with_capacity(data.len());
    match alg {
        Algorithm::Tdes => {
            for chunk in data.chunks_exact(8) {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                let r = if encrypt {
                    tdes_encrypt(key, &b)
                } else {
                    tdes_decrypt(key, &b)
                };
                out.extend_from_slice(&r);
            }
        }
        Algorithm::Sm4 => {
            for chunk in data.chunks_exact(16) {
                let mut b = [0u8; 16];
                b.copy_from_slice(chunk);
                let r = if encrypt {
                    sm4_encrypt(key, &b)
                } else {
                    sm4_decrypt(key, &b)
                };
                out.extend_from_slice(&r);
            }
        }
    }
    Ok(out)
}

/// ECB encryption of whole blocks with the profile's cipher under a 16-byte key
/// (2-key 3DES or SM4). Data must be a multiple of the block length.
pub fn ecb_encrypt(alg: Algorithm, key: &Key16, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    ecb(alg, key, data, true)
}

/// ECB decryption, the inverse of [`ecb_encrypt`].
pub fn ecb_decrypt(alg: Algorithm, key: &Key16, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    ecb(alg, key, data, false)
}

/// CBC over whole blocks with the profile's cipher; the IV is the first block length bytes of
/// `iv` (8 for 3DES, 16 for SM4). Written over the block functions above because the chaining
/// is a few lines and the `cbc` crate would add a generic layer for two fixed ciphers.
fn cbc(
    alg: Algorithm,
    key: &Key16,
    iv: &[u8; 16],
    data: &[u8],
    encrypt: bool,
) -> Result<Vec<u8>, CryptoError> {
    let block = alg.block_len();
    if !data.len().is_multiple_of(block) {
        return Err(CryptoError::NotBlockAligned {
            block,
            actual: data.len(),
        });
    }
    let mut chain = iv[..block].to_vec();
    let mut out = Vec::with_capacity(data.len());
    for chunk in data.chunks_exact(block) {
        if encrypt {
            let x: Vec<u8> = chunk.iter().zip(&chain).map(|(a, b)| a ^ b).collect();
            let c = ecb(alg, key, &x, true)?;
            out.extend_from_slice(&c);
            chain = c;
        } else {
            let p = ecb(alg, key, chunk, false)?;
            out.extend(p.iter().zip(&chain).map(|(a, b)| a ^ b));
            chain = chunk.to_vec();
        }
    }
    Ok(out)
}

/// CBC encryption of whole blocks (2-key 3DES or SM4) with the given IV (its first 8 bytes
/// for 3DES).
pub fn cbc_encrypt(
    alg: Algorithm,
    key: &Key16,
    iv: &[u8; 16],
    data: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    cbc(alg, key, iv, data, true)
}

/// CBC decryption, the inverse of [`cbc_encrypt`].
pub fn cbc_decrypt(
    alg: Algorithm,
    key: &Key16,
    iv: &[u8; 16],
    data: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    cbc(alg, key, iv, data, false)
}

#[cfg(test)]
mod cbc_tests {
    use super::*;

    #[test]
    fn cbc_chains_blocks_and_round_trips() {
        let key = Key16::from_bytes(*b"0123456789ABCDEF");
        let iv = [7u8; 16];
        for alg in [Algorithm::Tdes, Algorithm::Sm4] {
            let data = [0x41u8; 32];
            let c = cbc_encrypt(alg, &key, &iv, &data).unwrap();
            // Equal plaintext blocks give different ciphertext blocks (chaining), unlike ECB.
            let b = alg.block_len();
            assert_ne!(c[..b], c[b..2 * b]);
            assert_eq!(
                c[..b],
                ecb_encrypt(alg, &key, &{
                    let mut x = data[..b].to_vec();
                    x.iter_mut().zip(&iv).for_each(|(a, v)| *a ^= v);
                    x
                })
                .unwrap()[..]
            );
            assert_eq!(cbc_decrypt(alg, &key, &iv, &c).unwrap(), data);
            assert!(cbc_encrypt(alg, &key, &iv, &data[..5]).is_err());
        }
    }
}
