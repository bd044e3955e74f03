//! Citizen notifications' rules, pure (issue 9, item 5): what a notice says in Chinese and in
//! English ([`Notice::render`]), the mobile number it goes to ([`Phone`], masked by default),
//! the message id a gateway deduplicates on ([`message_id`]), and when a failed delivery is
//! tried again ([`retry_delay_ms`]).
//!
//! No I/O, no clock: the platform's outbox stores what [`Notice::render`] returns and asks
//! [`retry_delay_ms`] when to try again.

use sm3::{Digest, Sm3};

/// A rendered SMS is at most this many characters (five long-message segments).
pub const SMS_CHARS_MAX: usize = 335;
/// Characters in one SMS segment when the text holds Chinese (UCS-2).
pub const SEGMENT_CHARS: usize = 67;
/// A delivery is tried at most this many times, then the notice is failed.
pub const ATTEMPTS_MAX: u32 = 8;
/// The first retry waits this long; each later one twice as long, up to [`RETRY_DELAY_MAX_MS`].
pub const RETRY_DELAY_FIRST_MS: i64 = 30_000;
pub const RETRY_DELAY_MAX_MS: i64 = 3_600_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoticeError {
    #[error("phone: not an 11-digit mainland mobile number")]
    BadPhone,
    #[error("language: {0:?} is neither zh-CN nor en")]
    BadLanguage(String),
    #[error("a notice's text is {0} characters, more than {SMS_CHARS_MAX}")]
    TooLong(usize),
}

/// The citizen's language for notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    #[default]
    ZhCn,
    En,
}

impl Language {
    pub fn parse(s: &str) -> Result<Self, NoticeError> {
        match s {
            "zh-CN" | "zh" => Ok(Language::ZhCn),
            "en" => Ok(Language::En),
            _ => Err(NoticeError::BadLanguage(s.chars().take(16).collect())),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Language::ZhCn => "zh-CN",
            Language::En => "en",
        }
    }
}

/// A mainland mobile number. `Debug` and [`Phone::masked`] show `138****5678`; the digits
/// need [`Phone::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    /// Eleven digits starting `1` then `3`–`9`; spaces, dashes and a leading `+86` are dropped.
    pub fn parse(s: &str) -> Result<Self, NoticeError> {
        let mut digits: String = s
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect::<String>();
        if let Some(rest) = digits.strip_prefix("+86") {
            digits = rest.to_string();
        }
        let b = digits.as_bytes();
        if b.len() != 11 || b[0] != b'1' || !(b'3'..=b'9').contains(&b[1]) {
            return Err(NoticeError::BadPhone);
        }
        if !b.iter().all(u8::is_ascii_digit) {
            return Err(NoticeError::BadPhone);
        }
        Ok(Phone(digits))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn masked(&self) -> String {
        format!("{}****{}", &self.0[..3], &self.0[7..])
    }
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

/// Why an auto-debit did not go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebitFailure {
    /// The online account held less than the bill; the platform tries again.
    InsufficientFunds,
    /// The bill is above the agreement's limit; the citizen pays it themselves.
    OverLimit,
    /// The last retry failed; the citizen pays it themselves.
    GaveUp,
}

/// What a citizen is told. Every variant holds no name, ID number or phone: only the biller,
/// the bill number and amounts. `Debug` masks a one-time code, so a notice in a log line
/// never carries one.
#[derive(Clone, PartialEq, Eq)]
pub enum Notice {
    /// A one-time sign-in code.
    OneTimeCode { code: String },
    /// A bill paid by auto-debit.
    BillDebited {
        biller: String,
        bill_number: String,
        period: String,
        amount_fen: i64,
    },
    /// An auto-debit that did not go through.
    BillDebitFailed {
        biller: String,
        bill_number: String,
        period: String,
        amount_fen: i64,
        failure: DebitFailure,
    },
    /// A bill paid by the citizen.
    BillPaid {
        biller: String,
        bill_number: String,
        amount_fen: i64,
    },
}

impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::OneTimeCode { .. } => f
                .debug_struct("OneTimeCode")
                .field("code", &"******")
                .finish(),
            Notice::BillDebited {
                biller,
                bill_number,
                period,
                amount_fen,
            } => f
                .debug_struct("BillDebited")
                .field("biller", biller)
                .field("bill_number", bill_number)
                .field("period", period)
                .field("amount_fen", amount_fen)
                .finish(),
            Notice::BillDebitFailed {
                biller,
                bill_number,
                period,
                amount_fen,
                failure,
            } => f
                .debug_struct("BillDebitFailed")
                .field("biller", biller)
                .field("bill_number", bill_number)
                .field("period", period)
                .field("amount_fen", amount_fen)
                .field("failure", failure)
                .finish(),
            Notice::BillPaid {
                biller,
                bill_number,
                amount_fen,
            } => f
                .debug_struct("BillPaid")
                .field("biller", biller)
                .field("bill_number", bill_number)
                .field("amount_fen", amount_fen)
                .finish(),
        }
    }
}

/// `4500` → `45.00`.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

impl Notice {
    /// The template's code, as stored beside the text.
    pub fn template(&self) -> &'static str {
        match self {
            Notice::OneTimeCode { .. } => "one_time_code",
            Notice::BillDebited { .. } => "bill_debited",
            Notice::BillDebitFailed { .. } => "bill_debit_failed",
            Notice::BillPaid { .. } => "bill_paid",
        }
    }

    /// The message in `lang`, signed with the sender's name, at most [`SMS_CHARS_MAX`]
    /// characters (longer parameters are cut, never the sentence).
    pub fn render(&self, lang: Language) -> Result<String, NoticeError> {
        let cut = |s: &str| s.chars().take(40).collect::<String>();
        let text = match (self, lang) {
            (Notice::OneTimeCode { code }, Language::ZhCn) => {
                format!(
                    "【市民卡】您的验证码是 {}，5 分钟内有效，请勿告诉他人。",
                    cut(code)
                )
            }
            (Notice::OneTimeCode { code }, Language::En) => format!(
                "[CityCard] Your code is {}. It is valid for 5 minutes; do not share it.",
                cut(code)
            ),
            (
                Notice::BillDebited {
                    biller,
                    bill_number,
                    period,
                    amount_fen,
                },
                Language::ZhCn,
            ) => format!(
                "【市民卡】您的{}账单 {}（{}）已自动扣款 {} 元。",
                cut(biller),
                cut(bill_number),
                cut(period),
                yuan(*amount_fen)
            ),
            (
                Notice::BillDebited {
                    biller,
                    bill_number,
                    period,
                    amount_fen,
                },
                Language::En,
            ) => format!(
                "[CityCard] {} bill {} ({}): {} yuan paid by auto-debit.",
                cut(biller),
                cut(bill_number),
                cut(period),
                yuan(*amount_fen)
            ),
            (
                Notice::BillDebitFailed {
                    biller,
                    bill_number,
                    period,
                    amount_fen,
                    failure,
                },
                Language::ZhCn,
            ) => {
                let why = match failure {
                    DebitFailure::InsufficientFunds => "账户余额不足，我们将稍后重试，请及时充值",
                    DebitFailure::OverLimit => "金额超过您设置的代扣限额，请自行缴费",
                    DebitFailure::GaveUp => "多次重试仍未成功，请自行缴费",
                };
                format!(
                    "【市民卡】您的{}账单 {}（{}）{} 元自动扣款未成功：{}。",
                    cut(biller),
                    cut(bill_number),
                    cut(period),
                    yuan(*amount_fen),
                    why
                )
            }
            (
                Notice::BillDebitFailed {
                    biller,
                    bill_number,
                    period,
                    amount_fen,
                    failure,
                },
                Language::En,
            ) => {
                let why = match failure {
                    DebitFailure::InsufficientFunds => {
                        "your balance is too low; we will try again, please top up"
                    }
                    DebitFailure::OverLimit => {
                        "the amount is above your auto-debit limit; please pay it yourself"
                    }
                    DebitFailure::GaveUp => "it failed after several tries; please pay it yourself",
                };
                format!(
                    "[CityCard] {} bill {} ({}): auto-debit of {} yuan failed: {}.",
                    cut(biller),
                    cut(bill_number),
                    cut(period),
                    yuan(*amount_fen),
                    why
                )
            }
            (
                Notice::BillPaid {
                    biller,
                    bill_number,
                    amount_fen,
                },
                Language::ZhCn,
            ) => format!(
                "【市民卡】您已缴纳{}账单 {}，金额 {} 元。",
                cut(biller),
                cut(bill_number),
                yuan(*amount_fen)
            ),
            (
                Notice::BillPaid {
                    biller,
                    bill_number,
                    amount_fen,
                },
                Language::En,
            ) => format!(
                "[CityCard] You paid {} bill {}: {} yuan.",
                cut(biller),
                cut(bill_number),
                yuan(*amount_fen)
            ),
        };
        let n = text.chars().count();
        if n > SMS_CHARS_MAX {
            return Err(NoticeError::TooLong(n));
        }
        Ok(text)
    }
}

