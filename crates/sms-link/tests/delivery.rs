//! The notification outbox delivering through the HTTP gateway client to the simulated SMS
//! gateway over real HTTP on a free port: sent once, a timeout retried without a second
//! delivery, an unavailable gateway retried with backoff, a rejected number failed for good,
//! preferences (language, SMS off, own phone) honoured, in-app messages always written.

use notices::{DebitFailure, Notice};
use platform::Caller;
use platform::notifications::NoticeItem;
use platform::testing::{Backend, TestPlatform};
use sms_link::HttpSmsGateway;
use sms_link::sim::{Mode, SimServer, SimSms};
use std::sync::Arc;
use std::time::Duration;

fn id(i: u64) -> String {
    platform::demo::id_number(i, 1, time::macros::date!(2026 - 11 - 26))
        .as_str()
        .to_string()
}

async fn setup(backend: Backend, timeout_ms: u64) -> (TestPlatform, SimSms, SimServer, Vec<i64>) {
    let tp = platform::testing::fresh(backend).await;
    let p = &tp.platform;
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 0..3, 1, p.clock.today(), 0).unwrap();
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
    let sim = SimSms::new();
    let server = sim.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    p.set_sms_gateway(Arc::new(HttpSmsGateway::new(
        &server.url(),
        Duration::from_millis(timeout_ms),
    )));
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(p.resident_id_of(&id(i)).await.unwrap());
    }
    (tp, sim, server, ids)
}

fn debited(n: &str) -> Notice {
    Notice::BillDebited {
        biller: "自来水".into(),
        bill_number: n.into(),
        period: "2026-11".into(),
        amount_fen: 4_500,
    }
}

