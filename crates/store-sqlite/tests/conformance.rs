//! The storage conformance suite and tamper checks on SQLite, one fresh database file per test.

use store_sqlite::SqliteStore;

async fn fresh() -> SqliteStore {
    // Kept for the life of the test process; each test gets its own directory.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    SqliteStore::open(&dir.path().join("citycard.db"))
        .await
        .unwrap()
}

store::conformance_tests!(fresh());

#[tokio::test]
async fn audit_tampering_is_detected() {
    use store::Store;
    let s = fresh().await;
    for i in 0..5 {
        s.audit_append(audit::Draft::new("a", "x", format!("{i}"), "t", ""), i)
            .await
            .unwrap();
    }
    // The log refuses ordinary updates and deletes.
    let refused = sqlx::query("UPDATE audit_log SET detail = 'x' WHERE seq = 2")
        .execute(s.pool())
        .await;
    assert!(refused.is_err());
    // An intruder with file access drops the guard and edits a row: verification names it.
    sqlx::query("DROP TRIGGER audit_log_no_update")
        .execute(s.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET detail = 'edited' WHERE seq = 3")
        .execute(s.pool())
        .await
        .unwrap();
    assert_eq!(
        store::audit_verify(&s).await.unwrap(),
        Err(audit::ChainError::Altered { seq: 3 })
    );
}

#[tokio::test]
async fn audit_removal_is_detected() {
    use store::Store;
    let s = fresh().await;
    for i in 0..5 {
        s.audit_append(audit::Draft::new("a", "x", format!("{i}"), "t", ""), i)
            .await
            .unwrap();
    }
    sqlx::query("DROP TRIGGER audit_log_no_delete")
        .execute(s.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 5")
        .execute(s.pool())
        .await
        .unwrap();
    assert_eq!(
        store::audit_verify(&s).await.unwrap(),
        Err(audit::ChainError::Truncated { last: 4, head: 5 })
    );
}

/// A fee rule is never changed or removed, even by a statement that goes around the store.
#[tokio::test]
async fn fee_rules_refuse_updates_and_deletes() {
    use store::ClearingStore;
    let s = fresh().await;
    let refused = sqlx::query("UPDATE fee_rules SET rate_bp = 0 WHERE scope_value = 'shop'")
        .execute(s.pool())
        .await;
    assert!(refused.is_err());
    let refused = sqlx::query("DELETE FROM fee_rules").execute(s.pool()).await;
    assert!(refused.is_err());
    let rules = s.fee_rules().await.unwrap();
    assert_eq!(rules.len(), 6);
    assert!(
        rules
            .iter()
            .any(|r| r.scope_value == "shop" && r.rate_bp == 60)
    );
}

/// Commits checkpoint by themselves only past 1 GiB of log (a backstop); below that the store's
/// own checkpointer copies the log into the database file in the background, and stops with
/// the store.
#[tokio::test]
async fn the_log_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("citycard.db");
    let s = SqliteStore::open(&path).await.unwrap();
    let size = || std::fs::metadata(&path).unwrap().len();
    // Let the first rounds copy the migrations, then write 4 MiB.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let before = size();
    sqlx::query("CREATE TABLE bulk (b BLOB)")
        .execute(s.pool())
        .await
        .unwrap();
    for _ in 0..4 {
        sqlx::query("INSERT INTO bulk VALUES (randomblob(1048576))")
            .execute(s.pool())
            .await
            .unwrap();
    }
    // Right after the commits the pages are in the log only (unless a round ran meanwhile).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() < before + 4 * 1_048_576 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file did not grow from {before} bytes: no checkpoint ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Below 1 GiB no commit checkpoints by itself: the writer's setting.
    let auto: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(auto, 262_144);
}

/// When the checkpointer asks for it (past 64 MiB of log), the writer checkpoints what is left
/// before its next transaction, which then starts the log over: the log stays short under a
/// steady stream of commits, without a commit that copies and syncs the whole log.
#[tokio::test]
async fn a_restart_asked_for_starts_the_log_over_at_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("citycard.db"))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE bulk (b BLOB)")
        .execute(s.pool())
        .await
        .unwrap();
    // Frames in the log now, read by a checkpoint on another connection that copies nothing
    // it may not (`PASSIVE`); the third column is what it has copied.
    let log_frames = || async {
        let (_, log, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(s.pool())
            .await
            .unwrap();
        log
    };
    for _ in 0..3 {
        // Two MiB at a time, each write right after the previous one: between them the log
        // only grows (a log starts over only when a write begins after a complete checkpoint).
        sqlx::query("INSERT INTO bulk VALUES (randomblob(2097152))")
            .execute(s.pool())
            .await
            .unwrap();
        s.restart_log_soon();
        sqlx::query("INSERT INTO bulk VALUES (x'00')")
            .execute(s.pool())
            .await
            .unwrap();
        let after = log_frames().await;
        assert!(
            after < 16,
            "the log did not start over at the write after the restart was asked: {after} frames"
        );
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM bulk")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(rows, 6, "nothing written is lost across the restarts");
}

/// SQLite keeps its foreign keys on postings, but `ledger check` does not rely on them: a
/// posting written around them (a file edited with foreign keys off) is named, whether its
/// account or its transfer is missing.
#[tokio::test]
async fn a_dangling_posting_fails_the_check() {
    use store::conformance::{ledger_check_names_dangling, ledger_dangling_posting};
    for missing in ["account", "transfer"] {
        let s = fresh().await;
        let (transfer_id, account) = ledger_dangling_posting(&s, missing).await;
        let mut conn = s.pool().acquire().await.unwrap();
        let insert = "INSERT INTO ledger_postings (transfer_id, idx, account_id, unit, side, amount) \
                      VALUES (?, 7, ?, 'CNY', 'credit', 1)";
        let refused = sqlx::query(insert)
            .bind(transfer_id)
            .bind(account)
            .execute(&mut *conn)
            .await;
        assert!(
            refused.is_err(),
            "the foreign key let a dangling posting in"
        );
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query(insert)
            .bind(transfer_id)
            .bind(account)
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        ledger_check_names_dangling(&s, (transfer_id, account), missing).await;
    }
}

#[tokio::test]
async fn the_purchase_carry_over_follows_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("citycard.db");
    let first = SqliteStore::open(&path).await.unwrap();
    let second = SqliteStore::open(&path).await.unwrap();
    store::conformance::purchases_carry_over_follows_the_books(&first, &second).await;
}
