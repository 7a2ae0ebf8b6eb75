//! The embedded store on real redb files.

use std::sync::{Arc, atomic::Ordering};

use zen_store::{ListOptions, Prefix, Store, StoreError, redb::RedbStore, watch::HubLimits};

mod conformance;

use conformance::{b, key};

#[tokio::test]
async fn crud_semantics_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("db")).unwrap();
    conformance::crud_semantics_and_errors(&store).await;
}

#[tokio::test]
async fn revisions_and_data_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let last = {
        let store = RedbStore::open(&path).unwrap();
        store.create(key("a", "x"), b("1")).await.unwrap();
        store.create(key("a", "y"), b("2")).await.unwrap()
    };
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.current_revision(), last);
    assert_eq!(
        store.get(&key("a", "y")).await.unwrap().unwrap().value,
        b("2")
    );
    let next = store.create(key("a", "z"), b("3")).await.unwrap();
    assert_eq!(next, last + 1);
}

#[tokio::test]
async fn paginated_list_is_consistent_at_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("db")).unwrap();
    conformance::paginated_list_is_consistent_at_its_revision(&store).await;
}

#[tokio::test]
async fn old_revisions_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_with(
        &dir.path().join("db"),
        HubLimits {
            history: 2,
            watcher_buffer: 8,
        },
    )
    .unwrap();
    let first = store.create(key("a", "x"), b("1")).await.unwrap();
    for i in 0..5 {
        store
            .update(key("a", "x"), b(&i.to_string()), None)
            .await
            .unwrap();
    }
    let err = store
        .list(
            Prefix::new("observations", None),
            ListOptions {
                at_revision: Some(first),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Expired { .. }), "{err:?}");
    assert!(matches!(
        store.watch(Prefix::new("observations", None), first),
        Err(StoreError::Expired { .. })
    ));
}

#[tokio::test]
async fn watch_replays_then_streams_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("db")).unwrap();
    conformance::watch_replays_then_streams_in_order(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(&dir.path().join("db")).unwrap());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.create(key("a", &format!("o{i}")), b("v")).await })
        })
        .collect();
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap().unwrap());
    }
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), 200, "every write got its own revision");
    let commits = store.stats.commits.load(Ordering::Relaxed);
    assert!(
        commits < 200,
        "200 concurrent writes took {commits} commits"
    );
}
