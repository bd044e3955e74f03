//! Feeds and reads at once: two departments import overlapping feeds of several batches while
//! operators look residents up. Every row lands exactly once, the overlap is applied in some
//! order with history to match, and the audit chain holds every read and batch.

use crate::fixture::{Fixture, admin, audit_seq, import};
use crate::on_both_backends;
use platform::PlatformError;
use platform::residents::IMPORT_BATCH;
use resident::{Field, Source};
use store::Role;

on_both_backends!(overlapping_feeds_and_reads_at_once);

/// Resident `n`'s ID number: unique for every `n` (birth day and sequence number from `n`).
fn id_of(n: u64) -> String {
    let birth = time::macros::date!(1950 - 01 - 01) + time::Duration::days((n / 1000) as i64);
    resident::ResidentId::from_parts("410105", birth, (n % 1000) as u16)
        .as_str()
        .to_string()
}

/// A feed of residents `range`; `version` changes phones and addresses as a later feed would.
fn feed(range: std::ops::Range<u64>, version: u64) -> Vec<u8> {
    let mut csv = "id_number,name,phone,address,residency\n".to_string();
    for n in range {
        csv.push_str(&format!(
            "{},居民{n},139{:08},郑州市金水区文化路{}号,resident\n",
            id_of(n),
            n * 10 + version,
            n + version * 10_000
        ));
    }
    csv.into_bytes()
}

async fn overlapping_feeds_and_reads_at_once(f: Fixture) {
    // Batch-relative sizes, so the feeds span two batches whatever the batch size.
    let b = IMPORT_BATCH as u64;
    let (police_n, overlap) = (b + b / 2, b / 2);
    // Police: residents 0..1.5 batches and one broken row at the end.
    let mut police = feed(0..police_n, 0);
    police.extend_from_slice("410105198502301230,坏号,,,\n".as_bytes());
    // Human resources: 1.5 batches, the first `overlap` of them shared with the police feed,
    // with newer phones and addresses.
    let hr_start = police_n - overlap;
    let hr = feed(hr_start..hr_start + police_n, 1);
    let total = hr_start + police_n;

    let before = audit_seq(&f.p).await;
    let p1 = f.p.clone();
    let police_task = tokio::spawn(async move {
        import(&p1, &admin(), Source::Police, "csv:police.csv", &police).await
    });
    let p2 = f.p.clone();
    let hr_task = tokio::spawn(async move {
        import(&p2, &admin(), Source::HrSocialSecurity, "csv:hr.csv", &hr).await
    });
    let mut readers = Vec::new();
    for n in 0..40u64 {
        let p = f.p.clone();
        let id = id_of(n * (total / 40));
        readers.push(tokio::spawn(async move {
            let c = crate::fixture::caller("clerk", Role::CounterClerk, None);
            match p.resident_by_id_number(&c, &id, n % 2 == 0).await {
                Ok(_) | Err(PlatformError::NotFound(_)) => {}
                Err(e) => panic!("lookup {n}: {e}"),
            }
        }));
    }
    let police = police_task.await.unwrap().unwrap();
    let hr = hr_task.await.unwrap().unwrap();
    for r in readers {
        r.await.unwrap();
    }

    assert_eq!(police.totals.rows, police_n + 1);
    assert_eq!(police.totals.rejected, 1, "{:#?}", police.rejects);
    assert_eq!(police.rejects[0].row, police_n + 2, "{:?}", police.rejects);
    assert_eq!(hr.totals.rows, police_n);
    assert_eq!(hr.totals.rejected, 0);
    // Each resident was inserted by exactly one feed; each of the shared ones was changed
    // by whichever feed came second.
    assert_eq!(
        police.totals.inserted + hr.totals.inserted,
        total,
        "{police:?} {hr:?}"
    );
    assert_eq!(
        police.totals.updated + hr.totals.updated,
        overlap,
        "{police:?} {hr:?}"
    );
    assert_eq!(police.totals.unchanged + hr.totals.unchanged, 0);
    assert_eq!(f.p.resident_count().await.unwrap(), total);

    // An overlapping resident shows the values of the feed applied last, per its history.
    let shared = id_of(hr_start + overlap / 2);
    let h = f.p.resident_history(&admin(), &shared, true).await.unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    let v =
        f.p.resident_by_id_number(&admin(), &shared, true)
            .await
            .unwrap();
    let last = h.last().unwrap();
    assert_eq!(v.phone.as_deref(), last.values["phone"].as_str());
    let phone_from = v
        .provenance
        .iter()
        .find(|p| p.field == Field::Phone)
        .unwrap();
    assert_eq!(phone_from.feed_id, last.feed_id);

    // Every batch and every lookup is on the chain, which holds.
    let batches =
        f.p.store
            .audit_recent(Some("resident.import"), 100)
            .await
            .unwrap();
    assert_eq!(batches.len(), 4, "two feeds of two batches each");
    let reads =
        f.p.store
            .audit_recent(Some("resident.read"), 100)
            .await
            .unwrap()
            .len()
            + f.p
                .store
                .audit_recent(Some("resident.unmask"), 100)
                .await
                .unwrap()
                .len();
    assert_eq!(reads, 40 + 2);
    let after = audit_seq(&f.p).await;
    assert_eq!(
        after - before,
        2 + 4 + 40 + 2,
        "feed starts, batches and reads"
    );
    assert_eq!(f.p.audit_verify().await.unwrap(), Ok(after as u64));
}
