//! Personalization: file contents from the record, validation errors, and the chip space report.

mod common;

use chip::records::{CardType, HolderInfo, PublicInfo};
use chip::{BcdDate, CHIP_BYTES, CardNumber, PersonalizeError, personalize, space_report};
use common::*;
use crypto::{Algorithm, MasterKeys};

#[test]
fn ef15_and_ef16_carry_the_record() {
    let mut c = card(Algorithm::Sm4);
    select_transit(&mut c);
    let ef15 = check(&mut c, "00B095001E", 0x9000);
    assert_eq!(
        hex::encode_upper(&ef15),
        "41010000FFFFFFFF030100004101000000000018202501012035010101 00".replace(' ', "")
    );
    let info = PublicInfo::parse(&ef15).unwrap();
    assert_eq!(info.card_number.to_string(), CARD_NUMBER);
    assert_eq!(info.expiry_date, BcdDate::parse("20350101").unwrap());
    assert_eq!(info.card_type, CardType::Ordinary);
    let ef16 = check(&mut c, "00B0960037", 0x9000);
    let holder = HolderInfo::parse(&ef16).unwrap();
    assert_eq!(
        &holder.name_gbk[..4],
        &[0xD5, 0xC5, 0xC8, 0xFD],
        "张三 in GBK"
    );
    assert_eq!(holder.name().unwrap(), "张三");
    assert_eq!(&holder.id_number[..18], b"41010219900101123X");
    assert!(!format!("{holder:?}").contains("4101021990"));
    // Keys are the card's own diversified keys.
    let purse = c.image().purse().unwrap();
    let expected = MasterKeys::test_set().diversify(
        Algorithm::Sm4,
        &CardNumber::parse(CARD_NUMBER).unwrap().div_data(),
    );
    assert_eq!(purse.keys, expected);
    assert_eq!(purse.algorithm, Algorithm::Sm4);
}

#[test]
fn invalid_records_are_refused_with_a_reason() {
    let m = MasterKeys::test_set();
    let base = record(Algorithm::Tdes);
    let cases = [
        (
            chip::PersonalizationRecord {
                holder_name: " ".into(),
                ..base.clone()
            },
            PersonalizeError::EmptyName,
        ),
        (
            chip::PersonalizationRecord {
                holder_name: "Zoë 😀".into(),
                ..base.clone()
            },
            PersonalizeError::NameNotGbk,
        ),
        (
            chip::PersonalizationRecord {
                holder_name: "欧阳娜娜娜娜娜娜娜娜娜".into(),
                ..base.clone()
            },
            PersonalizeError::NameTooLong(22),
        ),
        (
            chip::PersonalizationRecord {
                id_number: String::new(),
                ..base.clone()
            },
            PersonalizeError::InvalidIdNumber,
        ),
        (
            chip::PersonalizationRecord {
                id_number: "1".repeat(33),
                ..base.clone()
            },
            PersonalizeError::InvalidIdNumber,
        ),
        (
            chip::PersonalizationRecord {
                pin: "123".into(),
                ..base.clone()
            },
            PersonalizeError::InvalidPin,
        ),
        (
            chip::PersonalizationRecord {
                pin: "12a456".into(),
                ..base.clone()
            },
            PersonalizeError::InvalidPin,
        ),
        (
            chip::PersonalizationRecord {
                expiry_date: base.start_date,
                ..base.clone()
            },
            PersonalizeError::ExpiryNotAfterStart {
                start: base.start_date,
                expiry: base.start_date,
            },
        ),
    ];
    for (rec, err) in cases {
        assert_eq!(personalize(&rec, &m).unwrap_err(), err, "{rec:?}");
    }
    // 20 GBK bytes exactly fit.
    let ten = chip::PersonalizationRecord {
        holder_name: "欧阳娜娜娜娜娜娜娜娜".into(),
        ..base.clone()
    };
    assert!(personalize(&ten, &m).is_ok());
    // An odd-length PIN is padded with F.
    let mut c = personalize(
        &chip::PersonalizationRecord {
            pin: "12345".into(),
            ..base.clone()
        },
        &m,
    )
    .unwrap();
    check(&mut c, "002000000312345F", 0x9000);
    assert!(!format!("{base:?}").contains("张三"));
}

#[test]
fn space_report_leaves_the_reserve() {
    let c = card(Algorithm::Sm4);
    let report = space_report(c.image());
    let names: Vec<&str> = report.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["MF", "SSSE", "TRANSIT", "HEALTH", "CITY"]);
    assert_eq!(report.chip_bytes, CHIP_BYTES);
    let transit = report.apps.iter().find(|a| a.name == "TRANSIT").unwrap();
    // 30 + 55 + 10x23 + 5x48 bytes of files, 5 headers, purse 60.
    assert_eq!(transit.bytes, 30 + 55 + 230 + 240 + 5 * 32 + 60);
    assert!(report.meets_reserve());
    assert!(report.free() * 100 / CHIP_BYTES >= 30);
    assert!(report.to_string().contains("TRANSIT"));
}

#[test]
fn card_numbers_parse_with_clear_errors() {
    use chip::CardNumberError;
    assert_eq!(
        CardNumber::parse("4101000000000019"),
        Err(CardNumberError::CheckDigit {
            expected: 8,
            found: 9
        })
    );
    assert_eq!(
        CardNumber::parse("abc"),
        Err(CardNumberError::WrongLength(3))
    );
    assert_eq!(
        CardNumber::from_sequence(123_456_789)
            .unwrap()
            .to_string()
            .len(),
        16
    );
}
