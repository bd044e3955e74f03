//! Reading an e-code from a camera frame (feature `scan`): the step a gate or counter scanner
//! does before the checks of [`crate::Verifier`].
//!
//! The frame is 8-bit luminance (the Y plane every camera delivers). Detection and decoding are
//! `rqrr`'s (a Rust port of quirc, the decoder many embedded readers use); what this module adds
//! is the scanner's policy:
//!
//! - frames are bounded (sides and pixel count) before any work;
//! - exactly one e-code must be in view: a second phone in the frame is refused rather than
//!   guessed at (which of the two would pay?);
//! - symbols that are not e-codes (a poster, a payment app's code) are ignored, so a code
//!   beside a poster still reads; a frame with only foreign symbols says so;
//! - a symbol that is found but cannot be read (glare, a scratch beyond level M's 15 %) is
//!   reported as such, so the gate can ask the citizen to hold the phone still.
//!
//! [`camera_frame`] (features `scan` and `qr`) draws a symbol the way a camera sees it
//! (rotated, low contrast, uneven light, sensor noise): the tests and the scan-to-decision
//! benchmark feed it to [`read_frame`], and an independent decoder (zbar) reads the same frames.

use thiserror::Error;

use crate::{TEXT_LEN_MAX, TEXT_PREFIX};

/// The largest side accepted, in pixels (a 4K sensor is 3840 × 2160).
pub const FRAME_SIDE_MAX: usize = 4096;
/// The largest frame accepted, in pixels (8.4 MP: 4K UHD).
pub const FRAME_PIXELS_MAX: usize = 3840 * 2160;
/// Symbols looked at in one frame; more is noise or an attack on the decoder's time.
pub const SYMBOLS_PER_FRAME_MAX: usize = 8;

/// One camera frame: `width × height` luminance bytes, row by row, 0 black, 255 white.
#[derive(Debug, Clone, Copy)]
pub struct GrayFrame<'a> {
    pub width: usize,
    pub height: usize,
    pub pixels: &'a [u8],
}

/// Why no e-code text came out of a frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScanError {
    #[error("frame of {width}×{height} holds {len} bytes, not {expected}")]
    Dimensions {
        width: usize,
        height: usize,
        len: usize,
        expected: usize,
    },
    #[error(
        "frame of {width}×{height} is outside the scanner's bounds (sides 1..={FRAME_SIDE_MAX}, at most {FRAME_PIXELS_MAX} pixels)"
    )]
    TooLarge { width: usize, height: usize },
    #[error("no QR symbol in view")]
    NoSymbol,
    #[error(
        "{found} QR symbol(s) in view, none of them an e-code (text not starting {TEXT_PREFIX})"
    )]
    NotAnEcode { found: usize },
    #[error("{0} e-codes in view: show one phone at a time")]
    Several(usize),
    #[error("a QR symbol is in view but cannot be read: {0}")]
    Unreadable(String),
    #[error("not a readable PNG image: {0}")]
    Image(String),
}

impl ScanError {
    /// A stable reason code, beside the verifier's, for counts and the console.
    pub fn code(&self) -> &'static str {
        match self {
            ScanError::Dimensions { .. } | ScanError::TooLarge { .. } | ScanError::Image(_) => {
                "SCAN_FRAME"
            }
            ScanError::NoSymbol => "SCAN_NO_SYMBOL",
            ScanError::NotAnEcode { .. } => "SCAN_NOT_ECODE",
            ScanError::Several(_) => "SCAN_SEVERAL",
            ScanError::Unreadable(_) => "SCAN_UNREADABLE",
        }
    }
}

/// A frame decoded from a PNG photo (any 8- or 16-bit colour type, reduced to luminance with
/// the BT.601 weights a camera's Y plane uses). The size is checked against the scanner's
/// bounds before the pixels are decoded.
pub fn frame_from_png(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), ScanError> {
    let image = |e: png::DecodingError| ScanError::Image(e.to_string());
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(image)?;
    let (width, height) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    if width == 0
        || height == 0
        || width > FRAME_SIDE_MAX
        || height > FRAME_SIDE_MAX
        || width * height > FRAME_PIXELS_MAX
    {
        return Err(ScanError::TooLarge { width, height });
    }
    let mut buffer = vec![0u8; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buffer).map_err(image)?;
    let channels = frame.color_type.samples();
    let luma = |p: &[u8]| -> u8 {
        match p.len() {
            1 | 2 => p[0],
            _ => {
                ((299 * u32::from(p[0]) + 587 * u32::from(p[1]) + 114 * u32::from(p[2])) / 1000)
                    as u8
            }
        }
    };
    let pixels = buffer[..frame.buffer_size()]
        .chunks_exact(channels)
        .map(luma)
        .collect::<Vec<u8>>();
    if pixels.len() != width * height {
        return Err(ScanError::Image(format!(
            "{} pixels decoded for {width}×{height}",
            pixels.len()
        )));
    }
    Ok((width, height, pixels))
}

