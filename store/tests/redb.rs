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

/// Waits until the store has checkpointed `n` times (the idle writer checkpoints within a
/// second of its last write).
async fn checkpoints(store: &RedbStore, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.stats.checkpoints.load(Ordering::Relaxed) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn list_ns(store: &RedbStore, options: ListOptions) -> zen_store::ListResult {
    store
        .list(Prefix::new("observations", Some("ns")), options)
        .await
        .unwrap()
}

fn names(page: &zen_store::ListResult) -> Vec<(String, Vec<u8>)> {
    page.items
        .iter()
        .map(|(k, v)| (k.name.clone(), v.value.to_vec()))
        .collect()
}

#[tokio::test]
async fn reads_layer_pending_writes_over_checkpointed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("db")).unwrap();
    for n in ["a", "b", "c", "d"] {
        store.create(key("ns", n), b(n)).await.unwrap();
    }
    checkpoints(&store, 1).await;
    let before = store.current_revision();
    // Now in redb; change them while those changes are only in the log and in memory.
    store.update(key("ns", "b"), b("b2"), None).await.unwrap();
    store.delete(key("ns", "c"), None).await.unwrap();
    store.create(key("ns", "e"), b("e")).await.unwrap();
    store.create(key("other", "z"), b("z")).await.unwrap();
    assert_eq!(store.get(&key("ns", "c")).await.unwrap(), None);
    assert_eq!(
        store.get(&key("ns", "b")).await.unwrap().unwrap().value,
        b("b2")
    );
    assert_eq!(
        store.create(key("ns", "a"), b("again")).await,
        Err(StoreError::AlreadyExists),
        "a checkpointed key still exists for the writer"
    );
    let expected: Vec<(String, Vec<u8>)> = [("a", "a"), ("b", "b2"), ("d", "d"), ("e", "e")]
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    let all = list_ns(&store, ListOptions::default()).await;
    assert_eq!(names(&all), expected);
    // Pages of two, continuing at the first page's revision.
    let first = list_ns(
        &store,
        ListOptions {
            limit: Some(2),
            ..Default::default()
        },
    )
    .await;
    assert!(first.more);
    let rest = list_ns(
        &store,
        ListOptions {
            start_after: first.items.last().map(|(k, _)| k.clone()),
            at_revision: Some(first.revision),
            limit: Some(2),
        },
    )
    .await;
    assert!(!rest.more);
    assert_eq!([names(&first), names(&rest)].concat(), expected);
    // The state before those changes, undone from the hub's history.
    let past = list_ns(
        &store,
        ListOptions {
            at_revision: Some(before),
            ..Default::default()
        },
    )
    .await;
    let letters: Vec<String> = names(&past).into_iter().map(|(n, _)| n).collect();
    assert_eq!(letters, ["a", "b", "c", "d"]);
    // After the next checkpoint, the same answers come from redb alone.
    checkpoints(&store, 2).await;
    let all = list_ns(&store, ListOptions::default()).await;
    assert_eq!(names(&all), expected);
    assert_eq!(store.get(&key("ns", "c")).await.unwrap(), None);
}

/// Set in the child process [`acknowledged_writes_survive_a_crash`] starts.
const CRASH_DIR: &str = "ZEN_STORE_TEST_CRASH_DIR";

/// The child: writes, reports each acknowledged write on stdout, and aborts without any
/// shutdown (no final checkpoint), some writes checkpointed and some only in the log. The
/// last writes go into a segment written over the first one (the spare), whose 50 old
/// frames lie beyond them.
#[tokio::test]
async fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return; // Only meaningful as the child of the test below.
    };
    let store = RedbStore::open(&std::path::Path::new(&dir).join("db")).unwrap();
    create_reporting(&store, 0..50).await;
    checkpoints(&store, 1).await;
    for i in 0..10 {
        let rev = store
            .update(key("ns", &format!("o{i:03}")), b(&format!("w{i}")), None)
            .await
            .unwrap();
        println!("ack o{i:03} w{i} {rev}");
    }
    checkpoints(&store, 2).await;
    let (_, rev) = store.delete(key("ns", "o049"), None).await.unwrap();
    println!("ack o049 - {rev}");
    create_reporting(&store, 50..60).await;
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::process::abort();
}

/// Creates `o{i}` with `v{i}` for each `i`, reporting each acknowledgement as the parent
/// reads it.
async fn create_reporting(store: &RedbStore, range: std::ops::Range<usize>) {
    for i in range {
        let rev = store
            .create(key("ns", &format!("o{i:03}")), b(&format!("v{i}")))
            .await
            .unwrap();
        println!("ack o{i:03} v{i} {rev}");
    }
}

#[test]
fn acknowledged_writes_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_DIR, dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child must have aborted");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut expected = std::collections::BTreeMap::new();
    let mut last = 0;
    // (The harness prints the test's name on the line of the first.)
    let acks: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.find("ack ").map(|i| &l[i + 4..]))
        .collect();
    for line in &acks {
        let parts: Vec<&str> = line.split(' ').collect();
        let rev: u64 = parts[2].parse().unwrap();
        last = last.max(rev);
        if parts[1] == "-" {
            expected.remove(parts[0]);
        } else {
            expected.insert(parts[0].to_owned(), (parts[1].to_owned(), rev));
        }
    }
    assert_eq!(
        acks.len(),
        71,
        "the child acknowledged every write:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut segments: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("db.wal.0"))
        .collect();
    segments.sort_by_key(|e| e.file_name());
    let newest = segments
        .last()
        .expect("a log segment")
        .metadata()
        .unwrap()
        .len();
    // 11 changes of about 50 bytes each, over 50 old frames.
    assert!(
        newest > 1500,
        "the last segment ({newest} bytes) was written over the first"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = RedbStore::open(&dir.path().join("db")).unwrap();
        assert_eq!(store.current_revision(), last);
        let all = store
            .list(
                Prefix::new("observations", Some("ns")),
                ListOptions::default(),
            )
            .await
            .unwrap();
        let found: std::collections::BTreeMap<String, (String, u64)> = all
            .items
            .iter()
            .map(|(k, v)| {
                (
                    k.name.clone(),
                    (String::from_utf8(v.value.to_vec()).unwrap(), v.mod_revision),
                )
            })
            .collect();
        assert_eq!(found, expected);
        let next = store.create(key("ns", "after"), b("x")).await.unwrap();
        assert_eq!(next, last + 1, "revisions continue after the replay");
    });
}
