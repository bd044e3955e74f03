//! Disbursements (待遇发放): a department's batch of subsidies and benefits, as the department
//! uploads it, checked line by line before anything is stored; and the four-eyes rule that a
//! batch is approved by a second officer. Pure: the platform looks the residents up, posts the
//! money and keeps the results.
//!
//! # The batch file
//!
//! UTF-8 CSV with a header line naming the columns, in any order:
//!
//! ```text
//! id_number,amount,benefit,earmark
//! 410105198005010021,800.00,minimum_living,
//! 410105199001020030,120.50,agricultural,
//! 410105195003040045,300,disability,canteen
//! ```
//!
//! - `id_number`: the recipient's ID number, 18 characters (the platform checks it per
//!   GB 11643 and looks the resident up);
//! - `amount`: yuan with at most two decimals, more than zero, at most
//!   [`LINE_AMOUNT_MAX_FEN`] fen;
//! - `benefit`: one of [`Benefit`]'s codes;
//! - `earmark` (optional column, optional value): the purpose code of an earmarked sub-account
//!   (`canteen`), when the money may only be spent there; empty pays the online account.
//!
//! A line that is wrong on its own is reported with its line number (the header is line 1) and
//! the reason, and the others stand; the same recipient and benefit twice in one batch rejects
//! the later line. A file whose header is wrong, that is not UTF-8 CSV, or that has more than
//! [`LINES_MAX`] lines is refused whole.

use std::collections::HashSet;

use thiserror::Error;

use crate::Amount;

/// Lines in one batch, at most.
pub const LINES_MAX: usize = 100_000;
/// One line's amount, at most (50,000 yuan).
pub const LINE_AMOUNT_MAX_FEN: i64 = 5_000_000;
/// Bytes of one batch file, at most.
pub const FILE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The kinds of benefit a department pays (the municipal plan's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Benefit {
    /// 最低生活保障金
    MinimumLiving,
    /// 特困人员救助供养金
    SpecialHardship,
    /// 孤儿基本生活费
    Orphan,
    /// 残疾人两项补贴
    Disability,
    /// 临时救助金
    TemporaryRelief,
    /// 农业补贴
    Agricultural,
}

impl Benefit {
    pub const ALL: [Benefit; 6] = [
        Benefit::MinimumLiving,
        Benefit::SpecialHardship,
        Benefit::Orphan,
        Benefit::Disability,
        Benefit::TemporaryRelief,
        Benefit::Agricultural,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Benefit::MinimumLiving => "minimum_living",
            Benefit::SpecialHardship => "special_hardship",
            Benefit::Orphan => "orphan",
            Benefit::Disability => "disability",
            Benefit::TemporaryRelief => "temporary_relief",
            Benefit::Agricultural => "agricultural",
        }
    }

    /// The Chinese name, for pages and statements.
    pub fn name_zh(self) -> &'static str {
        match self {
            Benefit::MinimumLiving => "最低生活保障金",
            Benefit::SpecialHardship => "特困人员救助供养金",
            Benefit::Orphan => "孤儿基本生活费",
            Benefit::Disability => "残疾人两项补贴",
            Benefit::TemporaryRelief => "临时救助金",
            Benefit::Agricultural => "农业补贴",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Benefit::ALL.into_iter().find(|b| b.code() == code)
    }
}

/// One valid line of a batch.
#[derive(Clone, PartialEq, Eq)]
pub struct Line {
    /// The line number in the file (the header is line 1).
    pub line: u64,
    pub id_number: String,
    pub amount: Amount,
    pub benefit: Benefit,
    /// The earmark purpose code, when the money goes to an earmarked sub-account.
    pub earmark: Option<String>,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line")
            .field("line", &self.line)
            .field("id_number", &"***")
            .field("amount", &self.amount)
            .field("benefit", &self.benefit)
            .field("earmark", &self.earmark)
            .finish()
    }
}

/// Why one line is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    #[error("expected {expected} fields, found {found}")]
    Fields { expected: usize, found: usize },
    #[error("id_number must be 18 characters (digits, the last may be X)")]
    IdNumber,
    #[error("amount {0:?} is not yuan with at most two decimals")]
    Amount(String),
    #[error("amount must be more than 0 and at most {} yuan", LINE_AMOUNT_MAX_FEN / 100)]
    AmountRange,
    #[error(
        "benefit {0:?} is not one of minimum_living, special_hardship, orphan, disability, temporary_relief, agricultural"
    )]
    Benefit(String),
    #[error("earmark {0:?} must be 1 to 32 characters a-z 0-9 _ -")]
    Earmark(String),
    #[error("the same recipient and benefit appear on line {0} already")]
    Duplicate(u64),
}

