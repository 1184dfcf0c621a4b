//! Admin users and panel sessions (schema version 4) against real databases: names unique,
//! hashes kept but never serialized, sessions found by hash, expired ones pruned, a user's
//! sessions deleted with them.

mod common;

use common::databases;

#[tokio::test]
async fn users_and_sessions_on_every_database() {
    for db in databases("admin_users").await {
        let store = db.open().await;
        let n = db.name;
        assert!(store.users().await.unwrap().is_empty(), "{n}");
        assert!(
            store
                .create_user("ada", "argon2:$argon2id$v=19$a", Some("token:0"))
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            !store
                .create_user("ada", "argon2:other", None)
                .await
                .unwrap(),
            "{n}: names are unique"
        );
        assert!(
            store.create_user("Ada", "argon2:b", None).await.unwrap(),
            "{n}: case matters"
        );
        let users = store.users().await.unwrap();
        assert_eq!(
            users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["Ada", "ada"],
            "{n}"
        );
        let ada = store.user("ada").await.unwrap().unwrap();
        assert_eq!(ada.password_hash, "argon2:$argon2id$v=19$a", "{n}");
        assert_eq!(ada.created_by.as_deref(), Some("token:0"), "{n}");

        let hash = "a".repeat(64);
        store
            .create_session(&hash, "user:ada", 1_000, i64::MAX / 2)
            .await
            .unwrap();
        store
            .create_session(&"b".repeat(64), "user:Ada", 1_000, 2_000)
            .await
            .unwrap();
        assert_eq!(
            store.session(&hash).await.unwrap().unwrap().actor,
            "user:ada",
            "{n}"
        );
        assert_eq!(store.prune_sessions(10_000).await.unwrap(), 1, "{n}");
        assert!(store.delete_user("ada").await.unwrap(), "{n}");
        assert!(store.session(&hash).await.unwrap().is_none(), "{n}");
        assert!(store.user("ada").await.unwrap().is_none(), "{n}");
        assert!(store.user("Ada").await.unwrap().is_some(), "{n}");
        store.close().await;
    }
}
