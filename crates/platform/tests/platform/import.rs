//! Department feed import: valid rows upserted, invalid rows reported by line and reason, the
//! header checked, re-imports idempotent, partial feeds updating only their fields with
//! provenance and history, and who may feed which department's data.

use crate::fixture::{Fixture, START_MS, admin, caller, id};
use crate::on_both_backends;
use platform::PlatformError;
use platform::operators::OperatorRequest;
use resident::{Field, Residency, Source};
use std::collections::HashMap;
use store::{FeedTotals, Role};

const HEADER: &str = "id_number,name,phone,address,residency\n";

on_both_backends!(
    rows_are_checked_and_rejects_name_line_and_reason,
    a_wrong_header_refuses_the_whole_file,
    importing_the_same_file_again_changes_nothing,
    a_partial_feed_updates_only_its_fields_with_provenance_and_history,
    officers_feed_only_their_own_department,
);

/// Like the reject reasons, a failing assertion shows what was expected of which line.
fn check_rejects(got: &[platform::residents::Reject], expected: &[(u64, &[&str])]) {
    let lines: Vec<u64> = got.iter().map(|r| r.row).collect();
    let want: Vec<u64> = expected.iter().map(|e| e.0).collect();
    assert_eq!(lines, want, "rejected lines; all rejects: {got:#?}");
    for (r, (_, parts)) in got.iter().zip(expected) {
        for part in *parts {
            assert!(
                r.reason.contains(part),
                "line {}: reason {:?} should mention {part:?}",
                r.row,
                r.reason
            );
        }
    }
}