impl Notice {
    /// The in-app copy (the portal's messages and the app's inbox) in `lang`. The same text
    /// as the SMS, except for a one-time code: the inbox says that a code was sent and when
    /// it lapses, never the code. The inbox is read behind a session, which is what the code
    /// protects (a code to set a forgotten password, shown to whoever holds a session on a
    /// shared computer, would hand over the account); the citizen who asked for it has the
    /// SMS, and the code dies in 5 minutes anyway. So the in-app row, kept for as long as the
    /// outbox, never holds a live code, and nothing has to mask it later.
    pub fn render_inbox(&self, lang: Language) -> Result<String, NoticeError> {
        match (self, lang) {
            (Notice::OneTimeCode { .. }, Language::ZhCn) => Ok(
                "【市民卡】已向您的手机发送验证码，5 分钟内有效。验证码只在短信中显示；如非本人操作，请尽快修改密码。"
                    .into(),
            ),
            (Notice::OneTimeCode { .. }, Language::En) => Ok(
                "[CityCard] A code was sent to your phone; it is valid for 5 minutes. The code is shown only in the SMS. If you did not ask for it, change your password."
                    .into(),
            ),
            _ => self.render(lang),
        }
    }
}

/// How many SMS segments `text` takes (UCS-2 when any character is outside ASCII).
pub fn segments(text: &str) -> usize {
    let n = text.chars().count();
    let (single, multi) = if text.is_ascii() {
        (160, 153)
    } else {
        (70, SEGMENT_CHARS)
    };
    if n <= single { 1 } else { n.div_ceil(multi) }
}

/// The id a gateway deduplicates on: 32 hex characters of SM3 over the notice's idempotency
/// key, so every retry of one notice, in any process, carries the same id.
pub fn message_id(key: &str) -> String {
    let d = Sm3::digest(key.as_bytes());
    hex::encode(&d[..16])
}

