//! Department feeds with per-field authority (issue 8, item 6) over HTTP on both backends:
//! pushed JSON changes and CSV files; police, civil affairs and education each final on their
//! own fields; a contradiction from another department held for review and decided once by an
//! officer of the field's authority, audited; a graduation ending the student concession the
//! fare engine gives.

mod common;

use chip::CardType;
use platform::Caller;
use platform::operators::OperatorRequest;
use platform::testing::Backend;
use resident::Source;
use serde_json::{Value, json};
use store::Role;

async fn officer(app: &common::App, username: &str, dept: Source) -> String {
    let p = &app.tp.platform;
    p.create_operator(
        &Caller::cli("test"),
        OperatorRequest {
            username: username.into(),
            display_name: username.into(),
            password: common::PASSWORD.into(),
            role: Role::DepartmentOfficer,
            department: Some(dept),
        },
    )
    .await
    .unwrap();
    p.create_api_token(&Caller::cli("test"), username, "test", 1)
        .await
        .unwrap()
}

async fn resident(app: &common::App, token: &str, id: &str) -> Value {
    let r = app
        .get(&format!("/api/v1/residents/{id}?unmask=true"), Some(token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

async fn push(app: &common::App, token: &str, source: &str, changes: Value) -> common::Resp {
    app.post_json(
        &format!("/api/v1/residents/changes?source={source}"),
        Some(token),
        json!({ "changes": changes }),
    )
    .await
}

async fn audited(app: &common::App, token: &str, action: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/api/v1/audit?action={action}&limit=50"),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().unwrap().clone()
}

/// The fare of a 2-yuan bus ride for the platform's card type of `card`.
fn bus_fare(card_type: &str) -> u32 {
    let t = match card_type {
        "student" => CardType::Student,
        "ordinary" => CardType::Ordinary,
        other => panic!("card type {other}"),
    };
    let ride = fares::Ride::Bus {
        line: "B2".into(),
        at_s: 1_000,
    };
    fares::default_rules()
        .quote(t, &ride, None)
        .unwrap()
        .charged_fen
}

async fn authority_review_and_graduation(backend: Backend) {
    let app = common::start(backend).await;
    let admin = app.token(Role::Administrator).await;
    let police = app.token(Role::DepartmentOfficer).await;
    let auditor = app.token(Role::Auditor).await;
    let education = officer(&app, "edu-officer", Source::Education).await;
    let civil = officer(&app, "civil-officer", Source::CivilAffairs).await;
    let id = common::seeded_id(1);
    let before = resident(&app, &admin, &id).await;
    let name = before["name"].as_str().unwrap().to_string();

    // A student card, for the concession.
    let card = app
        .tp
        .platform
        .apply_for_card(&Caller::cli("test"), &id, "student", None)
        .await
        .unwrap()
        .number;
    assert_eq!(bus_fare("student"), 100, "half fare while a student");

    // Education: its own field applies, another department's field (the name) is held.
    let r = push(
        &app,
        &education,
        "education",
        json!([{ "id_number": id, "student": "enrolled", "name": "王改名" }]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rep = r.json();
    assert_eq!(
        (rep["updated"].as_u64(), rep["held"].as_u64()),
        (Some(1), Some(1))
    );
    let now = resident(&app, &admin, &id).await;
    assert_eq!(now["name"], name.as_str(), "the police's name stays");
    assert_eq!(now["student"], "enrolled");
    let masked = app
        .get(&format!("/api/v1/residents/{id}"), Some(&auditor))
        .await
        .json();
    assert_eq!(masked["student"], "***", "status is masked by default");

    // A department may push only its own feed.
    let r = push(
        &app,
        &police,
        "education",
        json!([{ "id_number": id, "student": "graduated" }]),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // Bad changes are named by index; the good ones apply.
    let r = push(
        &app,
        &civil,
        "civil_affairs",
        json!([
            { "id_number": "11010519491231002Y", "assistance": "none" },
            { "id_number": id, "assistance": "rich" },
            { "id_number": id, "assistance": "minimum_living_allowance" },
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rep = r.json();
    let rows: Vec<u64> = rep["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, vec![0, 1]);
    assert_eq!(rep["updated"], 1);
    assert_eq!(
        resident(&app, &admin, &id).await["assistance"],
        "minimum_living_allowance"
    );
    // HR says otherwise about assistance: held, civil affairs' value stays.
    let r = push(
        &app,
        &admin,
        "hr_social_security",
        json!([{ "id_number": id, "assistance": "none" }]),
    )
    .await;
    assert_eq!(r.json()["held"], 1, "{}", r.body);
    assert_eq!(
        resident(&app, &admin, &id).await["assistance"],
        "minimum_living_allowance"
    );

    // The queue: masked by default, unmasked on request by a role that may.
    let r = app
        .get("/api/v1/residents/reviews?status=pending", Some(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let pending = r.json().as_array().unwrap().clone();
    assert_eq!(pending.len(), 2);
    // An officer sees the values held on its own department's fields only.
    for (tok, fields) in [
        (&education, vec![]),
        (&police, vec!["name"]),
        (&civil, vec!["assistance"]),
    ] {
        let r = app
            .get("/api/v1/residents/reviews?status=pending", Some(tok))
            .await;
        let got: Vec<String> = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["field"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, fields, "{}", r.body);
    }
    let name_review = pending.iter().find(|x| x["field"] == "name").unwrap();
    assert_eq!(name_review["source"], "education");
    assert_eq!(name_review["authority"], "police");
    assert_ne!(name_review["proposed"], "王改名", "masked");
    let un = app
        .get(
            "/api/v1/residents/reviews?status=pending&unmask=true",
            Some(&admin),
        )
        .await
        .json();
    assert_eq!(un[0]["proposed"], "王改名");
    assert_eq!(un[0]["current"], name.as_str());
    let rid = name_review["id"].as_i64().unwrap();
    let decide = |tok: String, decision: &'static str| {
        let app = &app;
        async move {
            app.post_json(
                &format!("/api/v1/residents/reviews/{rid}/decision"),
                Some(&tok),
                json!({ "decision": decision, "note": "checked with the hukou record" }),
            )
            .await
        }
    };
    // Education is not the name's authority: refused, and the refusal is logged.
    let r = decide(education.clone(), "accept").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        audited(&app, &admin, "resident.review.denied").await.len(),
        1
    );
    // The police officer accepts: applied, with history from the education feed; only once.
    let r = decide(police.clone(), "accept").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "accepted");
    assert_eq!(r.json()["decided_by"], "operator:department-officer");
    assert_eq!(resident(&app, &admin, &id).await["name"], "王改名");
    let r = decide(admin.clone(), "reject").await;
    assert_eq!(r.status, 409, "{}", r.body);
    let acc = audited(&app, &admin, "resident.review.accept").await;
    assert_eq!(acc.len(), 1);
    assert!(acc[0]["detail"].as_str().unwrap().contains("field=name"));
    let hist = app
        .get(&format!("/api/v1/residents/{id}/history"), Some(&admin))
        .await
        .json();
    let last = hist.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["source"], "education");
    assert_eq!(last["fields"], json!(["name"]));
    // The assistance review is civil affairs' to reject.
    let aid = pending.iter().find(|x| x["field"] == "assistance").unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = app
        .post_json(
            &format!("/api/v1/residents/reviews/{aid}/decision"),
            Some(&civil),
            json!({ "decision": "reject" }),
        )
        .await;
    assert_eq!(r.json()["status"], "rejected", "{}", r.body);
    assert_eq!(
        resident(&app, &admin, &id).await["assistance"],
        "minimum_living_allowance"
    );
    let r = app
        .get("/api/v1/residents/reviews?status=pending", Some(&admin))
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 0);

    // A non-authority reporting graduation is held and ends nothing.
    let r = push(
        &app,
        &admin,
        "health",
        json!([{ "id_number": id, "student": "graduated" }]),
    )
    .await;
    assert_eq!(r.json()["held"], 1, "{}", r.body);
    assert_eq!(r.json()["concessions_ended"], json!([]));
    let c = app
        .get(&format!("/api/v1/cards/{card}"), Some(&admin))
        .await
        .json();
    assert_eq!(c["card_type"], "student");

    // Education's CSV (with the status columns) reports graduation: the concession ends.
    let csv = format!(
        "id_number,name,phone,address,residency,assistance,student\n{id},王改名,,,,,graduated\n"
    );
    let r = app
        .send(
            "POST",
            "/api/v1/residents/import?source=education",
            Some(&education),
            Some(("text/csv", csv.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["concessions_ended"], json!([card]));
    assert_eq!(resident(&app, &admin, &id).await["student"], "graduated");
    let c = app
        .get(&format!("/api/v1/cards/{card}"), Some(&admin))
        .await
        .json();
    assert_eq!(c["card_type"], "ordinary");
    assert_eq!(
        bus_fare(c["card_type"].as_str().unwrap()),
        200,
        "full fare after graduation"
    );
    let ended = audited(&app, &admin, "card.concession.end").await;
    assert_eq!(ended.len(), 1);
    assert!(ended[0]["detail"].as_str().unwrap().contains(&card));
    // The same file again changes nothing more.
    let r = app
        .send(
            "POST",
            "/api/v1/residents/import?source=education",
            Some(&education),
            Some((
                "text/csv",
                format!("id_number,name,phone,address,residency,assistance,student\n{id},王改名,,,,,graduated\n")
                    .into_bytes(),
            )),
        )
        .await;
    assert_eq!(r.json()["concessions_ended"], json!([]), "{}", r.body);
    assert_eq!(audited(&app, &admin, "card.concession.end").await.len(), 1);

    // Every decision and change is on an intact chain.
    let v = app.get("/api/v1/audit/verify", Some(&admin)).await;
    assert_eq!(v.status, 200, "{}", v.body);
}

both_backends!(authority_review_and_graduation);
