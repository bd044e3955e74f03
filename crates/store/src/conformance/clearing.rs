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
        s.clearing_close(&w, &lines, draft("clearing.close"), NOW)
            .await
            .unwrap()
    );
    let other = ClearingWindowRow {
        closed_ms: NOW + 1,
        digest: "CD".into(),
        ..w.clone()
    };
    assert!(
        !s.clearing_close(&other, &lines[..1], draft("clearing.close"), NOW + 1)
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
            draft("clearing.close"),
            NOW
        )
        .await
        .is_err()
    );
    assert!(s.clearing_window("2026-12-01").await.unwrap().is_none());
    assert_eq!(audit_verify(s).await.unwrap(), Ok(1));
}
