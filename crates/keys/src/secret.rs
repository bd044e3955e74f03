//! A holder for key bytes whose `Debug` shows a mask and whose memory is wiped on drop.

use zeroize::Zeroize;

pub struct Secret(Vec<u8>);

impl Secret {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }
    /// The key bytes. Only code in this crate calls it, to build cipher objects.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret([{} bytes masked])", self.0.len())
    }
}
