//! The citizen's own points, credit and messages over HTTP (issue 9, items 5 to 7), on SQLite
//! and PostgreSQL, through the phone app's API and the portal's pages: redemption and
//! donation move points in the ledger and are refused when the citizen is short (with the
//! portal saying so in words); a citizen sees and acts on their own points and credit only;
//! a citizen who has not opted in is not scored and gets no history; a dispute opened in the
//! portal shows up with its resolution; opting out deletes everything; marking a message read
//! lowers the unread count on the nav's badge, and another's message cannot be marked.

mod common;

use common::{App, seeded_id};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use platform::Caller;
use platform::notifications::NoticeItem;
use platform::testing::Backend;
use serde_json::json;
use sms_link::HttpSmsGateway;
use sms_link::sim::{SimServer, SimSms};
use std::sync::Arc;
use std::time::Duration;
use store::Role;

both_backends!(
    points_api_and_page,
    credit_api_and_page,
    messages_read_state
);

const PASSWORD: &str = "citizen-pass-1";

struct Sms {
    sim: SimSms,
    _server: SimServer,
}

/// The simulated SMS gateway, and residents 1 and 2 with a phone on file and a password.
async fn citizens(app: &App) -> Sms {
    let sim = SimSms::new();
    let server = sim.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let p = &app.tp.platform;
    p.set_sms_gateway(Arc::new(HttpSmsGateway::new(
        &server.url(),
        Duration::from_secs(2),
    )));
    for i in [1, 2] {
        p.notify_prefs_set(
            &Caller::cli("test"),
            &seeded_id(i),
            "zh-CN",
            true,
            Some(&format!("1380000000{i}")),
        )
        .await
        .unwrap();
        p.citizen_password_set_by(&common::clerk(), &seeded_id(i), PASSWORD)
            .await
            .unwrap();
    }
    Sms {
        sim,
        _server: server,
    }
}

/// Signs seeded resident `i` in with password and the SMS code: an `app` bearer token or a
/// `portal` session cookie's token.
async fn session(app: &App, sms: &Sms, i: u64, kind: &str) -> String {
    let p = &app.tp.platform;
    let c = p
        .citizen_sign_in_start(&seeded_id(i), PASSWORD, "127.0.0.1")
        .await
        .unwrap();
    // The newest SMS with a code (notices may be delivered in between).
    let code: String = sms
        .sim
        .messages()
        .iter()
        .rev()
        .find_map(|m| {
            m.text
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 6)
                .map(String::from)
        })
        .expect("an SMS with a code");
    p.citizen_sign_in_finish(&c.challenge, &code, kind, "127.0.0.1")
        .await
        .unwrap()
        .0
}

