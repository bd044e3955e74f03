//! Issue 4's property test through the real platform and databases: a seeded random sequence
//! of applications, every life-cycle action (by the right and sometimes the wrong actor or
//! reason), loads and purchases through the ledger (also on replaced cards during their
//! cooling-off), the passing of time, sweeps and releases of balance moves, over a handful of
//! residents. After every step:
//! - each resident has at most one live card;
//! - the signed deny-list the platform serves holds exactly the cards in deny-listed states
//!   (`issuance::must_deny`), and the delta from the previous version, applied to the previous
//!   list, gives it;
//! - a refused action changed nothing (card version, deny-list version, audit head);
//! - the books check, every unit sums to zero, and each resident's money (online account and
//!   every card's e-purse shadow and pending load) is what was loaded minus what was spent,
//!   whatever replacements, cancellations and releases happened;
//! - once the sweep or release ran, no balance move is left due.
//!
//! At the end, after the last cooling-off: no card that stopped being live holds money, and
//! the audit chain verifies.
//!
//! Two fixed seeds of 600 steps by default, each on a fresh database; `CITYCARD_LIFECYCLE_SEED`
//! (one seed) and `CITYCARD_LIFECYCLE_STEPS` explore others.

use crate::fixture::{Fixture, admin, audit_seq, caller, id, import};
use crate::on_both_backends;
use chip::CardNumber;
use issuance::{CardState, DenyList, DenyListDelta, must_deny};
use ledger::{
    AccountKey, AccountKind, Amount, IdempotencyKey, Owner, Transfer, TransferKind, Unit,
};
use platform::cards::{CardRequest, Reason};
use platform::{Caller, Platform, PlatformError};
use resident::Source;
use std::collections::{BTreeMap, BTreeSet};
use store::{CardRow, Role};

const RESIDENTS: usize = 4;
/// Two seeds that between them reach every path (renewal, freeze by the sweep, expiry, late
/// purchases on replaced cards, refused purchases), each on its own fresh database.
const DEFAULT_SEEDS: [u64; 2] = [0x9, 0x18];
const DEFAULT_STEPS: usize = 600;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Past both the lost-report undo period and the cooling-off (7 days each by default).
const PAST_PERIODS_MS: i64 = 8 * DAY_MS;

on_both_backends!(random_lifecycles_keep_the_invariants);

/// SplitMix64: small, seeded, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

const ALL_REQUESTS: [CardRequest; 18] = [
    CardRequest::Approve,
    CardRequest::Reject,
    CardRequest::Withdraw,
    CardRequest::SendToProduction,
    CardRequest::ProductionDone,
    CardRequest::ProductionFailed,
    CardRequest::DeliverToOutlet(1),
    CardRequest::Post,
    CardRequest::HandOver,
    CardRequest::Activate,
    CardRequest::ReportLost,
    CardRequest::UndoLost,
    CardRequest::Freeze,
    CardRequest::Unfreeze,
    CardRequest::Replace,
    CardRequest::Renew,
    CardRequest::Cancel,
    CardRequest::Expire,
];

const ALL_REASONS: [Reason; 6] = [
    Reason::Routine,
    Reason::HolderRequest,
    Reason::Lost,
    Reason::Damaged,
    Reason::Fraud,
    Reason::Cleared,
];

/// Requests that make sense in `state` (most are then accepted), so runs get past production.
fn plausible(state: &str) -> &'static [CardRequest] {
    use CardRequest::*;
    match state {
        "applied" => &[
            Approve, Approve, Approve, Approve, Approve, Reject, Withdraw,
        ],
        "approved" => &[
            SendToProduction,
            SendToProduction,
            SendToProduction,
            Withdraw,
        ],
        "in_production" => &[
            ProductionDone,
            ProductionDone,
            ProductionDone,
            ProductionFailed,
        ],
        // Delivery to an outlet goes with a batch (the generic action refuses it): by post.
        "produced" => &[Post, Post, Post, DeliverToOutlet(1)],
        "at_outlet" => &[HandOver],
        "issued" => &[Activate],
        "active" => &[
            ReportLost, ReportLost, ReportLost, Freeze, Replace, Replace, Cancel, Renew,
        ],
        "reported_lost" => &[UndoLost, Freeze, Replace, Replace, Replace, Cancel],
        "frozen" => &[Unfreeze, Replace, Replace, Replace, Cancel],
        _ => &[Expire, Approve, Activate, Replace, Cancel],
    }
}