async fn rows_are_checked_and_rejects_name_line_and_reason(f: Fixture) {
    let a = id("410105", 1985, 6, 15, 123);
    let b = id("410102", 1990, 1, 2, 456);
    // The standard's example number, given with a lower-case check character.
    let c = "11010519491231002X";
    let bad_check = format!("{}{}", &a[..17], if a.ends_with('0') { '1' } else { '0' });
    let bad_date = "410105198502301230";
    let bad_region = "990105198506151230";
    let d = id("410103", 1970, 3, 3, 11);
    let e = id("410104", 1975, 4, 4, 21);
    let g = id("410106", 1980, 5, 5, 31);
    let h = id("410108", 1960, 7, 7, 41);
    let i = id("410122", 2001, 8, 8, 51);
    let j = id("410181", 2005, 9, 9, 61);
    let k = id("410182", 1999, 10, 10, 71);

    let mut csv: Vec<u8> = HEADER.as_bytes().to_vec();
    let mut line = |s: &str| {
        csv.extend_from_slice(s.as_bytes());
        csv.push(b'\n');
    };
    line(&format!(
        "{a},张三丰,13812345678,郑州市金水区花园路88号3栋2单元501室,resident"
    )); // 2
    line(&format!("{b},李四,,,non_resident")); // 3
    line(&format!("{bad_check},王五,,,")); // 4
    line(&format!("{bad_date},赵六,,,")); // 5
    line(&format!("{bad_region},钱七,,,")); // 6
    line(&format!("{d},孙八,13800001111")); // 7
    line(&format!("{e},周九,12345,,")); // 8
    line(&format!("{g},吴十,,,tourist")); // 9
    let mut utf8_row = format!("{h},").into_bytes(); // 10
    utf8_row.extend_from_slice(&[0xff, 0xfe, b',', b',', b',', b'\n']);
    csv.extend_from_slice(&utf8_row);
    let mut line = |s: &str| {
        csv.extend_from_slice(s.as_bytes());
        csv.push(b'\n');
    };
    line(&format!("{a},张三丰二,,,")); // 11
    line(&format!("{i},郑十一,,\"郑州市\n中原区\",resident")); // 12-13
    line(&format!(
        "{},\"冯十二\",\"0371-12345678\",\"郑州市金水区,花园路\",non_resident",
        c.to_lowercase()
    )); // 14
    line(&format!("{j},陈十三,,,resident")); // 15
    line(&format!("{k},\"褚十四,13812345678,郑州市,resident")); // 16: quote never closed

    let report = f
        .import(&admin(), Source::Police, "csv:police.csv", &csv)
        .await
        .unwrap();
    assert_eq!(report.source, Source::Police);
    assert!(!report.rejects_truncated);
    check_rejects(
        &report.rejects,
        &[
            (4, &["id_number", "check character"]),
            (5, &["id_number", "birth date 19850230", "not a valid date"]),
            (6, &["id_number", "region code 990105"]),
            (7, &["expected 5 columns", "found 3"]),
            (8, &["phone", "12345"]),
            (9, &["residency", "tourist"]),
            (10, &["UTF-8"]),
            (11, &["appears again", "first at row 2"]),
            (12, &["address", "control characters"]),
            (16, &["expected 5 columns", "found 2"]),
        ],
    );
    assert_eq!(
        report.totals,
        FeedTotals {
            rows: 14,
            inserted: 4,
            updated: 0,
            unchanged: 0,
            rejected: 10,
        }
    );
    assert_eq!(f.p.resident_count().await.unwrap(), 4);

    // The feed is recorded, finished, with the file's digest and the same totals.
    let feeds = f.p.store.feeds_recent(10).await.unwrap();
    assert_eq!(feeds.len(), 1);
    assert_eq!(feeds[0].id, report.feed_id);
    assert_eq!(feeds[0].source, "police");
    assert_eq!(feeds[0].channel, "csv:police.csv");
    assert_eq!(feeds[0].digest, platform::residents::digest(&csv));
    assert!(feeds[0].finished_ms.is_some());
    assert_eq!(feeds[0].totals, report.totals);

    // Valid rows are stored as given; the first of a duplicated ID wins.
    let v = f.p.resident_by_id_number(&admin(), &a, true).await.unwrap();
    assert_eq!(v.id_number, a);
    assert_eq!(v.name.as_deref(), Some("张三丰"));
    assert_eq!(v.phone.as_deref(), Some("13812345678"));
    assert_eq!(
        v.address.as_deref(),
        Some("郑州市金水区花园路88号3栋2单元501室")
    );
    assert_eq!(v.residency, Some(Residency::Resident));
    assert_eq!(v.birth_date, "1985-06-15");
    assert_eq!(v.gender, "male");
    assert_eq!(v.region, "河南郑州市");

    let v = f.p.resident_by_id_number(&admin(), &b, true).await.unwrap();
    assert_eq!(v.name.as_deref(), Some("李四"));
    assert_eq!((v.phone, v.address), (None, None));
    assert_eq!(v.residency, Some(Residency::NonResident));
    assert_eq!(v.gender, "female");

    // Quoted cells keep their commas; the check character is normalised to upper case.
    let v = f.p.resident_by_id_number(&admin(), c, true).await.unwrap();
    assert_eq!(v.id_number, c);
    assert_eq!(v.name.as_deref(), Some("冯十二"));
    assert_eq!(v.phone.as_deref(), Some("0371-12345678"));
    assert_eq!(v.address.as_deref(), Some("郑州市金水区,花园路"));
    assert_eq!(v.region, "北京");
    assert_eq!(v.birth_date, "1949-12-31");

    let v = f.p.resident_by_id_number(&admin(), &j, true).await.unwrap();
    assert_eq!(v.name.as_deref(), Some("陈十三"));

    // Rejected rows left nothing behind.
    for rejected in [&d, &e, &g, &h, &i, &k] {
        let r = f.p.resident_by_id_number(&admin(), rejected, false).await;
        assert!(
            matches!(r, Err(PlatformError::NotFound(_))),
            "{rejected}: {r:?}"
        );
    }
}

