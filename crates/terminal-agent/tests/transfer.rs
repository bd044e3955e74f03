//! A transfer between two buses' terminals is discounted from what the card recorded: one card
//! rides a B2 validator, then a B906 validator (another terminal, another PSAM, nothing shared
//! but the card), within the window — the second ride is discounted; the chain is capped; the
//! same line again, or a ride past the window, pays the full fare.

use chip::fleet::Fleet;
use chip::{BcdDate, BcdTime, Card, TerminalId};
use terminal_agent::{Agent, Limits, Ride, TapRequest};

async fn validator(dir: &std::path::Path, name: &str, psam: u8) -> Agent {
    Agent::open(
        &dir.join(format!("{name}.sqlite")),
        TerminalId([0, 0, 0, 0, 0x0B, psam]),
        Limits::default(),
    )
    .await
    .unwrap()
}

async fn ride(agent: &Agent, card: &mut Card, line: &str, at_s: i64) -> u32 {
    agent
        .tap_channel(
            card,
            &TapRequest {
                tap_ref: None,
                ride: Ride::Bus { line: line.into() },
                at_s,
            },
        )
        .await
        .unwrap()
        .charged_fen
}

#[tokio::test]
async fn a_transfer_between_two_buses_is_discounted_from_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let b2 = validator(dir.path(), "b2", 1).await;
    let b906 = validator(dir.path(), "b906", 2).await;
    let b2_other = validator(dir.path(), "b2-other", 3).await;
    let mut fleet = Fleet::new(
        7_000,
        1,
        crypto::Algorithm::Sm4,
        TerminalId([0, 0, 0, 0, 0, 9]),
    );
    fleet
        .load(
            0,
            10_000,
            BcdDate::new(2026, 11, 30).unwrap(),
            BcdTime::new(6, 0, 0).unwrap(),
        )
        .unwrap();
    let mut card = fleet.into_cards().remove(0);
    // 2026-11-30 08:00 in the city.
    let t = 1_795_996_800;
    assert_eq!(
        ride(&b2, &mut card, "B2", t).await,
        200,
        "the first ride: full"
    );
    assert_eq!(
        ride(&b906, &mut card, "B906", t + 600).await,
        100,
        "another bus within 90 minutes: 1 yuan off"
    );
    assert_eq!(
        ride(&b2, &mut card, "B2", t + 1_200).await,
        100,
        "the second transfer of the chain"
    );
    assert_eq!(
        ride(&b906, &mut card, "B906", t + 1_800).await,
        200,
        "at most two discounted transfers in a chain"
    );
    // Past the window: full; then the same line on another terminal: no transfer.
    assert_eq!(ride(&b2, &mut card, "B2", t + 20_000).await, 200);
    assert_eq!(
        ride(&b2_other, &mut card, "B2", t + 20_300).await,
        200,
        "the same line again is no transfer"
    );
    assert_eq!(
        ride(&b906, &mut card, "B906", t + 20_600).await,
        100,
        "another line after it is"
    );
}
