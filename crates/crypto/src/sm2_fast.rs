//! Variable-time SM2 verification (GB/T 32918.2 §7, steps B1–B7), for public inputs only.
//!
//! Written here because the `sm2` crate's verification computes `[s]G + [t]P` with its
//! constant-time linear combination, which protects nothing when every input is public, and
//! offers no table for a public key that is used again and again (an exchange member's, an
//! e-code root's, a terminal's). This module computes the same equation from the crate's own
//! group arithmetic: the generator's multiple through the crate's basepoint table
//! (`precomputed-tables`), the key's through [`FixedBase`], a radix-16 table built once per key.
//! Nothing here touches a secret; signing stays in the `sm2` crate.
//!
//! The tests (`tests/vectors.rs` and this module's) check it against the crate's verification on
//! the standard's example and on random keys, messages and tampered signatures.

use sm2::elliptic_curve::PrimeField;
use sm2::elliptic_curve::group::Group;
use sm2::elliptic_curve::ops::{MulByGeneratorVartime, Reduce};
use sm2::elliptic_curve::point::AffineCoordinates;
use sm2::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sm3::{Digest, Sm3};

/// SM2's curve coefficients and generator, big-endian (GB/T 32918.5), as `Z_A` hashes them.
const A: [u8; 32] = hex32("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC");
const B: [u8; 32] = hex32("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93");
const GX: [u8; 32] = hex32("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7");
const GY: [u8; 32] = hex32("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0");

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not upper-case hex"),
    }
}

/// `Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)` (GB/T 32918.2 §5.5).
pub(crate) fn z_a(distid: &[u8], uncompressed: &[u8; 65]) -> [u8; 32] {
    let entl = u16::try_from(distid.len() * 8).expect("distinguishing id under 8 KiB");
    let mut h = Sm3::new();
    h.update(entl.to_be_bytes());
    h.update(distid);
    h.update(A);
    h.update(B);
    h.update(GX);
    h.update(GY);
    h.update(&uncompressed[1..]);
    h.finalize().into()
}

/// Windows of 4 bits in a 256-bit scalar, plus one for the carry of the signed recoding.
const WINDOWS: usize = 65;

/// `T[i][j] = (j + 1) · 16^i · P` for one public point `P`: a variable-base multiplication
/// becomes 65 additions (signed radix-16 digits in −8..=8).
pub(crate) struct FixedBase(Box<[[ProjectivePoint; 8]; WINDOWS]>);

impl FixedBase {
    pub(crate) fn new(point: &AffinePoint) -> Self {
        let mut rows = Box::new([[ProjectivePoint::IDENTITY; 8]; WINDOWS]);
        let mut base = ProjectivePoint::from(*point);
        for row in rows.iter_mut() {
            row[0] = base;
            for j in 1..8 {
                row[j] = row[j - 1] + base;
            }
            base = row[7].double();
        }
        FixedBase(rows)
    }

    /// `[k]P`, in variable time (k is public here: it is `r + s` of a signature).
    pub(crate) fn mul_vartime(&self, k: &Scalar) -> ProjectivePoint {
        let digits = signed_radix16(k);
        let mut acc = ProjectivePoint::IDENTITY;
        for (row, &d) in self.0.iter().zip(digits.iter()) {
            match d {
                1..=8 => acc += row[(d - 1) as usize],
                -8..=-1 => acc -= row[(-d - 1) as usize],
                _ => {}
            }
        }
        acc
    }
}

/// The scalar as 65 little-endian digits in −8..=8 whose weighted sum by 16^i is k.
fn signed_radix16(k: &Scalar) -> [i8; WINDOWS] {
    let bytes = k.to_repr();
    let mut d = [0i8; WINDOWS];
    for i in 0..32 {
        let b = bytes[31 - i];
        d[2 * i] = (b & 0x0f) as i8;
        d[2 * i + 1] = (b >> 4) as i8;
    }
    for i in 0..WINDOWS - 1 {
        let carry = (d[i] + 8) >> 4;
        d[i] -= carry << 4;
        d[i + 1] += carry;
    }
    d
}

