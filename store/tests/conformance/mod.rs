//! The store contract, one suite run against every implementation: `redb.rs` and
//! `etcd.rs` call each of these with their own store.

#![allow(dead_code)]

use bytes::Bytes;
use zen_store::{EventKind, ListOptions, ObjectKey, Prefix, Store, StoreError};

pub fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new("observations", ns, name)
}

pub fn b(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

pub async fn crud_semantics_and_errors(store: &dyn Store) {
    let r1 = store.create(key("a", "x"), b("v1")).await.unwrap();
    assert_eq!(
        store.create(key("a", "x"), b("v1")).await,
        Err(StoreError::AlreadyExists)
    );
    let got = store.get(&key("a", "x")).await.unwrap().unwrap();
    assert_eq!((got.value, got.mod_revision), (b("v1"), r1));
    let r2 = store
        .update(key("a", "x"), b("v2"), Some(r1))
        .await
        .unwrap();
    assert!(r2 > r1);
    assert_eq!(
        store.update(key("a", "x"), b("v3"), Some(r1)).await,
        Err(StoreError::Conflict { current: r2 })
    );
    assert_eq!(
        store.update(key("a", "nope"), b("v"), None).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.delete(key("a", "x"), Some(r1)).await,
        Err(StoreError::Conflict { current: r2 })
    );
    let (last, r3) = store.delete(key("a", "x"), Some(r2)).await.unwrap();
    assert_eq!(last, b("v2"));
    assert!(r3 > r2);
    assert_eq!(store.get(&key("a", "x")).await.unwrap(), None);
    assert_eq!(
        store.delete(key("a", "x"), None).await,
        Err(StoreError::NotFound)
    );
}

pub async fn paginated_list_is_consistent_at_its_revision(store: &dyn Store) {
    for i in 0..10 {
        store
            .create(key("a", &format!("o{i}")), b(&format!("v{i}")))
            .await
            .unwrap();
    }
    store.create(key("b", "other"), b("x")).await.unwrap();
    let prefix = Prefix::new("observations", Some("a"));
    let page1 = store
        .list(
            prefix.clone(),
            ListOptions {
                limit: Some(4),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page1.items.len(), 4);
    assert!(page1.more);
    // Writes between pages: a delete ahead, a new key ahead, a change ahead.
    store.delete(key("a", "o5"), None).await.unwrap();
    store.create(key("a", "o55"), b("new")).await.unwrap();
    store
        .update(key("a", "o7"), b("changed"), None)
        .await
        .unwrap();
    let mut names: Vec<String> = page1.items.iter().map(|(k, _)| k.name.clone()).collect();
    let mut cursor = page1.items.last().map(|(k, _)| k.clone());
    loop {
        let page = store
            .list(
                prefix.clone(),
                ListOptions {
                    start_after: cursor.clone(),
                    limit: Some(4),
                    at_revision: Some(page1.revision),
                },
            )
            .await
            .unwrap();
        assert_eq!(page.revision, page1.revision);
        for (k, v) in &page.items {
            if k.name == "o7" {
                assert_eq!(
                    v.value,
                    b("v7"),
                    "the page shows o7 as of the first page's revision"
                );
            }
            names.push(k.name.clone());
        }
        cursor = page.items.last().map(|(k, _)| k.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(names, (0..10).map(|i| format!("o{i}")).collect::<Vec<_>>());
    let latest = store.list(prefix, ListOptions::default()).await.unwrap();
    let latest: Vec<String> = latest.items.iter().map(|(k, _)| k.name.clone()).collect();
    assert!(latest.contains(&"o55".to_string()) && !latest.contains(&"o5".to_string()));
}

pub async fn watch_replays_then_streams_in_order(store: &dyn Store) {
    let r1 = store.create(key("a", "x"), b("1")).await.unwrap();
    store.create(key("b", "y"), b("2")).await.unwrap();
    // From the revision before the first write: every store keeps that much.
    let mut w = store
        .watch(Prefix::new("observations", Some("a")), r1 - 1)
        .unwrap();
    store.update(key("a", "x"), b("3"), None).await.unwrap();
    store.delete(key("a", "x"), None).await.unwrap();
    let e1 = w.next().await.unwrap();
    assert_eq!((e1.kind, e1.revision), (EventKind::Added, r1));
    let e2 = w.next().await.unwrap();
    assert_eq!(e2.kind, EventKind::Modified);
    assert_eq!(e2.prev.as_ref().map(|p| p.value.clone()), Some(b("1")));
    let e3 = w.next().await.unwrap();
    assert_eq!((e3.kind, e3.value.clone()), (EventKind::Deleted, b("3")));
}
