//! Block ciphers, MACs, key diversification and SM2 signatures of the citizen card profile.
//!
//! Everything here is a pure function of its inputs: no I/O, no clock, no
//! randomness of its own. The e-purse arithmetic follows `epurse.md` §3 (the
//! PBOC JR/T 0025 construction) for both algorithm profiles, 3DES (`00`) and
//! SM4 (`04`). Key bytes live in [`Key`], whose `Debug` prints a mask and
//! which zeroizes itself on drop; reading them takes an explicit
//! [`Key::expose`].

mod algorithm;
mod block;
mod error;
mod hash;
mod key;
mod line;
mod mac;
mod purse;
mod signature;
mod sm2_fast;

pub use algorithm::Algorithm;
pub use block::{
    cbc_decrypt, cbc_encrypt, des_decrypt, des_encrypt, ecb_decrypt, ecb_encrypt, sm4_decrypt,
    sm4_encrypt, tdes_decrypt, tdes_encrypt,
};
pub use error::CryptoError;
pub use hash::{SM3_LEN, sm3};
pub use key::{Key, Key8, Key16, Key32};
pub use line::{CHALLENGE_LEN, line_mac, retail_mac, sm4_cbc_mac_iv, test_maintenance_master};
pub use mac::{MAC_LEN, MacKey, cbc_mac_des, cbc_mac_sm4, pad_iso9797_m2};
pub use purse::{
    DivData, MasterKeys, PurseKeys, TransactionType, diversify, load_mac1, load_mac2,
    load_session_key, load_tac, purchase_mac1, purchase_mac2, purchase_session_key, purchase_tac,
    tac_key,
};
pub use signature::{
    SM2_DEFAULT_DISTID, SM2_PUBLIC_KEY_LEN, SM2_SIGNATURE_LEN, Sm2PublicKey, Sm2SigningKey,
};