async fn check(backend: Backend) {
    let (tp, sim, _server, r) = setup(backend, 300).await;
    let p = &tp.platform;
    let sys = Caller::cli("test");
    // Resident 1 prefers English and a phone of their own; resident 2 has SMS off.
    let v = p
        .notify_prefs_set(&sys, &id(1), "en", true, Some("139 0000 1111"))
        .await
        .unwrap();
    assert_eq!(
        (v.phone_masked.as_deref(), v.phone_source.as_deref()),
        (Some("139****1111"), Some("preferences"))
    );
    p.notify_prefs_set(&sys, &id(2), "zh-CN", false, None)
        .await
        .unwrap();
    let items: Vec<NoticeItem> = (0..3)
        .map(|i| NoticeItem {
            key: format!("test-{i}"),
            resident_id: r[i],
            notice: debited(&format!("W{i}")),
        })
        .collect();
    assert_eq!(p.notify_residents(&sys, &items).await.unwrap(), 5);
    assert_eq!(p.notify_residents(&sys, &items).await.unwrap(), 0);

    let rep = p.deliver_notifications(&sys, 100).await.unwrap();
    assert_eq!((rep.claimed, rep.sent), (2, 2));
    assert_eq!((sim.delivered(), sim.duplicates()), (2, 0));
    let msgs = sim.messages();
    let en = msgs.iter().find(|m| m.phone == "139****1111").unwrap();
    assert!(
        en.text.starts_with("[CityCard] 自来水 bill W1"),
        "{}",
        en.text
    );
    assert!(
        msgs.iter()
            .any(|m| m.text.starts_with("【市民卡】您的自来水账单 W0"))
    );
    // Nothing is due any more; the in-app messages are in each inbox, SMS off or not.
    assert_eq!(p.deliver_notifications(&sys, 100).await.unwrap().claimed, 0);
    let inbox = p
        .notifications_of(&sys, &id(2), Some("inapp"), 10)
        .await
        .unwrap();
    assert_eq!((inbox.len(), inbox[0].status.as_str()), (1, "unread"));
    assert!(
        p.notifications_of(&sys, &id(2), Some("sms"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A gateway that answers after the client's time limit: the message was delivered, the
    // answer lost; the retry (after the backoff) gets the first answer, no second SMS.
    sim.set_mode(Mode::Late { delay_ms: 1_000 });
    p.notify_residents(
        &sys,
        &[NoticeItem {
            key: "late".into(),
            resident_id: r[0],
            notice: Notice::BillDebitFailed {
                biller: "燃气".into(),
                bill_number: "G1".into(),
                period: "2026-11".into(),
                amount_fen: 100,
                failure: DebitFailure::InsufficientFunds,
            },
        }],
    )
    .await
    .unwrap();
    let rep = p.deliver_notifications(&sys, 100).await.unwrap();
    assert_eq!((rep.claimed, rep.retried), (1, 1));
    assert_eq!(sim.delivered(), 3);
    assert_eq!(p.deliver_notifications(&sys, 100).await.unwrap().claimed, 0);
    sim.set_mode(Mode::Normal);
    tp.clock.advance_ms(notices::RETRY_DELAY_FIRST_MS);
    let rep = p.deliver_notifications(&sys, 100).await.unwrap();
    assert_eq!(rep.sent, 1);
    assert_eq!((sim.delivered(), sim.duplicates()), (3, 1));
    let late = p
        .store
        .notification_by_key("late:sms")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((late.status.as_str(), late.attempts), ("sent", 2));

    // Unavailable: retried with a doubling delay, then failed after the last attempt.
    sim.set_mode(Mode::Unavailable);
    p.notify_residents(
        &sys,
        &[NoticeItem {
            key: "down".into(),
            resident_id: r[0],
            notice: debited("W9"),
        }],
    )
    .await
    .unwrap();
    let mut waited = Vec::new();
    for _ in 0..notices::ATTEMPTS_MAX {
        let before = p
            .store
            .notification_by_key("down:sms")
            .await
            .unwrap()
            .unwrap();
        tp.clock
            .advance_ms((before.next_attempt_ms - p.clock.now_ms()).max(0));
        let rep = p.deliver_notifications(&sys, 100).await.unwrap();
        assert_eq!(rep.claimed, 1);
        let after = p
            .store
            .notification_by_key("down:sms")
            .await
            .unwrap()
            .unwrap();
        if after.status == "pending" {
            waited.push(after.next_attempt_ms - p.clock.now_ms());
        }
    }
    assert_eq!(&waited[..3], &[30_000, 60_000, 120_000]);
    let down = p
        .store
        .notification_by_key("down:sms")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (down.status.as_str(), down.attempts),
        ("failed", notices::ATTEMPTS_MAX as i32)
    );
    assert_eq!(sim.delivered(), 3);

    // Rejected numbers fail at once.
    sim.set_mode(Mode::Reject);
    p.notify_residents(
        &sys,
        &[NoticeItem {
            key: "rej".into(),
            resident_id: r[0],
            notice: debited("W8"),
        }],
    )
    .await
    .unwrap();
    let rep = p.deliver_notifications(&sys, 100).await.unwrap();
    assert_eq!(rep.failed, 1);
    let rej = p
        .store
        .notification_by_key("rej:sms")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rej.status.as_str(), rej.last_error.as_deref()),
        ("failed", Some("invalid_number"))
    );
    let counts = p.notify_counts(&sys).await.unwrap();
    assert!(
        counts
            .iter()
            .any(|c| c.channel == "sms" && c.status == "sent" && c.count == 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_delivers_once_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_delivers_once_postgres() {
    check(Backend::Postgres).await;
}

#[tokio::test]
async fn the_log_gateway_writes_each_message_once() {
    use platform::notifications::{LogSmsGateway, SmsGateway, SmsMessage};
    let dir = tempfile_dir();
    let path = dir.join("sms.log");
    let m = SmsMessage {
        message_id: notices::message_id("k"),
        phone: notices::Phone::parse("13812345678").unwrap(),
        text: "hello".into(),
    };
    let g = LogSmsGateway::open(&path).unwrap();
    g.send(&m).await.unwrap();
    g.send(&m).await.unwrap();
    drop(g);
    // Reopened, it still knows the id.
    let g = LogSmsGateway::open(&path).unwrap();
    g.send(&m).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(
        text.contains("138****5678") && !text.contains("13812345678"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sms-link-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
