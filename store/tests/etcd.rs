//! The etcd store against a real etcd started by the test: the shared store contract, then
//! what only several replicas on one etcd, compaction and an etcd restart can show.

mod conformance;
mod etcd_server;

use std::time::{Duration, Instant};

use conformance::{b, key};
use etcd_server::Etcd;
use zen_store::{
    EventKind, ListOptions, Prefix, Store, StoreError,
    etcd::{EtcdConfig, EtcdStore},
};

async fn store(etcd: &Etcd, prefix: &str) -> EtcdStore {
    let mut config = EtcdConfig::parse(&etcd.endpoint()).unwrap();
    config.prefix = prefix.to_owned();
    EtcdStore::connect(config).await.unwrap()
}

#[tokio::test]
async fn the_store_contract_holds_on_etcd() {
    let etcd = Etcd::start();
    // Each part in its own prefix, as separate installations would be.
    conformance::crud_semantics_and_errors(&store(&etcd, "/a/").await).await;
    conformance::paginated_list_is_consistent_at_its_revision(&store(&etcd, "/b/").await).await;
    conformance::watch_replays_then_streams_in_order(&store(&etcd, "/c/").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_see_each_others_writes_and_races() {
    let etcd = Etcd::start();
    let one = store(&etcd, "/zen-watcher/").await;
    let two = store(&etcd, "/zen-watcher/").await;
    let mut watch = two
        .watch(Prefix::new("observations", None), two.current_revision())
        .unwrap();
    let created = one.create(key("a", "x"), b("v1")).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the other replica's watch saw the create")
        .unwrap();
    assert_eq!(
        (event.kind, event.revision, event.value.clone()),
        (EventKind::Added, created, b("v1"))
    );
    // Both read the object at the same revision; the second writer loses.
    let seen = two.get(&key("a", "x")).await.unwrap().unwrap();
    assert_eq!(seen.mod_revision, created);
    let updated = one
        .update(key("a", "x"), b("v2"), Some(created))
        .await
        .unwrap();
    assert_eq!(
        two.update(key("a", "x"), b("v3"), Some(seen.mod_revision))
            .await,
        Err(StoreError::Conflict { current: updated })
    );
    let event = watch.next().await.unwrap();
    assert_eq!(event.kind, EventKind::Modified);
    assert_eq!(event.prev.as_ref().map(|p| p.value.clone()), Some(b("v1")));
    // A create racing a create: one wins.
    let (a, c) = tokio::join!(
        one.create(key("a", "y"), b("1")),
        two.create(key("a", "y"), b("2"))
    );
    assert!(
        a.is_ok() ^ c.is_ok(),
        "exactly one create wins: {a:?} {c:?}"
    );
    assert!(matches!(
        a.err().or(c.err()),
        Some(StoreError::AlreadyExists)
    ));
    // Keys of another prefix are not this installation's.
    let other = store(&etcd, "/other/").await;
    other.create(key("a", "z"), b("x")).await.unwrap();
    let names: Vec<String> = one
        .list(Prefix::new("observations", None), ListOptions::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|(k, _)| k.name)
        .collect();
    assert_eq!(names, ["x", "y"]);
}

#[tokio::test]
async fn compacted_revisions_expire_for_lists_and_watches() {
    let etcd = Etcd::start();
    let store = store(&etcd, "/zen-watcher/").await;
    let first = store.create(key("a", "x"), b("1")).await.unwrap();
    for i in 0..3 {
        store
            .update(key("a", "x"), b(&i.to_string()), None)
            .await
            .unwrap();
    }
    let mut watch = store
        .watch(Prefix::new("observations", None), store.current_revision())
        .unwrap();
    // Once the replica's etcd watch has delivered the last write it is caught up, and etcd
    // compacts only what it has already sent.
    let last = store.update(key("a", "x"), b("last"), None).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.revision, last);
    etcd.compact();
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
    // The replica's own watch is ahead of the compaction: it keeps streaming.
    let rev = store.update(key("a", "x"), b("after"), None).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.revision, rev);
    // A watch from before the replica started cannot be served.
    let late = self::store(&etcd, "/zen-watcher/").await;
    assert!(matches!(
        late.watch(Prefix::new("observations", None), first),
        Err(StoreError::Expired { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_etcd_under_load_fails_fast_and_loses_nothing_acknowledged() {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    };

    let mut etcd = Etcd::start();
    let store = Arc::new(store(&etcd, "/zen-watcher/").await);
    let mut watch = store
        .watch(Prefix::new("observations", None), store.current_revision())
        .unwrap();
    // Read as the writes happen, as a client would: a watch left unread is cut off once its
    // buffer fills, however many writes the machine manages before the outage.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                match watch.next().await {
                    Ok(e) => seen.lock().unwrap().push(e.revision),
                    Err(end) => return end,
                }
            }
        })
    };
    // Four writers create keys without pause while etcd goes away and comes back.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, acknowledged, refused, stop) = (
                store.clone(),
                acknowledged.clone(),
                refused.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    let name = format!("w{w}-{i}");
                    i += 1;
                    let started = Instant::now();
                    match store.create(key("a", &name), b(&name)).await {
                        Ok(rev) => acknowledged.lock().unwrap().push((rev, name)),
                        Err(e) => {
                            assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
                            refused.lock().unwrap().push(started.elapsed());
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    etcd.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!store.ready(), "readiness follows etcd");
    tokio::time::sleep(Duration::from_millis(700)).await;
    etcd.restart();
    // Writes are accepted again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = acknowledged.lock().unwrap().len();
    while acknowledged.lock().unwrap().len() < before + 50 {
        assert!(Instant::now() < deadline, "writes did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Release);
    for w in writers {
        w.await.unwrap();
    }
    assert!(store.ready());
    let refused = refused.lock().unwrap().clone();
    assert!(
        !refused.is_empty(),
        "no write was refused while etcd was down"
    );
    assert!(
        refused.iter().all(|d| *d < Duration::from_secs(6)),
        "a refusal took too long: {:?}",
        refused.iter().max()
    );
    // Everything acknowledged is stored, with its value.
    let mut acknowledged = acknowledged.lock().unwrap().clone();
    acknowledged.sort();
    let listed = store
        .list(Prefix::new("observations", None), ListOptions::default())
        .await
        .unwrap();
    let stored: std::collections::HashMap<String, bytes::Bytes> = listed
        .items
        .into_iter()
        .map(|(k, v)| (k.name, v.value))
        .collect();
    for (_, name) in &acknowledged {
        assert_eq!(stored.get(name), Some(&b(name)), "{name} was acknowledged");
    }
    // The watch saw every acknowledged write, in revision order, across the outage.
    let last = acknowledged.last().map(|(r, _)| *r).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().last() < Some(&last) {
        let count = seen.lock().unwrap().len();
        assert!(
            !reader.is_finished(),
            "the watch ended after {count} events"
        );
        assert!(
            Instant::now() < deadline,
            "the watch stalled after {count} events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.abort();
    let revisions = seen.lock().unwrap().clone();
    let want: Vec<u64> = acknowledged.iter().map(|(r, _)| *r).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "in order");
    for r in &want {
        assert!(revisions.contains(r), "the watch missed revision {r}");
    }
}

#[tokio::test]
async fn etcd_over_tls_with_a_client_certificate() {
    use zen_certs::issue::Ca;
    use zen_store::etcd::EtcdTls;

    let day = Duration::from_secs(86_400);
    let ca = Ca::generate("etcd-ca", day).unwrap();
    let server = ca
        .issue_peer(&["localhost".into()], &["127.0.0.1".parse().unwrap()], day)
        .unwrap();
    let etcd = Etcd::start_tls(&etcd_server::TlsFiles {
        ca_pem: ca.pem.cert_pem.clone(),
        server_cert_pem: server.cert_pem.clone(),
        server_key_pem: server.key_pem.clone(),
    });
    let client = ca.issue_client("zen-watcher", None, day).unwrap();
    let config = |tls: EtcdTls| {
        let mut c = EtcdConfig::parse(&etcd.endpoint()).unwrap();
        c.tls = tls;
        c
    };
    let store = EtcdStore::connect(config(EtcdTls {
        ca_pem: Some(ca.pem.cert_pem.clone()),
        cert_pem: Some(client.cert_pem.clone()),
        key_pem: Some(client.key_pem.clone()),
    }))
    .await
    .unwrap();
    conformance::crud_semantics_and_errors(&store).await;
    // No client certificate: etcd refuses the connection.
    let refused = EtcdStore::connect(config(EtcdTls {
        ca_pem: Some(ca.pem.cert_pem.clone()),
        ..Default::default()
    }))
    .await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "connected without a client certificate"
    );
    // A server certificate from another CA is not trusted.
    let other = Ca::generate("other", day).unwrap();
    let untrusted = EtcdStore::connect(config(EtcdTls {
        ca_pem: Some(other.pem.cert_pem.clone()),
        cert_pem: Some(client.cert_pem.clone()),
        key_pem: Some(client.key_pem.clone()),
    }))
    .await;
    assert!(matches!(untrusted, Err(StoreError::Unavailable(_))));
}