async fn a_wrong_header_refuses_the_whole_file(f: Fixture) {
    let a = id("410105", 1985, 6, 15, 123);
    let row = format!("{a},张三丰,13812345678,郑州市金水区,resident\n");
    for header in [
        "id,name,phone,address,residency\n",
        "name,id_number,phone,address,residency\n",
        "id_number,name,phone,address\n",
        "id_number,name,phone,address,residency,extra\n",
        "",
    ] {
        let csv = format!("{header}{row}");
        let csv = if header.is_empty() {
            String::new()
        } else {
            csv
        };
        let r = f
            .import(&admin(), Source::Police, "csv:bad.csv", csv.as_bytes())
            .await;
        match r {
            Err(PlatformError::Invalid { message, fields }) => {
                assert!(message.contains("header"), "{header:?}: {message}");
                assert_eq!(fields[0].field, "file");
            }
            other => panic!("header {header:?} should refuse the file, got {other:?}"),
        }
        assert_eq!(
            f.p.resident_count().await.unwrap(),
            0,
            "after header {header:?}"
        );
    }
    assert!(f.p.store.residents_page(0, 10).await.unwrap().is_empty());

    // The right header may carry a byte-order mark, spaces and CRLF line ends.
    let csv = format!(
        "\u{feff}id_number, name ,phone,address,residency\r\n{}",
        row.replace('\n', "\r\n")
    );
    let r = f
        .import(&admin(), Source::Police, "csv:bom.csv", csv.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        (r.totals.rows, r.totals.inserted, r.totals.rejected),
        (1, 1, 0),
        "{r:?}"
    );
    let v = f.p.resident_by_id_number(&admin(), &a, true).await.unwrap();
    assert_eq!(v.residency, Some(Residency::Resident));
}

async fn importing_the_same_file_again_changes_nothing(f: Fixture) {
    let ids: Vec<String> = (0..4)
        .map(|n| id("410105", 1980 + n, 2, 3, 100 + n as u16))
        .collect();
    let mut csv = HEADER.to_string();
    for (n, i) in ids.iter().enumerate() {
        csv.push_str(&format!(
            "{i},居民{n},1381234567{n},郑州市中原区建设路{n}号,resident\n"
        ));
    }
    csv.push_str("410105198502301230,坏号,,,\n");

    let first = f
        .import(&admin(), Source::Police, "csv:police.csv", csv.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        first.totals,
        FeedTotals {
            rows: 5,
            inserted: 4,
            updated: 0,
            unchanged: 0,
            rejected: 1,
        }
    );
    let rows_before = f.p.store.residents_page(0, 100).await.unwrap();
    assert_eq!(rows_before.len(), 4);
    assert!(
        rows_before.iter().all(|r| r.version == 1),
        "{rows_before:?}"
    );
    let mut history_before = Vec::new();
    for r in &rows_before {
        history_before.push(f.p.store.resident_history(r.id).await.unwrap());
    }
    assert!(history_before.iter().all(|h| h.len() == 1));

    f.clock.advance_ms(3_600_000);
    let second = f
        .import(&admin(), Source::Police, "csv:police.csv", csv.as_bytes())
        .await
        .unwrap();
    assert_ne!(second.feed_id, first.feed_id);
    assert_eq!(
        second.totals,
        FeedTotals {
            rows: 5,
            inserted: 0,
            updated: 0,
            unchanged: 4,
            rejected: 1,
        }
    );
    // Not a byte changed: same sealed values, versions and times; no history added.
    let rows_after = f.p.store.residents_page(0, 100).await.unwrap();
    assert_eq!(rows_after, rows_before);
    for (r, before) in rows_after.iter().zip(&history_before) {
        assert_eq!(&f.p.store.resident_history(r.id).await.unwrap(), before);
    }
    assert_eq!(f.p.resident_count().await.unwrap(), 4);

    // Both feeds are on record with the same digest, so a re-sent file is recognisable.
    let feeds = f.p.store.feeds_recent(10).await.unwrap();
    assert_eq!(feeds.len(), 2);
    assert_eq!(feeds[0].digest, feeds[1].digest);
}

