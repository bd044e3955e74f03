//! Bills and auto-debit (公共事业缴费, issue 9 item 4), pure: the kinds of biller, one bill's
//! fields ([`BillLine::parse`]), a biller's bill file ([`parse_bill_file`]: CSV, every bad line
//! named with its number, nothing accepted from a file with a bad line), the auto-debit
//! decision against an agreement's limit ([`decide`]), when a debit refused for funds is tried
//! again ([`retry_delay_ms`]), and the biller's payment file ([`payment_file`]).

use sm3::{Digest, Sm3};
use std::collections::HashSet;

/// One bill is at most this much (50,000 yuan).
pub const BILL_FEN_MAX: i64 = 5_000_000;
/// One bill file or upload holds at most this many bills.
pub const BILL_FILE_LINES_MAX: usize = 100_000;
/// A bill file is at most this large.
pub const BILL_FILE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// An auto-debit is tried at most this many times for lack of funds.
pub const DEBIT_ATTEMPTS_MAX: u32 = 4;
/// The header a bill file starts with.
pub const BILL_FILE_HEADER: &str = "bill_number,customer_no,period,amount_fen,due_date";

/// The kinds of biller (缴费单位).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BillerKind {
    Water,
    Electricity,
    Gas,
    Heating,
    Telephone,
    Broadband,
    CableTv,
}

impl BillerKind {
    pub const ALL: [BillerKind; 7] = [
        BillerKind::Water,
        BillerKind::Electricity,
        BillerKind::Gas,
        BillerKind::Heating,
        BillerKind::Telephone,
        BillerKind::Broadband,
        BillerKind::CableTv,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            BillerKind::Water => "water",
            BillerKind::Electricity => "electricity",
            BillerKind::Gas => "gas",
            BillerKind::Heating => "heating",
            BillerKind::Telephone => "telephone",
            BillerKind::Broadband => "broadband",
            BillerKind::CableTv => "cable_tv",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// The kind's name in Chinese, as notices and pages show it.
    pub fn name_zh(self) -> &'static str {
        match self {
            BillerKind::Water => "水费",
            BillerKind::Electricity => "电费",
            BillerKind::Gas => "燃气费",
            BillerKind::Heating => "供暖费",
            BillerKind::Telephone => "电话费",
            BillerKind::Broadband => "宽带费",
            BillerKind::CableTv => "有线电视费",
        }
    }
    pub fn name_en(self) -> &'static str {
        match self {
            BillerKind::Water => "Water",
            BillerKind::Electricity => "Electricity",
            BillerKind::Gas => "Gas",
            BillerKind::Heating => "Heating",
            BillerKind::Telephone => "Telephone",
            BillerKind::Broadband => "Broadband",
            BillerKind::CableTv => "Cable TV",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    #[error("bill_number: 1 to 32 characters of A-Z a-z 0-9 - _")]
    BillNumber,
    #[error("customer_no: 1 to 32 characters of A-Z a-z 0-9 - _")]
    CustomerNo,
    #[error("period: a month as YYYY-MM")]
    Period,
    #[error("amount_fen: an integer from 1 to {BILL_FEN_MAX}")]
    Amount,
    #[error("due_date: a date as YYYY-MM-DD")]
    DueDate,
    #[error("expected 5 columns ({BILL_FILE_HEADER}), found {0}")]
    Columns(usize),
}

/// One bill as a biller sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    pub bill_number: String,
    /// The biller's account number for the household (户号); not personal data of ours.
    pub customer_no: String,
    /// `2026-11`.
    pub period: String,
    pub amount_fen: i64,
    /// `2026-12-15`.
    pub due_date: String,
}

