//! A vpcd client: serves a [`chip::Card`] to pcscd's virtual reader driver (vsmartcard-vpcd)
//! over its TCP socket protocol, saving the card image after every command that changed it.
//!
//! Protocol (vsmartcard `vpcd`): the driver listens (Debian: 127.0.0.1:35963, from
//! `/etc/reader.conf.d/vpcd`); the virtual card connects. Every message in both directions is
//! a 2-byte big-endian length and a payload. A 1-byte payload from the driver is a control
//! code — 0 power off, 1 power on, 2 reset, 4 get ATR (answered with the ATR); anything
//! longer is a command APDU, answered with the response APDU.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chip::{APDU_LEN_MAX, Card, CardImage};
use thiserror::Error;

/// The driver's port in Debian's `/etc/reader.conf.d/vpcd` (`CHANNELID 0x8C7B`).
pub const VPCD_PORT: u16 = 35963;
/// The ATR the virtual card answers: direct convention, T=1 only, no historical bytes
/// (`3B 80 80 01 01`), so pcscd speaks T=1 and passes case 4 APDUs through unchanged.
pub const ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];
/// How often a blocked read wakes up to look at the stop flag.
const POLL_MS: u64 = 100;

/// Where to connect and what to accept.
#[derive(Debug, Clone)]
pub struct VpcdConfig {
    pub addr: SocketAddr,
    /// Longest frame accepted from the driver; longer frames end the connection. Defaults to
    /// the longest command APDU ([`APDU_LEN_MAX`]).
    pub frame_len_max: usize,
    /// How long [`spawn`] keeps retrying the connection while pcscd loads its driver.
    pub connect_timeout_ms: u64,
}

impl Default for VpcdConfig {
    fn default() -> Self {
        VpcdConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], VPCD_PORT)),
            frame_len_max: APDU_LEN_MAX,
            connect_timeout_ms: 10_000,
        }
    }
}

/// Why the vpcd link stopped.
#[derive(Debug, Error)]
pub enum VpcdError {
    #[error(
        "cannot connect to the vpcd driver at {addr} within {timeout_ms} ms ({source}); is pcscd \
         running with vsmartcard-vpcd installed (apt-get install pcscd vsmartcard-vpcd)?"
    )]
    Connect {
        addr: SocketAddr,
        timeout_ms: u64,
        source: std::io::Error,
    },
    #[error("vpcd frame of {len} bytes exceeds the {max}-byte bound")]
    FrameTooLong { len: usize, max: usize },
    #[error("empty vpcd frame")]
    EmptyFrame,
    #[error("unknown vpcd control code {0}")]
    UnknownControl(u8),
    #[error("vpcd socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("saving the card image to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the card does with one frame (pure, so it is tested without sockets).
#[derive(Debug, PartialEq, Eq)]
pub enum FrameReply {
    /// Send these bytes back.
    Send(Vec<u8>),
    /// Control codes other than get-ATR are not answered.
    Nothing,
}

/// A card behind the vpcd protocol, with the file its image is saved to.
pub struct VirtualCard {
    card: Card,
    image_path: Option<PathBuf>,
    powered: bool,
}

impl std::fmt::Debug for VirtualCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualCard")
            .field("image_path", &self.image_path)
            .field("powered", &self.powered)
            .finish_non_exhaustive()
    }
}

impl VirtualCard {
    /// `image_path`: where to save the image after state changes (`None`: keep in memory).
    pub fn new(card: Card, image_path: Option<PathBuf>) -> Self {
        VirtualCard {
            card,
            image_path,
            powered: false,
        }
    }

    /// Loads a card image from its JSON file; changes are saved back to it.
    pub fn from_file(path: &Path) -> Result<Self, VpcdError> {
        let text = std::fs::read_to_string(path).map_err(|source| VpcdError::Save {
            path: path.to_path_buf(),
            source,
        })?;
        let image = CardImage::from_json(&text).map_err(|e| VpcdError::Save {
            path: path.to_path_buf(),
            source: std::io::Error::new(ErrorKind::InvalidData, e),
        })?;
        Ok(VirtualCard::new(
            Card::from_image(image),
            Some(path.to_path_buf()),
        ))
    }

    pub fn card(&self) -> &Card {
        &self.card
    }

    pub fn into_card(self) -> Card {
        self.card
    }