/// Why a whole file is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FileError {
    #[error("the file is larger than {FILE_BYTES_MAX} bytes")]
    TooLarge,
    #[error("the file is empty")]
    Empty,
    #[error("header: {0}")]
    Header(String),
    #[error("line {line}: not valid CSV ({reason})")]
    Csv { line: u64, reason: String },
    #[error("more than {LINES_MAX} lines")]
    TooManyLines,
    #[error("no line to pay")]
    NoLines,
}

/// A parsed batch: the valid lines and the rejected ones with their reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub lines: Vec<Line>,
    pub rejected: Vec<(u64, LineError)>,
}

impl Parsed {
    /// The sum of the valid lines, in fen (bounded: [`LINES_MAX`] × [`LINE_AMOUNT_MAX_FEN`]
    /// fits an `i64`).
    pub fn total(&self) -> Amount {
        Amount(self.lines.iter().map(|l| l.amount.0).sum())
    }
}

fn earmark_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn id_shape_ok(s: &str) -> bool {
    s.len() == 18
        && s.bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 17 && (b == b'X' || b == b'x')))
}

/// Parses and checks a batch file. Line-level problems are collected; the file is refused
/// only as a whole when it cannot be read as the batch format.
pub fn parse(bytes: &[u8]) -> Result<Parsed, FileError> {
    if bytes.len() > FILE_BYTES_MAX {
        return Err(FileError::TooLarge);
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(FileError::Empty);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| FileError::Header(e.to_string()))?
        .clone();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(c_id), Some(c_amount), Some(c_benefit)) =
        (col("id_number"), col("amount"), col("benefit"))
    else {
        return Err(FileError::Header(
            "the columns id_number, amount and benefit are required (earmark is optional)".into(),
        ));
    };
    let c_earmark = col("earmark");
    let known = ["id_number", "amount", "benefit", "earmark"];
    if let Some(other) = header.iter().find(|h| !known.contains(h)) {
        return Err(FileError::Header(format!("unknown column {other:?}")));
    }
    let width = header.len();
    let mut out = Parsed {
        lines: Vec::new(),
        rejected: Vec::new(),
    };
    let mut seen: std::collections::HashMap<(String, Benefit), u64> =
        std::collections::HashMap::new();
    let mut record = csv::StringRecord::new();
    let mut count = 0usize;
    loop {
        let more = reader
            .read_record(&mut record)
            .map_err(|e| FileError::Csv {
                line: e.position().map_or(0, |p| p.line()),
                reason: e.to_string(),
            })?;
        if !more {
            break;
        }
        count += 1;
        if count > LINES_MAX {
            return Err(FileError::TooManyLines);
        }
        let line = record.position().map_or(count as u64 + 1, |p| p.line());
        match check_line(&record, width, c_id, c_amount, c_benefit, c_earmark, line) {
            Ok(l) => {
                let key = (l.id_number.to_ascii_uppercase(), l.benefit);
                if let Some(first) = seen.get(&key) {
                    out.rejected.push((line, LineError::Duplicate(*first)));
                } else {
                    seen.insert(key, line);
                    out.lines.push(l);
                }
            }
            Err(e) => out.rejected.push((line, e)),
        }
    }
    if out.lines.is_empty() && out.rejected.is_empty() {
        return Err(FileError::NoLines);
    }
    Ok(out)
}

fn check_line(
    r: &csv::StringRecord,
    width: usize,
    c_id: usize,
    c_amount: usize,
    c_benefit: usize,
    c_earmark: Option<usize>,
    line: u64,
) -> Result<Line, LineError> {
    if r.len() != width {
        return Err(LineError::Fields {
            expected: width,
            found: r.len(),
        });
    }
    let id = &r[c_id];
    if !id_shape_ok(id) {
        return Err(LineError::IdNumber);
    }
    let amount =
        Amount::parse_yuan(&r[c_amount]).map_err(|_| LineError::Amount(r[c_amount].to_string()))?;
    if amount.0 <= 0 || amount.0 > LINE_AMOUNT_MAX_FEN {
        return Err(LineError::AmountRange);
    }
    let benefit =
        Benefit::parse(&r[c_benefit]).ok_or_else(|| LineError::Benefit(r[c_benefit].into()))?;
    let earmark = match c_earmark.map(|c| &r[c]) {
        None | Some("") => None,
        Some(e) if earmark_ok(e) => Some(e.to_string()),
        Some(e) => return Err(LineError::Earmark(e.to_string())),
    };
    Ok(Line {
        line,
        id_number: id.to_ascii_uppercase(),
        amount,
        benefit,
        earmark,
    })
}

