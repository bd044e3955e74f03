//! Operators: creation and its validation, sign-in and sessions, throttling of failed
//! sign-ins, sign-out, and API tokens with their expiry.

use crate::fixture::{Fixture, admin, audit_seq, caller};
use crate::on_both_backends;
use platform::PlatformError;
use platform::operators::{OperatorRequest, SESSION_TTL_MS, SIGN_IN_WINDOW_MS};
use resident::Source;
use store::{CredentialKind, Role};

on_both_backends!(
    operators_are_validated_and_unique,
    sign_in_gives_a_session_that_sign_out_revokes,
    repeated_failures_lock_the_account_for_the_window,
    api_tokens_are_for_administrators_to_issue_and_expire,
);

const PASSWORD: &str = "correct-horse-42";

fn req(username: &str, role: Role, department: Option<Source>) -> OperatorRequest {
    OperatorRequest {
        username: username.into(),
        display_name: "测试操作员".into(),
        password: PASSWORD.into(),
        role,
        department,
    }
}

fn invalid_field(r: platform::Result<store::OperatorRow>) -> String {
    match r {
        Err(PlatformError::Invalid { fields, .. }) => fields[0].field.clone(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

async fn operators_are_validated_and_unique(f: Fixture) {
    let p = &f.p;
    for bad in ["ab", "Alice", "ali ce", "张三", "a/b", &"x".repeat(33)] {
        let r = p
            .create_operator(&admin(), req(bad, Role::CounterClerk, None))
            .await;
        assert_eq!(invalid_field(r), "username", "username {bad:?}");
    }
    let mut short = req("clerk.one", Role::CounterClerk, None);
    short.password = "123456789".into();
    assert_eq!(
        invalid_field(p.create_operator(&admin(), short).await),
        "password"
    );
    let mut long = req("clerk.one", Role::CounterClerk, None);
    long.password = "p".repeat(129);
    assert_eq!(
        invalid_field(p.create_operator(&admin(), long).await),
        "password"
    );
    let mut nameless = req("clerk.one", Role::CounterClerk, None);
    nameless.display_name = "  ".into();
    assert_eq!(
        invalid_field(p.create_operator(&admin(), nameless).await),
        "display_name"
    );
    // A department officer needs exactly one department; nobody else has one.
    let r = p
        .create_operator(&admin(), req("police.one", Role::DepartmentOfficer, None))
        .await;
    assert_eq!(invalid_field(r), "department");
    for role in [
        Role::Administrator,
        Role::CounterClerk,
        Role::ClearingOfficer,
        Role::Auditor,
    ] {
        let r = p
            .create_operator(&admin(), req("clerk.one", role, Some(Source::Police)))
            .await;
        assert_eq!(invalid_field(r), "department", "{role:?} with a department");
    }
    assert!(
        p.operators().await.unwrap().is_empty(),
        "a refused operator was stored"
    );

    // Only administrators create operators.
    for role in [Role::CounterClerk, Role::Auditor, Role::ClearingOfficer] {
        let r = p
            .create_operator(
                &caller("x", role, None),
                req("clerk.one", Role::CounterClerk, None),
            )
            .await;
        assert!(
            matches!(r, Err(PlatformError::Forbidden(_))),
            "{role:?}: {r:?}"
        );
    }
    let officer = caller("police.x", Role::DepartmentOfficer, Some(Source::Police));
    let r = p
        .create_operator(&officer, req("clerk.one", Role::CounterClerk, None))
        .await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    let before = audit_seq(p).await;
    let op = p
        .create_operator(
            &admin(),
            req(
                "police-1.a_b",
                Role::DepartmentOfficer,
                Some(Source::Police),
            ),
        )
        .await
        .unwrap();
    assert_eq!(op.username, "police-1.a_b");
    assert_eq!(op.role, Role::DepartmentOfficer);
    assert_eq!(op.department, Some(Source::Police));
    assert!(
        !op.password_hash.contains(PASSWORD),
        "the password is stored hashed"
    );
    assert!(
        op.password_hash.starts_with("$argon2id$"),
        "{}",
        op.password_hash
    );
    assert_eq!(audit_seq(p).await, before + 1);
    let e = &p
        .store
        .audit_recent(Some("operator.create"), 1)
        .await
        .unwrap()[0];
    assert_eq!(e.draft.record, "operator:police-1.a_b");
    assert!(!e.draft.detail.contains(PASSWORD));

    let dup = p
        .create_operator(&admin(), req("police-1.a_b", Role::CounterClerk, None))
        .await;
    match dup {
        Err(PlatformError::Conflict(m)) => assert!(m.contains("police-1.a_b"), "{m}"),
        other => panic!("duplicate username: {other:?}"),
    }
    let ops = p.operators().await.unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].role, Role::DepartmentOfficer);
}

async fn sign_in_gives_a_session_that_sign_out_revokes(f: Fixture) {
    let p = &f.p;
    let op = p
        .create_operator(
            &admin(),
            req(
                "hr.zhou",
                Role::DepartmentOfficer,
                Some(Source::HrSocialSecurity),
            ),
        )
        .await
        .unwrap();
    let (token, c) = p.sign_in("hr.zhou", PASSWORD, "10.1.2.3").await.unwrap();
    assert!(token.starts_with("cs_") && token.len() > 40, "{token}");
    assert_eq!(c.operator_id, Some(op.id));
    assert_eq!(c.role, Role::DepartmentOfficer);
    assert_eq!(c.department, Some(Source::HrSocialSecurity));
    let e = &p.store.audit_recent(None, 1).await.unwrap()[0];
    assert_eq!(e.draft.action, "auth.sign_in");
    assert_eq!(e.draft.actor, "operator:hr.zhou");
    assert_eq!(e.draft.origin, "10.1.2.3");
    assert!(
        !format!("{:?}", e.draft).contains(&token[3..]),
        "the token is not logged"
    );

    let (who, kind) = p.authenticate(&token, "10.1.2.4").await.unwrap();
    assert_eq!(kind, CredentialKind::Session);
    assert_eq!(who.operator_id, Some(op.id));
    assert_eq!(who.username, "hr.zhou");
    assert_eq!(who.role, Role::DepartmentOfficer);
    assert_eq!(who.department, Some(Source::HrSocialSecurity));
    assert_eq!(who.origin, "10.1.2.4");

    // Anything else is not a credential.
    for bad in [
        "",
        "cs_",
        "cs_00",
        &token[..token.len() - 1],
        &format!("{token}0"),
        &"c".repeat(200),
    ] {
        let r = p.authenticate(bad, "x").await;
        assert!(
            matches!(r, Err(PlatformError::Unauthenticated)),
            "{bad:?}: {r:?}"
        );
    }

    p.sign_out(&who, &token).await.unwrap();
    let r = p.authenticate(&token, "x").await;
    assert!(
        matches!(r, Err(PlatformError::Unauthenticated)),
        "after sign-out: {r:?}"
    );
    assert_eq!(
        p.store.audit_recent(None, 1).await.unwrap()[0].draft.action,
        "auth.sign_out"
    );

    // A session ends by itself after its time to live.
    let (token, _) = p.sign_in("hr.zhou", PASSWORD, "10.1.2.3").await.unwrap();
    f.clock.advance_ms(SESSION_TTL_MS - 1);
    assert!(
        p.authenticate(&token, "x").await.is_ok(),
        "a session lasts {SESSION_TTL_MS} ms"
    );
    f.clock.advance_ms(1);
    let r = p.authenticate(&token, "x").await;
    assert!(
        matches!(r, Err(PlatformError::Unauthenticated)),
        "expired session: {r:?}"
    );
}

async fn repeated_failures_lock_the_account_for_the_window(f: Fixture) {
    let p = &f.p;
    p.create_operator(&admin(), req("clerk.wu", Role::CounterClerk, None))
        .await
        .unwrap();
    p.create_operator(&admin(), req("clerk.qian", Role::CounterClerk, None))
        .await
        .unwrap();

    let wrong = "wrong-password-1";
    for n in 1..=5 {
        let before = audit_seq(p).await;
        let r = p.sign_in("clerk.wu", wrong, "10.9.9.9").await;
        assert!(
            matches!(r, Err(PlatformError::Unauthenticated)),
            "failure {n}: {r:?}"
        );
        assert_eq!(audit_seq(p).await, before + 1, "failure {n} is audited");
        let e = &p.store.audit_recent(None, 1).await.unwrap()[0];
        assert_eq!(e.draft.action, "auth.sign_in.fail");
        assert_eq!(e.draft.actor, "anonymous:clerk.wu");
        assert_eq!(e.draft.record, "operator:clerk.wu");
        assert_eq!(e.draft.origin, "10.9.9.9");
        let text = format!("{:?}", e.draft);
        assert!(
            !text.contains(wrong),
            "the tried password is not logged: {text}"
        );
        f.clock.advance_ms(1_000);
    }
    // Locked now, even with the right password.
    let r = p.sign_in("clerk.wu", PASSWORD, "10.9.9.9").await;
    match r {
        Err(PlatformError::Locked(m)) => assert!(m.contains("minute"), "{m}"),
        other => panic!("sixth attempt should be locked: {other:?}"),
    }
    // Another account is not affected.
    p.sign_in("clerk.qian", PASSWORD, "10.9.9.9").await.unwrap();

    // Still locked just before the window (counted from the first failure) ends.
    f.clock.advance_ms(SIGN_IN_WINDOW_MS - 5_000 - 1);
    let r = p.sign_in("clerk.wu", PASSWORD, "10.9.9.9").await;
    assert!(matches!(r, Err(PlatformError::Locked(_))), "{r:?}");
    f.clock.advance_ms(1);
    let (token, c) = p.sign_in("clerk.wu", PASSWORD, "10.9.9.9").await.unwrap();
    assert_eq!(c.role, Role::CounterClerk);
    assert!(p.authenticate(&token, "x").await.is_ok());

    // A success clears the count: four more failures do not lock.
    for _ in 0..4 {
        let r = p.sign_in("clerk.wu", wrong, "10.9.9.9").await;
        assert!(matches!(r, Err(PlatformError::Unauthenticated)), "{r:?}");
    }
    p.sign_in("clerk.wu", PASSWORD, "10.9.9.9").await.unwrap();

    // An unknown user gets the same answer, and it is audited too.
    let before = audit_seq(p).await;
    let r = p.sign_in("nobody", PASSWORD, "10.9.9.8").await;
    assert!(matches!(r, Err(PlatformError::Unauthenticated)), "{r:?}");
    assert_eq!(audit_seq(p).await, before + 1);
    let e = &p
        .store
        .audit_recent(Some("auth.sign_in.fail"), 1)
        .await
        .unwrap()[0];
    assert_eq!(e.draft.actor, "anonymous:nobody");

    assert_eq!(
        p.audit_verify().await.unwrap(),
        Ok(audit_seq(p).await as u64)
    );
}

async fn api_tokens_are_for_administrators_to_issue_and_expire(f: Fixture) {
    let p = &f.p;
    let clerk_op = p
        .create_operator(&admin(), req("kiosk.01", Role::CounterClerk, None))
        .await
        .unwrap();
    let token = p
        .create_api_token(&admin(), "kiosk.01", "自助机 01", 1)
        .await
        .unwrap();
    assert!(token.starts_with("ct_"), "{token}");
    let e = &p.store.audit_recent(None, 1).await.unwrap()[0];
    assert_eq!(e.draft.action, "auth.token.create");
    assert_eq!(e.draft.record, "operator:kiosk.01");
    assert!(
        !format!("{:?}", e.draft).contains(&token[3..]),
        "the token is not logged"
    );

    let (who, kind) = p.authenticate(&token, "10.0.0.7").await.unwrap();
    assert_eq!(kind, CredentialKind::ApiToken);
    assert_eq!(who.operator_id, Some(clerk_op.id));
    assert_eq!(who.role, Role::CounterClerk);
    assert_eq!(who.department, None);

    // Only administrators issue tokens, within bounds, for operators that exist.
    for c in [
        who.clone(),
        caller("auditor", Role::Auditor, None),
        caller("police", Role::DepartmentOfficer, Some(Source::Police)),
    ] {
        let r = p.create_api_token(&c, "kiosk.01", "mine", 30).await;
        assert!(
            matches!(r, Err(PlatformError::Forbidden(_))),
            "{:?}: {r:?}",
            c.role
        );
    }
    for days in [0, 367] {
        let r = p.create_api_token(&admin(), "kiosk.01", "x", days).await;
        assert!(
            matches!(r, Err(PlatformError::Invalid { .. })),
            "{days} days: {r:?}"
        );
    }
    let r = p.create_api_token(&admin(), "kiosk.01", " ", 1).await;
    assert!(matches!(r, Err(PlatformError::Invalid { .. })), "{r:?}");
    let r = p.create_api_token(&admin(), "ghost", "x", 1).await;
    assert!(matches!(r, Err(PlatformError::NotFound(_))), "{r:?}");

    // A one-day token works until the day is over, then never again.
    f.clock.advance_ms(86_400_000 - 1);
    assert!(p.authenticate(&token, "x").await.is_ok());
    f.clock.advance_ms(1);
    let r = p.authenticate(&token, "x").await;
    assert!(
        matches!(r, Err(PlatformError::Unauthenticated)),
        "expired token: {r:?}"
    );

    // Revoking works for API tokens too.
    let token = p
        .create_api_token(&admin(), "kiosk.01", "second", 366)
        .await
        .unwrap();
    let (who, _) = p.authenticate(&token, "x").await.unwrap();
    p.sign_out(&who, &token).await.unwrap();
    assert!(matches!(
        p.authenticate(&token, "x").await,
        Err(PlatformError::Unauthenticated)
    ));
}
