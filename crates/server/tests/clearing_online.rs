//! Online payments in clearing windows (清分), on SQLite and PostgreSQL: a bill debited by the
//! bill run, a bill paid once by its citizen and an online payment at a shop enter the window
//! open when they are posted; a refund enters the window of its own posting (the same one, or
//! the next after the cut-off), and so does a payment posted after the cut-off. Closing a
//! window reports gross, fees and net per biller and merchant, closing again answers the same
//! report, the settlement file pays the biller and the shop their net, the bank's statement
//! reconciles it, and the ledger still balances.

mod common;

use common::{fund, seeded_id};
use ledger::{AccountKey, TransferKind};
use platform::Caller;
use platform::money::{Payer, PaymentRequest};
use platform::testing::Backend;
use serde_json::json;
use store::Role;

const FILE_HEADER: &str = "bill_number,customer_no,period,amount_fen,due_date\n";
const HOUR_MS: i64 = 3_600_000;

/// A report line as `(merchant, category, count, gross, fee, net)`.
fn lines(r: &platform::clearing::WindowReport) -> Vec<(&str, &str, i64, i64, i64, i64)> {
    r.lines
        .iter()
        .map(|l| {
            (
                l.merchant.as_str(),
                l.category.as_str(),
                l.count,
                l.gross_fen,
                l.fee_fen,
                l.net_fen,
            )
        })
        .collect()
}

