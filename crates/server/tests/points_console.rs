//! The console's points and credit forms over HTTP with a signed-in operator's session
//! cookie, on SQLite and PostgreSQL: the administrator changes an earning rule and the next
//! earning uses it; bad values, a missing form token and other roles change nothing and say
//! why (Chinese first, with English); catalogue items added, changed and withdrawn (a
//! withdrawn item cannot be redeemed); a charity project added; a dispute resolved through
//! the form rescoring the citizen exactly as the API path does, every change audited.

mod common;

use common::{App, Console, form_body, seeded_id};
use platform::Caller;
use platform::testing::Backend;
use serde_json::json;
use store::Role;

async fn ride_rule(app: &App) -> store::points::PointsRuleRow {
    app.tp
        .platform
        .points_rules(&Caller::cli("test"))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == "ride")
        .unwrap()
}

async fn ride(app: &App, officer: &str, id: &str, event: &str) -> common::Resp {
    app.post_json(
        "/api/v1/points/events",
        Some(officer),
        json!({"kind": "ride", "event_id": event, "id_number": id, "units": 1}),
    )
    .await
}

async fn rules_and_catalogue_through_the_forms(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let admin = Console::sign_in(&app, Role::Administrator).await;
    let officer_token = app.token(Role::ClearingOfficer).await;
    let id0 = seeded_id(0);
    let before = ride_rule(&app).await;
    assert_eq!(
        (
            before.points_per_unit,
            before.daily_cap,
            before.validity_days
        ),
        (1, 10, 365)
    );

    // The administrator sees labelled forms with the current values.
    let page = admin.get("/console/points?lang=zh").await;
    assert!(
        page.body.contains("action=\"/console/points/rules/ride\"")
            && page
                .body
                .contains("<label for=\"rule-ride-cap\">每日上限</label>")
            && page
                .body
                .contains("id=\"rule-ride-cap\" name=\"daily_cap\""),
        "{}",
        page.body
    );
    let token = admin.token("/console/points").await;

    // A bad value: a clear message in Chinese then English, and nothing changed.
    let audits = p
        .store
        .audit_recent(Some("points.rule.set"), 50)
        .await
        .unwrap()
        .len();
    for (field, value, code, zh) in [
        (
            "daily_cap",
            "0",
            "daily_cap",
            "每日上限须为 1 到 10000 的整数",
        ),
        (
            "points_per_unit",
            "three",
            "points_per_unit",
            "每次积分须为 0 到 1000 的整数",
        ),
        (
            "validity_days",
            "9999",
            "validity_days",
            "有效天数须为 1 到 1095 的整数",
        ),
    ] {
        let mut fields = vec![
            ("token", token.as_str()),
            ("points_per_unit", "3"),
            ("daily_cap", "9"),
            ("validity_days", "30"),
            ("active", "on"),
        ];
        fields.retain(|(k, _)| *k != field);
        fields.push((field, value));
        let (to, page) = admin.post("/console/points/rules/ride", &fields).await;
        assert_eq!(to, format!("/console/points?error={code}&on=ride"));
        let flash = page.body.split("id=\"flash\"").nth(1).unwrap_or_default();
        assert!(
            flash.contains("role=\"alert\"") && flash.contains(&format!("未保存：{zh}")),
            "{}",
            page.body
        );
        assert!(flash.contains("Nothing was changed:"), "{flash}");
        assert!(flash.find("未保存").unwrap() < flash.find("Nothing").unwrap());
    }
    // Without the session's form token (a page of another site): refused.
    let good = [
        ("points_per_unit", "3"),
        ("daily_cap", "9"),
        ("validity_days", "30"),
        ("active", "on"),
    ];
    let mut forged = vec![("token", "00")];
    forged.extend(good);
    let (to, page) = admin.post("/console/points/rules/ride", &forged).await;
    assert_eq!(to, "/console/points?error=token&on=ride");
    assert!(page.body.contains("表单已失效"), "{}", page.body);
    assert_eq!(ride_rule(&app).await.daily_cap, 10);
    assert_eq!(
        p.store
            .audit_recent(Some("points.rule.set"), 50)
            .await
            .unwrap()
            .len(),
        audits
    );

    // Other roles: no form on their page, and their posts are refused (before any form token
    // is looked at: the permission table); nothing changes.
    for role in [Role::ClearingOfficer, Role::CounterClerk, Role::Auditor] {
        let other = Console::sign_in(&app, role).await;
        let page = other.get("/console/points").await;
        assert_eq!(page.status, 200);
        assert!(!page.body.contains("action=\"/console/points/rules/ride\""));
        assert!(!page.body.contains("id=\"item-form\""));
        assert!(!page.body.contains("name=\"token\""));
        let mut fields = vec![("token", token.as_str())];
        fields.extend(good);
        let r = other
            .send(
                "POST",
                "/console/points/rules/ride",
                Some(form_body(&fields)),
            )
            .await;
        assert_eq!(r.status, 403, "{role:?}: {}", r.body);
    }
    assert_eq!(ride_rule(&app).await.daily_cap, 10);

    // The administrator's change: 3 points a ride, 9 a day, valid 30 days.
    let mut fields = vec![("token", token.as_str())];
    fields.extend(good);
    let (to, page) = admin.post("/console/points/rules/ride", &fields).await;
    assert_eq!(to, "/console/points?ok=rule_saved&on=ride");
    assert!(
        page.body.contains("已保存获得规则：乘车。")
            && page.body.contains("The earning rule for a ride is saved."),
        "{}",
        page.body
    );
    let after = ride_rule(&app).await;
    assert_eq!(
        (
            after.points_per_unit,
            after.daily_cap,
            after.validity_days,
            after.active
        ),
        (3, 9, 30, true)
    );
    let entries = p
        .store
        .audit_recent(Some("points.rule.set"), 50)
        .await
        .unwrap();
    assert_eq!(entries.len(), audits + 1);
    assert_eq!(entries[0].draft.actor, "operator:administrator");
    assert_eq!(
        entries[0].draft.detail,
        "3 per unit, cap 9 a day, valid 30 days, active"
    );

    // The next earnings use it: 3 each, the cap of 9 reached on the third, lots valid 30 days.
    let today = platform::points::day_number(p.clock.today());
    for i in 0..3 {
        let r = ride(&app, &officer_token, &id0, &format!("gate:{i}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["points"], 3, "{}", r.body);
        assert_eq!(
            r.json()["expires_on"],
            platform::points::day_text(today + 30)
        );
    }
    let r = ride(&app, &officer_token, &id0, "gate:3").await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("daily cap of 9"), "{}", r.body);

    // Switched off through the form (the checkbox left empty): rides earn nothing.
    let off = [
        ("token", token.as_str()),
        ("points_per_unit", "3"),
        ("daily_cap", "9"),
        ("validity_days", "30"),
    ];
    admin.post("/console/points/rules/ride", &off).await;
    assert!(!ride_rule(&app).await.active);
    app.tp.clock.advance_ms(86_400_000);
    let officer_token = app.token(Role::ClearingOfficer).await;
    let r = ride(&app, &officer_token, &id0, "gate:next-day").await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("switched off"), "{}", r.body);

    // The catalogue: an item added, the same code refused on the add form, changed, withdrawn.
    // (A day on, the console's session has lapsed: sign in again, a new form token.)
    let admin = Console::sign_in(&app, Role::Administrator).await;
    let token = admin.token("/console/points").await;
    let add = |code: &'static str, cost: &'static str| {
        vec![
            ("new", "1"),
            ("code", code),
            ("name_zh", "公交乘车券 2 元"),
            ("name_en", "Bus voucher, 2 yuan"),
            ("kind", "ride_voucher"),
            ("cost_points", cost),
            ("active", "on"),
        ]
    };
    let mut f = add("bus-2", "5");
    f.push(("token", &token));
    let (to, page) = admin.post("/console/points/catalogue", &f).await;
    assert_eq!(to, "/console/points?ok=item_saved&on=bus-2");
    assert!(page.body.contains("id=\"item-bus-2\""), "{}", page.body);
    let (to, _) = admin.post("/console/points/catalogue", &f).await;
    assert_eq!(to, "/console/points?error=code_taken&on=bus-2");
    for (code, cost, err) in [
        ("Bus 2", "5", "code"),
        ("bus-3", "0", "cost_points"),
        ("bus-3", "lots", "cost_points"),
    ] {
        let mut f = add(code, cost);
        f.push(("token", &token));
        let (to, page) = admin.post("/console/points/catalogue", &f).await;
        assert!(
            to.starts_with(&format!("/console/points?error={err}&on=")),
            "{to}"
        );
        assert!(page.body.contains("role=\"alert\""), "{}", page.body);
    }
    let mut f = add("bus-3", "5");
    f.retain(|(k, _)| *k != "name_en");
    f.push(("name_en", ""));
    f.push(("token", &token));
    let (to, page) = admin.post("/console/points/catalogue", &f).await;
    assert_eq!(to, "/console/points?error=name&on=bus-3");
    assert!(page.body.contains("中文名称和英文名称各需 1 到 60 个字符"));
    let codes: Vec<String> = p
        .points_items(&Caller::cli("test"))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.code)
        .collect();
    assert_eq!(codes, vec!["bus-2".to_string()]);

    // Edit: the form comes filled in; the cost changes.
    let page = admin.get("/console/points?edit_item=bus-2").await;
    assert!(
        page.body.contains("value=\"Bus voucher, 2 yuan\"")
            && !page
                .body
                .contains("name=\"new\" value=\"1\">\n<label for=\"item-code\""),
        "{}",
        page.body
    );
    let edit = [
        ("token", token.as_str()),
        ("code", "bus-2"),
        ("name_zh", "公交乘车券 2 元"),
        ("name_en", "Bus voucher, 2 yuan"),
        ("kind", "ride_voucher"),
        ("cost_points", "6"),
        ("active", "on"),
    ];
    let (to, _) = admin.post("/console/points/catalogue", &edit).await;
    assert_eq!(to, "/console/points?ok=item_saved&on=bus-2");
    let item = p
        .points_items(&Caller::cli("test"))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((item.cost_points, item.active), (6, true));

    // The citizen's 9 points buy it once; withdrawn, it is refused.
    let clerk_token = app.token(Role::CounterClerk).await;
    let redeem = |req: &str| json!({"id_number": id0, "item": "bus-2", "request_id": req});
    let r = app
        .post_json(
            "/api/v1/points/redemptions",
            Some(&clerk_token),
            redeem("q1"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (to, page) = admin
        .post(
            "/console/points/catalogue/bus-2/withdrawal",
            &[("token", token.as_str())],
        )
        .await;
    assert_eq!(to, "/console/points?ok=item_withdrawn&on=bus-2");
    assert!(page.body.contains("已下架兑换项目 bus-2"), "{}", page.body);
    assert!(!page.body.contains("id=\"withdraw-bus-2\""));
    let r = app
        .post_json(
            "/api/v1/points/redemptions",
            Some(&clerk_token),
            redeem("q2"),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("withdrawn"), "{}", r.body);
    let (to, _) = admin
        .post(
            "/console/points/catalogue/nothing/withdrawal",
            &[("token", token.as_str())],
        )
        .await;
    assert_eq!(to, "/console/points?error=not_found&on=nothing");

    // A charity project added through the form, listed open.
    let project = [
        ("token", token.as_str()),
        ("new", "1"),
        ("code", "trees"),
        ("name_zh", "黄河植树"),
        ("name_en", "Trees by the Yellow River"),
        ("active", "on"),
    ];
    let (to, page) = admin.post("/console/points/projects", &project).await;
    assert_eq!(to, "/console/points?ok=project_saved&on=trees");
    assert!(page.body.contains("id=\"project-trees\""), "{}", page.body);
    let projects = p.points_projects(&Caller::cli("test")).await.unwrap();
    assert_eq!(
        (
            projects.len(),
            projects[0].code.as_str(),
            projects[0].active
        ),
        (1, "trees", true)
    );
    let r = app
        .post_json(
            "/api/v1/points/donations",
            Some(&clerk_token),
            json!({"id_number": id0, "project": "trees", "points": 3, "request_id": "d1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(p.ledger_check().await.unwrap().mismatch.is_none());
    for action in ["points.item.set", "points.project.set"] {
        let e = p.store.audit_recent(Some(action), 10).await.unwrap();
        assert!(
            !e.is_empty() && e.iter().all(|e| e.draft.actor == "operator:administrator"),
            "{action}"
        );
    }
}

async fn dispute_resolved_through_the_form(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let officer = app.token(Role::ClearingOfficer).await;
    let clerk = app.token(Role::CounterClerk).await;
    let id3 = seeded_id(3);
    let who = json!({"id_number": id3});
    let r = app
        .post_json("/api/v1/credit/opt-in", Some(&clerk), who.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for ev in ["f1", "f2"] {
        let r = app
            .post_json(
                "/api/v1/credit/signals",
                Some(&officer),
                json!({"kind": "fare_evasion", "event_id": ev, "id_number": id3}),
            )
            .await;
        assert_eq!(r.json()["recorded"], true, "{}", r.body);
    }
    let score = || async {
        app.post_json("/api/v1/credit/score", Some(&clerk), who.clone())
            .await
            .json()
    };
    let v = score().await;
    assert_eq!(v["score"], 540, "{v}");
    let signals: Vec<i64> = v["signals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(signals.len(), 2);
    let mut disputes = Vec::new();
    for s in &signals {
        let r = app
            .post_json(
                "/api/v1/credit/disputes",
                Some(&clerk),
                json!({"id_number": id3, "signal_id": s, "reason": "那天我刷的是e码"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        disputes.push(r.json()["id"].as_i64().unwrap());
    }
    let (d1, d2) = (disputes[0], disputes[1]);
    let path = |d: i64| format!("/console/credit/disputes/{d}/resolution");

    // A clerk reads the disputes but has no form, and a post is refused.
    let clerk_console = Console::sign_in(&app, Role::CounterClerk).await;
    let page = clerk_console.get("/console/credit").await;
    assert!(page.body.contains(&format!("id=\"dispute-{d1}\"")));
    assert!(!page.body.contains(&format!("id=\"resolve-{d1}\"")));
    let t = "0".repeat(64);
    let r = clerk_console
        .send(
            "POST",
            &path(d1),
            Some(form_body(&[
                ("token", &t),
                ("decision", "uphold"),
                ("note", "x"),
            ])),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    // The clearing officer's form: a labelled note and two buttons.
    let console = Console::sign_in(&app, Role::ClearingOfficer).await;
    let page = console.get("/console/credit?lang=zh").await;
    assert!(
        page.body.contains(&format!("id=\"resolve-{d1}\""))
            && page.body.contains(&format!("<label for=\"note-{d1}\">"))
            && page.body.contains(&format!("id=\"uphold-{d1}\""))
            && page.body.contains(&format!("id=\"reject-{d1}\"")),
        "{}",
        page.body
    );
    let token = console.token("/console/credit").await;
    // No note, no decision, a stale token: nothing changes.
    for (fields, code) in [
        (vec![("decision", "uphold"), ("note", "  ")], "note"),
        (vec![("note", "checked the gate log")], "decision"),
        (vec![("decision", "maybe"), ("note", "checked")], "decision"),
    ] {
        let mut f = fields;
        f.push(("token", &token));
        let (to, page) = console.post(&path(d1), &f).await;
        assert_eq!(to, format!("/console/credit?error={code}&on={d1}"));
        assert!(page.body.contains("role=\"alert\""), "{}", page.body);
    }
    let (to, _) = console
        .post(
            &path(d1),
            &[("token", "stale"), ("decision", "uphold"), ("note", "ok")],
        )
        .await;
    assert_eq!(to, format!("/console/credit?error=token&on={d1}"));
    assert_eq!(score().await["score"], 540);
    assert!(
        p.store
            .audit_recent(Some("credit.dispute.resolve"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Upheld through the form: the signal is struck out and the score is what the API path
    // gives (the points test resolves through the API: 600 − 30 = 570 here).
    let (to, page) = console
        .post(
            &path(d1),
            &[
                ("token", &token),
                ("decision", "uphold"),
                ("note", "gate log shows an e-code tap"),
            ],
        )
        .await;
    assert_eq!(to, format!("/console/credit?ok=dispute_upheld&on={d1}"));
    assert!(
        page.body.contains(&format!("异议 {d1} 已处理：撤销该记录"))
            && page.body.contains("status-upheld")
            && page.body.contains("gate log shows an e-code tap"),
        "{}",
        page.body
    );
    let v = score().await;
    assert_eq!(v["score"], 570, "{v}");
    // Twice: already resolved.
    let (to, page) = console
        .post(
            &path(d1),
            &[("token", &token), ("decision", "reject"), ("note", "again")],
        )
        .await;
    assert_eq!(to, format!("/console/credit?error=resolved&on={d1}"));
    assert!(page.body.contains(&format!("异议 {d1} 已经处理过")));

    // Rejected: the record and the score stay.
    let (to, _) = console
        .post(
            &path(d2),
            &[
                ("token", &token),
                ("decision", "reject"),
                ("note", "the gate log shows the card"),
            ],
        )
        .await;
    assert_eq!(to, format!("/console/credit?ok=dispute_rejected&on={d2}"));
    assert_eq!(score().await["score"], 570);
    let r = app.get("/api/v1/credit/disputes", Some(&officer)).await;
    let statuses: Vec<(i64, String)> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_i64().unwrap(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(statuses.contains(&(d1, "upheld".into())), "{statuses:?}");
    assert!(statuses.contains(&(d2, "rejected".into())), "{statuses:?}");
    let entries = p
        .store
        .audit_recent(Some("credit.dispute.resolve"), 10)
        .await
        .unwrap();
    assert_eq!(entries.len(), 2);
    assert!(
        entries
            .iter()
            .all(|e| e.draft.actor == "operator:clearing-officer")
    );
}

both_backends!(
    rules_and_catalogue_through_the_forms,
    dispute_resolved_through_the_form
);
