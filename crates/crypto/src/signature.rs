//! SM2 signatures with SM3 (GB/T 32918.2) under the default distinguishing id.
//!
//! Wire forms are fixed here once: signatures are raw `r || s` (64 bytes),
//! public keys SEC1 compressed (33 bytes). Signing is deterministic (the `sm2`
//! crate derives the nonce RFC 6979-style from key and message), so this crate
//! needs no random source.

use core::fmt;
use std::sync::{Arc, OnceLock};

use sm2::dsa::signature::Signer;
use sm2::dsa::{Signature, SigningKey, VerifyingKey};
use sm2::elliptic_curve::sec1::ToSec1Point;
use sm3::{Digest, Sm3};

use crate::sm2_fast::{self, FixedBase};
use crate::{CryptoError, Key32};

/// The default SM2 user id of GB/T 32918 / GM/T 0009, used when none is agreed.
pub const SM2_DEFAULT_DISTID: &str = "1234567812345678";
/// Raw `r || s` signature length.
pub const SM2_SIGNATURE_LEN: usize = 64;
/// SEC1 compressed public key length.
pub const SM2_PUBLIC_KEY_LEN: usize = 33;

/// An SM2 private key. `Debug` prints only the public key.
#[derive(Clone)]
pub struct Sm2SigningKey(SigningKey);

/// An SM2 public key bound to the default distinguishing id, with its `Z_A` computed once.
/// Verification runs in variable time (all its inputs are public; see `sm2_fast`); a key
/// that verifies many signatures can [`precompute`](Self::precompute) a table that makes
/// each verification about three times faster. Clones share the table.
#[derive(Clone)]
pub struct Sm2PublicKey {
    key: VerifyingKey,
    za: [u8; 32],
    table: Arc<OnceLock<FixedBase>>,
}

impl PartialEq for Sm2PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.to_compressed() == other.to_compressed()
    }
}

impl Eq for Sm2PublicKey {}

impl Sm2SigningKey {
    /// Builds a key from its 32-byte big-endian secret scalar, which must lie
    /// in `[1, n-1]`. The caller supplies the randomness (the keys crate or an
    /// HSM), which keeps this crate pure.
    pub fn from_secret(secret: &Key32) -> Result<Self, CryptoError> {
        SigningKey::from_slice(SM2_DEFAULT_DISTID, secret.expose())
            .map(Sm2SigningKey)
            .map_err(|_| CryptoError::InvalidSecretKey)
    }

    /// The secret scalar. Exposes key material.
    pub fn to_secret(&self) -> Key32 {
        Key32::from_bytes(self.0.to_bytes().into())
    }

    /// The matching public key.
    pub fn public_key(&self) -> Sm2PublicKey {
        Sm2PublicKey::new(self.0.verifying_key().clone())
    }

    /// Signs `message` (SM3 over `Z_A || message`), returning raw `r || s`.
    pub fn sign(&self, message: &[u8]) -> [u8; SM2_SIGNATURE_LEN] {
        let signature: Signature = self.0.sign(message);
        signature.to_bytes().into()
    }
}

impl fmt::Debug for Sm2SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Sm2SigningKey")
            .field(&"***")
            .field(&self.public_key())
            .finish()
    }
}

impl Sm2PublicKey {
    /// Parses a SEC1 public key, compressed (33 bytes) or uncompressed (65).
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, CryptoError> {
        VerifyingKey::from_sec1_bytes(SM2_DEFAULT_DISTID, bytes)
            .map(Sm2PublicKey::new)
            .map_err(|_| CryptoError::InvalidPublicKey)
    }

    fn new(key: VerifyingKey) -> Self {
        let mut uncompressed = [0u8; 65];
        uncompressed.copy_from_slice(key.to_sec1_point(false).as_bytes());
        Sm2PublicKey {
            za: sm2_fast::z_a(SM2_DEFAULT_DISTID.as_bytes(), &uncompressed),
            key,
            table: Arc::new(OnceLock::new()),
        }
    }

    /// Builds this key's multiplication table (about the cost of one verification, 50 KiB)
    /// for a key that will verify many signatures: an exchange member's, a root's.
    pub fn precompute(&self) {
        self.table
            .get_or_init(|| FixedBase::new(self.key.as_affine()));
    }

    /// `Z_A`, the hash of the distinguishing id, the curve and this key that every signed
    /// message is prefixed with.
    pub fn z_a(&self) -> [u8; 32] {
        self.za
    }

    /// SEC1 compressed encoding (33 bytes, `02`/`03` prefix).
    pub fn to_compressed(&self) -> [u8; SM2_PUBLIC_KEY_LEN] {
        let point = self.key.to_sec1_point(true);
        let mut out = [0u8; SM2_PUBLIC_KEY_LEN];
        // A compressed point of a valid key is always 33 bytes.
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// SEC1 uncompressed encoding (65 bytes, `04` prefix), as OpenSSL prints it.
    pub fn to_uncompressed(&self) -> [u8; 65] {
        let point = self.key.to_sec1_point(false);
        let mut out = [0u8; 65];
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// Verifies a raw `r || s` signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let digest: [u8; 32] = Sm3::new()
            .chain_update(self.za)
            .chain_update(message)
            .finalize()
            .into();
        self.verify_digest(&digest, signature)
    }

    /// Verifies a signature over a precomputed digest
    /// `e = SM3(Z_A || message)`; for protocols that hash elsewhere and for
    /// checking the standard's intermediate values.
    pub fn verify_digest(&self, digest: &[u8; 32], signature: &[u8]) -> Result<(), CryptoError> {
        let sig = parse_signature(signature)?;
        if sm2_fast::verify_prehash(
            self.key.as_affine(),
            self.table.get(),
            digest,
            sig.r().as_ref(),
            sig.s().as_ref(),
        ) {
            Ok(())
        } else {
            Err(CryptoError::SignatureMismatch)
        }
    }
}

fn parse_signature(signature: &[u8]) -> Result<Signature, CryptoError> {
    if signature.len() != SM2_SIGNATURE_LEN {
        return Err(CryptoError::InvalidLength {
            what: "SM2 signature",
            expected: SM2_SIGNATURE_LEN,
            actual: signature.len(),
        });
    }
    Signature::from_slice(signature).map_err(|_| CryptoError::MalformedSignature)
}

impl fmt::Debug for Sm2PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sm2PublicKey({})",
            hex::encode_upper(self.to_compressed())
        )
    }
}