async fn online_payments_are_cleared_and_settled(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let sys = Caller::cli("test");
    let officer = app.token(Role::ClearingOfficer).await;
    let clerk = app.token(Role::CounterClerk).await;

    // A water company (a biller is a merchant, category utility) and a shop taking e-codes.
    p.merchant_create(&sys, "water", "郑州自来水", "utility", "41050100000009")
        .await
        .unwrap();
    p.merchant_create(&sys, "cafe", "二七咖啡", "shop", "41050100000077")
        .await
        .unwrap();
    p.biller_create(&sys, "water", "water").await.unwrap();
    let bills =
        format!("{FILE_HEADER}W1,C1,2026-11,4500,2026-11-26\nW2,C2,2026-11,3000,2026-11-26\n");
    let r = app
        .send(
            "POST",
            "/api/v1/billers/water/bills/file",
            Some(&officer),
            Some(("text/csv", bills.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/agreements",
            Some(&clerk),
            json!({"id_number": seeded_id(0), "biller": "water", "customer_no": "C1",
                   "limit_fen": 10_000}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for i in 0..3 {
        let resident = p.resident_id_of(&seeded_id(i)).await.unwrap();
        fund(
            p,
            AccountKey::citizen_online(resident),
            TransferKind::TopUp,
            20_000,
            &format!("fund-{i}"),
        )
        .await;
    }

    // Window 2026-11-26 (the clock is at 12:00 in the city; the cut-off is 23:00).
    // W1 by auto-debit, W2 paid once by its citizen, 100.00 at the cafe, 20.00 of it refunded.
    let r = app
        .post_json(
            "/api/v1/bill-runs",
            Some(&officer),
            json!({"due_on": "2026-11-26"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["debited_fen"], 4_500, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/billers/water/bills/W2/payment",
            Some(&clerk),
            json!({"id_number": seeded_id(1)}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let paid = p
        .pay(
            &sys,
            &PaymentRequest {
                key: "cafe-1".into(),
                payer: Payer::IdNumber(seeded_id(2)),
                merchant: "cafe".into(),
                amount_fen: 10_000,
                reference: "ORDER-1".into(),
            },
        )
        .await
        .unwrap();
    p.refund(&sys, paid.id, "cafe-1-r1", 2_000, "one cup returned")
        .await
        .unwrap();
    // A window still open is not closed.
    assert!(matches!(
        p.close_window(&sys, "2026-11-26").await,
        Err(platform::PlatformError::Conflict(_))
    ));

    // After the cut-off, window 2026-11-27: another 10.00 of the payment refunded, 5.00 paid.
    app.tp.clock.advance_ms(11 * HOUR_MS);
    p.refund(&sys, paid.id, "cafe-1-r2", 1_000, "one more cup")
        .await
        .unwrap();
    p.pay(
        &sys,
        &PaymentRequest {
            key: "cafe-2".into(),
            payer: Payer::IdNumber(seeded_id(2)),
            merchant: "cafe".into(),
            amount_fen: 500,
            reference: "ORDER-2".into(),
        },
    )
    .await
    .unwrap();

    // The close: utilities pay 0.10 % per payment (4.5 → 5, 3.0 → 3), shops 0.60 % (60); a
    // refund takes no fee and returns none.
    let report = p.close_window(&sys, "2026-11-26").await.unwrap();
    assert_eq!(
        lines(&report),
        vec![
            ("cafe", "shop", 2, 8_000, 60, 7_940),
            ("water", "utility", 2, 7_500, 8, 7_492),
        ]
    );
    assert_eq!(
        (report.gross_fen, report.fee_fen, report.net_fen),
        (15_500, 68, 15_432)
    );
    // Closing again, and reading, answer the report as it was first written.
    assert_eq!(p.close_window(&sys, "2026-11-26").await.unwrap(), report);
    assert_eq!(p.window_report(&sys, "2026-11-26").await.unwrap(), report);

    // The settlement file pays the biller and the shop their net.
    let execution = time::macros::date!(2026 - 11 - 27);
    let (xml, left_out) = p
        .settlement_file(&sys, "2026-11-26", execution)
        .await
        .unwrap();
    assert!(left_out.is_empty(), "{left_out:?}");
    let doc = clearing::pain001::parse(&xml).unwrap();
    let mut paid_to: Vec<(String, String, i64)> = doc
        .instructions
        .iter()
        .map(|i| {
            (
                i.creditor_name.clone(),
                i.creditor_account.clone(),
                i.amount_fen,
            )
        })
        .collect();
    paid_to.sort();
    assert_eq!(
        paid_to,
        vec![
            ("二七咖啡".into(), "41050100000077".into(), 7_940),
            ("郑州自来水".into(), "41050100000009".into(), 7_492),
        ]
    );

    // The bank books both transfers: reconciliation matches them, no exception.
    use clearing::camt053::{Direction, Entry, Statement};
    let statement = Statement {
        id: "STMT-ONLINE-1".into(),
        account: "1702020109000012345".into(),
        entries: doc
            .instructions
            .iter()
            .enumerate()
            .map(|(n, i)| Entry {
                reference: format!("BK{n}"),
                amount_fen: i.amount_fen,
                direction: Direction::Debit,
                booked: execution,
                end_to_end_id: Some(i.end_to_end_id.clone()),
            })
            .collect(),
    }
    .to_xml("2026-11-27T18:00:00+08:00")
    .unwrap();
    let imported = p.import_statement(&sys, &statement).await.unwrap();
    assert_eq!((imported.entries, imported.matched), (2, 2));
    assert!(imported.exceptions.is_empty(), "{:?}", imported.exceptions);

    // Window 2026-11-27: the later refund and the payment after the cut-off, nothing else.
    // The cafe owes 5.03 (refund 10.00 back, 5.00 paid less its 0.03 fee): nobody is paid.
    app.tp.clock.advance_ms(24 * HOUR_MS);
    let next = p.close_window(&sys, "2026-11-27").await.unwrap();
    assert_eq!(lines(&next), vec![("cafe", "shop", 2, -500, 3, -503)]);
    assert!(matches!(
        p.settlement_file(&sys, "2026-11-27", time::macros::date!(2026 - 11 - 28))
            .await,
        Err(platform::PlatformError::Conflict(_))
    ));
    assert_eq!(p.ledger_check().await.unwrap().mismatch, None);
}

fn record(r: &chip::host::UploadRecord) -> serde_json::Value {
    let raw = r.to_raw();
    json!({
        "card_number": raw.card_number,
        "algorithm_id": raw.algorithm_id,
        "key_version": raw.key_version,
        "offline_counter": raw.offline_counter,
        "amount_fen": raw.amount_fen,
        "tx_type": raw.tx_type,
        "terminal_id": raw.terminal_id,
        "terminal_serial": raw.terminal_serial,
        "date": raw.date,
        "time": raw.time,
        "balance_before_fen": raw.balance_before_fen,
        "tac": raw.tac,
    })
}

/// A merchant's offline purchases and online payments make one line; a window holding more
/// movements than a page of the store is read whole.
async fn purchases_and_many_payments_make_one_line(backend: Backend) {
    use chip::fleet::Fleet;
    use chip::{BcdDate, BcdTime, TerminalId};
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let sys = Caller::cli("test");
    let masters =
        keys::master::FileMasterKeyStore::create(&app.tp.dir.path().join("master.json"), b"test")
            .unwrap();
    masters
        .load_test_key_set(keys::master::APP_TRANSIT)
        .unwrap();
    p.set_master_keys(std::sync::Arc::new(masters));
    p.merchant_create(&sys, "metro", "郑州地铁", "transit", "41050100000001")
        .await
        .unwrap();

    // Two offline purchases (3.00 and 2.00) uploaded by the metro's terminals.
    let (d, t) = (
        BcdDate::new(2026, 11, 26).unwrap(),
        BcdTime::new(10, 0, 0).unwrap(),
    );
    let mut fleet = Fleet::new(700_000, 1, crypto::Algorithm::Sm4, TerminalId([0x33; 6]));
    fleet.load(0, 2_000, d, t).unwrap();
    let records = vec![
        record(&fleet.buy(0, 300, d, t).unwrap()),
        record(&fleet.buy(0, 200, d, t).unwrap()),
    ];
    let officer = app.token(Role::ClearingOfficer).await;
    let r = app
        .post_json(
            "/api/v1/purchases",
            Some(&officer),
            json!({"merchant": "metro", "records": records}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["posted"], 2, "{}", r.body);

    // More online payments of 1.00 than a page of the store holds.
    let many = store::PAGE_MAX as i64 + 20;
    let resident = p.resident_id_of(&seeded_id(0)).await.unwrap();
    fund(
        p,
        AccountKey::citizen_online(resident),
        TransferKind::TopUp,
        many * 100,
        "fund-0",
    )
    .await;
    for n in 0..many {
        p.pay(
            &sys,
            &PaymentRequest {
                key: format!("metro-{n}"),
                payer: Payer::IdNumber(seeded_id(0)),
                merchant: "metro".into(),
                amount_fen: 100,
                reference: format!("TICKET-{n}"),
            },
        )
        .await
        .unwrap();
    }

    // 0.30 % per transaction, half up: 0.9 → 1, 0.6 → 1, and 0.3 → 0 for each payment.
    app.tp.clock.advance_ms(12 * HOUR_MS);
    let report = p.close_window(&sys, "2026-11-26").await.unwrap();
    assert_eq!(
        lines(&report),
        vec![(
            "metro",
            "transit",
            2 + many,
            500 + many * 100,
            2,
            498 + many * 100
        )]
    );
    assert_eq!(p.close_window(&sys, "2026-11-26").await.unwrap(), report);
    assert_eq!(p.ledger_check().await.unwrap().mismatch, None);
}

both_backends!(
    online_payments_are_cleared_and_settled,
    purchases_and_many_payments_make_one_line
);
