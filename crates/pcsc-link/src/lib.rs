//! Puts the emulated card on a real PC/SC stack.
//!
//! - [`vpcd`]: a client of vsmartcard's vpcd driver that serves a [`chip::Card`] to pcscd, so
//!   any PC/SC application (opensc-tool, scriptor, a terminal) sees it in the
//!   "Virtual PCD" reader.
//! - `reader` (feature `pcsc`): `PcscChannel`, a [`chip::CardChannel`] over the `pcsc` crate.
//! - `daemon` (feature `pcsc`): finds or starts pcscd for tests and the bench.
//! - [`bench`]: purchase latency (median, p99) through whatever channel it is given.
//!
//! I/O lives here so that `chip` stays pure.

pub mod bench;
#[cfg(feature = "pcsc")]
pub mod daemon;
#[cfg(feature = "pcsc")]
pub mod reader;
pub mod vpcd;

#[cfg(feature = "pcsc")]
pub use reader::{PcscChannel, ReaderError};
pub use vpcd::{VirtualCard, VpcdConfig, VpcdError, VpcdHandle};
