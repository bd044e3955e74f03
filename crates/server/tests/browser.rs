//! The console in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven
//! over WebDriver): sign-in, a refused password, the residents page masked and unmasked, the
//! language switch, the audit page and the points rule form; the citizen portal; and the
//! portal's sign-in through the city's identity provider (the simulated provider's page
//! clicked through, and a tampered callback refused). Screenshots are kept under `artifacts/screenshots/`.

mod common;

use fantoccini::{ClientBuilder, Locator};
use platform::testing::Backend;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use store::Role;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.exists())
    })
}

fn artifacts() -> std::path::PathBuf {
    let dir = std::env::var_os("CITYCARD_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../artifacts"))
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &fantoccini::Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

/// The text of the first element matching `css`, waiting (up to 20 s, for a loaded CI
/// machine) for a page that is still loading after a click.
async fn text_of(c: &fantoccini::Client, css: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        match c.find(Locator::Css(css)).await {
            Ok(e) => match e.text().await {
                Ok(t) => return t,
                Err(err) => last = err.to_string(),
            },
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = c
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_default();
    let page = c.source().await.unwrap_or_default();
    let main = page.split("<main").nth(1).unwrap_or(&page);
    panic!(
        "{css} not found on {url}: {last}\n{}",
        main.chars().take(3000).collect::<String>()
    )
}

/// Fills the sign-in form and submits it.
async fn submit_sign_in(c: &fantoccini::Client, username: &str, password: &str) {
    for (field, value) in [("username", username), ("password", password)] {
        c.find(Locator::Id(field))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    c.find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium() {
    let chromium = which("chromium").unwrap_or_else(|| {
        panic!("chromium is not installed: run ./scripts/test, or apt-get install chromium chromium-driver")
    });
    let chromedriver = which("chromedriver").unwrap_or_else(|| {
        panic!(
            "chromedriver is not installed: run ./scripts/test, or apt-get install chromium-driver"
        )
    });
    let app = common::start(Backend::Sqlite).await;
    let port = free_port();
    let _driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let profile = tempfile::tempdir().unwrap();
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1200,900", format!("--user-data-dir={}", profile.path().display())
            ]
        }
    }))
    .unwrap();
    let mut client = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let c = client.expect("chromedriver did not start within 10 s");
    let url = |p: &str| format!("{}{p}", app.base);

    // Unsigned visitors land on the sign-in page, in Chinese.
    c.goto(&url("/console/")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/login")
    );
    assert_eq!(text_of(&c, "h2").await, "登录");
    shot(&c, "01-login-zh").await;

    // A wrong password is refused with a clear message.
    let user = common::App::username(Role::CounterClerk);
    submit_sign_in(&c, &user, "not-the-password").await;
    assert_eq!(text_of(&c, "#sign-in-error").await, "用户名或密码错误");
    shot(&c, "02-login-refused").await;

    // The right one signs in: the dashboard counts the residents.
    submit_sign_in(&c, &user, common::PASSWORD).await;
    assert_eq!(text_of(&c, "#current-user").await, user);
    assert_eq!(text_of(&c, "#resident-count").await, "10");
    shot(&c, "03-dashboard").await;

    // The issuance page lists a card applied for at the counter, holder masked.
    let clerk_caller = platform::Caller {
        operator_id: Some(2),
        username: user.clone(),
        role: Role::CounterClerk,
        department: None,
        origin: "test".into(),
    };
    let card = app
        .tp
        .platform
        .apply_for_card(&clerk_caller, &common::seeded_id(2), "ordinary", None)
        .await
        .unwrap();
    c.goto(&url("/console/cards?state=applied")).await.unwrap();
    assert_eq!(text_of(&c, "#cards td.card-number").await, card.number);
    assert_eq!(text_of(&c, "#cards td.state").await, "applied");
    shot(&c, "035-cards").await;

    // The number links to the card's own page: state, timeline, balances, holder masked.
    c.find(Locator::Css("#cards td.card-number a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(&c, "#card-number").await, card.number);
    assert_eq!(text_of(&c, "#card-state").await, "已申请 (applied)");
    assert_eq!(text_of(&c, "#events tbody td.event-action").await, "申请");
    assert_eq!(text_of(&c, "#balance-epurse").await, "0.00");
    let holder_id = text_of(&c, "#holder-id").await;
    assert!(holder_id.contains('*') && holder_id != common::seeded_id(2));
    shot(&c, "036-card").await;
    // On a phone's width the page still reads (the tables scroll inside their box).
    c.set_window_size(390, 844).await.unwrap();
    shot(&c, "037-card-phone").await;
    c.set_window_size(1200, 900).await.unwrap();

    // Search by ID number: masked by default.
    let id = common::seeded_id(3);
    c.goto(&url("/console/residents")).await.unwrap();
    c.find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys(&id)
        .await
        .unwrap();
    c.find(Locator::Id("search"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(&c, "#result-count").await, "1");
    let shown = text_of(&c, "#residents td.id-number").await;
    assert_ne!(shown, id);
    assert_eq!(shown, resident::mask_id_number(&id));
    let table = text_of(&c, "#residents").await;
    assert!(
        !table.contains(&id),
        "the table must not show the ID number"
    );
    assert!(
        !c.current_url().await.unwrap().as_str().contains(&id),
        "no ID number in the URL"
    );
    shot(&c, "04-residents-masked").await;

    // Unmasking shows the number and says the view is audited.
    c.find(Locator::Id("unmask"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(text_of(&c, "#unmasked-note").await.contains("审计"));
    assert_eq!(text_of(&c, "#residents td.id-number").await, id);
    shot(&c, "05-residents-unmasked").await;

    // English on request, remembered across pages.
    c.goto(&url("/console/residents?lang=en")).await.unwrap();
    assert_eq!(text_of(&c, "h2").await, "Residents");
    c.goto(&url("/console/")).await.unwrap();
    assert!(c.source().await.unwrap().contains("Residents on record"));
    shot(&c, "06-dashboard-en").await;

    // The clerk may not open the audit page; the auditor may, and sees the unmasking there.
    c.goto(&url("/console/audit")).await.unwrap();
    assert!(c.source().await.unwrap().contains("forbidden"));
    c.goto(&url("/console/login")).await.unwrap();
    let auditor = common::App::username(Role::Auditor);
    submit_sign_in(&c, &auditor, common::PASSWORD).await;
    // Wait for the signed-in page before navigating, or the redirect may land after the goto.
    assert_eq!(text_of(&c, "#current-user").await, auditor);
    c.goto(&url("/console/audit")).await.unwrap();
    assert!(
        text_of(&c, "#chain-state")
            .await
            .contains("Audit chain intact")
    );
    let page = c.source().await.unwrap();
    assert!(page.contains("resident.unmask"));
    assert!(
        !page.contains(&id),
        "the audit page must not show the ID number"
    );
    shot(&c, "07-audit-en").await;

    // Signing out ends the session.
    c.find(Locator::Css("header button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(&c, "#sign-in").await, "Sign in");
    c.goto(&url("/console/")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/login")
    );
    c.close().await.unwrap();
}

/// Chromium and chromedriver for a test: the driver process (killed on drop), the WebDriver
/// client and the browser profile's directory.
async fn browser(window: &str) -> (Driver, fantoccini::Client, tempfile::TempDir) {
    let chromium = which("chromium").expect("chromium is not installed: run ./scripts/test");
    let chromedriver =
        which("chromedriver").expect("chromedriver is not installed: run ./scripts/test");
    let port = free_port();
    let driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let profile = tempfile::tempdir().unwrap();
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                format!("--window-size={window}"), format!("--user-data-dir={}", profile.path().display())
            ]
        }
    }))
    .unwrap();
    for _ in 0..100 {
        if let Ok(c) = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            return (driver, c, profile);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start within 10 s")
}

async fn fill(c: &fantoccini::Client, id: &str, value: &str) {
    let e = c.find(Locator::Id(id)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn click(c: &fantoccini::Client, css: &str) {
    // Wait for the element: the page may still be loading after the last click.
    for _ in 0..200 {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            e.click().await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} not found");
}

/// Waits (up to 20 s) until the first element matching `css` reads `want`.
async fn wait_text(c: &fantoccini::Client, css: &str, want: &str) {
    let mut last = String::new();
    for _ in 0..200 {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            if t == want {
                return;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} reads {last:?}, not {want:?}");
}

/// The six digits of the last SMS the simulated gateway received.
fn last_code(sms: &sms_link::sim::SimSms) -> String {
    let m = sms.messages();
    let text = &m.last().expect("an SMS was sent").text;
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_string()
}

/// The citizen portal on a phone-sized window: a first password with an SMS code, sign-in with
/// password and SMS code, cards and balances, the e-code (taken over from the phone), a top-up
/// through the simulated bank, a bill paid, the transactions chart, benefits, messages, the
/// data tracker, a message marked read, points redeemed and donated, the credit service opted
/// into with a dispute, a lost report and its undo, a replacement, English, and sign-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_in_chromium() {
    use platform::Caller;
    use serde_json::json;
    use std::sync::Arc;

    let app = common::start(Backend::Sqlite).await;
    let p = &app.tp.platform;
    let sms = sms_link::sim::SimSms::new();
    let sms_server = sms.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    p.set_sms_gateway(Arc::new(sms_link::HttpSmsGateway::new(
        &sms_server.url(),
        Duration::from_secs(2),
    )));
    let bank = bank_link::sim::SimBank::new();
    bank.open_account("6222000000000004", 1_000_000);
    let bank_server = bank.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    p.add_payment_channel(Arc::new(bank_link::HttpBankChannel::new(
        "SIM",
        &bank_server.url(),
        Duration::from_secs(5),
    )));
    // Resident 4: an active card with the e-code on a phone, a mobile number for notices.
    let now_s = (platform::testing::T0_MS / 1000) as u32;
    let (card, holder, _phone) = common::card_with_phone(p, 4, "phone-4", 4, now_s).await;
    p.notify_prefs_set(
        &Caller::cli("test"),
        &holder,
        "zh-CN",
        true,
        Some("13800000004"),
    )
    .await
    .unwrap();
    // A water bill of the household, with an auto-debit agreement.
    let admin = app.token(Role::Administrator).await;
    let officer = app.token(Role::ClearingOfficer).await;
    let clerk = app.token(Role::CounterClerk).await;
    let r = app
        .post_json(
            "/api/v1/merchants",
            Some(&admin),
            json!({"code": "water", "name": "郑州自来水", "category": "utility",
                   "settlement_account": "41050100000009"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/billers",
            Some(&admin),
            json!({"code": "water", "kind": "water"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .send(
            "POST",
            "/api/v1/billers/water/bills/file",
            Some(&officer),
            Some((
                "text/csv",
                b"bill_number,customer_no,period,amount_fen,due_date\nW202611-001,C001,2026-11,4500,2026-12-15\n"
                    .to_vec(),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/agreements",
            Some(&clerk),
            json!({"id_number": holder, "biller": "water", "customer_no": "C001", "limit_fen": 20000}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // A subsidy from civil affairs, four eyes.
    let civil = |op: i64| Caller {
        operator_id: Some(op),
        username: format!("civil-{op}"),
        role: Role::DepartmentOfficer,
        department: Some(resident::Source::CivilAffairs),
        origin: "test".into(),
    };
    p.fund_department(
        &Caller::cli("test"),
        "civil_affairs",
        "ICBC",
        ledger::Amount(100_000),
        "fund-1",
    )
    .await
    .unwrap();
    let (batch, _) = p
        .submit_disbursement(
            &civil(11),
            "2026-11 低保",
            format!("id_number,amount,benefit\n{holder},80.00,minimum_living\n").as_bytes(),
        )
        .await
        .unwrap();
    p.decide_disbursement(&civil(12), batch.id, true)
        .await
        .unwrap();
    // A consent to the housing fund's balance service, given at a counter.
    let kind = exchange_link::sim::Kind::Fund;
    for body in [
        json!({"code": kind.member(), "name": kind.member_name(),
               "public_key": hex::encode(exchange_link::sim::dev_key(kind).public_key().to_compressed())}),
        json!({"code": "card-company", "name": "card-company",
               "public_key": hex::encode(crypto::Sm2SigningKey::from_secret(&crypto::Key32::from_bytes([0x41; 32])).unwrap().public_key().to_compressed())}),
    ] {
        let r = app
            .post_json("/api/v1/exchange/members", Some(&admin), body)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = app
        .post_json(
            "/api/v1/exchange/services",
            Some(&admin),
            serde_json::to_value(kind.service("http://127.0.0.1:9")).unwrap(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/exchange/consents",
            Some(&clerk),
            json!({"id_number": holder, "consumer": "card-company", "service": "fund.balance",
                   "purpose": "loan-check", "expires_ms": platform::testing::T0_MS + 30 * 86_400_000}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Points: a voucher and a charity project; three volunteer hours (60 points).
    for item in [
        json!({"code": "bus-2", "name_zh": "公交乘车券 2 元", "name_en": "Bus voucher, 2 yuan",
               "kind": "ride_voucher", "cost_points": 30, "active": true}),
    ] {
        let r = app
            .post_json("/api/v1/points/catalogue", Some(&admin), item)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = app
        .post_json(
            "/api/v1/points/projects",
            Some(&admin),
            json!({"code": "trees", "name_zh": "黄河植树", "name_en": "Trees by the Yellow River",
                   "active": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    p.points_report(
        &civil(11),
        points::EarnKind::VolunteerHour,
        "civil-4",
        &holder,
        3,
    )
    .await
    .unwrap();

    let (_driver, c, _profile) = browser("390,844").await;
    let url = |path: &str| format!("{}{path}", app.base);

    // Not signed in: the portal's sign-in page, in Chinese.
    c.goto(&url("/portal/")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/portal/login")
    );
    assert_eq!(text_of(&c, "h2").await, "登录");
    shot(&c, "portal-01-login").await;

    // No password yet: refused, with the way to set one.
    fill(&c, "id_number", &holder).await;
    fill(&c, "password", "portal-pass-1").await;
    click(&c, "#sign-in").await;
    assert!(text_of(&c, "#error").await.contains("身份证号或密码错误"));
    // A first password with a code sent to the phone on file.
    click(&c, "#set-password-link").await;
    fill(&c, "id_number", &holder).await;
    click(&c, "#send-code").await;
    assert!(text_of(&c, "#code-sent").await.contains("138****0004"));
    fill(&c, "code", &last_code(&sms)).await;
    fill(&c, "password", "portal-pass-1").await;
    shot(&c, "portal-02-set-password").await;
    click(&c, "#set-password").await;
    assert_eq!(text_of(&c, "#notice").await, "密码已设置，请登录");

    // Sign-in: password, then the SMS code (a wrong one first).
    fill(&c, "id_number", &holder).await;
    fill(&c, "password", "portal-pass-1").await;
    click(&c, "#sign-in").await;
    assert!(text_of(&c, "#code-sent").await.contains("138****0004"));
    let code = last_code(&sms);
    fill(
        &c,
        "code",
        if code == "000000" { "111111" } else { "000000" },
    )
    .await;
    click(&c, "#confirm-code").await;
    assert!(text_of(&c, "#error").await.contains("验证码错误"));
    shot(&c, "portal-03-code-refused").await;
    fill(&c, "code", &code).await;
    click(&c, "#confirm-code").await;

    // My cards and balances: the subsidy is on the online account.
    assert_eq!(text_of(&c, "#online-balance").await, "¥80.00");
    wait_text(&c, &format!("#card-{card} .card-state"), "正常").await;
    assert!(text_of(&c, "#who").await.contains('*'));
    shot(&c, "portal-04-cards").await;

    // The e-code lives on the phone; the citizen moves it to the browser and sees the QR.
    c.goto(&url("/portal/ecode")).await.unwrap();
    assert!(text_of(&c, "#ecode-on-phone").await.contains("phone-4"));
    click(&c, "#ecode-take-over").await;
    text_of(&c, "#ecode-qr").await;
    let text = c
        .find(Locator::Id("ecode-text"))
        .await
        .unwrap()
        .prop("textContent")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        text.starts_with("ZZC1:"),
        "{text}: {}",
        c.source().await.unwrap()
    );
    assert!(c.find(Locator::Css("#ecode-qr svg")).await.is_ok());
    shot(&c, "portal-05-ecode").await;
    // It refreshes: the page asks to be reloaded, and a reload is a new code.
    let page = c.source().await.unwrap();
    assert!(page.contains("http-equiv=\"refresh\""));
    app.tp.clock.advance_ms(31_000);
    c.goto(&url("/portal/ecode")).await.unwrap();
    let text2 = c
        .find(Locator::Id("ecode-text"))
        .await
        .unwrap()
        .prop("textContent")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(text2.starts_with("ZZC1:") && text2 != text);

    // A top-up through the bank.
    click(&c, "#nav-topup").await;
    fill(&c, "amount", "50").await;
    fill(&c, "bank_account", "6222000000000004").await;
    click(&c, "#top-up").await;
    assert!(text_of(&c, "#notice").await.contains("充值成功"));
    assert_eq!(text_of(&c, "#online-balance").await, "¥130.00");
    assert_eq!(bank.balance("6222000000000004"), Some(1_000_000 - 5_000));
    shot(&c, "portal-06-topup").await;

    // The water bill, paid once.
    click(&c, "#nav-bills").await;
    assert!(text_of(&c, "#bills").await.contains("W202611-001"));
    assert!(text_of(&c, "#agreements").await.contains("C001"));
    click(&c, "#bills .row-action").await;
    assert!(text_of(&c, "#notice").await.contains("缴费成功"));
    assert!(c.find(Locator::Css("#bills .row-action")).await.is_err());
    shot(&c, "portal-07-bills").await;

    // Transactions with the chart: the bill is this month's spending.
    click(&c, "#nav-transactions").await;
    let bar = c
        .find(Locator::Css(
            "#spending-chart rect.bar[data-category='payment']",
        ))
        .await
        .unwrap();
    assert!(bar.attr("data-month").await.unwrap().is_some());
    assert!(text_of(&c, "#lines").await.contains("-45.00"));
    shot(&c, "portal-08-transactions").await;
    // Filtered to top-ups only.
    c.goto(&url("/portal/transactions?kind=top_up"))
        .await
        .unwrap();
    let kinds: Vec<String> = {
        let mut v = Vec::new();
        for e in c.find_all(Locator::Css("#lines tr.line")).await.unwrap() {
            v.push(e.attr("data-kind").await.unwrap().unwrap_or_default());
        }
        v
    };
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "top_up"),
        "{kinds:?}"
    );

    // Benefits, messages and the data tracker.
    click(&c, "#nav-benefits").await;
    assert!(text_of(&c, "#benefits").await.contains("80.00"));
    shot(&c, "portal-09-benefits").await;
    let unread: i64 = text_of(&c, "#unread-badge").await.parse().unwrap();
    assert!(unread >= 1);
    click(&c, "#nav-messages").await;
    assert!(text_of(&c, "#messages").await.contains("W202611-001"));
    shot(&c, "portal-10-messages").await;
    // Marking a message read lowers the badge.
    click(&c, "#messages .row-action").await;
    assert!(text_of(&c, "#notice").await.contains("已完成"));
    if unread == 1 {
        assert!(c.find(Locator::Id("unread-badge")).await.is_err());
    } else {
        assert_eq!(text_of(&c, "#unread-badge").await, (unread - 1).to_string());
    }
    click(&c, "#nav-privacy").await;
    assert!(text_of(&c, "#consents").await.contains("fund.balance"));
    text_of(&c, "#data-tracker-h").await;
    shot(&c, "portal-11-privacy").await;
    // The citizen revokes the consent.
    click(&c, "#consents .row-action").await;
    assert!(text_of(&c, "#notice").await.contains("已完成"));
    assert!(text_of(&c, "#consents").await.contains("已撤销"));
    assert!(c.find(Locator::Css("#consents .row-action")).await.is_err());

    // Points: 60 for three volunteer hours and 10 for the bill paid on time; a voucher
    // redeemed, a donation refused when short, then one that fits.
    click(&c, "#nav-points").await;
    assert_eq!(text_of(&c, "#points-balance").await, "70");
    click(&c, "#redeem-bus-2").await;
    assert!(text_of(&c, "#notice").await.contains("兑换成功"));
    assert_eq!(text_of(&c, "#points-balance").await, "40");
    fill(&c, "donate-points-trees", "100").await;
    click(&c, "#donate-trees").await;
    assert!(text_of(&c, "#error").await.contains("积分不足"));
    fill(&c, "donate-points-trees", "10").await;
    click(&c, "#donate-trees").await;
    assert!(text_of(&c, "#notice").await.contains("捐赠成功"));
    assert_eq!(text_of(&c, "#points-balance").await, "30");
    shot(&c, "portal-15-points").await;

    // Credit: nothing scored before opting in; then the score with its factors and chart.
    click(&c, "#nav-credit").await;
    text_of(&c, "#credit-opt-in").await;
    assert!(c.find(Locator::Id("credit-score")).await.is_err());
    shot(&c, "portal-16-credit-off").await;
    click(&c, "#credit-opt-in").await;
    text_of(&c, "#credit-score").await;
    for (kind, event) in [
        ("library_return_on_time", "lib-1"),
        ("fare_evasion", "metro-1"),
    ] {
        let r = app
            .post_json(
                "/api/v1/credit/signals",
                Some(&officer),
                json!({"kind": kind, "event_id": event, "id_number": holder}),
            )
            .await;
        assert_eq!(r.json()["recorded"], true, "{}", r.body);
    }
    c.goto(&url("/portal/credit")).await.unwrap();
    assert!(text_of(&c, "#factors").await.contains("逃票"));
    assert!(
        c.find(Locator::Css("#score-chart circle.point"))
            .await
            .is_ok()
    );
    fill(&c, "reason", "闸机故障，我刷了卡").await;
    click(&c, "#dispute-send").await;
    assert!(text_of(&c, "#notice").await.contains("申诉已提交"));
    assert!(text_of(&c, "#disputes").await.contains("处理中"));
    shot(&c, "portal-17-credit").await;

    // Report the card lost, undo it, then ask for a replacement of a damaged card.
    click(&c, "#nav-home").await;
    click(&c, &format!("#report_lost-{card}")).await;
    wait_text(&c, &format!("#card-{card} .card-state"), "已挂失").await;
    shot(&c, "portal-12-lost").await;
    click(&c, &format!("#undo_lost-{card}")).await;
    wait_text(&c, &format!("#card-{card} .card-state"), "正常").await;
    click(&c, &format!("#replace_damaged-{card}")).await;
    wait_text(&c, &format!("#card-{card} .card-state"), "已补换").await;
    assert_eq!(
        c.find_all(Locator::Css("#cards tbody tr"))
            .await
            .unwrap()
            .len(),
        2
    );
    shot(&c, "portal-13-replacement").await;

    // English, then sign out.
    c.goto(&url("/portal/?lang=en")).await.unwrap();
    assert_eq!(text_of(&c, "#nav-home").await, "My cards");
    wait_text(&c, &format!("#card-{card} .card-state"), "replaced").await;
    shot(&c, "portal-14-english").await;
    click(&c, "#sign-out").await;
    assert_eq!(text_of(&c, "#sign-in").await, "Next");
    c.goto(&url("/portal/")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/portal/login")
    );
    c.close().await.unwrap();
}

/// The portal's "sign in with the city account" button in Chromium: the simulated identity
/// provider (`idp_link::sim`) on a free port, the platform trusting it; the browser is sent to
/// the provider's page, signs in there as resident 1 and comes back to the portal signed in,
/// which shows the citizen's masked name. A callback whose state was tampered with on the way
/// shows a clear refusal and opens no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_in_chromium() {
    use platform::Caller;
    use std::sync::Arc;

    let tp = platform::testing::fresh(Backend::Sqlite).await;
    let p = tp.platform.clone();
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 0..10, 1, p.clock.today(), 0).unwrap();
    p.import_residents(
        &Caller::cli("test"),
        resident::Source::Police,
        "test",
        "0".into(),
        Box::new(std::io::Cursor::new(csv)),
        Arc::new(|_| {}),
    )
    .await
    .unwrap();
    let clock = tp.clock.clone();
    let sim = idp_link::sim::SimIdp::new("citycard", "s3cret-of-the-platform").with_clock(
        Arc::new(move || {
            use platform::clock::Clock;
            clock.now_ms()
        }),
    );
    let id1 = common::seeded_id(1);
    sim.add_user(&id1);
    let idp = sim.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let rp = idp_link::RelyingParty::new(idp_link::OidcConfig {
        enabled: true,
        issuer: idp.url(),
        client_id: "citycard".into(),
        client_secret: idp_link::Secret::new("s3cret-of-the-platform"),
        redirect_url: format!("{base}/portal/login/oidc/callback"),
        app_redirect_url: None,
        id_number_claim: "id_number".into(),
        timeout_ms: 3_000,
    });
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve_with_oidc(
        listener,
        p.clone(),
        Some(Arc::new(rp)),
        async {
            let _ = rx.await;
        },
    ));
    let holder = p
        .resident_by_id_number(&Caller::cli("test"), &id1, true)
        .await
        .unwrap();
    let name = holder.name.expect("the demo resident has a name");
    let masked = resident::mask_name(&name);
    assert_ne!(masked, name);

    let (_driver, c, _profile) = browser("390,844").await;
    let url = |path: &str| format!("{base}{path}");

    // The portal's sign-in page offers the city account; its button goes to the provider.
    c.goto(&url("/portal/login")).await.unwrap();
    shot(&c, "oidc-01-portal-login").await;
    click(&c, "#oidc-sign-in").await;
    let at_provider = |u: &str| u.starts_with(&format!("{}/authorize?", idp.url()));
    let mut waited = 0;
    while !at_provider(c.current_url().await.unwrap().as_str()) {
        waited += 1;
        assert!(waited < 200, "the button did not lead to the provider");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text_of(&c, "h1").await.contains("城市统一身份认证"));
    fill(&c, "user", &id1).await;
    shot(&c, "oidc-02-provider").await;
    click(&c, "#approve").await;

    // Back at the portal, signed in as resident 1: the masked name, never the full one.
    wait_text(&c, "#who", &masked).await;
    assert_eq!(c.current_url().await.unwrap().path(), "/portal/");
    let page = c.source().await.unwrap();
    assert!(!page.contains(&name), "the full name is on the portal");
    assert!(!page.contains(&id1), "the full ID number is on the portal");
    assert_eq!(sim.tokens_issued(), 1);
    shot(&c, "oidc-03-portal-signed-in").await;
    click(&c, "#sign-out").await;
    text_of(&c, "#oidc-sign-in").await;

    // Tampered on the way: the state the provider sends back is not this browser's.
    c.goto(&url("/portal/login/oidc")).await.unwrap();
    let mut waited = 0;
    while !at_provider(c.current_url().await.unwrap().as_str()) {
        waited += 1;
        assert!(waited < 200, "not sent to the provider");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let authorize = c.current_url().await.unwrap().to_string();
    let state = authorize
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .expect("a state in the provider's address")
        .to_string();
    let tampered = authorize.replace(&format!("state={state}"), "state=tampered-state");
    c.goto(&tampered).await.unwrap();
    fill(&c, "user", &id1).await;
    click(&c, "#approve").await;
    let refusal = text_of(&c, "#error").await;
    assert!(refusal.contains("登录请求与本浏览器不符"), "{refusal}");
    assert_eq!(
        c.current_url().await.unwrap().path(),
        "/portal/login/oidc/callback"
    );
    assert!(
        c.find(Locator::Id("who")).await.is_err(),
        "a refused sign-in is signed in"
    );
    shot(&c, "oidc-04-tampered-refused").await;
    // Nothing was opened: the portal still asks to sign in.
    c.goto(&url("/portal/")).await.unwrap();
    text_of(&c, "#oidc-sign-in").await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/portal/login")
    );
    assert_eq!(
        sim.tokens_issued(),
        1,
        "a refused callback reached the token endpoint"
    );
    c.close().await.unwrap();
}

/// The console's points form in Chromium: the administrator changes the ride rule's daily cap
/// through its labelled form; the page says so (Chinese, then English) and the rule is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_form_in_chromium() {
    let app = common::start(Backend::Sqlite).await;
    let (_driver, c, _profile) = browser("1200,900").await;
    let url = |p: &str| format!("{}{p}", app.base);
    c.goto(&url("/console/login")).await.unwrap();
    let admin = common::App::username(Role::Administrator);
    submit_sign_in(&c, &admin, common::PASSWORD).await;
    assert_eq!(text_of(&c, "#current-user").await, admin);
    c.goto(&url("/console/points")).await.unwrap();
    assert_eq!(text_of(&c, "label[for=rule-ride-cap]").await, "每日上限");
    fill(&c, "rule-ride-cap", "12").await;
    shot(&c, "points-01-rule-form").await;
    click(&c, "#rule-ride-save").await;
    let flash = text_of(&c, "#flash").await;
    assert!(
        flash.starts_with("已保存获得规则：乘车。")
            && flash.contains("The earning rule for a ride is saved."),
        "{flash}"
    );
    shot(&c, "points-02-rule-saved").await;
    let rule = app
        .tp
        .platform
        .points_rules(&platform::Caller::cli("test"))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == "ride")
        .unwrap();
    assert_eq!((rule.points_per_unit, rule.daily_cap), (1, 12));
    c.close().await.unwrap();
}
