//! A [`chip::CardChannel`] over PC/SC (the `pcsc` crate, libpcsclite): the terminal flows run
//! unchanged against a card in a real or virtual reader.

use std::ffi::CString;
use std::time::{Duration, Instant};

use chip::{CardChannel, ChannelError};
use pcsc::{Context, Protocols, Scope, ShareMode};
use thiserror::Error;

/// Why no channel could be opened.
#[derive(Debug, Error)]
pub enum ReaderError {
    #[error("PC/SC service unavailable ({0}); is pcscd running (apt-get install pcscd)?")]
    NoService(pcsc::Error),
    #[error("no PC/SC reader{}", match .0 { Some(n) => format!(" named like {n:?}"), None => String::new() })]
    NoReader(Option<String>),
    #[error("no card in reader {reader:?} within {timeout_ms} ms ({source})")]
    NoCard {
        reader: String,
        timeout_ms: u64,
        source: pcsc::Error,
    },
    #[error("PC/SC {call}: {source}")]
    Pcsc {
        call: &'static str,
        source: pcsc::Error,
    },
}

/// A connected card: shared mode, T=0 or T=1 as the card offers.
pub struct PcscChannel {
    reader: String,
    card: pcsc::Card,
    buf: Vec<u8>,
    // The context must outlive the card handle.
    _ctx: Context,
}

impl std::fmt::Debug for PcscChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscChannel")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

/// The readers pcscd knows.
pub fn list_readers() -> Result<Vec<String>, ReaderError> {
    let ctx = Context::establish(Scope::User).map_err(ReaderError::NoService)?;
    readers(&ctx)
}

fn readers(ctx: &Context) -> Result<Vec<String>, ReaderError> {
    match ctx.list_readers_owned() {
        Ok(r) => Ok(r
            .into_iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(source) => Err(ReaderError::Pcsc {
            call: "SCardListReaders",
            source,
        }),
    }
}

impl PcscChannel {
    /// Connects to the first reader whose name contains `reader` (or the first reader),
    /// waiting up to `timeout_ms` for a card to be present.
    pub fn connect(reader: Option<&str>, timeout_ms: u64) -> Result<Self, ReaderError> {
        let ctx = Context::establish(Scope::User).map_err(ReaderError::NoService)?;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let names = readers(&ctx)?;
            let chosen = names
                .iter()
                .find(|n| reader.is_none_or(|want| n.contains(want)))
                .cloned();
            let result = match &chosen {
                None => Err(None),
                Some(name) => {
                    let c_name = CString::new(name.as_str())
                        .map_err(|_| ReaderError::NoReader(Some(name.clone())))?;
                    ctx.connect(&c_name, ShareMode::Shared, Protocols::ANY)
                        .map_err(Some)
                }
            };
            match result {
                Ok(card) => {
                    return Ok(PcscChannel {
                        reader: chosen.unwrap_or_default(),
                        card,
                        buf: vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED],
                        _ctx: ctx,
                    });
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(match (chosen, e) {
                        (None, _) | (_, None) => ReaderError::NoReader(reader.map(String::from)),
                        (Some(name), Some(source)) => ReaderError::NoCard {
                            reader: name,
                            timeout_ms,
                            source,
                        },
                    });
                }
                Err(Some(
                    pcsc::Error::NoSmartcard
                    | pcsc::Error::RemovedCard
                    | pcsc::Error::UnpoweredCard
                    | pcsc::Error::ResetCard
                    | pcsc::Error::UnknownReader
                    | pcsc::Error::ReaderUnavailable
                    | pcsc::Error::SharingViolation,
                ))
                | Err(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(Some(source)) => {
                    return Err(ReaderError::Pcsc {
                        call: "SCardConnect",
                        source,
                    });
                }
            }
        }
    }

    /// The reader this channel talks through.
    pub fn reader(&self) -> &str {
        &self.reader
    }
}

impl CardChannel for PcscChannel {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.card
            .transmit(command, &mut self.buf)
            .map(<[u8]>::to_vec)
            .map_err(|e| ChannelError(format!("PC/SC transmit on {:?}: {e}", self.reader)))
    }
}
