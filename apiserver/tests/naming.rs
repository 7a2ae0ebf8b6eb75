//! Names of created objects: a generated name another object holds is replaced by the next
//! one, at most `NAME_ATTEMPTS` times, as kube-apiserver retries `generateName`; a name sent
//! is never replaced, and an in-process caller that tries again itself gets its object back.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use serde_json::{Value, json};
use zen_apiserver::{
    metrics::ApiMetrics,
    objects::{NAME_ATTEMPTS, Naming},
    server::{ApiServer, Created},
    status::ApiError,
};

fn api(dir: &tempfile::TempDir) -> ApiServer {
    let store = zen_store::redb::RedbStore::open(&dir.path().join("db")).unwrap();
    let metrics = ApiMetrics::register(&prometheus::Registry::new()).unwrap();
    ApiServer::new(Arc::new(store), metrics).unwrap()
}

fn observation(metadata: Value) -> Value {
    json!({
        "apiVersion": "zen.watcher.io/v1alpha1", "kind": "Observation",
        "metadata": metadata,
        "spec": {"source": "test", "category": "operations", "severity": "info", "eventType": "naming"}
    })
}

/// An API whose store holds an Observation named `taken`, and what a create with the
/// names of `names` came to.
async fn create_after_taken(
    taken: &str,
    names: &(dyn Fn() -> String + Send + Sync),
) -> (ApiServer, Result<Value, ApiError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let api = api(&dir);
    api.create_object("observations", "t", observation(json!({"name": taken})))
        .await
        .unwrap();
    let created = api
        .create_object_named(
            "observations",
            "t",
            observation(json!({})),
            Naming::Generator(names),
        )
        .await;
    (api, created, dir)
}

#[tokio::test]
async fn a_taken_generated_name_is_replaced_by_the_next() {
    let calls = AtomicUsize::new(0);
    let names = || format!("obs-{}", calls.fetch_add(1, Ordering::Relaxed));
    let (api, created, _dir) = create_after_taken("obs-0", &names).await;
    let created = created.unwrap();
    assert_eq!(created["metadata"]["name"], "obs-1");
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    let stored = api.get("observations", "t", "obs-1").await.unwrap();
    assert_eq!(stored["metadata"]["uid"], created["metadata"]["uid"]);
}

#[tokio::test]
async fn generated_names_are_tried_a_bounded_number_of_times() {
    let calls = AtomicUsize::new(0);
    let names = || {
        calls.fetch_add(1, Ordering::Relaxed);
        "same".to_owned()
    };
    let (_api, created, _dir) = create_after_taken("same", &names).await;
    let err = created.unwrap_err();
    assert!(
        matches!(err, ApiError::AlreadyExists { ref name, .. } if name == "same"),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), NAME_ATTEMPTS);
}

#[tokio::test]
async fn a_name_sent_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(&dir);
    let sent = observation(json!({"name": "mine", "generateName": "gen-"}));
    api.create_object("observations", "t", sent.clone())
        .await
        .unwrap();
    let err = api
        .create_object("observations", "t", sent)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::AlreadyExists { ref name, .. } if name == "mine"),
        "{err:?}"
    );

    let generated = api
        .create_object(
            "observations",
            "t",
            observation(json!({"generateName": "gen-"})),
        )
        .await
        .unwrap();
    let name = generated["metadata"]["name"].as_str().unwrap();
    assert!(
        name.starts_with("gen-") && name.len() == "gen-".len() + 5,
        "{name}"
    );
}

#[tokio::test]
async fn a_taken_name_hands_the_object_back_to_try_again_with() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(&dir);
    let first = api
        .try_create_object("observations", "t", observation(json!({"name": "dup"})))
        .await
        .unwrap();
    let Created::Stored(stored, _) = first else {
        panic!("a free name is stored");
    };
    let mut again = observation(json!({"name": "dup"}));
    again["spec"]["title"] = json!("the second");
    let Created::Taken(back) = api
        .try_create_object("observations", "t", again)
        .await
        .unwrap()
    else {
        panic!("a taken name is not stored");
    };
    assert_eq!(back["spec"]["title"], "the second");
    assert_eq!(back["metadata"]["name"], "dup");
    let current = api.get("observations", "t", "dup").await.unwrap();
    assert_eq!(current["metadata"]["uid"], stored["metadata"]["uid"]);
    assert_eq!(
        current["spec"].get("title"),
        None,
        "the first stays as it was"
    );

    // Once the name is free, the object handed back is stored as it is.
    api.delete_object("observations", "t", "dup", None)
        .await
        .unwrap();
    let Created::Stored(second, _) = api
        .try_create_object("observations", "t", back)
        .await
        .unwrap()
    else {
        panic!("the freed name is stored");
    };
    assert_eq!(second["spec"]["title"], "the second");
    assert_ne!(second["metadata"]["uid"], stored["metadata"]["uid"]);
}
