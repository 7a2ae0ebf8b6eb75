//! End-to-end benchmark of the aggregated API (`cargo bench --bench api`).
//!
//! Runs the real `zen-watcher dev` binary and, in a process of its own, a baseline (`echo/`):
//! a TLS server with the same certificates and client authentication that answers every
//! request with a fixed body. Both are measured in the same run over the same kind of
//! connections, and the report gives ratios, because these machines are noisy. Results go
//! to stdout as a Markdown table.
//!
//! `ZEN_TEST_STORE=etcd cargo bench --bench api` runs the same on a real etcd, and adds etcd's
//! own throughput for the same guarded create transaction from as many connections: the
//! ceiling of the etcd store.

mod echo;
#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use echo::{Echo, EchoSpec};
use http_body_util::{BodyExt, Full};
use support::{DevServer, client::Client};

fn request(method: &str, path: &str, accept: &str, body: Bytes) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(Full::new(body))
        .expect("request")
}

/// The baseline: the dev server's certificates and client authentication, a fixed answer.
fn start_echo(data: &std::path::Path, answer: Bytes) -> Echo {
    let text = String::from_utf8(answer.to_vec()).expect("a text answer");
    Echo::start(&EchoSpec::dev(
        data,
        true,
        200,
        [(String::new(), text)].into(),
    ))
}

fn observation(i: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"zen.watcher.io/v1alpha1","kind":"Observation","metadata":{{"generateName":"bench-","namespace":"default","labels":{{"bench":"x{}"}}}},"spec":{{"source":"trivy","category":"security","severity":"high","eventType":"vulnerability","title":"CVE-2026-{i:05} in libfoo","resource":{{"apiVersion":"v1","kind":"Pod","name":"web-{i}","namespace":"default"}}}}}}"#,
        i % 10
    ))
}

const OBS: &str = "/apis/zen.watcher.io/v1alpha1/namespaces/default/observations";

/// Creates (POSTs) from `conns` keep-alive connections for `secs`; returns creates/s.
async fn create_rate(client: &Client, conns: usize, secs: u64, counter: Arc<AtomicU64>) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut sender = client.connect().await;
        let done = done.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if sender.ready().await.is_err() {
                    break;
                }
                let resp = sender
                    .send_request(request("POST", OBS, "application/json", observation(i)))
                    .await
                    .expect("response");
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

