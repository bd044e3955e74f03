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

/// The fleet's state: a PSAM bound to one terminal only, a batch answered once (the first
/// answer stands), and what terminals report.
pub async fn terminal_fleet_binds_psams_and_answers_batches_once(s: &dyn Store) {
    let m = MerchantRow {
        code: "bus".into(),
        name: "公交".into(),
        category: "transit".into(),
        settlement_account: "41050100000002".into(),
        created_ms: NOW,
    };
    s.merchant_insert(&m, draft("merchant.create"), NOW)
        .await
        .unwrap();
    for id in ["BUS-1", "BUS-2"] {
        let t = TerminalRow {
            id: id.into(),
            merchant: "bus".into(),
            kind: "validator".into(),
            site: "B2".into(),
            status: "registered".into(),
            activation_digest: Some("D".into()),
            public_key: None,
            psam_serial: None,
            software_version: None,
            registered_ms: NOW,
            activated_ms: None,
        };
        s.terminal_insert(&t, draft("terminal.register"), NOW)
            .await
            .unwrap();
    }
    assert_eq!(s.terminal_psam("BUS-1").await.unwrap(), None);
    s.terminal_psam_bind("BUS-1", "000000000101", NOW)
        .await
        .unwrap();
    // Again: a no-op. Another PSAM for it, or its PSAM for another terminal: refused.
    s.terminal_psam_bind("BUS-1", "000000000101", NOW)
        .await
        .unwrap();
    let r = s.terminal_psam_bind("BUS-1", "000000000102", NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let r = s.terminal_psam_bind("BUS-2", "000000000101", NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let r = s.terminal_psam_bind("NOPE", "000000000109", NOW).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    assert_eq!(
        s.terminal_psam("BUS-1").await.unwrap().as_deref(),
        Some("000000000101")
    );
    assert_eq!(s.terminal_psam("BUS-2").await.unwrap(), None);

    let b = TerminalBatchRow {
        terminal: "BUS-1".into(),
        batch_id: "b1".into(),
        kind: "card".into(),
        digest: "AA".into(),
        records: 3,
        answer: b"{\"results\":[1]}".to_vec(),
        received_ms: NOW + 5,
    };
    assert_eq!(s.terminal_batch("BUS-1", "b1").await.unwrap(), None);
    assert_eq!(s.terminal_batch_insert(&b).await.unwrap(), b);
    let second = TerminalBatchRow {
        answer: b"{\"results\":[2]}".to_vec(),
        received_ms: NOW + 9,
        ..b.clone()
    };
    assert_eq!(
        s.terminal_batch_insert(&second).await.unwrap(),
        b,
        "the first answer stands"
    );
    assert_eq!(s.terminal_batch("BUS-1", "b1").await.unwrap(), Some(b));
    // The same batch id of another terminal is another batch.
    assert_eq!(s.terminal_batch("BUS-2", "b1").await.unwrap(), None);

    s.terminal_seen("BUS-2", NOW + 1, None).await.unwrap();
    s.terminal_seen(
        "BUS-1",
        NOW + 20,
        Some(&TerminalReport {
            records_pending: Some(7),
            parameters_version: Some("P1".into()),
            deny_list_version: Some(3),
        }),
    )
    .await
    .unwrap();
    // An older sighting does not move last seen back.
    s.terminal_seen("BUS-1", NOW + 10, None).await.unwrap();
    let st = s.terminal_statuses().await.unwrap();
    assert_eq!(st.len(), 2);
    assert_eq!(
        st[0],
        TerminalStatusRow {
            terminal: "BUS-1".into(),
            last_seen_ms: NOW + 20,
            last_upload_ms: Some(NOW + 5),
            uploaded_records: 3,
            records_pending: Some(7),
            parameters_version: Some("P1".into()),
            deny_list_version: Some(3),
        }
    );
    assert_eq!(
        (
            st[1].last_seen_ms,
            st[1].last_upload_ms,
            st[1].uploaded_records
        ),
        (NOW + 1, None, 0)
    );
}
