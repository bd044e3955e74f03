//! Chip card and PSAM emulators of the citizen card profile, and the terminal and host e-purse flows.
//!
//! Pure: no I/O, no clock, no randomness of its own (the card's generator
//! state is part of its image). The profile is `epurse.md`; the cryptography
//! is in the `crypto` crate.
//!
//! - [`CommandApdu`] / [`ResponseApdu`]: ISO 7816-4 APDUs.
//! - [`Card`]: the card emulator over a serializable [`CardImage`].
//! - [`Psam`]: the terminal's secure module.
//! - [`personalize`]: builds a card from a [`PersonalizationRecord`];
//!   [`personalize_transported`] from card keys wrapped under a transport key (HSM path).
//! - [`terminal`]: purchase, complex purchase and load flows over a [`CardChannel`].
//! - [`host`]: load authorization and TAC checks on the platform side.

mod apdu;
mod bcd;
mod card;
mod card_number;
mod channel;
pub mod fleet;
pub mod host;
pub mod image;
mod personalize;
mod psam;
pub mod records;
mod sw;
pub mod terminal;
mod terminal_id;
mod transported;

pub use apdu::{
    APDU_LEN_MAX, ApduCase, ApduError, CommandApdu, DATA_LEN_MAX, LE_MAX, ResponseApdu,
    ResponseError,
};
pub use bcd::{BcdDate, BcdError, BcdTime};
pub use card::{BALANCE_MAX_FEN, Card, KEY_INDEX, MAC_FAILURES_MAX, PIN_TRIES_MAX};
pub use card_number::{CARD_NUMBER_PREFIX, CardNumber, CardNumberError};
pub use channel::{CardChannel, ChannelError, Recorder};
pub use image::CardImage;
pub use personalize::{
    AppUsage, CHIP_BYTES, EF15_CARD_TYPE_OFFSET, FUNCTION_RECORD_LEN, FUNCTION_RECORDS,
    MaintenanceMaster, PersonalizationRecord, PersonalizeError, SFI_CITY_FUNCTIONS, SFI_EF15,
    SFI_HEALTH_SERVICES, SpaceReport, personalize, personalize_with_maintenance, space_report,
};
pub use psam::{Psam, PsamImage};
pub use records::CardType;
pub use sw::Sw;
pub use terminal_id::{TerminalId, TerminalIdError};
pub use transported::{
    TransportError, TransportedKey, TransportedMaintenanceKey, TransportedPurseKeys,
    personalize_transported,
};