/// The caller and reason the rules expect for `request` (some randomly wrong in `step`).
fn who_and_why(rng: &mut Rng, request: CardRequest) -> (Caller, Reason) {
    use CardRequest::*;
    let clerk = caller("clerk", Role::CounterClerk, None);
    let officer = caller("officer", Role::Administrator, None);
    let system = admin();
    match request {
        Approve => (clerk, Reason::Routine),
        Reject => (officer, Reason::Ineligible),
        Withdraw => (clerk, Reason::HolderRequest),
        // Production is the system's (batches); an operator is sent to the batch path.
        SendToProduction => (system.clone(), Reason::Routine),
        ProductionDone => (system, Reason::Routine),
        ProductionFailed => (system, Reason::ProductionFailure),
        DeliverToOutlet(_) | Post | HandOver => (clerk, Reason::Routine),
        Activate | UndoLost => (clerk, Reason::HolderRequest),
        ReportLost => (clerk, Reason::Lost),
        Freeze => (officer, Reason::Fraud),
        Unfreeze => (officer, Reason::Cleared),
        Replace => (
            clerk,
            rng.pick(&[
                Reason::Lost,
                Reason::Damaged,
                Reason::Damaged,
                Reason::Fraud,
            ]),
        ),
        Renew => (clerk, Reason::Renewal),
        Cancel => (
            clerk,
            rng.pick(&[Reason::HolderRequest, Reason::HolderGone]),
        ),
        Expire => (system, Reason::ValidityOver),
    }
}

struct Accounts {
    bank: i64,
    merchant: i64,
}

/// What the test knows independently of the platform.
struct World {
    residents: Vec<String>,
    /// Resident row id by index.
    resident_ids: Vec<i64>,
    /// Loaded minus spent per resident, in fen.
    expected_fen: Vec<i64>,
    /// The deny-list as a terminal holds it: version and list, brought forward by deltas.
    terminal: (i64, DenyList),
    next_key: u64,
    counts: BTreeMap<&'static str, u64>,
    /// The clerk at outlet [`OUTLET`], where lost reports and replacements are journaled.
    desk: Caller,
}

/// The outlet whose counter takes the clerks' lost reports and replacements.
const OUTLET: &str = "RND-1";

impl World {
    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }
    fn key(&mut self, what: &str) -> IdempotencyKey {
        self.next_key += 1;
        IdempotencyKey::parse(&format!("{what}-{}", self.next_key)).unwrap()
    }
}

/// What a refused action must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    audit: i64,
    deny_version: i64,
    cards: Vec<(String, i64, String)>,
    accounts: Vec<(i64, i64, i64)>,
}

async fn snapshot(p: &Platform, w: &World) -> Snapshot {
    let mut cards = Vec::new();
    for &r in &w.resident_ids {
        for c in p.store.cards_of_resident(r).await.unwrap() {
            cards.push((c.number, c.version, c.state_json));
        }
    }
    Snapshot {
        audit: audit_seq(p).await,
        deny_version: p.store.deny_list_version().await.unwrap(),
        cards,
        accounts: all_accounts(p)
            .await
            .into_iter()
            .map(|a| (a.id, a.balance, a.reserved))
            .collect(),
    }
}

async fn all_accounts(p: &Platform) -> Vec<store::ledger::AccountRow> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = p.store.ledger_accounts_page(after, 500).await.unwrap();
        let n = page.len();
        if let Some(last) = page.last() {
            after = last.id;
        }
        out.extend(page);
        if n < 500 {
            break;
        }
    }
    out
}