/// Creates exactly `n` Observations from `conns` keep-alive connections, retrying refusals.
async fn create_exactly(client: &Client, conns: usize, n: u64, counter: Arc<AtomicU64>) {
    let remaining = Arc::new(AtomicU64::new(n));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut sender = client.connect().await;
        let remaining = remaining.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            // Claim one creation at a time; give it back if the server refused it.
            while remaining
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1))
                .is_ok()
            {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                sender.ready().await.expect("connection ready");
                let resp = sender
                    .send_request(request("POST", OBS, "application/json", observation(i)))
                    .await
                    .expect("response");
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                if !ok {
                    remaining.fetch_add(1, Ordering::AcqRel);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}

/// How many Observations the server stores.
async fn stored(client: &Client) -> usize {
    let mut s = client.connect().await;
    let resp = s
        .send_request(request(
            "GET",
            OBS,
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            Bytes::new(),
        ))
        .await
        .expect("count");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["items"].as_array().map(Vec::len).unwrap_or(0)
}

/// Latencies of `n` sequential GETs on one connection.
async fn get_latencies(
    client: &Client,
    path: &str,
    accept: &str,
    n: usize,
) -> (Vec<Duration>, usize) {
    let mut sender = client.connect().await;
    let mut out = Vec::new();
    let mut size = 0;
    for _ in 0..n {
        sender.ready().await.expect("connection ready");
        let start = Instant::now();
        let resp = sender
            .send_request(request("GET", path, accept, Bytes::new()))
            .await
            .expect("response");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        out.push(start.elapsed());
        size = body.len();
    }
    out.sort();
    (out, size)
}

/// etcd's own rate for the create transaction the etcd store sends (compare the key's
/// create revision, put), from `conns` keep-alive connections for `secs`.
async fn etcd_put_rate(port: u16, conns: usize, secs: u64) -> f64 {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let done = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("etcd");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let (done, counter) = (done.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let key = STANDARD.encode(format!("/ceiling/observations/default/o{i}"));
                let value = STANDARD.encode(observation(i));
                let body = format!(
                    r#"{{"compare":[{{"key":"{key}","target":"CREATE","result":"EQUAL","create_revision":"0"}}],"success":[{{"request_put":{{"key":"{key}","value":"{value}"}}}}]}}"#
                );
                if sender.ready().await.is_err() {
                    break;
                }
                let resp = sender
                    .send_request(request("POST", "/v3/kv/txn", "application/json", Bytes::from(body)))
                    .await
                    .expect("etcd answer");
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    echo::serve_if_asked();
    // `cargo bench` passes --bench; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = DevServer::start(&data, &[]);
    let pid = server.pid();
    let echo_created = start_echo(&data, observation(0));
    let api = Client::admin(&data, server.secure_port);
    let echo = Client::admin_of(&data, echo_created.port);
    let counter = Arc::new(AtomicU64::new(0));
    let mut rows: Vec<(String, String, String, String)> = Vec::new();

    let conns = 32;
    // 1. List 10,000 Observations as a Table.
    // Seed about 10,000 Observations (the counter counts attempts; the table reports how
    // many are stored).
    while counter.load(Ordering::Relaxed) < 10_000 {
        create_rate(&api, conns, 1, counter.clone()).await;
    }
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let count_all = stored(&api).await;
    let (list, size) = get_latencies(&api, &format!("{OBS}?limit=10000"), table, 20).await;
    let echo_list = start_echo(&data, Bytes::from(vec![b' '; size]));
    let (echo_lat, _) =
        get_latencies(&Client::admin_of(&data, echo_list.port), "/", table, 20).await;
    rows.push((
        format!(
            "list 10,000 of {count_all} Observations as a Table ({} KiB), p50 / p99",
            size / 1024
        ),
        format!("{} / {}", ms(pct(&list, 0.5)), ms(pct(&list, 0.99))),
        format!("{} (TLS echo of the same size)", ms(pct(&echo_lat, 0.5))),
        format!(
            "{:.2}",
            pct(&list, 0.5).as_secs_f64() / pct(&echo_lat, 0.5).as_secs_f64()
        ),
    ));

    // 2. Create throughput, durable acknowledgement, 32 keep-alive connections.
    let echo_rate = create_rate(&echo, conns, 5, Arc::new(AtomicU64::new(0))).await;
    // A fixed number rather than a fixed time, so the memory figure below can be taken at
    // exactly 100,000 stored objects.
    let creates = 60_000;
    let start = Instant::now();
    create_exactly(&api, conns, creates, counter.clone()).await;
    let rate = creates as f64 / start.elapsed().as_secs_f64();
    rows.push((
        format!("create Observation, {conns} keep-alive HTTPS connections"),
        format!("{rate:.0} /s"),
        format!("{echo_rate:.0} /s (TLS echo)"),
        format!("{:.2}", rate / echo_rate),
    ));
    if let Some(etcd) = &server.etcd {
        let ceiling = etcd_put_rate(etcd.client_port, conns, 5).await;
        rows.push((
            format!("create Observation vs etcd's own guarded put, {conns} connections"),
            format!("{rate:.0} /s"),
            format!("{ceiling:.0} /s (etcd txn put, HTTP to its gateway)"),
            format!("{:.2}", rate / ceiling),
        ));
    }

    // 3. Watch fan-out: one change reaching 1,000 open watches.
    let watchers = 1000;
    let rv = {
        let mut s = api.connect().await;
        let resp = s
            .send_request(request(
                "GET",
                &format!("{OBS}?limit=1"),
                "application/json",
                Bytes::new(),
            ))
            .await
            .expect("list");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_owned()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Instant>(watchers);
    for _ in 0..watchers {
        let mut s = api.connect().await;
        let path = format!("{OBS}?watch=true&resourceVersion={rv}&labelSelector=fanout%3Dyes");
        let resp = s
            .send_request(request("GET", &path, "application/json", Bytes::new()))
            .await
            .expect("watch");
        let tx = tx.clone();
        tokio::spawn(async move {
            let _keep = s;
            let mut body = resp.into_body();
            if let Some(Ok(_frame)) = body.frame().await {
                let _ = tx.send(Instant::now()).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = r#"{"apiVersion":"zen.watcher.io/v1alpha1","kind":"Observation","metadata":{"name":"fanout","labels":{"fanout":"yes"}},"spec":{"source":"bench","category":"operations","severity":"info","eventType":"fanout"}}"#;
    let mut s = api.connect().await;
    let start = Instant::now();
    let resp = s
        .send_request(request("POST", OBS, "application/json", Bytes::from(body)))
        .await
        .expect("create");
    assert!(resp.status().is_success());
    let mut lat = Vec::new();
    while lat.len() < watchers {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(t)) => lat.push(t.duration_since(start)),
            _ => break,
        }
    }
    lat.sort();
    let (echo_rtt, _) = get_latencies(&echo, "/", "application/json", 50).await;
    rows.push((
        format!(
            "one create reaching {watchers} open watches ({} delivered), p50 / p99",
            lat.len()
        ),
        format!("{} / {}", ms(pct(&lat, 0.5)), ms(pct(&lat, 0.99))),
        format!("{} (one TLS echo round trip)", ms(pct(&echo_rtt, 0.5))),
        format!(
            "{:.1}",
            pct(&lat, 0.99).as_secs_f64() / pct(&echo_rtt, 0.5).as_secs_f64()
        ),
    ));

    // 4. Memory with exactly 100,000 stored Observations.
    let target: u64 = 100_000;
    let have = stored(&api).await as u64;
    create_exactly(&api, conns, target.saturating_sub(have), counter.clone()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = rss_mb(pid);
    let count = stored(&api).await;
    rows.push((
        format!("resident memory of zen-watcher dev with {count} Observations stored"),
        format!("{rss:.0} MB"),
        "—".into(),
        "—".into(),
    ));

    println!(
        "Store: {}\n",
        if server.etcd.is_some() {
            "etcd (a real etcd started by the benchmark)"
        } else {
            "embedded (redb)"
        }
    );
    println!("| measurement | zen-watcher | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    for (a, b, c, d) in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
}
