//! Disbursements through the platform on both backends: a department's batch checked line by
//! line, four eyes (not the submitter, not another department), payment into online and
//! earmarked accounts from the department's funding, a shortfall rejecting the lines it cannot
//! cover, payment resumed after an interruption without posting twice, and what a citizen
//! received.

use crate::fixture::{Fixture, admin, id, import};
use crate::on_both_backends;
use ledger::{
    AccountKey, AccountKind, Amount, IdempotencyKey, Owner, Transfer, TransferKind, Unit,
};
use platform::disbursements::funding_account;
use platform::{Caller, PlatformError};
use resident::Source;
use store::Role;

on_both_backends!(a_batch_is_checked_approved_by_four_eyes_and_paid_once);

fn officer(op: i64, department: Source) -> Caller {
    Caller {
        operator_id: Some(op),
        username: format!("officer-{op}"),
        role: Role::DepartmentOfficer,
        department: Some(department),
        origin: "test".into(),
    }
}

async fn balance(p: &platform::Platform, key: &AccountKey) -> i64 {
    p.store
        .ledger_account(key)
        .await
        .unwrap()
        .map_or(0, |a| a.balance)
}

async fn a_batch_is_checked_approved_by_four_eyes_and_paid_once(f: Fixture) {
    let p = &f.p;
    let [r1, r2, r3] = [
        id("410105", 1950, 1, 2, 31),
        id("410105", 1960, 3, 4, 32),
        id("410102", 1970, 5, 6, 33),
    ];
    let csv = format!(
        "id_number,name,phone,address,residency\n{r1},甲,,,resident\n{r2},乙,,,resident\n{r3},丙,,,resident\n"
    );
    import(p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let resident = |n: &str| {
        let n = n.to_string();
        async move {
            p.resident_by_id_number(&admin(), &n, false)
                .await
                .unwrap()
                .resident_id
        }
    };
    let (id1, id2) = (resident(&r1).await, resident(&r2).await);
    let civil = officer(11, Source::CivilAffairs);
    let civil2 = officer(12, Source::CivilAffairs);
    let police = officer(13, Source::Police);
    let clearing = Caller {
        role: Role::ClearingOfficer,
        department: None,
        ..officer(14, Source::Police)
    };

    // Funding: 1,000.00 yuan from civil affairs, once however often it is booked.
    for _ in 0..2 {
        p.fund_department(
            &clearing,
            "civil_affairs",
            "ICBC",
            Amount(100_000),
            "fund-ca-1",
        )
        .await
        .unwrap();
    }
    let funding = funding_account("civil_affairs").unwrap();
    assert_eq!(balance(p, &funding).await, 100_000);
    let r = p
        .fund_department(&civil, "civil_affairs", "ICBC", Amount(1), "fund-x")
        .await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    // A batch with good lines and bad ones, each bad one named.
    let mut wrong_check = r3.clone();
    wrong_check.replace_range(17..18, if r3.ends_with('0') { "1" } else { "0" });
    let stranger = id("410105", 1980, 7, 8, 34);
    let file = format!(
        "id_number,amount,benefit,earmark\n\
         {r1},800.00,minimum_living,\n\
         {r2},120.50,disability,canteen\n\
         {wrong_check},10,orphan,\n\
         {stranger},10,orphan,\n\
         {r1},5,minimum_living,\n\
         {r2},abc,orphan,\n"
    );
    let r = p
        .submit_disbursement(&clearing, "2026-11", file.as_bytes())
        .await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    let r = p
        .submit_disbursement(&civil, "2026-11", b"name,amount\nx,1\n")
        .await;
    assert!(matches!(r, Err(PlatformError::Invalid { .. })), "{r:?}");
    let (batch, created) = p
        .submit_disbursement(&civil, "2026-11 低保与残补", file.as_bytes())
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (
            batch.state.as_str(),
            batch.lines,
            batch.pending_lines,
            batch.rejected_lines
        ),
        ("submitted", 6, 2, 4)
    );
    assert_eq!(batch.total_fen, 92_050);
    let (same, created) = p
        .submit_disbursement(&civil, "again", file.as_bytes())
        .await
        .unwrap();
    assert!(
        !created && same.id == batch.id,
        "the same file is the same batch"
    );
    let lines = p
        .disbursement_lines(&civil, batch.id, 0, 100)
        .await
        .unwrap();
    let reasons: Vec<(i64, String, Option<String>)> = lines
        .iter()
        .map(|l| (l.line, l.outcome.clone(), l.reason.clone()))
        .collect();
    assert_eq!(reasons[0], (2, "pending".into(), None));
    assert!(lines[0].recipient.as_deref().unwrap().contains("****"));
    assert!(
        reasons[2].2.as_deref().unwrap().starts_with("id_number"),
        "{reasons:?}"
    );
    assert!(
        reasons[3].2.as_deref().unwrap().contains("no resident"),
        "{reasons:?}"
    );
    assert!(
        reasons[4].2.as_deref().unwrap().contains("line 2"),
        "{reasons:?}"
    );
    assert!(
        reasons[5].2.as_deref().unwrap().contains("abc"),
        "{reasons:?}"
    );
    let r = p.disbursement(&police, batch.id).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    // Four eyes: not the submitter, not another department.
    for who in [&civil, &police] {
        let r = p.decide_disbursement(who, batch.id, true).await;
        assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    }
    let paid = p
        .decide_disbursement(&civil2, batch.id, true)
        .await
        .unwrap();
    assert_eq!(
        (paid.state.as_str(), paid.paid_lines, paid.paid_fen),
        ("paid", 2, 92_050)
    );
    assert_eq!(balance(p, &AccountKey::citizen_online(id1)).await, 80_000);
    let canteen = AccountKey::new(
        AccountKind::Earmarked,
        Owner::Earmark {
            resident: id2,
            purpose: "canteen".into(),
        },
        Unit::Cny,
    )
    .unwrap();
    assert_eq!(balance(p, &canteen).await, 12_050);
    assert_eq!(balance(p, &funding).await, 100_000 - 92_050);
    // Deciding or paying again changes nothing.
    let r = p.decide_disbursement(&civil2, batch.id, true).await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");
    let again = p.pay_disbursement(&civil2, batch.id).await.unwrap();
    assert_eq!(again, paid);
    assert_eq!(balance(p, &AccountKey::citizen_online(id1)).await, 80_000);

    // A second batch the funding (79.50 left) only partly covers; payment interrupted after
    // the ledger posted its first line but before the batch recorded it.
    let file2 = format!(
        "id_number,amount,benefit\n{r1},50,temporary_relief\n{r2},20,temporary_relief\n{r1},30,orphan\n"
    );
    let (b2, _) = p
        .submit_disbursement(&civil, "2026-11 临时救助", file2.as_bytes())
        .await
        .unwrap();
    p.store
        .disbursement_decide(
            b2.id,
            12,
            true,
            civil2.draft("disbursement.approve", "t", "t"),
            0,
        )
        .await
        .unwrap();
    let accounts = p
        .ledger_accounts(
            &admin(),
            &[funding.clone(), AccountKey::citizen_online(id1)],
        )
        .await
        .unwrap();
    let (early, _) = p
        .transfer(
            &admin(),
            Transfer::simple(
                IdempotencyKey::parse(&ledger::disbursement::line_key(b2.id, 2)).unwrap(),
                TransferKind::Disbursement,
                "civil_affairs temporary_relief",
                accounts[0].id,
                accounts[1].id,
                Unit::Cny,
                Amount(5_000),
            ),
        )
        .await
        .unwrap();
    let done = p.pay_disbursement(&civil2, b2.id).await.unwrap();
    assert_eq!(
        (
            done.state.as_str(),
            done.paid_lines,
            done.paid_fen,
            done.rejected_lines
        ),
        ("paid", 2, 7_000, 1)
    );
    let l2 = p.disbursement_lines(&civil, b2.id, 0, 10).await.unwrap();
    assert_eq!(
        l2[0].transfer_id,
        Some(early),
        "the posted transfer is found, not repeated"
    );
    assert!(
        l2[2].reason.as_deref().unwrap().contains("does not cover"),
        "{l2:?}"
    );
    assert_eq!(
        balance(p, &AccountKey::citizen_online(id1)).await,
        80_000 + 5_000
    );
    assert_eq!(balance(p, &funding).await, 100_000 - 92_050 - 7_000);
    assert_eq!(p.ledger_check().await.unwrap().mismatch, None);

    // What the citizen received; the read is audited.
    let got = p.resident_disbursements(&admin(), &r1).await.unwrap();
    let mut amounts: Vec<(i64, String)> = got
        .iter()
        .map(|g| (g.amount_fen, g.benefit.clone()))
        .collect();
    amounts.sort();
    assert_eq!(
        amounts,
        vec![
            (5_000, "temporary_relief".into()),
            (80_000, "minimum_living".into())
        ]
    );
    assert_eq!(
        got.iter()
            .find(|g| g.amount_fen == 80_000)
            .unwrap()
            .benefit_zh,
        "最低生活保障金"
    );
    let r = p.resident_disbursements(&civil, &r1).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    // A rejected batch pays nothing.
    let (b3, _) = p
        .submit_disbursement(
            &civil,
            "wrong",
            format!("id_number,amount,benefit\n{r2},1,orphan\n").as_bytes(),
        )
        .await
        .unwrap();
    let rej = p.decide_disbursement(&civil2, b3.id, false).await.unwrap();
    assert_eq!(
        (rej.state.as_str(), rej.rejected_lines, rej.paid_lines),
        ("rejected", 1, 0)
    );
    assert!(p.audit_verify().await.unwrap().is_ok());
}
