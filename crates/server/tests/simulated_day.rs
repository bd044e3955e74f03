//! A simulated day of the city's money (issue 5, "done when"), end to end on SQLite and
//! PostgreSQL. Two thousand cards go through the real issuance path (applications, a
//! production batch through the emulated bureau, hand-over at a counter); civil affairs pays a
//! benefit batch approved by a second officer; every holder loads the e-purse on the card
//! emulator with the platform as host (MAC1 checked, MAC2 issued, the TAC confirmed); the
//! chips make twenty thousand offline purchases at three merchants' terminals (real TACs),
//! uploaded over HTTP in uploads of two thousand with some records sent twice; citizens pay
//! online at a café and the water company, and some payments are refunded. After the cut-off
//! the window closes: its report is checked against the day's own figures, its settlement
//! file (pain.001) pays each merchant its net, and a camt.053 statement with three deliberate
//! differences (one amount changed, one instruction not booked, one unexplained debit) gives
//! exactly those three exceptions. Then every card's shadow equals its load minus its
//! purchases, the books check, and the Beancount export passes the real `bean-check`.

mod common;

use chip::fleet::Fleet;
use chip::host::HostError;
use chip::terminal::{self, LoadRequest as ChipLoad, PurchaseRequest};
use chip::{BcdDate, BcdTime, Card, Psam, TerminalId};
use crypto::{Algorithm, MasterKeys};
use ledger::AccountKey;
use platform::Caller;
use platform::money::{LoadRequest, Payer, PaymentRequest};
use platform::operators::OperatorRequest;
use platform::testing::Backend;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use store::Role;

/// Cards issued, loaded and used.
const CARDS: usize = 2_000;
/// Residents in the base database: enough adults for [`CARDS`].
const RESIDENTS: u64 = 3_200;
/// Offline purchases per card; one round is one upload of [`CARDS`] records.
const ROUNDS: usize = 10;
/// Loaded onto every e-purse from the online account.
const LOAD_FEN: u32 = 5_000;
/// The benefit each holder receives in the morning.
const BENEFIT_FEN: i64 = 20_000;
/// Online payments: to the café (shop), and to the water company (utility).
const PAYMENTS: usize = 400;
/// Refunds of café payments.
const REFUNDS: usize = 25;
/// Workers for the per-card steps (cards, hand-overs, loads).
const WORKERS: usize = 12;
const WINDOW: &str = "2026-11-26";
const HOUR_MS: i64 = 3_600_000;

/// The terminal merchants and their terminals; round `r` of purchases is made at
/// `TERMINAL_MERCHANTS[r % 3]`. Settlement accounts are 14 digits.
const TERMINAL_MERCHANTS: [(&str, &str, &str, &str, [u8; 6]); 3] = [
    ("metro", "郑州地铁", "transit", "41050100000001", [0x31; 6]),
    ("bus", "郑州公交", "transit", "41050100000002", [0x32; 6]),
    ("market", "丹尼斯超市", "shop", "41050100000003", [0x33; 6]),
];
const ONLINE_MERCHANTS: [(&str, &str, &str, &str); 2] = [
    ("cafe", "二七咖啡", "shop", "41050100000077"),
    ("water", "郑州自来水", "utility", "41050100000009"),
];

/// A report line: merchant, category, count, gross, fee, net.
type Line = (String, String, i64, i64, i64, i64);
/// A reconciliation exception: kind, end-to-end id, sent and booked fen.
type Exception = (String, Option<String>, Option<i64>, Option<i64>);

fn fee_bp(category: &str) -> i64 {
    match category {
        "transit" => 30,
        "shop" => 60,
        "utility" => 10,
        other => panic!("no rate for {other}"),
    }
}

/// The city's fee for one payment: the rate, rounded half up to the fen.
fn fee(category: &str, amount_fen: i64) -> i64 {
    (amount_fen * fee_bp(category) + 5_000) / 10_000
}

/// The amount of card `c`'s purchase in round `r`: 1.00 to 3.99, at most 39.90 a card.
fn purchase_fen(c: usize, r: usize) -> u32 {
    100 + ((c * 37 + r * 101) % 300) as u32
}

