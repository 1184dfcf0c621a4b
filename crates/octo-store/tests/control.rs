//! The control plane's tables against real databases: objects and keys round-trip, every change
//! bumps the counter and writes its audit entry in the same transaction, a duplicate key is
//! refused, key use only moves forward, spend comes from the rollups.

mod common;

use common::{arcs, databases};
use octo_store::control::is_duplicate;
use octo_store::testing::sample;
use octo_store::{ControlWrite, NewAudit, StoredKey, StoredObject};

fn audit(action: &str, name: &str) -> NewAudit {
    NewAudit {
        actor: "token:0".into(),
        kind: "backends".into(),
        name: name.into(),
        action: action.into(),
        detail: format!(r#"{{"name":"{name}"}}"#),
    }
}

fn object(name: &str, body: &str) -> StoredObject {
    StoredObject {
        kind: "backends".into(),
        name: name.into(),
        body: body.into(),
        updated_at: 1_700_000_000_000,
        updated_by: "token:0".into(),
    }
}

#[tokio::test]
async fn objects_keys_counter_and_audit() {
    for db in databases("control_objects").await {
        let store = db.open().await;
        let n = db.name;
        assert_eq!(store.control_version().await.unwrap(), 0, "{n}");
        let empty = store.control_state().await.unwrap();
        assert!(empty.objects.is_empty() && empty.keys.is_empty(), "{n}");

        let a = object("a", r#"{"base_url":"http://x"}"#);
        store
            .control_write(&ControlWrite::PutObject(a.clone()), &audit("create", "a"))
            .await
            .unwrap();
        // Replacing keeps one row.
        let a2 = object("a", r#"{"base_url":"http://y","ünï":"🐙"}"#);
        store
            .control_write(&ControlWrite::PutObject(a2.clone()), &audit("update", "a"))
            .await
            .unwrap();
        store
            .control_write(
                &ControlWrite::PutObject(object("b", "{}")),
                &audit("create", "b"),
            )
            .await
            .unwrap();
        let key = StoredKey {
            org: "acme".into(),
            name: "ci".into(),
            key_hash: format!("sha256:{}", "ab".repeat(32)),
            body: r#"{"models":["m"]}"#.into(),
            created_at: 1_700_000_000_001,
            created_by: "token:1".into(),
        };
        store
            .control_write(
                &ControlWrite::PutKey(key.clone()),
                &audit("create", "acme/ci"),
            )
            .await
            .unwrap();
        let dup = store
            .control_write(
                &ControlWrite::PutKey(key.clone()),
                &audit("create", "acme/ci"),
            )
            .await
            .unwrap_err();
        assert!(is_duplicate(&dup), "{n}: {dup}");

        let state = store.control_state().await.unwrap();
        assert_eq!(state.version, 4, "{n}: the failed write bumped nothing");
        assert_eq!(state.objects, vec![a2, object("b", "{}")], "{n}");
        assert_eq!(state.keys, vec![key], "{n}");

        store
            .control_write(
                &ControlWrite::DeleteObject {
                    kind: "backends".into(),
                    name: "b".into(),
                },
                &audit("delete", "b"),
            )
            .await
            .unwrap();
        store
            .control_write(
                &ControlWrite::DeleteKey {
                    org: "acme".into(),
                    name: "ci".into(),
                },
                &audit("delete", "acme/ci"),
            )
            .await
            .unwrap();
        store.audit(&audit("reload", "file")).await.unwrap();
        let state = store.control_state().await.unwrap();
        assert_eq!(state.version, 6, "{n}");
        assert_eq!(state.objects.len(), 1, "{n}");
        assert!(state.keys.is_empty(), "{n}");

        // Newest first, paged by id.
        let page = store.audit_page(3, None).await.unwrap();
        let actions: Vec<&str> = page.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["reload", "delete", "delete"], "{n}");
        assert_eq!(page[1].detail["name"], "acme/ci", "{n}");
        let rest = store
            .audit_page(100, Some(page[2].id))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect::<Vec<_>>();
        assert_eq!(rest, ["create", "create", "update", "create"], "{n}");
        assert!(store.audit_page(0, None).await.is_err(), "{n}");
        store.close().await;
    }
}

#[tokio::test]
async fn key_use_moves_forward_and_spend_comes_from_rollups() {
    for db in databases("control_keys").await {
        let store = db.open().await;
        let n = db.name;
        let uses = |at: i64| vec![("acme".to_owned(), "ci".to_owned(), at)];
        store.touch_keys(&uses(2000)).await.unwrap();
        store.touch_keys(&uses(1000)).await.unwrap();
        store.touch_keys(&[]).await.unwrap();
        let records: Vec<_> = (0..10)
            .map(|i| {
                let mut r = sample(i);
                r.org = Some("acme".into());
                r.user = Some("ci".into());
                r.cost_usd = Some(0.25);
                r
            })
            .collect();
        store.write(&arcs(&records)).await.unwrap();
        let activity = store.key_activity().await.unwrap();
        let a = &activity[&("acme".to_owned(), "ci".to_owned())];
        assert_eq!(a.last_used_at, Some(2000), "{n}");
        assert_eq!(a.requests, 10, "{n}");
        assert!((a.spend_usd - 2.5).abs() < 1e-9, "{n}: {}", a.spend_usd);
        store.close().await;
    }
}

/// On PostgreSQL a committed change wakes a listener (`NOTIFY octollm_config` from its
/// transaction); MySQL and SQLite have no listener (they poll the counter).
#[tokio::test]
async fn postgres_notifies_listeners_of_every_change() {
    for db in databases("control_notify").await {
        let store = db.open().await;
        let listener = store.control_listener().await.unwrap();
        if db.name != "postgres" {
            assert!(listener.is_none(), "{}", db.name);
            continue;
        }
        let mut listener = listener.expect("a listener on PostgreSQL");
        store
            .control_write(
                &ControlWrite::PutObject(object("n", "{}")),
                &audit("create", "n"),
            )
            .await
            .unwrap();
        let heard = tokio::time::timeout(std::time::Duration::from_secs(30), listener.recv())
            .await
            .expect("a notification")
            .unwrap();
        assert_eq!(heard, octo_store::Heard::Changed);
        // A key, a refused duplicate (rolled back: PostgreSQL drops its NOTIFY), a delete.
        let key = StoredKey {
            org: "acme".into(),
            name: "dup".into(),
            key_hash: "sha256:00".into(),
            body: "{}".into(),
            created_at: 1,
            created_by: "token:0".into(),
        };
        store
            .control_write(&ControlWrite::PutKey(key.clone()), &audit("create", "k"))
            .await
            .unwrap();
        assert_eq!(listener.recv().await.unwrap(), octo_store::Heard::Changed);
        assert!(
            store
                .control_write(&ControlWrite::PutKey(key), &audit("create", "k"))
                .await
                .is_err()
        );
        let version = store.control_version().await.unwrap();
        store
            .control_write(
                &ControlWrite::DeleteObject {
                    kind: "backends".into(),
                    name: "n".into(),
                },
                &audit("delete", "n"),
            )
            .await
            .unwrap();
        assert_eq!(listener.recv().await.unwrap(), octo_store::Heard::Changed);
        assert_eq!(store.control_version().await.unwrap(), version + 1);
    }
}

/// `--check` reads the control state without changing the database: nothing is created for a
/// SQLite file that does not exist, and a database the gateway never opened has no state.
#[tokio::test]
async fn the_control_state_is_read_without_changes() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("octo-store");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("control-read-missing.db");
    let _ = std::fs::remove_file(&missing);
    let url = format!("sqlite://{}", missing.display());
    assert_eq!(
        octo_store::Store::read_control_state(&url).await.unwrap(),
        None
    );
    assert!(!missing.exists(), "the file was created");
    for db in databases("control_read").await {
        let store = db.open().await;
        store
            .control_write(
                &ControlWrite::PutObject(object("r", "{}")),
                &audit("create", "r"),
            )
            .await
            .unwrap();
        store.close().await;
        let state = octo_store::Store::read_control_state(&db.config.url)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{}: no state", db.name));
        assert_eq!(state.objects.len(), 1, "{}", db.name);
        assert_eq!(state.version, 1, "{}", db.name);
    }
}
