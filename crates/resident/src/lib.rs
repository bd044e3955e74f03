//! The resident base database's domain types: resident ID numbers (GB 11643), the fields a
//! department reports about a resident, validation of feed rows, and masking for display.
//!
//! Everything here is pure: no storage, no clock (today's date is passed in), no I/O.

mod id_number;
mod mask;
mod record;

pub use id_number::{Gender, IdNumberError, ResidentId, region_name};
pub use mask::{mask_address, mask_id_number, mask_name, mask_phone};
pub use record::{
    ADDRESS_CHARS_MAX, Assistance, Field, FieldError, NAME_CHARS_MAX, Residency, ResidentFacts,
    RowError, Source, Student, parse_change, parse_row,
};
