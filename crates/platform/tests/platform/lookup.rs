//! Reading residents: masked by default, unmasked only for the roles that may, never for the
//! clearing officer; every read on the audit log before data is returned, with no personal
//! data in the log's text, and the chain intact afterwards.

use crate::fixture::{Fixture, admin, audit_seq, caller, id};
use crate::on_both_backends;
use platform::{Caller, PlatformError};
use resident::Source;
use store::Role;

on_both_backends!(
    reads_are_masked_unless_the_role_may_unmask,
    every_read_is_audited_without_personal_data,
);

struct Person {
    id: String,
    name: &'static str,
    phone: &'static str,
    address: &'static str,
}

fn people() -> Vec<Person> {
    vec![
        Person {
            id: id("410105", 1985, 6, 15, 123),
            name: "张三",
            phone: "13812345678",
            address: "郑州市金水区花园路88号3栋2单元501室",
        },
        Person {
            id: id("410102", 1978, 11, 30, 246),
            name: "欧阳明华",
            phone: "0371-66889900",
            address: "郑州市中原区建设路17号",
        },
        Person {
            id: id("410103", 1992, 2, 29, 357),
            name: "王芳",
            phone: "15937112233",
            address: "郑州市二七区大学路5号",
        },
        Person {
            id: id("410184", 2001, 3, 1, 468),
            name: "王芳",
            phone: "18603719988",
            address: "新郑市中华路3号",
        },
    ]
}

async fn import_people(f: &Fixture) -> Vec<Person> {
    let people = people();
    let mut csv = "id_number,name,phone,address,residency\n".to_string();
    for p in &people {
        csv.push_str(&format!(
            "{},{},{},{},resident\n",
            p.id, p.name, p.phone, p.address
        ));
    }
    let r = f
        .import(&admin(), Source::Police, "csv:people.csv", csv.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.totals.inserted, people.len() as u64, "{:?}", r.rejects);
    people
}

/// The masks, written out independently of the code under test.
fn masked_id(id: &str) -> String {
    format!("{}***********{}", &id[..3], &id[14..])
}

fn roles() -> [Caller; 5] {
    [
        caller("admin.a", Role::Administrator, None),
        caller("clerk.b", Role::CounterClerk, None),
        caller("police.c", Role::DepartmentOfficer, Some(Source::Police)),
        caller("auditor.d", Role::Auditor, None),
        caller("clearing.e", Role::ClearingOfficer, None),
    ]
}

async fn reads_are_masked_unless_the_role_may_unmask(f: Fixture) {
    let people = import_people(&f).await;
    let [admin_c, clerk, officer, auditor, clearing] = roles();
    let zhang = &people[0];

    for c in [&admin_c, &clerk, &officer, &auditor] {
        let v =
            f.p.resident_by_id_number(c, &zhang.id, false)
                .await
                .unwrap_or_else(|e| panic!("{:?} masked read: {e}", c.role));
        assert!(!v.unmasked);
        assert_eq!(v.id_number, masked_id(&zhang.id));
        assert!(v.id_number.starts_with("410***********"), "{}", v.id_number);
        assert_eq!(v.name.as_deref(), Some("张*"));
        assert_eq!(v.phone.as_deref(), Some("138****5678"));
        assert_eq!(v.address.as_deref(), Some("郑州市金水区****"));
        // Non-identifying facts derived from the number stay readable.
        assert_eq!(
            (v.birth_date.as_str(), v.gender.as_str()),
            ("1985-06-15", "male")
        );
    }

    let found =
        f.p.residents_by_name(&auditor, "欧阳明华", false)
            .await
            .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name.as_deref(), Some("欧**华"));
    assert_eq!(found[0].id_number, masked_id(&people[1].id));
    assert_eq!(found[0].phone.as_deref(), Some("037******9900"));
    let found =
        f.p.residents_by_name(&clerk, " 王芳 ", false)
            .await
            .unwrap();
    let mut ids: Vec<&str> = found.iter().map(|v| v.id_number.as_str()).collect();
    ids.sort();
    let mut want = vec![masked_id(&people[2].id), masked_id(&people[3].id)];
    want.sort();
    assert_eq!(ids, want);
    assert!(found.iter().all(|v| v.name.as_deref() == Some("王*")));
    assert!(
        f.p.residents_by_name(&clerk, "无此人", false)
            .await
            .unwrap()
            .is_empty()
    );

    // Administrators, counter clerks and department officers may unmask.
    for c in [&admin_c, &clerk, &officer] {
        let v =
            f.p.resident_by_id_number(c, &zhang.id, true)
                .await
                .unwrap_or_else(|e| panic!("{:?} unmask: {e}", c.role));
        assert!(v.unmasked);
        assert_eq!(v.id_number, zhang.id);
        assert_eq!(v.name.as_deref(), Some(zhang.name));
        assert_eq!(v.phone.as_deref(), Some(zhang.phone));
        assert_eq!(v.address.as_deref(), Some(zhang.address));
        let by_name = f.p.residents_by_name(c, "欧阳明华", true).await.unwrap();
        assert_eq!(by_name[0].id_number, people[1].id);
        assert_eq!(by_name[0].phone.as_deref(), Some(people[1].phone));
    }

    // Auditors read masked only.
    let r = f.p.resident_by_id_number(&auditor, &zhang.id, true).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    let r = f.p.residents_by_name(&auditor, "张三", true).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    let r = f.p.resident_history(&auditor, &zhang.id, true).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    // Clearing officers have no access at all, masked or not.
    for unmask in [false, true] {
        let r =
            f.p.resident_by_id_number(&clearing, &zhang.id, unmask)
                .await;
        assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
        let r = f.p.residents_by_name(&clearing, "张三", unmask).await;
        assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
        let r = f.p.resident_history(&clearing, &zhang.id, unmask).await;
        assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    }
    let r = f.p.residents_page(&clearing, 0, 10).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    // Browsing pages is masked.
    let page = f.p.residents_page(&auditor, 0, 10).await.unwrap();
    assert_eq!(page.len(), 4);
    assert!(
        page.iter()
            .all(|v| !v.unmasked && v.id_number.contains("***********"))
    );
    assert!(
        page.iter()
            .all(|v| !people.iter().any(|p| v.name.as_deref() == Some(p.name)))
    );

    // Malformed input is refused before any lookup.
    let r =
        f.p.resident_by_id_number(&admin_c, "41010519850615123", false)
            .await;
    assert!(matches!(r, Err(PlatformError::Invalid { .. })), "{r:?}");
    let r = f.p.residents_by_name(&admin_c, "  ", false).await;
    assert!(matches!(r, Err(PlatformError::Invalid { .. })), "{r:?}");
}

