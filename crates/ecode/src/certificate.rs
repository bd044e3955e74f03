//! The certificate (123 bytes): the platform's root signature over a device key, card number,
//! validity, offline limit and use bits.

use core::fmt;

use chip::CardNumber;
use crypto::{SM2_PUBLIC_KEY_LEN, SM2_SIGNATURE_LEN, Sm2PublicKey, Sm2SigningKey};

use crate::{CERTIFICATE_LEN, CERTIFICATE_SIGNED_LEN, CERTIFICATE_VERSION, FormatError};

// Field offsets of §Certificate.
const AT_VERSION: usize = 0;
const AT_ROOT_KEY_ID: usize = 1;
const AT_CARD_NUMBER: usize = 5;
const AT_DEVICE_KEY: usize = 13;
const AT_NOT_BEFORE: usize = 46;
const AT_NOT_AFTER: usize = 50;
const AT_OFFLINE_LIMIT: usize = 54;
const AT_USES: usize = 58;
const AT_ROOT_SIGNATURE: usize = CERTIFICATE_SIGNED_LEN;

/// The 32-bit id of a platform root key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RootKeyId(pub u32);

impl fmt::Display for RootKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The certificate's use bits: bit 0 pay, bit 1 identity, bit 2 transit.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uses(u8);

impl Uses {
    /// No use allowed.
    pub const NONE: Uses = Uses(0);
    /// Payment (bit 0).
    pub const PAY: Uses = Uses(1);
    /// Identity (bit 1).
    pub const IDENTITY: Uses = Uses(2);
    /// Transit (bit 2).
    pub const TRANSIT: Uses = Uses(4);
    /// Every use format 1 defines.
    pub const ALL: Uses = Uses(7);

    /// Reads the use byte; bits above bit 2 are undefined in format 1 and refused.
    pub const fn from_bits(bits: u8) -> Result<Uses, FormatError> {
        if bits & !Uses::ALL.0 != 0 {
            return Err(FormatError::UnknownUses(bits));
        }
        Ok(Uses(bits))
    }

    /// The use byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every use in `other` is allowed here.
    pub const fn contains(self, other: Uses) -> bool {
        self.0 & other.0 == other.0
    }

    /// The uses of both.
    pub const fn union(self, other: Uses) -> Uses {
        Uses(self.0 | other.0)
    }
}

impl fmt::Debug for Uses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (Uses::PAY, "pay"),
            (Uses::IDENTITY, "identity"),
            (Uses::TRANSIT, "transit"),
        ]
        .into_iter()
        .filter(|(u, _)| self.contains(*u))
        .map(|(_, n)| n)
        .collect();
        write!(f, "Uses({})", names.join("|"))
    }
}

/// What a certificate says, apart from the root key that signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFields {
    /// The citizen card the phone stands in for.
    pub card_number: CardNumber,
    /// The phone's SM2 public key.
    pub device_public_key: Sm2PublicKey,
    /// First second of validity (unix seconds, inclusive).
    pub not_before: u32,
    /// Last second of validity (unix seconds, inclusive).
    pub not_after: u32,
    /// The most that codes under this certificate may spend offline, in fen.
    pub offline_limit_fen: u32,
    /// What codes under this certificate may be used for.
    pub uses: Uses,
}

/// A parsed, root-signed certificate. Parsing checks the form only; whether the root
/// signature is valid is verification step 2 ([`Certificate::verify_root_signature`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    root_key_id: RootKeyId,
    fields: CertificateFields,
    bytes: [u8; CERTIFICATE_LEN],
}

impl Certificate {
    /// Builds the certificate for `fields` under root key `root_key_id` and signs bytes
    /// `0..59` with `root_key`.
    pub fn sign(
        root_key_id: RootKeyId,
        fields: CertificateFields,
        root_key: &Sm2SigningKey,
    ) -> Certificate {
        Certificate::sign_with(root_key_id, fields, |message| root_key.sign(message))
    }

