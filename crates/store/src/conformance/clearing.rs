//! Clearing windows: a window closes once with its report; closing again writes nothing.

use super::{NOW, draft};
use crate::*;

pub async fn clearing_windows_close_once(s: &dyn Store) {
    let w = ClearingWindowRow {
        window_id: "2026-11-30".into(),
        closed_ms: NOW,
        closed_by: "operator:clr".into(),
        digest: "AB".into(),
    };
    let line = |m: &str, gross: i64, fee: i64| ClearingLineRow {
        window_id: "2026-11-30".into(),
        merchant: m.into(),
        category: "transit".into(),
        count: 3,
        gross_fen: gross,
        fee_fen: fee,
        net_fen: gross - fee,
    };
    let lines: Vec<ClearingLineRow> = (0..150)
        .map(|k| line(&format!("m{k:03}"), 1_000 + k, 3))
        .collect();
    assert!(
        s.clearing_close(&w, &lines, 0, draft("clearing.close"), NOW)
            .await
            .unwrap()
    );
    let other = ClearingWindowRow {
        closed_ms: NOW + 1,
        digest: "CD".into(),
        ..w.clone()
    };
    assert!(
        !s.clearing_close(&other, &lines[..1], 0, draft("clearing.close"), NOW + 1)
            .await
            .unwrap()
    );
    assert_eq!(s.clearing_window("2026-11-30").await.unwrap(), Some(w));
    let back = s.clearing_lines("2026-11-30").await.unwrap();
    assert_eq!(back, lines);
    assert!(s.clearing_window("2026-12-01").await.unwrap().is_none());
    // A line whose gross is not fee + net is refused by the storage, and nothing is written.
    let bad = ClearingLineRow {
        net_fen: 1,
        ..line("x", 10, 3)
    };
    let w2 = ClearingWindowRow {
        window_id: "2026-12-01".into(),
        ..other
    };
    assert!(
        s.clearing_close(
            &w2,
            &[ClearingLineRow {
                window_id: "2026-12-01".into(),
                ..bad
            }],
            0,
            draft("clearing.close"),
            NOW
        )
        .await
        .is_err()
    );
    assert!(s.clearing_window("2026-12-01").await.unwrap().is_none());
    assert_eq!(audit_verify(s).await.unwrap(), Ok(1));
}

/// Closed windows are listed the latest first with their report's totals (a window of no
/// lines has zero totals); the limit holds.
pub async fn clearing_windows_list_latest_first_with_totals(s: &dyn Store) {
    assert!(s.clearing_windows(10).await.unwrap().is_empty());
    let window = |id: &str, at: i64| ClearingWindowRow {
        window_id: id.into(),
        closed_ms: at,
        closed_by: "operator:clr".into(),
        digest: format!("D{id}"),
    };
    let line = |w: &str, m: &str, count: i64, gross: i64, fee: i64| ClearingLineRow {
        window_id: w.into(),
        merchant: m.into(),
        category: "shop".into(),
        count,
        gross_fen: gross,
        fee_fen: fee,
        net_fen: gross - fee,
    };
    for (id, lines) in [
        (
            "2026-11-24",
            vec![
                line("2026-11-24", "cafe", 2, 8_000, 48),
                line("2026-11-24", "metro", 5, 1_000, 3),
            ],
        ),
        ("2026-11-25", vec![]),
        ("2026-11-26", vec![line("2026-11-26", "cafe", 1, -500, 0)]),
    ] {
        s.clearing_close(&window(id, NOW), &lines, 0, draft("clearing.close"), NOW)
            .await
            .unwrap();
    }
    let listed = s.clearing_windows(10).await.unwrap();
    let totals: Vec<(&str, i64, i64, i64, i64, i64)> = listed
        .iter()
        .map(|w| {
            (
                w.window.window_id.as_str(),
                w.lines,
                w.count,
                w.gross_fen,
                w.fee_fen,
                w.net_fen,
            )
        })
        .collect();
    assert_eq!(
        totals,
        vec![
            ("2026-11-26", 1, 1, -500, 0, -500),
            ("2026-11-25", 0, 0, 0, 0, 0),
            ("2026-11-24", 2, 7, 9_000, 51, 8_949),
        ]
    );
    assert_eq!(listed[2].window, window("2026-11-24", NOW));
    let two = s.clearing_windows(2).await.unwrap();
    assert_eq!(
        two.iter()
            .map(|w| w.window.window_id.as_str())
            .collect::<Vec<_>>(),
        ["2026-11-26", "2026-11-25"]
    );

    // A window's settlement instructions, whatever their state.
    let instruction = |id: &str, w: &str| SettlementInstructionRow {
        end_to_end_id: id.into(),
        window_id: w.into(),
        merchant: "cafe".into(),
        amount_fen: 7_952,
        execution_date: "2026-11-25".into(),
        state: "sent".into(),
    };
    s.settlement_instructions_record(&[
        instruction("W20261124-metro", "2026-11-24"),
        instruction("W20261124-cafe", "2026-11-24"),
        instruction("W20261126-cafe", "2026-11-26"),
    ])
    .await
    .unwrap();
    let of = s
        .settlement_instructions_of_window("2026-11-24")
        .await
        .unwrap();
    assert_eq!(
        of.iter()
            .map(|i| i.end_to_end_id.as_str())
            .collect::<Vec<_>>(),
        ["W20261124-cafe", "W20261124-metro"]
    );
    assert!(
        s.settlement_instructions_of_window("2026-11-25")
            .await
            .unwrap()
            .is_empty()
    );
}

