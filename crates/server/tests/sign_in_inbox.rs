//! Sign-in codes in the citizen's inbox (issue 9, item 5), on SQLite and PostgreSQL: every
//! code sent by SMS also lands in the portal's messages and the app's inbox as an unread
//! in-app message, counted on the navigation's badge, in the citizen's language; the in-app
//! copy says that a code was sent, never the code (the SMS alone carries it), and the
//! platform's own records of the notice (the in-app row, a notice's `Debug`) hold no code.

mod common;

use common::{App, seeded_id};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use platform::Caller;
use platform::testing::Backend;
use serde_json::json;
use sms_link::HttpSmsGateway;
use sms_link::sim::{SimServer, SimSms};
use std::sync::Arc;
use std::time::Duration;

both_backends!(sign_in_codes_land_in_the_inbox);

const PASSWORD: &str = "citizen-pass-1";

/// The six digits of the newest SMS with a code.
fn newest_code(sim: &SimSms) -> String {
    sim.messages()
        .iter()
        .rev()
        .find_map(|m| {
            m.text
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 6)
                .map(String::from)
        })
        .expect("an SMS with a code")
}

/// Signs seeded resident `i` in (password, then the SMS's code): the session token and the
/// code the SMS carried.
async fn sign_in(app: &App, sim: &SimSms, i: u64, kind: &str) -> (String, String) {
    let p = &app.tp.platform;
    let c = p
        .citizen_sign_in_start(&seeded_id(i), PASSWORD, "127.0.0.1")
        .await
        .unwrap();
    let code = newest_code(sim);
    let token = p
        .citizen_sign_in_finish(&c.challenge, &code, kind, "127.0.0.1")
        .await
        .unwrap()
        .0;
    (token, code)
}

async fn portal_page(app: &App, cookie: &str, path: &str) -> String {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::builder()
        .uri(format!("{}{path}", app.base))
        .header("cookie", format!("citycard_citizen={cookie}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn badge(html: &str) -> Option<String> {
    let at = html.find("id=\"unread-badge\"")?;
    let rest = &html[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    Some(rest[start..end].trim().to_string())
}

async fn sign_in_codes_land_in_the_inbox(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let sim = SimSms::new();
    let _server: SimServer = sim.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    p.set_sms_gateway(Arc::new(HttpSmsGateway::new(
        &_server.url(),
        Duration::from_secs(2),
    )));
    for (i, lang) in [(1, "zh-CN"), (2, "en")] {
        p.notify_prefs_set(
            &Caller::cli("test"),
            &seeded_id(i),
            lang,
            true,
            Some(&format!("1380000000{i}")),
        )
        .await
        .unwrap();
        p.citizen_password_set_by(&common::clerk(), &seeded_id(i), PASSWORD)
            .await
            .unwrap();
    }

    // A portal sign-in: the SMS carries the code; the inbox has one unread message about it.
    let (cookie, code1) = sign_in(&app, &sim, 1, "portal").await;
    let html = portal_page(&app, &cookie, "/portal/messages").await;
    assert_eq!(badge(&html), Some("1".into()), "{html}");
    assert!(html.contains("已向您的手机发送验证码"), "{html}");
    assert!(
        !html.contains(&code1),
        "the code is in the portal's messages: {html}"
    );

    // A second sign-in (the phone app): a second message, the badge counts both on every page.
    let (token, code2) = sign_in(&app, &sim, 1, "app").await;
    assert_ne!(code1, code2);
    let home = portal_page(&app, &cookie, "/portal/").await;
    assert_eq!(badge(&home), Some("2".into()), "{home}");
    let inbox = app.get("/api/v1/me/messages", Some(&token)).await.json();
    let codes: Vec<&serde_json::Value> = inbox
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["template"] == "one_time_code")
        .collect();
    assert_eq!(codes.len(), 2, "{inbox}");
    for m in &codes {
        let body = m["body"].as_str().unwrap();
        assert_eq!(
            (m["channel"].as_str(), m["status"].as_str()),
            (Some("inapp"), Some("unread"))
        );
        assert!(body.contains("5 分钟内有效"), "{body}");
        assert!(!body.contains(&code1) && !body.contains(&code2), "{body}");
    }
    // Read one: the badge drops to one.
    let id = codes[0]["id"].as_i64().unwrap();
    let r = app
        .post_json(
            &format!("/api/v1/me/messages/{id}/read"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(r.json()["unread"], 1, "{}", r.body);
    let html = portal_page(&app, &cookie, "/portal/messages").await;
    assert_eq!(badge(&html), Some("1".into()));

    // The SMS went out once per code, with the code; no stored in-app row holds one.
    let sent: Vec<String> = sim.messages().iter().map(|m| m.text.clone()).collect();
    assert_eq!(
        sent.iter().filter(|t| t.contains(&code1)).count(),
        1,
        "{sent:?}"
    );
    assert_eq!(
        sent.iter().filter(|t| t.contains(&code2)).count(),
        1,
        "{sent:?}"
    );
    let rows = p
        .notifications_of(&Caller::cli("test"), &seeded_id(1), Some("inapp"), 50)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| !r.body.contains(&code1) && !r.body.contains(&code2))
    );
    // The outbox's SMS rows went out with the code (above), yet hold it only sealed: neither the
    // stored row nor the operator's view of it shows the code.
    let rid = p.resident_id_of(&seeded_id(1)).await.unwrap();
    let stored = p
        .store
        .notifications_of(rid, Some("sms"), 50)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    for r in &stored {
        assert!(r.body.starts_with("sealed:"), "{}", r.body);
        assert!(!r.body.contains(&code1) && !r.body.contains(&code2));
    }
    let views = p
        .notifications_of(&Caller::cli("test"), &seeded_id(1), Some("sms"), 50)
        .await
        .unwrap();
    assert!(views.iter().all(|v| v.body == "sealed"), "{views:?}");

    // In English for a citizen who reads English.
    let (token2, code3) = sign_in(&app, &sim, 2, "app").await;
    let inbox = app.get("/api/v1/me/messages", Some(&token2)).await.json();
    let m = &inbox.as_array().unwrap()[0];
    let body = m["body"].as_str().unwrap();
    assert!(
        body.starts_with("[CityCard] A code was sent to your phone"),
        "{body}"
    );
    assert!(!body.contains(&code3));
    assert_eq!(m["status"], "unread");

    // A notice's Debug (what a log line would print) masks the code.
    let n = notices::Notice::OneTimeCode {
        code: code3.clone(),
    };
    assert!(!format!("{n:?}").contains(&code3));
}
