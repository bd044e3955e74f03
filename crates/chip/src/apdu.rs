//! ISO/IEC 7816-4 command and response APDUs: parsing (cases 1, 2S/3S/4S, 2E/3E/4E) and encoding.

use thiserror::Error;

use crate::Sw;

/// Largest command data field (extended Lc).
pub const DATA_LEN_MAX: usize = 65_535;
/// Largest Le value: `0000` in an extended Le means 65 536 bytes.
pub const LE_MAX: u32 = 65_536;
/// Largest well-formed command APDU: header, extended Lc (3), data, extended
/// Le (2). Longer input is refused before any other look.
pub const APDU_LEN_MAX: usize = 4 + 3 + DATA_LEN_MAX + 2;
/// Largest response data field a short Le can ask for.
pub const SHORT_LE_MAX: u32 = 256;

/// Why bytes are not a command APDU.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApduError {
    /// Fewer than the 4 header bytes.
    #[error("APDU of {len} bytes is shorter than its 4-byte header")]
    TooShort { len: usize },
    /// More than [`APDU_LEN_MAX`] bytes.
    #[error("APDU of {len} bytes exceeds the {APDU_LEN_MAX}-byte bound")]
    TooLong { len: usize },
    /// The body length fits none of the ISO cases for the Lc it declares.
    #[error("APDU body of {body_len} bytes does not match its length fields")]
    LengthMismatch { body_len: usize },
    /// An extended Lc of zero (not allowed: case 3E/4E carry data).
    #[error("extended Lc of zero")]
    ZeroExtendedLc,
}

/// The ISO 7816-4 case of a command: whether it carries data and expects data,
/// and whether its lengths are short (1 byte) or extended (3/2 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApduCase {
    /// No data, no response data.
    Case1,
    /// Short Le only.
    Case2Short,
    /// Short Lc and data.
    Case3Short,
    /// Short Lc, data and Le.
    Case4Short,
    /// Extended Le only.
    Case2Extended,
    /// Extended Lc and data.
    Case3Extended,
    /// Extended Lc, data and Le.
    Case4Extended,
}

/// A parsed command APDU.
///
/// `le` is the number of response bytes asked for, already decoded: a short
/// `00` is 256, an extended `0000` is 65 536; `None` means no Le field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandApdu {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    pub le: Option<u32>,
    /// Whether the lengths were extended on the wire (kept so that encoding
    /// a parsed APDU reproduces its bytes).
    pub extended: bool,
}

