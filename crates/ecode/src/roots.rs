//! Root keys: the terminal's provisioned public keys ([`RootKeys`]) and the platform's signing
//! ring ([`RootKeyRing`]) with rotation and withdrawal.

use std::collections::BTreeMap;

use crypto::{Key32, Sm2PublicKey, Sm2SigningKey};
use thiserror::Error;

use crate::pem::{self, PemError};
use crate::{Certificate, CertificateFields, RootKeyId};

/// The most root keys a terminal or the ring holds. Rotation adds one key every few months and
/// old ones leave once their last certificates expire, so a handful is normal.
pub const ROOT_KEYS_MAX: usize = 64;

/// Why a change to a set of root keys was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrustError {
    #[error("root key {0} is already provisioned with a different key")]
    Conflict(RootKeyId),
    #[error("root key {0} is not provisioned")]
    Unknown(RootKeyId),
    #[error("more than {ROOT_KEYS_MAX} root keys")]
    Full,
}

/// A provisioned root public key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Provisioned {
    key: Sm2PublicKey,
    withdrawn: bool,
}

/// The root public keys a terminal trusts, by id, each possibly withdrawn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootKeys {
    keys: BTreeMap<RootKeyId, Provisioned>,
}

impl RootKeys {
    /// No keys.
    pub fn new() -> RootKeys {
        RootKeys::default()
    }

    /// Provisions `key` under `id`. Provisioning the same key again is a no-op (and does not
    /// undo a withdrawal); another key under a known id is refused.
    pub fn insert(&mut self, id: RootKeyId, key: Sm2PublicKey) -> Result<(), TrustError> {
        if let Some(known) = self.keys.get(&id) {
            return if known.key == key {
                Ok(())
            } else {
                Err(TrustError::Conflict(id))
            };
        }
        if self.keys.len() >= ROOT_KEYS_MAX {
            return Err(TrustError::Full);
        }
        self.keys.insert(
            id,
            Provisioned {
                key,
                withdrawn: false,
            },
        );
        Ok(())
    }

    /// Marks a key withdrawn: certificates under it are refused from now on (step 2).
    pub fn withdraw(&mut self, id: RootKeyId) -> Result<(), TrustError> {
        let known = self.keys.get_mut(&id).ok_or(TrustError::Unknown(id))?;
        known.withdrawn = true;
        Ok(())
    }

    /// The key under `id` and whether it is withdrawn.
    pub fn get(&self, id: RootKeyId) -> Option<(&Sm2PublicKey, bool)> {
        self.keys.get(&id).map(|p| (&p.key, p.withdrawn))
    }

    /// The ids, ascending.
    pub fn ids(&self) -> impl Iterator<Item = RootKeyId> + '_ {
        self.keys.keys().copied()
    }

    /// How many keys are provisioned.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is provisioned.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key as `# key-id: N` and a `PUBLIC KEY` block, ascending by id. Withdrawal is not
    /// part of the file format: a terminal learns it separately.
    pub fn to_pem(&self) -> String {
        pem::write(self.keys.iter().map(|(id, p)| (*id, &p.key)))
    }

    /// Reads a PEM file as written by [`RootKeys::to_pem`] (or the spec's appendix); every
    /// key comes in not withdrawn.
    pub fn from_pem(text: &str) -> Result<RootKeys, PemError> {
        let mut keys = RootKeys::new();
        for (id, key) in pem::read(text, ROOT_KEYS_MAX)? {
            keys.keys.insert(
                id,
                Provisioned {
                    key,
                    withdrawn: false,
                },
            );
        }
        Ok(keys)
    }
}

/// Why the root key ring refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RingError {
    #[error("root key {0} is already in the ring")]
    Duplicate(RootKeyId),
    #[error("root key {0} is not in the ring")]
    Unknown(RootKeyId),
    #[error("root key {0} is withdrawn")]
    Withdrawn(RootKeyId),
    #[error("no current root key: add one and rotate to it")]
    NoCurrentKey,
    #[error("more than {ROOT_KEYS_MAX} root keys")]
    Full,
    #[error("not a valid SM2 secret key")]
    InvalidSecretKey,
}