/// Reconciliation: instructions are kept once; a statement is imported once with its matched
/// instructions and exceptions in one transaction; an exception is resolved once.
pub async fn statements_import_once_and_exceptions_resolve_once(s: &dyn Store) {
    let instruction = |id: &str, fen: i64, date: &str| SettlementInstructionRow {
        end_to_end_id: id.into(),
        window_id: "2026-11-26".into(),
        merchant: "metro".into(),
        amount_fen: fen,
        execution_date: date.into(),
        state: "sent".into(),
    };
    let rows = [
        instruction("W20261126-metro", 498, "2026-11-27"),
        instruction("W20261126-bus", 1_000, "2026-11-27"),
        instruction("W20261127-metro", 700, "2026-11-28"),
    ];
    s.settlement_instructions_record(&rows).await.unwrap();
    // Kept again (the file made twice): nothing changes.
    s.settlement_instructions_record(&rows[..1]).await.unwrap();
    let due = s.settlement_instructions_due("2026-11-27").await.unwrap();
    assert_eq!(
        due.iter()
            .map(|r| r.end_to_end_id.as_str())
            .collect::<Vec<_>>(),
        ["W20261126-bus", "W20261126-metro"]
    );
    let statement = BankStatementRow {
        id: "STMT-1".into(),
        account: "1702020109000012345".into(),
        digest: "AB".repeat(32),
        entries: 3,
        matched: 1,
        imported_ms: NOW,
        imported_by: "operator:clr".into(),
    };
    let exception = |kind: &str, e2e: Option<&str>, sent, booked| ReconciliationExceptionRow {
        id: 0,
        statement_id: "STMT-1".into(),
        kind: kind.into(),
        end_to_end_id: e2e.map(Into::into),
        reference: Some("BK1".into()),
        sent_fen: sent,
        booked_fen: booked,
        state: "open".into(),
        resolution: None,
        resolved_by: None,
        resolved_ms: None,
        created_ms: NOW,
    };
    let exceptions = [
        exception(
            "amount_mismatch",
            Some("W20261126-bus"),
            Some(1_000),
            Some(990),
        ),
        exception("unexpected", None, None, Some(15)),
    ];
    s.statement_import(
        &statement,
        &["W20261126-metro".into()],
        &exceptions,
        draft("clearing.statement_import"),
        NOW,
    )
    .await
    .unwrap();
    let again = s
        .statement_import(
            &statement,
            &[],
            &[],
            draft("clearing.statement_import"),
            NOW,
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(s.bank_statement("STMT-1").await.unwrap(), Some(statement));
    assert!(s.bank_statement("STMT-2").await.unwrap().is_none());
    let state = |id: &'static str| async move {
        s.settlement_instruction(id).await.unwrap().unwrap().state
    };
    assert_eq!(state("W20261126-metro").await, "matched");
    assert_eq!(state("W20261126-bus").await, "exception");
    assert_eq!(state("W20261127-metro").await, "sent");
    assert!(s.settlement_instruction("nope").await.unwrap().is_none());
    assert!(
        s.settlement_instructions_due("2026-11-27")
            .await
            .unwrap()
            .is_empty()
    );

    let open = s
        .reconciliation_exceptions(Some("open"), 100)
        .await
        .unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(
        (
            open[0].kind.as_str(),
            open[0].booked_fen,
            open[1].kind.as_str()
        ),
        ("amount_mismatch", Some(990), "unexpected")
    );
    let done = s
        .reconciliation_exception_resolve(
            open[1].id,
            "bank fee",
            "operator:clr",
            draft("clearing.exception_resolve"),
            NOW + 5,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            done.state.as_str(),
            done.resolution.as_deref(),
            done.resolved_by.as_deref(),
            done.resolved_ms
        ),
        (
            "resolved",
            Some("bank fee"),
            Some("operator:clr"),
            Some(NOW + 5)
        )
    );
    let twice = s
        .reconciliation_exception_resolve(
            open[1].id,
            "again",
            "operator:clr",
            draft("clearing.exception_resolve"),
            NOW + 6,
        )
        .await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    let missing = s
        .reconciliation_exception_resolve(
            9_999_999,
            "x",
            "operator:clr",
            draft("clearing.exception_resolve"),
            NOW,
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert_eq!(
        s.reconciliation_exceptions(Some("open"), 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.reconciliation_exceptions(Some("resolved"), 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.reconciliation_exceptions(None, 100).await.unwrap().len(),
        2
    );
}

/// The fee schedule: the migration's six category rules are there; a rule is added once per
/// scope and day, audited; a rule dated into a closed window, or one past the bound, is
/// refused and nothing is written.
pub async fn fee_rules_are_added_never_changed(s: &dyn Store) {
    let seeded = s.fee_rules().await.unwrap();
    assert_eq!(
        seeded
            .iter()
            .map(|r| (
                r.scope_kind.as_str(),
                r.scope_value.as_str(),
                r.rate_bp,
                r.fixed_fen,
                r.effective_from.as_str()
            ))
            .collect::<Vec<_>>(),
        [
            ("category", "bike", 30, 0, "2026-01-01"),
            ("category", "hospital", 10, 0, "2026-01-01"),
            ("category", "shop", 60, 0, "2026-01-01"),
            ("category", "taxi", 30, 0, "2026-01-01"),
            ("category", "transit", 30, 0, "2026-01-01"),
            ("category", "utility", 10, 0, "2026-01-01"),
        ]
    );
    let rule = |kind: &str, value: &str, bp: i64, fixed: i64, from: &str| FeeRuleRow {
        id: 0,
        scope_kind: kind.into(),
        scope_value: value.into(),
        rate_bp: bp,
        fixed_fen: fixed,
        effective_from: from.into(),
        created_ms: NOW,
        created_by: "operator:clr".into(),
    };
    let metro = s
        .fee_rule_add(
            &rule("merchant", "metro", 15, 2, "2026-12-01"),
            100,
            draft("clearing.fee_rule"),
        )
        .await
        .unwrap();
    assert!(metro.id > 0);
    assert_eq!(
        metro,
        FeeRuleRow {
            id: metro.id,
            ..rule("merchant", "metro", 15, 2, "2026-12-01")
        }
    );
    let transit = s
        .fee_rule_add(
            &rule("category", "transit", 20, 0, "2026-12-01"),
            100,
            draft("clearing.fee_rule"),
        )
        .await
        .unwrap();
    assert_ne!(transit.id, metro.id);
    // The same scope and day again, even with other values: refused.
    let again = s
        .fee_rule_add(
            &rule("category", "transit", 25, 0, "2026-12-01"),
            100,
            draft("clearing.fee_rule"),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    // A window closed on 2026-12-05: no rule may take effect on or before it any more.
    s.clearing_close(
        &ClearingWindowRow {
            window_id: "2026-12-05".into(),
            closed_ms: NOW,
            closed_by: "operator:clr".into(),
            digest: "AB".into(),
        },
        &[],
        0,
        draft("clearing.close"),
        NOW,
    )
    .await
    .unwrap();
    for day in ["2026-12-05", "2026-12-02"] {
        let late = s
            .fee_rule_add(
                &rule("category", "shop", 50, 0, day),
                100,
                draft("clearing.fee_rule"),
            )
            .await;
        assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    }
    s.fee_rule_add(
        &rule("category", "shop", 50, 0, "2026-12-06"),
        100,
        draft("clearing.fee_rule"),
    )
    .await
    .unwrap();
    // Nine rules now: a bound of nine refuses the tenth.
    let full = s
        .fee_rule_add(
            &rule("category", "canteen", 5, 0, "2026-12-06"),
            9,
            draft("clearing.fee_rule"),
        )
        .await;
    assert!(
        matches!(full, Err(StoreError::TooMany { got: 10, max: 9 })),
        "{full:?}"
    );
    let all = s.fee_rules().await.unwrap();
    assert_eq!(all.len(), 9);
    assert_eq!(
        all.iter()
            .filter(|r| r.scope_value == "transit")
            .map(|r| (r.rate_bp, r.effective_from.as_str()))
            .collect::<Vec<_>>(),
        [(30, "2026-01-01"), (20, "2026-12-01")]
    );
    assert!(all.contains(&metro) && all.contains(&transit));
    // Three rules and one close, each audited once.
    assert_eq!(audit_verify(s).await.unwrap(), Ok(4));
}
