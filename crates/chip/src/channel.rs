//! The byte pipe between a terminal and a card: the emulators implement it, a PC/SC reader will too.

use thiserror::Error;

use crate::{Card, Psam};

/// The channel could not carry an APDU (card removed, reader error).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("card channel: {0}")]
pub struct ChannelError(pub String);

/// Sends command APDU bytes to a card and returns its response bytes (data
/// followed by SW1 SW2).
pub trait CardChannel {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError>;
}

impl CardChannel for Card {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        Ok(self.process(command))
    }
}

impl CardChannel for Psam {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        Ok(self.process(command))
    }
}

impl<C: CardChannel + ?Sized> CardChannel for &mut C {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        (**self).transmit(command)
    }
}

/// Wraps a channel and keeps every exchange, for golden transcripts and
/// terminal logs.
#[derive(Debug)]
pub struct Recorder<C> {
    pub inner: C,
    /// `(command, response)` pairs in order.
    pub log: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<C> Recorder<C> {
    pub fn new(inner: C) -> Self {
        Recorder {
            inner,
            log: Vec::new(),
        }
    }
}

impl<C: CardChannel> CardChannel for Recorder<C> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let response = self.inner.transmit(command)?;
        self.log.push((command.to_vec(), response.clone()));
        Ok(response)
    }
}
