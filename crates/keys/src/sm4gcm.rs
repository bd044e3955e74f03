//! SM4 in GCM mode (the GCM construction of NIST SP 800-38D over the SM4 block cipher of
//! GB/T 32907, as RFC 8998 uses it), built from RustCrypto's generic GCM and SM4 crates.
//! Sealed layout: nonce (12) || ciphertext || tag (16).

use crate::KeyError;
use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};

pub(crate) type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;

pub(crate) fn cipher(key: &[u8]) -> Sm4Gcm {
    // Keys are generated or derived by this crate at 16 bytes; another length is a bug here.
    Sm4Gcm::new_from_slice(key).expect("SM4 keys are 16 bytes")
}

pub(crate) fn seal(c: &Sm4Gcm, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
    let nonce_bytes: [u8; NONCE_LEN] = crate::random_bytes()?;
    let nonce = aes_gcm::Nonce::<U12>::from(nonce_bytes);
    let ct = c
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| KeyError::Malformed("plaintext too long"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ct);
    Ok(out)
}

pub(crate) fn open(c: &Sm4Gcm, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(KeyError::Malformed("shorter than nonce and tag"));
    }
    let (nonce_bytes, ct) = sealed.split_at(NONCE_LEN);
    let nonce_arr: [u8; NONCE_LEN] = nonce_bytes
        .try_into()
        .map_err(|_| KeyError::Malformed("nonce"))?;
    let nonce = aes_gcm::Nonce::<U12>::from(nonce_arr);
    c.decrypt(&nonce, Payload { msg: ct, aad })
        .map_err(|_| KeyError::Unseal)
}