fn state_of(row: &CardRow) -> CardState {
    serde_json::from_str(&row.state_json).unwrap()
}

async fn all_cards(p: &Platform, w: &World) -> Vec<Vec<CardRow>> {
    let mut out = Vec::new();
    for &r in &w.resident_ids {
        out.push(p.store.cards_of_resident(r).await.unwrap());
    }
    out
}

async fn balance(p: &Platform, key: &AccountKey) -> i64 {
    p.store
        .ledger_account(key)
        .await
        .unwrap()
        .map_or(0, |a| a.balance)
}

/// A resident's money: online account plus every card's e-purse shadow and pending load.
async fn money_of(p: &Platform, resident_id: i64, cards: &[CardRow]) -> i64 {
    let mut sum = balance(p, &AccountKey::citizen_online(resident_id)).await;
    for c in cards {
        sum += balance(p, &AccountKey::epurse_shadow(&c.number)).await;
        sum += balance(p, &AccountKey::epurse_pending_load(&c.number)).await;
    }
    sum
}

async fn check_invariants(p: &Platform, w: &mut World, step: &str) {
    let cards = all_cards(p, w).await;

    // At most one live card per resident.
    for (i, cs) in cards.iter().enumerate() {
        let live: Vec<_> = cs
            .iter()
            .filter(|c| state_of(c).is_live())
            .map(|c| (&c.number, &c.state))
            .collect();
        assert!(
            live.len() <= 1,
            "{step}: resident {i} has {} live cards: {live:?}",
            live.len()
        );
    }

    // The served deny-list is exactly the cards in deny-listed states.
    let pk = crypto::Sm2PublicKey::from_sec1(&p.deny_list_public_key()).unwrap();
    let (version, full) = p.deny_list_full().await.unwrap();
    let list = DenyList::decode(&full, &pk).unwrap();
    assert_eq!(list.version().0 as i64, version, "{step}");
    let expected: BTreeSet<u32> = cards
        .iter()
        .flatten()
        .filter(|c| must_deny(state_of(c)))
        .map(|c| issuance::card_sequence(CardNumber::parse(&c.number).unwrap()))
        .collect();
    let served: BTreeSet<u32> = list.sequences().iter().copied().collect();
    assert_eq!(
        served, expected,
        "{step}: deny-list v{version} differs from the card states"
    );

    // A delta from the terminal's version brings its list to the served one.
    let (held_version, held) = &mut w.terminal;
    if *held_version == version {
        assert_eq!(held.sequences(), list.sequences(), "{step}: same version");
        let r = p.deny_list_delta(version).await;
        assert!(
            matches!(r, Err(PlatformError::Conflict(_))),
            "{step}: {r:?}"
        );
    } else {
        assert!(*held_version < version, "{step}: the deny-list went back");
        let (v, bytes) = p.deny_list_delta(*held_version).await.unwrap();
        assert_eq!(v, version, "{step}");
        let delta = DenyListDelta::decode(&bytes, &pk).unwrap();
        held.apply(&delta).unwrap();
        assert_eq!(held.version().0 as i64, version, "{step}");
        assert_eq!(
            held.sequences(),
            list.sequences(),
            "{step}: delta v{} -> v{version} applied to the held list",
            *held_version
        );
        *held_version = version;
    }

    // The books: recomputed balances agree, every unit sums to zero.
    let check = p.ledger_check().await.unwrap();
    assert_eq!(check.mismatch, None, "{step}: ledger check");
    let mut per_unit: BTreeMap<&str, i64> = BTreeMap::new();
    for a in all_accounts(p).await {
        let signed = match a.key.kind().normal_side() {
            ledger::NormalSide::Debit => a.balance,
            ledger::NormalSide::Credit => -a.balance,
        };
        *per_unit.entry(a.key.unit().as_str()).or_default() += signed;
    }
    for (unit, sum) in &per_unit {
        assert_eq!(*sum, 0, "{step}: {unit} does not sum to zero");
    }

    // Each resident's money is what was loaded minus what was spent.
    for (i, cs) in cards.iter().enumerate() {
        let have = money_of(p, w.resident_ids[i], cs).await;
        assert_eq!(
            have,
            w.expected_fen[i],
            "{step}: resident {i} holds {have} fen, loaded minus spent is {} (cards {:?})",
            w.expected_fen[i],
            cs.iter().map(|c| (&c.number, &c.state)).collect::<Vec<_>>()
        );
    }
}

