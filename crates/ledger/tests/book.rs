//! Property tests of the ledger arithmetic: random transfers (immediate, pending, posted,
//! voided, repeated, malformed) never create or destroy money, and floors hold.

use ledger::{
    AccountKind, Amount, Book, BookError, BookOutcome, IdempotencyKey, Mode, Posting, Side,
    Transfer, TransferKind, TransferState, Unit,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Transfer {
        key: u8,
        legs: Vec<(u8, bool, i64)>,
        pending: bool,
    },
    Resolve {
        key: u8,
        post: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            0u8..40,
            prop::collection::vec((0u8..12, any::<bool>(), 1i64..5_000), 1..5),
            any::<bool>()
        )
            .prop_map(|(key, legs, pending)| Op::Transfer { key, legs, pending }),
        1 => (0u8..40, any::<bool>()).prop_map(|(key, post)| Op::Resolve { key, post }),
    ]
}

/// Twelve accounts: six CNY (two with a floor, one bank, ...), six points.
const KINDS: [AccountKind; 6] = [
    AccountKind::CitizenOnline,
    AccountKind::EpurseShadow,
    AccountKind::BankFloat,
    AccountKind::MerchantPayable,
    AccountKind::Earmarked,
    AccountKind::Suspense,
];

fn book() -> Book {
    let mut b = Book::default();
    for unit in [Unit::Cny, Unit::Points] {
        for k in KINDS {
            b.open(k, unit);
        }
    }
    b
}

/// Builds postings from legs; each leg is balanced by an opposite posting on the next
/// account of the same unit, so most transfers are valid. Some legs pair an account with
/// itself or mix units, which validation or the store must handle.
fn transfer(key: u8, legs: &[(u8, bool, i64)], pending: bool) -> Transfer {
    let mut postings = Vec::new();
    for &(acc, debit, amount) in legs {
        let a = i64::from(acc) + 1;
        let unit = if a <= 6 { Unit::Cny } else { Unit::Points };
        let b = if a % 6 == 0 { a - 5 } else { a + 1 };
        let (d, c) = if debit { (a, b) } else { (b, a) };
        postings.push(Posting::debit(d, unit, Amount(amount)));
        postings.push(Posting::credit(c, unit, Amount(amount)));
    }
    Transfer {
        key: IdempotencyKey::parse(&format!("t{key}")).unwrap(),
        kind: TransferKind::Adjustment,
        memo: "property".into(),
        mode: if pending {
            Mode::Pending
        } else {
            Mode::Immediate
        },
        postings,
    }
}

