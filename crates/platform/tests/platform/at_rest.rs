//! Encryption at rest: after imports, updates and reads, no name, ID number, phone or address
//! is stored in clear anywhere in the database (SQLite's files byte for byte, every row and
//! bytea cell of the PostgreSQL schema), while clear text that is meant to be there is found,
//! which shows the search itself works.

use crate::fixture::{Backend, Fixture, admin, id};
use crate::on_both_backends;
use platform::operators::OperatorRequest;
use resident::Source;
use store::Role;

on_both_backends!(personal_data_is_sealed_at_rest);

/// Stored in clear on purpose: an operator's display name and a feed's channel.
const CONTROL_NAME: &str = "明文对照员甲乙丙";
const CONTROL_CHANNEL: &str = "csv:clear-control-feed.csv";

async fn personal_data_is_sealed_at_rest(f: Fixture) {
    let people = [
        (
            id("410105", 1985, 6, 15, 123),
            "龙傲天",
            "13812345678",
            "郑州市金水区花园路888号龙城小区",
        ),
        (
            id("410102", 1978, 11, 30, 246),
            "欧阳锋芒",
            "0371-66889900",
            "郑州市中原区建设路717号锦绣苑",
        ),
        (
            id("110105", 1949, 12, 31, 2),
            "司马青衫",
            "15937112233",
            "郑州市二七区大学路5号青衫阁",
        ),
    ];
    let mut csv = "id_number,name,phone,address,residency\n".to_string();
    for (i, n, p, a) in &people {
        csv.push_str(&format!("{i},{n},{p},{a},resident\n"));
    }
    let r = f
        .import(&admin(), Source::Police, CONTROL_CHANNEL, csv.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.totals.inserted, 3, "{:?}", r.rejects);
    // A second department changes a phone, so history holds an older and a newer value.
    let new_phone = "18603719988";
    let hr = format!(
        "id_number,name,phone,address,residency\n{},{},{new_phone},,\n",
        people[0].0, people[0].1
    );
    let r = f
        .import(&admin(), Source::HrSocialSecurity, "api", hr.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.totals.updated, 1);
    // Reads of every kind put references on the audit log.
    for (i, n, _, _) in &people {
        f.p.resident_by_id_number(&admin(), i, true).await.unwrap();
        f.p.residents_by_name(&admin(), n, false).await.unwrap();
        f.p.resident_history(&admin(), i, true).await.unwrap();
    }
    f.p.create_operator(
        &admin(),
        OperatorRequest {
            username: "control".into(),
            display_name: CONTROL_NAME.into(),
            password: "a long enough password".into(),
            role: Role::Auditor,
            department: None,
        },
    )
    .await
    .unwrap();

    let mut needles: Vec<&str> = Vec::new();
    for (i, n, p, a) in &people {
        needles.extend([i.as_str(), &i[..17], *n, *p, *a]);
    }
    needles.push(new_phone);

    let passes: &[&str] = match f.backend() {
        Backend::Sqlite => &["before checkpoint", "after checkpoint"],
        Backend::Postgres => &["tables"],
    };
    for (n, pass) in passes.iter().enumerate() {
        if n == 1 {
            f.checkpoint().await;
        }
        let found = f.find_at_rest(&needles).await;
        assert!(
            found.is_empty(),
            "{pass}: personal data stored in clear: {found:#?}"
        );
        let control = f.find_at_rest(&[CONTROL_NAME, CONTROL_CHANNEL]).await;
        assert!(
            control.iter().any(|c| c.ends_with(CONTROL_NAME))
                && control.iter().any(|c| c.ends_with(CONTROL_CHANNEL)),
            "{pass}: the search did not find the clear-text controls, so it proves nothing: {control:?}"
        );
    }
}
