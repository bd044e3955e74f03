//! SM3 hash (GB/T 32905).

use sm3::{Digest, Sm3};

/// Length of an SM3 digest in bytes.
pub const SM3_LEN: usize = 32;

/// SM3 digest of `data`.
pub fn sm3(data: &[u8]) -> [u8; SM3_LEN] {
    Sm3::digest(data).into()
}