/// Why an officer may not approve a batch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApprovalError {
    #[error("four eyes: the officer who submitted a batch cannot approve it")]
    SameOfficer,
    #[error("batch of department {batch} cannot be approved by an officer of {officer}")]
    OtherDepartment { batch: String, officer: String },
}

/// The four-eyes rule: a second officer of the same department (or an administrator, whose
/// department is `None`) approves; never the one who submitted.
pub fn may_approve(
    submitted_by: i64,
    approver: i64,
    batch_department: &str,
    approver_department: Option<&str>,
) -> Result<(), ApprovalError> {
    if submitted_by == approver {
        return Err(ApprovalError::SameOfficer);
    }
    match approver_department {
        Some(d) if d != batch_department => Err(ApprovalError::OtherDepartment {
            batch: batch_department.to_string(),
            officer: d.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The idempotency key of one line's payment: the same batch and line always post once.
pub fn line_key(batch_id: i64, line: u64) -> String {
    format!("disb-{batch_id}-{line}")
}

/// Distinct recipients of a parsed batch (ID numbers, upper case).
pub fn recipients(p: &Parsed) -> HashSet<&str> {
    p.lines.iter().map(|l| l.id_number.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID1: &str = "410105198005010021";
    const ID2: &str = "41010519900102003X";

    #[test]
    fn good_lines_pass_and_bad_ones_are_named() {
        let csv = format!(
            "id_number,amount,benefit,earmark\n\
             {ID1},800.00,minimum_living,\n\
             {ID2},120.5,agricultural,canteen\n\
             12345,1.00,orphan,\n\
             {ID1},0,orphan,\n\
             {ID1},1.234,orphan,\n\
             {ID1},60000,orphan,\n\
             {ID1},5,lottery,\n\
             {ID1},5,orphan,Canteen!\n\
             {ID1},5,orphan\n\
             {ID1},9.99,minimum_living,\n"
        );
        let p = parse(csv.as_bytes()).unwrap();
        assert_eq!(p.lines.len(), 2);
        assert_eq!(p.lines[0].amount, Amount(80_000));
        assert_eq!(p.lines[1].amount, Amount(12_050));
        assert_eq!(p.lines[1].id_number, ID2);
        assert_eq!(p.lines[1].earmark.as_deref(), Some("canteen"));
        assert_eq!(p.total(), Amount(92_050));
        let reasons: Vec<(u64, LineError)> = p.rejected.clone();
        assert_eq!(
            reasons,
            vec![
                (4, LineError::IdNumber),
                (5, LineError::AmountRange),
                (6, LineError::Amount("1.234".into())),
                (7, LineError::AmountRange),
                (8, LineError::Benefit("lottery".into())),
                (9, LineError::Earmark("Canteen!".into())),
                (
                    10,
                    LineError::Fields {
                        expected: 4,
                        found: 3
                    }
                ),
                (11, LineError::Duplicate(2)),
            ]
        );
    }

    #[test]
    fn whole_file_refusals() {
        assert_eq!(parse(b""), Err(FileError::Empty));
        assert!(matches!(
            parse(b"id,amount\n1,2\n"),
            Err(FileError::Header(_))
        ));
        assert!(matches!(
            parse(b"id_number,amount,benefit,colour\n"),
            Err(FileError::Header(m)) if m.contains("colour")
        ));
        assert_eq!(
            parse(b"id_number,amount,benefit\n"),
            Err(FileError::NoLines)
        );
        let big = vec![b'a'; FILE_BYTES_MAX + 1];
        assert_eq!(parse(&big), Err(FileError::TooLarge));
        let mut many = String::from("amount,benefit,id_number\n");
        for _ in 0..=LINES_MAX {
            many.push_str("1,orphan,x\n");
        }
        assert_eq!(parse(many.as_bytes()), Err(FileError::TooManyLines));
    }

    #[test]
    fn four_eyes() {
        assert_eq!(
            may_approve(7, 7, "civil_affairs", Some("civil_affairs")),
            Err(ApprovalError::SameOfficer)
        );
        assert!(matches!(
            may_approve(7, 8, "civil_affairs", Some("police")),
            Err(ApprovalError::OtherDepartment { .. })
        ));
        assert_eq!(
            may_approve(7, 8, "civil_affairs", Some("civil_affairs")),
            Ok(())
        );
        assert_eq!(may_approve(7, 8, "civil_affairs", None), Ok(()));
        assert_eq!(line_key(3, 17), "disb-3-17");
    }
}