fn record(r: &chip::host::UploadRecord) -> serde_json::Value {
    let raw = r.to_raw();
    json!({
        "card_number": raw.card_number,
        "algorithm_id": raw.algorithm_id,
        "key_version": raw.key_version,
        "offline_counter": raw.offline_counter,
        "amount_fen": raw.amount_fen,
        "tx_type": raw.tx_type,
        "terminal_id": raw.terminal_id,
        "terminal_serial": raw.terminal_serial,
        "date": raw.date,
        "time": raw.time,
        "balance_before_fen": raw.balance_before_fen,
        "tac": raw.tac,
    })
}

struct Timer(Instant, Instant);

impl Timer {
    fn lap(&mut self, backend: Backend, what: &str) {
        let now = Instant::now();
        eprintln!(
            "simulated day {backend:?}: {what} in {:.1} s ({:.1} s so far)",
            (now - self.1).as_secs_f64(),
            (now - self.0).as_secs_f64()
        );
        self.1 = now;
    }
}

fn bean_check(path: &std::path::Path) {
    let out = match std::process::Command::new("bean-check").arg(path).output() {
        Ok(o) => o,
        Err(e) => {
            panic!("bean-check could not run ({e}): install beancount: pip install beancount")
        }
    };
    assert!(
        out.status.success(),
        "bean-check refused the export:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn a_simulated_day(backend: Backend) {
    let mut timer = Timer(Instant::now(), Instant::now());
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let sys = Caller::cli("test");
    platform::testing::install_test_master_keys(&app.tp).unwrap();
    let officer = app.token(Role::ClearingOfficer).await;
    for (code, name, category, account, _) in TERMINAL_MERCHANTS {
        p.merchant_create(&sys, code, name, category, account)
            .await
            .unwrap();
    }
    for (code, name, category, account) in ONLINE_MERCHANTS {
        p.merchant_create(&sys, code, name, category, account)
            .await
            .unwrap();
    }

    // The resident base: the fixture's ten and more, from the police feed (seed 1).
    let today = p.clock.today();
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 10..RESIDENTS, 1, today, 0).unwrap();
    p.import_residents(
        &sys,
        resident::Source::Police,
        "simulated-day",
        "simulated-day-feed".into(),
        Box::new(std::io::Cursor::new(csv)),
        Arc::new(|_| {}),
    )
    .await
    .unwrap();
    let holders: Vec<String> = (0..RESIDENTS)
        .filter_map(|i| {
            let row = platform::demo::resident_row(i, 1, today, 0);
            let id = resident::ResidentId::parse(&row[0], today).unwrap();
            (row[4] == "resident" && id.age_on(today) >= platform::cards::ADULT_AGE)
                .then(|| row[0].clone())
        })
        .take(CARDS)
        .collect();
    assert_eq!(holders.len(), CARDS, "enough adults in the base");
    timer.lap(backend, "residents imported");

    // Issuance: applications approved at a counter, one production batch through the emulated
    // bureau, hand-over (activation) at the test outlet.
    let numbers: Vec<String> = {
        let mut tasks = tokio::task::JoinSet::new();
        for (w, chunk) in holders.chunks(CARDS.div_ceil(WORKERS)).enumerate() {
            let (p, chunk) = (p.clone(), chunk.to_vec());
            tasks.spawn(async move {
                let clerk = common::clerk();
                let mut out = Vec::new();
                for id in chunk {
                    let n = p
                        .apply_for_card(&clerk, &id, "ordinary", None)
                        .await
                        .unwrap()
                        .number;
                    p.card_action(
                        &clerk,
                        &n,
                        platform::cards::CardRequest::Approve,
                        platform::cards::parse_reason("routine").unwrap(),
                    )
                    .await
                    .unwrap();
                    out.push((id, n));
                }
                (w, out)
            });
        }
        let mut by_worker = tasks.join_all().await;
        by_worker.sort_by_key(|(w, _)| *w);
        let pairs: Vec<(String, String)> = by_worker.into_iter().flat_map(|(_, v)| v).collect();
        assert_eq!(
            pairs.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            holders.iter().collect::<Vec<_>>()
        );
        pairs.into_iter().map(|(_, n)| n).collect()
    };
    timer.lap(backend, "2,000 applications approved");
    let desk = platform::testing::issue_cards(p, &[]).await.unwrap();
    timer.lap(backend, "production batch through the emulated bureau");
    {
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in numbers.chunks(CARDS.div_ceil(WORKERS)) {
            let (p, desk, chunk) = (p.clone(), desk.clone(), chunk.to_vec());
            tasks.spawn(async move {
                for n in chunk {
                    let v = p
                        .counter_hand_over(&desk, platform::testing::TEST_OUTLET, &n)
                        .await
                        .unwrap();
                    assert_eq!(v.state, "active", "{n}");
                }
            });
        }
        tasks.join_all().await;
    }
    timer.lap(backend, "2,000 cards handed over");

    // The chips: the card emulator's fleet personalized with the development key set, whose
    // card numbers are the platform's (the card sequence starts at 1).
    let mut sorted = numbers.clone();
    sorted.sort();
    let first = chip::CardNumber::parse(&sorted[0]).unwrap();
    let fleet = Fleet::new(1, CARDS as u32, Algorithm::Tdes, TerminalId([0x30; 6]));
    assert_eq!(fleet.number(0), first, "the card sequence starts at 1");
    let fleet_numbers: Vec<String> = (0..CARDS).map(|c| fleet.number(c).to_string()).collect();
    assert_eq!(fleet_numbers, sorted, "the fleet holds the issued cards");
    let mut chips: Vec<Card> = fleet.into_cards();
    // `cards[c]` is card `c` of the fleet, held by `holder_of[c]`.
    let holder_of: Vec<String> = {
        let by_number: BTreeMap<&String, &String> = numbers.iter().zip(&holders).collect();
        fleet_numbers.iter().map(|n| by_number[n].clone()).collect()
    };
    timer.lap(backend, "chips personalized");

    // Morning: civil affairs pays a benefit to every holder, submitted by one officer and
    // approved by another (four eyes); one line names a benefit that does not exist.
    for name in ["ca-1", "ca-2"] {
        p.create_operator(
            &sys,
            OperatorRequest {
                username: name.into(),
                display_name: name.into(),
                password: common::PASSWORD.into(),
                role: Role::DepartmentOfficer,
                department: Some(resident::Source::CivilAffairs),
            },
        )
        .await
        .unwrap();
    }
    let benefits = CARDS as i64 * BENEFIT_FEN;
    let r = app
        .post_json(
            "/api/v1/departments/civil_affairs/funding",
            Some(&officer),
            json!({"bank": "ICBC", "amount_fen": benefits, "key": "fund-2026-11"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut file = String::from("id_number,amount,benefit\n");
    let kinds = [
        "minimum_living",
        "special_hardship",
        "disability",
        "temporary_relief",
    ];
    for (c, id) in holder_of.iter().enumerate() {
        file.push_str(&format!(
            "{id},{}.00,{}\n",
            BENEFIT_FEN / 100,
            kinds[c % kinds.len()]
        ));
    }
    file.push_str(&format!("{},1.00,lottery\n", holder_of[0]));
    let ca1 = p.operator_caller("ca-1", "test").await.unwrap();
    let ca2 = p.operator_caller("ca-2", "test").await.unwrap();
    let (batch, created) = p
        .submit_disbursement(&ca1, "2026-11 最低生活保障金", file.as_bytes())
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (batch.pending_lines, batch.rejected_lines),
        (CARDS as i64, 1)
    );
    assert!(
        p.decide_disbursement(&ca1, batch.id, true).await.is_err(),
        "the submitter may not approve"
    );
    let paid = p.decide_disbursement(&ca2, batch.id, true).await.unwrap();
    assert_eq!(
        (paid.state.as_str(), paid.paid_lines, paid.paid_fen),
        ("paid", CARDS as i64, benefits)
    );
    timer.lap(backend, "benefit batch paid");

    // Loads: each holder moves 50.00 onto the card, the platform the host (MAC1, MAC2, TAC).
    let load_date = BcdDate::new(2026, 11, 26).unwrap();
    let load_time = BcdTime::new(9, 0, 0).unwrap();
    {
        let handle = tokio::runtime::Handle::current();
        let mut work: Vec<Vec<(usize, Card)>> = (0..WORKERS).map(|_| Vec::new()).collect();
        for (c, chip) in chips.drain(..).enumerate() {
            work[c % WORKERS].push((c, chip));
        }
        let mut tasks = Vec::new();
        for chunk in work {
            let (p, handle, numbers) = (p.clone(), handle.clone(), fleet_numbers.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                let clerk = common::clerk();
                let mut out = Vec::new();
                for (c, mut chip) in chunk {
                    let number = &numbers[c];
                    let mut load_id = 0;
                    let outcome = terminal::load(
                        &mut chip,
                        &ChipLoad {
                            amount_fen: LOAD_FEN,
                            terminal_id: TerminalId([0x11, 0x22, 0x33, 0x44, 0x55, 0x66]),
                            date: load_date,
                            time: load_time,
                        },
                        &mut |init| {
                            let mut r = init.balance_before_fen.to_be_bytes().to_vec();
                            r.extend_from_slice(&init.online_counter.to_be_bytes());
                            r.extend_from_slice(&[init.key_version, init.algorithm.id()]);
                            r.extend_from_slice(&init.random);
                            r.extend_from_slice(&init.mac1);
                            let v = handle
                                .block_on(p.load_authorize(
                                    &clerk,
                                    &LoadRequest {
                                        key: format!("load-{number}"),
                                        card_number: number.clone(),
                                        amount_fen: i64::from(LOAD_FEN),
                                        initialize_response: r,
                                        terminal_id: "112233445566".into(),
                                        date: "20261126".into(),
                                        time: "090000".into(),
                                    },
                                ))
                                .unwrap_or_else(|e| {
                                    panic!("authorizing the load of {number}: {e}")
                                });
                            load_id = v.id;
                            let mac2 = hex::decode(v.mac2.as_deref().unwrap_or_default())
                                .map_err(|_| HostError::Mac1Invalid)?;
                            mac2.try_into().map_err(|_| HostError::Mac1Invalid)
                        },
                    )
                    .unwrap_or_else(|e| panic!("load of {number}: {e}"));
                    assert_eq!(outcome.balance_after_fen, LOAD_FEN);
                    let v = handle
                        .block_on(p.load_confirm(&clerk, load_id, outcome.tac))
                        .unwrap();
                    assert_eq!(v.state, "completed", "{number}");
                    out.push((c, chip));
                }
                out
            }));
        }
        let mut back = Vec::new();
        for t in tasks {
            back.extend(t.await.unwrap());
        }
        back.sort_by_key(|(c, _)| *c);
        chips = back.into_iter().map(|(_, chip)| chip).collect();
    }
    assert_eq!(chips.len(), CARDS);
    timer.lap(backend, "2,000 loads (MAC1, MAC2, TAC)");

    // The day's offline purchases: round r at merchant r % 3, every card once per round, made
    // on the chips at the merchant's terminal (PSAM), in two threads of half the cards each.
    let date = BcdDate::new(2026, 11, 26).unwrap();
    let (left, right) = chips.split_at_mut(CARDS / 2);
    let make = |cards: &mut [Card], offset: usize, psam_id: u8| {
        let masters = MasterKeys::test_set();
        let mut psams: Vec<Psam> = TERMINAL_MERCHANTS
            .iter()
            .map(|m| {
                let mut t = m.4;
                t[5] = psam_id;
                Psam::new(TerminalId(t), masters.purchase.clone())
            })
            .collect();
        let mut rounds: Vec<Vec<serde_json::Value>> = vec![Vec::new(); ROUNDS];
        for (r, round) in rounds.iter_mut().enumerate() {
            let time = BcdTime::new(10 + (r as u8), 0, 0).unwrap();
            for (k, chip) in cards.iter_mut().enumerate() {
                let c = offset + k;
                let o = terminal::purchase(
                    chip,
                    &mut psams[r % 3],
                    &PurchaseRequest {
                        amount_fen: purchase_fen(c, r),
                        date,
                        time,
                    },
                    &|_| false,
                )
                .unwrap();
                round.push(record(&o.record));
            }
        }
        rounds
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| make(left, 0, 1));
        let b = s.spawn(|| make(right, CARDS / 2, 2));
        (a.join().unwrap(), b.join().unwrap())
    });
    let rounds: Vec<Vec<serde_json::Value>> = a
        .into_iter()
        .zip(b)
        .map(|(mut x, y)| {
            x.extend(y);
            x
        })
        .collect();
    timer.lap(backend, "20,000 purchases made on the chips");

    // Uploads of 2,000 over HTTP, in the order made; the first upload of the metro goes again
    // in part with the next one of the metro (records a terminal re-sent), and whole at the end.
    let upload = |merchant: &str, records: Vec<serde_json::Value>| {
        let app = &app;
        let officer = officer.clone();
        let body = json!({"merchant": merchant, "records": records});
        async move {
            let r = app
                .post_json("/api/v1/purchases", Some(&officer), body)
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            let v = r.json();
            (
                v["posted"].as_u64().unwrap(),
                v["duplicate"].as_u64().unwrap(),
                v["bad_tac"].as_u64().unwrap() + v["malformed"].as_u64().unwrap(),
                v["flagged"].as_u64().unwrap(),
            )
        }
    };
    let resent = 300;
    for (r, records) in rounds.iter().enumerate() {
        let mut body = records.clone();
        if r == 3 {
            body.extend(rounds[0][..resent].iter().cloned());
        }
        let got = upload(TERMINAL_MERCHANTS[r % 3].0, body).await;
        let dup = if r == 3 { resent as u64 } else { 0 };
        assert_eq!(got, (CARDS as u64, dup, 0, 0), "round {r}");
    }
    let got = upload("metro", rounds[0].clone()).await;
    assert_eq!(got, (0, CARDS as u64, 0, 0), "the first upload again");
    timer.lap(backend, "20,000 purchases uploaded");

    // Online payments from the holders' accounts (what the benefit left after the load), and
    // refunds of some of the café's.
    let payments: Vec<(usize, &str, i64)> = (0..PAYMENTS)
        .map(|k| {
            let merchant = if k % 4 == 3 { "water" } else { "cafe" };
            (k, merchant, 500 + ((k * 733) % 5_000) as i64)
        })
        .collect();
    let paid_ids: Vec<i64> = {
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in payments.chunks(PAYMENTS.div_ceil(WORKERS)) {
            let p = p.clone();
            let chunk: Vec<(usize, String, i64, String)> = chunk
                .iter()
                .map(|&(k, m, fen)| (k, m.to_string(), fen, holder_of[k % CARDS].clone()))
                .collect();
            tasks.spawn(async move {
                let sys = Caller::cli("test");
                let mut out = Vec::new();
                for (k, merchant, fen, payer) in chunk {
                    let v = p
                        .pay(
                            &sys,
                            &PaymentRequest {
                                key: format!("pay-{k}"),
                                payer: Payer::IdNumber(payer),
                                merchant,
                                amount_fen: fen,
                                reference: format!("ORDER-{k}"),
                            },
                        )
                        .await
                        .unwrap();
                    out.push((k, v.id));
                }
                out
            });
        }
        let mut all: Vec<(usize, i64)> = tasks.join_all().await.into_iter().flatten().collect();
        all.sort();
        all.into_iter().map(|(_, id)| id).collect()
    };
    let refunds: Vec<(usize, i64)> = payments
        .iter()
        .filter(|(_, m, _)| *m == "cafe")
        .take(REFUNDS)
        .map(|&(k, _, fen)| (k, fen / 2))
        .collect();
    for &(k, fen) in &refunds {
        p.refund(&sys, paid_ids[k], &format!("refund-{k}"), fen, "returned")
            .await
            .unwrap();
    }
    // A refund beyond what is left of the payment is refused.
    let (k, fen) = refunds[0];
    assert!(
        p.refund(&sys, paid_ids[k], "refund-too-much", fen + 1_000_000, "x")
            .await
            .is_err()
    );
    timer.lap(backend, "online payments and refunds");

    // The day's own figures, per merchant: (count, gross, fee).
    let mut expect: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
    let category = |m: &str| {
        TERMINAL_MERCHANTS
            .iter()
            .map(|t| (t.0, t.2))
            .chain(ONLINE_MERCHANTS.iter().map(|o| (o.0, o.2)))
            .find(|(code, _)| *code == m)
            .unwrap()
            .1
    };
    let mut spent = vec![0i64; CARDS];
    for r in 0..ROUNDS {
        let m = TERMINAL_MERCHANTS[r % 3].0;
        for (c, s) in spent.iter_mut().enumerate() {
            let fen = i64::from(purchase_fen(c, r));
            *s += fen;
            let e = expect.entry(m).or_default();
            *e = (e.0 + 1, e.1 + fen, e.2 + fee(category(m), fen));
        }
    }
    for &(_, m, fen) in &payments {
        let e = expect.entry(m).or_default();
        *e = (e.0 + 1, e.1 + fen, e.2 + fee(category(m), fen));
    }
    for &(_, fen) in &refunds {
        let e = expect.entry("cafe").or_default();
        *e = (e.0 + 1, e.1 - fen, e.2);
    }
    let purchases_fen: i64 = spent.iter().sum();
    let payments_fen: i64 = payments.iter().map(|p| p.2).sum();
    let refunds_fen: i64 = refunds.iter().map(|r| r.1).sum();

    // The window is still open; after the cut-off it closes.
    let close = format!("/api/v1/clearing/windows/{WINDOW}/close");
    let r = app.send("POST", &close, Some(&officer), None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    app.tp.clock.advance_ms(12 * HOUR_MS);
    let r = app.send("POST", &close, Some(&officer), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let report = r.json();
    timer.lap(backend, "window closed");
    let lines: Vec<Line> = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["merchant"].as_str().unwrap().to_string(),
                l["category"].as_str().unwrap().to_string(),
                l["count"].as_i64().unwrap(),
                l["gross_fen"].as_i64().unwrap(),
                l["fee_fen"].as_i64().unwrap(),
                l["net_fen"].as_i64().unwrap(),
            )
        })
        .collect();
    let wanted: Vec<Line> = expect
        .iter()
        .map(|(m, &(n, gross, fee))| {
            (
                m.to_string(),
                category(m).to_string(),
                n,
                gross,
                fee,
                gross - fee,
            )
        })
        .collect();
    assert_eq!(lines, wanted);
    assert_eq!(
        report["gross_fen"].as_i64().unwrap(),
        purchases_fen + payments_fen - refunds_fen,
        "gross = purchases + payments - refunds"
    );
    let net = report["net_fen"].as_i64().unwrap();
    assert_eq!(
        net,
        report["gross_fen"].as_i64().unwrap() - report["fee_fen"].as_i64().unwrap()
    );
    let again = app.send("POST", &close, Some(&officer), None).await.json();
    assert_eq!(again["digest"], report["digest"], "closed once");

    // The settlement file: each merchant its net, the total the report's net.
    let xml = app
        .get(
            &format!("/api/v1/clearing/windows/{WINDOW}/settlement?execution_date=2026-11-27"),
            Some(&officer),
        )
        .await;
    assert_eq!(xml.status, 200, "{}", xml.body);
    let doc = clearing::pain001::parse(&xml.body).unwrap();
    assert_eq!(doc.instructions.len(), expect.len());
    assert_eq!(
        doc.instructions.iter().map(|i| i.amount_fen).sum::<i64>(),
        net,
        "the settlement total is the report's net"
    );
    for i in &doc.instructions {
        let (code, ..) = TERMINAL_MERCHANTS
            .iter()
            .map(|t| (t.0, t.3))
            .chain(ONLINE_MERCHANTS.iter().map(|o| (o.0, o.3)))
            .find(|(_, account)| *account == i.creditor_account)
            .unwrap();
        let (_, gross, fee) = expect[code];
        assert_eq!(i.amount_fen, gross - fee, "{code}");
    }

    // The bank's statement: the first transfer booked 1.00 short, the second not booked, and a
    // debit nobody asked for.
    use clearing::camt053::{Direction, Entry, Statement};
    let day = time::macros::date!(2026 - 11 - 27);
    let mut entries: Vec<Entry> = doc
        .instructions
        .iter()
        .enumerate()
        .filter(|(n, _)| *n != 1)
        .map(|(n, i)| Entry {
            reference: format!("BK{n:04}"),
            amount_fen: if n == 0 {
                i.amount_fen - 100
            } else {
                i.amount_fen
            },
            direction: Direction::Debit,
            booked: day,
            end_to_end_id: Some(i.end_to_end_id.clone()),
        })
        .collect();
    entries.push(Entry {
        reference: "BK9999".into(),
        amount_fen: 2_500,
        direction: Direction::Debit,
        booked: day,
        end_to_end_id: None,
    });
    let statement = Statement {
        id: "STMT-DAY-20261127".into(),
        account: "1702020109000012345".into(),
        entries,
    }
    .to_xml("2026-11-27T18:00:00+08:00")
    .unwrap();
    let r = app
        .send(
            "POST",
            "/api/v1/clearing/statements",
            Some(&officer),
            Some(("application/xml", statement.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let n = doc.instructions.len() as i64;
    assert_eq!(
        (v["entries"].as_i64(), v["matched"].as_i64()),
        (Some(n), Some(n - 2)),
        "{v}"
    );
    let mut found: Vec<Exception> = v["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["end_to_end_id"].as_str().map(str::to_string),
                e["sent_fen"].as_i64(),
                e["booked_fen"].as_i64(),
            )
        })
        .collect();
    found.sort();
    let (i0, i1) = (&doc.instructions[0], &doc.instructions[1]);
    assert_eq!(
        found,
        vec![
            (
                "amount_mismatch".into(),
                Some(i0.end_to_end_id.clone()),
                Some(i0.amount_fen),
                Some(i0.amount_fen - 100)
            ),
            (
                "missing".into(),
                Some(i1.end_to_end_id.clone()),
                Some(i1.amount_fen),
                None
            ),
            ("unexpected".into(), None, None, Some(2_500)),
        ]
    );
    timer.lap(backend, "settlement and reconciliation");

    // Every card's shadow is its load less its purchases; nothing is owed to a chip.
    for (c, number) in fleet_numbers.iter().enumerate() {
        let shadow = p
            .store
            .ledger_account(&AccountKey::epurse_shadow(number))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            shadow.balance,
            i64::from(LOAD_FEN) - spent[c],
            "card {number}"
        );
    }
    // The holders' online accounts: the benefit, less the load and what they paid online,
    // plus what was refunded (payment k was paid by holder k); and the benefit as received.
    for (k, holder) in holder_of.iter().enumerate().take(60) {
        let paid: i64 = payments.iter().filter(|x| x.0 == k).map(|x| x.2).sum();
        let back: i64 = refunds.iter().filter(|x| x.0 == k).map(|x| x.1).sum();
        let resident = p.resident_id_of(holder).await.unwrap();
        let online = p
            .store
            .ledger_account(&AccountKey::citizen_online(resident))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (online.balance, online.reserved),
            (BENEFIT_FEN - i64::from(LOAD_FEN) - paid + back, 0),
            "holder {k}"
        );
    }
    let received = p.resident_disbursements(&sys, &holder_of[1]).await.unwrap();
    assert_eq!(
        received
            .iter()
            .map(|r| (r.benefit.as_str(), r.amount_fen, r.outcome.as_str()))
            .collect::<Vec<_>>(),
        vec![("special_hardship", BENEFIT_FEN, "paid")]
    );
    let b = p.card_balances(&sys, &fleet_numbers[7]).await.unwrap();
    assert_eq!(
        (b.epurse_fen, b.pending_load_fen),
        (i64::from(LOAD_FEN) - spent[7], 0)
    );

    // The books: every balance from its postings, every entry balanced, and the export
    // accepted by Beancount's own checker.
    let check = p.ledger_check().await.unwrap();
    assert_eq!(check.mismatch, None);
    let mut out = Vec::new();
    p.ledger_export_beancount(&mut out).await.unwrap();
    let path = app.tp.dir.path().join("day.beancount");
    std::fs::write(&path, &out).unwrap();
    bean_check(&path);
    timer.lap(backend, "books checked (ledger check, bean-check)");
}

both_backends!(a_simulated_day);