impl CommandApdu {
    /// A case 1 command (header only).
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        CommandApdu {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
            extended: false,
        }
    }

    /// Sets the data field (Lc follows from its length).
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self.extended = self.needs_extended();
        self
    }

    /// Sets Le (1..=65 536 bytes).
    pub fn with_le(mut self, le: u32) -> Self {
        self.le = Some(le);
        self.extended = self.needs_extended();
        self
    }

    fn needs_extended(&self) -> bool {
        self.data.len() > 255 || self.le.is_some_and(|le| le > SHORT_LE_MAX)
    }

    /// Parses a command APDU. Never panics; every malformed input is an
    /// [`ApduError`].
    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        if bytes.len() > APDU_LEN_MAX {
            return Err(ApduError::TooLong { len: bytes.len() });
        }
        let [cla, ins, p1, p2, body @ ..] = bytes else {
            return Err(ApduError::TooShort { len: bytes.len() });
        };
        let header = CommandApdu::new(*cla, *ins, *p1, *p2);
        let mismatch = ApduError::LengthMismatch {
            body_len: body.len(),
        };
        match body {
            // Case 1.
            [] => Ok(header),
            // Case 2S.
            [le] => Ok(CommandApdu {
                le: Some(short_le(*le)),
                ..header
            }),
            // Extended forms start with a 00 byte and have at least 3 body bytes.
            [0x00, rest @ ..] if rest.len() >= 2 => {
                let (lc_or_le, rest) = rest.split_at(2);
                let n = usize::from(u16::from_be_bytes([lc_or_le[0], lc_or_le[1]]));
                if rest.is_empty() {
                    // Case 2E: the two bytes are Le.
                    return Ok(CommandApdu {
                        le: Some(extended_le(n)),
                        extended: true,
                        ..header
                    });
                }
                if n == 0 {
                    return Err(ApduError::ZeroExtendedLc);
                }
                if rest.len() == n {
                    Ok(CommandApdu {
                        data: rest.to_vec(),
                        extended: true,
                        ..header
                    })
                } else if rest.len() == n + 2 {
                    let (data, le) = rest.split_at(n);
                    let le = usize::from(u16::from_be_bytes([le[0], le[1]]));
                    Ok(CommandApdu {
                        data: data.to_vec(),
                        le: Some(extended_le(le)),
                        extended: true,
                        ..header
                    })
                } else {
                    Err(mismatch)
                }
            }
            // Short Lc (nonzero).
            [lc, rest @ ..] if *lc != 0 => {
                let n = usize::from(*lc);
                if rest.len() == n {
                    Ok(CommandApdu {
                        data: rest.to_vec(),
                        ..header
                    })
                } else if rest.len() == n + 1 {
                    let (data, le) = rest.split_at(n);
                    Ok(CommandApdu {
                        data: data.to_vec(),
                        le: Some(short_le(le[0])),
                        ..header
                    })
                } else {
                    Err(mismatch)
                }
            }
            _ => Err(mismatch),
        }
    }

    /// The ISO case of this command.
    pub fn case(&self) -> ApduCase {
        match (self.data.is_empty(), self.le.is_some(), self.extended) {
            (true, false, _) => ApduCase::Case1,
            (true, true, false) => ApduCase::Case2Short,
            (false, false, false) => ApduCase::Case3Short,
            (false, true, false) => ApduCase::Case4Short,
            (true, true, true) => ApduCase::Case2Extended,
            (false, false, true) => ApduCase::Case3Extended,
            (false, true, true) => ApduCase::Case4Extended,
        }
    }

    /// Encodes the command. Short lengths unless the data or Le need (or the
    /// parsed input used) extended ones.
    ///
    /// # Panics
    /// If the data field exceeds [`DATA_LEN_MAX`] or Le is 0 or above
    /// [`LE_MAX`]: such a value is a programming error, not input.
    pub fn to_bytes(&self) -> Vec<u8> {
        assert!(self.data.len() <= DATA_LEN_MAX, "APDU data field too long");
        if let Some(le) = self.le {
            assert!((1..=LE_MAX).contains(&le), "Le out of range");
        }
        let extended = self.extended || self.needs_extended();
        let mut out = Vec::with_capacity(4 + 3 + self.data.len() + 2);
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if !self.data.is_empty() {
            if extended {
                out.push(0x00);
                out.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
            } else {
                out.push(self.data.len() as u8);
            }
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            if extended {
                if self.data.is_empty() {
                    out.push(0x00);
                }
                // 65 536 wraps to 0000, as ISO encodes it.
                out.extend_from_slice(&((le % LE_MAX) as u16).to_be_bytes());
            } else {
                out.push((le % SHORT_LE_MAX) as u8);
            }
        }
        out
    }
}

fn short_le(byte: u8) -> u32 {
    if byte == 0 {
        SHORT_LE_MAX
    } else {
        u32::from(byte)
    }
}

fn extended_le(n: usize) -> u32 {
    if n == 0 { LE_MAX } else { n as u32 }
}

/// Why bytes are not a response APDU.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResponseError {
    /// A response needs at least SW1 SW2.
    #[error("response of {len} bytes lacks a status word")]
    TooShort { len: usize },
}

/// A response APDU: data and status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseApdu {
    pub data: Vec<u8>,
    pub sw: Sw,
}

impl ResponseApdu {
    /// A response with data and `9000`.
    pub fn ok(data: impl Into<Vec<u8>>) -> Self {
        ResponseApdu {
            data: data.into(),
            sw: Sw::OK,
        }
    }

    /// A response that is only a status word.
    pub fn status(sw: Sw) -> Self {
        ResponseApdu {
            data: Vec::new(),
            sw,
        }
    }

    /// Splits response bytes into data and SW.
    pub fn parse(bytes: &[u8]) -> Result<Self, ResponseError> {
        match bytes {
            [data @ .., sw1, sw2] => Ok(ResponseApdu {
                data: data.to_vec(),
                sw: Sw(u16::from_be_bytes([*sw1, *sw2])),
            }),
            _ => Err(ResponseError::TooShort { len: bytes.len() }),
        }
    }

