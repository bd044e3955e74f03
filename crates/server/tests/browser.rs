//! The console in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven
//! over WebDriver): sign-in, a refused password, the residents page masked and unmasked, the
//! language switch and the audit page. Screenshots are kept under `artifacts/screenshots/`.

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
    panic!("{css} not found on {url}: {last}")
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