fn code_ok(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM` with a month 01–12 and a year 2000–2099.
pub fn period_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && digits(&s[..4]).is_some_and(|y| (2000..=2099).contains(&y))
        && digits(&s[5..]).is_some_and(|m| (1..=12).contains(&m))
}

/// `YYYY-MM-DD`, a real calendar date in 2000–2099.
pub fn date_ok(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[7] != b'-' || !period_ok(&s[..7]) {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&s[..4]), digits(&s[5..7]), digits(&s[8..])) else {
        return false;
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days).contains(&d)
}

impl BillLine {
    pub fn parse(
        bill_number: &str,
        customer_no: &str,
        period: &str,
        amount_fen: &str,
        due_date: &str,
    ) -> Result<Self, BillError> {
        let (bill_number, customer_no) = (bill_number.trim(), customer_no.trim());
        if !code_ok(bill_number) {
            return Err(BillError::BillNumber);
        }
        if !code_ok(customer_no) {
            return Err(BillError::CustomerNo);
        }
        let period = period.trim();
        if !period_ok(period) {
            return Err(BillError::Period);
        }
        let amount_fen: i64 = amount_fen
            .trim()
            .parse()
            .ok()
            .filter(|a| (1..=BILL_FEN_MAX).contains(a))
            .ok_or(BillError::Amount)?;
        let due_date = due_date.trim();
        if !date_ok(due_date) {
            return Err(BillError::DueDate);
        }
        Ok(BillLine {
            bill_number: bill_number.into(),
            customer_no: customer_no.into(),
            period: period.into(),
            amount_fen,
            due_date: due_date.into(),
        })
    }
}

/// A bad line of a bill file: its 1-based line number (the header is line 1) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("the file is larger than {BILL_FILE_BYTES_MAX} bytes")]
    TooLarge,
    #[error("the file holds more than {BILL_FILE_LINES_MAX} bills")]
    TooManyLines,
    #[error("the first line must be the header {BILL_FILE_HEADER}")]
    Header,
    #[error("the file holds no bills")]
    Empty,
    #[error("{} bad lines, the first at line {}: {}", .0.len(), .0[0].line, .0[0].message)]
    BadLines(Vec<LineProblem>),
}

/// Reads a bill file: the header, then one bill per line. Every bad line is named; any bad
/// line refuses the whole file, as does a bill number that repeats within it.
pub fn parse_bill_file(text: &[u8]) -> Result<Vec<BillLine>, FileError> {
    if text.len() > BILL_FILE_BYTES_MAX {
        return Err(FileError::TooLarge);
    }
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text);
    let mut rows = r.records();
    match rows.next() {
        Some(Ok(h)) if h.iter().collect::<Vec<_>>().join(",") == BILL_FILE_HEADER => {}
        _ => return Err(FileError::Header),
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for row in rows {
        let (line, result) = match row {
            Ok(rec) => {
                let line = rec.position().map_or(0, |p| p.line());
                if rec.len() == 1 && rec.get(0) == Some("") {
                    continue;
                }
                let parsed = if rec.len() != 5 {
                    Err(BillError::Columns(rec.len()).to_string())
                } else {
                    BillLine::parse(&rec[0], &rec[1], &rec[2], &rec[3], &rec[4])
                        .map_err(|e| e.to_string())
                };
                (line, parsed)
            }
            Err(e) => (
                e.position().map_or(0, |p| p.line()),
                Err(format!("not CSV: {e}")),
            ),
        };
        if out.len() + problems.len() >= BILL_FILE_LINES_MAX {
            return Err(FileError::TooManyLines);
        }
        match result {
            Ok(b) if !seen.insert(b.bill_number.clone()) => problems.push(LineProblem {
                line,
                message: format!("bill_number {} repeats an earlier line", b.bill_number),
            }),
            Ok(b) => out.push(b),
            Err(message) => problems.push(LineProblem { line, message }),
        }
    }
    if !problems.is_empty() {
        return Err(FileError::BadLines(problems));
    }
    if out.is_empty() {
        return Err(FileError::Empty);
    }
    Ok(out)
}

/// What an auto-debit does with a bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Debit,
    /// Above the agreement's limit: never debited, the citizen is told.
    OverLimit,
}

pub fn decide(amount_fen: i64, limit_fen: i64) -> Decision {
    if amount_fen <= limit_fen {
        Decision::Debit
    } else {
        Decision::OverLimit
    }
}

/// After the `attempt`-th debit refused for funds (1-based): wait 1 hour, then 6 hours, then
/// a day; `None` after [`DEBIT_ATTEMPTS_MAX`] attempts.
pub fn retry_delay_ms(attempt: u32) -> Option<i64> {
    const HOUR: i64 = 3_600_000;
    match attempt {
        1 => Some(HOUR),
        2 => Some(6 * HOUR),
        3 => Some(24 * HOUR),
        _ => None,
    }
}

/// The idempotency key of a bill's payment: one per bill, whoever pays it (the citizen once,
/// or the auto-debit), so a bill is never paid twice.
pub fn payment_key(biller: &str, bill_number: &str) -> String {
    format!("bill-{biller}-{bill_number}")
}

/// One paid bill in a biller's payment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidBill {
    pub bill_number: String,
    pub customer_no: String,
    pub period: String,
    pub amount_fen: i64,
    pub paid_ms: i64,
    /// `auto` or `citizen`.
    pub channel: String,
}

/// The biller's payment file: a header, one line per paid bill, and a trailer with the
/// count, the total and SM3 over the lines before it, so the biller sees a truncated file.
pub fn payment_file(biller: &str, day: &str, paid: &[PaidBill]) -> String {
    let mut s = String::from("bill_number,customer_no,period,amount_fen,paid_ms,channel\n");
    for p in paid {
        s.push_str(&format!(
            "{},{},{},{},{},{}\n",
            p.bill_number, p.customer_no, p.period, p.amount_fen, p.paid_ms, p.channel
        ));
    }
    let total: i64 = paid.iter().map(|p| p.amount_fen).sum();
    let digest = hex::encode(Sm3::digest(s.as_bytes()));
    s.push_str(&format!(
        "#trailer,{biller},{day},{},{total},{digest}\n",
        paid.len()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file_parses() {
        let f = format!(
            "{BILL_FILE_HEADER}\nW-1,C001,2026-11,4500,2026-12-15\n\nW-2, C002 ,2026-11,1,2024-02-29\n"
        );
        let b = parse_bill_file(f.as_bytes()).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].customer_no, "C002");
        assert_eq!(b[1].amount_fen, 1);
    }

    #[test]
    fn every_bad_line_is_named() {
        let f = format!(
            "{BILL_FILE_HEADER}\nW-1,C001,2026-11,4500,2026-12-15\nW-2,C002,2026-13,1,2026-12-15\n\
             W-3,C003,2026-11,0,2026-12-15\nW-4,C004,2026-11,5,2025-02-29\nW-1,C005,2026-11,5,2026-12-01\n\
             W 6,C006,2026-11,5,2026-12-01\nW-7,C007\n"
        );
        let Err(FileError::BadLines(p)) = parse_bill_file(f.as_bytes()) else {
            panic!("accepted a bad file")
        };
        let lines: Vec<u64> = p.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8]);
        assert!(p[0].message.starts_with("period"), "{p:?}");
        assert!(p[1].message.starts_with("amount_fen"));
        assert!(p[2].message.starts_with("due_date"));
        assert!(p[3].message.contains("repeats"));
        assert!(p[4].message.starts_with("bill_number"));
        assert!(p[5].message.contains("found 2"));
    }

    #[test]
    fn header_size_and_emptiness_are_checked() {
        assert_eq!(parse_bill_file(b"a,b\n"), Err(FileError::Header));
        assert_eq!(
            parse_bill_file(format!("{BILL_FILE_HEADER}\n").as_bytes()),
            Err(FileError::Empty)
        );
        let mut big = format!("{BILL_FILE_HEADER}\n");
        for i in 0..=BILL_FILE_LINES_MAX {
            big.push_str(&format!("B{i},C,2026-11,1,2026-12-01\n"));
        }
        assert_eq!(
            parse_bill_file(big.as_bytes()),
            Err(FileError::TooManyLines)
        );
    }

    #[test]
    fn limits_retries_and_files() {
        assert_eq!(decide(100, 100), Decision::Debit);
        assert_eq!(decide(101, 100), Decision::OverLimit);
        assert_eq!(retry_delay_ms(1), Some(3_600_000));
        assert_eq!(retry_delay_ms(3), Some(86_400_000));
        assert_eq!(retry_delay_ms(DEBIT_ATTEMPTS_MAX), None);
        assert!(date_ok("2024-02-29") && !date_ok("2100-02-28") && !date_ok("2026-04-31"));
        let f = payment_file(
            "water",
            "2026-12-15",
            &[PaidBill {
                bill_number: "W-1".into(),
                customer_no: "C1".into(),
                period: "2026-11".into(),
                amount_fen: 4500,
                paid_ms: 1,
                channel: "auto".into(),
            }],
        );
        assert!(f.contains("\nW-1,C1,2026-11,4500,1,auto\n#trailer,water,2026-12-15,1,4500,"));
        assert_eq!(BillerKind::parse("cable_tv"), Some(BillerKind::CableTv));
        assert_eq!(BillerKind::parse("tv"), None);
    }
}