    /// Data followed by SW1 SW2.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(hex_str: &str) -> Result<CommandApdu, ApduError> {
        CommandApdu::parse(&hex::decode(hex_str.replace(' ', "")).unwrap())
    }

    #[test]
    fn parses_every_case_and_round_trips() {
        let cases = [
            ("00A40000", ApduCase::Case1, 0, None),
            ("00B0950000", ApduCase::Case2Short, 0, Some(256)),
            ("00B095001E", ApduCase::Case2Short, 0, Some(30)),
            ("00A40000023F00", ApduCase::Case3Short, 2, None),
            (
                "805001020B0100000001112233445566 0F",
                ApduCase::Case4Short,
                11,
                Some(15),
            ),
            ("00B00000000100", ApduCase::Case2Extended, 0, Some(256)),
            ("00B00000000000", ApduCase::Case2Extended, 0, Some(65_536)),
            ("00D60000000003AABBCC", ApduCase::Case3Extended, 3, None),
            (
                "00D60000000003AABBCC0000",
                ApduCase::Case4Extended,
                3,
                Some(65_536),
            ),
        ];
        for (text, case, lc, le) in cases {
            let bytes = hex::decode(text.replace(' ', "")).unwrap();
            let apdu = CommandApdu::parse(&bytes).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(apdu.case(), case, "{text}");
            assert_eq!(apdu.data.len(), lc, "{text}");
            assert_eq!(apdu.le, le, "{text}");
            assert_eq!(apdu.to_bytes(), bytes, "{text} must re-encode to itself");
        }
    }

    #[test]
    fn rejects_malformed_lengths() {
        assert_eq!(parse("00A400"), Err(ApduError::TooShort { len: 3 }));
        assert_eq!(parse(""), Err(ApduError::TooShort { len: 0 }));
        // Short Lc 2 with 1 byte of data.
        assert_eq!(
            parse("00A40000023F"),
            Err(ApduError::LengthMismatch { body_len: 2 })
        );
        // Short Lc 1 with 3 bytes after it.
        assert_eq!(
            parse("00A4000001AABBCC"),
            Err(ApduError::LengthMismatch { body_len: 4 })
        );
        // 00 then one byte: neither short nor extended.
        assert_eq!(
            parse("00A400000000"),
            Err(ApduError::LengthMismatch { body_len: 2 })
        );
        assert_eq!(parse("00A40000000000AA"), Err(ApduError::ZeroExtendedLc));
        assert_eq!(
            parse("00A40000000002AA"),
            Err(ApduError::LengthMismatch { body_len: 4 })
        );
    }

    #[test]
    fn length_bound_holds_on_both_sides() {
        let mut max = vec![0x00, 0xD6, 0x00, 0x00, 0x00, 0xFF, 0xFF];
        max.extend(std::iter::repeat_n(0xAB, DATA_LEN_MAX));
        max.extend_from_slice(&[0x00, 0x00]);
        assert_eq!(max.len(), APDU_LEN_MAX);
        let apdu = CommandApdu::parse(&max).unwrap();
        assert_eq!(apdu.case(), ApduCase::Case4Extended);
        max.push(0);
        assert_eq!(
            CommandApdu::parse(&max),
            Err(ApduError::TooLong {
                len: APDU_LEN_MAX + 1
            })
        );
    }

    #[test]
    fn builder_picks_extended_only_when_needed() {
        let short = CommandApdu::new(0, 0xB0, 0x95, 0).with_le(256);
        assert_eq!(short.to_bytes(), vec![0, 0xB0, 0x95, 0, 0]);
        let ext = CommandApdu::new(0, 0xB0, 0, 0).with_le(257);
        assert_eq!(ext.to_bytes(), vec![0, 0xB0, 0, 0, 0, 0x01, 0x01]);
        let data = CommandApdu::new(0, 0xD6, 0, 0).with_data(vec![1u8; 300]);
        assert_eq!(&data.to_bytes()[4..7], &[0, 0x01, 0x2C]);
    }

    #[test]
    fn response_parse_and_encode() {
        let r = ResponseApdu::parse(&[1, 2, 0x90, 0x00]).unwrap();
        assert_eq!(r, ResponseApdu::ok(vec![1, 2]));
        assert_eq!(r.to_bytes(), vec![1, 2, 0x90, 0x00]);
        assert_eq!(
            ResponseApdu::parse(&[0x90]),
            Err(ResponseError::TooShort { len: 1 })
        );
        assert_eq!(Sw::pin_tries_left(2), Sw(0x63C2));
    }
}
