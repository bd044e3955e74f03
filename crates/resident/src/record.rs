//! What a department reports about a resident, and the validation of one feed row.

use crate::id_number::{IdNumberError, ResidentId};
use time::Date;

pub const NAME_CHARS_MAX: usize = 50;
pub const ADDRESS_CHARS_MAX: usize = 200;

/// Whether the person is a registered resident of the city (户籍/居住证 holder) or a
/// non-resident holding another city's third-generation social security card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Residency {
    Resident,
    NonResident,
}

impl Residency {
    pub fn as_str(self) -> &'static str {
        match self {
            Residency::Resident => "resident",
            Residency::NonResident => "non_resident",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "resident" => Some(Residency::Resident),
            "non_resident" => Some(Residency::NonResident),
            _ => None,
        }
    }
}

/// A department that feeds the resident base database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// 公安 public security: names, ID numbers, addresses.
    Police,
    /// 人社 human resources and social security.
    HrSocialSecurity,
    /// 卫健 health commission.
    Health,
    /// 医保 medical insurance.
    MedicalInsurance,
    /// 民政 civil affairs.
    CivilAffairs,
    /// 教育 education.
    Education,
    /// 税务 tax.
    Tax,
}

impl Source {
    pub const ALL: [Source; 7] = [
        Source::Police,
        Source::HrSocialSecurity,
        Source::Health,
        Source::MedicalInsurance,
        Source::CivilAffairs,
        Source::Education,
        Source::Tax,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Police => "police",
            Source::HrSocialSecurity => "hr_social_security",
            Source::Health => "health",
            Source::MedicalInsurance => "medical_insurance",
            Source::CivilAffairs => "civil_affairs",
            Source::Education => "education",
            Source::Tax => "tax",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Source::ALL.into_iter().find(|d| d.as_str() == s.trim())
    }
    pub fn name_zh(self) -> &'static str {
        match self {
            Source::Police => "公安",
            Source::HrSocialSecurity => "人社",
            Source::Health => "卫健",
            Source::MedicalInsurance => "医保",
            Source::CivilAffairs => "民政",
            Source::Education => "教育",
            Source::Tax => "税务",
        }
    }
}

/// Social assistance a resident receives, as civil affairs (民政) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assistance {
    /// No assistance.
    None,
    /// 低保: the minimum living allowance.
    MinimumLivingAllowance,
    /// 特困: support for people in extreme hardship.
    ExtremeHardship,
}

impl Assistance {
    pub const ALL: [Assistance; 3] = [
        Assistance::None,
        Assistance::MinimumLivingAllowance,
        Assistance::ExtremeHardship,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Assistance::None => "none",
            Assistance::MinimumLivingAllowance => "minimum_living_allowance",
            Assistance::ExtremeHardship => "extreme_hardship",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Assistance::ALL.into_iter().find(|a| a.as_str() == s.trim())
    }
}

/// Whether a resident is a student, as education (教育) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Student {
    Enrolled,
    Graduated,
}

impl Student {
    pub fn as_str(self) -> &'static str {
        match self {
            Student::Enrolled => "enrolled",
            Student::Graduated => "graduated",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "enrolled" => Some(Student::Enrolled),
            "graduated" => Some(Student::Graduated),
            _ => None,
        }
    }
}

/// The fields of a resident that carry provenance. The ID number is the key, not a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Name,
    Phone,
    Address,
    Residency,
    /// Social assistance status (sealed: it is sensitive personal information).
    Assistance,
    /// Student status (sealed).
    Student,
}

impl Field {
    pub const ALL: [Field; 6] = [
        Field::Name,
        Field::Phone,
        Field::Address,
        Field::Residency,
        Field::Assistance,
        Field::Student,
    ];
    /// The fields kept sealed with a blind index (residency is in clear).
    pub const SEALED: [Field; 5] = [
        Field::Name,
        Field::Phone,
        Field::Address,
        Field::Assistance,
        Field::Student,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Phone => "phone",
            Field::Address => "address",
            Field::Residency => "residency",
            Field::Assistance => "assistance",
            Field::Student => "student",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Field::ALL.into_iter().find(|f| f.as_str() == s.trim())
    }
    pub fn bit(self) -> u8 {
        match self {
            Field::Name => 1,
            Field::Phone => 2,
            Field::Address => 4,
            Field::Residency => 8,
            Field::Assistance => 16,
            Field::Student => 32,
        }
    }
    /// The department whose word on this field is final: police for names and addresses (and
    /// the ID number, which is the key), civil affairs for assistance, education for student
    /// status. A field without one (phone, residency) takes the latest report from anyone.
    pub fn authority(self) -> Option<Source> {
        match self {
            Field::Name | Field::Address => Some(Source::Police),
            Field::Assistance => Some(Source::CivilAffairs),
            Field::Student => Some(Source::Education),
            Field::Phone | Field::Residency => None,
        }
    }
    /// Whether `source` may overwrite a value this field already has.
    pub fn may_overwrite(self, source: Source) -> bool {
        self.authority().is_none_or(|a| a == source)
    }
    pub fn from_mask(mask: u8) -> Vec<Field> {
        Field::ALL
            .into_iter()
            .filter(|f| mask & f.bit() != 0)
            .collect()
    }
}

