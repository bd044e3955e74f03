//! Conformance of [`AppsStore`](crate::AppsStore): registry, card function states, history.

use super::{NOW, b, card, draft, event, facts, feed};
use crate::*;
use resident::Source;

fn app(code: &str, aid: &str) -> AppRow {
    AppRow {
        code: code.into(),
        name: format!("{code} app"),
        aid_hex: aid.into(),
        owner: "card_company".into(),
        files_json: "[]".into(),
        key_purposes: "maintenance".into(),
        created_ms: NOW,
    }
}

fn function(code: &str, app: &str) -> FunctionRow {
    FunctionRow {
        code: code.into(),
        app: app.into(),
        name: format!("{code} function"),
        target_json: "{}".into(),
        parameters_hex: "".into(),
        created_ms: NOW,
    }
}

fn state(number: &str, f: &str, enabled: bool, pending: Option<bool>, v: i64) -> CardFunctionRow {
    CardFunctionRow {
        number: number.into(),
        function: f.into(),
        enabled,
        pending,
        version: v,
        updated_ms: NOW + v,
    }
}

fn step(number: &str, f: &str, action: &str, sw: Option<i32>) -> CardFunctionEventRow {
    CardFunctionEventRow {
        number: number.into(),
        function: f.into(),
        action: action.into(),
        sw,
        actor: "operator:test".into(),
        at_ms: NOW,
    }
}

pub async fn apps_registry_and_card_functions(s: &dyn Store) {
    s.app_insert(
        &app("city", "F0434954594341524401"),
        draft("app.register"),
        NOW,
    )
    .await
    .unwrap();
    // Same code, or same AID: refused.
    assert!(matches!(
        s.app_insert(&app("city", "F000000001"), draft("app.register"), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.app_insert(
            &app("other", "F0434954594341524401"),
            draft("app.register"),
            NOW
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    s.function_insert(&function("library", "city"), draft("app.function"), NOW)
        .await
        .unwrap();
    assert!(matches!(
        s.function_insert(&function("ghost", "nowhere"), draft("app.function"), NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.function_insert(&function("library", "city"), draft("app.function"), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.apps_list().await.unwrap(),
        vec![app("city", "F0434954594341524401")]
    );
    assert_eq!(
        s.functions_list().await.unwrap(),
        vec![function("library", "city")]
    );

    let f = feed(s, Source::Police).await;
    s.residents_apply(
        f,
        &[facts(1, "a", None, None)],
        draft("resident.import"),
        NOW,
    )
    .await
    .unwrap();
    let r1 = s.resident_by_blind(&b("id", 1)).await.unwrap().unwrap().id;
    let n = "4101000000000018";
    s.card_insert(
        &card(n, r1, "active", 1),
        &event(n, "-", "active"),
        None,
        draft("card.apply"),
        NOW,
    )
    .await
    .unwrap();

    // Unknown card or function: nothing written.
    assert!(matches!(
        s.card_function_set(
            &state("4101000000000026", "library", false, Some(true), 1),
            &step("4101000000000026", "library", "script_enable", None),
            draft("card.function.script"),
            NOW,
        )
        .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.card_function_set(
            &state(n, "ghost", false, Some(true), 1),
            &step(n, "ghost", "script_enable", None),
            draft("card.function.script"),
            NOW,
        )
        .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.card_functions(n).await.unwrap().is_empty());

    let pending = state(n, "library", false, Some(true), 1);
    s.card_function_set(
        &pending,
        &step(n, "library", "script_enable", None),
        draft("card.function.script"),
        NOW,
    )
    .await
    .unwrap();
    // A second writer at the same version loses.
    assert!(matches!(
        s.card_function_set(
            &pending,
            &step(n, "library", "script_enable", None),
            draft("card.function.script"),
            NOW,
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    let applied = state(n, "library", true, None, 2);
    s.card_function_set(
        &applied,
        &step(n, "library", "applied", Some(0x9000)),
        draft("card.function.confirm"),
        NOW,
    )
    .await
    .unwrap();
    assert!(matches!(
        s.card_function_set(
            &state(n, "library", false, None, 2),
            &step(n, "library", "applied", Some(0x9000)),
            draft("card.function.confirm"),
            NOW,
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.card_functions(n).await.unwrap(), vec![applied]);
    let history = s.card_function_events(n).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        ["script_enable", "applied"]
    );
    assert_eq!(history[1].sw, Some(0x9000));
    // Every successful write is on the audit chain, and the chain holds.
    let actions: Vec<String> = s
        .audit_recent(None, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.draft.action)
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.starts_with("card.function") || a.starts_with("app."))
            .count(),
        4
    );
    assert!(audit_verify(s).await.unwrap().is_ok());
}