/// A root key the platform holds.
#[derive(Debug)]
struct RingKey {
    signing: Sm2SigningKey,
    withdrawn: bool,
}

/// The platform's root keys: one current key signs new certificates; the others stay trusted
/// (so their certificates verify until they expire) unless withdrawn.
///
/// Rotation: [`add`](RootKeyRing::add) the new key, provision terminals with
/// [`public_keys`](RootKeyRing::public_keys) (so they know it before any certificate under it
/// is shown), then [`rotate_to`](RootKeyRing::rotate_to) it. The old key needs no action: its
/// certificates age out within their validity (7 days by default).
#[derive(Debug, Default)]
pub struct RootKeyRing {
    keys: BTreeMap<RootKeyId, RingKey>,
    current: Option<RootKeyId>,
}

impl RootKeyRing {
    /// An empty ring.
    pub fn new() -> RootKeyRing {
        RootKeyRing::default()
    }

    /// Adds a root key from its secret scalar (supplied by the key store). It does not sign
    /// until rotated to.
    pub fn add(&mut self, id: RootKeyId, secret: &Key32) -> Result<Sm2PublicKey, RingError> {
        if self.keys.contains_key(&id) {
            return Err(RingError::Duplicate(id));
        }
        if self.keys.len() >= ROOT_KEYS_MAX {
            return Err(RingError::Full);
        }
        let signing =
            Sm2SigningKey::from_secret(secret).map_err(|_| RingError::InvalidSecretKey)?;
        let public = signing.public_key();
        self.keys.insert(
            id,
            RingKey {
                signing,
                withdrawn: false,
            },
        );
        Ok(public)
    }

    /// Makes `id` the key that signs new certificates.
    pub fn rotate_to(&mut self, id: RootKeyId) -> Result<(), RingError> {
        let key = self.keys.get(&id).ok_or(RingError::Unknown(id))?;
        if key.withdrawn {
            return Err(RingError::Withdrawn(id));
        }
        self.current = Some(id);
        Ok(())
    }

    /// Withdraws a key (e.g. compromised): it signs nothing more, and terminals that learn of
    /// the withdrawal refuse every certificate under it. If it was current, there is no
    /// current key until the next rotation.
    pub fn withdraw(&mut self, id: RootKeyId) -> Result<(), RingError> {
        let key = self.keys.get_mut(&id).ok_or(RingError::Unknown(id))?;
        key.withdrawn = true;
        if self.current == Some(id) {
            self.current = None;
        }
        Ok(())
    }

    /// The key that signs new certificates.
    pub fn current(&self) -> Option<RootKeyId> {
        self.current
    }

    /// Signs a certificate for `fields` with the current key.
    pub fn issue(&self, fields: CertificateFields) -> Result<Certificate, RingError> {
        let id = self.current.ok_or(RingError::NoCurrentKey)?;
        let key = self.keys.get(&id).ok_or(RingError::Unknown(id))?;
        Ok(Certificate::sign(id, fields, &key.signing))
    }

    /// The public half for terminals, withdrawals included.
    pub fn public_keys(&self) -> RootKeys {
        let mut out = RootKeys::new();
        for (id, key) in &self.keys {
            // The ring holds at most ROOT_KEYS_MAX distinct ids, so neither error can occur.
            let inserted = out.insert(*id, key.signing.public_key());
            debug_assert!(inserted.is_ok());
            if key.withdrawn {
                let withdrawn = out.withdraw(*id);
                debug_assert!(withdrawn.is_ok());
            }
        }
        out
    }

    /// The public keys as a PEM file (see [`RootKeys::to_pem`]).
    pub fn to_pem(&self) -> String {
        self.public_keys().to_pem()
    }
}