    /// Builds the certificate and has `sign` make the root signature (SM2 with SM3 and the
    /// default identifier, raw `r || s`) over bytes `0..59`: for a root key held by a key
    /// store, whose secret never comes out.
    pub fn sign_with(
        root_key_id: RootKeyId,
        fields: CertificateFields,
        sign: impl FnOnce(&[u8]) -> [u8; SM2_SIGNATURE_LEN],
    ) -> Certificate {
        let mut bytes = [0u8; CERTIFICATE_LEN];
        bytes[AT_VERSION] = CERTIFICATE_VERSION;
        bytes[AT_ROOT_KEY_ID..AT_CARD_NUMBER].copy_from_slice(&root_key_id.0.to_be_bytes());
        bytes[AT_CARD_NUMBER..AT_DEVICE_KEY].copy_from_slice(&fields.card_number.to_bcd());
        bytes[AT_DEVICE_KEY..AT_NOT_BEFORE]
            .copy_from_slice(&fields.device_public_key.to_compressed());
        bytes[AT_NOT_BEFORE..AT_NOT_AFTER].copy_from_slice(&fields.not_before.to_be_bytes());
        bytes[AT_NOT_AFTER..AT_OFFLINE_LIMIT].copy_from_slice(&fields.not_after.to_be_bytes());
        bytes[AT_OFFLINE_LIMIT..AT_USES].copy_from_slice(&fields.offline_limit_fen.to_be_bytes());
        bytes[AT_USES] = fields.uses.bits();
        let signature = sign(&bytes[..CERTIFICATE_SIGNED_LEN]);
        bytes[AT_ROOT_SIGNATURE..].copy_from_slice(&signature);
        Certificate {
            root_key_id,
            fields,
            bytes,
        }
    }

    /// Parses exactly 123 bytes: version `01`, a valid card number, a device key on the
    /// curve and defined use bits. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Certificate, FormatError> {
        let bytes: [u8; CERTIFICATE_LEN] =
            bytes.try_into().map_err(|_| FormatError::WrongLength {
                what: "certificate",
                expected: CERTIFICATE_LEN,
                actual: bytes.len(),
            })?;
        if bytes[AT_VERSION] != CERTIFICATE_VERSION {
            return Err(FormatError::UnknownVersion(bytes[AT_VERSION]));
        }
        let root_key_id = RootKeyId(u32::from_be_bytes(field(&bytes, AT_ROOT_KEY_ID)));
        let card_number = CardNumber::from_bcd(field(&bytes, AT_CARD_NUMBER))?;
        let device_key: [u8; SM2_PUBLIC_KEY_LEN] = field(&bytes, AT_DEVICE_KEY);
        // Only the compressed form is defined; `from_sec1` alone would also take other forms
        // of other lengths, but the field is fixed at 33 bytes, so a 02/03 prefix is implied.
        if !matches!(device_key[0], 0x02 | 0x03) {
            return Err(FormatError::DevicePublicKey);
        }
        let device_public_key =
            Sm2PublicKey::from_sec1(&device_key).map_err(|_| FormatError::DevicePublicKey)?;
        let fields = CertificateFields {
            card_number,
            device_public_key,
            not_before: u32::from_be_bytes(field(&bytes, AT_NOT_BEFORE)),
            not_after: u32::from_be_bytes(field(&bytes, AT_NOT_AFTER)),
            offline_limit_fen: u32::from_be_bytes(field(&bytes, AT_OFFLINE_LIMIT)),
            uses: Uses::from_bits(bytes[AT_USES])?,
        };
        Ok(Certificate {
            root_key_id,
            fields,
            bytes,
        })
    }

    /// The id of the root key that signed this certificate.
    pub fn root_key_id(&self) -> RootKeyId {
        self.root_key_id
    }

    /// The certified fields.
    pub fn fields(&self) -> &CertificateFields {
        &self.fields
    }

    /// The card number.
    pub fn card_number(&self) -> CardNumber {
        self.fields.card_number
    }

    /// The 123 bytes.
    pub fn as_bytes(&self) -> &[u8; CERTIFICATE_LEN] {
        &self.bytes
    }

    /// The bytes the root signature covers (`0..59`).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..CERTIFICATE_SIGNED_LEN]
    }

    /// The root signature, raw `r || s`.
    pub fn root_signature(&self) -> &[u8] {
        &self.bytes[AT_ROOT_SIGNATURE..]
    }

    /// Whether the root signature is valid under `root_public_key`.
    pub fn verify_root_signature(&self, root_public_key: &Sm2PublicKey) -> bool {
        root_public_key
            .verify(self.signed_bytes(), self.root_signature())
            .is_ok()
    }

    /// Whether `time` lies in `not_before ..= not_after`.
    pub fn is_valid_at(&self, time: u32) -> bool {
        self.fields.not_before <= time && time <= self.fields.not_after
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("root_key_id", &self.root_key_id)
            .field("fields", &self.fields)
            .field("root_signature", &hex::encode_upper(self.root_signature()))
            .finish()
    }
}

/// The `N` bytes at `at` of a fixed-size record; the offsets are constants of the layout.
pub(crate) fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

const _: () = assert!(AT_ROOT_SIGNATURE + SM2_SIGNATURE_LEN == CERTIFICATE_LEN);
const _: () = assert!(AT_DEVICE_KEY + SM2_PUBLIC_KEY_LEN == AT_NOT_BEFORE);
