//! The bank channel client against the simulated bank over real HTTP on a free port: the
//! answers of docs/bank-channel.md, at-most-once debits per order id, the status query that
//! closes an order never received, and the client's time limit against a bank that hangs or
//! answers late.

use bank_link::HttpBankChannel;
use bank_link::sim::{Mode, SimBank, SimServer};
use platform::channel::{ChannelAnswer, ChannelError, DebitRequest, PaymentChannel};
use std::time::Duration;

const ACCOUNT: &str = "6222000000000001";

async fn bank(timeout_ms: u64) -> (SimBank, SimServer, HttpBankChannel) {
    let bank = SimBank::with_accounts(2, 10_000);
    let server = bank.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let ch = HttpBankChannel::new("SIM", &server.url(), Duration::from_millis(timeout_ms));
    (bank, server, ch)
}

fn debit(order: &str, fen: i64) -> DebitRequest {
    DebitRequest {
        order_id: order.into(),
        account: ACCOUNT.into(),
        amount_fen: fen,
    }
}

#[tokio::test]
async fn debits_once_per_order_and_refuses_what_it_cannot() {
    let (bank, _s, ch) = bank(2_000).await;
    let a = ch.initiate(&debit("O1", 4_000)).await.unwrap();
    let ChannelAnswer::Succeeded { bank_ref } = a.clone() else {
        panic!("{a:?}")
    };
    assert_eq!(ch.initiate(&debit("O1", 4_000)).await.unwrap(), a);
    assert_eq!(ch.status("O1").await.unwrap(), a);
    assert!(bank_ref.starts_with("SIM"));
    assert_eq!((bank.balance(ACCOUNT), bank.debits()), (Some(6_000), 1));
    // The same order id for another amount: not the protocol's to answer.
    assert!(matches!(
        ch.initiate(&debit("O1", 5_000)).await,
        Err(ChannelError::Protocol(_))
    ));
    assert_eq!(
        ch.initiate(&debit("O2", 7_000)).await.unwrap(),
        ChannelAnswer::Failed {
            reason: "insufficient_funds".into()
        }
    );
    let mut other = debit("O3", 1);
    other.account = "6222999999999999".into();
    assert_eq!(
        ch.initiate(&other).await.unwrap(),
        ChannelAnswer::Failed {
            reason: "no_such_account".into()
        }
    );
    // Asked about before it arrived: closed, and a late request cannot debit it.
    assert_eq!(
        ch.status("O4").await.unwrap(),
        ChannelAnswer::Failed {
            reason: "not_received".into()
        }
    );
    assert_eq!(
        ch.initiate(&debit("O4", 1_000)).await.unwrap(),
        ChannelAnswer::Failed {
            reason: "not_received".into()
        }
    );
    assert_eq!(bank.debits(), 1);
}

#[tokio::test]
async fn the_client_gives_up_at_its_time_limit() {
    let (bank, _s, ch) = bank(200).await;
    bank.set_mode(Mode::Late { delay_ms: 20_000 });
    assert_eq!(
        ch.initiate(&debit("L1", 100)).await,
        Err(ChannelError::Timeout(200))
    );
    // Debited all the same: the status query finds it.
    assert!(matches!(
        ch.status("L1").await.unwrap(),
        ChannelAnswer::Succeeded { .. }
    ));
    bank.set_mode(Mode::Hang);
    assert_eq!(
        ch.initiate(&debit("H1", 100)).await,
        Err(ChannelError::Timeout(200))
    );
    bank.set_mode(Mode::Processing);
    assert_eq!(
        ch.initiate(&debit("P1", 100)).await.unwrap(),
        ChannelAnswer::Processing
    );
    assert_eq!(ch.status("P1").await.unwrap(), ChannelAnswer::Processing);
    bank.set_mode(Mode::Normal);
    assert_eq!(
        ch.status("H1").await.unwrap(),
        ChannelAnswer::Failed {
            reason: "not_received".into()
        }
    );
    assert!(matches!(
        ch.status("P1").await.unwrap(),
        ChannelAnswer::Succeeded { .. }
    ));
    assert_eq!(bank.balance(ACCOUNT), Some(10_000 - 200));
    // Nobody listening: unreachable, not a refusal.
    let gone = HttpBankChannel::new("X", "http://127.0.0.1:1", Duration::from_millis(500));
    assert!(matches!(
        gone.status("Z1").await,
        Err(ChannelError::Unreachable(_))
    ));
}
