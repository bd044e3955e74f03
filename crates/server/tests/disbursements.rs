//! Disbursements over HTTP on both backends: funding, a CSV batch submitted once, four eyes,
//! the line report, and what a citizen received.

mod common;

use platform::Caller;
use platform::operators::OperatorRequest;
use serde_json::json;
use store::Role;

async fn disbursement_over_http(backend: platform::testing::Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    for name in ["ca-1", "ca-2"] {
        p.create_operator(
            &Caller::cli("test"),
            OperatorRequest {
                username: name.into(),
                display_name: name.into(),
                password: common::PASSWORD.into(),
                role: Role::DepartmentOfficer,
                department: Some(resident::Source::CivilAffairs),
            },
        )
        .await
        .unwrap();
    }
    let tok = |name: &'static str| async move {
        p.create_api_token(&Caller::cli("test"), name, "test", 1)
            .await
            .unwrap()
    };
    let (ca1, ca2) = (tok("ca-1").await, tok("ca-2").await);
    let clearing = app.token(Role::ClearingOfficer).await;
    let auditor = app.token(Role::Auditor).await;
    let police = app.token(Role::DepartmentOfficer).await;

    let r = app
        .post_json(
            "/api/v1/departments/civil_affairs/funding",
            Some(&clearing),
            json!({"bank": "ICBC", "amount_fen": 100000, "key": "fund-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let (id1, id2) = (common::seeded_id(0), common::seeded_id(1));
    let file = format!(
        "id_number,amount,benefit\n{id1},300.00,minimum_living\n{id2},99.99,disability\n{id1},1,lottery\n"
    );
    let submit = |token: String| {
        let app = &app;
        let file = file.clone();
        async move {
            app.send(
                "POST",
                "/api/v1/disbursements?label=2026-11",
                Some(&token),
                Some(("text/csv", file.into_bytes())),
            )
            .await
        }
    };
    let r = submit(clearing.clone()).await;
    assert_eq!(r.status, 403, "clearing does not submit: {}", r.body);
    let r = submit(ca1.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let batch = r.json()["batch"].clone();
    let id = batch["id"].as_i64().unwrap();
    assert_eq!(
        (
            batch["pending_lines"].as_i64(),
            batch["rejected_lines"].as_i64()
        ),
        (Some(2), Some(1))
    );
    let r = submit(ca1.clone()).await;
    assert_eq!(
        (r.status, r.json()["created"].as_bool()),
        (200, Some(false))
    );
    let r = app
        .send(
            "POST",
            "/api/v1/disbursements?label=x",
            Some(&ca1),
            Some(("text/csv", b"who,what\n".to_vec())),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);

    let decide = |token: String, approve: bool| {
        let app = &app;
        async move {
            app.post_json(
                &format!("/api/v1/disbursements/{id}/decision"),
                Some(&token),
                json!({ "approve": approve }),
            )
            .await
        }
    };
    // The approvals page: the second officer sees the buttons, the submitter does not; a
    // submitter's forged form post is refused by the platform and said on the page.
    let page = |token: String| {
        let app = &app;
        async move {
            app.get("/console/clearing/disbursements?lang=zh", Some(&token))
                .await
        }
    };
    // A department officer's clearing section is its approvals page.
    let r = app.get("/console/clearing?lang=en", Some(&ca1)).await;
    assert_eq!(
        (r.status, r.headers["location"].to_str().unwrap()),
        (303, "/console/clearing/disbursements?lang=en")
    );
    let own = page(ca1.clone()).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert!(own.body.contains("待复核") && own.body.contains("待遇发放审批"));
    assert!(!own.body.contains(&format!("id=\"approve-{id}\"")));
    let other = page(ca2.clone()).await;
    assert!(
        other.body.contains(&format!("id=\"approve-{id}\"")),
        "{}",
        other.body
    );
    // A form post carries the session's form token (SM3 over the credential, as the page
    // hands it out): without it, or with another session's, nothing is decided.
    let form_token = |credential: &str| {
        use sm3::Digest;
        let mut h = sm3::Sm3::new();
        h.update(b"citycard console form token\0");
        h.update(credential.as_bytes());
        hex::encode(h.finalize())
    };
    assert!(
        other
            .body
            .contains(&format!("name=\"token\" value=\"{}\"", form_token(&ca2))),
        "{}",
        other.body
    );
    let post = |token: String, form: String| {
        let app = &app;
        async move {
            let r = app
                .send(
                    "POST",
                    &format!("/console/clearing/disbursements/{id}"),
                    Some(&token),
                    Some(("application/x-www-form-urlencoded", form.into_bytes())),
                )
                .await;
            assert_eq!(r.status, 303, "{}", r.body);
            r.headers["location"].to_str().unwrap().to_string()
        }
    };
    for (who, form) in [
        (ca2.clone(), "decision=approve".to_string()),
        (
            ca2.clone(),
            format!("token={}&decision=approve", form_token(&ca1)),
        ),
    ] {
        let location = post(who, form).await;
        assert!(location.contains("error=token"), "{location}");
    }
    let location = post(ca2.clone(), "decision=reject".into()).await;
    assert!(location.contains("error=token"), "{location}");
    let shown = app.get(&location, Some(&ca2)).await;
    assert!(
        shown.body.contains("表单已失效") && shown.body.contains("the form has expired"),
        "{}",
        shown.body
    );
    assert_eq!(
        app.get(&format!("/api/v1/disbursements/{id}"), Some(&auditor))
            .await
            .json()["state"],
        "submitted",
        "a post without the token decides nothing"
    );
    // The submitter's own form post, with its own session's token, is refused by the platform
    // (four eyes) and said on the page in both languages.
    let location = post(
        ca1.clone(),
        format!("token={}&decision=approve", form_token(&ca1)),
    )
    .await;
    assert!(location.contains("error=forbidden"), "{location}");
    let shown = app.get(&location, Some(&ca1)).await;
    assert_eq!(shown.status, 200);
    assert!(
        shown.body.contains("双人复核") && shown.body.contains("four eyes"),
        "{}",
        shown.body
    );
    // Free text in the address is not shown.
    let forged = app
        .get(
            "/console/clearing/disbursements?msg=call%20us&error=call%20us",
            Some(&ca1),
        )
        .await;
    assert!(!forged.body.contains("call us"), "{}", forged.body);

    let r = decide(ca1.clone(), true).await;
    assert_eq!(r.status, 403, "the submitter: {}", r.body);
    assert!(r.json()["detail"].as_str().unwrap().contains("four eyes"));
    let r = decide(police.clone(), true).await;
    assert_eq!(r.status, 403, "another department: {}", r.body);
    let r = decide(ca2.clone(), true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["state"].as_str(), r.json()["paid_fen"].as_i64()),
        (Some("paid"), Some(39_999))
    );
    let r = decide(ca2.clone(), false).await;
    assert_eq!(r.status, 409, "{}", r.body);

    let lines = app
        .get(&format!("/api/v1/disbursements/{id}/lines"), Some(&auditor))
        .await
        .json();
    let lines = lines.as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["outcome"], "paid");
    assert!(lines[0]["recipient"].as_str().unwrap().contains("****"));
    assert!(
        !lines[0].to_string().contains(&id1),
        "recipients are masked"
    );
    assert_eq!(lines[2]["outcome"], "rejected");
    assert!(lines[2]["reason"].as_str().unwrap().contains("lottery"));

    let got = app
        .post_json(
            "/api/v1/disbursements/received",
            Some(&auditor),
            json!({ "id_number": id1 }),
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let got = got.json();
    assert_eq!(got.as_array().unwrap().len(), 1);
    assert_eq!(got[0]["amount_fen"], 30_000);
    assert_eq!(got[0]["benefit_zh"], "最低生活保障金");
    let list = app.get("/api/v1/disbursements", Some(&police)).await.json();
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "police sees only its own batches"
    );
    let doc = app.get("/api/openapi.json", None).await.json();
    assert!(doc["paths"]["/api/v1/disbursements/{id}/decision"].is_object());
}

both_backends!(disbursement_over_http);
