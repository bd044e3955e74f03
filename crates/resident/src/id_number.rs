//! The 18-character resident identity number of GB 11643-1999: region code, birth date,
//! sequence (odd for men, even for women) and an ISO 7064 MOD 11-2 check character.

use std::fmt;
use time::{Date, Month};

/// A valid resident ID number. The only way to get one is [`ResidentId::parse`], so holding
/// one proves the checksum, birth date and region code were checked.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResidentId(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Male,
    Female,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdNumberError {
    #[error("an ID number has 18 characters, this one has {0}")]
    Length(usize),
    #[error("an ID number is 17 digits followed by a digit or X")]
    Characters,
    #[error("region code {0} is not a region of GB/T 2260")]
    Region(String),
    #[error("birth date {0} is not a valid date")]
    BirthDate(String),
    #[error("birth date {0} lies in the future or before 1900")]
    BirthDateRange(String),
    #[error("check character is {found}, expected {expected}")]
    Checksum { found: char, expected: char },
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// Province-level codes of GB/T 2260 (first two digits of a region code).
const PROVINCES: &[(&str, &str)] = &[
    ("11", "北京"),
    ("12", "天津"),
    ("13", "河北"),
    ("14", "山西"),
    ("15", "内蒙古"),
    ("21", "辽宁"),
    ("22", "吉林"),
    ("23", "黑龙江"),
    ("31", "上海"),
    ("32", "江苏"),
    ("33", "浙江"),
    ("34", "安徽"),
    ("35", "福建"),
    ("36", "江西"),
    ("37", "山东"),
    ("41", "河南"),
    ("42", "湖北"),
    ("43", "湖南"),
    ("44", "广东"),
    ("45", "广西"),
    ("46", "海南"),
    ("50", "重庆"),
    ("51", "四川"),
    ("52", "贵州"),
    ("53", "云南"),
    ("54", "西藏"),
    ("61", "陕西"),
    ("62", "甘肃"),
    ("63", "青海"),
    ("64", "宁夏"),
    ("65", "新疆"),
    ("71", "台湾"),
    ("81", "香港"),
    ("82", "澳门"),
];

/// Prefecture-level codes of Henan (41xx), the province the platform serves; here we can check
/// the prefecture too. Other provinces are checked at province level only, since the full
/// GB/T 2260 table changes yearly and belongs in reference data, not code.
const HENAN_PREFECTURES: &[(&str, &str)] = &[
    ("4101", "郑州市"),
    ("4102", "开封市"),
    ("4103", "洛阳市"),
    ("4104", "平顶山市"),
    ("4105", "安阳市"),
    ("4106", "鹤壁市"),
    ("4107", "新乡市"),
    ("4108", "焦作市"),
    ("4109", "濮阳市"),
    ("4110", "许昌市"),
    ("4111", "漯河市"),
    ("4112", "三门峡市"),
    ("4113", "南阳市"),
    ("4114", "商丘市"),
    ("4115", "信阳市"),
    ("4116", "周口市"),
    ("4117", "驻马店市"),
    ("4190", "省直辖县级行政区划"),
];

/// The name of the province (and prefecture, for Henan) of a 6-digit region code.
pub fn region_name(code: &str) -> Option<String> {
    let province = PROVINCES
        .iter()
        .find(|(c, _)| code.get(..2) == Some(c))
        .map(|(_, n)| *n)?;
    if code.starts_with("41") {
        let prefecture = HENAN_PREFECTURES
            .iter()
            .find(|(c, _)| code.get(..4) == Some(c))
            .map(|(_, n)| *n)?;
        return Some(format!("{province}{prefecture}"));
    }
    Some(province.to_string())
}

impl ResidentId {
    /// Parses and validates an ID number. `today` bounds the birth date; a lower-case `x` check
    /// character is accepted and normalised to `X`.
    pub fn parse(input: &str, today: Date) -> Result<Self, IdNumberError> {
        let s = input.trim();
        let n = s.chars().count();
        if n != 18 {
            return Err(IdNumberError::Length(n));
        }
        let bytes = s.as_bytes();
        if !bytes[..17].iter().all(u8::is_ascii_digit)
            || !(bytes[17].is_ascii_digit() || bytes[17] == b'X' || bytes[17] == b'x')
        {
            return Err(IdNumberError::Characters);
        }
        let region = &s[..6];
        if region_name(region).is_none() || &region[2..6] == "0000" {
            return Err(IdNumberError::Region(region.to_string()));
        }
        let birth = &s[6..14];
        let year: i32 = birth[..4].parse().map_err(|_| IdNumberError::Characters)?;
        let month: u8 = birth[4..6].parse().map_err(|_| IdNumberError::Characters)?;
        let day: u8 = birth[6..8].parse().map_err(|_| IdNumberError::Characters)?;
        let month = Month::try_from(month).map_err(|_| IdNumberError::BirthDate(birth.into()))?;
        let date = Date::from_calendar_date(year, month, day)
            .map_err(|_| IdNumberError::BirthDate(birth.into()))?;
        if year < 1900 || date > today {
            return Err(IdNumberError::BirthDateRange(birth.into()));
        }
        let expected = check_char(&bytes[..17]);
        let found = (bytes[17] as char).to_ascii_uppercase();
        if found != expected {
            return Err(IdNumberError::Checksum { found, expected });
        }
        let mut normalised = s[..17].to_string();
        normalised.push(found);
        Ok(ResidentId(normalised))
    }

    /// Builds an ID number from its parts, computing the check character. Used by the demo
    /// generator and tests; panics on malformed parts, which would be a programmer error.
    pub fn from_parts(region: &str, birth: Date, sequence: u16) -> Self {
        assert!(region.len() == 6 && region.bytes().all(|b| b.is_ascii_digit()));
        assert!(sequence < 1000);
        let mut s = format!(
            "{region}{:04}{:02}{:02}{sequence:03}",
            birth.year(),
            u8::from(birth.month()),
            birth.day()
        );
        let c = check_char(s.as_bytes());
        s.push(c);
        ResidentId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn region_code(&self) -> &str {
        &self.0[..6]
    }

    pub fn birth_date(&self) -> Date {
        let y: i32 = self.0[6..10].parse().unwrap_or(1900);
        let m: u8 = self.0[10..12].parse().unwrap_or(1);
        let d: u8 = self.0[12..14].parse().unwrap_or(1);
        // Checked in `parse`, so this cannot fail for a value of this type.
        Date::from_calendar_date(y, Month::try_from(m).unwrap_or(Month::January), d)
            .unwrap_or(Date::MIN)
    }

    pub fn gender(&self) -> Gender {
        let seq_last = self.0.as_bytes()[16] - b'0';
        if seq_last % 2 == 1 {
            Gender::Male
        } else {
            Gender::Female
        }
    }

    /// Whole years of age on `today`.
    pub fn age_on(&self, today: Date) -> u32 {
        let b = self.birth_date();
        let mut age = today.year() - b.year();
        if (today.month() as u8, today.day()) < (b.month() as u8, b.day()) {
            age -= 1;
        }
        age.max(0) as u32
    }
}

fn check_char(first17: &[u8]) -> char {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    CHECK_CHARS[(sum % 11) as usize]
}

// The full number is personal data: Debug shows it masked so it never lands in a log.
impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentId({})", crate::mask_id_number(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 26);

    #[test]
    fn accepts_the_standard_example_and_derives_fields() {
        // The worked example in GB 11643-1999 Appendix A: 11010519491231002X.
        let id = ResidentId::parse("11010519491231002x", TODAY).unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
        assert_eq!(id.birth_date(), date!(1949 - 12 - 31));
        assert_eq!(id.gender(), Gender::Female);
        assert_eq!(id.age_on(TODAY), 76);
        let male = ResidentId::from_parts("410105", date!(1985 - 06 - 15), 123);
        let id = ResidentId::parse(male.as_str(), TODAY).unwrap();
        assert_eq!(id.gender(), Gender::Male);
        assert_eq!(region_name(id.region_code()).as_deref(), Some("河南郑州市"));
    }

    #[test]
    fn refuses_each_kind_of_error_with_its_reason() {
        assert_eq!(
            ResidentId::parse("1101051949123100", TODAY),
            Err(IdNumberError::Length(16))
        );
        assert_eq!(
            ResidentId::parse("11010519491231002Y", TODAY),
            Err(IdNumberError::Characters)
        );
        assert_eq!(
            ResidentId::parse("11010519491231002 ", TODAY),
            Err(IdNumberError::Length(17))
        );
        assert_eq!(
            ResidentId::parse("11010519491231002%", TODAY),
            Err(IdNumberError::Characters)
        );
        assert_eq!(
            ResidentId::parse("110105194912310021", TODAY),
            Err(IdNumberError::Checksum {
                found: '1',
                expected: 'X'
            })
        );
        assert!(matches!(
            ResidentId::parse("990105194912310021", TODAY),
            Err(IdNumberError::Region(_))
        ));
        assert!(matches!(
            ResidentId::parse("419905194912310021", TODAY),
            Err(IdNumberError::Region(_))
        ));
        let bad_date = ResidentId::from_parts("410102", date!(2001 - 01 - 01), 1)
            .as_str()
            .replace("20010101", "20010230");
        assert!(matches!(
            ResidentId::parse(&bad_date, TODAY),
            Err(IdNumberError::BirthDate(_))
        ));
        let future = ResidentId::from_parts("410102", date!(2030 - 01 - 01), 1);
        assert!(matches!(
            ResidentId::parse(future.as_str(), TODAY),
            Err(IdNumberError::BirthDateRange(_))
        ));
    }

    #[test]
    fn debug_never_shows_the_full_number() {
        let id = ResidentId::parse("11010519491231002X", TODAY).unwrap();
        let shown = format!("{id:?}");
        assert!(!shown.contains("11010519491231002X"), "{shown}");
        assert!(shown.contains("002X"));
    }

    proptest::proptest! {
        #[test]
        fn from_parts_always_parses(seq in 0u16..1000, days in 0i64..40000) {
            let birth = date!(1910 - 01 - 01) + time::Duration::days(days);
            let birth = birth.min(TODAY);
            let id = ResidentId::from_parts("410105", birth, seq);
            let parsed = ResidentId::parse(id.as_str(), TODAY).unwrap();
            proptest::prop_assert_eq!(parsed.birth_date(), birth);
        }

        #[test]
        fn any_single_digit_change_is_caught(pos in 0usize..17, delta in 1u8..10) {
            let id = ResidentId::from_parts("410105", date!(1985 - 06 - 15), 123);
            let mut b = id.as_str().as_bytes().to_vec();
            b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
            let s = String::from_utf8(b).unwrap();
            proptest::prop_assert!(ResidentId::parse(&s, TODAY).is_err());
        }
    }
}
