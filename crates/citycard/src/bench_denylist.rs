//! `citycard bench denylist`: the deny-list a terminal downloads, built by the platform from
//! the change log in the database (replay, SM2 signature, compact encoding), full and as a
//! delta, beside the pure encoder on the same set in the same command.

use crate::bench::scratch;
use crate::config::Config;
use anyhow::Context;
use platform::clock::SystemClock;
use platform::{KeySource, StorageTarget};
use std::sync::Arc;
use std::time::Instant;

/// Rows per INSERT statement while seeding the change log.
const SEED_CHUNK: usize = 2_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The card numbers put on the list: every third sequence number, so the gaps are realistic.
fn number(i: u64) -> anyhow::Result<String> {
    let seq = u32::try_from(1 + i * 3).context("sequence out of range")?;
    Ok(chip::CardNumber::from_sequence(seq)?.to_string())
}

pub(crate) async fn seed(target: &StorageTarget, entries: u64, delta: u64) -> anyhow::Result<()> {
    // Adds for every entry, then `delta` changes at the end (half removals of listed cards,
    // half new cards), so a delta from `entries` covers exactly those changes.
    let mut rows: Vec<(String, &'static str)> = Vec::with_capacity((entries + delta) as usize);
    for i in 0..entries {
        rows.push((number(i)?, "add"));
    }
    for j in 0..delta {
        if j % 2 == 0 {
            rows.push((number(j * 2)?, "remove"));
        } else {
            rows.push((number(entries + j)?, "add"));
        }
    }
    let pb = crate::bar(rows.len() as u64, "seeding the change log");
    match target {
        StorageTarget::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(SEED_CHUNK) {
                let sql = format!(
                    "INSERT INTO deny_list (number, op, at_ms) VALUES {}",
                    vec!["(?, ?, 0)"; chunk.len()].join(", ")
                );
                let mut q = sqlx::query(&sql);
                for (n, op) in chunk {
                    q = q.bind(n).bind(*op);
                }
                q.execute(&mut *tx).await?;
                pb.inc(chunk.len() as u64);
            }
            tx.commit().await?;
        }
        StorageTarget::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await?;
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(SEED_CHUNK) {
                let (numbers, ops): (Vec<String>, Vec<String>) = chunk
                    .iter()
                    .map(|(n, op)| (n.clone(), op.to_string()))
                    .unzip();
                sqlx::query(
                    "INSERT INTO deny_list (number, op, at_ms) \
                     SELECT n, o, 0 FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS t(n, o, i) \
                     ORDER BY i",
                )
                .bind(&numbers)
                .bind(&ops)
                .execute(&mut *tx)
                .await?;
                pb.inc(chunk.len() as u64);
            }
            tx.commit().await?;
        }
    }
    pb.finish_and_clear();
    Ok(())
}

pub async fn run(entries: u64, delta: u64, rounds: usize, cfg: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(entries > 2 * delta, "--entries must exceed twice --delta");
    anyhow::ensure!(
        rounds >= 2,
        "--rounds must be at least 2 (one cold, then warm)"
    );
    let s = scratch(cfg).await?;
    let backend = match &s.target {
        StorageTarget::Sqlite(_) => "sqlite",
        StorageTarget::Postgres(_) => "postgres",
    };
    eprintln!("bench denylist on {backend}: {entries} entries, delta of {delta} changes");
    let p = platform::open::open_platform(
        &s.target,
        &s._dir.path().join("keys"),
        &KeySource::Passphrase("bench".into()),
        false,
        Arc::new(SystemClock),
    )
    .await?;
    seed(&s.target, entries, delta).await?;
    let version = p.store.deny_list_version().await?;
    anyhow::ensure!(
        version == (entries + delta) as i64,
        "seeded version {version}"
    );

    let (mut full_s, mut delta_s, mut pure_s) = (Vec::new(), Vec::new(), Vec::new());
    let (mut full_len, mut delta_len) = (0, 0);
    let mut listed = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let (_, bytes) = p.deny_list_full().await?;
        full_s.push(t.elapsed().as_secs_f64());
        full_len = bytes.len();
        let t = Instant::now();
        let (_, d) = p.deny_list_delta(entries as i64).await?;
        delta_s.push(t.elapsed().as_secs_f64());
        delta_len = d.len();

        // Checked as a terminal checks it, with the platform's public key.
        let key = crypto::Sm2PublicKey::from_sec1(&p.deny_list_public_key())?;
        let list = issuance::DenyList::decode(&bytes, &key)
            .map_err(|e| anyhow::anyhow!("decoding our own list: {e}"))?;
        // Baseline: the pure encoder on the same final set, no storage, no signature.
        listed = list.len();
        let sequences: Vec<u32> = list.sequences().to_vec();
        let t = Instant::now();
        let again = issuance::DenyList::from_sorted_sequences(
            issuance::DenyListVersion(version as u64),
            sequences,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .encode(&issuance::Unsigned);
        pure_s.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(!again.is_empty());
    }
    s.cleanup().await?;

    // The first download replays the whole log (a process's cold start); later ones bring the
    // cached set forward.
    let cold = full_s[0];
    let (full, dl, pure) = (
        median(full_s[1..].to_vec()),
        median(delta_s),
        median(pure_s),
    );
    println!("| benchmark ({backend}, median of {rounds}) | result | baseline (same run) |");
    println!("|---|---|---|");
    println!(
        "| full deny-list, first download after start: replay {} changes, {listed} cards listed, sign, encode | {:.0} ms, {:.2} MB | pure encoder on the same set: {:.1} ms |",
        entries + delta,
        cold * 1e3,
        full_len as f64 / 1e6,
        pure * 1e3
    );
    println!(
        "| full deny-list, later downloads (cached set, changes since applied, sign, encode) | {:.0} ms | pure encoder: {:.1} ms |",
        full * 1e3,
        pure * 1e3
    );
    println!(
        "| delta of the last {delta} changes (folds only those changes) | {:.0} ms, {} bytes | full list, later downloads: {:.0} ms |",
        dl * 1e3,
        delta_len,
        full * 1e3
    );
    Ok(())
}
