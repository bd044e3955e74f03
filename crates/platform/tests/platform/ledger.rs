//! The ledger through the platform on both backends: a replacement with money on the card and
//! a late purchase during cooling-off moves the money once, neither lost nor doubled; a
//! cancellation refunds to the online account; the books check and export to Beancount, which
//! `bean-check` accepts.

use crate::fixture::{Fixture, admin, caller, id, import};
use crate::on_both_backends;
use ledger::{
    AccountKey, AccountKind, Amount, IdempotencyKey, Owner, Transfer, TransferKind, Unit,
};
use platform::cards::{CardRequest, parse_reason};
use platform::{Caller, Platform, PlatformError};
use resident::Source;
use store::Role;

const DAY_MS: i64 = 86_400_000;

on_both_backends!(
    a_replacement_moves_the_money_once,
    a_cancellation_refunds_to_the_online_account,
    the_books_export_to_beancount
);

async fn active_card(f: &Fixture, who: &str) -> String {
    let clerk = caller("clerk", Role::CounterClerk, None);
    let p = &f.p;
    let n = p
        .apply_for_card(&clerk, who, "ordinary", None)
        .await
        .unwrap()
        .number;
    let routine = parse_reason("routine").unwrap();
    for (c, r) in [
        (&clerk, CardRequest::Approve),
        (&admin(), CardRequest::SendToProduction),
        (&admin(), CardRequest::ProductionDone),
        (&clerk, CardRequest::Post),
    ] {
        p.card_action(c, &n, r, routine).await.unwrap();
    }
    p.card_action(
        &clerk,
        &n,
        CardRequest::Activate,
        parse_reason("holder_request").unwrap(),
    )
    .await
    .unwrap();
    n
}

struct Money {
    bank: i64,
    metro: i64,
}

async fn money(p: &Platform) -> Money {
    let rows = p
        .ledger_accounts(
            &admin(),
            &[
                AccountKey::new(
                    AccountKind::BankFloat,
                    Owner::Bank("ICBC".into()),
                    Unit::Cny,
                )
                .unwrap(),
                AccountKey::new(
                    AccountKind::MerchantPayable,
                    Owner::Merchant("metro".into()),
                    Unit::Cny,
                )
                .unwrap(),
            ],
        )
        .await
        .unwrap();
    Money {
        bank: rows[0].id,
        metro: rows[1].id,
    }
}

async fn account(p: &Platform, key: AccountKey) -> i64 {
    p.ledger_accounts(&admin(), &[key]).await.unwrap()[0].id
}

fn tr(key: &str, kind: TransferKind, from: i64, to: i64, fen: i64) -> Transfer {
    Transfer::simple(
        IdempotencyKey::parse(key).unwrap(),
        kind,
        "",
        from,
        to,
        Unit::Cny,
        Amount(fen),
    )
}

/// Citizens' money plus what merchants are owed equals what the bank holds.
async fn assert_conserved(p: &Platform, bank_fen: i64) {
    let mut liabilities = 0i64;
    let mut assets = 0i64;
    let mut after = 0;
    loop {
        let page = p.store.ledger_accounts_page(after, 500).await.unwrap();
        for a in &page {
            match a.key.kind().normal_side() {
                ledger::NormalSide::Credit => liabilities += a.balance,
                ledger::NormalSide::Debit => assets += a.balance,
            }
            after = a.id;
        }
        if page.len() < 500 {
            break;
        }
    }
    assert_eq!(assets, bank_fen);
    assert_eq!(liabilities, assets, "money created or destroyed");
    let c = p.ledger_check().await.unwrap();
    assert_eq!(c.mismatch, None);
}

