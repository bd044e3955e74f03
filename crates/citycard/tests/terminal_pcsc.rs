//! The terminal agent's tap through the real PC/SC stack (issue 6, item 6): an emulated card
//! served to pcscd by the vpcd virtual reader (`pcsc-link`), reached by `Agent::tap_channel`
//! over `pcsc_link::PcscChannel` — the path `citycard terminal run` takes with
//! `card_source = "pcsc"`. Two validators of two bus lines tap the card in turn: the first
//! charges the full fare, the second a transfer priced from the card's own transit record; both
//! records are queued durably and the card's image (saved by the virtual reader) is debited.
//!
//! pcscd is one per machine: this test and `pcsc-link`'s share it, so it runs alone in its
//! binary. `ensure_pcscd` starts pcscd with its vpcd reader on a free port (Debian's fixed 35963
//! can be held by a client connection of the tests before). Fails, never skips, when pcscd or
//! the vpcd driver are missing.

use chip::{BcdDate, BcdTime, CardImage, TerminalId};
use pcsc_link::PcscChannel;
use pcsc_link::daemon::{PACKAGES, ensure_pcscd};
use pcsc_link::vpcd::{VirtualCard, spawn};
use terminal_agent::{Agent, Limits, Ride, TapRequest};

const READER: &str = "Virtual PCD 00 00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_reaches_the_card_through_pcscd() {
    let pcscd = ensure_pcscd().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();

    // A development-key card loaded with 50 yuan, presented in the virtual reader.
    let mut fleet = chip::fleet::Fleet::new(
        8_100,
        1,
        crypto::Algorithm::Sm4,
        TerminalId([0, 0, 0, 0, 0, 9]),
    );
    fleet
        .load(
            0,
            5_000,
            BcdDate::new(2026, 11, 30).unwrap(),
            BcdTime::new(6, 0, 0).unwrap(),
        )
        .unwrap();
    let number = fleet.number(0);
    let card = fleet.into_cards().remove(0);
    let image_path = dir.path().join("card.json");
    std::fs::write(&image_path, card.image().to_json()).unwrap();
    let link = spawn(
        VirtualCard::from_file(&image_path).unwrap(),
        pcscd.vpcd_config(),
    )
    .unwrap_or_else(|e| {
        panic!("{e}\n(needs pcscd with the vpcd driver: apt-get install {PACKAGES})")
    });

    let open = |name: &str, psam: u8| {
        let path = dir.path().join(format!("{name}.sqlite"));
        async move {
            Agent::open(
                &path,
                TerminalId([0, 0, 0, 0, 0x0C, psam]),
                Limits::default(),
            )
            .await
            .unwrap()
        }
    };
    let b2 = open("b2", 1).await;
    let b906 = open("b906", 2).await;
    // 2026-11-30 08:00 in the city.
    let t = 1_795_996_800;
    let tap = |line: &str, at_s: i64, r: &str| TapRequest {
        tap_ref: Some(r.into()),
        ride: Ride::Bus { line: line.into() },
        at_s,
    };

    let mut reader = tokio::task::spawn_blocking(|| PcscChannel::connect(Some(READER), 15_000))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let first = b2
        .tap_channel(&mut reader, &tap("B2", t, "p1"))
        .await
        .unwrap();
    assert_eq!(first.card_number, Some(number));
    assert_eq!(
        (first.charged_fen, first.balance_after_fen),
        (200, Some(4_800))
    );
    let second = b906
        .tap_channel(&mut reader, &tap("B906", t + 900, "p2"))
        .await
        .unwrap();
    assert_eq!(
        (second.charged_fen, second.balance_after_fen),
        (100, Some(4_700)),
        "a transfer from the other bus, read from the card"
    );
    // The same reference again: nothing taken from the card.
    assert!(
        b2.tap_channel(&mut reader, &tap("B2", t, "p1"))
            .await
            .unwrap()
            .already
    );
    drop(reader);
    assert_eq!((b2.pending(), b906.pending()), (1, 1));
    assert_eq!(b2.counts().await.unwrap().queued, 1);

    let (_, served) = link.stop();
    served.unwrap();
    let saved = CardImage::from_json(&std::fs::read_to_string(&image_path).unwrap()).unwrap();
    assert_eq!(saved.purse().unwrap().balance_fen, 4_700);
}