/// After a sweep or release: nothing left due (no pending transfers here, so nothing defers).
async fn assert_nothing_due(p: &Platform, step: &str) {
    let now_s = f_now_s(p);
    let due = p.store.balance_moves_due(now_s, 100).await.unwrap();
    assert!(due.is_empty(), "{step}: still due after release: {due:?}");
}

fn f_now_s(p: &Platform) -> i64 {
    p.clock.now_ms().div_euclid(1000)
}

async fn expect_refused_unchanged(p: &Platform, w: &World, before: Snapshot, step: &str) {
    let after = snapshot(p, w).await;
    assert_eq!(after, before, "{step}: a refused action changed something");
}

async fn step(f: &Fixture, rng: &mut Rng, w: &mut World, acc: &Accounts, n: usize) -> String {
    let p = &f.p;
    let r = rng.below(RESIDENTS);
    let cards = p.store.cards_of_resident(w.resident_ids[r]).await.unwrap();
    let roll = rng.below(100);
    match roll {
        // Apply for a card (refused while the resident has a live one).
        0..10 => {
            let what = format!("#{n} apply r{r}");
            let clerk = caller("clerk", Role::CounterClerk, None);
            let before = snapshot(p, w).await;
            match p
                .apply_for_card(&clerk, &w.residents[r], "ordinary", None)
                .await
            {
                Ok(v) => {
                    assert!(cards.iter().all(|c| !state_of(c).is_live()), "{what}");
                    assert_eq!(v.state, "applied");
                    w.count("apply ok");
                }
                Err(e) => {
                    assert!(matches!(e, PlatformError::Conflict(_)), "{what}: {e:?}");
                    assert!(cards.iter().any(|c| state_of(c).is_live()), "{what}: {e}");
                    expect_refused_unchanged(p, w, before, &what).await;
                    w.count("apply refused");
                }
            }
            what
        }
        // A life-cycle action on one of the resident's cards.
        10..55 => {
            // Mostly the resident's live card, sometimes any of their cards.
            let live = cards.iter().find(|c| state_of(c).is_live());
            let card = match live {
                Some(c) if rng.chance(80) => c.clone(),
                _ if cards.is_empty() => return format!("#{n} r{r} has no card"),
                _ => cards[rng.below(cards.len())].clone(),
            };
            let request = if rng.chance(90) {
                rng.pick(plausible(&card.state))
            } else {
                rng.pick(&ALL_REQUESTS)
            };
            let (mut who, mut why) = who_and_why(rng, request);
            if rng.chance(5) {
                why = rng.pick(&ALL_REASONS);
            }
            if rng.chance(3) {
                who = caller("dept", Role::DepartmentOfficer, Some(Source::CivilAffairs));
            }
            let what = format!(
                "#{n} {request:?} ({why:?} by {}) on {} r{r} in {}",
                who.role.as_str(),
                card.number,
                card.state
            );
            let before = snapshot(p, w).await;
            // A clerk's lost report and replacement are counter acts, journaled at the outlet.
            let result = match (request, who.role) {
                (CardRequest::ReportLost, Role::CounterClerk) => {
                    p.counter_report_lost(&w.desk, OUTLET, &card.number).await
                }
                (CardRequest::Replace, Role::CounterClerk) => p
                    .counter_replace(&w.desk, OUTLET, &card.number, why)
                    .await
                    .map(|r| r.card),
                _ => p.card_action(&who, &card.number, request, why).await,
            };
            match result {
                Ok(v) => {
                    assert_eq!(v.version, card.version + 1, "{what}");
                    assert_ne!(
                        (v.state.as_str(), v.version),
                        (card.state.as_str(), card.version)
                    );
                    w.count("action ok");
                    match request {
                        CardRequest::Replace => w.count("replace ok"),
                        CardRequest::Renew => w.count("renew ok"),
                        _ => {}
                    }
                }
                Err(e) => {
                    assert!(
                        matches!(e, PlatformError::Conflict(_) | PlatformError::Forbidden(_)),
                        "{what}: {e:?}"
                    );
                    expect_refused_unchanged(p, w, before, &what).await;
                    w.count("action refused");
                }
            }
            what
        }
        // A load: from the bank float onto an active card's chip, into its pending load, or
        // to the resident's online account.
        55..70 => {
            let fen = 100 * (1 + rng.below(50) as i64);
            let active: Vec<_> = cards.iter().filter(|c| c.state == "active").collect();
            let (target, kind, label) = match (active.first(), rng.below(4)) {
                (Some(c), 0 | 1) => (
                    AccountKey::epurse_shadow(&c.number),
                    TransferKind::Load,
                    "chip",
                ),
                (Some(c), 2) => (
                    AccountKey::epurse_pending_load(&c.number),
                    TransferKind::Load,
                    "pending",
                ),
                _ => (
                    AccountKey::citizen_online(w.resident_ids[r]),
                    TransferKind::TopUp,
                    "online",
                ),
            };
            let what = format!("#{n} load {fen} to r{r} {label}");
            let to = p.ledger_accounts(&admin(), &[target]).await.unwrap()[0].id;
            let key = w.key("load");
            p.transfer(
                &admin(),
                Transfer::simple(key, kind, "", acc.bank, to, Unit::Cny, Amount(fen)),
            )
            .await
            .unwrap();
            w.expected_fen[r] += fen;
            w.count("load");
            what
        }
        // A purchase the chip made, settled on whichever card made it (a replaced card in its
        // cooling-off too); sometimes more than the card holds, which is refused.
        70..85 => {
            let with_money: Vec<(String, String, i64)> = {
                let mut v = Vec::new();
                for c in &cards {
                    let b = balance(p, &AccountKey::epurse_shadow(&c.number)).await;
                    if b > 0 {
                        v.push((c.number.clone(), c.state.clone(), b));
                    }
                }
                v
            };
            // Late purchases of a replaced card come first when there are any.
            let replaced: Vec<_> = with_money.iter().filter(|c| c.1 == "replaced").collect();
            let Some((number, state, held)) = (match replaced.first() {
                Some(c) if rng.chance(60) => Some((*c).clone()),
                _ if with_money.is_empty() => None,
                _ => Some(with_money[rng.below(with_money.len())].clone()),
            }) else {
                return format!("#{n} r{r} has no card with money");
            };
            let fen = if rng.chance(15) {
                held + 1 + rng.below(500) as i64
            } else {
                1 + (rng.next() % held as u64) as i64
            };
            let what = format!("#{n} purchase {fen} of {held} on {number} ({state}) r{r}");
            let from = p
                .ledger_accounts(&admin(), &[AccountKey::epurse_shadow(&number)])
                .await
                .unwrap()[0]
                .id;
            let key = w.key("purchase");
            let before = snapshot(p, w).await;
            let t = Transfer::simple(
                key,
                TransferKind::Purchase,
                "",
                from,
                acc.merchant,
                Unit::Cny,
                Amount(fen),
            );
            match p.transfer(&admin(), t).await {
                Ok(_) => {
                    assert!(fen <= held, "{what}: more than the card holds went through");
                    w.expected_fen[r] -= fen;
                    w.count("purchase");
                    if state == "replaced" {
                        w.count("purchase on a replaced card");
                    }
                }
                Err(e) => {
                    assert!(fen > held, "{what}: {e:?}");
                    assert!(matches!(e, PlatformError::Conflict(_)), "{what}: {e:?}");
                    expect_refused_unchanged(p, w, before, &what).await;
                    w.count("purchase refused");
                }
            }
            what
        }
        // Time passes: an hour, a day, three days, or past the lost period and cooling-off.
        85..91 => {
            let ms = rng.pick(&[HOUR_MS, DAY_MS, 3 * DAY_MS, PAST_PERIODS_MS]);
            f.clock.advance_ms(ms);
            format!("#{n} advance {} h", ms / HOUR_MS)
        }
        // Years pass: to inside the renewal window of one of the resident's cards, or just
        // past its validity, so renewals and expiries happen too.
        91..92 => {
            let now = p.clock.now_ms();
            let Some(until_ms) = cards
                .iter()
                .filter_map(|c| c.valid_until_s.map(|v| v * 1000))
                .filter(|&v| v > now)
                .max()
            else {
                return format!("#{n} r{r} has no card to age");
            };
            let target = until_ms + rng.pick(&[-80 * DAY_MS, -30 * DAY_MS, -DAY_MS, HOUR_MS]);
            if target > now {
                f.clock.advance_ms(target - now);
            }
            w.count("years pass");
            format!(
                "#{n} to {} days before r{r}'s validity ends",
                (until_ms - target) / DAY_MS
            )
        }
        92..97 => {
            let what = format!("#{n} sweep");
            let r = p.sweep_cards().await.unwrap();
            assert_eq!(r.balances.deferred, 0, "{what}");
            assert_nothing_due(p, &what).await;
            if r.frozen > 0 {
                w.count("swept frozen");
            }
            if r.expired > 0 {
                w.count("swept expired");
            }
            if r.balances.moved_fen > 0 {
                w.count("release moved money");
            }
            // No lost report whose undo period is over is left unfrozen.
            for cs in all_cards(p, w).await {
                for c in cs {
                    if let CardState::ReportedLost { reported_at } = state_of(&c) {
                        assert!(
                            reported_at.0 + 7 * 86_400 > f_now_s(p),
                            "{what}: {} still reported lost",
                            c.number
                        );
                    }
                }
            }
            what
        }
        _ => {
            let what = format!("#{n} release");
            let r = p.release_balance_moves().await.unwrap();
            assert_eq!(r.deferred, 0, "{what}");
            assert_nothing_due(p, &what).await;
            if r.moved_fen > 0 {
                w.count("release moved money");
            }
            what
        }
    }
}