/// Steps B4–B7 for a parsed signature: `e` is `SM3(Z_A || M)`; r and s are already known to lie
/// in [1, n−1] (the `Signature` type checks that when parsing).
pub(crate) fn verify_prehash(
    point: &AffinePoint,
    table: Option<&FixedBase>,
    digest: &[u8; 32],
    r: &Scalar,
    s: &Scalar,
) -> bool {
    let e = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*digest));
    let t = *r + s;
    if bool::from(t.is_zero()) {
        return false;
    }
    let sum = match table {
        Some(tab) => ProjectivePoint::mul_by_generator_vartime(s) + tab.mul_vartime(&t),
        None => ProjectivePoint::mul_by_generator_and_mul_add_vartime(
            s,
            &t,
            &ProjectivePoint::from(*point),
        ),
    };
    if bool::from(sum.is_identity()) {
        return false;
    }
    let x = sum.to_affine().x();
    *r == e + <Scalar as Reduce<FieldBytes>>::reduce(&x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our verification against the `sm2` crate's, on random keys and messages, with and
    /// without the key's table, for genuine signatures and for each kind of tampering.
    #[test]
    fn verifies_exactly_what_the_crate_verifies() {
        use crate::{Key32, Sm2PublicKey, Sm2SigningKey};
        use sm2::dsa::signature::Verifier;
        use sm2::dsa::{Signature, VerifyingKey};
        let mut seed = [0u8; 32];
        for i in 0..40u32 {
            seed = Sm3::digest([&seed[..], &i.to_be_bytes()].concat()).into();
            let signer = Sm2SigningKey::from_secret(&Key32::from_bytes(seed)).unwrap();
            let public = signer.public_key();
            let fresh = Sm2PublicKey::from_sec1(&public.to_compressed()).unwrap();
            fresh.precompute();
            let reference =
                VerifyingKey::from_sec1_bytes(crate::SM2_DEFAULT_DISTID, &public.to_compressed())
                    .unwrap();
            let msg = format!("message {i} of the exchange").into_bytes();
            let good = signer.sign(&msg);
            let mut bad_sig = good;
            bad_sig[(i as usize * 7) % 64] ^= 1 << (i % 8);
            let mut bad_msg = msg.clone();
            bad_msg[i as usize % msg.len()] ^= 0x20;
            for (m, sig) in [(&msg, good), (&msg, bad_sig), (&bad_msg, good)] {
                let theirs = Signature::from_slice(&sig)
                    .ok()
                    .is_some_and(|s| reference.verify(m, &s).is_ok());
                assert_eq!(public.verify(m, &sig).is_ok(), theirs, "key {i}");
                assert_eq!(fresh.verify(m, &sig).is_ok(), theirs, "key {i}, table");
            }
            assert!(public.verify(&msg, &good).is_ok());
            // A signature by another key over the same message.
            let other = Sm2SigningKey::from_secret(&Key32::from_bytes(Sm3::digest(seed).into()))
                .unwrap()
                .sign(&msg);
            assert!(fresh.verify(&msg, &other).is_err());
        }
    }

    #[test]
    fn the_table_multiplies_like_the_crate() {
        let p = (ProjectivePoint::GENERATOR * Scalar::from(77u64)).to_affine();
        let table = FixedBase::new(&p);
        let mut k = Scalar::from(1u64);
        for i in 0..200u64 {
            // Small, large, and the scalars around the recoding's carries.
            k = k * Scalar::from(0x1_0000_0001u64 + i) + Scalar::from(i);
            for cand in [k, -k, Scalar::from(i), Scalar::ZERO - Scalar::ONE] {
                assert_eq!(
                    table.mul_vartime(&cand).to_affine(),
                    (ProjectivePoint::from(p) * cand).to_affine()
                );
            }
        }
    }
}
