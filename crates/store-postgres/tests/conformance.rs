//! The storage conformance suite and tamper checks on PostgreSQL. Each test gets its own
//! schema in the test database named by `CITYCARD_TEST_DATABASE_URL` (default: the local
//! server's `citycard_test` database, which `scripts/test` creates fresh for every run).

use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use store_postgres::PgStore;

fn test_url() -> String {
    std::env::var("CITYCARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/citycard_test".into())
}

async fn fresh() -> PgStore {
    PgStore::connect_with(fresh_schema().await).await.unwrap()
}

/// A new schema in the test database; the options to connect to it.
async fn fresh_schema() -> PgConnectOptions {
    let url = test_url();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url} ({e}). Run ./scripts/test, which installs and \
             starts Debian's postgresql and creates the test database, or set \
             CITYCARD_TEST_DATABASE_URL."
        )
    });
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())])
}

store::conformance_tests!(fresh());

#[tokio::test]
async fn the_purchase_carry_over_follows_another_process() {
    let opts = fresh_schema().await;
    let first = PgStore::connect_with(opts.clone()).await.unwrap();
    let second = PgStore::connect_with(opts).await.unwrap();
    store::conformance::purchases_carry_over_follows_the_books(&first, &second).await;
}

#[tokio::test]
async fn audit_tampering_is_detected() {
    use store::Store;
    let s = fresh().await;
    for i in 0..5 {
        s.audit_append(audit::Draft::new("a", "x", format!("{i}"), "t", ""), i)
            .await
            .unwrap();
    }
    let refused = sqlx::query("UPDATE audit_log SET detail = 'x' WHERE seq = 2")
        .execute(s.pool())
        .await;
    assert!(refused.is_err());
    sqlx::query("DROP TRIGGER audit_log_no_change ON audit_log")
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
async fn audit_reordering_is_detected() {
    use store::Store;
    let s = fresh().await;
    for i in 0..5 {
        s.audit_append(audit::Draft::new("a", "x", format!("{i}"), "t", ""), i)
            .await
            .unwrap();
    }
    sqlx::query("DROP TRIGGER audit_log_no_change ON audit_log")
        .execute(s.pool())
        .await
        .unwrap();
    // Swap the contents of entries 2 and 3, keeping their sequence numbers.
    sqlx::query(
        "UPDATE audit_log a SET record = b.record, hash = b.hash, prev_hash = b.prev_hash \
         FROM audit_log b WHERE (a.seq, b.seq) IN ((2, 3), (3, 2))",
    )
    .execute(s.pool())
    .await
    .unwrap();
    let r = store::audit_verify(&s).await.unwrap();
    assert!(
        matches!(r, Err(audit::ChainError::Altered { seq: 2 })),
        "{r:?}"
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

/// Postings carry no per-row foreign keys on PostgreSQL (migration 0042): an account is never
/// deleted, and `ledger check` names a posting whose account or transfer is missing.
#[tokio::test]
async fn a_dangling_posting_fails_the_check_and_accounts_are_never_deleted() {
    use store::conformance::{ledger_check_names_dangling, ledger_dangling_posting};
    for missing in ["account", "transfer"] {
        let s = fresh().await;
        let (transfer_id, account) = ledger_dangling_posting(&s, missing).await;
        if missing == "transfer" {
            let refused = sqlx::query("DELETE FROM ledger_accounts WHERE id = $1")
                .bind(account)
                .execute(s.pool())
                .await;
            assert!(refused.is_err(), "an account was deleted");
        }
        sqlx::query(
            "INSERT INTO ledger_postings (transfer_id, idx, account_id, unit, side, amount) \
             VALUES ($1, 7, $2, 'CNY', 'credit', 1)",
        )
        .bind(transfer_id)
        .bind(account)
        .execute(s.pool())
        .await
        .unwrap();
        ledger_check_names_dangling(&s, (transfer_id, account), missing).await;
    }
}
