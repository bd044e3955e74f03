//! Key material wrapper: masked in `Debug`, zeroized on drop, read only through `expose`.

use core::fmt;

use zeroize::Zeroize;

use crate::{Algorithm, CryptoError, block};

/// `N` bytes of secret key material.
///
/// `Debug` prints only the length, so a key that ends up in a log line or a
/// panic message leaks nothing; the bytes are wiped when the value drops.
/// Code that really needs the bytes (a cipher, a serializer for a card image)
/// calls [`Key::expose`], which makes such places easy to find in review.
#[derive(Clone)]
pub struct Key<const N: usize>([u8; N]);

/// A single-DES key (3DES-profile session and TAC keys).
pub type Key8 = Key<8>;
/// A 16-byte key: master keys, diversified card keys, SM4 session keys.
pub type Key16 = Key<16>;
/// A 32-byte secret, e.g. an SM2 private scalar.
pub type Key32 = Key<32>;

impl<const N: usize> Key<N> {
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; N]) -> Self {
        Key(bytes)
    }

    /// Wraps key bytes from a slice that must be exactly `N` long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; N] = bytes.try_into().map_err(|_| CryptoError::InvalidLength {
            what: "key",
            expected: N,
            actual: bytes.len(),
        })?;
        Ok(Key(array))
    }

    /// Parses a key from hex (upper or lower case), as keys appear in specs and
    /// key ceremonies.
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let mut bytes =
            hex::decode(text.trim()).map_err(|_| CryptoError::InvalidHex { what: "key" })?;
        let key = Self::from_slice(&bytes);
        bytes.zeroize();
        key
    }

    /// The key bytes. Every call site is a place where key material leaves the
    /// wrapper; keep them few.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl Key<16> {
    /// Key check value: the first 3 bytes of a zero block encrypted under the
    /// key with the profile's cipher (2-key 3DES or SM4). Lets two parties
    /// confirm they hold the same key without showing it.
    pub fn kcv(&self, alg: Algorithm) -> [u8; 3] {
        let mut out = [0u8; 3];
        match alg {
            Algorithm::Tdes => out.copy_from_slice(&block::tdes_encrypt(self, &[0u8; 8])[..3]),
            Algorithm::Sm4 => out.copy_from_slice(&block::sm4_encrypt(self, &[0u8; 16])[..3]),
        }
        out
    }
}

impl Key<8> {
    /// Key check value under single DES: first 3 bytes of `E_K(0^8)`.
    pub fn kcv(&self) -> [u8; 3] {
        let mut out = [0u8; 3];
        out.copy_from_slice(&block::des_encrypt(self, &[0u8; 8])[..3]);
        out
    }
}

impl<const N: usize> Drop for Key<N> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<const N: usize> fmt::Debug for Key<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key<{N}>(***)")
    }
}

impl<const N: usize> PartialEq for Key<N> {
    /// Compares without an early exit, so timing does not reveal how many
    /// leading bytes match.
    fn eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl<const N: usize> Eq for Key<N> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_masks_key_bytes() {
        let key = Key16::from_hex("11223344556677889900AABBCCDDEEFF").unwrap();
        let printed = format!("{key:?}");
        assert_eq!(printed, "Key<16>(***)");
        assert!(!printed.contains("11"));
        assert_eq!(key.expose()[0], 0x11);
    }

    #[test]
    fn from_slice_rejects_wrong_length() {
        assert_eq!(
            Key16::from_slice(&[0u8; 15]),
            Err(CryptoError::InvalidLength {
                what: "key",
                expected: 16,
                actual: 15
            })
        );
        assert!(matches!(
            Key8::from_hex("zz"),
            Err(CryptoError::InvalidHex { .. })
        ));
    }

    #[test]
    fn equality_compares_all_bytes() {
        let a = Key8::from_bytes([1, 2, 3, 4, 5, 6, 7, 8]);
        let b = Key8::from_bytes([1, 2, 3, 4, 5, 6, 7, 9]);
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
    }
}
