//! QR symbols of the text form (feature `qr`), at the spec's error-correction level M, as PNG
//! and SVG. The text is all QR alphanumeric characters (the prefix and Base45), so the encoder
//! uses alphanumeric mode: 296 characters fit version 10 at level M (capacity 311), one
//! version below the spec's "version 11 or 12", which counted more than it needed.

use qrcode::{Color, EcLevel, QrCode};
use thiserror::Error;

use crate::TEXT_LEN_MAX;

/// The spec's error-correction level (§Code, text form): M recovers about 15 % of the
/// symbol, enough for a scratched phone screen, and keeps the symbol small.
pub const QR_EC_LEVEL: EcLevel = EcLevel::M;
/// Light modules around the symbol, as ISO/IEC 18004 requires.
pub const QUIET_ZONE_MODULES: u32 = 4;
/// The largest pixel size of one module accepted for rendering.
pub const MODULE_PX_MAX: u32 = 32;

/// Why text could not be drawn as a symbol.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QrError {
    #[error("text of {0} bytes is longer than an e-code's {TEXT_LEN_MAX}")]
    TooLong(usize),
    #[error("module size {0} px is outside 1..={MODULE_PX_MAX}")]
    ModuleSize(u32),
    #[error("QR encoder: {0}")]
    Encode(String),
    #[error("PNG encoder: {0}")]
    Png(String),
}

/// One QR symbol.
pub struct QrSymbol {
    code: QrCode,
}

impl QrSymbol {
    /// Encodes `text` (an e-code's `ZZC1:` text) at level M.
    pub fn encode(text: &str) -> Result<QrSymbol, QrError> {
        if text.len() > TEXT_LEN_MAX {
            return Err(QrError::TooLong(text.len()));
        }
        let code = QrCode::with_error_correction_level(text.as_bytes(), QR_EC_LEVEL)
            .map_err(|e| QrError::Encode(e.to_string()))?;
        Ok(QrSymbol { code })
    }

    /// The symbol version (1–40).
    pub fn version(&self) -> i16 {
        match self.code.version() {
            qrcode::Version::Normal(v) | qrcode::Version::Micro(v) => v,
        }
    }

    /// The error-correction level's letter.
    pub fn ec_level(&self) -> char {
        match self.code.error_correction_level() {
            EcLevel::L => 'L',
            EcLevel::M => 'M',
            EcLevel::Q => 'Q',
            EcLevel::H => 'H',
        }
    }

    /// Modules per side, without the quiet zone.
    pub fn width(&self) -> usize {
        self.code.width()
    }

    /// The modules row by row, `true` where dark, without the quiet zone.
    pub fn dark_modules(&self) -> Vec<bool> {
        self.code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect()
    }

    /// Whether the module at (`x`, `y`) is dark.
    fn dark(&self, colors: &[Color], x: usize, y: usize) -> bool {
        colors[y * self.width() + x] == Color::Dark
    }

    /// A grayscale PNG, `module_px` pixels per module, with the quiet zone.
    pub fn to_png(&self, module_px: u32) -> Result<Vec<u8>, QrError> {
        if !(1..=MODULE_PX_MAX).contains(&module_px) {
            return Err(QrError::ModuleSize(module_px));
        }
        let colors = self.code.to_colors();
        let modules = self.width() as u32 + 2 * QUIET_ZONE_MODULES;
        let side = modules * module_px;
        let mut pixels = vec![0xFFu8; (side * side) as usize];
        for y in 0..side {
            for x in 0..side {
                let (mx, my) = (x / module_px, y / module_px);
                let inside = (QUIET_ZONE_MODULES..modules - QUIET_ZONE_MODULES).contains(&mx)
                    && (QUIET_ZONE_MODULES..modules - QUIET_ZONE_MODULES).contains(&my);
                if inside
                    && self.dark(
                        &colors,
                        (mx - QUIET_ZONE_MODULES) as usize,
                        (my - QUIET_ZONE_MODULES) as usize,
                    )
                {
                    pixels[(y * side + x) as usize] = 0;
                }
            }
        }
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| QrError::Png(e.to_string()))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| QrError::Png(e.to_string()))?;
        writer.finish().map_err(|e| QrError::Png(e.to_string()))?;
        Ok(out)
    }

    /// An SVG document, `module_px` user units per module, with the quiet zone.
    pub fn to_svg(&self, module_px: u32) -> Result<String, QrError> {
        if !(1..=MODULE_PX_MAX).contains(&module_px) {
            return Err(QrError::ModuleSize(module_px));
        }
        Ok(self
            .code
            .render::<qrcode::render::svg::Color>()
            .quiet_zone(true)
            .module_dimensions(module_px, module_px)
            .build())
    }
}