/// A portal request with the session cookie (and a form body when posting).
async fn portal(app: &App, cookie: &str, method: &str, path: &str, form: &str) -> (u16, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", app.base))
        .header("cookie", format!("citycard_citizen={cookie}"));
    if method == "POST" {
        b = b.header("content-type", "application/x-www-form-urlencoded");
    }
    let resp = client
        .request(b.body(Full::new(Bytes::from(form.to_string()))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The text of the element with `id` (up to the next tag).
fn text_by_id(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    Some(rest[start..end].trim().to_string())
}

async fn points_account(app: &App, i: u64) -> i64 {
    let p = &app.tp.platform;
    let r = p.resident_id_of(&seeded_id(i)).await.unwrap();
    p.ledger_accounts(
        &Caller::cli("test"),
        &[ledger::AccountKey::citizen_points(r)],
    )
    .await
    .unwrap()[0]
        .balance
}

fn civil() -> Caller {
    Caller {
        operator_id: Some(99),
        username: "civil".into(),
        role: Role::DepartmentOfficer,
        department: Some(resident::Source::CivilAffairs),
        origin: "test".into(),
    }
}

async fn points_api_and_page(backend: Backend) {
    let app = common::start(backend).await;
    let sms = citizens(&app).await;
    let p = &app.tp.platform;
    let admin = app.token(Role::Administrator).await;
    for item in [
        json!({"code": "bus-2", "name_zh": "公交乘车券 2 元", "name_en": "Bus voucher, 2 yuan",
               "kind": "ride_voucher", "cost_points": 30, "active": true}),
        json!({"code": "museum", "name_zh": "河南博物院门票", "name_en": "Henan Museum ticket",
               "kind": "museum_ticket", "cost_points": 5, "active": true}),
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
    // Volunteer hours: 20 points an hour by the default rule.
    for (i, hours) in [(1u64, 2i64), (2, 5)] {
        let e = p
            .points_report(
                &civil(),
                points::EarnKind::VolunteerHour,
                &format!("civil-{i}"),
                &seeded_id(i),
                hours,
            )
            .await
            .unwrap();
        assert_eq!(e.points, 20 * hours);
    }
    let t1 = session(&app, &sms, 1, "app").await;
    let t2 = session(&app, &sms, 2, "app").await;

    // My points with what they can be spent on; each citizen sees their own.
    let r = app.get("/api/v1/me/points", Some(&t1)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["points"]["balance"], 40);
    assert_eq!(j["points"]["entries"][0]["op"], "earn");
    assert_eq!(j["catalogue"].as_array().unwrap().len(), 2);
    assert_eq!(j["projects"][0]["code"], "trees");
    assert_eq!(
        app.get("/api/v1/me/points", Some(&t2)).await.json()["points"]["balance"],
        100
    );
    // Without a citizen's token: refused; an operator's token is no citizen's.
    assert_eq!(app.get("/api/v1/me/points", None).await.status, 401);
    assert_eq!(app.get("/api/v1/me/points", Some(&admin)).await.status, 401);

    // Redeem: 30 of 40; the same request again answers the first and takes nothing more.
    let redeem = json!({"item": "bus-2", "request_id": "app-r1"});
    let r = app
        .post_json("/api/v1/me/points/redemptions", Some(&t1), redeem.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = r.json();
    assert_eq!(
        (first["op"].as_str(), first["points"].as_i64()),
        (Some("redeem"), Some(30))
    );
    let r = app
        .post_json("/api/v1/me/points/redemptions", Some(&t1), redeem)
        .await;
    assert_eq!(
        (r.status, r.json()["id"].clone()),
        (200, first["id"].clone())
    );
    assert_eq!(points_account(&app, 1).await, 10);
    // Short: refused, nothing moves.
    let r = app
        .post_json(
            "/api/v1/me/points/redemptions",
            Some(&t1),
            json!({"item": "bus-2", "request_id": "app-r2"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/me/points/donations",
            Some(&t1),
            json!({"project": "trees", "points": 11, "request_id": "app-d1"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(points_account(&app, 1).await, 10);
    // Unknown item and project: 404.
    let r = app
        .post_json(
            "/api/v1/me/points/redemptions",
            Some(&t1),
            json!({"item": "nothing", "request_id": "app-r3"}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    // Donate 4 of 10.
    let r = app
        .post_json(
            "/api/v1/me/points/donations",
            Some(&t1),
            json!({"project": "trees", "points": 4, "request_id": "app-d2"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(points_account(&app, 1).await, 6);
    // Resident 2's points were not touched by any of it.
    assert_eq!(points_account(&app, 2).await, 100);
    let j = app.get("/api/v1/me/points", Some(&t2)).await.json();
    assert_eq!(j["points"]["entries"].as_array().unwrap().len(), 1);

    // The portal page: balance, the catalogue with its forms, the entries.
    let c1 = session(&app, &sms, 1, "portal").await;
    let (status, html) = portal(&app, &c1, "GET", "/portal/points", "").await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(text_by_id(&html, "points-balance").as_deref(), Some("6"));
    assert!(html.contains("id=\"redeem-bus-2\"") && html.contains("id=\"donate-trees\""));
    assert!(html.contains("公交乘车券 2 元") && html.contains("黄河植树"));
    assert!(html.contains("id=\"nav-points\"") && html.contains("id=\"nav-credit\""));
    // Short for the voucher: said in words, with what is available; nothing moves.
    let (status, html) = portal(
        &app,
        &c1,
        "POST",
        "/portal/points/redeem",
        "item=bus-2&request_id=page-r1",
    )
    .await;
    assert_eq!(status, 200);
    let error = text_by_id(&html, "error").unwrap();
    assert!(error.contains("积分不足") && error.contains('6'), "{error}");
    assert_eq!(text_by_id(&html, "points-balance").as_deref(), Some("6"));
    // The museum ticket (5) is redeemed.
    let (_, html) = portal(
        &app,
        &c1,
        "POST",
        "/portal/points/redeem",
        "item=museum&request_id=page-r2",
    )
    .await;
    assert!(
        text_by_id(&html, "notice").unwrap().contains("兑换成功"),
        "{html}"
    );
    assert_eq!(text_by_id(&html, "points-balance").as_deref(), Some("1"));
    assert_eq!(points_account(&app, 1).await, 1);
    // A bad amount and too many points to donate are refused in words.
    let (_, html) = portal(
        &app,
        &c1,
        "POST",
        "/portal/points/donate",
        "project=trees&points=abc&request_id=page-d1",
    )
    .await;
    assert!(text_by_id(&html, "error").unwrap().contains("1 至 1000000"));
    let (_, html) = portal(
        &app,
        &c1,
        "POST",
        "/portal/points/donate",
        "project=trees&points=2&request_id=page-d2",
    )
    .await;
    assert!(text_by_id(&html, "error").unwrap().contains("积分不足"));
    let (_, html) = portal(
        &app,
        &c1,
        "POST",
        "/portal/points/donate",
        "project=trees&points=1&request_id=page-d3",
    )
    .await;
    assert!(text_by_id(&html, "notice").unwrap().contains("捐赠成功"));
    assert_eq!(text_by_id(&html, "points-balance").as_deref(), Some("0"));
    // A withdrawn item is no longer offered, and saying so is the refusal.
    let r = app
        .post_json(
            "/api/v1/points/catalogue",
            Some(&admin),
            json!({"code": "museum", "name_zh": "河南博物院门票", "name_en": "Henan Museum ticket",
                   "kind": "museum_ticket", "cost_points": 5, "active": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, html) = portal(
        &app,
        &c1,
        "POST",
        "/portal/points/redeem",
        "item=museum&request_id=page-r3",
    )
    .await;
    assert!(text_by_id(&html, "error").unwrap().contains("已下架"));
    assert!(!html.contains("id=\"redeem-museum\""));
    // English.
    let (_, html) = portal(&app, &c1, "GET", "/portal/points?lang=en", "").await;
    assert!(html.contains("Points balance") && html.contains("Bus voucher, 2 yuan"));
    // Every point is still accounted for: resident 2 untouched.
    assert_eq!(points_account(&app, 2).await, 100);
}

async fn credit_api_and_page(backend: Backend) {
    let app = common::start(backend).await;
    let sms = citizens(&app).await;
    let officer = app.token(Role::ClearingOfficer).await;
    let t1 = session(&app, &sms, 1, "app").await;
    let t2 = session(&app, &sms, 2, "app").await;
    let c1 = session(&app, &sms, 1, "portal").await;
    let report = |kind: &'static str, event: &'static str, i: u64| {
        let app = &app;
        let officer = officer.clone();
        async move {
            let r = app
                .post_json(
                    "/api/v1/credit/signals",
                    Some(&officer),
                    json!({"kind": kind, "event_id": event, "id_number": seeded_id(i)}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["recorded"].as_bool().unwrap()
        }
    };

    // Not opted in: nothing recorded, no score, no history; the page offers the opt-in only.
    assert!(!report("fare_evasion", "metro-0", 1).await);
    let r = app.get("/api/v1/me/credit", Some(&t1)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["opted_in"], false);
    assert!(r.json()["score"].is_null());
    assert_eq!(
        app.get("/api/v1/me/credit/history", Some(&t1)).await.status,
        409
    );
    let (_, html) = portal(&app, &c1, "GET", "/portal/credit", "").await;
    assert!(html.contains("id=\"credit-opt-in\"") && html.contains("id=\"credit-intro\""));
    assert!(!html.contains("id=\"credit-score\"") && !html.contains("score-chart"));
    // Still nothing scored or kept for them.
    let p = &app.tp.platform;
    let sys = Caller::cli("test");
    assert!(p.credit_history(&sys, &seeded_id(1)).await.is_err());

    // Resident 1 opts in in the portal, resident 2 through the app.
    let (_, html) = portal(&app, &c1, "POST", "/portal/credit/opt-in", "").await;
    assert!(text_by_id(&html, "notice").unwrap().contains("已开通"));
    assert!(html.contains("id=\"credit-score\"") && html.contains("id=\"credit-opt-out\""));
    let r = app
        .post_json("/api/v1/me/credit/opt-in", Some(&t2), json!({}))
        .await;
    assert_eq!((r.status, r.json()["changed"].as_bool()), (200, Some(true)));
    let r = app
        .post_json("/api/v1/me/credit/opt-in", Some(&t2), json!({}))
        .await;
    assert_eq!(r.json()["changed"], false);

    assert!(report("fare_evasion", "metro-1", 1).await);
    assert!(report("library_return_on_time", "lib-1", 1).await);
    assert!(report("library_return_late", "lib-2", 2).await);
    let j = app.get("/api/v1/me/credit", Some(&t1)).await.json();
    let score = &j["score"];
    assert_eq!(j["opted_in"], true);
    let factors = score["factors"].as_array().unwrap();
    let sum: i64 = factors
        .iter()
        .map(|f| f["contribution"].as_i64().unwrap())
        .sum();
    assert_eq!(
        score["score"].as_i64().unwrap(),
        score["base"].as_i64().unwrap() + sum
    );
    let evasion = factors
        .iter()
        .find(|f| f["kind"] == "fare_evasion")
        .unwrap();
    assert!(evasion["contribution"].as_i64().unwrap() < 0);
    // Only resident 1's signals; resident 2's late return is theirs alone.
    let signals = score["signals"].as_array().unwrap();
    assert_eq!(signals.len(), 2);
    let fare_id = signals
        .iter()
        .find(|s| s["kind"] == "fare_evasion")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let j2 = app.get("/api/v1/me/credit", Some(&t2)).await.json();
    assert_eq!(j2["score"]["signals"].as_array().unwrap().len(), 1);
    let late_id = j2["score"]["signals"][0]["id"].as_i64().unwrap();

    // The page explains every factor and charts the history.
    let (_, html) = portal(&app, &c1, "GET", "/portal/credit", "").await;
    assert_eq!(
        text_by_id(&html, "credit-score"),
        Some(score["score"].as_i64().unwrap().to_string())
    );
    assert_eq!(html.matches("class=\"factor\"").count(), factors.len());
    assert!(html.contains(evasion["text_zh"].as_str().unwrap()));
    assert!(html.contains("<svg id=\"score-chart\"") && html.contains("class=\"point\""));

    // Resident 2 cannot dispute resident 1's record, through the app or the portal.
    let r = app
        .post_json(
            "/api/v1/me/credit/disputes",
            Some(&t2),
            json!({"signal_id": fare_id, "reason": "not me"}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let (_, html) = portal(
        &app,
        &c1,
        "POST",
        "/portal/credit/disputes",
        &format!("signal_id={late_id}&reason=x"),
    )
    .await;
    assert!(text_by_id(&html, "error").unwrap().contains("没有找到"));
    // Resident 1 disputes the fare evasion in the portal; once.
    let form = format!("signal_id={fare_id}&reason=%E6%88%91%E5%88%B7%E4%BA%86%E5%8D%A1");
    let (_, html) = portal(&app, &c1, "POST", "/portal/credit/disputes", &form).await;
    assert!(
        text_by_id(&html, "notice").unwrap().contains("申诉已提交"),
        "{html}"
    );
    assert!(html.contains("data-status=\"open\"") && html.contains("我刷了卡"));
    let (_, html) = portal(&app, &c1, "POST", "/portal/credit/disputes", &form).await;
    assert!(
        text_by_id(&html, "error")
            .unwrap()
            .contains("已有处理中的申诉")
    );
    let mine = app
        .get("/api/v1/me/credit/disputes", Some(&t1))
        .await
        .json();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["status"], "open");
    assert_eq!(
        app.get("/api/v1/me/credit/disputes", Some(&t2))
            .await
            .json(),
        json!([])
    );
    // An officer upholds it: the page shows the resolution and the record struck out.
    let id = mine[0]["id"].as_i64().unwrap();
    let r = app
        .post_json(
            &format!("/api/v1/credit/disputes/{id}/resolution"),
            Some(&officer),
            json!({"uphold": true, "note": "gate fault"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, html) = portal(&app, &c1, "GET", "/portal/credit", "").await;
    assert!(html.contains("data-status=\"upheld\"") && html.contains("gate fault"));
    let after = app.get("/api/v1/me/credit", Some(&t1)).await.json();
    assert!(after["score"]["score"].as_i64() > score["score"].as_i64());
    let history = app.get("/api/v1/me/credit/history", Some(&t1)).await;
    assert_eq!(history.status, 200, "{}", history.body);
    assert!(!history.json().as_array().unwrap().is_empty());

    // Opting out deletes everything and stops recording.
    let r = app
        .post_json("/api/v1/me/credit/opt-out", Some(&t1), json!({}))
        .await;
    assert_eq!(r.json()["changed"], true);
    let j = app.get("/api/v1/me/credit", Some(&t1)).await.json();
    assert_eq!(
        (j["opted_in"].as_bool(), j["score"].is_null()),
        (Some(false), true)
    );
    assert_eq!(
        app.get("/api/v1/me/credit/disputes", Some(&t1))
            .await
            .json(),
        json!([])
    );
    assert!(!report("fare_evasion", "metro-2", 1).await);
    let (_, html) = portal(&app, &c1, "GET", "/portal/credit", "").await;
    assert!(html.contains("id=\"credit-opt-in\"") && !html.contains("id=\"credit-score\""));
    // Resident 2 is still in, with their score.
    let j2 = app.get("/api/v1/me/credit", Some(&t2)).await.json();
    assert_eq!(j2["opted_in"], true);
}

async fn messages_read_state(backend: Backend) {
    let app = common::start(backend).await;
    let sms = citizens(&app).await;
    let p = &app.tp.platform;
    let r1 = p.resident_id_of(&seeded_id(1)).await.unwrap();
    let r2 = p.resident_id_of(&seeded_id(2)).await.unwrap();
    let t1 = session(&app, &sms, 1, "app").await;
    let t2 = session(&app, &sms, 2, "app").await;
    let c1 = session(&app, &sms, 1, "portal").await;
    let inbox = |t: String| {
        let app = &app;
        async move {
            app.get("/api/v1/me/messages", Some(&t))
                .await
                .json()
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let unread = |v: &[serde_json::Value]| v.iter().filter(|m| m["status"] == "unread").count();
    // The sign-in codes are in the inbox too: count from there.
    let before = unread(&inbox(t1.clone()).await);
    let paid = |n: &str| notices::Notice::BillPaid {
        biller: "water".into(),
        bill_number: n.into(),
        amount_fen: 4500,
    };
    p.notify_residents(
        &Caller::cli("test"),
        &[
            NoticeItem {
                key: "m1".into(),
                resident_id: r1,
                notice: paid("W-1"),
            },
            NoticeItem {
                key: "m2".into(),
                resident_id: r1,
                notice: paid("W-2"),
            },
            NoticeItem {
                key: "m3".into(),
                resident_id: r2,
                notice: paid("W-3"),
            },
        ],
    )
    .await
    .unwrap();
    let bills = |v: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        v.into_iter()
            .filter(|m| m["template"] == "bill_paid")
            .collect()
    };
    let all = inbox(t1.clone()).await;
    let n = unread(&all);
    assert_eq!(n, before + 2);
    let mine = bills(all);
    assert_eq!(mine.len(), 2, "{mine:#?}");
    assert!(mine.iter().all(|m| m["status"] == "unread"));
    let theirs = bills(inbox(t2.clone()).await);
    assert_eq!(theirs.len(), 1);
    let (_, html) = portal(&app, &c1, "GET", "/portal/messages", "").await;
    assert_eq!(text_by_id(&html, "unread-badge"), Some(n.to_string()));
    assert_eq!(html.matches("class=\"row-action\"").count(), n);

    // Resident 2 cannot mark resident 1's message, nor resident 1 theirs.
    let id1 = mine[0]["id"].as_i64().unwrap();
    let r = app
        .post_json(
            &format!("/api/v1/me/messages/{id1}/read"),
            Some(&t2),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let other = theirs[0]["id"].as_i64().unwrap();
    let r = app
        .post_json(
            &format!("/api/v1/me/messages/{other}/read"),
            Some(&t1),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Read through the app: the count drops; again changes nothing.
    let r = app
        .post_json(
            &format!("/api/v1/me/messages/{id1}/read"),
            Some(&t1),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let left = (n - 1) as i64;
    assert_eq!(
        (r.json()["changed"].as_bool(), r.json()["unread"].as_i64()),
        (Some(true), Some(left))
    );
    let r = app
        .post_json(
            &format!("/api/v1/me/messages/{id1}/read"),
            Some(&t1),
            json!({}),
        )
        .await;
    assert_eq!(
        (r.json()["changed"].as_bool(), r.json()["unread"].as_i64()),
        (Some(false), Some(left))
    );
    let (_, html) = portal(&app, &c1, "GET", "/portal/points", "").await;
    assert_eq!(text_by_id(&html, "unread-badge"), Some(left.to_string()));

    // Read the other from the messages page: the badge drops again.
    let id2 = mine[1]["id"].as_i64().unwrap();
    let (_, html) = portal(
        &app,
        &c1,
        "POST",
        "/portal/messages",
        &format!("target={id2}"),
    )
    .await;
    assert!(
        text_by_id(&html, "notice").unwrap().contains("已完成"),
        "{html}"
    );
    assert_eq!(html.matches("class=\"row-action\"").count(), n - 2);
    match n - 2 {
        0 => assert!(!html.contains("id=\"unread-badge\"")),
        k => assert_eq!(text_by_id(&html, "unread-badge"), Some(k.to_string())),
    }
    assert!(
        bills(inbox(t1.clone()).await)
            .iter()
            .all(|m| m["status"] == "read")
    );
    // Resident 2's message is still unread.
    assert!(
        bills(inbox(t2).await)
            .iter()
            .all(|m| m["status"] == "unread")
    );
    // Another's id through the page is refused in words, and nothing changes.
    let (_, html) = portal(
        &app,
        &c1,
        "POST",
        "/portal/messages",
        &format!("target={other}"),
    )
    .await;
    assert!(text_by_id(&html, "error").is_some());
    assert_eq!(unread(&inbox(t1).await), n - 2);
}