/// The facts one feed row states about one resident. `None` means "this feed says nothing about
/// that field", so a department that only knows phones does not erase addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentFacts {
    pub id: ResidentId,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub residency: Option<Residency>,
    pub assistance: Option<Assistance>,
    pub student: Option<Student>,
}

impl ResidentFacts {
    pub fn value(&self, field: Field) -> Option<&str> {
        match field {
            Field::Name => self.name.as_deref(),
            Field::Phone => self.phone.as_deref(),
            Field::Address => self.address.as_deref(),
            Field::Residency => self.residency.map(Residency::as_str),
            Field::Assistance => self.assistance.map(Assistance::as_str),
            Field::Student => self.student.map(Student::as_str),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("name is empty")]
    NameEmpty,
    #[error("name is longer than {NAME_CHARS_MAX} characters")]
    NameTooLong,
    #[error("{0} contains control characters")]
    Control(&'static str),
    #[error(
        "phone {0:?} is not an 11-digit mainland mobile number or a landline like 0371-12345678"
    )]
    Phone(String),
    #[error("address is longer than {ADDRESS_CHARS_MAX} characters")]
    AddressTooLong,
    #[error("residency {0:?} is neither resident nor non_resident")]
    Residency(String),
    #[error("assistance {0:?} is not none, minimum_living_allowance or extreme_hardship")]
    Assistance(String),
    #[error("student {0:?} is neither enrolled nor graduated")]
    Student(String),
}

/// Why a feed row was refused, as written into the rejects report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("id_number: {0}")]
    IdNumber(#[from] IdNumberError),
    #[error("{0}")]
    Field(#[from] FieldError),
    #[error(
        "expected 5 columns (id_number,name,phone,address,residency) or 7 (…,assistance,student), found {0}"
    )]
    Columns(usize),
    #[error("id_number appears again in this file (first at row {0})")]
    Duplicate(u64),
}

fn no_control(s: &str, what: &'static str) -> Result<(), FieldError> {
    if s.chars().any(char::is_control) {
        Err(FieldError::Control(what))
    } else {
        Ok(())
    }
}

fn parse_phone(s: &str) -> Result<String, FieldError> {
    let b = s.as_bytes();
    let mobile = b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]);
    let mobile = mobile && b.iter().all(u8::is_ascii_digit);
    let landline = match s.split_once('-') {
        Some((area, local)) => {
            (3..=4).contains(&area.len())
                && area.starts_with('0')
                && (7..=8).contains(&local.len())
                && area
                    .bytes()
                    .chain(local.bytes())
                    .all(|c| c.is_ascii_digit())
        }
        None => false,
    };
    if mobile || landline {
        Ok(s.to_string())
    } else {
        Err(FieldError::Phone(s.to_string()))
    }
}

/// Validates one row of a department feed (`id_number,name,phone,address,residency`, or the
/// same followed by `assistance,student`). Empty optional cells mean "not reported"; the name
/// is required in a file.
pub fn parse_row(cells: &[&str], today: Date) -> Result<ResidentFacts, RowError> {
    if cells.len() != 5 && cells.len() != 7 {
        return Err(RowError::Columns(cells.len()));
    }
    if cells[1].trim().is_empty() {
        return Err(FieldError::NameEmpty.into());
    }
    let cell = |i: usize| cells.get(i).copied().unwrap_or("");
    parse_change(
        cells[0],
        [cell(1), cell(2), cell(3), cell(4), cell(5), cell(6)],
        today,
    )
}