async fn a_replacement_moves_the_money_once(f: Fixture) {
    let who = id("410105", 1980, 3, 4, 31);
    let csv = format!("id_number,name,phone,address,residency\n{who},李甲,,,resident\n");
    import(&f.p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let old = active_card(&f, &who).await;
    let p = &f.p;
    let m = money(p).await;
    let shadow = account(p, AccountKey::epurse_shadow(&old)).await;
    let owed = account(p, AccountKey::epurse_pending_load(&old)).await;
    // 50.00 on the chip, 3.00 loaded online but not yet written to the chip.
    p.transfer(
        &admin(),
        tr("load-1", TransferKind::Load, m.bank, shadow, 5_000),
    )
    .await
    .unwrap();
    p.transfer(
        &admin(),
        tr("load-2", TransferKind::Load, m.bank, owed, 300),
    )
    .await
    .unwrap();

    // A back-office replacement (the counter's goes through its journal).
    let clerk = caller("clerk", Role::CounterClerk, None);
    let officer = caller("officer", Role::Administrator, None);
    p.card_action(
        &officer,
        &old,
        CardRequest::Replace,
        parse_reason("damaged").unwrap(),
    )
    .await
    .unwrap();
    let holder = p
        .store
        .card_by_number(&old)
        .await
        .unwrap()
        .unwrap()
        .resident_id;
    let new = p
        .store
        .cards_of_resident(holder)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.number != old)
        .unwrap()
        .number;

    // During cooling-off nothing moves, and a purchase the chip made before the replacement
    // arrives late and settles on the old card.
    f.clock.advance_ms(3 * DAY_MS);
    assert_eq!(p.sweep_cards().await.unwrap().balances.released, 0);
    p.transfer(
        &admin(),
        tr(
            "late-purchase",
            TransferKind::Purchase,
            shadow,
            m.metro,
            1_200,
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        p.card_balances(&clerk, &old).await.unwrap().epurse_fen,
        3_800
    );

    // After cooling-off the sweep moves what the old card holds at that moment.
    f.clock.advance_ms(5 * DAY_MS);
    let r = p.sweep_cards().await.unwrap();
    assert_eq!(
        (
            r.balances.released,
            r.balances.moved_fen,
            r.balances.deferred
        ),
        (1, 4_100, 0)
    );
    let nb = p.card_balances(&clerk, &new).await.unwrap();
    assert_eq!((nb.epurse_fen, nb.pending_load_fen), (0, 4_100));
    let ob = p.card_balances(&clerk, &old).await.unwrap();
    assert_eq!((ob.epurse_fen, ob.pending_load_fen), (0, 0));
    // Run again (the sweep, then the release alone): nothing more moves.
    assert_eq!(p.sweep_cards().await.unwrap().balances.released, 0);
    assert_eq!(p.release_balance_moves().await.unwrap().released, 0);
    assert_eq!(
        p.card_balances(&clerk, &new)
            .await
            .unwrap()
            .pending_load_fen,
        4_100
    );
    let t = p
        .store
        .ledger_transfer("balance-move:1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.kind, TransferKind::BalanceMove);
    assert!(p.store.balance_moves_pending(10).await.unwrap().is_empty());
    // The metro keeps its 12.00; 50.00 + 3.00 - 12.00 sits on the new card: nothing lost,
    // nothing doubled.
    assert_conserved(p, 5_300).await;
    let rb = p.resident_balances(&clerk, &who).await.unwrap();
    assert_eq!(rb.cards.len(), 2);
    assert_eq!(
        rb.cards
            .iter()
            .map(|c| c.epurse_fen + c.pending_load_fen)
            .sum::<i64>(),
        4_100
    );
    let audit = p
        .store
        .audit_recent(Some("ledger.balance_move.release"), 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert!(p.audit_verify().await.unwrap().is_ok());
}

async fn a_cancellation_refunds_to_the_online_account(f: Fixture) {
    let who = id("410105", 1975, 6, 7, 41);
    let csv = format!("id_number,name,phone,address,residency\n{who},李乙,,,resident\n");
    import(&f.p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let card = active_card(&f, &who).await;
    let p = &f.p;
    let m = money(p).await;
    let shadow = account(p, AccountKey::epurse_shadow(&card)).await;
    p.transfer(
        &admin(),
        tr("load", TransferKind::Load, m.bank, shadow, 2_000),
    )
    .await
    .unwrap();
    // The same request twice posts once; the same key with other content is refused.
    p.transfer(
        &admin(),
        tr("load", TransferKind::Load, m.bank, shadow, 2_000),
    )
    .await
    .unwrap();
    let r = p
        .transfer(
            &admin(),
            tr("load", TransferKind::Load, m.bank, shadow, 2_001),
        )
        .await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");
    // More than the card holds is refused, and writes nothing.
    let r = p
        .transfer(
            &admin(),
            tr("buy", TransferKind::Purchase, shadow, m.metro, 2_500),
        )
        .await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");

    let clerk = caller("clerk", Role::CounterClerk, None);
    p.card_action(
        &clerk,
        &card,
        CardRequest::Cancel,
        parse_reason("holder_request").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(p.release_balance_moves().await.unwrap().released, 0);
    f.clock.advance_ms(8 * DAY_MS);
    let r = p.release_balance_moves().await.unwrap();
    assert_eq!((r.released, r.moved_fen), (1, 2_000));
    let rb = p.resident_balances(&clerk, &who).await.unwrap();
    assert_eq!(rb.online_fen, 2_000);
    assert_eq!(rb.cards[0].epurse_fen, 0);
    assert_eq!(p.release_balance_moves().await.unwrap().released, 0);
    assert_conserved(p, 2_000).await;
    // A department officer does not read balances.
    let dept = caller("dept", Role::DepartmentOfficer, Some(Source::CivilAffairs));
    assert!(matches!(
        p.card_balances(&dept, &card).await,
        Err(PlatformError::Forbidden(_))
    ));
    assert!(matches!(
        p.card_balances(&clerk, "4101000000000000").await,
        Err(PlatformError::Invalid { .. } | PlatformError::NotFound(_))
    ));
}

async fn the_books_export_to_beancount(f: Fixture) {
    let p = &f.p;
    let m = money(p).await;
    let alice = account(p, AccountKey::citizen_online(1)).await;
    let pts_bank = account(
        p,
        AccountKey::company(AccountKind::Suspense, Unit::Points).unwrap(),
    )
    .await;
    let pts = account(
        p,
        AccountKey::new(AccountKind::CitizenOnline, Owner::Resident(1), Unit::Points).unwrap(),
    )
    .await;
    let fee = account(
        p,
        AccountKey::company(AccountKind::FeeIncome, Unit::Cny).unwrap(),
    )
    .await;
    let sys = Caller::cli("test");
    p.transfer(&sys, tr("top", TransferKind::TopUp, m.bank, alice, 10_005))
        .await
        .unwrap();
    p.transfer(&sys, tr("pay", TransferKind::Payment, alice, m.metro, 199))
        .await
        .unwrap();
    p.transfer(&sys, tr("fee", TransferKind::Fee, m.metro, fee, 1))
        .await
        .unwrap();
    p.transfer(
        &sys,
        Transfer::simple(
            IdempotencyKey::parse("points").unwrap(),
            TransferKind::Adjustment,
            "welcome points \"quoted\"",
            pts_bank,
            pts,
            Unit::Points,
            Amount(250),
        ),
    )
    .await
    .unwrap();
    p.transfer(
        &sys,
        tr("hold", TransferKind::Payment, alice, m.metro, 100).pending(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let n = p.ledger_export_beancount(&mut out).await.unwrap();
    assert_eq!(n, 4, "pending transfers have not moved money yet");
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("Liabilities:CitizenOnline:Resident-1:Cny  1.99 CNY"),
        "{text}"
    );
    assert!(
        text.contains("Assets:BankFloat:Bank-ICBC:Cny  100.05 CNY"),
        "{text}"
    );
    assert!(text.contains("250 POINTS"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("books.beancount");
    std::fs::write(&path, &text).unwrap();
    bean_check(&path, &text);
    // A broken file is refused by bean-check, so the check above means something.
    let broken = text.replace("-1.99 CNY", "-1.98 CNY");
    let bad = dir.path().join("broken.beancount");
    std::fs::write(&bad, &broken).unwrap();
    let out = std::process::Command::new("bean-check")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "bean-check accepted an unbalanced file"
    );
}

fn bean_check(path: &std::path::Path, text: &str) {
    let out = match std::process::Command::new("bean-check").arg(path).output() {
        Ok(o) => o,
        Err(e) => {
            panic!("bean-check could not run ({e}): install beancount: pip install beancount")
        }
    };
    assert!(
        out.status.success(),
        "bean-check refused the export:\n{}\n{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
