//! The console's clearing pages over HTTP with a signed-in operator's session cookie, on
//! SQLite and PostgreSQL: the status page shows the open window's running count and gross
//! (offline purchases, online payments less a refund) in Chinese and in English, with the
//! chart as inline SVG; after the cut-off a clearing officer closes the window with the form
//! (a missing token and the auditor's post close nothing; the open window cannot be closed);
//! the report page shows the lines, totals and digest, the settlement file downloads through
//! its form, and the reconciliation of the bank's statement appears on it; the exceptions
//! queue resolves an exception through its form (note required), audited, and refuses other
//! roles.

mod common;

use common::{App, Console, form_body, fund, seeded_id};
use ledger::{AccountKey, TransferKind};
use platform::Caller;
use platform::money::{Payer, PaymentRequest};
use platform::testing::Backend;
use serde_json::json;
use store::Role;

const HOUR_MS: i64 = 3_600_000;

/// The table row with `id` on a page (up to its end tag).
fn row<'b>(html: &'b str, id: &str) -> &'b str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no row {id}: {html}"));
    let end = html[at..].find("</tr>").map_or(html.len(), |e| at + e);
    &html[at..end]
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

/// Window 2026-11-26 (the clock is at 12:00 in the city): two offline purchases at the metro
/// (3.00 and 2.00) and 100.00 paid online at the cafe, 20.00 of it refunded.
async fn a_day_of_business(app: &App) {
    use chip::fleet::Fleet;
    use chip::{BcdDate, BcdTime, TerminalId};
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
    p.merchant_create(&sys, "cafe", "二七咖啡", "shop", "41050100000077")
        .await
        .unwrap();
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
    let resident = p.resident_id_of(&seeded_id(0)).await.unwrap();
    fund(
        p,
        AccountKey::citizen_online(resident),
        TransferKind::TopUp,
        20_000,
        "fund-0",
    )
    .await;
    let paid = p
        .pay(
            &sys,
            &PaymentRequest {
                key: "cafe-1".into(),
                payer: Payer::IdNumber(seeded_id(0)),
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
}

async fn status_close_report_and_settlement(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    a_day_of_business(&app).await;
    let officer = Console::sign_in(&app, Role::ClearingOfficer).await;

    // The open window, so far: 2 purchases of 5.00, a payment and a refund making 80.00.
    let zh = officer.get("/console/clearing?lang=zh").await;
    assert_eq!(zh.status, 200, "{}", zh.body);
    let html = &zh.body;
    assert!(html.contains("支付清算：清分状态"), "{html}");
    assert!(html.contains("<strong id=\"open-window\">2026-11-26</strong>"));
    assert!(html.contains("<strong id=\"open-cut-off\">2026-11-26 23:00:00</strong>"));
    assert!(row(html, "open-purchases").contains("<td>2</td><td>5.00</td>"));
    assert!(row(html, "open-payments").contains("<td>2</td><td>80.00</td>"));
    assert!(row(html, "open-total").contains("<td>4</td><td>85.00</td>"));
    // The chart: 14 bars drawn on the server, the open window's the tallest.
    assert_eq!(html.matches("<g class=\"bar\">").count(), 14);
    assert!(html.contains("<title>11-26: 85.00</title><rect x=\"524\" y=\"0\" width=\"32\" height=\"120\" fill=\"#0b5394\">"), "{html}");
    // The open window has no close button; a past window not closed has one.
    assert!(!html.contains("id=\"close-2026-11-26\""));
    assert!(row(html, "window-2026-11-25").contains("未关闭"));
    assert!(html.contains("id=\"close-2026-11-25\""));
    let en = officer.get("/console/clearing?lang=en").await;
    assert!(en.body.contains("Payment clearing: status") && en.body.contains("Open window"));
    assert!(row(&en.body, "open-total").contains("<td>4</td><td>85.00</td>"));
    // The navigation leads here.
    assert!(
        en.body
            .contains("<a href=\"/console/clearing\">Payment clearing</a>")
    );

    // After the cut-off: the window is past, not yet closed, with what was posted. (Sessions
    // last 8 hours: the operators sign in again.)
    app.tp.clock.advance_ms(12 * HOUR_MS);
    let officer = Console::sign_in(&app, Role::ClearingOfficer).await;
    let auditor = Console::sign_in(&app, Role::Auditor).await;
    let html = officer.get("/console/clearing?lang=zh").await.body;
    assert!(html.contains("<strong id=\"open-window\">2026-11-27</strong>"));
    let past = row(&html, "window-2026-11-26");
    assert!(
        past.contains("未关闭") && past.contains("85.00（目前）") && past.contains(">4<"),
        "{past}"
    );
    let token = officer.token("/console/clearing").await;
    assert_eq!(token, officer.computed_token());

    // The auditor sees the page without the button, and its post is refused.
    let seen = auditor.get("/console/clearing?lang=en").await;
    assert_eq!(seen.status, 200);
    assert!(!seen.body.contains("id=\"close-2026-11-26\""));
    let auditor_token = auditor.computed_token();
    let r = auditor
        .send(
            "POST",
            "/console/clearing/windows/2026-11-26/close",
            Some(form_body(&[("token", &auditor_token)])),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // A post without the token, or with a stale one, closes nothing.
    for fields in [vec![], vec![("token", "")], vec![("token", "stale")]] {
        let (to, page) = officer
            .post("/console/clearing/windows/2026-11-26/close", &fields)
            .await;
        assert_eq!(to, "/console/clearing?error=token&on=2026-11-26");
        assert!(page.body.contains("表单已失效") || page.body.contains("the form has expired"));
    }
    assert!(matches!(
        p.window_report(&Caller::cli("test"), "2026-11-26").await,
        Err(platform::PlatformError::NotFound(_))
    ));
    // The open window cannot be closed.
    let (to, _) = officer
        .post(
            "/console/clearing/windows/2026-11-27/close",
            &[("token", &token)],
        )
        .await;
    assert_eq!(to, "/console/clearing?error=not_ended&on=2026-11-27");

    // Closed with the form: fees 0.30 % per metro purchase (0.9 → 1, 0.6 → 1) and 0.60 % of
    // the cafe's payment (60); the refund takes none.
    let (to, page) = officer
        .post(
            "/console/clearing/windows/2026-11-26/close",
            &[("token", &token)],
        )
        .await;
    assert_eq!(to, "/console/clearing?ok=closed&on=2026-11-26");
    let report = p
        .window_report(&Caller::cli("test"), "2026-11-26")
        .await
        .unwrap();
    assert_eq!(
        (report.gross_fen, report.fee_fen, report.net_fen),
        (8_500, 62, 8_438)
    );
    assert_eq!(report.closed_by, "operator:clearing-officer");
    let html = &page.body;
    assert!(html.contains("窗口 2026-11-26 已关闭"), "{html}");
    let closed = row(html, "window-2026-11-26");
    for want in [
        "已关闭",
        "<td class=\"count\">4</td>",
        "<td class=\"gross\">85.00</td>",
        "<td class=\"fee\">0.62</td>",
        "<td class=\"net\">84.38</td>",
        &format!("<code>{}</code>", &report.digest[..12]),
        "href=\"/console/clearing/windows/2026-11-26\"",
    ] {
        assert!(closed.contains(want), "{want} in {closed}");
    }
    assert!(!html.contains("id=\"close-2026-11-26\""));
    let audits = p
        .store
        .audit_recent(Some("clearing.close"), 10)
        .await
        .unwrap();
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].draft.actor, "operator:clearing-officer");

    // The report page, in English and in Chinese.
    let en = officer
        .get("/console/clearing/windows/2026-11-26?lang=en")
        .await;
    assert_eq!(en.status, 200, "{}", en.body);
    let html = &en.body;
    assert!(html.contains("Clearing report 2026-11-26"));
    assert!(html.contains(&format!("<code id=\"digest\">{}</code>", report.digest)));
    assert!(row(html, "line-cafe-shop").contains(
        "<td class=\"count\">2</td><td class=\"gross\">80.00</td><td class=\"fee\">0.60</td><td class=\"net\">79.40</td>"
    ));
    assert!(row(html, "line-metro-transit").contains(
        "<td class=\"count\">2</td><td class=\"gross\">5.00</td><td class=\"fee\">0.02</td><td class=\"net\">4.98</td>"
    ));
    assert!(row(html, "report-total").contains(
        "<td class=\"count\">4</td><td class=\"gross\">85.00</td><td class=\"fee\">0.62</td><td class=\"net\">84.38</td>"
    ));
    assert!(html.contains("id=\"no-file\""));
    assert!(
        html.contains("value=\"2026-11-27\""),
        "the next day by default"
    );
    let zh = officer
        .get("/console/clearing/windows/2026-11-26?lang=zh")
        .await;
    assert!(zh.body.contains("清分报表 2026-11-26") && zh.body.contains("尚未生成结算文件"));
    // The auditor reads the report but is offered no settlement form.
    let seen = auditor.get("/console/clearing/windows/2026-11-26").await;
    assert_eq!(seen.status, 200);
    assert!(seen.body.contains(&report.digest) && !seen.body.contains("settlement-form"));
    // A window not closed has no report.
    let none = officer.get("/console/clearing/windows/2026-11-25").await;
    assert_eq!(none.status, 404);
    assert!(none.body.contains("id=\"not-closed\""));

    // The settlement file through its form: a download of the pain.001 paying both merchants.
    let page_token = officer.token("/console/clearing/windows/2026-11-26").await;
    let r = officer
        .send(
            "POST",
            "/console/clearing/windows/2026-11-26/settlement",
            Some(form_body(&[("execution_date", "2026-11-27")])),
        )
        .await;
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        "/console/clearing/windows/2026-11-26?error=token&on=2026-11-26"
    );
    let r = officer
        .send(
            "POST",
            "/console/clearing/windows/2026-11-26/settlement",
            Some(form_body(&[
                ("token", &page_token),
                ("execution_date", "2026-11-27"),
            ])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("settlement-2026-11-26.xml")
    );
    let doc = clearing::pain001::parse(&r.body).unwrap();
    let mut paid: Vec<(String, i64)> = doc
        .instructions
        .iter()
        .map(|i| (i.creditor_account.clone(), i.amount_fen))
        .collect();
    paid.sort();
    assert_eq!(
        paid,
        vec![
            ("41050100000001".into(), 498),
            ("41050100000077".into(), 7_940)
        ]
    );
    let html = officer
        .get("/console/clearing/windows/2026-11-26?lang=zh")
        .await
        .body;
    let metro = doc
        .instructions
        .iter()
        .find(|i| i.amount_fen == 498)
        .unwrap();
    let cafe = doc
        .instructions
        .iter()
        .find(|i| i.amount_fen == 7_940)
        .unwrap();
    assert!(row(&html, &format!("instruction-{}", metro.end_to_end_id)).contains("已发送，待对账"));

    // The bank books the cafe's transfer, the metro's for less: reconciled on the page.
    let statement = statement(
        "STMT-1",
        &[
            (&cafe.end_to_end_id, cafe.amount_fen),
            (&metro.end_to_end_id, 490),
        ],
    );
    let imported = p
        .import_statement(&Caller::cli("test"), &statement)
        .await
        .unwrap();
    assert_eq!((imported.matched, imported.exceptions.len()), (1, 2));
    let mismatch = imported
        .exceptions
        .iter()
        .find(|e| e.kind == "amount_mismatch")
        .unwrap();
    let html = officer
        .get("/console/clearing/windows/2026-11-26?lang=en")
        .await
        .body;
    assert!(row(&html, &format!("instruction-{}", cafe.end_to_end_id)).contains("matched"));
    assert!(row(&html, &format!("instruction-{}", metro.end_to_end_id)).contains("difference"));
    let x = row(&html, &format!("exception-{}", mismatch.id));
    assert!(
        x.contains("amount differs") && x.contains("4.98") && x.contains("4.90"),
        "{x}"
    );
    // The bank fee answers no instruction of this window: it is in the queue, not here.
    assert_eq!(html.matches("<tr id=\"exception-").count(), 1);
}

/// A camt.053 statement of debits booked on 2026-11-27: `(end-to-end id, fen)`, and a bank
/// fee of 15 fen that answers no instruction.
fn statement(id: &str, booked: &[(&str, i64)]) -> String {
    use clearing::camt053::{Direction, Entry, Statement};
    let day = time::macros::date!(2026 - 11 - 27);
    let mut entries: Vec<Entry> = booked
        .iter()
        .enumerate()
        .map(|(n, (e2e, fen))| Entry {
            reference: format!("BK{n}"),
            amount_fen: *fen,
            direction: Direction::Debit,
            booked: day,
            end_to_end_id: Some((*e2e).into()),
        })
        .collect();
    entries.push(Entry {
        reference: "BKFEE".into(),
        amount_fen: 15,
        direction: Direction::Debit,
        booked: day,
        end_to_end_id: None,
    });
    Statement {
        id: id.into(),
        account: "1702020109000012345".into(),
        entries,
    }
    .to_xml("2026-11-27T18:00:00+08:00")
    .unwrap()
}

async fn exceptions_resolved_through_the_form(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let sys = Caller::cli("test");
    a_day_of_business(&app).await;
    app.tp.clock.advance_ms(12 * HOUR_MS);
    p.close_window(&sys, "2026-11-26").await.unwrap();
    let (xml, _) = p
        .settlement_file(&sys, "2026-11-26", time::macros::date!(2026 - 11 - 27))
        .await
        .unwrap();
    let doc = clearing::pain001::parse(&xml).unwrap();
    let cafe = doc
        .instructions
        .iter()
        .find(|i| i.amount_fen == 7_940)
        .unwrap();
    // The metro's transfer is not booked, the cafe's is for 1.00 less, and a bank fee.
    let imported = p
        .import_statement(&sys, &statement("STMT-2", &[(&cafe.end_to_end_id, 7_840)]))
        .await
        .unwrap();
    let ids: Vec<(i64, String)> = imported
        .exceptions
        .iter()
        .map(|e| (e.id, e.kind.clone()))
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let id_of = |kind: &str| ids.iter().find(|(_, k)| k == kind).unwrap().0;
    let (mismatch, fee) = (id_of("amount_mismatch"), id_of("unexpected"));

    let officer = Console::sign_in(&app, Role::ClearingOfficer).await;
    let page = officer.get("/console/clearing/exceptions?lang=zh").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let html = &page.body;
    assert!(html.contains("对账差异队列"));
    assert_eq!(html.matches("class=\"open\"").count(), 3);
    let x = row(html, &format!("exception-{mismatch}"));
    assert!(
        x.contains("金额不符") && x.contains("79.40") && x.contains("78.40"),
        "{x}"
    );
    assert!(row(html, &format!("exception-{fee}")).contains("无对应指令的扣款"));
    assert!(html.contains("id=\"no-resolved\""));
    let en = officer.get("/console/clearing/exceptions?lang=en").await;
    assert!(en.body.contains("Reconciliation exceptions") && en.body.contains("amount differs"));
    // The status page links here for a clearing officer.
    assert!(
        officer
            .get("/console/clearing")
            .await
            .body
            .contains("href=\"/console/clearing/exceptions\"")
    );

    // Other roles: the counter clerk and the auditor may not open or resolve the queue.
    let clerk = Console::sign_in(&app, Role::CounterClerk).await;
    assert_eq!(clerk.get("/console/clearing/exceptions").await.status, 403);
    let auditor = Console::sign_in(&app, Role::Auditor).await;
    assert_eq!(
        auditor.get("/console/clearing/exceptions").await.status,
        403
    );
    let auditor_token = auditor.computed_token();
    let path = format!("/console/clearing/exceptions/{fee}/resolution");
    let r = auditor
        .send(
            "POST",
            &path,
            Some(form_body(&[
                ("token", &auditor_token),
                ("note", "bank fee"),
            ])),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    // Without the token, or without a note, nothing is resolved.
    let token = officer.token("/console/clearing/exceptions").await;
    let (to, page) = officer.post(&path, &[("note", "bank fee")]).await;
    assert_eq!(
        to,
        format!("/console/clearing/exceptions?error=token&on={fee}")
    );
    assert!(page.body.contains("表单已失效") || page.body.contains("the form has expired"));
    let (to, _) = officer
        .post(&path, &[("token", &token), ("note", "   ")])
        .await;
    assert_eq!(
        to,
        format!("/console/clearing/exceptions?error=note&on={fee}")
    );
    let open = p
        .reconciliation_exceptions(&sys, Some("open"))
        .await
        .unwrap();
    assert_eq!(open.len(), 3);
    assert!(
        p.store
            .audit_recent(Some("clearing.exception_resolve"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Resolved through the form: resolved, named, audited; open ones stay first.
    let note = "银行手续费，记入待处理 bank fee booked to suspense";
    let (to, page) = officer
        .post(&path, &[("token", &token), ("note", note)])
        .await;
    assert_eq!(
        to,
        format!("/console/clearing/exceptions?ok=resolved&on={fee}")
    );
    let html = &page.body;
    assert!(
        html.contains(&format!("差异 {fee} 已标记为已处理")),
        "{html}"
    );
    let done = row(html, &format!("exception-{fee}"));
    assert!(
        done.contains("class=\"resolved\"")
            && done.contains("<td class=\"resolved-by\">clearing-officer</td>")
            && done.contains(note),
        "{done}"
    );
    assert_eq!(html.matches("class=\"open\"").count(), 2);
    assert!(
        html.find("id=\"open-exceptions\"").unwrap()
            < html.find("id=\"resolved-exceptions\"").unwrap()
    );
    let resolved = p
        .reconciliation_exceptions(&sys, Some("resolved"))
        .await
        .unwrap();
    assert_eq!(
        (
            resolved.len(),
            resolved[0].id,
            resolved[0].resolution.as_deref(),
            resolved[0].resolved_by.as_deref()
        ),
        (1, fee, Some(note), Some("clearing-officer"))
    );
    let audits = p
        .store
        .audit_recent(Some("clearing.exception_resolve"), 10)
        .await
        .unwrap();
    assert_eq!(audits.len(), 1);
    assert_eq!(
        (
            audits[0].draft.actor.as_str(),
            audits[0].draft.record.as_str()
        ),
        (
            "operator:clearing-officer",
            format!("reconciliation_exception:{fee}").as_str()
        )
    );
    // Resolved once: the form again says so.
    let (to, _) = officer
        .post(&path, &[("token", &token), ("note", "again")])
        .await;
    assert_eq!(
        to,
        format!("/console/clearing/exceptions?error=already_resolved&on={fee}")
    );
    assert_eq!(p.audit_verify().await.unwrap().map(|n| n > 0), Ok(true));
}

both_backends!(
    status_close_report_and_settlement,
    exceptions_resolved_through_the_form
);