async fn random_lifecycles_keep_the_invariants(f: Fixture) {
    let seeds: Vec<u64> = match std::env::var("CITYCARD_LIFECYCLE_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => DEFAULT_SEEDS.to_vec(),
    };
    let steps = std::env::var("CITYCARD_LIFECYCLE_STEPS")
        .ok()
        .map(|s| s.parse().unwrap())
        .unwrap_or(DEFAULT_STEPS);
    let backend = f.backend();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut fixture = Some(f);
    for &seed in &seeds {
        let f = match fixture.take() {
            Some(f) => f,
            None => Fixture::new(backend).await,
        };
        for (k, v) in run(&f, seed, steps).await {
            *counts.entry(k).or_default() += v;
        }
    }
    // The default runs exercised what the test claims to.
    if seeds == DEFAULT_SEEDS && steps == DEFAULT_STEPS {
        for what in [
            "apply ok",
            "apply refused",
            "action ok",
            "action refused",
            "replace ok",
            "renew ok",
            "load",
            "purchase",
            "purchase refused",
            "purchase on a replaced card",
            "release moved money",
            "swept frozen",
            "swept expired",
        ] {
            assert!(
                counts.get(what).copied().unwrap_or(0) > 0,
                "no {what:?} in {counts:?}"
            );
        }
    }
}

