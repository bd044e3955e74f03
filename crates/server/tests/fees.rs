//! The editable fee schedule (手续费率), on SQLite and PostgreSQL: the kept schedule starts as
//! the city's default; a clearing officer adds a rule over the API and sees it (future, then
//! in force, the old one superseded); a window closed after the rule's date charges its
//! payments the new fee and an earlier window the old; bad rules are refused naming the field,
//! a scope's second rule on a day is a conflict, a rule back-dated into an ended window is
//! refused, other roles are refused (403), each added rule is audited; a full schedule refuses
//! the next rule naming its limit (SQLite). The console's form adds a rule (rate in percent,
//! fixed fee in yuan), and a form without the session's token, or back-dated, changes nothing
//! and says why.

mod common;

use common::{Console, form_body, fund, seeded_id};
use ledger::{AccountKey, TransferKind};
use platform::Caller;
use platform::money::{Payer, PaymentRequest};
use platform::testing::Backend;
use serde_json::{Value, json};
use store::Role;

const HOUR_MS: i64 = 3_600_000;
const FEES: &str = "/api/v1/clearing/fees";

/// The rules as `(scope_kind, scope_value, rate_bp, fixed_fen, effective_from, standing)`.
fn rules(schedule: &Value) -> Vec<(String, String, i64, i64, String, String)> {
    schedule["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["scope_kind"].as_str().unwrap().to_owned(),
                r["scope_value"].as_str().unwrap().to_owned(),
                r["rate_bp"].as_i64().unwrap(),
                r["fixed_fen"].as_i64().unwrap(),
                r["effective_from"].as_str().unwrap().to_owned(),
                r["standing"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn rule_of(
    schedule: &Value,
    value: &str,
    from: &str,
) -> Option<(String, String, i64, i64, String, String)> {
    rules(schedule)
        .into_iter()
        .find(|r| r.1 == value && r.4 == from)
}

async fn pay_cafe(p: &platform::Platform, key: &str, fen: i64) {
    p.pay(
        &Caller::cli("test"),
        &PaymentRequest {
            key: key.into(),
            payer: Payer::IdNumber(seeded_id(0)),
            merchant: "cafe".into(),
            amount_fen: fen,
            reference: key.to_uppercase(),
        },
    )
    .await
    .unwrap();
}

async fn a_new_rule_is_seen_and_used_by_later_windows(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let sys = Caller::cli("test");
    let officer = app.token(Role::ClearingOfficer).await;

    // The kept schedule is the city's default until someone changes it.
    assert_eq!(
        p.fee_schedule().await.unwrap(),
        platform::clearing::default_fee_schedule()
    );
    let r = app.get(FEES, Some(&officer)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let before = r.json();
    assert_eq!(before["window"], "2026-11-26");
    assert_eq!(
        rule_of(&before, "shop", "2026-01-01"),
        Some((
            "category".into(),
            "shop".into(),
            60,
            0,
            "2026-01-01".into(),
            "in_force".into()
        ))
    );
    assert_eq!(rules(&before).len(), 6);

    p.merchant_create(&sys, "cafe", "二七咖啡", "shop", "41050100000077")
        .await
        .unwrap();
    let resident = p.resident_id_of(&seeded_id(0)).await.unwrap();
    fund(
        p,
        AccountKey::citizen_online(resident),
        TransferKind::TopUp,
        100_000,
        "fund-0",
    )
    .await;

    // From window 2026-11-27 shops pay 1.00 % + 0.05 yuan per payment.
    let r = app
        .post_json(
            FEES,
            Some(&officer),
            json!({"scope_kind": "category", "scope_value": "shop", "rate_bp": 100,
                   "fixed_fen": 5, "effective_from": "2026-11-27"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let added = r.json();
    assert_eq!(added["standing"], "future");
    assert_eq!(added["created_by"], "operator:clearing-officer");
    let r = app.get(FEES, Some(&officer)).await;
    let listed = r.json();
    assert_eq!(rules(&listed).len(), 7);
    assert_eq!(
        rule_of(&listed, "shop", "2026-11-27").map(|r| (r.2, r.3, r.5)),
        Some((100, 5, "future".into()))
    );
    assert_eq!(
        rule_of(&listed, "shop", "2026-01-01").map(|r| r.5),
        Some("in_force".into())
    );
    // The auditor reads the schedule too.
    let auditor = app.token(Role::Auditor).await;
    assert_eq!(app.get(FEES, Some(&auditor)).await.status, 200);

    // 100.00 paid in window 2026-11-26, 200.00 in 2026-11-27 (after the 23:00 cut-off).
    pay_cafe(p, "cafe-1", 10_000).await;
    app.tp.clock.advance_ms(11 * HOUR_MS);
    pay_cafe(p, "cafe-2", 20_000).await;
    app.tp.clock.advance_ms(24 * HOUR_MS);
    // A day and more later: a fresh token (they last a day).
    let officer = app.token(Role::ClearingOfficer).await;

    // The old window keeps the old rate (0.60 %); the new one uses the new rule.
    let r = app
        .send(
            "POST",
            "/api/v1/clearing/windows/2026-11-26/close",
            Some(&officer),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fee_fen"], 60, "{}", r.body);
    let r = app
        .send(
            "POST",
            "/api/v1/clearing/windows/2026-11-27/close",
            Some(&officer),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let report = r.json();
    assert_eq!(report["lines"][0]["merchant"], "cafe", "{}", r.body);
    assert_eq!(report["lines"][0]["fee_fen"], 205, "{}", r.body);
    assert_eq!(report["net_fen"], 20_000 - 205, "{}", r.body);

    // Now in window 2026-11-28: the new rule is in force and the old one superseded.
    let now = app.get(FEES, Some(&officer)).await.json();
    assert_eq!(now["window"], "2026-11-28");
    assert_eq!(
        rule_of(&now, "shop", "2026-11-27").map(|r| r.5),
        Some("in_force".into())
    );
    assert_eq!(
        rule_of(&now, "shop", "2026-01-01").map(|r| r.5),
        Some("superseded".into())
    );
    assert_eq!(
        rule_of(&now, "transit", "2026-01-01").map(|r| r.5),
        Some("in_force".into())
    );

    // The rule is on the audit log, with who added it.
    let audits = p
        .store
        .audit_recent(Some("clearing.fee_rule.add"), 10)
        .await
        .unwrap();
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].draft.actor, "operator:clearing-officer");
    assert_eq!(audits[0].draft.record, "fee_rule:category:shop:2026-11-27");
    assert!(
        audits[0].draft.detail.contains("100 bp + 5 fen"),
        "{}",
        audits[0].draft.detail
    );
    assert_eq!(p.audit_verify().await.unwrap().map(|n| n > 0), Ok(true));
}

async fn bad_rules_and_other_roles_are_refused(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let sys = Caller::cli("test");
    let officer = app.token(Role::ClearingOfficer).await;
    p.merchant_create(&sys, "cafe", "二七咖啡", "shop", "41050100000077")
        .await
        .unwrap();
    let good = json!({"scope_kind": "merchant", "scope_value": "cafe", "rate_bp": 45,
                      "fixed_fen": 0, "effective_from": "2026-11-30"});
    let with = |field: &str, value: Value| {
        let mut b = good.clone();
        b[field] = value;
        b
    };

    // Each bad field is named, and nothing is written.
    for (body, field, says) in [
        (with("rate_bp", json!(10_001)), "rate_bp", "10001 bp"),
        (with("rate_bp", json!(-1)), "rate_bp", "-1 bp"),
        (with("fixed_fen", json!(-5)), "fixed_fen", "negative"),
        (with("fixed_fen", json!(100_001)), "fixed_fen", "100000"),
        (
            with("scope_kind", json!("region")),
            "scope_kind",
            "category",
        ),
        (
            with("scope_value", json!("tea")),
            "scope_value",
            "registered",
        ),
        (
            with("scope_kind", json!("category")),
            "scope_value",
            "not a merchant category",
        ),
        (
            with("effective_from", json!("2026-13-01")),
            "effective_from",
            "not a date",
        ),
        (
            with("effective_from", json!("2062-11-30")),
            "effective_from",
            "3660 days after",
        ),
    ] {
        let r = app.post_json(FEES, Some(&officer), body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        let problem = r.json();
        assert_eq!(problem["errors"][0]["field"], field, "{}", r.body);
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{body}: {}",
            r.body
        );
    }

    // A window that has ended: closed (2026-11-25) or not (no rule may be dated before the
    // open window 2026-11-26).
    let r = app
        .send(
            "POST",
            "/api/v1/clearing/windows/2026-11-25/close",
            Some(&officer),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for day in ["2026-11-25", "2026-01-02"] {
        let r = app
            .post_json(FEES, Some(&officer), with("effective_from", json!(day)))
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        let problem = r.json();
        assert_eq!(problem["errors"][0]["field"], "effective_from");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("before the open clearing window 2026-11-26"),
            "{}",
            r.body
        );
    }

    // Other roles: refused at the door, and by the platform itself.
    for role in [Role::CounterClerk, Role::DepartmentOfficer, Role::Auditor] {
        let t = app.token(role).await;
        let r = app.post_json(FEES, Some(&t), good.clone()).await;
        assert_eq!(r.status, 403, "{role:?}: {}", r.body);
    }
    let clerk = app.token(Role::CounterClerk).await;
    assert_eq!(app.get(FEES, Some(&clerk)).await.status, 403);
    let refused = p
        .fee_rule_add(
            &common::clerk(),
            &platform::fees::FeeRuleRequest {
                scope_kind: "merchant".into(),
                scope_value: "cafe".into(),
                rate_bp: 45,
                fixed_fen: 0,
                effective_from: "2026-11-30".into(),
            },
        )
        .await;
    assert!(
        matches!(refused, Err(platform::PlatformError::Forbidden(_))),
        "{refused:?}"
    );
    assert_eq!(rules(&app.get(FEES, Some(&officer)).await.json()).len(), 6);

    // The good rule once; the same scope and day again is a conflict naming both.
    let r = app.post_json(FEES, Some(&officer), good.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post_json(FEES, Some(&officer), with("rate_bp", json!(50)))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("merchant cafe") && detail.contains("2026-11-30"),
        "{detail}"
    );
    // A rule for the open window itself is in force at once.
    let r = app
        .post_json(
            FEES,
            Some(&officer),
            json!({"scope_kind": "category", "scope_value": "canteen", "rate_bp": 5,
                   "fixed_fen": 1, "effective_from": "2026-11-26"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["standing"], "in_force");
    let all = app.get(FEES, Some(&officer)).await.json();
    assert_eq!(rules(&all).len(), 8);
    assert_eq!(
        rule_of(&all, "cafe", "2026-11-30").map(|r| r.2),
        Some(45),
        "the refused rule changed nothing"
    );
    assert_eq!(
        p.store
            .audit_recent(Some("clearing.fee_rule.add"), 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

/// The schedule holds at most `FEE_RULES_MAX` rules: the next is refused naming the limit.
/// On SQLite only: filling 10,000 rules one audited transaction at a time takes about a minute
/// on PostgreSQL; the store's bound itself is checked on both backends by the conformance
/// suite (`fee_rules_are_added_never_changed`, with a small bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_is_bounded() {
    let backend = Backend::Sqlite;
    use platform::fees::FEE_RULES_MAX;
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let officer = app.token(Role::ClearingOfficer).await;
    // Filled straight through the store (the platform's checks are not what is tested here).
    for n in p.store.fee_rules().await.unwrap().len()..FEE_RULES_MAX {
        p.store
            .fee_rule_add(
                &store::FeeRuleRow {
                    id: 0,
                    scope_kind: "merchant".into(),
                    scope_value: format!("m{n:05}"),
                    rate_bp: 10,
                    fixed_fen: 0,
                    effective_from: "2026-12-01".into(),
                    created_ms: 0,
                    created_by: "test".into(),
                },
                FEE_RULES_MAX,
                audit::Draft::new("test", "clearing.fee_rule.add", "", "test", ""),
            )
            .await
            .unwrap();
    }
    let r = app
        .post_json(
            FEES,
            Some(&officer),
            json!({"scope_kind": "category", "scope_value": "canteen", "rate_bp": 5,
                   "fixed_fen": 0, "effective_from": "2026-11-30"}),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("FEE_RULES_MAX = 10000 rules"),
        "{}",
        r.body
    );
    let all = app.get(FEES, Some(&officer)).await.json();
    assert_eq!(rules(&all).len(), FEE_RULES_MAX);
}

const PAGE: &str = "/console/clearing/fees";

async fn the_console_form_adds_a_rule(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let officer = Console::sign_in(&app, Role::ClearingOfficer).await;

    // The rules table: rates as percentages, fixed fees in yuan, in Chinese first.
    let page = officer.get(PAGE).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("手续费率"), "{}", page.body);
    assert!(
        page.body
            .contains("<td>0.60%</td><td>0.00</td><td>2026-01-01</td>")
    );
    assert!(page.body.contains("商户类别：shop（商户零售）"));
    assert!(page.body.contains("生效中"));
    assert!(page.body.contains("id=\"open-window\">2026-11-26<"));
    let english = officer.get(&format!("{PAGE}?lang=en")).await;
    assert!(english.body.contains("Clearing: fee schedule") && english.body.contains("in force"));
    assert!(
        english
            .body
            .contains("<td>Merchant category: shop (shops)</td>")
    );
    assert!(english.body.contains("<td>Merchant category: transit</td>"));
    let token = officer.token(PAGE).await;
    let form = |token: &str, day: &str| {
        vec![
            ("token", token.to_owned()),
            ("scope_kind", "category".to_owned()),
            ("scope_value", "transit".to_owned()),
            ("rate_percent", "0.25".to_owned()),
            ("fixed_yuan", "0.01".to_owned()),
            ("effective_from", day.to_owned()),
        ]
    };
    let officer = &officer;
    let send = |f: Vec<(&'static str, String)>| async move {
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        officer.post(PAGE, &f).await
    };

    // A wrong token: nothing added, and the page says why.
    let (to, page) = send(form("not-the-token", "2026-11-28")).await;
    assert_eq!(to, "/console/clearing/fees?error=token&on=transit");
    assert!(page.body.contains("表单已失效"), "{}", page.body);
    assert!(page.body.contains("the form has expired"));
    // Back-dated into a window that has ended: refused in words.
    let (to, page) = send(form(&token, "2026-11-20")).await;
    assert_eq!(to, "/console/clearing/fees?error=backdated&on=transit");
    assert!(page.body.contains("生效日期早于当前开放的清分窗口"));
    // A rate that is not a percentage with two decimals.
    let mut bad = form(&token, "2026-11-28");
    bad[3].1 = "0.255".into();
    let (to, _) = send(bad).await;
    assert_eq!(to, "/console/clearing/fees?error=rate&on=transit");
    assert_eq!(p.fee_schedule().await.unwrap().rules().len(), 6);

    // The rule, through the form: 0.25 % → 25 bp, 0.01 yuan → 1 fen.
    let (to, page) = send(form(&token, "2026-11-28")).await;
    assert_eq!(to, "/console/clearing/fees?ok=rule_added&on=transit");
    assert!(
        page.body.contains("已新增 transit 的费率规则"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<td>0.25%</td><td>0.01</td><td>2026-11-28</td><td>待生效</td>"),
        "{}",
        page.body
    );
    let kept = p
        .fee_rules(&Caller::cli("test"))
        .await
        .unwrap()
        .rules
        .into_iter()
        .find(|v| v.rule.effective_from == "2026-11-28")
        .unwrap()
        .rule;
    assert_eq!(
        (
            kept.scope_value.as_str(),
            kept.rate_bp,
            kept.fixed_fen,
            kept.created_by.as_str()
        ),
        ("transit", 25, 1, "operator:clearing-officer")
    );
    assert_eq!(
        p.store
            .audit_recent(Some("clearing.fee_rule.add"), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // The auditor sees the table but no form, and cannot post one.
    let auditor = Console::sign_in(&app, Role::Auditor).await;
    let page = auditor.get(PAGE).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("0.25%") && !page.body.contains("fee-rule-form"));
    let r = auditor
        .send(
            "POST",
            PAGE,
            Some(form_body(&[
                ("token", "x"),
                ("scope_kind", "category"),
                ("scope_value", "shop"),
                ("rate_percent", "1"),
                ("fixed_yuan", "0"),
                ("effective_from", "2026-11-29"),
            ])),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(p.fee_schedule().await.unwrap().rules().len(), 7);
}

both_backends!(
    a_new_rule_is_seen_and_used_by_later_windows,
    bad_rules_and_other_roles_are_refused,
    the_console_form_adds_a_rule,
);
