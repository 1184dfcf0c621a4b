//! Stored Responses API answers against real databases: round trip, per-org isolation, delete,
//! retention.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::databases;
use octo_store::StoredResponse;

fn answer(org: &str, id: &str, created_at_ms: i64) -> StoredResponse {
    StoredResponse {
        org: org.into(),
        id: id.into(),
        created_at_ms,
        model: "gpt-x".into(),
        input: r#"[{"type":"message","role":"user","content":"ünïcödé 🐙 'q' \"dq\" \\"}]"#.into(),
        response: format!(r#"{{"id":"{id}","object":"response","output":[]}}"#),
    }
}

#[tokio::test]
async fn answers_round_trip_per_org_and_are_deleted() {
    for db in databases("responses").await {
        let store = db.open().await;
        let a = answer("acme", "resp_1", 1_700_000_000_000);
        store.put_response(&a).await.unwrap();
        assert_eq!(
            store.response("acme", "resp_1").await.unwrap().as_ref(),
            Some(&a),
            "{}",
            db.name
        );
        // The same id in another org is another answer; neither org sees the other's.
        assert_eq!(store.response("beta", "resp_1").await.unwrap(), None);
        assert_eq!(store.response("", "resp_1").await.unwrap(), None);
        let b = answer("beta", "resp_1", 1_700_000_000_001);
        store.put_response(&b).await.unwrap();
        assert_eq!(store.response("beta", "resp_1").await.unwrap(), Some(b));
        assert!(!store.delete_response("gamma", "resp_1").await.unwrap());
        assert!(store.delete_response("beta", "resp_1").await.unwrap());
        assert_eq!(store.response("beta", "resp_1").await.unwrap(), None);
        assert_eq!(
            store.response("acme", "resp_1").await.unwrap().as_ref(),
            Some(&a),
            "{}: deleting beta's answer left acme's",
            db.name
        );
        // Storing again replaces.
        let mut again = a.clone();
        again.response = r#"{"id":"resp_1","object":"response","output":[1]}"#.into();
        store.put_response(&again).await.unwrap();
        assert_eq!(store.response("acme", "resp_1").await.unwrap(), Some(again));
        // A large history survives (beyond MySQL's TEXT and MEDIUMTEXT would be 16 MiB; 1 MiB here).
        let mut big = answer("acme", "resp_big", 1_700_000_000_002);
        big.input = format!(r#"["{}"]"#, "x".repeat(1 << 20));
        store.put_response(&big).await.unwrap();
        assert_eq!(store.response("acme", "resp_big").await.unwrap(), Some(big));
        // Ids too long for the column are refused, not truncated.
        assert!(
            store
                .put_response(&answer("acme", &"r".repeat(300), 1))
                .await
                .is_err()
        );
        assert_eq!(
            store.response("acme", &"r".repeat(300)).await.unwrap(),
            None
        );
        store.close().await;
    }
}

#[tokio::test]
async fn retention_deletes_old_answers() {
    for db in databases("responses_retention").await {
        let store = db.open().await;
        store
            .put_response(&answer("acme", "resp_old", 1_000))
            .await
            .unwrap();
        store
            .put_response(&answer("acme", "resp_new", 10_000))
            .await
            .unwrap();
        let pruned = store
            .prune(UNIX_EPOCH + Duration::from_millis(5_000))
            .await
            .unwrap();
        assert_eq!(pruned.responses, 1, "{}", db.name);
        assert_eq!(store.response("acme", "resp_old").await.unwrap(), None);
        assert!(store.response("acme", "resp_new").await.unwrap().is_some());
        store.close().await;
    }
}
