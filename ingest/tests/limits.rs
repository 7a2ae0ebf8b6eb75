//! The port-wide bounds, on the service itself: a full in-flight bound answers 503 and a
//! spent port-wide rate 429, both with Retry-After, and a body streamed past the endpoint's
//! limit without a Content-Length is cut off with 413. Nothing is stored by any of them.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use zen_apiserver::{metrics::ApiMetrics, server::ApiServer};
use zen_ingest::{Endpoints, IngestService, service::Limits, sink::ApiSink};

fn ingestor() -> zen_crds::Ingestor {
    serde_json::from_value(json!({
        "apiVersion": "config.zen.watcher.io/v1alpha1", "kind": "Ingestor",
        "metadata": {"name": "open", "namespace": "t"},
        "spec": {
            "sources": [{"name": "s", "type": "webhook", "auth": {"type": "none"}, "maxBodyBytes": 64}],
            "mapping": {"category": "'operations'", "severity": "'info'", "eventType": "'test'"}
        }
    }))
    .unwrap()
}

async fn setup(limits: Limits) -> (IngestService, ApiServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = zen_store::redb::RedbStore::open(&dir.path().join("db")).unwrap();
    let metrics = ApiMetrics::register(&prometheus::Registry::new()).unwrap();
    let api = ApiServer::new(Arc::new(store), metrics).unwrap();
    let endpoints = Arc::new(Endpoints::default());
    assert!(
        endpoints
            .load(&[ingestor()], &Default::default())
            .is_empty()
    );
    let service = IngestService::with_limits(endpoints, ApiSink::new(api.clone()), None, limits);
    (service, api, dir)
}

async fn deliver(service: &IngestService, body: &'static [u8]) -> (u16, Option<String>, Value) {
    let req = http::Request::post("/hooks/t/open/s")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let resp = service.handle(req).await;
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

async fn stored(api: &ApiServer) -> usize {
    let req = http::Request::get("/apis/zen.watcher.io/v1alpha1/namespaces/t/observations")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let body = api
        .handle(req)
        .await
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let list: Value = serde_json::from_slice(&body).unwrap();
    list["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let (service, api, _dir) = setup(Limits {
        in_flight: 0,
        rate: 100,
    })
    .await;
    let (status, retry, body) = deliver(&service, b"{}").await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{body}");
    assert_eq!(body["reason"], "queue_full");
    assert_eq!(stored(&api).await, 0);
}

#[tokio::test]
async fn the_port_wide_rate_answers_429() {
    let (service, api, _dir) = setup(Limits {
        in_flight: 8,
        rate: 1,
    })
    .await;
    assert_eq!(deliver(&service, b"{}").await.0, 201);
    let (status, retry, body) = deliver(&service, b"{}").await;
    assert_eq!((status, retry.as_deref()), (429, Some("1")), "{body}");
    assert_eq!(stored(&api).await, 1);
}

#[tokio::test]
async fn a_body_past_the_limit_without_content_length_is_413() {
    let (service, api, _dir) = setup(Limits::default()).await;
    let big: &'static [u8] =
        br#"{"padding": "0123456789012345678901234567890123456789012345678901234567890123456789"}"#;
    let (status, _, body) = deliver(&service, big).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (413, Some("body_too_large"))
    );
    let (status, _, body) = deliver(&service, b"not json").await;
    assert_eq!((status, body["reason"].as_str()), (400, Some("bad_json")));
    assert_eq!(stored(&api).await, 0);
}