fn check(b: &Book) {
    for unit in Unit::ALL {
        assert_eq!(b.trial_balance(unit), 0, "{unit:?} does not balance");
    }
    for (kind, bal) in b.accounts() {
        assert!(bal.reserved >= 0);
        if let Some(floor) = kind.floor() {
            assert!(
                bal.available().unwrap() >= floor,
                "{kind:?} below floor: {bal:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn money_is_conserved_and_floors_hold(ops in prop::collection::vec(op(), 1..80)) {
        let mut b = book();
        // Seed money: the bank holds what citizens hold (asset against liability).
        for unit in [Unit::Cny, Unit::Points] {
            let base = if unit == Unit::Cny { 0 } else { 6 };
            let seed = Transfer {
                key: IdempotencyKey::parse(&format!("seed-{unit:?}")).unwrap(),
                kind: TransferKind::TopUp,
                memo: String::new(),
                mode: Mode::Immediate,
                postings: vec![
                    Posting { account: base + 3, unit, side: Side::Debit, amount: Amount(20_000) },
                    Posting { account: base + 1, unit, side: Side::Credit, amount: Amount(10_000) },
                    Posting { account: base + 2, unit, side: Side::Credit, amount: Amount(10_000) },
                ],
            };
            prop_assert_eq!(b.transfer(&seed), BookOutcome::Applied(TransferState::Posted));
        }
        let mut sent: std::collections::HashMap<u8, Transfer> = Default::default();
        for op in ops {
            match op {
                Op::Transfer { key, legs, pending } => {
                    let t = transfer(key, &legs, pending);
                    let before = b.clone();
                    let out = b.transfer(&t);
                    match (&out, sent.get(&key)) {
                        (BookOutcome::Duplicate(_), Some(prev)) => prop_assert_eq!(prev, &t),
                        (BookOutcome::KeyConflict, Some(prev)) => prop_assert_ne!(prev, &t),
                        (BookOutcome::Applied(_), None) => { sent.insert(key, t); }
                        (BookOutcome::Rejected(e), None) => {
                            prop_assert!(matches!(e, BookError::BelowFloor { .. } | BookError::Invalid(_)), "{e:?}");
                            // A rejected transfer changes nothing.
                            for (x, y) in before.accounts().zip(b.accounts()) {
                                prop_assert_eq!(x, y);
                            }
                        }
                        (o, prev) => prop_assert!(false, "unexpected {o:?} with previous {prev:?}"),
                    }
                }
                Op::Resolve { key, post } => {
                    let k = IdempotencyKey::parse(&format!("t{key}")).unwrap();
                    let out = b.resolve(&k, post);
                    if let Some(t) = sent.get(&key) && t.mode == Mode::Immediate {
                        // Resolving an immediate transfer: posting is a repeat, voiding a conflict.
                        prop_assert_eq!(out, Some(if post { BookOutcome::Duplicate(TransferState::Posted) } else { BookOutcome::KeyConflict }));
                    }
                }
            }
            check(&b);
        }
        // Void everything still pending: reservations all return to zero.
        for key in sent.keys() {
            let k = IdempotencyKey::parse(&format!("t{key}")).unwrap();
            let _ = b.resolve(&k, false);
        }
        for (_, bal) in b.accounts() {
            prop_assert_eq!(bal.reserved, 0);
        }
        check(&b);
    }
}

#[test]
fn pending_reserves_then_posts_or_voids() {
    let mut b = Book::default();
    let bank = b.open(AccountKind::BankFloat, Unit::Cny);
    let citizen = b.open(AccountKind::CitizenOnline, Unit::Cny);
    let merchant = b.open(AccountKind::MerchantPayable, Unit::Cny);
    let k = |s: &str| IdempotencyKey::parse(s).unwrap();
    let top = Transfer::simple(
        k("top"),
        TransferKind::TopUp,
        "",
        bank,
        citizen,
        Unit::Cny,
        Amount(1000),
    );
    assert_eq!(
        b.transfer(&top),
        BookOutcome::Applied(TransferState::Posted)
    );
    let hold = Transfer::simple(
        k("pay"),
        TransferKind::Payment,
        "",
        citizen,
        merchant,
        Unit::Cny,
        Amount(700),
    )
    .pending();
    assert_eq!(
        b.transfer(&hold),
        BookOutcome::Applied(TransferState::Pending)
    );
    assert_eq!(b.balance(citizen).unwrap().available(), Some(300));
    // The reserved money cannot be spent twice.
    let more = Transfer::simple(
        k("pay2"),
        TransferKind::Payment,
        "",
        citizen,
        merchant,
        Unit::Cny,
        Amount(400),
    );
    assert!(
        matches!(b.transfer(&more), BookOutcome::Rejected(BookError::BelowFloor { account, .. }) if account == citizen)
    );
    assert_eq!(
        b.resolve(&k("pay"), false),
        Some(BookOutcome::Applied(TransferState::Voided))
    );
    assert_eq!(b.balance(citizen).unwrap().available(), Some(1000));
    assert_eq!(b.resolve(&k("pay"), true), Some(BookOutcome::KeyConflict));
    assert_eq!(
        b.resolve(&k("pay"), false),
        Some(BookOutcome::Duplicate(TransferState::Voided))
    );
    assert_eq!(
        b.transfer(&more),
        BookOutcome::Applied(TransferState::Posted)
    );
    assert_eq!(b.balance(merchant).unwrap().balance, 400);
    // The bank account may go below zero (an asset overdrawn), a citizen's may not.
    let out = Transfer::simple(
        k("out"),
        TransferKind::Settlement,
        "",
        merchant,
        bank,
        Unit::Cny,
        Amount(5000),
    );
    assert_eq!(
        b.transfer(&out),
        BookOutcome::Applied(TransferState::Posted)
    );
    assert_eq!(b.balance(bank).unwrap().balance, -4000);
}
