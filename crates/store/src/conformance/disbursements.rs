//! Disbursement batches: submission once per file, the four-eyes decision once, line
//! outcomes recorded once, the batch paid when nothing is pending, and a resident's receipts.

use super::{NOW, b, draft, facts, feed};
use crate::*;
use resident::Source;

pub async fn disbursements_submit_decide_and_record_once(s: &dyn Store) {
    let f = feed(s, Source::Police).await;
    s.residents_apply(
        f,
        &[facts(1, "a", None, None), facts(2, "b", None, None)],
        draft("resident.import"),
        NOW,
    )
    .await
    .unwrap();
    let r1 = s.resident_by_blind(&b("id", 1)).await.unwrap().unwrap().id;
    let r2 = s.resident_by_blind(&b("id", 2)).await.unwrap().unwrap().id;
    let batch = NewDisbursement {
        department: "civil_affairs".into(),
        label: "2026-11 低保".into(),
        digest: "AB".repeat(32),
        submitted_by: 7,
    };
    let line = |n: i64, r: Option<i64>, fen: i64, outcome: &str| NewDisbursementLine {
        line: n,
        resident_id: r,
        benefit: Some("minimum_living".into()),
        earmark: (n == 3).then(|| "canteen".into()),
        amount_fen: fen,
        outcome: outcome.into(),
        reason: (outcome == "rejected").then(|| "id_number: bad check character".into()),
    };
    // 250 lines (several multi-row inserts): 249 to pay, one rejected at submission.
    let mut lines = vec![
        line(2, Some(r1), 80_000, "pending"),
        line(3, Some(r2), 12_050, "pending"),
        line(4, None, 0, "rejected"),
    ];
    for n in 5..252 {
        lines.push(line(n, Some(r1 + (n % 2) * (r2 - r1)), 100, "pending"));
    }
    let head = s.audit_head().await.unwrap().map(|h| h.0);
    let (row, created) = s
        .disbursement_submit(&batch, &lines, draft("disbursement.submit"), NOW)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(row.state, "submitted");
    assert_eq!(
        (
            row.lines,
            row.pending_lines,
            row.rejected_lines,
            row.paid_lines
        ),
        (250, 249, 1, 0)
    );
    assert_eq!(row.total_fen, 80_000 + 12_050 + 247 * 100);
    assert_ne!(s.audit_head().await.unwrap().map(|h| h.0), head);
    // The same file again: the same batch, nothing stored twice.
    let head = s.audit_head().await.unwrap().map(|h| h.0);
    let (again, created) = s
        .disbursement_submit(&batch, &lines, draft("disbursement.submit"), NOW)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again, row);
    assert_eq!(s.audit_head().await.unwrap().map(|h| h.0), head);
    // Another department's identical file is its own batch.
    let other = NewDisbursement {
        department: "hr_social_security".into(),
        ..batch.clone()
    };
    let (o, created) = s
        .disbursement_submit(&other, &lines[..1], draft("disbursement.submit"), NOW)
        .await
        .unwrap();
    assert!(created && o.id != row.id);
    assert_eq!(
        s.disbursements(Some("civil_affairs"), 10).await.unwrap(),
        vec![row.clone()]
    );
    assert_eq!(s.disbursements(None, 10).await.unwrap().len(), 2);

    // Recording before approval is refused; the submitter cannot decide (storage CHECK).
    let r = s
        .disbursement_record(row.id, &[], draft("disbursement.pay"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert!(
        s.disbursement_decide(row.id, 7, true, draft("disbursement.approve"), NOW)
            .await
            .is_err()
    );
    let d = s
        .disbursement_decide(row.id, 8, true, draft("disbursement.approve"), NOW + 1)
        .await
        .unwrap();
    assert_eq!((d.state.as_str(), d.decided_by), ("approved", Some(8)));
    let r = s
        .disbursement_decide(row.id, 9, false, draft("disbursement.reject"), NOW + 2)
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "decided once: {r:?}"
    );

    // Outcomes: line 2 paid, line 3 rejected; recording line 2 again changes nothing.
    let paid = |n: i64, t: i64| LineOutcome {
        line: n,
        paid: true,
        transfer_id: Some(t),
        reason: None,
    };
    let d = s
        .disbursement_record(
            row.id,
            &[
                paid(2, 1001),
                LineOutcome {
                    line: 3,
                    paid: false,
                    transfer_id: None,
                    reason: Some("funding exhausted".into()),
                },
            ],
            draft("disbursement.pay"),
            NOW + 3,
        )
        .await
        .unwrap();
    assert_eq!(d.state, "approved");
    assert_eq!((d.paid_lines, d.paid_fen, d.rejected_lines), (1, 80_000, 2));
    let d = s
        .disbursement_record(row.id, &[paid(2, 9999)], draft("disbursement.pay"), NOW + 4)
        .await
        .unwrap();
    assert_eq!((d.paid_lines, d.paid_fen), (1, 80_000));
    let l2 = s.disbursement_lines(row.id, 0, 2).await.unwrap();
    assert_eq!(l2.len(), 2);
    assert_eq!((l2[0].line, l2[0].transfer_id), (2, Some(1001)));
    assert_eq!(l2[1].reason.as_deref(), Some("funding exhausted"));
    // The rest paid: the batch is paid.
    let rest: Vec<LineOutcome> = (5..252).map(|n| paid(n, 2000 + n)).collect();
    let d = s
        .disbursement_record(row.id, &rest, draft("disbursement.pay"), NOW + 5)
        .await
        .unwrap();
    assert_eq!(d.state, "paid");
    assert_eq!((d.paid_lines, d.pending_lines), (248, 0));
    let page = s.disbursement_lines(row.id, 200, 1000).await.unwrap();
    assert_eq!(page.first().map(|l| l.line), Some(201));
    assert_eq!(page.len(), 51);

    // What resident 2 received: line 3 was rejected, so only the paid small lines.
    let got = s.disbursements_of_resident(r2, 1000).await.unwrap();
    assert!(
        got.iter()
            .all(|g| g.line.outcome == "paid" && g.line.resident_id == Some(r2))
    );
    assert_eq!(got.len(), 124);
    assert_eq!(got[0].paid_ms, Some(NOW + 5));

    // A rejected batch rejects its pending lines.
    let (o2, _) = s
        .disbursement_submit(
            &NewDisbursement {
                digest: "CD".repeat(32),
                ..batch.clone()
            },
            &lines[..2],
            draft("disbursement.submit"),
            NOW,
        )
        .await
        .unwrap();
    let d = s
        .disbursement_decide(o2.id, 8, false, draft("disbursement.reject"), NOW + 6)
        .await
        .unwrap();
    assert_eq!(
        (d.state.as_str(), d.rejected_lines, d.pending_lines),
        ("rejected", 2, 0)
    );
    assert_eq!(audit_verify(s).await.unwrap().map(|n| n > 0), Ok(true));
}