async fn a_partial_feed_updates_only_its_fields_with_provenance_and_history(f: Fixture) {
    let a = id("410105", 1985, 6, 15, 123);
    let b = id("410102", 1990, 1, 2, 456);
    let t0 = START_MS;
    let police = format!(
        "{HEADER}{a},张三丰,13812345678,郑州市金水区花园路88号,resident\n\
         {b},李四,13900001111,郑州市二七区大学路1号,resident\n"
    );
    let r1 = f
        .import(
            &admin(),
            Source::Police,
            "csv:police.csv",
            police.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r1.totals.inserted, 2);

    // Human resources knows phones only; one changed, one did not.
    f.clock.advance_ms(3_600_000);
    let t1 = t0 + 3_600_000;
    let hr_officer = caller(
        "hr.zhao",
        Role::DepartmentOfficer,
        Some(Source::HrSocialSecurity),
    );
    let hr = format!("{HEADER}{a},张三丰,13987654321,,\n{b},李四,13900001111,,\n");
    let r2 = f
        .import(
            &hr_officer,
            Source::HrSocialSecurity,
            "csv:hrss.csv",
            hr.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(
        r2.totals,
        FeedTotals {
            rows: 2,
            inserted: 0,
            updated: 1,
            unchanged: 1,
            rejected: 0,
        }
    );

    let v = f.p.resident_by_id_number(&admin(), &a, true).await.unwrap();
    assert_eq!(v.name.as_deref(), Some("张三丰"));
    assert_eq!(v.phone.as_deref(), Some("13987654321"));
    assert_eq!(
        v.address.as_deref(),
        Some("郑州市金水区花园路88号"),
        "an empty cell erased the address"
    );
    assert_eq!(
        v.residency,
        Some(Residency::Resident),
        "an empty cell erased the residency"
    );
    assert_eq!(v.updated_ms, t1);
    let prov = |v: &platform::residents::ResidentView| -> HashMap<Field, (String, i64, i64)> {
        v.provenance
            .iter()
            .map(|p| (p.field, (p.source.clone(), p.feed_id, p.at_ms)))
            .collect()
    };
    let police_at = |t| ("police".to_string(), r1.feed_id, t);
    let hr_at = |t| ("hr_social_security".to_string(), r2.feed_id, t);
    assert_eq!(
        prov(&v),
        HashMap::from([
            (Field::Name, police_at(t0)),
            (Field::Phone, hr_at(t1)),
            (Field::Address, police_at(t0)),
            (Field::Residency, police_at(t0)),
        ])
    );
    // The unchanged resident keeps the police as the source of everything.
    let vb =
        f.p.resident_by_id_number(&admin(), &b, false)
            .await
            .unwrap();
    assert!(
        vb.provenance.iter().all(|p| p.source == "police"),
        "{:?}",
        vb.provenance
    );
    assert_eq!(vb.provenance.len(), 4);

    // The police (the address's authority) move the resident and change residency (no
    // authority): both apply. A non-authoritative department's address is held for review
    // (tests/feeds.rs).
    f.clock.advance_ms(3_600_000);
    let t2 = t1 + 3_600_000;
    let ca = format!("{HEADER}{a},张三丰,,郑州市中原区建设路9号,non_resident\n");
    let r3 = f
        .import(&admin(), Source::Police, "api", ca.as_bytes())
        .await
        .unwrap();
    assert_eq!(r3.totals.updated, 1);
    let v = f.p.resident_by_id_number(&admin(), &a, true).await.unwrap();
    assert_eq!(v.phone.as_deref(), Some("13987654321"));
    assert_eq!(v.address.as_deref(), Some("郑州市中原区建设路9号"));
    assert_eq!(v.residency, Some(Residency::NonResident));
    let ca_at = ("police".to_string(), r3.feed_id, t2);
    assert_eq!(
        prov(&v),
        HashMap::from([
            (Field::Name, police_at(t0)),
            (Field::Phone, hr_at(t1)),
            (Field::Address, ca_at.clone()),
            (Field::Residency, ca_at),
        ])
    );
    let row = f.p.store.residents_page(0, 10).await.unwrap();
    let row = row.iter().find(|r| r.id == v.resident_id).unwrap();
    assert_eq!(row.version, 3);

    // History: each change with its source, channel, fields and reported values.
    let h = f.p.resident_history(&admin(), &a, true).await.unwrap();
    let summary: Vec<(&str, &str, Vec<Field>, i64, i64)> = h
        .iter()
        .map(|c| {
            (
                c.source.as_str(),
                c.channel.as_str(),
                c.fields.clone(),
                c.feed_id,
                c.at_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "police",
                "csv:police.csv",
                vec![Field::Name, Field::Phone, Field::Address, Field::Residency],
                r1.feed_id,
                t0
            ),
            (
                "hr_social_security",
                "csv:hrss.csv",
                vec![Field::Phone],
                r2.feed_id,
                t1
            ),
            (
                "police",
                "api",
                vec![Field::Address, Field::Residency],
                r3.feed_id,
                t2
            ),
        ]
    );
    assert_eq!(h[0].values["phone"], "13812345678");
    assert_eq!(h[0].values["name"], "张三丰");
    assert_eq!(h[1].values["phone"], "13987654321");
    assert_eq!(h[1].values["address"], serde_json::Value::Null);
    assert_eq!(h[2].values["residency"], "non_resident");
    // Masked by default.
    let h = f.p.resident_history(&admin(), &a, false).await.unwrap();
    assert_eq!(h[1].values["phone"], "139****4321");
    assert_eq!(h[1].values["name"], "张*丰");
    assert_eq!(h[2].values["address"], "郑州市中原区****");
    let b_history = f.p.resident_history(&admin(), &b, false).await.unwrap();
    assert_eq!(b_history.len(), 1, "an unchanged row must not add history");
}

async fn officers_feed_only_their_own_department(f: Fixture) {
    let mut callers = Vec::new();
    for (username, role, department) in [
        ("police.wang", Role::DepartmentOfficer, Some(Source::Police)),
        ("clerk.li", Role::CounterClerk, None),
    ] {
        f.p.create_operator(
            &admin(),
            OperatorRequest {
                username: username.into(),
                display_name: "测试经办".into(),
                password: "a long enough password".into(),
                role,
                department,
            },
        )
        .await
        .unwrap();
        let (token, _) =
            f.p.sign_in(username, "a long enough password", "10.0.0.1")
                .await
                .unwrap();
        callers.push(f.p.authenticate(&token, "10.0.0.1").await.unwrap().0);
    }
    let (officer, clerk) = (&callers[0], &callers[1]);
    assert_eq!(officer.department, Some(Source::Police));

    let a = id("410105", 1985, 6, 15, 123);
    let csv = format!("{HEADER}{a},张三丰,13812345678,,resident\n");
    let r = f
        .import(officer, Source::Police, "api", csv.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.totals.inserted, 1);

    let csv2 = format!("{HEADER}{a},张三丰,13999999999,,resident\n");
    for source in [Source::Health, Source::HrSocialSecurity, Source::Tax] {
        let r = f.import(officer, source, "api", csv2.as_bytes()).await;
        match r {
            Err(PlatformError::Forbidden(m)) => {
                assert!(m.contains("police") && m.contains(source.as_str()), "{m}")
            }
            other => panic!("police officer feeding {source:?}: {other:?}"),
        }
    }
    let others = [
        clerk.clone(),
        caller("auditor", Role::Auditor, None),
        caller("clearing", Role::ClearingOfficer, None),
    ];
    for c in &others {
        let r = f.import(c, Source::Police, "api", csv2.as_bytes()).await;
        assert!(
            matches!(r, Err(PlatformError::Forbidden(_))),
            "{:?}: {r:?}",
            c.role
        );
    }
    // Refused feeds were not even begun, and nothing changed.
    assert_eq!(f.p.store.feeds_recent(10).await.unwrap().len(), 1);
    let v = f.p.resident_by_id_number(&admin(), &a, true).await.unwrap();
    assert_eq!(v.phone.as_deref(), Some("13812345678"));
}
