//! `citycard bench production`: personalization data for a batch of N cards (issue 4 asks
//! for 100,000 at ≥ 2,000 cards/s including key diversification and wrapping), measured
//! through the platform — `create_batch` (every card through the state machine into
//! `in_production`, one transaction with its events and audit entries) and `export_batch`
//! (read the batch, unseal the printed names, diversify DPK/DLK/DTK in the master-key store,
//! wrap them under the transport key, write the file) — beside the pure library's
//! `write_batch` over the same cards in memory, in the same run. The bureau's result import is
//! timed too.
//!
//! Set-up, not timed: residents imported through the platform, then one approved card per
//! resident inserted with plain SQL (applying and approving 100,000 cards one by one through
//! the API would measure something else).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chip::{BcdDate, CardNumber, CardType};
use crypto::{Algorithm, Key16};
use issuance::production::{BatchHeader, BatchId, BureauConfig, CardRecord, emulate_bureau};
use keys::master::{FileMasterKeyStore, KeyComponent, KeyRef, MasterKeyStore, MasterPurpose};
use platform::clock::SystemClock;
use platform::{Caller, KeySource, StorageTarget};

use crate::bench::scratch;
use crate::card::AlgArg;
use crate::config::Config;

const COMPONENT_A: &str = "0123456789ABCDEFFEDCBA9876543210";
const COMPONENT_B: &str = "00112233445566778899AABBCCDDEEFF";

fn transport_clear() -> Key16 {
    let a = Key16::from_hex(COMPONENT_A).expect("hex");
    let b = Key16::from_hex(COMPONENT_B).expect("hex");
    let mut k = [0u8; 16];
    for (i, o) in k.iter_mut().enumerate() {
        *o = a.expose()[i] ^ b.expose()[i];
    }
    Key16::from_bytes(k)
}

