//! Merchants and terminals: unique codes, registration only for a known merchant, activation
//! once with the right code's digest.

use super::{NOW, draft};
use crate::*;

pub async fn merchants_and_terminals_activate_once(s: &dyn Store) {
    let m = MerchantRow {
        code: "metro".into(),
        name: "郑州地铁".into(),
        category: "transit".into(),
        settlement_account: "41050100000001".into(),
        created_ms: NOW,
    };
    s.merchant_insert(&m, draft("merchant.create"), NOW)
        .await
        .unwrap();
    let r = s.merchant_insert(&m, draft("merchant.create"), NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(s.merchant("metro").await.unwrap(), Some(m.clone()));
    assert_eq!(s.merchants().await.unwrap().len(), 1);
    let t = TerminalRow {
        id: "GATE-0001".into(),
        merchant: "metro".into(),
        kind: "gate".into(),
        site: "M1-04".into(),
        status: "registered".into(),
        activation_digest: Some("D1".into()),
        public_key: None,
        psam_serial: Some("PSAM01".into()),
        software_version: None,
        registered_ms: NOW,
        activated_ms: None,
    };
    s.terminal_insert(&t, draft("terminal.register"), NOW)
        .await
        .unwrap();
    let r = s.terminal_insert(&t, draft("terminal.register"), NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let stray = TerminalRow {
        id: "POS-1".into(),
        merchant: "nobody".into(),
        ..t.clone()
    };
    let r = s
        .terminal_insert(&stray, draft("terminal.register"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    // The wrong digest changes nothing; the right one activates once.
    let r = s
        .terminal_activate(
            "GATE-0001",
            "D2",
            &[2; 33],
            "1.0",
            draft("terminal.activate"),
            NOW,
        )
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(
        s.terminal("GATE-0001").await.unwrap().unwrap().status,
        "registered"
    );
    let a = s
        .terminal_activate(
            "GATE-0001",
            "D1",
            &[2; 33],
            "1.0",
            draft("terminal.activate"),
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            a.status.as_str(),
            a.public_key.as_deref(),
            a.activated_ms,
            a.activation_digest
        ),
        ("active", Some(&[2u8; 33][..]), Some(NOW + 1), None)
    );
    let r = s
        .terminal_activate(
            "GATE-0001",
            "D1",
            &[3; 33],
            "1.0",
            draft("terminal.activate"),
            NOW + 2,
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "the code is spent: {r:?}"
    );
    assert_eq!(s.terminals_of(Some("metro")).await.unwrap().len(), 1);
    assert!(s.terminals_of(Some("bus")).await.unwrap().is_empty());
    // Merchant, terminal, activation: the refused writes left nothing.
    assert_eq!(audit_verify(s).await.unwrap(), Ok(3));
}