async fn every_read_is_audited_without_personal_data(f: Fixture) {
    let people = import_people(&f).await;
    let [admin_c, clerk, officer, auditor, _] = roles();
    let zhang = &people[0];
    let missing = id("410105", 1999, 9, 9, 999);

    let mut seq = audit_seq(&f.p).await;
    assert!(seq > 0, "the import itself is audited");
    // (who, ID number or name, unmask, by name)
    type Lookup<'a> = (&'a Caller, &'a str, bool, bool);
    let lookups: Vec<Lookup> = vec![
        (&admin_c, zhang.id.as_str(), true, false),
        (&clerk, zhang.id.as_str(), false, false),
        (&officer, zhang.id.as_str(), true, false),
        (&auditor, zhang.id.as_str(), false, false),
        (&auditor, missing.as_str(), false, false),
        (&clerk, missing.as_str(), true, false),
        (&clerk, "王芳", false, true),
        (&officer, "欧阳明华", true, true),
        (&auditor, "无此人", false, true),
    ];
    for (c, what, unmask, by_name) in lookups {
        let ok = if by_name {
            f.p.residents_by_name(c, what, unmask).await.map(|_| ())
        } else {
            f.p.resident_by_id_number(c, what, unmask).await.map(|_| ())
        };
        if what == missing {
            assert!(matches!(ok, Err(PlatformError::NotFound(_))), "{ok:?}");
        } else {
            ok.unwrap();
        }
        let now = audit_seq(&f.p).await;
        assert_eq!(
            now,
            seq + 1,
            "one audit entry per lookup ({:?}, unmask={unmask})",
            c.role
        );
        seq = now;
        let e = &f.p.store.audit_recent(None, 1).await.unwrap()[0];
        assert_eq!(e.seq, seq);
        let action = if unmask {
            "resident.unmask"
        } else {
            "resident.read"
        };
        assert_eq!(e.draft.action, action);
        assert_eq!(e.draft.actor, format!("operator:{}", c.username));
        assert_eq!(e.draft.origin, "test");
        assert!(e.draft.record.starts_with("resident:"), "{:?}", e.draft);
        if what == missing {
            assert!(e.draft.detail.contains("no match"), "{:?}", e.draft);
        }
    }
    // History and pages are reads too.
    f.p.resident_history(&clerk, &zhang.id, true).await.unwrap();
    assert_eq!(audit_seq(&f.p).await, seq + 1);
    f.p.residents_page(&auditor, 0, 10).await.unwrap();
    assert_eq!(audit_seq(&f.p).await, seq + 2);

    let unmasks =
        f.p.store
            .audit_recent(Some("resident.unmask"), 100)
            .await
            .unwrap();
    assert_eq!(unmasks.len(), 5);
    assert!(unmasks.iter().all(|e| e.draft.action == "resident.unmask"));

    // Nothing personal in the log's text, in clear.
    let entries = f.p.store.audit_range(0, 1000).await.unwrap();
    assert_eq!(entries.len() as i64, audit_seq(&f.p).await);
    for e in &entries {
        let d = &e.draft;
        let text = format!(
            "{}|{}|{}|{}|{}",
            d.actor, d.action, d.record, d.origin, d.detail
        );
        for p in &people {
            for secret in [p.id.as_str(), p.name, p.phone, p.address, &p.id[..17]] {
                assert!(
                    !text.contains(secret),
                    "audit entry {} contains {secret:?}: {text}",
                    e.seq
                );
            }
        }
        assert!(
            !text.contains(&missing),
            "audit entry {} contains the missed ID: {text}",
            e.seq
        );
    }

    let verified = f.p.audit_verify().await.unwrap();
    assert_eq!(verified, Ok(entries.len() as u64));
}