/// Validates one reported change: the ID number and, in [`Field::ALL`] order, name, phone,
/// address, residency, assistance and student, each empty when not reported. A pushed change
/// may report any subset (education reporting only a graduation names no one).
pub fn parse_change(
    id_number: &str,
    values: [&str; 6],
    today: Date,
) -> Result<ResidentFacts, RowError> {
    let id = ResidentId::parse(id_number, today)?;
    let [name, phone, address, residency, assistance, student] = values.map(str::trim);
    let name = match name {
        "" => None,
        n if n.chars().count() > NAME_CHARS_MAX => return Err(FieldError::NameTooLong.into()),
        n => {
            no_control(n, "name")?;
            Some(n.to_string())
        }
    };
    let phone = match phone {
        "" => None,
        p => Some(parse_phone(p)?),
    };
    let address = match address {
        "" => None,
        a if a.chars().count() > ADDRESS_CHARS_MAX => {
            return Err(FieldError::AddressTooLong.into());
        }
        a => {
            no_control(a, "address")?;
            Some(a.to_string())
        }
    };
    let residency = match residency {
        "" => None,
        r => Some(Residency::parse(r).ok_or_else(|| FieldError::Residency(r.to_string()))?),
    };
    let assistance = match assistance {
        "" => None,
        a => Some(Assistance::parse(a).ok_or_else(|| FieldError::Assistance(a.to_string()))?),
    };
    let student = match student {
        "" => None,
        s => Some(Student::parse(s).ok_or_else(|| FieldError::Student(s.to_string()))?),
    };
    Ok(ResidentFacts {
        id,
        name,
        phone,
        address,
        residency,
        assistance,
        student,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 26);

    fn check(cells: &[&str], expect: Result<(), &str>) {
        let got = parse_row(cells, TODAY)
            .map(|_| ())
            .map_err(|e| e.to_string());
        match expect {
            Ok(()) => assert!(got.is_ok(), "{cells:?}: {got:?}"),
            Err(part) => {
                let err = got.expect_err("row should be refused");
                assert!(err.contains(part), "{err:?} should mention {part:?}");
            }
        }
    }

    #[test]
    fn rows() {
        let id = "11010519491231002X";
        check(&[id, "张三", "13812345678", "郑州市", "resident"], Ok(()));
        check(&[id, "张三", "0371-12345678", "", ""], Ok(()));
        check(&[id, "", "", "", ""], Err("name is empty"));
        check(&[id, "张三", "1381234567", "", ""], Err("phone"));
        check(&[id, "张三", "", "", "tourist"], Err("residency"));
        check(&[id, "张\u{7}三", "", "", ""], Err("control"));
        check(&[id, "张三"], Err("expected 5 columns"));
        check(
            &["11010519491231002Y", "张三", "", "", ""],
            Err("id_number"),
        );
        check(
            &[
                id,
                "张三",
                "",
                "",
                "",
                "minimum_living_allowance",
                "graduated",
            ],
            Ok(()),
        );
        check(&[id, "张三", "", "", "", "rich", ""], Err("assistance"));
        check(&[id, "张三", "", "", "", "", "dropped"], Err("student"));
        check(&[id, "张三", "", "", "", ""], Err("expected 5 columns"));
        let long = "长".repeat(201);
        check(&[id, "张三", "", &long, ""], Err("address is longer"));
    }

    #[test]
    fn empty_cells_mean_not_reported() {
        let f = parse_row(&["11010519491231002X", "张三", "", "", ""], TODAY).unwrap();
        assert_eq!(f.phone, None);
        assert_eq!(f.residency, None);
        assert_eq!(f.value(Field::Name), Some("张三"));
        assert_eq!(f.value(Field::Student), None);
    }

    #[test]
    fn authorities() {
        assert!(Field::Name.may_overwrite(Source::Police));
        assert!(!Field::Name.may_overwrite(Source::Education));
        assert!(!Field::Address.may_overwrite(Source::CivilAffairs));
        assert!(Field::Student.may_overwrite(Source::Education));
        assert!(!Field::Student.may_overwrite(Source::Police));
        assert!(Field::Assistance.may_overwrite(Source::CivilAffairs));
        assert!(!Field::Assistance.may_overwrite(Source::HrSocialSecurity));
        assert!(Field::Phone.may_overwrite(Source::Tax));
        for f in Field::ALL {
            assert_eq!(Field::parse(f.as_str()), Some(f));
        }
    }

    #[test]
    fn a_change_may_report_only_a_status() {
        let f = parse_change(
            "11010519491231002X",
            ["", "", "", "", "", "graduated"],
            TODAY,
        )
        .unwrap();
        assert_eq!(f.name, None);
        assert_eq!(f.student, Some(Student::Graduated));
    }
}