fn master_store(dir: &std::path::Path) -> anyhow::Result<FileMasterKeyStore> {
    let store = FileMasterKeyStore::create(&dir.join("master-keys.json"), b"bench")?;
    store.load_test_key_set(keys::master::APP_TRANSIT)?;
    // Cards leave production ready for post-issuance scripts: DAMKs of CITY and HEALTH too.
    for app in ["city", "health"] {
        store.load_test_maintenance_key(app)?;
    }
    let components = [COMPONENT_A, COMPONENT_B]
        .iter()
        .enumerate()
        .map(|(i, hex)| {
            let kcv = Key16::from_hex(hex)?.kcv(Algorithm::Tdes);
            Ok(KeyComponent::parse(
                i + 1,
                hex,
                &hex::encode_upper(kcv),
                Algorithm::Tdes,
            )?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    store.import_components(
        &KeyRef::transit(MasterPurpose::Transport, 1),
        &components,
        Algorithm::Tdes,
        None,
    )?;
    Ok(store)
}

/// One approved card per resident (the first `n` by id), numbers from sequence 1.
async fn seed_cards(target: &StorageTarget, n: u32) -> anyhow::Result<u32> {
    let state_json = serde_json::to_string(&issuance::CardState::Approved)?;
    const CHUNK: usize = 1_000;
    match target {
        StorageTarget::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
            let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id LIMIT ?")
                .bind(i64::from(n))
                .fetch_all(&pool)
                .await?;
            for (c, chunk) in ids.chunks(CHUNK).enumerate() {
                let sql = format!(
                    "INSERT INTO cards (number, resident_id, state, state_json, card_type, version, \
                     created_ms, updated_ms) VALUES {}",
                    vec!["(?, ?, 'approved', ?, 'ordinary', 1, 0, 0)"; chunk.len()].join(", ")
                );
                let mut q = sqlx::query(&sql);
                for (i, id) in chunk.iter().enumerate() {
                    let seq = (c * CHUNK + i + 1) as u32;
                    q = q
                        .bind(CardNumber::from_sequence(seq)?.to_string())
                        .bind(id)
                        .bind(&state_json);
                }
                q.execute(&pool).await?;
            }
            sqlx::query("UPDATE card_sequence SET next = ? WHERE id = 1")
                .bind(ids.len() as i64 + 1)
                .execute(&pool)
                .await?;
            Ok(ids.len() as u32)
        }
        StorageTarget::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await?;
            let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id LIMIT $1")
                .bind(i64::from(n))
                .fetch_all(&pool)
                .await?;
            let numbers = (1..=ids.len() as u32)
                .map(|s| CardNumber::from_sequence(s).map(|c| c.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            sqlx::query(
                "INSERT INTO cards (number, resident_id, state, state_json, card_type, version, \
                 created_ms, updated_ms) SELECT u.number, u.id, 'approved', $3, 'ordinary', 1, 0, 0 \
                 FROM UNNEST($1::text[], $2::bigint[]) AS u(number, id)",
            )
            .bind(&numbers)
            .bind(&ids)
            .bind(&state_json)
            .execute(&pool)
            .await?;
            sqlx::query("UPDATE card_sequence SET next = $1 WHERE id = 1")
                .bind(ids.len() as i64 + 1)
                .execute(&pool)
                .await?;
            Ok(ids.len() as u32)
        }
    }
}

pub async fn run(cards: u32, alg: AlgArg, cfg: &Config) -> anyhow::Result<()> {
    let s = scratch(cfg).await?;
    let backend = match &s.target {
        StorageTarget::Sqlite(_) => "sqlite",
        StorageTarget::Postgres(_) => "postgres",
    };
    let algorithm: Algorithm = alg.into();
    let profile = issuance::production::profile_name(algorithm);
    eprintln!("bench production on {backend}: {cards} cards, {profile}");

    // Set-up: residents through the platform, approved cards by plain SQL.
    let p = platform::open::open_platform(
        &s.target,
        &s._dir.path().join("keys"),
        &KeySource::Passphrase("bench".into()),
        false,
        Arc::new(SystemClock),
    )
    .await?;
    let keys = Arc::new(master_store(s._dir.path())?);
    let p = p.with_master_keys(keys.clone());
    let today = platform::clock::Clock::today(&SystemClock);
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 0..u64::from(cards), 11, today, 0)?;
    let pb = crate::bar(csv.len() as u64, "residents");
    let pb2 = pb.clone();
    p.import_residents(
        &Caller::cli("bench"),
        resident::Source::Police,
        "bench",
        "bench".into(),
        Box::new(std::io::Cursor::new(csv)),
        Arc::new(move |b| pb2.set_position(b)),
    )
    .await?;
    pb.finish_and_clear();
    let seeded = seed_cards(&s.target, cards).await?;
    eprintln!("{seeded} approved cards seeded");

    // Baseline: the pure library over the same cards, in memory, same key store.
    let start_date = BcdDate::new(today.year() as u16, u8::from(today.month()), today.day())?;
    let records: Vec<CardRecord> = (1..=seeded)
        .map(|seq| {
            Ok(CardRecord {
                card_number: CardNumber::from_sequence(seq)?,
                card_type: CardType::Ordinary,
                holder_name: format!("张三{}", seq % 1000),
                id_number: format!("410105198005{seq:06}"),
                start_date,
                expiry_date: start_date.plus_years(10)?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let header = BatchHeader {
        batch_id: BatchId::parse("BASELINE")?,
        card_count: seeded,
        key_version: 1,
        transport: KeyRef::transit(MasterPurpose::Transport, 1),
        algorithm,
        maintained: vec!["city".into(), "health".into()],
    };
    let t = Instant::now();
    let mut sink = Vec::with_capacity(seeded as usize * 220);
    issuance::production::write_batch(&mut sink, &header, records.into_iter(), &*keys)?;
    let baseline_s = t.elapsed().as_secs_f64();

    // The platform path.
    let admin = Caller::cli("bench");
    let t = Instant::now();
    let created = p.create_batch(&admin, seeded, profile).await?;
    let create_s = t.elapsed().as_secs_f64();
    let n = created.batch.card_count as f64;
    anyhow::ensure!(
        created.batch.card_count as u32 + created.skipped_unprintable == seeded,
        "batch holds {} of {seeded} cards",
        created.batch.card_count
    );
    let t = Instant::now();
    let file = p.export_batch(&admin, &created.batch.id).await?;
    let export_s = t.elapsed().as_secs_f64();

    // The bureau (not timed), then the import of its results (timed).
    let config = BureauConfig {
        transport_key: transport_clear(),
        serial_first: 1,
        initial_pin: "123456".into(),
        fail: Vec::new(),
    };
    let pb = crate::bar(0, "bureau");
    pb.set_message("emulated bureau");
    let mut results = Vec::new();
    emulate_bureau(file.bytes.as_slice(), &config, &mut results).context("emulated bureau")?;
    pb.finish_and_clear();
    let t = Instant::now();
    let report = p
        .import_results(&admin, &created.batch.id, &results)
        .await?;
    let import_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(report.produced as f64 == n, "{} produced", report.produced);

    if let Some((url, schema)) = &s.pg_cleanup {
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&pool)
            .await?;
    }
    let rate = |secs: f64| n / secs;
    println!("| benchmark ({backend}, {profile}, {n} cards) | time | cards/s |");
    println!("|---|---|---|");
    println!(
        "| baseline: `write_batch` alone (seal the ID number, diversify + wrap 5 keys per card, write the file, in memory) | {baseline_s:.2} s | {:.0} |",
        rate(baseline_s)
    );
    println!(
        "| `create_batch`: approved → in_production through the state machine, events, audit, one transaction | {create_s:.2} s | {:.0} |",
        rate(create_s)
    );
    println!(
        "| `export_batch`: read the batch, unseal names and ID numbers, seal each ID for the bureau, diversify + wrap 5 keys, write, record the export | {export_s:.2} s | {:.0} |",
        rate(export_s)
    );
    println!(
        "| **platform path: create + export** (target ≥ 2,000 cards/s) | {:.2} s | **{:.0}** |",
        create_s + export_s,
        rate(create_s + export_s)
    );
    println!(
        "| `import_results`: verify the result file, serials, produced, one transaction | {import_s:.2} s | {:.0} |",
        rate(import_s)
    );
    Ok(())
}