/// One seeded run on `f`'s fresh database; what happened, counted.
async fn run(f: &Fixture, seed: u64, steps: usize) -> BTreeMap<&'static str, u64> {
    let started = std::time::Instant::now();
    let p = &f.p;
    let residents: Vec<String> = (0..RESIDENTS)
        .map(|i| id("410105", 1970 + i as i32, 2, 3, 60 + i as u16))
        .collect();
    let mut csv = String::from("id_number,name,phone,address,residency\n");
    for (i, r) in residents.iter().enumerate() {
        csv.push_str(&format!(
            "{r},王{},,,resident\n",
            ["一", "二", "三", "四"][i]
        ));
    }
    import(p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let mut resident_ids = Vec::new();
    for r in &residents {
        let v = p.resident_by_id_number(&admin(), r, false).await.unwrap();
        resident_ids.push(v.resident_id);
    }
    let rows = p
        .ledger_accounts(
            &admin(),
            &[
                AccountKey::new(
                    AccountKind::BankFloat,
                    Owner::Bank("ICBC".into()),
                    Unit::Cny,
                )
                .unwrap(),
                AccountKey::new(
                    AccountKind::MerchantPayable,
                    Owner::Merchant("metro".into()),
                    Unit::Cny,
                )
                .unwrap(),
            ],
        )
        .await
        .unwrap();
    let acc = Accounts {
        bank: rows[0].id,
        merchant: rows[1].id,
    };
    let pk = crypto::Sm2PublicKey::from_sec1(&p.deny_list_public_key()).unwrap();
    let (v0, full0) = p.deny_list_full().await.unwrap();
    let mut w = World {
        residents,
        resident_ids,
        expected_fen: vec![0; RESIDENTS],
        terminal: (v0, DenyList::decode(&full0, &pk).unwrap()),
        next_key: 0,
        counts: BTreeMap::new(),
        desk: p
            .ensure_outlet_with_clerk(&admin(), OUTLET, "rnd-clerk", "rnd-clerk-password-1")
            .await
            .unwrap(),
    };
    let mut rng = Rng(seed);
    check_invariants(p, &mut w, "start").await;
    for n in 0..steps {
        let what = step(f, &mut rng, &mut w, &acc, n).await;
        check_invariants(p, &mut w, &what).await;
    }

    // Past the last cooling-off: every move released, no card that stopped being live holds
    // money (it went to the successor or to the online account), and nothing more moves.
    // A sweep can start a new cooling-off (a freeze, then an expiry), so sweep until one
    // changes nothing.
    let mut rounds = 0;
    loop {
        f.clock.advance_ms(PAST_PERIODS_MS);
        let r = p.sweep_cards().await.unwrap();
        assert_eq!(r.balances.deferred, 0);
        if (r.frozen, r.expired, r.balances.released) == (0, 0, 0) {
            break;
        }
        rounds += 1;
        assert!(rounds < 5, "the sweeps do not settle: {r:?}");
    }
    assert_nothing_due(p, "final sweep").await;
    check_invariants(p, &mut w, "final sweep").await;
    for cs in all_cards(p, &w).await {
        for c in cs {
            if !state_of(&c).is_live() {
                let held = balance(p, &AccountKey::epurse_shadow(&c.number)).await
                    + balance(p, &AccountKey::epurse_pending_load(&c.number)).await;
                if held != 0 {
                    let events = p.store.card_events(&c.number).await.unwrap();
                    let mut ts = Vec::new();
                    let mut after = 0;
                    loop {
                        let page = p.store.ledger_transfers_page(after, 500).await.unwrap();
                        let k = page.len();
                        for t in page {
                            after = t.id;
                            ts.push(format!("{} {:?} {:?}", t.key, t.kind, t.postings));
                        }
                        if k < 500 {
                            break;
                        }
                    }
                    panic!(
                        "{} ({}) still holds {held}: events {events:#?}\ntransfers {ts:#?}\nfinal now {}",
                        c.number,
                        c.state,
                        f_now_s(p)
                    );
                }
            }
        }
    }
    assert_eq!(p.release_balance_moves().await.unwrap().released, 0);
    assert!(p.audit_verify().await.unwrap().is_ok());

    eprintln!(
        "{:?}: seed {seed:#x}, {steps} steps in {:.1?}: {:?}",
        f.backend(),
        started.elapsed(),
        w.counts
    );
    w.counts
}