    /// Handles one frame payload from the driver.
    pub fn handle(&mut self, frame: &[u8]) -> Result<FrameReply, VpcdError> {
        match frame {
            [] => Err(VpcdError::EmptyFrame),
            [0] => {
                self.powered = false;
                self.card.reset();
                Ok(FrameReply::Nothing)
            }
            [1] | [2] => {
                self.powered = true;
                self.card.reset();
                Ok(FrameReply::Nothing)
            }
            [4] => Ok(FrameReply::Send(ATR.to_vec())),
            [code] => Err(VpcdError::UnknownControl(*code)),
            apdu => {
                let before = self.card.image().clone();
                let response = self.card.process(apdu);
                if self.card.image() != &before {
                    self.save()?;
                }
                Ok(FrameReply::Send(response))
            }
        }
    }

    /// Writes the image atomically: temporary file, fsync, rename.
    fn save(&self) -> Result<(), VpcdError> {
        let Some(path) = &self.image_path else {
            return Ok(());
        };
        let err = |source| VpcdError::Save {
            path: path.clone(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(self.card.image().to_json().as_bytes())
            .map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

/// Reads one frame; `Ok(None)` when the stop flag was raised or the driver closed.
fn read_frame(
    stream: &mut TcpStream,
    max: usize,
    stop: &AtomicBool,
) -> Result<Option<Vec<u8>>, VpcdError> {
    let mut len = [0u8; 2];
    if !read_full(stream, &mut len, stop)? {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes(len));
    if len > max {
        return Err(VpcdError::FrameTooLong { len, max });
    }
    let mut payload = vec![0u8; len];
    if !read_full(stream, &mut payload, stop)? {
        return Ok(None);
    }
    Ok(Some(payload))
}

/// Asks the kernel to acknowledge received data at once instead of delaying the ACK (Linux
/// `TCP_QUICKACK`, which the kernel clears again on its own, so it is re-armed after every
/// read).
///
/// Why: the vpcd driver (vsmartcard `vpcd.c`, `sendToVICC`) writes each frame as two `send`
/// calls — the 2-byte length, then the payload — on a socket without `TCP_NODELAY`. Nagle's
/// algorithm holds the payload until the length segment is acknowledged, and Linux delays
/// that ACK by up to 40 ms: every APDU (and every presence poll by pcscd) paid ~40 ms, a
/// five-APDU purchase ~230 ms. An immediate ACK releases the payload within microseconds.
/// Elsewhere this is a no-op (the delay is then whatever the platform's delayed ACK is).
fn quick_ack(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        // Best effort: a failure only costs latency, never correctness.
        let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

/// Fills `buf`, waking every [`POLL_MS`] to check `stop`. `false`: stopped or closed.
fn read_full(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> Result<bool, VpcdError> {
    let mut filled = 0;
    while filled < buf.len() {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                filled += n;
                quick_ack(stream);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> Result<(), VpcdError> {
    let len = u16::try_from(payload.len()).map_err(|_| VpcdError::FrameTooLong {
        len: payload.len(),
        max: usize::from(u16::MAX),
    })?;
    let mut frame = Vec::with_capacity(2 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)?;
    Ok(())
}

/// Serves `card` on a connected stream until the driver closes it or `stop` is raised.
pub fn serve(
    stream: &mut TcpStream,
    card: &mut VirtualCard,
    config: &VpcdConfig,
    stop: &AtomicBool,
) -> Result<(), VpcdError> {
    stream.set_read_timeout(Some(Duration::from_millis(POLL_MS)))?;
    stream.set_nodelay(true)?;
    quick_ack(stream);
    while let Some(frame) = read_frame(stream, config.frame_len_max, stop)? {
        if let FrameReply::Send(reply) = card.handle(&frame)? {
            write_frame(stream, &reply)?;
        }
    }
    Ok(())
}

/// Connects to the driver, retrying until `config.connect_timeout_ms` (pcscd may still be
/// loading the driver).
pub fn connect(config: &VpcdConfig) -> Result<TcpStream, VpcdError> {
    let deadline = Instant::now() + Duration::from_millis(config.connect_timeout_ms);
    loop {
        match TcpStream::connect_timeout(&config.addr, Duration::from_millis(500)) {
            Ok(s) => return Ok(s),
            Err(source) if Instant::now() >= deadline => {
                return Err(VpcdError::Connect {
                    addr: config.addr,
                    timeout_ms: config.connect_timeout_ms,
                    source,
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A card being served on a background thread.
#[derive(Debug)]
pub struct VpcdHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(VirtualCard, Result<(), VpcdError>)>,
}

impl VpcdHandle {
    /// Removes the card from the reader (closes the socket) and returns it with the reason
    /// the link ended (`Ok` for a requested stop or a close by the driver).
    pub fn stop(self) -> (VirtualCard, Result<(), VpcdError>) {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Connects (with retries) and serves `card` on a background thread.
pub fn spawn(card: VirtualCard, config: VpcdConfig) -> Result<VpcdHandle, VpcdError> {
    let mut stream = connect(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("vpcd-card".into())
        .spawn(move || {
            let mut card = card;
            let result = serve(&mut stream, &mut card, &config, &flag);
            (card, result)
        })?;
    Ok(VpcdHandle { stop, thread })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn blank_card() -> Card {
        // An image from JSON is the cheapest card without test fixtures; any personalized
        // card would do. Build one the way the chip tests do.
        let start = chip::BcdDate::parse("20250101").unwrap();
        let record = chip::PersonalizationRecord {
            card_number: chip::CardNumber::parse("4101000000000018").unwrap(),
            holder_name: "Zhang San".into(),
            id_number: "41010219900101123X".into(),
            card_type: chip::CardType::Ordinary,
            start_date: start,
            expiry_date: start.plus_years(10).unwrap(),
            algorithm: crypto::Algorithm::Tdes,
            employee: false,
            pin: "123456".into(),
            rng_seed: 7,
        };
        chip::personalize(&record, &crypto::MasterKeys::test_set()).unwrap()
    }

    #[test]
    fn control_codes_and_apdus() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        let mut vc = VirtualCard::new(blank_card(), Some(path.clone()));
        assert_eq!(vc.handle(&[4]).unwrap(), FrameReply::Send(ATR.to_vec()));
        assert_eq!(vc.handle(&[1]).unwrap(), FrameReply::Nothing);
        assert!(matches!(vc.handle(&[9]), Err(VpcdError::UnknownControl(9))));
        assert!(matches!(vc.handle(&[]), Err(VpcdError::EmptyFrame)));
        let select = [
            0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0, 0, 0x06, 0x32, 0x01, 0x01, 0x05,
        ];
        let FrameReply::Send(r) = vc.handle(&select).unwrap() else {
            panic!("no reply")
        };
        assert_eq!(r[r.len() - 2..], [0x90, 0x00]);
        // SELECT changes no persistent state: nothing written yet.
        assert!(!path.exists());
        // GET CHALLENGE advances the card's generator, which is image state: saved.
        vc.handle(&[0x00, 0x84, 0x00, 0x00, 0x04]).unwrap();
        let saved = CardImage::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(&saved, vc.card().image());
        let reloaded = VirtualCard::from_file(&path).unwrap();
        assert_eq!(reloaded.card().image(), vc.card().image());
    }

    #[test]
    fn frames_over_the_bound_end_the_link() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = VpcdConfig {
            addr: listener.local_addr().unwrap(),
            frame_len_max: 300,
            connect_timeout_ms: 2_000,
        };
        let handle = spawn(VirtualCard::new(blank_card(), None), config).unwrap();
        let (mut driver, _) = listener.accept().unwrap();
        // GET ATR round trip over the socket.
        driver.write_all(&[0, 1, 4]).unwrap();
        let mut reply = [0u8; 7];
        driver.read_exact(&mut reply).unwrap();
        assert_eq!(reply, [0, 5, 0x3B, 0x80, 0x80, 0x01, 0x01]);
        // A frame one byte over the bound.
        driver.write_all(&301u16.to_be_bytes()).unwrap();
        driver.write_all(&[0u8; 301]).unwrap();
        // Wait for the card side to end the link on its own (the socket closes; with unread
        // bytes it may reset) before stopping: raising the stop flag at once could win the
        // race against reading the length and end the link as a requested stop.
        let mut rest = [0u8; 1];
        assert_eq!(driver.read(&mut rest).unwrap_or(0), 0);
        let (_, result) = handle.stop();
        assert!(
            matches!(result, Err(VpcdError::FrameTooLong { len: 301, max: 300 })),
            "{result:?}"
        );
    }

    #[test]
    fn a_frame_at_the_bound_is_served() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = VpcdConfig {
            addr: listener.local_addr().unwrap(),
            frame_len_max: 300,
            connect_timeout_ms: 2_000,
        };
        let handle = spawn(VirtualCard::new(blank_card(), None), config).unwrap();
        let (mut driver, _) = listener.accept().unwrap();
        // 300 bytes: header, short Lc of 0xFF... not a valid APDU, so the card answers 6700.
        let mut frame = 300u16.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0x80; 300]);
        driver.write_all(&frame).unwrap();
        let mut reply = [0u8; 4];
        driver.read_exact(&mut reply).unwrap();
        assert_eq!(reply[..2], [0, 2]);
        drop(driver);
        let (_, result) = handle.stop();
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn connect_failure_names_the_packages() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = connect(&VpcdConfig {
            addr,
            frame_len_max: APDU_LEN_MAX,
            connect_timeout_ms: 200,
        })
        .unwrap_err();
        assert!(err.to_string().contains("vsmartcard-vpcd"), "{err}");
    }
}