/// How long to wait after the `attempt`-th failed delivery (1-based) before the next, or
/// `None` when that was the last allowed ([`ATTEMPTS_MAX`]).
pub fn retry_delay_ms(attempt: u32) -> Option<i64> {
    if attempt == 0 || attempt >= ATTEMPTS_MAX {
        return None;
    }
    let d = RETRY_DELAY_FIRST_MS.saturating_mul(1i64 << (attempt - 1).min(20));
    Some(d.min(RETRY_DELAY_MAX_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_parse_and_mask() {
        let p = Phone::parse("+86 138-1234-5678").unwrap();
        assert_eq!(p.expose(), "13812345678");
        assert_eq!(p.masked(), "138****5678");
        assert_eq!(format!("{p:?}"), "Phone(138****5678)");
        for bad in [
            "",
            "1381234567",
            "12812345678",
            "138123456789",
            "1381234567x",
            "0371-1234567",
        ] {
            assert_eq!(Phone::parse(bad), Err(NoticeError::BadPhone), "{bad}");
        }
    }

    #[test]
    fn one_time_codes_stay_out_of_the_inbox_and_of_debug() {
        let n = Notice::OneTimeCode {
            code: "481516".into(),
        };
        for lang in [Language::ZhCn, Language::En] {
            assert!(n.render(lang).unwrap().contains("481516"));
            let inbox = n.render_inbox(lang).unwrap();
            assert!(!inbox.contains("481516"), "{inbox}");
            assert!(inbox.contains('5') && inbox.chars().count() <= SMS_CHARS_MAX);
        }
        assert!(n.render_inbox(Language::ZhCn).unwrap().contains("验证码"));
        assert!(!format!("{n:?}").contains("481516"), "{n:?}");
        // Other notices: the inbox says what the SMS says.
        let paid = Notice::BillPaid {
            biller: "water".into(),
            bill_number: "W1".into(),
            amount_fen: 4500,
        };
        assert_eq!(
            paid.render_inbox(Language::En).unwrap(),
            paid.render(Language::En).unwrap()
        );
        assert!(format!("{paid:?}").contains("W1"));
    }

    #[test]
    fn templates_render_in_both_languages() {
        let n = Notice::BillDebited {
            biller: "自来水".into(),
            bill_number: "W202611-001".into(),
            period: "2026-11".into(),
            amount_fen: 4_505,
        };
        assert_eq!(
            n.render(Language::ZhCn).unwrap(),
            "【市民卡】您的自来水账单 W202611-001（2026-11）已自动扣款 45.05 元。"
        );
        assert_eq!(
            n.render(Language::En).unwrap(),
            "[CityCard] 自来水 bill W202611-001 (2026-11): 45.05 yuan paid by auto-debit."
        );
        let f = Notice::BillDebitFailed {
            biller: "Gas".into(),
            bill_number: "G1".into(),
            period: "2026-11".into(),
            amount_fen: 7,
            failure: DebitFailure::OverLimit,
        };
        assert!(f.render(Language::En).unwrap().contains("0.07 yuan"));
        assert!(f.render(Language::ZhCn).unwrap().contains("代扣限额"));
        assert_eq!(f.template(), "bill_debit_failed");
        // Parameters are cut, so no input makes a message too long.
        let long = Notice::BillPaid {
            biller: "x".repeat(10_000),
            bill_number: "y".repeat(10_000),
            amount_fen: i64::MAX,
        };
        assert!(long.render(Language::En).unwrap().chars().count() <= SMS_CHARS_MAX);
        assert_eq!(
            Language::parse("fr"),
            Err(NoticeError::BadLanguage("fr".into()))
        );
        assert_eq!(Language::parse("zh-CN").unwrap().as_str(), "zh-CN");
    }

    #[test]
    fn segments_count_ucs2_and_ascii() {
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"中".repeat(70)), 1);
        assert_eq!(segments(&"中".repeat(71)), 2);
        assert_eq!(segments(&"中".repeat(135)), 3);
    }

    #[test]
    fn retries_back_off_then_stop() {
        assert_eq!(retry_delay_ms(0), None);
        assert_eq!(retry_delay_ms(1), Some(30_000));
        assert_eq!(retry_delay_ms(2), Some(60_000));
        assert_eq!(retry_delay_ms(3), Some(120_000));
        assert_eq!(retry_delay_ms(7), Some(RETRY_DELAY_MAX_MS.min(30_000 << 6)));
        assert_eq!(retry_delay_ms(ATTEMPTS_MAX), None);
    }

    #[test]
    fn message_ids_are_stable_and_distinct() {
        assert_eq!(message_id("k1"), message_id("k1"));
        assert_ne!(message_id("k1"), message_id("k2"));
        assert_eq!(message_id("k1").len(), 32);
    }
}