/// Reads the one e-code in `frame` and returns its `ZZC1:` text, for
/// [`crate::Verifier::verify_text`].
pub fn read_frame(frame: GrayFrame<'_>) -> Result<String, ScanError> {
    let GrayFrame {
        width,
        height,
        pixels,
    } = frame;
    if width == 0
        || height == 0
        || width > FRAME_SIDE_MAX
        || height > FRAME_SIDE_MAX
        || width * height > FRAME_PIXELS_MAX
    {
        return Err(ScanError::TooLarge { width, height });
    }
    if pixels.len() != width * height {
        return Err(ScanError::Dimensions {
            width,
            height,
            len: pixels.len(),
            expected: width * height,
        });
    }
    // First pass: quirc's adaptive threshold, which copes with uneven light. Second pass, only
    // when the first finds no e-code: one global threshold (Otsu's), which copes with sensor
    // noise and grey edges the adaptive threshold breaks up. Gate scanners do the same: more
    // than one binarisation before giving up on a frame.
    let first = decide(
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * width + x])
            .detect_grids(),
    );
    match first {
        Ok(text) => return Ok(text),
        // Two phones seen: a second pass that missed one must not pick the other.
        Err(ScanError::Several(n)) => return Err(ScanError::Several(n)),
        Err(_) => {}
    }
    let smooth = box_blur_3x3(pixels, width, height);
    let threshold = otsu_threshold(&smooth);
    let second = decide(
        rqrr::PreparedImage::prepare_from_bitmap(width, height, |x, y| {
            smooth[y * width + x] <= threshold
        })
        .detect_grids(),
    );
    match (first, second) {
        (_, Ok(text)) => Ok(text),
        // Report the more telling of the two refusals.
        (Err(a), Err(b)) => Err(if a.rank() >= b.rank() { a } else { b }),
        (Ok(_), _) => unreachable!("returned above"),
    }
}

/// The one e-code among the symbols one pass found.
fn decide<G: rqrr::BitGrid>(grids: Vec<rqrr::Grid<G>>) -> Result<String, ScanError> {
    if grids.is_empty() {
        return Err(ScanError::NoSymbol);
    }
    let mut ecodes = Vec::new();
    let mut foreign = 0usize;
    let mut unreadable = None;
    for grid in grids.iter().take(SYMBOLS_PER_FRAME_MAX) {
        match grid.decode() {
            Ok((_, text)) if text.starts_with(TEXT_PREFIX) && text.len() <= TEXT_LEN_MAX => {
                if !ecodes.contains(&text) {
                    ecodes.push(text);
                }
            }
            Ok(_) => foreign += 1,
            Err(e) => unreadable = Some(e.to_string()),
        }
    }
    match ecodes.len() {
        1 => Ok(ecodes.pop().expect("one")),
        0 => match unreadable {
            Some(reason) => Err(ScanError::Unreadable(reason)),
            None => Err(ScanError::NotAnEcode { found: foreign }),
        },
        n => Err(ScanError::Several(n)),
    }
}

impl ScanError {
    /// How much a refusal tells the citizen: two phones beats an unreadable symbol beats a
    /// foreign one beats nothing seen.
    fn rank(&self) -> u8 {
        match self {
            ScanError::Several(_) => 4,
            ScanError::Unreadable(_) => 3,
            ScanError::NotAnEcode { .. } => 2,
            ScanError::NoSymbol => 1,
            ScanError::Dimensions { .. } | ScanError::TooLarge { .. } | ScanError::Image(_) => 0,
        }
    }
}

/// Each pixel the mean of its 3 × 3 neighbourhood (edges clamped): halves sensor noise.
fn box_blur_3x3(pixels: &[u8], width: usize, height: usize) -> Vec<u8> {
    // Horizontal then vertical sums of three.
    let mut rows = vec![0u16; pixels.len()];
    for y in 0..height {
        let row = &pixels[y * width..(y + 1) * width];
        for x in 0..width {
            let left = row[x.saturating_sub(1)];
            let right = row[(x + 1).min(width - 1)];
            rows[y * width + x] = u16::from(left) + u16::from(row[x]) + u16::from(right);
        }
    }
    let mut out = vec![0u8; pixels.len()];
    for y in 0..height {
        let (up, down) = (y.saturating_sub(1), (y + 1).min(height - 1));
        for x in 0..width {
            let sum = rows[up * width + x] + rows[y * width + x] + rows[down * width + x];
            out[y * width + x] = (sum / 9) as u8;
        }
    }
    out
}

/// Otsu's threshold: the grey level that best separates the frame's histogram into two classes.
fn otsu_threshold(pixels: &[u8]) -> u8 {
    let mut histogram = [0u64; 256];
    for &p in pixels {
        histogram[usize::from(p)] += 1;
    }
    let total = pixels.len() as f64;
    let sum_all: f64 = histogram
        .iter()
        .enumerate()
        .map(|(i, &n)| i as f64 * n as f64)
        .sum();
    let (mut weight_low, mut sum_low) = (0f64, 0f64);
    let (mut best, mut best_variance) = (0u8, -1f64);
    for (level, &n) in histogram.iter().enumerate() {
        weight_low += n as f64;
        if weight_low == 0.0 {
            continue;
        }
        let weight_high = total - weight_low;
        if weight_high == 0.0 {
            break;
        }
        sum_low += level as f64 * n as f64;
        let mean_low = sum_low / weight_low;
        let mean_high = (sum_all - sum_low) / weight_high;
        let variance = weight_low * weight_high * (mean_low - mean_high).powi(2);
        if variance > best_variance {
            best_variance = variance;
            best = level as u8;
        }
    }
    best
}

/// How [`camera_frame`] distorts a symbol.
#[cfg(feature = "qr")]
#[derive(Debug, Clone, Copy)]
pub struct CameraView {
    /// Frame size in pixels (a gate scanner: 1280 × 720).
    pub width: usize,
    pub height: usize,
    /// Pixels per module in the frame (a phone laid on a gate's scanner window, seen by a 720p
    /// sensor: 6–8; the decoder reads ~97 % of single frames from 5.5 up, fewer below).
    pub module_px: f32,
    /// Rotation of the phone, in degrees.
    pub angle_deg: f32,
    /// Where the symbol's centre sits, as fractions of the frame.
    pub centre: (f32, f32),
    /// Luminance of dark and light modules (a lit phone screen behind glass: about 50 and 200).
    pub dark: u8,
    pub light: u8,
    /// Sensor noise, ± this many levels.
    pub noise: u8,
    /// Seed of the noise, so a frame is reproducible.
    pub seed: u64,
}

#[cfg(feature = "qr")]
impl Default for CameraView {
    fn default() -> Self {
        CameraView {
            width: 1280,
            height: 720,
            module_px: 6.0,
            angle_deg: 7.0,
            centre: (0.45, 0.55),
            dark: 50,
            light: 200,
            noise: 20,
            seed: 1,
        }
    }
}

/// Draws `symbol` as a camera would see it through `view`: the symbol (with its quiet zone)
/// rotated and placed in a frame whose background is an uneven grey, each pixel the average of
/// the light falling on it, with sensor noise on every pixel.
#[cfg(feature = "qr")]
pub fn camera_frame(symbol: &crate::qr::QrSymbol, view: &CameraView) -> Vec<u8> {
    use crate::qr::QUIET_ZONE_MODULES;
    let modules = symbol.width();
    let dark = symbol.dark_modules();
    let side = (modules + 2 * QUIET_ZONE_MODULES as usize) as f32;
    let (sin, cos) = view.angle_deg.to_radians().sin_cos();
    let cx = view.centre.0 * view.width as f32;
    let cy = view.centre.1 * view.height as f32;
    let mut state = view.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = vec![0u8; view.width * view.height];
    for y in 0..view.height {
        for x in 0..view.width {
            // A camera pixel integrates the light falling on it: average 3 × 3 points of it,
            // each mapped back to symbol coordinates in modules (quiet zone included).
            let mut sum = 0u32;
            for sy in 0..3 {
                for sx in 0..3 {
                    let dx = x as f32 + (sx as f32 + 0.5) / 3.0 - cx;
                    let dy = y as f32 + (sy as f32 + 0.5) / 3.0 - cy;
                    let u = (cos * dx + sin * dy) / view.module_px + side / 2.0;
                    let v = (-sin * dx + cos * dy) / view.module_px + side / 2.0;
                    sum += u32::from(if (0.0..side).contains(&u) && (0.0..side).contains(&v) {
                        let (mu, mv) = (u as usize, v as usize);
                        let q = QUIET_ZONE_MODULES as usize;
                        let is_dark = (q..q + modules).contains(&mu)
                            && (q..q + modules).contains(&mv)
                            && dark[(mv - q) * modules + (mu - q)];
                        if is_dark { view.dark } else { view.light }
                    } else {
                        // The gate's housing: a grey that brightens towards the top left.
                        (150 - (60 * (x + y) / (view.width + view.height))) as u8
                    });
                }
            }
            let base = (sum / 9) as u8;
            // xorshift64: reproducible sensor noise without a random-number crate.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let span = 2 * i32::from(view.noise) + 1;
            let noise = (state % span as u64) as i32 - i32::from(view.noise);
            out[y * view.width + x] = (i32::from(base) + noise).clamp(0, 255) as u8;
        }
    }
    out
}
